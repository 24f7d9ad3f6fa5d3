"""The clean room and what feeds it: export envelopes, graph checks, freezing, measurements,
crash attribution, and the host's own reading of cell sources."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from grader.clean_room import Job, fresh_images, measure_exports, plan_jobs
from grader.cleanroom import graphs
from grader.exports import ExportError, GraphExport, ValueExport, read_export, unpack_array
from grader.measurements import (
    MeasurementError,
    MeasurementFailure,
    TensorMeasurement,
    parse_measurement,
)
from grader.reference import reference_exports
from grader.sandbox.base import SandboxRequest, SandboxResult
from grader.sourcecheck import read_cell
from tests.hostile_graphs import HONEST, MODELS, measured_path

# TensorFlow is imported by the first test that runs (tests/conftest.py), not at collection.
tf: Any = None
v1: Any = None


@pytest.fixture(autouse=True, scope="module")
def _tensorflow(tensorflow: Any) -> None:
    global tf, v1
    tf, v1 = tensorflow, tensorflow.compat.v1


def packed(array: np.ndarray) -> dict:
    array = np.ascontiguousarray(array)
    return {"dtype": array.dtype.str, "shape": list(array.shape),
            "data": base64.b64encode(array.tobytes()).decode()}


def graph_export(build, **extra) -> dict:
    """An export as the kernel's exporter makes it, of the graph ``build`` returns the output
    of (with a placeholder ``x``)."""
    graph = v1.Graph()
    with graph.as_default():
        x = v1.placeholder(v1.float32, [1, 7, 7, 1], name="x")
        out = build(x)
    sub = v1.graph_util.extract_sub_graph(graph.as_graph_def(), [out.op.name])
    return {"kind": "graph", "graph_def": base64.b64encode(sub.SerializeToString()).decode(),
            "output": out.name, "inputs": {"x": x.name}, **extra}


def checked(export: dict) -> int:
    return graphs.check_graph(graphs.parse_graph(export["graph_def"]))


# --- the export envelope (host) -------------------------------------------------------------


def test_exports_are_read_with_a_schema_and_a_size_cap(tmp_path: Path) -> None:
    path = tmp_path / "e.json"
    path.write_text(json.dumps(graph_export(lambda x: tf.nn.relu(x))))
    assert isinstance(read_export(path), GraphExport)
    path.write_text(json.dumps({"kind": "value", "type": "ndarray"}))
    assert isinstance(read_export(path), ValueExport)
    for junk, message in [
        ("[1, 2]", "not an object"),
        ("{not json", "not JSON"),
        (json.dumps({"kind": "graph", "graph_def": 2**70}), "schema"),
        (json.dumps({"error": {"ename": "NameError", "evalue": "y"}}), "NameError: y"),
    ]:
        path.write_text(junk)
        with pytest.raises(ExportError, match=message):
            read_export(path)
    with pytest.raises(ExportError, match="missing"):
        read_export(tmp_path / "none.json")


@pytest.mark.parametrize(("payload", "message"), [
    ({"dtype": "|O", "shape": [1], "data": ""}, "not allowed"),
    ({"dtype": "<f4", "shape": [2], "data": base64.b64encode(b"\0" * 4).decode()}, "fill"),
    ({"dtype": "<f4", "shape": [-1], "data": ""}, "range"),
    ({"dtype": "<f4", "shape": [1], "data": "!!"}, "base64"),
])
def test_arrays_are_raw_bytes_of_a_few_dtypes(payload: dict, message: str) -> None:
    with pytest.raises(ExportError, match=message):
        unpack_array(payload)
    assert unpack_array(packed(np.arange(6, dtype="<f4").reshape(2, 3)))[1, 2] == 5


# --- graph checks and freezing (the clean room's own code, run here directly) ---------------


def test_a_cnn_graph_passes_the_allow_list() -> None:
    def net(x):
        w = tf.constant(np.ones((3, 3, 1, 2), np.float32))
        h = tf.nn.relu(tf.nn.conv2d(x, w, [1, 1, 1, 1], "VALID"))
        h = tf.nn.max_pool(h, [1, 2, 2, 1], [1, 2, 2, 1], "VALID")
        return tf.nn.softmax(tf.reshape(h, (-1, 8)))

    assert checked(graph_export(net)) >= 18


@pytest.mark.parametrize(("build", "op"), [
    (lambda x: tf.numpy_function(lambda a: a, [x], tf.float32), "PyFunc"),
    (lambda x: x + tf.strings.to_number(tf.io.read_file("/etc/hostname")), "ReadFile"),
    (lambda x: x + tf.cast(tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        [1], [2]), -1).lookup(tf.constant(1)), tf.float32), "LookupTableFindV2"),
])
def test_ops_off_the_allow_list_are_refused_by_name(build, op: str) -> None:
    with pytest.raises(graphs.GraphRefused) as refused:
        checked(graph_export(build))
    assert refused.value.code == "op_not_allowed" and op in refused.value.ops


def test_oversized_constants_and_strings_are_refused() -> None:
    big = graph_export(lambda x: x + tf.constant(np.zeros((1100, 1000), np.float32))[0, 0])
    with pytest.raises(graphs.GraphRefused) as refused:
        checked(big)
    assert refused.value.code == "oversized_constant"
    def with_text(x):
        with tf.control_dependencies([tf.identity(tf.constant(["secret"]))]):
            return tf.identity(x)

    with pytest.raises(graphs.GraphRefused, match="string"):
        checked(graph_export(with_text))


def test_malformed_graph_bytes_are_refused() -> None:
    for junk in ("AAAA" * 10, 42, "not base64!", base64.b64encode(b"\xff" * 64).decode()):
        with pytest.raises(graphs.GraphRefused):
            graphs.parse_graph(junk)


@pytest.mark.parametrize("resource", [False, True])
def test_freezing_replaces_variables_with_the_exported_values(resource: bool) -> None:
    graph = v1.Graph()
    with graph.as_default():
        x = v1.placeholder(v1.float32, [None, 2], name="x")
        w = v1.Variable(np.zeros((2, 2), np.float32), name="w", use_resource=resource)
        y = v1.matmul(x, w)
    sub = v1.graph_util.extract_sub_graph(graph.as_graph_def(), [y.op.name])
    with pytest.raises(graphs.GraphRefused, match="no value"):
        graphs.freeze(sub, {})
    frozen = graphs.freeze(sub, {"w": np.eye(2) * 3})
    assert not graphs.variable_nodes(frozen)
    imported = graphs.import_graph(frozen)
    with v1.Session(graph=imported) as sess:
        out = sess.run(y.name, {"x:0": [[1.0, 2.0]]})
    np.testing.assert_allclose(out, [[3.0, 6.0]])


def test_fresh_images_keep_shape_and_range_and_differ() -> None:
    image = np.array([[0, 1, 1], [1, 0, 0], [1, 1, 0]], np.float32).reshape(1, 3, 3, 1)
    images = fresh_images(image, np.random.default_rng(3))
    assert len(images) == 4
    for fresh in images:
        assert fresh.shape == image.shape and fresh.dtype == image.dtype
        assert set(np.unique(fresh)) <= {0.0, 1.0}
    assert any(not np.array_equal(fresh, image) for fresh in images)


# --- measurements (host validation) ---------------------------------------------------------


def test_measurements_are_validated() -> None:
    ok = {"ok": True, "fed": True, "outputs": [{"shape": [2], "values": [1.0, None]}]}
    assert isinstance(parse_measurement("tensor", ok), TensorMeasurement)
    failure = parse_measurement("tensor", {"ok": False, "error": {"code": "crashed"}})
    assert isinstance(failure, MeasurementFailure) and failure.code == "crashed"
    for junk in ([], {"ok": True, "fed": True, "outputs": [{"shape": [3], "values": [1]}]},
                 {"ok": True, "fed": True, "outputs": [{"shape": [1], "values": [2**2000]}]},
                 {"ok": True, "predictions": {"test": ["x"]}, "parameters": 1}):
        with pytest.raises(MeasurementError):
            parse_measurement("predictions" if "predictions" in str(junk) else "tensor", junk)


# --- crash attribution, at the sandbox seam -------------------------------------------------


class CrashingSandbox:
    """A sandbox whose clean room dies on the job named ``poison`` (announced first, as the
    real one does), and measures every other job as a failure with code ``measured``."""

    name = "fake"

    def __init__(self, poison: str) -> None:
        self.poison = poison
        self.runs: list[list[str]] = []

    def run(self, request: SandboxRequest, on_line=None) -> SandboxResult:
        plan = json.loads((request.workdir / "plan.json").read_text())
        self.runs.append([job["id"] for job in plan["jobs"]])
        out = request.workdir / "out"
        out.mkdir(exist_ok=True)
        for job in plan["jobs"]:
            on_line(json.dumps({"event": "job", "id": job["id"]}))
            if job["id"] == self.poison:  # killed by SIGSEGV inside TensorFlow
                return SandboxResult(exit_code=None, signal=11, wall_seconds=1.0,
                                     timed_out=False, oom_killed=False, stdout=b"",
                                     stderr=b"")
            (out / f"{job['index']}.json").write_text(json.dumps(
                {"id": job["id"], "ok": False, "error": {"code": "measured"}}))
            on_line(json.dumps({"event": "measured", "id": job["id"]}))
        return SandboxResult(exit_code=0, signal=None, wall_seconds=1.0, timed_out=False,
                             oom_killed=False, stdout=b"", stderr=b"")


def test_a_crash_is_blamed_on_its_job_and_the_rest_are_measured_again(exercise, tmp_path):
    references = reference_exports(exercise)
    student = {k: references[k] for k in ("conv1", "model", "dense_layer")}
    jobs = plan_jobs(exercise, student, references)
    assert [j.id for j in jobs] == ["conv1/student", "conv1/reference", "dense_layer/student",
                                    "dense_layer/reference", "model/student", "model/reference"]
    box = CrashingSandbox("dense_layer/student")
    measured = measure_exports(jobs, box, tmp_path, seed=1)
    assert len(box.runs) == 2 and "dense_layer/student" not in box.runs[1]
    crashed = measured.get("dense_layer", "student")
    assert isinstance(crashed, MeasurementFailure) and crashed.code == "crashed"
    assert "signal 11" in crashed.detail
    assert all(measured.results[j.id].code == "measured" for j in jobs
               if j.id != "dense_layer/student")


class PlanReadingSandbox:
    """A clean room that only keeps what it was handed: the plan and its image files."""

    name = "fake"

    def __init__(self) -> None:
        self.plans: list[dict] = []
        self.images: list[dict[str, np.ndarray]] = []

    def run(self, request: SandboxRequest, on_line=None) -> SandboxResult:
        plan = json.loads((request.workdir / "plan.json").read_text())
        self.plans.append(plan)
        self.images.append({name: np.load(request.workdir / path)
                            for name, path in plan["images"].items()})
        out = request.workdir / "out"
        out.mkdir(exist_ok=True)
        for job in plan["jobs"]:
            (out / f"{job['index']}.json").write_text(json.dumps(
                {"id": job["id"], "ok": False, "error": {"code": "measured"}}))
        return SandboxResult(exit_code=0, signal=None, wall_seconds=1.0, timed_out=False,
                             oom_killed=False, stdout=b"", stderr=b"")


def test_the_trained_model_gets_moved_copies_made_from_the_runs_seed(exercise, tmp_path):
    """Images only cross (no labels, no seed), in an order drawn per run; each set has a moved
    copy, the same for the same seed and another for another seed."""
    from grader.clean_room import ImageSets

    rng = np.random.default_rng(0)
    sets = {"test": rng.integers(0, 256, (40, 28, 28), dtype=np.uint8),
            "holdout": rng.integers(0, 256, (30, 28, 28), dtype=np.uint8)}
    references = reference_exports(exercise)
    jobs = plan_jobs(exercise, {"accuracy": references["accuracy"]}, references)
    box = PlanReadingSandbox()
    for n, seed in enumerate((5, 5, 6)):
        measure_exports(jobs, box, tmp_path / str(n), images=ImageSets(sets), seed=seed)
    first, again, other = box.images
    assert set(first) == {"test", "holdout", "test-moved", "holdout-moved"}
    # the same images, in an order of their own (test_no_image_is_recognisable_by_its_place)
    assert all(np.array_equal(np.unique(first[name], axis=0), np.unique(sets[name], axis=0))
               for name in sets)
    assert all(np.array_equal(first[n], again[n]) for n in first)
    assert not np.array_equal(first["test-moved"], other["test-moved"])
    assert not np.array_equal(first["test-moved"], sets["test"])
    plan_text = json.dumps(box.plans[0])
    assert "seed" not in plan_text and "label" not in plan_text
    orders = set()
    for seed in range(12):
        measure_exports(jobs, box, tmp_path / f"o{seed}", images=ImageSets(sets), seed=seed)
        orders.add(tuple(box.plans[-1]["images"]))
    assert len(orders) > 1
    box = PlanReadingSandbox()
    measure_exports(jobs, box, tmp_path / "plain", images=ImageSets(sets, moved=None), seed=5)
    assert set(box.images[0]) == {"test", "holdout"}


class PredictingSandbox(PlanReadingSandbox):
    """A clean room whose trained model answers ``predict(set name, images)``."""

    def __init__(self, predict) -> None:
        super().__init__()
        self.predict = predict

    def run(self, request: SandboxRequest, on_line=None) -> SandboxResult:
        result = super().run(request, on_line)
        plan, images = self.plans[-1], self.images[-1]
        for job in plan["jobs"]:
            if job["measure"] == "predictions":
                (request.workdir / "out" / f"{job['index']}.json").write_text(json.dumps(
                    {"id": job["id"], "ok": True, "parameters": 1,
                     "predictions": {name: [int(p) for p in self.predict(name, batch)]
                                     for name, batch in images.items()}}))
        return result


def test_no_image_is_recognisable_by_its_place(exercise, tmp_path):
    """Issue 17, attacking the moved copies: the clean room fed each set in its public order
    (MNIST's test order, the held-out images in index order) and each moved copy in its
    source's order, in batches of 500. A model that reads its batch-mates (a reshape across
    the batch dimension passes the data path check) can name the batch from statistics that
    survive the move (sums of 7x7 blocks over the batch named all 30 batches of real MNIST,
    moved by one seed) and answer each image by its place from a table of 15,000 public labels
    (15,000 values: within the budget as they are): full marks on plain and moved sets alike.
    Each set now comes in its own order drawn per run, and the host puts the predictions back:
    answering by place is chance, answering by the image is unchanged."""
    from grader.clean_room import ImageSets

    rng = np.random.default_rng(1)
    labels = {"test": rng.integers(0, 10, 600), "holdout": rng.integers(0, 10, 400)}
    # each image carries its label in its first pixel, so an honest model can read it
    sets = {name: np.concatenate([truth.astype(np.uint8)[:, None],
                                  rng.integers(0, 256, (len(truth), 783), dtype=np.uint8)],
                                 axis=1).reshape(-1, 28, 28) for name, truth in labels.items()}
    references = reference_exports(exercise)
    jobs = plan_jobs(exercise, {"accuracy": references["accuracy"]}, references)

    def accuracies(predict) -> dict[str, float]:
        measured = measure_exports(jobs, PredictingSandbox(predict), tmp_path / str(id(predict)),
                                     images=ImageSets(sets, moved=None), seed=3)
        got = measured.get("accuracy", "student").predictions
        return {name: float(np.mean(np.asarray(got[name]) == labels[name])) for name in labels}

    by_place = accuracies(lambda name, images: labels[name])  # the public order's labels
    assert all(a < 0.3 for a in by_place.values()), by_place
    by_image = accuracies(lambda name, images: images.reshape(len(images), -1)[:, 0])
    assert by_image == {"test": 1.0, "holdout": 1.0}


def test_jobs_need_an_export_and_the_reference_for_comparisons(exercise):
    references = reference_exports(exercise)
    assert plan_jobs(exercise, {}, references) == []
    jobs = plan_jobs(exercise, {"accuracy": references["accuracy"]}, references)
    assert [(j.id, j.measure, j.options.get("max_parameters")) for j in jobs] == [
        ("accuracy/student", "predictions", exercise.accuracy.max_parameters),
        # the reference's data path, for the structure check (``structure = "model"``)
        ("accuracy/reference", "graph", None)]
    assert isinstance(jobs[0], Job) and jobs[1].export == references["accuracy"]


# --- the real clean room --------------------------------------------------------------------


@pytest.mark.sandbox
def test_the_clean_room_measures_student_graphs_on_the_graders_inputs(exercise, sandbox,
                                                                     tmp_path):
    """A correct answer, a constant typed in, a py_func, and junk, measured in one real clean
    room beside the reference."""
    references = reference_exports(exercise)
    reference = json.loads(references["conv1"].read_text())
    image = unpack_array(reference["context"]["sample_image"])
    filt = unpack_array(reference["context"]["W"])
    right = graph_export(lambda x: tf.nn.conv2d(x, filt, [1, 1, 1, 1], "VALID"))
    with v1.Graph().as_default(), v1.Session() as sess:
        answer = sess.run(tf.nn.conv2d(image, filt, [1, 1, 1, 1], "VALID"))
    typed_in = graph_export(lambda x: tf.constant(answer) + 0 * tf.reduce_sum(x[0, 0, 0, 0]))
    constant = graph_export(lambda x: tf.constant(answer))
    py_func = graph_export(lambda x: tf.numpy_function(lambda a: a, [x], tf.float32))
    files = {}
    for name, export in [("right", right), ("typed_in", typed_in), ("constant", constant),
                         ("py_func", py_func), ("junk", {"kind": "graph", "graph_def": "AAAA",
                                                         "output": "y:0"})]:
        files[name] = tmp_path / f"{name}.json"
        files[name].write_text(json.dumps(export))
    item = exercise.item("conv1")
    jobs = [Job(f"{name}/student", item, "student", "tensor", path)
            for name, path in files.items()]
    jobs.append(Job("conv1/reference", item, "reference", "tensor", references["conv1"]))
    # every job of one item shares the item's inputs: the exercise image and 4 fresh ones
    measured = measure_exports(jobs, sandbox, tmp_path / "room", seed=11)
    want = measured.get("conv1", "reference")
    assert isinstance(want, TensorMeasurement) and len(want.outputs) == 5
    right_m = measured.results["right/student"]
    assert [o.values for o in right_m.outputs] == [o.values for o in want.outputs]
    for name in ("typed_in", "constant"):
        got = measured.results[f"{name}/student"]
        assert got.outputs[0].values == want.outputs[0].values  # right on the exercise image
        assert any(g.values != w.values for g, w in zip(got.outputs[1:], want.outputs[1:],
                                                        strict=True))
    assert measured.results["py_func/student"].code == "op_not_allowed"
    assert measured.results["junk/student"].code == "bad_graph"
    assert measured.runs == 1


def test_the_host_reads_syntax_and_assignments_from_the_source() -> None:
    blank = read_cell("convoluted_image = #WRITE ME\n\nwith tf.Session() as sess:\n    pass")
    assert blank.syntax_error is not None and "line 1" in blank.syntax_error
    done = read_cell("!pip install x\nconvoluted_image = tf.nn.conv2d(x, W, s, 'SAME')\n"
                     "with tf.Session() as sess:\n    out = sess.run(convoluted_image)")
    assert done.syntax_error is None and {"convoluted_image", "sess", "out"} <= done.bound
    magic = read_cell("%%writefile /root/a.py\nthis is = not python")
    assert magic.syntax_error is None
    assert "convoluted_image" not in read_cell("print(convoluted_image)").bound
    assert {"Conv", "np"} <= read_cell("import numpy as np\nclass Conv:\n    pass").bound


# --- one clean-room budget per submission (issue 17, part 5) --------------------------------


class ExpensiveSandbox:
    """A clean room that spends ``seconds`` of wall time and reports ``cpu`` CPU seconds on the
    first job it is given, then dies on it (as a graph crashing TensorFlow does): without one
    budget for the submission every job would get a clean room of its own."""

    name = "fake"

    def __init__(self, seconds: float, cpu: float) -> None:
        self.seconds, self.cpu = seconds, cpu
        self.requests: list[SandboxRequest] = []
        self.runs: list[list[str]] = []

    def run(self, request: SandboxRequest, on_line=None) -> SandboxResult:
        import time

        plan = json.loads((request.workdir / "plan.json").read_text())
        self.requests.append(request)
        self.runs.append([job["id"] for job in plan["jobs"]])
        on_line(json.dumps({"event": "plan", "before": 0.0}))
        on_line(json.dumps({"event": "job", "id": plan["jobs"][0]["id"]}))
        time.sleep(self.seconds)
        on_line(json.dumps({"event": "cpu", "seconds": self.cpu, "cpus": 2}))
        return SandboxResult(exit_code=None, signal=11, wall_seconds=self.seconds,
                             timed_out=False, oom_killed=False, stdout=b"", stderr=b"")


def layer_jobs(exercise, tmp_path: Path, count: int) -> list[Job]:
    references = reference_exports(exercise)
    item = exercise.item("dense_layer")
    return [Job(f"j{n}/student", item, "student", "layer", references["dense_layer"],
                {"input_shape": [4, 64]}) for n in range(count)]


def test_re_runs_share_one_wall_budget(exercise, tmp_path):
    from grader.clean_room import LIMITS

    box = ExpensiveSandbox(seconds=1.0, cpu=0.1)
    limits = LIMITS.replace(notebook_timeout=4.5)
    measured = measure_exports(layer_jobs(exercise, tmp_path, 8), box, tmp_path, seed=1,
                                 limits=limits)
    timeouts = [r.limits.notebook_timeout for r in box.requests]
    assert 2 <= len(box.runs) <= 3  # not 8 clean rooms: each crash used up a second
    assert timeouts[0] <= 4.5 and all(b <= a - 0.9 for a, b in itertools.pairwise(timeouts))
    codes = [measured.results[f"j{n}/student"].code for n in range(8)]
    assert codes[:len(box.runs)] == ["crashed"] * len(box.runs)
    assert set(codes[len(box.runs):]) == {"budget"}
    assert "spent before this answer was measured" in measured.results["j7/student"].detail
    assert measured.seconds < 4.5 + 1.0


def test_re_runs_share_one_cpu_allowance(exercise, tmp_path):
    from grader.clean_room import LIMITS

    box = ExpensiveSandbox(seconds=0.0, cpu=30.0)
    limits = LIMITS.replace(cpu_seconds=70)
    measured = measure_exports(layer_jobs(exercise, tmp_path, 5), box, tmp_path, seed=1,
                                 limits=limits)
    allowances = [r.limits.cpu_seconds for r in box.requests]
    assert allowances[0] == 70 and 38 <= allowances[1] <= 40 and 8 <= allowances[2] <= 10
    assert len(box.runs) == 3
    codes = [measured.results[f"j{n}/student"].code for n in range(5)]
    assert codes == ["crashed", "crashed", "budget", "budget", "budget"]
    assert 69 <= measured.cpu_seconds <= 70


def stalling_answer(filt: np.ndarray) -> dict:
    """A convolution answer (right shape and values) that first multiplies 1500x1500 matrices
    400 times: minutes of CPU from ops on the allow-list (Fill, MatMul), tied to ``x`` so
    that nothing can be folded ahead."""
    def build(x):
        a = tf.fill([1500, 1500], tf.reduce_mean(x))
        for _ in range(400):
            a = tf.matmul(a, a) * 1e-3
        return tf.nn.conv2d(x, filt, [1, 1, 1, 1], "VALID") + 0 * tf.reduce_sum(a)

    return graph_export(build)


@pytest.mark.sandbox
@pytest.mark.parametrize("warm", [False, True])
def test_stalling_exports_hold_the_clean_room_at_most_one_budget(exercise, sandbox, tmp_path,
                                                                 warm):
    """Three exports that each stall for minutes: cold, the deadline (20 s) ends the one clean
    room and the rest are not tried; warm, the CPU allowance (8 s) stops it. The reference
    (measured first) is unharmed."""
    import time

    from grader.clean_room import LIMITS, WarmCleanRoom, cleanroom_request
    from grader.sandbox.runs import LineRelay

    references = reference_exports(exercise)
    filt = unpack_array(json.loads(references["conv1"].read_text())["context"]["W"])
    item = exercise.item("conv1")
    jobs = [Job("conv1/reference", item, "reference", "tensor", references["conv1"])]
    for n in range(3):
        path = tmp_path / f"stall{n}.json"
        path.write_text(json.dumps(stalling_answer(filt)))
        jobs.append(Job(f"stall{n}/student", item, "student", "tensor", path))
    limits = LIMITS.replace(notebook_timeout=120, cpu_seconds=8) if warm else LIMITS.replace(
        notebook_timeout=20)
    room = tmp_path / "room"
    room.mkdir()
    with contextlib.ExitStack() as stack:
        ahead = None
        if warm:
            relay = LineRelay()
            run = stack.enter_context(sandbox.start(cleanroom_request(room), on_line=relay))
            assert relay.event.wait(60) and "ready" in relay.early
            ahead = WarmCleanRoom(run, relay, room)
        started = time.monotonic()
        measured = measure_exports(jobs, sandbox, room, seed=3, limits=limits, warm=ahead)
        elapsed = time.monotonic() - started
    assert measured.runs == 1
    assert isinstance(measured.get("conv1", "reference"), TensorMeasurement)
    codes = {f"stall{n}": measured.results[f"stall{n}/student"].code for n in range(3)}
    assert codes == {"stall0": "budget", "stall1": "budget", "stall2": "budget"}
    assert "spent while measuring this answer" in measured.results["stall0/student"].detail
    assert elapsed < limits.notebook_timeout + 15  # generous; without the budget: 3 x 300 s
    assert measured.sandbox is not None
    if warm:  # stopped by the host once it reported 8 CPU seconds, not by the clock
        assert measured.sandbox.stopped and not measured.sandbox.timed_out
        assert measured.cpu_seconds == 8


@pytest.mark.sandbox
def test_crashing_exports_share_one_budget_across_re_runs(exercise, sandbox, tmp_path):
    """Twelve exports that each fill 1.6 GB (Fill is on the allow-list) in a clean room of 1 GiB:
    each kills its clean room (out of memory), and the re-runs share one 15 s budget instead of
    getting 300 s each; what is left unmeasured is ``budget``. (Each re-run starts a clean room
    that imports TensorFlow, a few seconds: twelve of them cannot fit in 15 s.)"""
    import time

    from grader.clean_room import LIMITS
    from grader.limits import GiB

    item = exercise.item("conv1")
    jobs = []
    for n in range(12):
        path = tmp_path / f"crash{n}.json"
        path.write_text(json.dumps(graph_export(
            lambda x: x + 0 * tf.reduce_sum(tf.fill([20000, 20000], tf.reduce_mean(x))))))
        jobs.append(Job(f"crash{n}/student", item, "student", "tensor", path))
    jobs.append(Job("conv1/reference", item, "reference", "tensor",
                    reference_exports(exercise)["conv1"]))
    limits = LIMITS.replace(notebook_timeout=15, memory_bytes=1 * GiB)
    started = time.monotonic()
    measured = measure_exports(jobs, sandbox, tmp_path / "room", seed=5, limits=limits)
    elapsed = time.monotonic() - started
    codes = [measured.results[f"crash{n}/student"].code for n in range(12)]
    assert measured.runs < 12 and codes[-1] == "budget"
    assert set(codes) <= {"crashed", "budget"} and "crashed" in codes
    crashed = measured.results["crash0/student"]
    assert "out of memory" in crashed.detail
    assert elapsed < 15 + 15


# --- measurements held to their expected shapes (issue 17, part 3) --------------------------


@pytest.mark.sandbox
def test_huge_outputs_are_refused_in_the_clean_room(exercise, sandbox, tmp_path):
    """Answers whose output holds 1,000,000 values (a static shape, refused before evaluation;
    a shape known only when run, refused before it is written): the host gets a small failure
    record, and the honest answer beside them is measured."""
    references = reference_exports(exercise)
    filt = unpack_array(json.loads(references["conv1"].read_text())["context"]["W"])
    exports = {
        "static": graph_export(lambda x: tf.fill([1000, 1000], tf.reduce_mean(x))),
        "dynamic": graph_export(lambda x: tf.zeros(tf.cast(tf.stack(
            [1000 + 0 * tf.reduce_sum(x), 1000.0]), tf.int32)) + tf.reduce_mean(x)),
        "wide": graph_export(lambda x: tf.tile(tf.nn.conv2d(x, filt, [1, 1, 1, 1], "VALID"),
                                               [1, 1, 1, 8])),  # 200 values: 8 x the reference
        "right": graph_export(lambda x: tf.nn.conv2d(x, filt, [1, 1, 1, 1], "VALID")),
    }
    item = exercise.item("conv1")
    jobs = [Job("conv1/reference", item, "reference", "tensor", references["conv1"])]
    for name, export in exports.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(export))
        jobs.append(Job(f"{name}/student", item, "student", "tensor", path))
    measured = measure_exports(jobs, sandbox, tmp_path / "room", seed=2)
    assert measured.runs == 1
    for name in ("static", "dynamic", "wide"):
        failure = measured.results[f"{name}/student"]
        assert isinstance(failure, MeasurementFailure) and failure.code == "wrong_shape", name
    assert "1000000 values" in measured.results["static/student"].detail
    assert "at most 100 were expected" in measured.results["wide/student"].detail  # 4 x 25
    assert isinstance(measured.results["right/student"], TensorMeasurement)
    out = tmp_path / "room" / "out"
    assert max(path.stat().st_size for path in out.glob("*.json")) < 20_000


# --- the trained weights' digest (a model's fingerprint, grader/fingerprints.py) --------------


@pytest.fixture
def measure_module(monkeypatch):
    """``grader/cleanroom/measure.py`` as the clean room imports it (its siblings top-level)."""
    import importlib

    monkeypatch.syspath_prepend(str(Path(graphs.__file__).parent))
    return importlib.import_module("measure")


def _renamed(export: dict, prefix: str) -> dict:
    """The export with every node of its graph renamed (``prefix`` + name), inputs, output and
    variable values following: the same model written with other names."""
    graph_def = graphs.parse_graph(export["graph_def"])

    def rename(ref: str) -> str:
        control = ref.startswith("^")
        name, _, port = ref.lstrip("^").partition(":")
        return ("^" if control else "") + prefix + name + (f":{port}" if port else "")

    for node in graph_def.node:
        node.name = prefix + node.name
        inputs = [rename(ref) for ref in node.input]
        del node.input[:]
        node.input.extend(inputs)
        if "_class" in node.attr:  # colocation with a variable, by name
            places = [b"loc:@" + prefix.encode() + s.removeprefix(b"loc:@")
                      for s in node.attr["_class"].list.s]
            del node.attr["_class"].list.s[:]
            node.attr["_class"].list.s.extend(places)
    return {**export, "graph_def": base64.b64encode(graph_def.SerializeToString()).decode(),
            "output": rename(export["output"]),
            "variables": {prefix + k: v for k, v in export["variables"].items()}}


def test_the_weights_digest_ignores_names_and_sees_one_changed_weight(exercise, measure_module):
    """Issue 20: the clean room hashes the trained values it froze into the graph, without
    their names: the same weights renamed, or pasted into the graph as constants, give the
    same digest; one weight changed by 0.001 gives another."""
    export = json.loads(reference_exports(exercise)["accuracy"].read_text())
    images = {"test": np.random.default_rng(0).integers(0, 256, (50, 28, 28), dtype=np.uint8)}

    def measured(export: dict) -> dict:
        return measure_module.measure_predictions(export, {}, images)

    original = measured(export)
    assert len(original["weights"]) == 64 and int(original["weights"], 16) >= 0
    renamed = measured(_renamed(export, "copied/"))
    assert renamed["weights"] == original["weights"]
    assert renamed["predictions"] == original["predictions"]
    graph_def = graphs.parse_graph(export["graph_def"])
    values = {k: graphs.unpack_array(v) for k, v in export["variables"].items()}
    pasted = {**export, "variables": {}, "graph_def": base64.b64encode(
        graphs.freeze(graph_def, values).SerializeToString()).decode()}
    assert measured(pasted)["weights"] == original["weights"]
    changed = dict(values)
    changed["W"] = values["W"].copy()
    changed["W"][0, 0, 0, 0] += 0.001
    nudged = {**export, "variables": {**export["variables"], "W": packed(changed["W"])}}
    assert measured(nudged)["weights"] != original["weights"]


@pytest.mark.sandbox
def test_the_real_clean_room_hashes_the_trained_weights(exercise, sandbox, tmp_path,
                                                         measure_module):
    """The reference's trained model and a renamed copy of it, measured in one real clean
    room: each measurement holds the same 64-hex digest, the one the clean room's code gives
    in this process, and the host keeps it."""
    from grader.clean_room import ImageSets
    from grader.measurements import PredictionsMeasurement

    export = json.loads(reference_exports(exercise)["accuracy"].read_text())
    copy_path = tmp_path / "copy.json"
    copy_path.write_text(json.dumps(_renamed(export, "mine_")))
    item = exercise.item("accuracy")
    jobs = [Job("accuracy/student", item, "student", "predictions",
                reference_exports(exercise)["accuracy"]),
            Job("copy/student", item, "student", "predictions", copy_path)]
    sets = {"test": np.random.default_rng(4).integers(0, 256, (30, 28, 28), dtype=np.uint8)}
    measured = measure_exports(jobs, sandbox, tmp_path / "room", seed=3,
                                 images=ImageSets(sets, moved=None))
    original, copied = measured.results["accuracy/student"], measured.results["copy/student"]
    assert isinstance(original, PredictionsMeasurement), original
    assert isinstance(copied, PredictionsMeasurement), copied
    here = measure_module.measure_predictions(export, {}, sets)["weights"]
    assert original.weights == copied.weights == here
    assert original.predictions == copied.predictions


def test_the_host_reads_no_more_than_the_expected_shapes_need(tmp_path):
    """A measurement file larger than its job's expected shapes need is not read (a clean room
    that was subverted could write one); an array over the expected size is ``wrong_shape``."""
    from grader.clean_room import _read_result

    path = tmp_path / "0.json"
    path.write_text(json.dumps({"ok": True, "fed": True, "outputs": [
        {"shape": [1000, 1000], "values": [0.5] * 1_000_000}]}))
    failure = _read_result(path, {"measure": "tensor", "max_values": 100}, {})
    assert failure.code == "bad_measurement" and "over the" in failure.detail
    small = {"ok": True, "fed": True, "outputs": [{"shape": [11, 11], "values": [0.5] * 121}]}
    path.write_text(json.dumps(small))
    assert _read_result(path, {"measure": "tensor", "max_values": 100}, {}).code == "wrong_shape"
    assert isinstance(_read_result(path, {"measure": "tensor", "max_values": 121}, {}),
                      TensorMeasurement)
    predictions = {"ok": True, "parameters": 1, "predictions": {"test": [1] * 10}}
    path.write_text(json.dumps(predictions) + " " * 5_000_000)
    assert _read_result(path, {"measure": "predictions"}, {"test": 10}).code == "bad_measurement"

# --- the data path (grader/cleanroom/datapath.py), on tiny graphs built without training ----


@pytest.mark.parametrize("frozen", [False, True])
@pytest.mark.parametrize("model", HONEST)
def test_an_honest_networks_data_path_is_one_chain_of_its_layers(model: str, frozen: bool):
    path = measured_path(MODELS[model], frozen=frozen)
    types = [op["type"] for op in path["ops"]]
    assert path["input"] and path["reaches_output"] and not path["truncated"]
    assert types[:9] == ["Conv2D", "AddV2", "Relu", "MaxPool", "Conv2D", "AddV2", "Relu",
                         "MaxPool", "Reshape"]
    assert types[-3:] == ["MatMul", "AddV2", "Softmax"]
    # dropout's random mask and the flatten's shape arithmetic read only shapes: off the path
    assert types[9:-3] == (["RealDiv", "SelectV2"] if model == "with_dropout" else [])
    assert all(op["data_inputs"] == 1 and op["inputs"][0]["data"] for op in path["ops"]
               if op["type"] != "SelectV2")
    conv = path["ops"][0]["inputs"][1]
    assert conv == {"data": False, "kind": "variable", "shape": [5, 5, 1, 20], "sources": 500}
    logits = path["logits"]
    assert logits["softmax"] is True
    assert logits["bias"] == {"type": "AddV2", "data": False, "kind": "variable",
                              "shape": [10], "sources": 10}
    # a keep_prob of unknown shape leaves the dropout's output shape unknown
    h_shape = None if model == "with_dropout" else [None, 800]
    assert logits["matmul"] == {
        "h_on_path": True, "h_shape": h_shape, "on_path": True,
        "weights": {"data": False, "kind": "variable", "shape": [800, 10], "sources": 8000},
        "transpose_a": False, "transpose_b": False}
    # dropout's scaling is made of a keep probability and a few constants of its mask
    assert all(0 < i["sources"] <= 8 for op in path["ops"] if op["type"] in ("RealDiv",
               "SelectV2") for i in op["inputs"] if not i["data"])


@pytest.mark.parametrize("model", ["zero_times_dense", "plus_dense"])
def test_a_table_beside_the_dense_layer_is_on_the_data_path(model: str):
    path = measured_path(MODELS[model], frozen=True)
    types = [op["type"] for op in path["ops"]]
    assert "ArgMin" in types and "GatherV2" in types  # the index is an int edge: followed
    joins = [op["type"] for op in path["ops"] if op["data_inputs"] == 2]
    assert "AddV2" in joins
    assert path["logits"]["bias"]["kind"] == "other"  # the dense branch is the 'bias'


def test_a_table_index_carried_by_a_shape_is_on_the_data_path():
    """``tf.shape`` of ``tf.range(index)`` reads a shape made from values."""
    types = [op["type"] for op in measured_path(MODELS["lookup_through_a_shape"])["ops"]]
    assert {"ArgMin", "Range", "Shape"} <= set(types)


def test_what_the_logits_weights_are_is_measured():
    path = measured_path(MODELS["constant_weights"], frozen=True)
    assert path["logits"]["matmul"]["weights"]["kind"] == "constant"
    path = measured_path(MODELS["table_as_filters"])
    conv = next(op for op in path["ops"] if op["type"] == "Conv2D")
    assert [i["data"] for i in conv["inputs"]] == [False, True]  # x is the filter


@pytest.mark.parametrize("model", ["table_unpacked_into_weights", "table_as_a_scale",
                                   "table_selected_in"])
def test_what_a_computed_weight_is_made_of_is_measured(model: str):
    """Issue 17, attacking the budget: a table packed 16 bits to an int32 word and unpacked
    off the data path is applied whole while the budget counts its words; the facts say the
    weight is computed (``other``) and how many values it is made of."""
    path = measured_path(MODELS[model], frozen=True)
    computed = [i for op in path["ops"] if op["type"] in ("MatMul", "Mul", "SelectV2")
                for i in op["inputs"] if not i["data"] and i["kind"] == "other"]
    assert computed and all(i["sources"] > 64 for i in computed)
    applied = max(int(np.prod([d or 1 for d in i["shape"]])) for i in computed)
    assert max(i["sources"] for i in computed) < applied  # the words, not the table


def test_the_data_path_is_bounded_and_needs_an_image():
    from grader.cleanroom import datapath

    graph = v1.Graph()
    with graph.as_default():
        x = v1.placeholder(v1.float32, [None, 4], name="x")
        y = x
        for _ in range(300):
            y = tf.nn.relu(y)
    path = datapath.data_path(graph, x, y, max_ops=200)
    assert path["count"] == 300 and path["truncated"] and len(path["ops"]) == 200
    empty = datapath.data_path(graph, None, y)
    assert not empty["input"] and not empty["reaches_output"] and empty["ops"] == []
    measured = parse_measurement("graph", {"ok": True, "op": "Relu", "ops": [],
                                           "data_path": path})
    assert measured.data_path is not None and measured.data_path.count == 300
    with pytest.raises(MeasurementError):
        parse_measurement("graph", {"ok": True, "op": "Relu", "ops": [],
                                    "data_path": dict(path, ops=path["ops"] * 2)})


#: The rule ``max_parameters`` follows (exercises/chap06_cnn/exercise.toml says why).
PARAMETER_FACTOR = 4


def test_the_parameter_budget_is_a_small_multiple_of_the_references_count(exercise):
    """Counted as the clean room counts a trained model (``measure_predictions``): every
    constant's elements and every variable's exported values."""
    export = json.loads(reference_exports(exercise)["accuracy"].read_text())
    graph_def = graphs.parse_graph(export["graph_def"])
    count = graphs.check_graph(graph_def) + sum(
        graphs.unpack_array(export["variables"][node.name]).size
        for node in graphs.variable_nodes(graph_def))
    assert count == 33_582  # the figure: 5x5x1x20 + 5x5x20x50 + 800x10, biases, shape
    assert exercise.accuracy.max_parameters == PARAMETER_FACTOR * count


@pytest.mark.parametrize("internal", ["_MklNativeConv2D", "_MklConv2D", "_FusedConv2D"])
def test_onednn_and_fused_internal_ops_written_into_an_export_are_refused(internal: str) -> None:
    """The clean room runs TensorFlow with oneDNN on (grader/tensorflow_env.py): TensorFlow
    rewrites the checked graph into its internal oneDNN and fused ops itself. A student who
    writes such an op into the export (to reach a kernel the allow-list never judged, with
    attributes of their choosing) is refused by name, before anything runs."""
    def net(x):
        w = tf.constant(np.ones((3, 3, 1, 2), np.float32))
        return tf.nn.relu(tf.nn.conv2d(x, w, [1, 1, 1, 1], "VALID"))

    export = graph_export(net)
    graph_def = graphs.parse_graph(export["graph_def"])
    conv = next(node for node in graph_def.node if node.op == "Conv2D")
    conv.op = internal
    export["graph_def"] = base64.b64encode(graph_def.SerializeToString()).decode()
    with pytest.raises(graphs.GraphRefused) as refused:
        checked(export)
    assert refused.value.code == "op_not_allowed" and internal in refused.value.ops
