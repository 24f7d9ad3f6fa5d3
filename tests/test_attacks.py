"""The attack suite of issue 7: notebooks written by a student who wants full marks without the
work, or the instructor's secrets, graded in the real sandboxes.

Each test asserts the points its attack must NOT earn and, where it means something, that the
same notebook still earns its honest points elsewhere, so the test can fail. Which layer stops
each attack is in ``docs/security.md``. Notebooks are cut short: training is one epoch or none.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
import numpy as np
import pytest

from grader.pipeline import Progress, grade_notebook
from grader.report import ItemStatus, Outcome

pytestmark = pytest.mark.sandbox

CONV_POOL = ("conv1", "conv2", "conv3", "pool1", "pool2", "pool3")
LAYERS = ("conv_layer", "pooling_layer", "dense_layer")


def en(report, item_id: str) -> str:
    return " ".join(t.en for t in report.item(item_id).feedback)


def printed(report, cell_id: str) -> str:
    """What a cell of the executed notebook printed (stdout and stderr)."""
    nb = nbformat.reads(report.executed_notebook, as_version=4)
    cell = next(c for c in nb.cells if c.get("id") == cell_id)
    return "".join(o.get("text", "") for o in cell.get("outputs", [])
                   if o.get("output_type") == "stream")


def full_marks(report, items) -> bool:
    return all(report.item(i).score == report.item(i).max_score for i in items)


# --- shared cells -------------------------------------------------------------------------

#: Instead of the training cell: variables initialised, nothing learnt, a fine accuracy printed.
NO_TRAINING = """init = tf.global_variables_initializer()
with tf.Session() as sess:
    sess.run(init)
    y_pred = sess.run(y, feed_dict={x: x_valid[:2000]})
    print('EPOCH: 10, Valid Accuracy: {:.3f}'.format(
        accuracy_score(t_valid[:2000].argmax(axis=1), y_pred.argmax(axis=1))))
"""

#: One honest epoch (about 5 s): measured around 0.92, between the floor and the threshold.
ONE_EPOCH = """init = tf.global_variables_initializer()
with tf.Session() as sess:
    sess.run(init)
    for start in range(0, len(x_train), 100):
        sess.run(train, feed_dict={x: x_train[start:start + 100], t: t_train[start:start + 100]})
    y_pred = sess.run(y, feed_dict={x: x_valid[:2000]})
    print('EPOCH: 1, Valid Accuracy: {:.3f}'.format(
        accuracy_score(t_valid[:2000].argmax(axis=1), y_pred.argmax(axis=1))))
"""

# --- 1. the blank template and an exporter replaced in the kernel -------------------------

#: One extra cell: IPython skips the graded cells, and every export returns a hand-made graph
#: with the right answer (the layer classes and the model built here, the model untrained).
FORGED_EXPORTER = r'''
import sys, base64, itertools
import numpy as np
import tensorflow as tf

_exp = sys.modules['_grader_exporter']
_boot = sys.modules['_grader_boot']

def _skip_graded(lines):
    text = ''.join(lines)
    return ['pass\n'] if ('#WRITE ME' in text or 'n_epochs' in text) else lines
get_ipython().input_transformers_cleanup.append(_skip_graded)

_W = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], dtype='float32').reshape(3, 3, 1, 1)
def _conv(s, p):
    return lambda x: tf.nn.conv2d(x, _W, strides=[1, s, s, 1], padding=p)
def _pool(f, s):
    return lambda x: f(x, ksize=[1, 2, 2, 1], strides=[1, s, s, 1], padding='VALID')
_ANSWERS = {'convoluted_image': iter([_conv(1, 'VALID'), _conv(2, 'VALID'), _conv(1, 'SAME')]),
            'pooled_image': iter([_pool(tf.nn.max_pool, 2), _pool(tf.nn.max_pool, 1),
                                  _pool(tf.nn.avg_pool, 2)])}

def _b64(graph_def):
    return base64.b64encode(graph_def.SerializeToString()).decode()

def _tensor(expr, feed, context=None):
    graph = tf.Graph()
    with graph.as_default():
        x = tf.placeholder(tf.float32, name='x')
        out = next(_ANSWERS[expr])(x)
    return {'kind': 'graph', 'graph_def': _b64(graph.as_graph_def()), 'output': out.name,
            'inputs': {'x': x.name}}

class _Conv:
    def __init__(self, shape, function=lambda x: x, strides=[1, 1, 1, 1], padding='VALID'):
        bound = np.sqrt(6 / np.prod(shape[:3]))
        self.W = tf.Variable(tf.random_uniform(shape, -bound, bound), name='W')
        self.b = tf.Variable(tf.zeros([shape[3]]), name='b')
        self.function, self.strides, self.padding = function, strides, padding
    def __call__(self, x):
        return self.function(tf.nn.conv2d(x, self.W, self.strides, self.padding) + self.b)

class _Pooling:
    def __init__(self, ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding='VALID'):
        self.ksize, self.strides, self.padding = ksize, strides, padding
    def __call__(self, x):
        return tf.nn.max_pool(x, ksize=self.ksize, strides=self.strides, padding=self.padding)

class _Dense:
    def __init__(self, n_in, n_out, function=lambda x: x):
        bound = np.sqrt(6 / n_in)
        self.W = tf.Variable(tf.random_uniform([n_in, n_out], -bound, bound), name='W')
        self.b = tf.Variable(tf.zeros([n_out]))
        self.function = function
    def __call__(self, x):
        return self.function(tf.matmul(x, self.W) + self.b)

_original_layer = _exp.layer
def _layer(cls, args, kwargs, input_shape):
    main = sys.modules['__main__'].__dict__
    saved = main.get(cls)
    main[cls] = {'Conv': _Conv, 'Pooling': _Pooling, 'Dense': _Dense}[cls]
    try:
        return _original_layer(cls, args, kwargs, input_shape)
    finally:
        main[cls] = saved

def _model(expr, trained=False):
    graph = tf.Graph()
    with graph.as_default():
        x = tf.placeholder(tf.float32, [None, 28, 28, 1])
        h = _Pooling()(_Conv((5, 5, 1, 20), tf.nn.relu)(x))
        h = _Pooling()(_Conv((5, 5, 20, 50), tf.nn.relu)(h))
        y = _Dense(800, 10, tf.nn.softmax)(tf.reshape(h, (-1, 800)))
        variables = tf.global_variables()
        with tf.Session() as sess:
            _boot._probing = True
            sess.run(tf.global_variables_initializer())
            values = sess.run(variables)
            _boot._probing = False
    sub = tf.graph_util.extract_sub_graph(graph.as_graph_def(), [y.op.name])
    export = {'kind': 'graph', 'graph_def': _b64(sub), 'output': y.name,
              'inputs': {'x': x.name}, 'trained': True, 'accuracy': 1.0}
    if trained:   # initialised, never trained, claimed trained
        export['variables'] = {v.op.name: _exp.pack_array(a) for v, a in zip(variables, values)}
    return export

_ids = itertools.count(1)
def _identity(expr):
    return {'defined': True, 'id': next(_ids)}   # "assigned anew in this cell", always

_FORGED = {'identity': _identity, 'tensor': _tensor, 'layer': _layer, 'model': _model}
_exp.EXPORTS.clear()
_exp.EXPORTS.update(_FORGED)
for _name, _function in _FORGED.items():
    setattr(_exp, _name, _function)
'''

#: The template's #WRITE ME blanks replaced by code that parses and binds the answer's name.
PARSING_BLANKS = {
    **{c: "convoluted_image = None" for c in ("conv1", "conv2", "conv3")},
    **{c: "pooled_image = None" for c in ("pool1", "pool2", "pool3")},
    "conv-layer": "class Conv:\n    pass",
    "pooling-layer": "class Pooling:\n    pass",
    "dense-layer": "class Dense:\n    pass",
    "model": "tf.reset_default_graph()\nx = tf.placeholder(tf.float32, [None, 28, 28, 1])\n"
             "t = tf.placeholder(tf.float32, [None, 10])\ny = None",
}


def test_blank_template_with_a_forged_exporter_earns_nothing(
    make_notebook, template_nb, exercise, config, sandbox
):
    data = make_notebook(base=template_nb, insert_after={"imports": [FORGED_EXPORTER]})
    report = grade_notebook(data, exercise, config, sandbox)
    assert report.outcome is Outcome.GRADED, report.reason
    for item_id in (*CONV_POOL, "conv_layer", "dense_layer", "model"):
        # the host parsed the cell: #WRITE ME is a syntax error there, whatever the kernel ran
        assert report.item(item_id).score == 0, item_id
        assert "syntax error" in en(report, item_id), item_id
    # the claimed-trained model was measured, untrained, in the clean room
    assert report.item("accuracy").score == 0
    assert report.measured_accuracy < 0.3
    # The template's pooling-layer cell parses (`return #WRITE ME` is `return`), so the correct
    # Pooling class this cell wrote elsewhere is credited: work done elsewhere is still work
    # (docs/security.md, residual risks). Every other item earns nothing.
    assert report.item("pooling_layer").score == 6
    assert report.score == 6

    # Control: the same forged exporter, the graded cells parsing and binding their names.
    # The forged graphs are right; only the host's reading of the source stopped them above.
    data = make_notebook(base=template_nb, replace=PARSING_BLANKS,
                         insert_after={"imports": [FORGED_EXPORTER]})
    control = grade_notebook(data, exercise, config, sandbox)
    assert control.outcome is Outcome.GRADED, control.reason
    assert full_marks(control, (*CONV_POOL, *LAYERS, "model"))
    assert control.item("accuracy").score == 0 and control.measured_accuracy < 0.3


# --- 2. an untrained model passed off as trained ------------------------------------------

#: The model export replaced: the untrained graph, its initial values, and claims on top.
FORGED_MODEL_EXPORT = r'''
import sys
_exp = sys.modules['_grader_exporter']
def _model(expr, trained=False):
    y_ = sys.modules['__main__'].__dict__[expr]
    export = _exp._graph_export(y_.graph, y_)
    with y_.graph.as_default():
        variables = tf.global_variables()
        sess = tf.Session()
        sess.run(tf.variables_initializer(variables))
        values = sess.run(variables)
    export['variables'] = {v.op.name: _exp.pack_array(a) for v, a in zip(variables, values)}
    export.update(trained=True, ok=True, accuracy=1.0, measured_accuracy=1.0, parameters=0,
                  predictions={'test': t_valid.argmax(1).tolist()})
    return export
_exp.EXPORTS['model'] = _exp.model = _model
'''

#: numpy, scikit-learn and TensorFlow's Session patched so that the kernel "predicts" labels.
PATCHED_NUMPY_AND_TENSORFLOW = r'''
import numpy as np
import sklearn.metrics
from tensorflow.python.client import session as _session
_labels = {x_valid[i].tobytes(): t_valid[i] for i in range(len(x_valid))}
def _truth(images):
    return np.stack([_labels.get(np.asarray(im, dtype=np.float32).tobytes(), np.eye(10)[0])
                     for im in images])
_real_run = _session.BaseSession.run
def _run(self, fetches, feed_dict=None, *args, **kwargs):
    out = _real_run(self, fetches, feed_dict, *args, **kwargs)
    images = next((v for k, v in (feed_dict or {}).items()
                   if getattr(k, 'name', '') == x.name), None)
    return _truth(images) if images is not None and fetches is y else out
_session.BaseSession.run = _run
_real_argmax = np.argmax
def _argmax(a, axis=None, *args, **kwargs):
    a = np.asarray(a)
    if a.ndim == 2 and a.shape[1] == 10:
        return _real_argmax(_truth(x_valid[:len(a)]), axis=1)
    return _real_argmax(a, axis, *args, **kwargs)
np.argmax = _argmax
np.mean = lambda *args, **kwargs: 1.0
sklearn.metrics.accuracy_score = accuracy_score = lambda *args, **kwargs: 1.0
'''

#: A forged runner record and forged exports wherever the kernel can write, then made read-only.
FORGED_RESULT_FILES = r'''
import json, os
_items = ("conv1", "conv2", "conv3", "pool1", "pool2", "pool3", "conv_layer",
          "pooling_layer", "dense_layer", "model", "accuracy")
_forged = {"version": 2, "status": "completed",
           "cells": [{"index": i, "status": "ok"} for i in range(200)],
           "exports": {item: {"file": "0.json"} for item in _items},
           "fresh": {item: True for item in _items}, "bootstrap": [], "timings": {}}
_export = {"kind": "graph", "graph_def": "", "output": "y:0", "accuracy": 1.0}
_written, _refused = [], []
def _forge(folder):
    try:
        os.makedirs(os.path.join(folder, "exports"), exist_ok=True)
        with open(os.path.join(folder, "result.json"), "w") as f:
            json.dump(_forged, f)
        for n in range(20):
            with open(os.path.join(folder, "exports", f"{n}.json"), "w") as f:
                json.dump(_export, f)
        os.chmod(folder, 0o555)
        _written.append(folder)
    except OSError as exc:
        _refused.append(f"{folder}: {exc.strerror}")
_roots = ["/job", "/tmp", "/home/sandbox", "/"]
for _pid in (p for p in os.listdir("/proc") if p.isdigit()):
    _roots += [f"/proc/{_pid}/root/job", f"/proc/{_pid}/cwd", f"/proc/{_pid}/root/tmp"]
for _root in _roots:
    _forge(os.path.join(_root, "out"))
print("WRITTEN", _written)
print("REFUSED", _refused)
'''

WRONG_CONV1 = "convoluted_image = tf.nn.conv2d(x, W, strides=[1,1,1,1], padding='SAME')"

UNTRAINED = {
    "forged_model_export": dict(
        replace={"train": "print('EPOCH: 10, Valid Cost: 0.050, Valid Accuracy: 0.990')"},
        insert_after={"model": [FORGED_MODEL_EXPORT]}),
    "patched_numpy_and_tensorflow": dict(
        replace={"train": NO_TRAINING},
        insert_after={"model": [PATCHED_NUMPY_AND_TENSORFLOW]}),
    "forged_result_files": dict(
        replace={"train": NO_TRAINING, "conv1": WRONG_CONV1},
        insert_after={"train": [FORGED_RESULT_FILES]}),
}


@pytest.mark.parametrize("attack", list(UNTRAINED))
def test_untrained_model_earns_no_accuracy_points(
    attack, make_notebook, exercise, config, sandbox
):
    data = make_notebook(keep_until="train", **UNTRAINED[attack])
    report = grade_notebook(data, exercise, config, sandbox)
    assert report.outcome is Outcome.GRADED, report.reason
    accuracy = report.item("accuracy")
    assert accuracy.score == 0 and accuracy.status is ItemStatus.INCORRECT
    # measured in the clean room on the untrained values: about chance, whatever was claimed
    assert report.measured_accuracy < 0.3
    assert set(accuracy.details["accuracies"]) == {"test", "holdout", "test-moved", "holdout-moved"}
    if attack != "forged_result_files":
        assert report.claimed_accuracy >= 0.99  # the notebook printed a fine accuracy
        assert "but the grader measured" in en(report, "accuracy")
    # the rest of the notebook keeps its honest points
    assert full_marks(report, (*CONV_POOL[1:], *LAYERS, "model"))
    if attack == "forged_result_files":
        assert "/job/out" in printed(report, "train-extra0").split("REFUSED")[0]
        assert report.item("conv1").score == 0  # its honest, wrong answer: not the forged one
    else:
        assert report.item("conv1").score == 6


# --- 3. constants as answers --------------------------------------------------------------

IMAGE = np.array([[1, 1, 1, 0, 0, 1, 0],
                  [0, 1, 0, 1, 0, 1, 1],
                  [1, 0, 1, 1, 1, 0, 1],
                  [0, 0, 1, 1, 0, 1, 1],
                  [1, 1, 1, 1, 0, 0, 1],
                  [0, 1, 1, 1, 1, 1, 1],
                  [0, 1, 1, 0, 0, 1, 0]])
FILTER = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]])
POOL_IMAGE = np.array([[77, 80, 82, 78, 70, 76, 75],
                       [83, 78, 78, 73, 82, 82, 85],
                       [87, 82, 81, 80, 74, 88, 70],
                       [87, 87, 85, 77, 66, 83, 87],
                       [81, 83, 77, 79, 66, 83, 87],
                       [87, 87, 83, 70, 66, 83, 87],
                       [84, 79, 77, 78, 76, 75, 80]])


def _windows(image: np.ndarray, size: int) -> np.ndarray:
    return np.lib.stride_tricks.sliding_window_view(image, (size, size))


#: The right values, typed in (computed here with NumPy, as a student could by hand).
CONV1_VALUES = np.einsum("ijkl,kl->ij", _windows(IMAGE, 3), FILTER).tolist()
POOL1_VALUES = _windows(POOL_IMAGE, 2)[::2, ::2].max(axis=(2, 3)).tolist()
POOL2_VALUES = _windows(POOL_IMAGE, 2).max(axis=(2, 3)).tolist()
CONV2_VALUES = np.asarray(CONV1_VALUES)[::2, ::2].tolist()

CONSTANT_ANSWERS = {
    # a tf.constant of the right values
    "conv1": f"convoluted_image = tf.constant(np.array({CONV1_VALUES}, dtype=np.float32)"
             ".reshape(1, 5, 5, 1))",
    # a NumPy array of the right values
    "conv2": f"convoluted_image = np.array({CONV2_VALUES}, dtype=np.float32).reshape(1, 3, 3, 1)",
    # the right op on a constant copy of the image: a graph that ignores x
    "conv3": "convoluted_image = tf.nn.conv2d(tf.constant(sample_image), W, "
             "strides=[1,1,1,1], padding='SAME')",
    # right on the exercise's image only: reads x, answers the typed-in values when x is it
    "pool1": f"_answer = tf.constant(np.array({POOL1_VALUES}, dtype=np.float32)"
             ".reshape(1, 3, 3, 1))\n"
             "_is_exercise = tf.equal(tf.reduce_sum(tf.abs(x - sample_image)), 0.0)\n"
             "pooled_image = tf.where(_is_exercise, _answer, tf.zeros_like(_answer))",
    # the values in a variable
    "pool2": f"pooled_image = tf.Variable(np.array({POOL2_VALUES}, dtype=np.float32)"
             ".reshape(1, 6, 6, 1))",
}


def test_constants_as_answers_earn_nothing(make_notebook, exercise, config, sandbox):
    data = make_notebook(replace=CONSTANT_ANSWERS, keep_until="pool3")
    report = grade_notebook(data, exercise, config, sandbox)
    assert report.outcome is Outcome.GRADED, report.reason
    assert {i: report.item(i).score for i in CONV_POOL} == {
        "conv1": 0, "conv2": 0, "conv3": 0, "pool1": 0, "pool2": 0, "pool3": 6}
    other_images = "not for other images the grader fed to x"
    for item_id in ("conv1", "conv3", "pool1"):  # right on the exercise's image, caught by the rest
        assert other_images in en(report, item_id), item_id
        assert report.item(item_id).details["fresh_images_ok"] is False
    assert "not a TensorFlow tensor" in en(report, "conv2")
    assert report.item("pool2").status is ItemStatus.ERROR


# --- 4. ops the clean room does not run ---------------------------------------------------

NUMPY_CONV = """def _numpy_conv(image, stride=1, pad=0):
    image = np.pad(np.asarray(image).reshape(7, 7), pad)
    windows = np.lib.stride_tricks.sliding_window_view(image, (3, 3))[::stride, ::stride]
    out = np.einsum('ijkl,kl->ij', windows, W.reshape(3, 3)).astype(np.float32)
    return out.reshape(1, *out.shape, 1)
"""

#: A model that looks each test image up in a hash table of the test labels.
LOOKUP_TABLE_MODEL = """tf.reset_default_graph()
x = tf.placeholder(tf.float32, [None, 28, 28, 1])
t = tf.placeholder(tf.float32, [None, 10])
_proj = np.random.RandomState(0).randint(1, 2**40, size=784).astype(np.int64)
def _keys(images):
    return np.rint(images.reshape(len(images), -1) * 255).astype(np.int64) @ _proj
_table = dict(zip(_keys(x_valid).tolist(), t_valid.argmax(axis=1).tolist()))
_lookup = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
    np.array(list(_table), dtype=np.int64), np.array(list(_table.values()), dtype=np.int64)),
    default_value=0)
_key = tf.reduce_sum(tf.cast(tf.round(tf.reshape(x, [-1, 784]) * 255), tf.int64) * _proj, axis=1)
_scale = tf.Variable(10.0)
y = tf.nn.softmax(_scale * tf.one_hot(_lookup.lookup(_key), 10))
"""

FORBIDDEN_OPS = {
    "conv1": NUMPY_CONV + "convoluted_image = tf.py_func(_numpy_conv, [x], tf.float32)",
    "conv2": "convoluted_image = tf.numpy_function(lambda a: _numpy_conv(a, stride=2), [x], "
             "tf.float32)",
    "conv3": "convoluted_image = tf.py_function(lambda a: _numpy_conv(a.numpy(), pad=1), [x], "
             "tf.float32)",
    "pool1": "np.array([[82, 80, 88], [87, 85, 87], [87, 83, 87]], dtype=np.float32)"
             ".tofile('/tmp/pool1.bin')\n"
             "_raw = tf.io.decode_raw(tf.io.read_file('/tmp/pool1.bin'), tf.float32)\n"
             "pooled_image = tf.reshape(_raw, [1, 3, 3, 1]) + 0 * tf.reduce_sum(x)",
    "pool2": "_ballast = tf.constant(np.zeros(2_000_000, dtype=np.float32))\n"
             "pooled_image = tf.nn.max_pool(x, ksize=[1,2,2,1], strides=[1,1,1,1], "
             "padding='VALID') + tf.reduce_sum(_ballast)",
    "model": LOOKUP_TABLE_MODEL,
    "train": """with tf.Session() as sess:
    sess.run([tf.global_variables_initializer(), tf.tables_initializer()])
    print('Valid Accuracy: {:.3f}'.format(accuracy_score(
        t_valid.argmax(axis=1), sess.run(y, feed_dict={x: x_valid}).argmax(axis=1))))
""",
}


def test_forbidden_ops_are_refused_and_named(make_notebook, exercise, config, sandbox):
    data = make_notebook(replace=FORBIDDEN_OPS, keep_until="train")
    report = grade_notebook(data, exercise, config, sandbox)
    assert report.outcome is Outcome.GRADED, report.reason
    assert "Valid Accuracy: 1.000" in printed(report, "train")  # the table works in the kernel
    refused = {"conv1": "PyFunc", "conv2": "PyFunc", "conv3": "EagerPyFunc",
               "pool1": "ReadFile", "model": "LookupTableFindV2",
               "accuracy": "LookupTableFindV2"}
    for item_id, op in refused.items():
        assert report.item(item_id).score == 0, item_id
        assert report.item(item_id).status is ItemStatus.ERROR, item_id
        assert "operations the grader does not run" in en(report, item_id), item_id
        assert op in en(report, item_id), item_id
    assert report.item("pool2").score == 0
    assert "oversized constant" in en(report, "pool2")
    assert full_marks(report, ("pool3", *LAYERS))  # honest cells in the same notebook


# --- 5. memorising models -----------------------------------------------------------------

MODEL_HEAD = """tf.reset_default_graph()
x = tf.placeholder(tf.float32, [None, 28, 28, 1])
t = tf.placeholder(tf.float32, [None, 10])
"""

MEMORISING_MODELS = {
    # nearest neighbour over the 10,000 test images: 7.84M values in the "weights"
    "nearest_test_image": MODEL_HEAD + """_memory = tf.Variable(x_valid.reshape(-1, 784))
_answers = tf.Variable(t_valid)
_flat = tf.reshape(x, [-1, 784])
_distance = (tf.reduce_sum(tf.square(_memory), axis=1)
             - 2 * tf.matmul(_flat, _memory, transpose_b=True))
y = tf.nn.softmax(10 * tf.gather(_answers, tf.argmin(_distance, axis=1)))
""",
    # one number per test image and its label: 110,784 values, right on the test images only
    "test_set_hash": MODEL_HEAD + """_v = np.random.RandomState(0).uniform(size=(784, 1)).astype(np.float32)
_proj = tf.Variable(_v)
_keys = tf.Variable((x_valid.reshape(-1, 784) @ _v).ravel())
_answers = tf.Variable(t_valid)
_key = tf.matmul(tf.reshape(x, [-1, 784]), _proj)
y = tf.nn.softmax(10 * tf.gather(_answers, tf.argmin(tf.abs(_key - _keys), axis=1)))
""",
    # nearest neighbour over as many training images (30 PCA components) as the budget allows
    "pca_nearest_training_image": MODEL_HEAD + """_k = 30
_flat_train = x_train.reshape(len(x_train), -1)
_mean = _flat_train.mean(axis=0)
_, _, _vt = np.linalg.svd(_flat_train[:20000] - _mean, full_matrices=False)
_n = (BUDGET - 784 * _k - 784) // (_k + 10)
_P = tf.Variable(_vt[:_k].T.astype(np.float32))
_m = tf.Variable(_mean.astype(np.float32))
_refs = tf.Variable(((_flat_train[:_n] - _mean) @ _vt[:_k].T).astype(np.float32))
_answers = tf.Variable(t_train[:_n])
_q = tf.matmul(tf.reshape(x, [-1, 784]) - _m, _P)
_distance = tf.reduce_sum(tf.square(_refs), axis=1) - 2 * tf.matmul(_q, _refs, transpose_b=True)
y = tf.nn.softmax(10 * tf.gather(_answers, tf.argmin(_distance, axis=1)))
""",
}

@pytest.mark.parametrize("model", [
    "nearest_test_image", "test_set_hash", "pca_nearest_training_image"])
def test_memorising_model_earns_no_accuracy_points(
    model, make_notebook, exercise, config, sandbox
):
    init = ("with tf.Session() as sess:\n    sess.run(tf.global_variables_initializer())\n"
            "    y_pred = sess.run(y, feed_dict={x: x_valid[:1000]})\n"
            "    print('Valid Accuracy: {:.3f}'.format(accuracy_score("
            "t_valid[:1000].argmax(axis=1), y_pred.argmax(axis=1))))")
    budget = exercise.accuracy.max_parameters
    cell = MEMORISING_MODELS[model].replace("BUDGET", str(budget))
    data = make_notebook(replace={"model": cell, "train": init}, keep_until="train")
    report = grade_notebook(data, exercise, config, sandbox)
    assert report.outcome is Outcome.GRADED, report.reason
    accuracy = report.item("accuracy")
    if model == "nearest_test_image":
        assert "Valid Accuracy: 1.000" in printed(report, "train")
        assert "too many values" in en(report, "accuracy")
        assert f"limit {budget}" in en(report, "accuracy")
    if model == "test_set_hash":  # within the budget, perfect on the test images...
        assert "Valid Accuracy: 1.000" in printed(report, "train")
        assert accuracy.details["accuracies"]["test"] > 0.99
        assert accuracy.details["accuracies"]["holdout"] < 0.3  # ...and lost on the held-out
        assert accuracy.details["memorised"] is True
        assert "memorises the test set" in en(report, "accuracy")
    if model == "pca_nearest_training_image":
        # 1-NN over as many training images in 30 PCA components as the budget holds (49,392
        # under the old 2,000,000, about 0.97 on both image sets; 2,750 under 134,328): it is
        # no Dense(800, 10) softmax network, so its accuracy counts for nothing (the model
        # item's checks and its data path, on the trained export)
        assert accuracy.details["structure_ok"] is False
        assert "not the network this exercise asks for" in en(report, "accuracy")
        assert "800" in en(report, "accuracy")
    assert accuracy.score == 0, accuracy.details
    assert full_marks(report, (*CONV_POOL, *LAYERS))


# --- 6. the host's environment and secret files -------------------------------------------

SNOOP_PROCESSES = r'''
import os
print("ENVIRON", dict(os.environ))
for pid in sorted(p for p in os.listdir("/proc") if p.isdigit()):
    for what in ("environ", "cmdline"):
        try:
            with open(f"/proc/{pid}/{what}", "rb") as f:
                print(f"/proc/{pid}/{what}", f.read()[:4000].replace(b"\0", b" "))
        except OSError as exc:
            print(f"/proc/{pid}/{what}", "refused:", exc.strerror)
for path in ("/proc/self/mountinfo", "/proc/net/unix", "/proc/net/tcp", "/etc/passwd"):
    try:
        print(path, open(path).read()[:6000])
    except OSError as exc:
        print(path, "refused:", exc.strerror)
'''

#: Walks everything it can see and lists what lies outside the Python runtime and ``/usr``
#: (public code, bound read-only); prints what looks secret there, and any readable file holding
#: the grader's canary prefix (built at run time so the cell's own source does not match).
SNOOP_FILES = r"""
import os, re, sys
import numpy as np
_secret_name = re.compile(r"expected\.json$|solution\.ipynb$|holdout|split\.json$|\.key$"
                          r"|mnist\.pkl|reference|export|/var/data|\.sqlite3?$|\.db$|\.env$")
_marker = ("grader" + "-canary-").encode()
_public = tuple(p.rstrip("/") + "/" for p in {sys.prefix, sys.base_prefix, "/usr"})
_skip = ("/proc", "/sys", "/dev")
_outside, _hits, _found, _seen = [], [], [], 0
with open("/home/sandbox/planted.txt", "wb") as _f:   # the search's own check
    _f.write(_marker + b"planted-by-the-notebook")
for _top in ("/", "/data", "/opt", "/job", "/tmp", "/home", "/root", "/work", "/var", "/srv"):
    for _root, _dirs, _files in os.walk(_top):
        if _root in _skip or _root.startswith(tuple(s + "/" for s in _skip)):
            _dirs[:] = []
            continue
        _seen += len(_dirs) + len(_files)
        if (_root + "/").startswith(_public):
            continue
        for _name in _dirs + _files:
            _path = os.path.join(_root, _name)
            _outside.append(_path)
            if _secret_name.search(_path) and not _path.startswith("/tmp/ipython/"):
                _hits.append(_path)
        for _name in _files:
            _path = os.path.join(_root, _name)
            try:
                with open(_path, "rb") as _f:
                    _data = _f.read(50_000_000)
                if _marker in _data:
                    _found.append((_path, _data[_data.index(_marker):][:100]))
            except OSError:
                pass
print("SEEN", _seen)
print("OUTSIDE", len(set(_outside)), sorted(set(_outside))[:1000])
print("HITS", sorted(set(_hits)))
print("CANARIES", _found)
with np.load("/data/mnist.npz") as _data:
    print("DATA", {key: _data[key].shape for key in _data.files})
print("DATA DIR", sorted(os.listdir("/data")))
"""


def test_host_environment_and_secret_files_stay_out_of_reach(
    make_notebook, exercise, config, sandbox, monkeypatch
):
    canaries = ["grader-canary-" + secrets.token_hex(16) for _ in range(2)]
    monkeypatch.setenv("SECRET_KEY", canaries[0])  # what the service signs sessions with
    monkeypatch.setenv("GRADER_CANARY", canaries[1])
    limits = exercise.limits.replace(cell_output_bytes=4 * 1024**2,
                                     notebook_output_bytes=8 * 1024**2)
    data = make_notebook(insert_after={"imports": [SNOOP_PROCESSES, SNOOP_FILES]},
                         keep_until="conv1")
    report = grade_notebook(data, exercise, config, sandbox, limits=limits)
    assert report.outcome is Outcome.GRADED, report.reason
    processes, files = printed(report, "imports-extra0"), printed(report, "imports-extra1")
    # the snooping ran: the kernel's own environment, PID 1's command line, the whole tree
    assert "'MPLBACKEND': 'Agg'" in processes and "/proc/1/cmdline b'" in processes
    assert int(files.split("SEEN ")[1].split()[0]) > 10_000
    assert "'/data/mnist.npz'" in files and "'/job'" in files
    everything = report.executed_notebook + json.dumps(report.to_dict(), ensure_ascii=False)
    for canary in canaries:
        assert canary not in everything
    assert "SECRET_KEY" not in processes and "GRADER_CANARY" not in processes
    found = files.split("CANARIES ")[1].splitlines()[0]
    assert "planted-by-the-notebook" in found  # the search finds a canary where there is one
    assert found.count("grader-canary-") == found.count("planted-by-the-notebook")  # only it
    assert "HITS []" in files  # no reference/, no held-out images, no key, no database
    # the data set without the held-out images: 55,000 training images, nothing else
    assert "'x_train': (55000, 28, 28)" in files and "'x_test': (10000, 28, 28)" in files
    assert "DATA DIR ['mnist.npz']" in files
    assert report.item("conv1").score == 6


# --- 7. filling the disks -----------------------------------------------------------------

def fill_cell(folders: list[str]) -> str:
    return f'''
import os, errno
_chunk = b"x" * (16 * 1024 * 1024)
for _folder in {folders!r}:
    _written, _n, _error = 0, 0, None
    while _error is None and _written < 16 * 1024 ** 3:
        try:
            with open(os.path.join(_folder, f"fill-{{_n}}.bin"), "wb") as _f:
                for _ in range(8):       # 128 MiB a file, under the file-size limit
                    _f.write(_chunk)
                    _written += len(_chunk)
        except OSError as exc:
            _error = errno.errorcode.get(exc.errno, str(exc.errno))
        _n += 1
    print("FILLED", _folder, _written, _error, flush=True)
'''


def _host_usage() -> tuple[int, int]:
    """Free bytes of the host disk under the temporary directory, and bytes in run dirs."""
    root = Path(tempfile.gettempdir())
    in_runs = 0
    for run_dir in root.glob("grader-run-*"):
        for path in run_dir.rglob("*"):
            try:
                in_runs += path.lstat().st_size
            except OSError:
                pass
    return shutil.disk_usage(root).free, in_runs


@pytest.mark.parametrize("folders", [
    ["/job", "/tmp", "/home/sandbox"],
    ["/", "/dev/shm"],
], ids=["job_tmp_home", "root_and_dev_shm"])
def test_filling_the_disks_stays_in_the_sandbox(
    folders, make_notebook, exercise, config, sandbox
):
    free_before, _ = _host_usage()
    samples: list[tuple[int, int]] = []

    def on_progress(progress: Progress) -> None:
        if progress.kind in ("cell", "output"):  # while the kernel and its disks are alive
            samples.append(_host_usage())

    limits = exercise.limits
    data = make_notebook(insert_after={"conv1": [fill_cell(folders)]}, keep_until="conv2")
    report = grade_notebook(data, exercise, config, sandbox, limits=limits,
                            on_progress=on_progress)
    assert report.item("conv1").score == 6
    assert samples
    # The host's disk: a fill that escaped its tmpfs would write until the cell's budget ends
    # (gigabytes); the margin is for the other test process sharing the disk (image builds,
    # caches: it once took 553 MB meanwhile). Containment itself is the ENOSPC at `scratch`
    # bytes below.
    assert free_before - min(free for free, _ in samples) < 2 * 1024**3
    assert max(in_runs for _, in_runs in samples) < 256 * 1024**2
    assert report.outcome is Outcome.GRADED, report.reason
    filled = printed(report, "conv1-extra0")
    for folder in folders:
        line = next(x for x in filled.splitlines() if x.startswith(f"FILLED {folder} "))
        written = int(line.split()[2])
        if folder == "/":  # the root is read-only: nothing is written at all
            assert line.endswith("EROFS") and written == 0, line
        else:  # each a tmpfs of `scratch` bytes: ENOSPC there
            assert line.endswith("ENOSPC") and written <= limits.scratch_bytes, line
    assert report.item("conv2").score == 6  # and grading goes on


# --- 8. malformed exports through the command line ----------------------------------------

JUNK_EXPORTER = r'''
import sys, base64
import tensorflow as tf
_exp = sys.modules['_grader_exporter']

def _graph_b64(build):
    graph = tf.Graph()
    with graph.as_default():
        out = build()
    return base64.b64encode(graph.as_graph_def().SerializeToString()).decode(), out.name

_valid, _valid_out = _graph_b64(lambda: tf.nn.conv2d(tf.placeholder(tf.float32, name='x'), W,
                                                      strides=[1, 1, 1, 1], padding='VALID'))
_dangling_def = tf.Graph().as_graph_def()
_node = _dangling_def.node.add()
_node.name, _node.op = 'out', 'Identity'
_node.input.append('nowhere:0')
_node.attr['T'].type = 1
_dangling = base64.b64encode(_dangling_def.SerializeToString()).decode()

_TENSOR = iter([
    {'kind': 'graph', 'graph_def': 2 ** 70, 'output': 'x:0'},
    {'kind': 'graph', 'graph_def': _valid, 'output': ['a', 'list'], 'inputs': {'x': 5}},
    {'kind': 'graph', 'graph_def': '%%% not base64 %%%', 'output': _valid_out},
    {'kind': 'graph', 'graph_def': base64.b64encode(b'\xff\x00\x13junk' * 1000).decode(),
     'output': _valid_out},
    {'kind': 'graph', 'graph_def': _dangling, 'output': 'out:0'},
    {'kind': 'graph', 'graph_def': _valid, 'output': _valid_out, 'inputs': {'x': 'x:0'},
     'context': {'W': {'dtype': '<f4', 'shape': [float('nan')], 'data': 'AAAA'}}},
])
_LAYER = iter([
    {'kind': 'graph', 'graph_def': 'A' * (60 * 1024 * 1024), 'output': 'x:0'},
    [1, 2, 3],
    {'kind': 'graph', 'graph_def': _valid, 'output': _valid_out, 'inputs': {'x': 'x:0'},
     'initializers': {'W': 12}},
])
_MODEL = iter([
    {'kind': 'value', 'type': 12345},
    {'kind': 'graph', 'graph_def': _valid, 'output': _valid_out, 'inputs': {'x': 'x:0'},
     'variables': {'W': {'dtype': '<f4', 'shape': [2 ** 70, -1], 'data': 'A' * 1000}}},
])
_exp.EXPORTS['tensor'] = lambda *args, **kwargs: next(_TENSOR)
_exp.EXPORTS['layer'] = lambda *args, **kwargs: next(_LAYER)
_exp.EXPORTS['model'] = lambda *args, **kwargs: next(_MODEL)
_exp.EXPORTS['identity'] = lambda *args, **kwargs: {'defined': 'yes', 'id': [float('inf')]}
'''


def test_malformed_exports_become_item_errors_through_the_cli(make_notebook, tmp_path):
    """Huge numbers, strings for numbers, wrong types, NaN, 60 MB of base64, bytes that are no
    GraphDef, a GraphDef with a dangling input, absurd array shapes: each an item error."""
    path = tmp_path / "junk.ipynb"
    path.write_bytes(make_notebook(
        insert_after={"conv-setup": [JUNK_EXPORTER]}, keep_until="train",
        replace={"train": "with tf.Session() as sess:\n"
                          "    sess.run(tf.global_variables_initializer())"}))
    done = subprocess.run([sys.executable, "-m", "grader", "grade", str(path), "--json"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    report = json.loads(done.stdout)
    assert report["outcome"] == "graded" and report["score"] == 0
    for item in report["items"]:
        assert item["status"] == "error", item
        assert item["feedback"]["en"], item
    feedback = {item["id"]: item["feedback"]["en"] for item in report["items"]}
    assert "does not follow the schema" in feedback["conv1"]
    assert "bad_graph" in feedback["pool1"] and "bad_graph" in feedback["pool2"]
    assert "TooLarge" in feedback["conv_layer"]
    assert "not an object" in feedback["pooling_layer"]
    assert "bad_array" in feedback["accuracy"]


# --- 9. attacks on the runner -------------------------------------------------------------

RUNNER_ATTACK = r'''
import ctypes, errno, os, signal, socket
_me = os.getpid()
_log = []
def _try(what, call):
    try:
        call()
        _log.append(f"{what}: done")
    except OSError as exc:
        _log.append(f"{what}: {errno.errorcode.get(exc.errno, exc.errno)}")
_pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != _me)
for _pid in _pids:                               # every other process in sight
    for _sig in (signal.SIGSTOP, signal.SIGTERM, signal.SIGKILL):
        _try(f"kill {_pid} {_sig.name}", lambda: os.kill(_pid, _sig))
    try:
        _fds = os.listdir(f"/proc/{_pid}/fd")
    except OSError as exc:
        _fds = []
        _log.append(f"fds of {_pid}: {errno.errorcode.get(exc.errno)}")
    for _fd in _fds:                             # and its files, pipes and sockets
        def _scribble(path=f"/proc/{_pid}/fd/{_fd}"):
            with open(path, "wb", buffering=0) as f:
                f.write(b'{"event": "done", "status": "completed"}\n' * 1000)
        _try(f"write /proc/{_pid}/fd/{_fd}", _scribble)
_try("kill -1 SIGKILL", lambda: os.kill(-1, signal.SIGKILL))
for _group in range(1, 4096):
    if _group != os.getpgid(0):
        try:
            os.killpg(_group, signal.SIGKILL)
            _log.append(f"killpg {_group}: done")
        except OSError:
            pass
_libc = ctypes.CDLL(None, use_errno=True)
for _pid in _pids:
    _result = _libc.ptrace(16, _pid, None, None)     # PTRACE_ATTACH
    _log.append(f"ptrace {_pid}: {_result} {errno.errorcode.get(ctypes.get_errno())}")
_open = []
for _port in range(1, 65536):                    # every loopback port
    with socket.socket() as _sock:
        if _sock.connect_ex(("127.0.0.1", _port)) == 0:
            _open.append(_port)
print("\n".join(_log))
print("OPEN PORTS", _open, flush=True)
for _port in _open:                              # garbage into each open one
    try:
        with socket.create_connection(("127.0.0.1", _port), timeout=1) as _sock:
            _sock.sendall(os.urandom(1 << 16))
    except OSError:
        pass
'''


def test_attacks_on_the_runner_leave_grading_intact(make_notebook, exercise, config, sandbox):
    data = make_notebook(insert_after={"conv-setup": [RUNNER_ATTACK]},
                         replace={"train": ONE_EPOCH}, keep_until="train")
    report = grade_notebook(data, exercise, config, sandbox)
    assert report.outcome is Outcome.GRADED, report.reason
    log = printed(report, "conv-setup-extra0")
    assert "OPEN PORTS [" in log  # the attack ran to its end
    assert "ptrace 1: -1 EPERM" in log  # seccomp
    assert "write /proc/1/fd/1: EACCES" in log  # bwrap's pipes to the host
    # the runner, in another sandbox as another user, saw nothing of it
    assert full_marks(report, (*CONV_POOL, *LAYERS, "model"))
    accuracy = report.item("accuracy")
    assert 0 < accuracy.score < accuracy.max_score  # one honest epoch: partial credit
    assert report.measured_accuracy > exercise.accuracy.floor


#: A replaced exporter that answers a tensor export with forty 60 MB export messages.
HIDDEN_EXPORT_FLOOD = r'''
import sys
from IPython.display import publish_display_data
_exp = sys.modules['_grader_exporter']
_honest_run = _exp.run
def _flooding_run(name, args):
    blob = "A" * (60 * 1024 * 1024)
    for _ in range(40 if name == "tensor" else 0):
        publish_display_data({_exp.MIME: {"kind": "value", "type": blob}})
    _honest_run(name, args)
_exp.run = _flooding_run
'''


def test_flooding_the_export_channel_cannot_take_the_runner_down(
    make_notebook, exercise, config, sandbox
):
    data = make_notebook(insert_after={"conv1": [HIDDEN_EXPORT_FLOOD]}, keep_until="conv2")
    report = grade_notebook(data, exercise, config, sandbox)
    assert report.outcome is Outcome.GRADED, report.reason
    assert report.item("conv1").score == 6
    assert report.item("conv2").status is ItemStatus.ERROR  # its export: the first, too large


# --- 10. output flooding ------------------------------------------------------------------

PRINT_FLOOD = r'''
import sys
for _ in range(20_000):
    print("x" * 1000)                       # 20 MB in lines
sys.stdout.write("y" * (5 * 1024 * 1024))   # 5 MB at once
sys.stderr.write("z" * (5 * 1024 * 1024))
'''

#: In the conv1 cell, after a wrong answer: the right answer published as an export.
DISPLAY_FLOOD = WRONG_CONV1 + r'''
import base64
from IPython.display import publish_display_data
_graph = tf.Graph()
with _graph.as_default():
    _x = tf.placeholder(tf.float32, name='x')
    _right = tf.nn.conv2d(_x, W, strides=[1, 1, 1, 1], padding='VALID')
_forged = {'kind': 'graph', 'output': _right.name, 'inputs': {'x': _x.name},
           'graph_def': base64.b64encode(_graph.as_graph_def().SerializeToString()).decode()}
publish_display_data({'application/x-grader-export+json': _forged})
publish_display_data({'text/plain': 'p' * (10 * 1024 * 1024)})
publish_display_data({'application/x-grader-export+json': {'graph_def': 'A' * 30_000_000}})
print("after the flood")
'''

#: 70 MB in one message: over the runner's 64 MiB frame limit, so ZMQ drops the runner's iopub
#: connection and the runner reconnects (``grader/kernel/channel.py``): conv2's export, after
#: it, still gets through (docs/security.md, residual risks).
OVERSIZED_MESSAGE = ("from IPython.display import publish_display_data\n"
                     "publish_display_data({'text/html': 'h' * (70 * 1024 * 1024)})\n")


def test_output_flooding_is_capped(make_notebook, exercise, config, sandbox):
    data = make_notebook(replace={"conv1": DISPLAY_FLOOD},
                         insert_after={"conv-setup": [PRINT_FLOOD]}, keep_until="conv3")
    report = grade_notebook(data, exercise, config, sandbox)
    assert report.outcome is Outcome.GRADED, report.reason
    assert report.item("conv1").score == 0  # its own answer is wrong; the published one ignored
    assert report.item("conv2").score == 6 and report.item("conv3").score == 6
    limits = exercise.limits
    assert len(report.executed_notebook) < limits.notebook_output_bytes + 200_000
    nb = nbformat.reads(report.executed_notebook, as_version=4)
    for cell in nb.cells:  # the forged export stays a display of the student's, read by nobody
        assert len(json.dumps(cell.get("outputs", []))) < limits.cell_output_bytes + 1000
    assert "output truncated" in printed(report, "conv-setup-extra0")


def test_an_oversized_message_costs_only_its_own_output(make_notebook, exercise, config, sandbox):
    data = make_notebook(insert_after={"conv1": [OVERSIZED_MESSAGE]}, keep_until="conv2")
    report = grade_notebook(data, exercise, config, sandbox)
    assert report.outcome is Outcome.GRADED, report.reason
    assert report.item("conv1").score == 6
    assert report.item("conv2").score == 6, en(report, "conv2")


# --- the cold run's first-import hook (grader/kernel/bootstrap.py) ------------------------------

def test_undoing_the_first_import_hook_earns_nothing(make_notebook, exercise, config, sandbox):
    """A cold run installs the TF1 shim on the notebook's first ``import tensorflow``. A student
    who puts the original ``__import__`` back first gets TensorFlow 2 as it is: the TF1 answers
    fail, and nothing the kernel does instead is believed (the clean room measures)."""
    nb = nbformat.reads(make_notebook(keep_until="pool3").decode(), as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(
        "import builtins, importlib\nbuiltins.__import__ = importlib.__import__"))
    report = grade_notebook(nbformat.writes(nb).encode(), exercise, config, sandbox)
    assert report.outcome is Outcome.GRADED, report.reason
    assert {i: report.item(i).score for i in CONV_POOL} == dict.fromkeys(CONV_POOL, 0)
    assert report.score == 0


# --- issue 17 part 6: feedback that tells the truth when the work is missing ------------------

def test_a_printed_accuracy_without_training_is_reported_not_scored(exercise, config, sandbox):
    """The training cell replaced by a loop that prints a fine figure: no points, and the
    feedback says that no trained model was found and which cell printed what (not that a
    heading changed)."""
    v4 = nbformat.v4
    nb = v4.new_notebook(cells=[
        v4.new_markdown_cell("## 5. 学習"),
        v4.new_code_cell("for epoch in range(10):\n    print('EPOCH:', epoch + 1, "
                         "'Valid Accuracy: 0.995')"),
    ])
    report = grade_notebook(nbformat.writes(nb).encode(), exercise, config, sandbox)
    assert report.outcome is Outcome.GRADED, report.reason
    assert report.score == 0
    item = report.item("accuracy")
    assert item.status is ItemStatus.MISSING
    assert "No trained model was found" in en(report, "accuracy")
    assert "printed accuracy 0.995 in cell 2" in en(report, "accuracy")
    assert "heading changed" not in en(report, "accuracy")
    assert report.claimed_accuracy == pytest.approx(0.995)
    assert item.details["claimed_cell_index"] == 1

# --- issue 17 part 1: the network asked for, on the data path -----------------------------
# A table of public MNIST (the test images, and the held-out ones pasted in as keys computed
# offline: they are public training images) looked up with ArgMin/GatherV2, dressed as the
# lecture's network. Each model passes the old checks near the output; the data path (every op
# from x to y, grader/cleanroom/datapath.py) gives it away.

#: The table: each image's key (a fixed random projection), its label, a lookup of x's label.
TABLE_CELL = r'''import base64
_v = np.random.RandomState(0).uniform(size=(784, 1)).astype(np.float32)
_held_keys = np.frombuffer(base64.b64decode("{keys}"), np.float32)
_held_labels = np.frombuffer(base64.b64decode("{labels}"), np.int32)
_keys = np.concatenate([(x_valid.reshape(-1, 784) @ _v).ravel(), _held_keys])
_labels = np.concatenate([t_valid.argmax(axis=1).astype(np.int32), _held_labels])
def lookup(x):
    key = tf.matmul(tf.reshape(x, [-1, 784]), tf.constant(_v))
    index = tf.argmin(tf.abs(key - tf.constant(_keys)), axis=1)
    return tf.gather(tf.constant(np.eye(10, dtype=np.float32)), tf.gather(tf.constant(_labels), index))
'''

FEATURES = MODEL_HEAD + """h = Conv((5, 5, 1, 20), tf.nn.relu)(x)
h = Pooling((1, 2, 2, 1))(h)
h = Conv((5, 5, 20, 50), tf.nn.relu)(h)
h = Pooling((1, 2, 2, 1))(h)
h = Flatten()(h)
"""

TRAINING = """cost = - tf.reduce_mean(tf.reduce_sum(t * tf_log(y), axis=1))
train = tf.train.GradientDescentOptimizer(0.01).minimize(cost)
"""

DRESSED_TABLES = {
    # (a) the attack: the table's answer, and a dense branch multiplied by zero
    "zero_times_dense": FEATURES + "y = tf.nn.softmax(1000 * lookup(x) + 0 * Dense(800, 10)(h))\n",
    # (b) the dense branch added: the table's 1000 outweighs it
    "plus_dense": FEATURES + "y = tf.nn.softmax(1000 * lookup(x) + Dense(800, 10)(h))\n",
    # (c) the logits' weights a constant (pasted), not a variable trained here
    "constant_weights": FEATURES + """_W = tf.constant(rng.uniform(-np.sqrt(6 / 800), np.sqrt(6 / 800), size=(800, 10)).astype('float32'))
_b = tf.Variable(np.zeros(10, dtype='float32'))
y = tf.nn.softmax(tf.matmul(h, _W) + _b)
""" + TRAINING,
    # (e) the student who read the checks: the table as the mask dropout multiplies by, with
    # the last layer's weights summing each class's block of features
    "lookup_in_dropout_mask": FEATURES + """_dense = Dense(800, 10, tf.nn.softmax)
_dense.W = tf.Variable(np.tile(np.eye(10, dtype='float32'), (80, 1)))
y = _dense(tf.nn.dropout(h, rate=0.0) * (1 + 1000 * tf.tile(lookup(x), [1, 80])))
""",
}

#: (d) A memoriser in the network's own kinds: 800 public images as the filters of a 28x28
#: convolution (a template each), their labels as the last layer: 636,010 values, within the
#: old budget of 2,000,000, over the one derived from the reference.
TEMPLATES = MODEL_HEAD + """_T = x_train[:800].reshape(800, 28, 28, 1).transpose(1, 2, 3, 0)
_scores = tf.nn.conv2d(x, tf.Variable(_T), [1, 1, 1, 1], 'VALID') + tf.Variable(-0.5 * (_T ** 2).sum(axis=(0, 1, 2)))
h = tf.reshape(tf.nn.relu(_scores), (-1, 800))
y = tf.nn.softmax(tf.matmul(h, tf.Variable(t_train[:800].astype('float32'))) + tf.Variable(np.zeros(10, dtype='float32')))
"""

INIT_AND_PRINT = ("with tf.Session() as sess:\n    sess.run(tf.global_variables_initializer())\n"
                  "    y_pred = sess.run(y, feed_dict={x: x_valid[:1000]})\n"
                  "    print('Valid Accuracy: {:.3f}'.format(accuracy_score("
                  "t_valid[:1000].argmax(axis=1), y_pred.argmax(axis=1))))")


def _table_cell(config) -> str:
    """The held-out images' keys and labels, computed offline (here: on the host, from the
    grader's own copy of them) as a student with public MNIST would."""
    import base64

    from grader.data.evaluation import evaluation_images, evaluation_labels

    images = evaluation_images(config.data_dir)["holdout"]
    labels = evaluation_labels(config.data_dir)["holdout"]
    v = np.random.RandomState(0).uniform(size=(784, 1)).astype(np.float32)
    keys = ((images.reshape(len(images), 784) / 255).astype(np.float32) @ v).ravel()
    return TABLE_CELL.replace("{keys}", base64.b64encode(keys.astype(np.float32).tobytes())
                              .decode()).replace("{labels}", base64.b64encode(
                                  labels.astype(np.int32).tobytes()).decode())


@pytest.mark.parametrize("model", list(DRESSED_TABLES))
def test_a_table_dressed_as_the_network_earns_neither_model_nor_accuracy(
    model, make_notebook, exercise, config, sandbox
):
    train = ONE_EPOCH if model == "constant_weights" else INIT_AND_PRINT
    data = make_notebook(replace={"model": DRESSED_TABLES[model], "train": train},
                         insert_after={"dense-layer": [_table_cell(config)]},
                         keep_until="train")
    report = grade_notebook(data, exercise, config, sandbox)
    assert report.outcome is Outcome.GRADED, report.reason
    model_item, accuracy = report.item("model"), report.item("accuracy")
    assert model_item.score == 0 and model_item.details["data_path_ok"] is False, en(
        report, "model")
    assert "not the network this exercise asks for" in en(report, "model")
    assert accuracy.score == 0 and accuracy.details["structure_ok"] is False, accuracy.details
    if model != "constant_weights":  # the table works: in the kernel and in the clean room
        assert "Valid Accuracy: 1.000" in printed(report, "train")
        assert accuracy.details["accuracies"]["test"] > 0.99, accuracy.details
        assert accuracy.details["accuracies"]["holdout"] > 0.99, accuracy.details
        assert "ArgMin" in en(report, "model") and "ArgMin" in en(report, "accuracy")
    else:
        assert "must be a tf.Variable" in en(report, "model")
        assert "must be a tf.Variable" in en(report, "accuracy")
    assert full_marks(report, (*CONV_POOL, *LAYERS))


def test_a_memoriser_in_the_networks_own_kinds_is_over_the_budget(
    make_notebook, exercise, config, sandbox
):
    data = make_notebook(replace={"model": TEMPLATES, "train": INIT_AND_PRINT},
                         keep_until="train")
    report = grade_notebook(data, exercise, config, sandbox)
    assert report.outcome is Outcome.GRADED, report.reason
    accuracy = report.item("accuracy")
    assert accuracy.score == 0
    assert "too many values" in en(report, "accuracy")
    assert f"limit {exercise.accuracy.max_parameters}" in en(report, "accuracy")
    # its path is one chain of the network's kinds: the model item, on structure alone, passes
    assert report.item("model").details["data_path_ok"] is True

# --- issue 17 part 2: memorisers of public MNIST collapse on moved copies ----------------------
# (grader/data/perturb.py; the counted figure in grader/comparators/accuracy.py)


def exact_pixel_memoriser(images: dict[str, np.ndarray], labels: dict[str, np.ndarray]
                          ) -> dict:
    """A "model" that knows every evaluation image by its pixels, built directly (no training):
    each image is hashed by a fixed projection and the nearest known hash's label is looked up
    (``ArgMin``, ``GatherV2``, ops the clean room admits). Public MNIST is all it needs: the
    held-out images are the training images missing from ``/data``."""
    import base64

    import tensorflow as tf

    v1 = tf.compat.v1
    known = np.concatenate([images["test"], images["holdout"]]).reshape(-1, 784) / 255.0
    truth = np.concatenate([labels["test"], labels["holdout"]]).astype(np.int32)
    projection = np.random.default_rng(17).standard_normal((784, 2)).astype(np.float32)
    keys = (known.astype(np.float32) @ projection).T  # (2, known images)
    graph = v1.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 784], name="x")
        hashed = tf.matmul(x, projection)
        distance = (tf.square(hashed[:, :1] - keys[None, 0])
                    + tf.square(hashed[:, 1:] - keys[None, 1]))
        label = tf.gather(truth, tf.argmin(distance, axis=1))
        y = tf.gather(np.eye(10, dtype=np.float32), label, name="y")
    sub = v1.graph_util.extract_sub_graph(graph.as_graph_def(), [y.op.name])
    return {"kind": "graph", "graph_def": base64.b64encode(sub.SerializeToString()).decode(),
            "output": y.name, "inputs": {"x": x.name}, "variables": {}}


def test_an_exact_pixel_memoriser_collapses_on_moved_copies(exercise, config, sandbox, tmp_path):
    """Right on every plain evaluation image (test and held-out: 1.000 each), near chance on
    the moved copies the clean room gets per run, and so no accuracy points. The parameter
    budget is lifted for this job, so that only the moved copies stand in its way."""
    from grader.clean_room import ImageSets, Job, measure_exports
    from grader.comparators import CompareInput, get_comparator
    from grader.data import evaluation_images, evaluation_labels

    images, labels = evaluation_images(config.data_dir), evaluation_labels(config.data_dir)
    export = tmp_path / "memoriser.json"
    export.write_text(json.dumps(exact_pixel_memoriser(images, labels)))
    item = exercise.item("accuracy")
    job = Job("accuracy/student", item, "student", "predictions", export,
              {"max_parameters": 10_000_000})
    measured = measure_exports([job], sandbox, tmp_path / "room", images=ImageSets(images))
    result = measured.get("accuracy", "student")
    assert set(result.predictions) == {"test", "holdout", "test-moved", "holdout-moved"}, result
    judgement = get_comparator("accuracy")(CompareInput(
        item=item, exercise=exercise, measured=result.model_dump(), expected=None,
        labels=labels))
    accuracies = judgement.details["accuracies"]
    assert accuracies["test"] > 0.995 and accuracies["holdout"] > 0.995, accuracies
    assert accuracies["test-moved"] < 0.3 and accuracies["holdout-moved"] < 0.3, accuracies
    assert judgement.details["measured_accuracy"] < exercise.accuracy.floor
    assert judgement.fraction == 0 and judgement.details["collapsed"] is True
    feedback = " ".join(t.en for t in judgement.feedback)
    assert "slightly altered copies" in feedback

# --- issue 17 part 3: host work on student content bounded --------------------------------

def _sources_as_strings(data: bytes) -> bytes:
    """The notebook with each source one JSON string (as an upload may hold it: a source
    written as lines costs a JSON value a line, and the values are capped)."""
    nb = json.loads(data)
    for cell in nb["cells"]:
        if isinstance(cell["source"], list):
            cell["source"] = "".join(cell["source"])
    return json.dumps(nb).encode()


def test_blank_lines_and_magic_padding_cost_the_host_nothing_and_the_padded_item_only(
        make_notebook, solution_nb, exercise, config, sandbox):
    """A 4 MiB cell of blank lines (the sanitiser's ``^\\s*`` under ``re.M`` made it hours of
    host CPU) and conv1's graded cell padded with magics (IPython's transformers on the host:
    magics x size): the grading ends, conv1 is an error that says its cell is too large to
    check, and the other cells earn their points."""
    conv1 = next(c.source for c in solution_nb.cells if c.get("id") == "conv1")
    data = make_notebook(replace={"conv1": "%pwd\n" * 5 + conv1},
                         insert_after={"conv-setup": ["padded = 1\n" + "\n" * 2_000_000]},
                         keep_until="conv3")
    report = grade_notebook(_sources_as_strings(data), exercise, config, sandbox)
    assert report.outcome is Outcome.GRADED, report.reason
    assert report.item("conv1").status is ItemStatus.ERROR
    assert "too large for the grader to check" in en(report, "conv1")
    assert report.item("conv2").score == 6 and report.item("conv3").score == 6
    assert report.timings["prepare"] < report.timings["total"]  # the host's share, recorded

# --- issue 17, part 4: the runner survives any kernel (grader/kernel/channel.py) ----------------
# The kernel holds the session key and can send anything on its sockets. Each attack below sits
# in a cell after conv1 and before conv2: both items must keep their 6 points (the run goes on
# past the attack, and the export channel still works), the run ends as the student's outcome
# (never sandbox_error, which the service retries) and the kept outputs stay within the caps.

#: Sends messages on the kernel's iopub socket, signed, as the current cell's (``_send``).
KERNEL_SENDS = r'''
_k = get_ipython().kernel
_session, _iopub = _k.session, _k.iopub_socket
_parent = _k.get_parent("shell")
def _send(msg_type, content, parent=_parent, **kw):
    _session.send(_iopub, msg_type, content, parent=parent, **kw)
'''

STATUS_WITHOUT_STATE = KERNEL_SENDS + r'''
_send("status", {})
print("after the status")
'''

#: Every field nbclient reads, made odd; headers and frames broken; comms; other parents.
MALFORMED_ZOO = KERNEL_SENDS + r"""
import json
_head = _parent["header"]
def _wire(header, parent, content, metadata=None):   # signed frames, any JSON in each part
    parts = [p if isinstance(p, bytes) else json.dumps(p, default=str).encode()
             for p in (header, parent, {} if metadata is None else metadata, content)]
    _iopub.send_multipart([b"<IDS|MSG>", _session.sign(parts), *parts])
_hdr = lambda msg_type="stream", **kw: {**_session.msg_header(msg_type), **kw}
_text = {"name": "stdout", "text": "t"}
for _content in ({}, {"execution_state": 3}, {"execution_state": None}, {"execution_state": []}):
    _send("status", _content)
for _content in ([1, 2], "text", None, 7):
    _wire(_hdr(), _head, _content)
_wire(_hdr("status"), _head, ["idle"])
_send("stream", {"name": "stdout"})
_send("stream", {"name": "stdout", "text": ["a", "b"]})
_send("stream", {"name": ["x"], "text": "t"})
_send("display_data", {"data": "x", "metadata": {}})
_send("display_data", {"data": {"text/plain": 5}, "metadata": {}})
_send("display_data", {"data": {"text/plain": "t"}, "metadata": []})
_send("display_data", {"data": {"text/plain": "t"}, "metadata": {}, "transient": [1]})
_send("display_data", {"data": {"text/plain": "t"}, "metadata": {},
                       "transient": {"display_id": ["x"]}})
_send("display_data", {"data": {"text/plain": "t"}, "metadata": {},
                       "transient": {"display_id": "i" * 100_000}})
_send("update_display_data", {"data": {"text/plain": 1}, "transient": {"display_id": "d"}})
_send("update_display_data", {"data": None, "metadata": {}, "transient": {"display_id": "d"}})
_send("execute_result", {"data": {}, "metadata": {}, "execution_count": "many"})
_send("execute_result", {"data": {}, "metadata": {}, "execution_count": -1})
_send("execute_input", {"code": "x", "execution_count": {"a": 1}})
_send("error", {"ename": 1})
_send("error", {"ename": "E", "evalue": "v", "traceback": "not a list"})
_wire(_hdr("clear_output"), _head, "nope")
_send("comm_open", {"comm_id": "c", "target_name": "jupyter.widget", "data": {"state": {
    "_model_module": "@jupyter-widgets/output", "_model_name": "OutputModel"}}})
_send("comm_msg", {"comm_id": "c", "data": {"method": "update", "state": {"msg_id": "m"}}})
_send("comm_msg", {"data": None})
_send("comm_close", {})
_send("execute_reply", {"status": "ok"})
_send("input_request", {"prompt": "?"})
_send("shutdown_reply", {"restart": False})
_send("status", {"execution_state": "idle"}, parent={"header": {"msg_id": "someone else"}})
_wire({}, _head, _text)
_wire(_hdr(msg_id=5), _head, _text)
_wire(_hdr(msg_type=["stream"]), _head, _text)
_wire(_hdr(version=5), _head, _text)
_wire(_hdr(version="x.y"), _head, _text)
_wire(["a", "list"], _head, _text)
_wire(_hdr(), [1, 2], _text)
_wire(_hdr(), "parent", _text)
_wire(_hdr(), _head, _text, metadata=[1])
_wire(_hdr(), _head, ("[" * 100_000 + "]" * 100_000).encode())
_wire(_hdr(), _head, b"\xff\xfe{")
_wire(_hdr(), _head, b'{"name": "stdout", "text": "half a pair: \\ud800"}')  # no UTF-8 for it
_wire(_hdr(), _head, ("[" + "{}," * (4 * 1024 * 1024) + "{}]").encode())  # 12 MB: ~350 MB decoded
_iopub.send_multipart([b"<IDS|MSG>", b"not a signature", b"{}", b"{}", b"{}", b"{}"])
_iopub.send_multipart([b"no delimiter", b"x"])
_iopub.send_multipart([b"<IDS|MSG>"] + [b"x"] * 40)
print("after the zoo")
"""

#: A 25 MB update of a small display: the output it replaces stays within the caps.
DISPLAY_UPDATE = r'''
from IPython.display import display, update_display
_handle = display({"text/plain": "small"}, raw=True, display_id=True)
update_display({"text/plain": "u" * (25 * 1024 * 1024)}, raw=True, display_id=_handle.display_id)
display({"text/plain": "v" * (25 * 1024 * 1024)}, raw=True, display_id=_handle.display_id)
print("after the updates")
'''

#: Ten 240 MB updates (each over the runner's 64 MiB message limit: ZMQ drops the connection,
#: the runner reconnects), then ten 60 MB ones (under it: decoded, then refused by the caps).
HUGE_DISPLAY_UPDATES = r'''
from IPython.display import display, update_display
_handle = display({"text/plain": "small"}, raw=True, display_id=True)
_huge = "h" * (240 * 1024 * 1024)
for _ in range(10):
    update_display({"text/plain": _huge}, raw=True, display_id=_handle.display_id)
del _huge
_big = "b" * (60 * 1024 * 1024)
for _ in range(10):
    update_display({"text/plain": _big}, raw=True, display_id=_handle.display_id)
del _big
import time; time.sleep(1)
print("after the updates")
'''

#: Widget state nbclient would keep for every comm: 80 x 25 MB, 2 GB, past the runner's memory.
COMM_FLOOD = KERNEL_SENDS + r'''
_state = {"_model_module": "@jupyter-widgets/controls", "_model_name": "HTMLModel",
          "value": "w" * (25 * 1024 * 1024)}
for _n in range(40):
    _send("comm_open", {"comm_id": f"c{_n}", "target_name": "jupyter.widget",
                        "data": {"state": _state, "buffer_paths": []}})
    _send("comm_msg", {"comm_id": f"c{_n}", "data": {"method": "update", "state": {
        f"k{_n}": _state["value"]}}})
print("after the comms")
'''


def _runner_survives(report, exercise, cell_id: str, said: str | None) -> None:
    assert report.outcome is Outcome.GRADED, report.reason
    assert report.item("conv1").score == 6, en(report, "conv1")
    assert report.item("conv2").score == 6, en(report, "conv2")
    limits = exercise.limits
    assert len(report.executed_notebook) < limits.notebook_output_bytes + 200_000
    nb = nbformat.reads(report.executed_notebook, as_version=4)
    for cell in nb.cells:
        assert len(json.dumps(cell.get("outputs", []))) < limits.cell_output_bytes + 1000
    assert "widgets" not in nb.metadata
    if said is not None:
        assert said in printed(report, cell_id)


@pytest.mark.parametrize("attack", [
    pytest.param(STATUS_WITHOUT_STATE, id="status_without_execution_state"),
    pytest.param(MALFORMED_ZOO, id="malformed_zoo"),
])
def test_malformed_kernel_messages_are_dropped(make_notebook, exercise, config, sandbox, attack):
    data = make_notebook(insert_after={"conv1": [attack]}, keep_until="conv2")
    report = grade_notebook(data, exercise, config, sandbox)
    _runner_survives(report, exercise, "conv1-extra0", "after the")
    dropped = report.diagnostics["dropped_messages"]
    assert dropped.get("status without execution_state", 0) >= 1, dropped
    if attack is MALFORMED_ZOO:
        assert sum(dropped.values()) >= 40, dropped
        for reason in ("does not decode", "would decode too large", "too many frames",
                       "comm_open not used", "bad parent_header", "content is not an object",
                       "lone surrogate"):
            assert reason in dropped, (reason, dropped)


def test_display_updates_are_capped(make_notebook, exercise, config, sandbox):
    data = make_notebook(insert_after={"conv1": [DISPLAY_UPDATE]}, keep_until="conv2")
    report = grade_notebook(data, exercise, config, sandbox)
    _runner_survives(report, exercise, "conv1-extra0", "after the updates")
    out = printed(report, "conv1-extra0")
    assert "output truncated" in out


def test_huge_display_updates_cannot_take_the_runner_down(make_notebook, exercise, config,
                                                          sandbox):
    data = make_notebook(insert_after={"conv1": [HUGE_DISPLAY_UPDATES]}, keep_until="conv2")
    report = grade_notebook(data, exercise, config, sandbox)
    # what the cell printed after the oversized messages may be lost with the connection
    _runner_survives(report, exercise, "conv1-extra0", None)


def test_comm_and_widget_floods_are_not_kept(make_notebook, exercise, config, sandbox):
    data = make_notebook(insert_after={"conv1": [COMM_FLOOD]}, keep_until="conv2")
    report = grade_notebook(data, exercise, config, sandbox)
    _runner_survives(report, exercise, "conv1-extra0", "after the comms")
    assert report.diagnostics["dropped_messages"]["comm_open not used"] == 40


#: One message of 40 frames of 60 MB (2.4 GB): ZMQ holds every frame of a message until the
#: last, so this is the one flood the runner cannot bound (sent without copies: the kernel
#: itself holds one 60 MB buffer).
MANY_FRAMES = KERNEL_SENDS + r'''
import json
_blob = b"f" * (60 * 1024 * 1024)
_parts = [json.dumps(_session.msg_header("stream"), default=str).encode(),
          json.dumps(_parent["header"], default=str).encode(), b"{}",
          b'{"name": "stdout", "text": "t"}']
_iopub.send_multipart([b"<IDS|MSG>", _session.sign(_parts), *_parts] + [_blob] * 40,
                      copy=False)
import time; time.sleep(10)
print("after the frames")
'''


def test_a_runner_pushed_past_its_memory_is_the_students_outcome(make_notebook, exercise, config,
                                                                 sandbox):
    """Before issue 17 this ended ``sandbox_error`` and the service ran it three times."""
    data = make_notebook(insert_after={"conv1": [MANY_FRAMES]}, keep_until="conv2")
    report = grade_notebook(data, exercise, config, sandbox)
    assert report.outcome in (Outcome.OUT_OF_MEMORY, Outcome.GRADED), report.reason
    assert report.item("conv1").score == 6, en(report, "conv1")  # reached before: kept
    if report.outcome is Outcome.OUT_OF_MEMORY:  # as on this machine: ZMQ holds it all
        assert report.reason is not None and "grader" in report.reason.en
        assert report.item("conv2").status is ItemStatus.NOT_REACHED


# --- issue 17 part 7 (red team 2): the runner's own checks, attacked -------------------------

#: Message types the runner drops, one of them half a surrogate pair (each type was a reason of
#: its own, quoted in the report's diagnostics, which PostgreSQL then refused to store), two
#: hundred more, then one 60 MB stream of short lines (the progress line was sought by
#: splitting all of it: 1.5 GiB of the runner's 2 GiB for one message).
ODD_TYPES_AND_LINES = KERNEL_SENDS + r'''
import json, time
def _raw(header, content=b"{}"):
    parts = [header, json.dumps(_parent["header"], default=str).encode(), b"{}", content]
    _iopub.send_multipart([b"<IDS|MSG>", _session.sign(parts), *parts])
_raw(b'{"msg_type": "\\udc00x", "msg_id": "m1", "session": "s", "username": "u", '
     b'"date": "2020-01-01T00:00:00Z", "version": "5.3"}')
for _n in range(200):
    _raw(json.dumps(_session.msg_header(f"type {_n}"), default=str).encode())
_send("stream", {"name": "stdout", "text": "ab\n" * 20_000_000})
time.sleep(2)
print("after the types")
'''


def test_odd_message_types_and_long_streams_cost_the_runner_little(make_notebook, exercise,
                                                                   config, sandbox):
    data = make_notebook(insert_after={"conv1": [ODD_TYPES_AND_LINES]}, keep_until="conv2")
    report = grade_notebook(data, exercise, config, sandbox)
    _runner_survives(report, exercise, "conv1-extra0", None)  # the 60 MB filled the cell
    dropped = report.diagnostics["dropped_messages"]
    assert "?x not used" in dropped or "other reasons" in dropped, dropped
    assert dropped.get("other reasons", 0) >= 100, dropped
    json.dumps(dropped, ensure_ascii=False).encode("utf-8")  # what the store needs


#: A reply to the running cell on the shell channel, of the other type the runner reads there:
#: nbclient takes any shell message answering the cell as its reply and reads
#: ``content["status"]`` (``KeyError``: the runner ended ``runner_error``, ``sandbox_error``).
KERNEL_INFO_AS_REPLY = r'''
_k = get_ipython().kernel
_parent = _k.get_parent("shell")
if getattr(_k, "_supports_kernel_subshells", False):
    _stream = _k.shell_channel_thread.manager.get_subshell_to_shell_channel_socket(None)
else:
    _stream = _k.shell_stream
_k.session.send(_stream, "kernel_info_reply", {}, _parent, ident=_k._parent_ident["shell"])
import time; time.sleep(2)
print("after the reply")
'''


def test_a_kernel_info_reply_to_a_cell_is_dropped(make_notebook, exercise, config, sandbox):
    data = make_notebook(insert_after={"conv1": [KERNEL_INFO_AS_REPLY]}, keep_until="conv2")
    report = grade_notebook(data, exercise, config, sandbox)
    _runner_survives(report, exercise, "conv1-extra0", "after the reply")
    assert report.diagnostics["dropped_messages"].get("kernel_info_reply without status") == 1


def test_half_a_surrogate_pair_in_a_cell_is_an_invalid_notebook(make_notebook, exercise,
                                                                 config, sandbox):
    """It parsed and passed every check; writing the notebook for the runner raised
    ``UnicodeEncodeError`` (``sandbox_error``, run again by the service)."""
    data = make_notebook(insert_after={"conv1": ["half = 'HALF_A_PAIR'"]}, keep_until="conv2")
    data = data.replace(b"HALF_A_PAIR", b"\\udc00")
    report = grade_notebook(data, exercise, config, sandbox)
    assert report.outcome is Outcome.INVALID_NOTEBOOK, report.reason
    assert "UTF-8" in report.reason.en
