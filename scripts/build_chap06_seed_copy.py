"""Rebuild the lecture 6 notebooks from the course's seed text (../shared/seed/).

    python scripts/build_chap06_notebooks.py [--seed PATH]

Writes three notebooks, all from the one seed so that text and code stay the course's own:

- ``exercises/chap06_cnn/template.ipynb``: what students get; ``#WRITE ME`` where they write,
  graded cells carry stable cell ids (``conv1`` ... ``train``);
- ``reference/chap06_cnn/solution.ipynb``: the template with every blank filled;
- ``tests/fixtures/chap06_seed_copy.ipynb``: a student's copy of the original course notebook
  as it was handed in (nbformat 4.2, no cell ids, TF 1.8 code, ``!pip3 install``, outputs).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SEED = ROOT.parent / "shared" / "seed" / "000_e1b985e2b8da3bd9.txt"

CODE_START = re.compile(r"^In \[[^\]]*\]:\s*$")
HEADING = re.compile(r"^#{1,6} ")
OUTPUT_START = re.compile(r"^(Collecting |Downloading |EPOCH: |Writing )")


def parse_seed(text: str) -> list[dict]:
    """Split the exported text into cells: ``{"type", "source", "output"}``."""
    cells: list[dict] = []
    current: dict | None = None

    def close() -> None:
        if current is None:
            return
        lines = current["lines"]
        while lines and not lines[-1].strip():
            lines.pop()
        while lines and not lines[0].strip():
            lines.pop(0)
        output: list[str] = []
        if current["type"] == "code":
            blanks = [i for i, line in enumerate(lines) if not line.strip()]
            if blanks and OUTPUT_START.match(lines[blanks[-1] + 1]):
                output = lines[blanks[-1] + 1 :]
                lines = lines[: blanks[-1]]
                while lines and not lines[-1].strip():
                    lines.pop()
        if lines:
            cells.append(
                {"type": current["type"], "source": "\n".join(lines), "output": "\n".join(output)}
            )

    for line in text.splitlines():
        if CODE_START.match(line):
            close()
            current = {"type": "code", "lines": []}
            continue
        in_code = current is not None and current["type"] == "code"
        starts_heading = HEADING.match(line) and (not in_code or line.startswith("##"))
        if starts_heading:
            close()
            current = {"type": "markdown", "lines": [line]}
            continue
        if current is None:
            current = {"type": "markdown", "lines": []}
        current["lines"].append(line)
    close()
    return cells


# Code cells of the seed, in order, named by what they hold.
CODE_NAMES = [
    "pip-install", "imports", "load-mnist",
    "conv-example-setup", "conv-example1", "conv-example2", "conv-example3",
    "conv-setup", "conv1", "conv2", "conv3",
    "pool-example-setup", "pool-example1", "pool-example2", "pool-example3",
    "pool-setup", "pool1", "pool2", "pool3",
    "conv-layer", "pooling-layer", "flatten-layer", "dense-layer",
    "tf-log", "model", "train", "tensorboard",
]  # fmt: skip

EXERCISE = "{var} = #WRITE ME\n\nwith tf.Session() as sess:\n    print(sess.run({var}, feed_dict={{x: sample_image}}).reshape(#WRITE ME))"
ANSWER = "{var} = {op}\n\nwith tf.Session() as sess:\n    print(sess.run({var}, feed_dict={{x: sample_image}}).reshape({shape}))"

ANSWERS = {
    "conv1": ("convoluted_image", "tf.nn.conv2d(x, W, strides=[1,1,1,1], padding='VALID')", "5, 5"),
    "conv2": ("convoluted_image", "tf.nn.conv2d(x, W, strides=[1,2,2,1], padding='VALID')", "3, 3"),
    "conv3": ("convoluted_image", "tf.nn.conv2d(x, W, strides=[1,1,1,1], padding='SAME')", "7, 7"),
    "pool1": ("pooled_image", "tf.nn.max_pool(x, ksize=[1,2,2,1], strides=[1,2,2,1], padding='VALID')", "3, 3"),
    "pool2": ("pooled_image", "tf.nn.max_pool(x, ksize=[1,2,2,1], strides=[1,1,1,1], padding='VALID')", "6, 6"),
    "pool3": ("pooled_image", "tf.nn.avg_pool(x, ksize=[1,2,2,1], strides=[1,2,2,1], padding='VALID')", "3, 3"),
}  # fmt: skip

CONV_LAYER = '''class Conv:
    def __init__(self, filter_shape, function=lambda x: x, strides=[1,1,1,1], padding='VALID'):
        # Heの初期値
        # filter_shape: (縦の次元数)x(横の次元数)x(入力チャンネル数)x(出力チャンネル数)
        fan_in = {fan_in}
        fan_out = {fan_out}
        self.W = tf.Variable(rng.uniform(
                        low={low},
                        high={high},
                        size=filter_shape
                    ).astype('float32'), name='W')
        self.b = tf.Variable(np.zeros((filter_shape[3]), dtype='float32'), name='b') # バイアスはフィルタごとなので, 出力フィルタ数と同じ次元数
        self.function = function
        self.strides = strides
        self.padding = padding

    def __call__(self, x):
        u = {u}
        return self.function(u)'''

POOLING_LAYER = '''class Pooling:
    def __init__(self, ksize=[1,2,2,1], strides=[1,2,2,1], padding='VALID'):
        self.ksize = ksize
        self.strides = strides
        self.padding = padding

    def __call__(self, x):
        return {pool}'''

DENSE_LAYER = '''class Dense:
    def __init__(self, in_dim, out_dim, function=lambda x: x):
        # He Initialization
        # in_dim: 入力の次元数、out_dim: 出力の次元数
        self.W = tf.Variable(rng.uniform(
                        low={low},
                        high={high},
                        size=(in_dim, out_dim)
                    ).astype('float32'), name='W')
        self.b = tf.Variable(np.zeros([out_dim]).astype('float32'))
        self.function = function

    def __call__(self, x):
        return {out}'''

BLANK = "#WRITE ME"
LAYERS = {
    "conv-layer": (
        CONV_LAYER,
        dict(fan_in=BLANK, fan_out=BLANK, low=BLANK, high=BLANK, u=BLANK),
        dict(
            fan_in="np.prod(filter_shape[:3])",
            fan_out="np.prod(filter_shape[:2]) * filter_shape[3]",
            low="-np.sqrt(6 / fan_in)",
            high="np.sqrt(6 / fan_in)",
            u="tf.nn.conv2d(x, self.W, strides=self.strides, padding=self.padding) + self.b",
        ),
    ),
    "pooling-layer": (
        POOLING_LAYER,
        dict(pool=BLANK),
        dict(pool="tf.nn.max_pool(x, ksize=self.ksize, strides=self.strides, padding=self.padding)"),
    ),
    "dense-layer": (
        DENSE_LAYER,
        dict(low=BLANK, high=BLANK, out=BLANK),
        dict(
            low="-np.sqrt(6 / in_dim)",
            high="np.sqrt(6 / in_dim)",
            out="self.function(tf.matmul(x, self.W) + self.b)",
        ),
    ),
}


def exercise_cells(cells: list[dict], solved: bool) -> list:
    """The template (or, ``solved``, the solution) as nbformat cells with stable ids."""
    out = []
    code_index = 0
    md_index = 0
    for cell in cells:
        if cell["type"] == "markdown":
            md_index += 1
            node = nbformat.v4.new_markdown_cell(cell["source"])
            node["id"] = f"md-{md_index:02d}"
            out.append(node)
            continue
        name = CODE_NAMES[code_index]
        code_index += 1
        if name == "pip-install":
            continue  # a TF 1.8 install: not part of the exercise any more
        source = cell["source"]
        if name in ANSWERS:
            var, op, shape = ANSWERS[name]
            source = (ANSWER if solved else EXERCISE).format(var=var, op=op, shape=shape)
        elif name in LAYERS:
            template, blanks, answers = LAYERS[name]
            source = template.format(**(answers if solved else blanks))
        elif name == "model":
            answer = "Dense(800, 10, tf.nn.softmax)(h)" if solved else BLANK
            source = re.sub(r"^y = .*$", f"y = {answer}", source, flags=re.M)
        node = nbformat.v4.new_code_cell(source)
        node["id"] = name
        out.append(node)
    return out


def seed_copy_cells(cells: list[dict]) -> list:
    out = []
    count = 0
    for cell in cells:
        if cell["type"] == "markdown":
            node = nbformat.v4.new_markdown_cell(cell["source"])
        else:
            count += 1
            node = nbformat.v4.new_code_cell(cell["source"], execution_count=count)
            if cell["output"]:
                node.outputs = [
                    nbformat.v4.new_output("stream", name="stdout", text=cell["output"] + "\n")
                ]
        node.pop("id", None)
        out.append(node)
    return out


KERNEL = {"display_name": "Python 3", "language": "python", "name": "python3"}


def write(cells: list, path: Path, minor: int = 5) -> None:
    nb = nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": KERNEL})
    nb.nbformat_minor = minor
    if minor >= 5:
        nbformat.validate(nb)
    path.parent.mkdir(parents=True, exist_ok=True)
    if minor >= 5:
        text = nbformat.writes(nb)
    else:  # nbformat would add cell ids back; an old notebook has none
        raw = json.loads(json.dumps(nb))
        for cell in raw["cells"]:
            cell.pop("id", None)
        text = json.dumps(raw, indent=1, ensure_ascii=False)
    path.write_text(text + "\n", encoding="utf-8")
    print(f"wrote {path.relative_to(ROOT)} ({len(cells)} cells)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--seed", type=Path, default=DEFAULT_SEED)
    args = parser.parse_args()
    cells = parse_seed(args.seed.read_text(encoding="utf-8"))
    n_code = sum(c["type"] == "code" for c in cells)
    if n_code != len(CODE_NAMES):
        raise SystemExit(f"expected {len(CODE_NAMES)} code cells in the seed, found {n_code}")
    write(exercise_cells(cells, solved=False), ROOT / "exercises/chap06_cnn/template.ipynb")
    write(exercise_cells(cells, solved=True), ROOT / "reference/chap06_cnn/solution.ipynb")
    write(seed_copy_cells(cells), ROOT / "tests/fixtures/chap06_seed_copy.ipynb", minor=2)


if __name__ == "__main__":
    main()
