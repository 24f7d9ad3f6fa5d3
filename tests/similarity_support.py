"""Notebooks for the similarity tests, made from the lecture's real ones by rules a reader can
check: a copy with every name its writer chose renamed and two cells swapped, and honest
variants of the solution (each answer written one of the ways students write it)."""

from __future__ import annotations

import ast
import copy
import io
import random
import re
import tokenize
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "exercises" / "chap06_cnn" / "template.ipynb"
SOLUTION = ROOT / "reference" / "chap06_cnn" / "solution.ipynb"
INDEPENDENT = ROOT / "tests" / "data" / "similarity" / "independent.ipynb"

_MAGIC = re.compile(r"^\s*%%.*\n")


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def renamed_copy(nb: nbformat.NotebookNode, swap: tuple[int, int]) -> nbformat.NotebookNode:
    """``nb`` with every user-chosen name renamed (variables, functions, classes, parameters,
    ``self.`` attributes, import aliases; ``self`` and library names kept) and the code cells
    at indices ``swap`` exchanged."""
    out = copy.deepcopy(nb)
    sources = {i: c.source for i, c in enumerate(out.cells) if c.cell_type == "code"}
    trees = {i: ast.parse(_body(s)[1]) for i, s in sources.items()}
    names, attrs, callables = _user_names(trees.values())
    mapping = {name: f"{name}_mine" if len(name) > 2 else f"{name}{name}_q" for name in names}
    attr_mapping = {name: f"my_{name}" for name in attrs}
    for i, source in sources.items():
        head, body = _body(source)
        out.cells[i].source = head + _rename(body, trees[i], mapping, attr_mapping, callables)
    a, b = swap
    assert out.cells[a].cell_type == out.cells[b].cell_type == "code"
    out.cells[a], out.cells[b] = out.cells[b], out.cells[a]
    return out


def _body(source: str) -> tuple[str, str]:
    """A cell magic's line apart from the Python under it."""
    m = _MAGIC.match(source)
    return (m.group(0), source[m.end():]) if m else ("", source)


def _user_names(trees: object) -> tuple[set[str], set[str], set[str]]:
    names: set[str] = set()
    attrs: set[str] = set()
    callables: set[str] = set()
    for tree in trees:  # type: ignore[attr-defined]
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.FunctionDef | ast.ClassDef):
                if node.name.startswith("__"):
                    continue  # __init__, __call__: Python's names, not the writer's
                names.add(node.name)
                callables.add(node.name)
            elif isinstance(node, ast.arg) and node.arg != "self":
                names.add(node.arg)
            elif isinstance(node, ast.alias) and node.asname:
                names.add(node.asname)
            elif (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
                  and isinstance(node.value, ast.Name) and node.value.id == "self"):
                attrs.add(node.attr)
    return names, attrs, callables


def _rename(source: str, tree: ast.Module, mapping: dict[str, str], attr_mapping: dict[str, str],
            callables: set[str]) -> str:
    """Rewrite the NAME tokens the tree says are user names (positions from ast, checked
    against tokenize's tokens so nothing else is touched)."""
    at: dict[tuple[int, int], str] = {}  # (line, column in characters) -> new name
    lines = source.splitlines(keepends=True)

    def char_col(line: int, byte_col: int) -> int:
        return len(lines[line - 1].encode()[:byte_col].decode())

    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in mapping:
            at[(node.lineno, char_col(node.lineno, node.col_offset))] = mapping[node.id]
        elif isinstance(node, ast.arg) and node.arg in mapping:
            at[(node.lineno, char_col(node.lineno, node.col_offset))] = mapping[node.arg]
        elif (isinstance(node, ast.Attribute) and node.attr in attr_mapping
              and isinstance(node.value, ast.Name) and node.value.id == "self"):
            end = char_col(node.end_lineno or node.lineno, node.end_col_offset or 0)
            at[(node.end_lineno or node.lineno, end - len(node.attr))] = attr_mapping[node.attr]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in callables):
            for kw in node.keywords:
                if kw.arg in mapping:
                    at[(kw.lineno, char_col(kw.lineno, kw.col_offset))] = mapping[kw.arg]
    aliases = [n for n in ast.walk(tree) if isinstance(n, ast.alias) and n.asname in mapping]

    out: list[tokenize.TokenInfo] = []
    previous = ""
    pending_alias = {(a.lineno, char_col(a.lineno, a.col_offset)): a for a in aliases}
    alias_next = False
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        new = None
        if tok.type == tokenize.NAME:
            if tok.start in at:
                new = at[tok.start]
            elif previous in {"def", "class"} and tok.string in mapping:
                new = mapping[tok.string]
            elif previous == "as" and alias_next:
                new = mapping.get(tok.string)
        if tok.start in pending_alias:
            alias_next = True
        if tok.type == tokenize.NEWLINE:
            alias_next = False
        out.append(tok._replace(string=new) if new else tok)
        if tok.type not in {tokenize.NL, tokenize.COMMENT}:
            previous = tok.string
    return tokenize.untokenize(out)


# --- honest variants ------------------------------------------------------------------------

# Each answer of the solution and ways honest students write it instead (the first: the
# solution's own). A student picks one per answer; the template's code stays as handed out.
ALTERNATIVES: dict[str, list[str]] = {
    "fan_in = np.prod(filter_shape[:3])": [
        "fan_in = np.prod(filter_shape[:3])",
        "fan_in = filter_shape[0] * filter_shape[1] * filter_shape[2]",
        "fan_in = np.prod(filter_shape[0:3])",
    ],
    "fan_out = np.prod(filter_shape[:2]) * filter_shape[3]": [
        "fan_out = np.prod(filter_shape[:2]) * filter_shape[3]",
        "fan_out = filter_shape[0] * filter_shape[1] * filter_shape[3]",
        "fan_out = np.prod(filter_shape[[0, 1, 3]])",
    ],
    "low=-np.sqrt(6 / fan_in),": [
        "low=-np.sqrt(6 / fan_in),",
        "low=-np.sqrt(6.0 / fan_in),",
        "low=-(6 / fan_in) ** 0.5,",
    ],
    "high=np.sqrt(6 / fan_in),": [
        "high=np.sqrt(6 / fan_in),",
        "high=np.sqrt(6.0 / fan_in),",
        "high=(6 / fan_in) ** 0.5,",
    ],
    "u = tf.nn.conv2d(x, self.W, strides=self.strides, padding=self.padding) + self.b": [
        "u = tf.nn.conv2d(x, self.W, strides=self.strides, padding=self.padding) + self.b",
        "u = tf.nn.conv2d(x, self.W, self.strides, self.padding) + self.b",
        "u = tf.add(tf.nn.conv2d(x, self.W, strides=self.strides, padding=self.padding), self.b)",
    ],
    "return tf.nn.max_pool(x, ksize=self.ksize, strides=self.strides, padding=self.padding)": [
        "return tf.nn.max_pool(x, ksize=self.ksize, strides=self.strides, padding=self.padding)",
        "return tf.nn.max_pool(x, self.ksize, self.strides, self.padding)",
    ],
    "low=-np.sqrt(6 / in_dim),": [
        "low=-np.sqrt(6 / in_dim),",
        "low=-np.sqrt(6.0 / in_dim),",
        "low=-np.sqrt(6 / float(in_dim)),",
    ],
    "high=np.sqrt(6 / in_dim),": [
        "high=np.sqrt(6 / in_dim),",
        "high=np.sqrt(6.0 / in_dim),",
        "high=np.sqrt(6 / float(in_dim)),",
    ],
    "return self.function(tf.matmul(x, self.W) + self.b)": [
        "return self.function(tf.matmul(x, self.W) + self.b)",
        "return self.function(tf.add(tf.matmul(x, self.W), self.b))",
        "u = tf.matmul(x, self.W) + self.b\n        return self.function(u)",
    ],
    "y = Dense(800, 10, tf.nn.softmax)(h)": [
        "y = Dense(800, 10, tf.nn.softmax)(h)",
        "y = Dense(4*4*50, 10, tf.nn.softmax)(h)",
        "y = Dense(4 * 4 * 50, 10, tf.nn.softmax)(h)",
    ],
    "tf.nn.avg_pool(x, ksize=[1,2,2,1], strides=[1,2,2,1], padding='VALID')\n\nwith tf.Session() as sess:\n    print(sess.run(pooled_image, feed_dict={x: sample_image}).reshape(3, 3))": [
        "tf.nn.avg_pool(x, ksize=[1,2,2,1], strides=[1,2,2,1], padding='VALID')\n\nwith tf.Session() as sess:\n    print(sess.run(pooled_image, feed_dict={x: sample_image}).reshape(3, 3))",
        "tf.nn.avg_pool(x, [1, 2, 2, 1], [1, 2, 2, 1], 'VALID')\n\nwith tf.Session() as sess:\n    print(sess.run(pooled_image, feed_dict={x: sample_image}).reshape(3, 3))",
    ],
}


def honest_variant(solution: nbformat.NotebookNode, seed: int) -> nbformat.NotebookNode:
    """The solution with each answer written one of the honest ways (picked by ``seed``), at
    least two of them differently from the solution."""
    rng = random.Random(seed)
    choices = {k: rng.randrange(len(v)) for k, v in ALTERNATIVES.items()}
    while sum(1 for c in choices.values() if c) < 2:
        choices[rng.choice(list(ALTERNATIVES))] = 1
    out = copy.deepcopy(solution)
    for cell in out.cells:
        if cell.cell_type != "code":
            continue
        for original, options in ALTERNATIVES.items():
            if original in cell.source:
                cell.source = cell.source.replace(original, options[choices[original]])
    return out
