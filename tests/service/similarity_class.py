"""A seeded class for the similarity run's tests: real notebooks of chap06_cnn and the model
fingerprints their (stubbed) gradings report.

Notebooks:

- the reference solution itself;
- :func:`renamed_copy`: a notebook derived from it with every user-chosen name renamed
  (``tokenize``: the names the notebook binds, never an attribute, a keyword argument's name or
  an imported module's) and two cells swapped;
- :func:`honest_notebook`: the template with its blanks filled in by one of five students,
  each writing the usual solution in their own way (their own helpers, argument styles,
  comments), so no two of them share more than the usual idioms.

Fingerprints (:func:`fingerprint`): predictions made from the true labels with a student's own
errors, one byte an image, as the clean room's would be. Independent trainings err on different
images; the same training run twice errs on nearly the same images the same way; weights pasted
from another notebook have the same hash and the same predictions.
"""

from __future__ import annotations

import ast
import copy
import io
import tokenize
from collections.abc import Mapping

import nbformat
import numpy as np

from grader.fingerprints import ModelFingerprint

#: Two cells of the solution that do not depend on each other, swapped in the renamed copy.
SWAPPED = ("pooling-layer", "flatten-layer")


# --- the renamed copy --------------------------------------------------------------------------

def _bound_names(sources: list[str]) -> tuple[set[str], set[str]]:
    """Names the code binds (assignments, defs, classes, parameters, loop targets) and names
    it must keep (keyword arguments' names, imports)."""
    bound: set[str] = set()
    keep: set[str] = set()
    for source in sources:
        try:
            tree = ast.parse(source)
        except SyntaxError:  # a %%writefile cell: left as it is
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                bound.add(node.id)
            elif isinstance(node, ast.FunctionDef | ast.ClassDef):
                bound.add(node.name)
            elif isinstance(node, ast.arg):
                bound.add(node.arg)
            elif isinstance(node, ast.keyword) and node.arg:
                keep.add(node.arg)
            elif isinstance(node, ast.Import | ast.ImportFrom):
                keep.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return bound - keep - {"self"}, keep


def _rename(source: str, names: Mapping[str, str]) -> str:
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    out = []
    for n, tok in enumerate(tokens):
        previous = tokens[n - 1].string if n else ""
        if tok.type == tokenize.NAME and tok.string in names and previous != ".":
            tok = tok._replace(string=names[tok.string])
        out.append(tok)
    return tokenize.untokenize(out)


def renamed_copy(solution: nbformat.NotebookNode) -> bytes:
    """The solution with every user-chosen name renamed and the cells :data:`SWAPPED`."""
    nb = copy.deepcopy(solution)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    bound, _ = _bound_names([cell.source for cell in code])
    names = {name: f"my_{name.lower()}_{n}" for n, name in enumerate(sorted(bound))}
    for cell in code:
        try:
            ast.parse(cell.source)
        except SyntaxError:
            continue
        cell.source = _rename(cell.source, names)
    where = [i for i, cell in enumerate(nb.cells) if cell.get("id") in SWAPPED]
    i, j = where
    nb.cells[i], nb.cells[j] = nb.cells[j], nb.cells[i]
    return nbformat.writes(nb).encode()


# --- honest students ---------------------------------------------------------------------------

def _style0() -> dict[str, str]:
    return {
        "conv1": ("def side(size, window, step=1):\n    return (size - window) // step + 1\n\n"
                  "convoluted_image = tf.nn.conv2d(x, W, [1, 1, 1, 1], 'VALID')\n\n"
                  "with tf.Session() as sess:\n    out = sess.run(convoluted_image, "
                  "feed_dict={x: sample_image})\n    print(out.reshape(side(7, 3), side(7, 3)))"),
        "conv2": ("convoluted_image = tf.nn.conv2d(x, W, [1, 2, 2, 1], 'VALID')\n\n"
                  "with tf.Session() as sess:\n    out = sess.run(convoluted_image, "
                  "feed_dict={x: sample_image})\n    print(out.reshape(side(7, 3, 2), "
                  "side(7, 3, 2)))"),
        "conv3": ("convoluted_image = tf.nn.conv2d(x, W, [1, 1, 1, 1], 'SAME')  # keeps 7x7\n\n"
                  "with tf.Session() as sess:\n    out = sess.run(convoluted_image, "
                  "feed_dict={x: sample_image})\n    print(out.reshape(7, 7))"),
        "pool1": ("pooled_image = tf.nn.max_pool(x, [1, 2, 2, 1], [1, 2, 2, 1], 'VALID')\n\n"
                  "with tf.Session() as sess:\n    out = sess.run(pooled_image, "
                  "feed_dict={x: sample_image})\n    print(out.reshape(side(7, 2, 2), -1))"),
        "pool2": ("pooled_image = tf.nn.max_pool(x, [1, 2, 2, 1], [1, 1, 1, 1], 'VALID')\n\n"
                  "with tf.Session() as sess:\n    out = sess.run(pooled_image, "
                  "feed_dict={x: sample_image})\n    print(out.reshape(side(7, 2), -1))"),
        "pool3": ("pooled_image = tf.nn.avg_pool(x, [1, 2, 2, 1], [1, 2, 2, 1], 'VALID')\n\n"
                  "with tf.Session() as sess:\n    out = sess.run(pooled_image, "
                  "feed_dict={x: sample_image})\n    print(out.reshape(side(7, 2, 2), -1))"),
    }


def _style1() -> dict[str, str]:
    def cell(var: str, op: str, stride: int, padding: str, shape: str) -> str:
        return (f"STRIDE = [1, {stride}, {stride}, 1]\n{var} = {op}(x, "
                + ("W, strides=STRIDE" if op.endswith("conv2d") else "ksize=[1, 2, 2, 1], "
                   "strides=STRIDE")
                + f", padding=\"{padding}\")\nsess = tf.Session()\nresult = sess.run({var}, "
                f"{{x: sample_image}})\nsess.close()\nprint(np.squeeze(result).reshape({shape}))")
    return {
        "conv1": cell("convoluted_image", "tf.nn.conv2d", 1, "VALID", "5, 5"),
        "conv2": cell("convoluted_image", "tf.nn.conv2d", 2, "VALID", "3, 3"),
        "conv3": cell("convoluted_image", "tf.nn.conv2d", 1, "SAME", "7, 7"),
        "pool1": cell("pooled_image", "tf.nn.max_pool", 2, "VALID", "3, 3"),
        "pool2": cell("pooled_image", "tf.nn.max_pool", 1, "VALID", "6, 6"),
        "pool3": cell("pooled_image", "tf.nn.avg_pool", 2, "VALID", "3, 3"),
    }


def _style2() -> dict[str, str]:
    run = ("def show(tensor, rows):\n    \"\"\"Evaluate on the sample image and print it as "
           "rows x rows.\"\"\"\n    with tf.Session() as s:\n        values = s.run(tensor, "
           "feed_dict={x: sample_image})\n    print(values[0, :, :, 0].reshape(rows, rows))\n\n")
    return {
        "conv1": run + "convoluted_image = tf.nn.convolution(x, W, padding='VALID')\n"
                       "show(convoluted_image, 5)",
        "conv2": "convoluted_image = tf.nn.convolution(x, W, padding='VALID', strides=(2, 2))"
                 "\nshow(convoluted_image, 3)",
        "conv3": "convoluted_image = tf.nn.convolution(x, W, padding='SAME')\n"
                 "show(convoluted_image, 7)",
        "pool1": "pooled_image = tf.nn.pool(x, window_shape=(2, 2), pooling_type='MAX', "
                 "padding='VALID', strides=(2, 2))\nshow(pooled_image, 3)",
        "pool2": "pooled_image = tf.nn.pool(x, window_shape=(2, 2), pooling_type='MAX', "
                 "padding='VALID')\nshow(pooled_image, 6)",
        "pool3": "pooled_image = tf.nn.pool(x, window_shape=(2, 2), pooling_type='AVG', "
                 "padding='VALID', strides=(2, 2))\nshow(pooled_image, 3)",
    }


def _style3() -> dict[str, str]:
    cells = {}
    for name, (expr, n) in {
        "conv1": ("tf.nn.conv2d(input=x, filter=W, strides=(1, 1, 1, 1), padding='VALID')", 5),
        "conv2": ("tf.nn.conv2d(input=x, filter=W, strides=(1, 2, 2, 1), padding='VALID')", 3),
        "conv3": ("tf.nn.conv2d(input=x, filter=W, strides=(1, 1, 1, 1), padding='SAME')", 7),
        "pool1": ("tf.nn.max_pool(value=x, ksize=(1, 2, 2, 1), strides=(1, 2, 2, 1), "
                  "padding='VALID')", 3),
        "pool2": ("tf.nn.max_pool(value=x, ksize=(1, 2, 2, 1), strides=(1, 1, 1, 1), "
                  "padding='VALID')", 6),
        "pool3": ("tf.nn.avg_pool(value=x, ksize=(1, 2, 2, 1), strides=(1, 2, 2, 1), "
                  "padding='VALID')", 3),
    }.items():
        var = "convoluted_image" if name.startswith("conv") else "pooled_image"
        cells[name] = (f"# {name}: output is {n} by {n}\n{var} = {expr}\n"
                       f"with tf.Session() as session:\n"
                       f"    feed = {{x: sample_image}}\n"
                       f"    matrix = session.run({var}, feed).reshape([{n}] * 2)\n"
                       f"for line in matrix:\n    print(' '.join(f'{{v:6.1f}}' for v in line))")
    return cells


def _style4() -> dict[str, str]:
    cells = {}
    for name, (op, k, st, pad, n) in {
        "conv1": ("conv", 3, 1, "VALID", 5), "conv2": ("conv", 3, 2, "VALID", 3),
        "conv3": ("conv", 3, 1, "SAME", 7), "pool1": ("max", 2, 2, "VALID", 3),
        "pool2": ("max", 2, 1, "VALID", 6), "pool3": ("avg", 2, 2, "VALID", 3),
    }.items():
        var = "convoluted_image" if op == "conv" else "pooled_image"
        if op == "conv":
            expr = f"tf.nn.conv2d(x, W, strides=[1] + [{st}] * 2 + [1], padding={pad!r})"
        else:
            fn = "tf.nn.max_pool" if op == "max" else "tf.nn.avg_pool"
            expr = (f"{fn}(x, ksize=[1] + [{k}] * 2 + [1], strides=[1] + [{st}] * 2 + [1], "
                    f"padding={pad!r})")
        cells[name] = (f"settings_{name} = dict(kernel={k}, step={st}, mode={pad!r})\n"
                       f"{var} = {expr}\n"
                       f"sess = tf.InteractiveSession()\n"
                       f"print({var}.eval(feed_dict={{x: sample_image}}).reshape({n}, {n}))\n"
                       f"sess.close()")
    return cells


_LAYERS = [
    # (conv-layer body lines, pooling call, dense body, model's y line)
    ("limit = np.sqrt(6 / np.prod(filter_shape[:3]))",
     "tf.nn.max_pool(x, self.ksize, self.strides, self.padding)",
     "tf.matmul(x, self.W) + self.b", "y = Dense(4 * 4 * 50, 10, tf.nn.softmax)(h)"),
    ("fan_in = filter_shape[0] * filter_shape[1] * filter_shape[2]\n        limit = "
     "(6.0 / fan_in) ** 0.5",
     "tf.nn.max_pool(value=x, ksize=self.ksize, strides=self.strides, padding=self.padding)",
     "tf.add(tf.matmul(x, self.W), self.b)", "dense = Dense(800, 10, function=tf.nn.softmax)\n"
     "y = dense(h)"),
    ("n_in = int(np.prod(filter_shape[:-1]))\n        limit = np.sqrt(6.0 / n_in)",
     "tf.nn.pool(x, window_shape=self.ksize[1:3], pooling_type='MAX', padding=self.padding, "
     "strides=self.strides[1:3])",
     "tf.nn.bias_add(tf.matmul(x, self.W), self.b)",
     "n_flat = h.get_shape().as_list()[1]\ny = Dense(n_flat, 10, tf.nn.softmax)(h)"),
    ("h_, w_, c_in, c_out = filter_shape\n        limit = np.sqrt(6 / (h_ * w_ * c_in))",
     "tf.layers.max_pooling2d(x, self.ksize[1], self.strides[1], padding=self.padding)",
     "x @ self.W + self.b", "out_layer = Dense(int(h.shape[1]), 10, tf.nn.softmax)\n"
     "y = out_layer(h)"),
    ("receptive = filter_shape[0] * filter_shape[1]\n        limit = "
     "np.sqrt(6 / (receptive * filter_shape[2]))",
     "tf.nn.max_pool(x, ksize=list(self.ksize), strides=list(self.strides), "
     "padding=self.padding)",
     "tf.matmul(x, self.W) + tf.reshape(self.b, [1, -1])",
     "logits_in = 800  # 4 x 4 x 50 after two conv/pool blocks\n"
     "y = Dense(logits_in, 10, tf.nn.softmax)(h)"),
]

_STYLES = (_style0, _style1, _style2, _style3, _style4)


def honest_notebook(template: nbformat.NotebookNode, student: int) -> bytes:
    """The template with its blanks filled in by honest student ``student`` (0..4)."""
    conv, pool, dense, model = _LAYERS[student]
    cells = _STYLES[student]()
    cells["conv-layer"] = (
        "class Conv:\n"
        "    def __init__(self, filter_shape, function=lambda x: x, strides=[1,1,1,1], "
        "padding='VALID'):\n"
        f"        {conv}\n"
        "        self.W = tf.Variable(rng.uniform(low=-limit, high=limit, size=filter_shape)"
        ".astype('float32'), name='W')\n"
        "        self.b = tf.Variable(np.zeros((filter_shape[3]), dtype='float32'), name='b')\n"
        "        self.function = function\n        self.strides = strides\n"
        "        self.padding = padding\n\n"
        "    def __call__(self, x):\n"
        "        return self.function(tf.nn.conv2d(x, self.W, self.strides, self.padding) "
        "+ self.b)")
    cells["pooling-layer"] = (
        "class Pooling:\n"
        "    def __init__(self, ksize=[1,2,2,1], strides=[1,2,2,1], padding='VALID'):\n"
        "        self.ksize = ksize\n        self.strides = strides\n"
        "        self.padding = padding\n\n"
        f"    def __call__(self, x):\n        return {pool}")
    cells["dense-layer"] = (
        "class Dense:\n"
        "    def __init__(self, in_dim, out_dim, function=lambda x: x):\n"
        f"        bound = np.sqrt(6 / in_dim)  # He, student {student}\n"
        "        self.W = tf.Variable(rng.uniform(-bound, bound, size=(in_dim, out_dim))"
        ".astype('float32'), name='W')\n"
        "        self.b = tf.Variable(np.zeros([out_dim]).astype('float32'))\n"
        "        self.function = function\n\n"
        f"    def __call__(self, x):\n        return self.function({dense})")
    nb = copy.deepcopy(template)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if cell.get("id") in cells:
            cell.source = cells[cell["id"]]
        elif cell.get("id") == "model":
            cell.source = cell.source.replace("y = #WRITE ME", model)
    assert not any("#WRITE ME" in c.source for c in nb.cells if c.cell_type == "code")
    return nbformat.writes(nb).encode()


# --- fingerprints ------------------------------------------------------------------------------

def _with_errors(truth: np.ndarray, where: np.ndarray, rng: np.random.Generator) -> bytes:
    predicted = truth.astype(np.uint8).copy()
    predicted[where] = (truth[where] + rng.integers(1, 10, size=len(where))) % 10
    return predicted.tobytes()


def fingerprint(labels: Mapping[str, np.ndarray], seed: int, weights: str | None = None,
                like: ModelFingerprint | None = None, error_rate: float = 0.02,
                shared: float = 0.95) -> ModelFingerprint:
    """A model's fingerprint over the plain sets ``test`` and ``holdout`` of ``labels``: its
    own errors at ``error_rate`` (seeded), or, ``like`` another, the same training run again:
    ``shared`` of that model's errors kept, a few of its own."""
    rng = np.random.default_rng(seed)
    predictions = {}
    for name in ("test", "holdout"):
        truth = labels[name]
        if like is None:
            where = rng.choice(len(truth), size=int(len(truth) * error_rate), replace=False)
            predictions[name] = _with_errors(truth, where, rng)
            continue
        theirs = like.labels(name).copy()
        wrong = np.flatnonzero(theirs != truth)
        fixed = rng.choice(wrong, size=int(len(wrong) * (1 - shared)), replace=False)
        theirs[fixed] = truth[fixed]
        own = rng.choice(len(truth), size=len(fixed), replace=False)
        mine = np.frombuffer(_with_errors(truth, own, rng), dtype=np.uint8)
        theirs[own] = mine[own]
        predictions[name] = theirs.astype(np.uint8).tobytes()
    return ModelFingerprint(weights=weights or f"{seed:064x}", predictions=predictions)
