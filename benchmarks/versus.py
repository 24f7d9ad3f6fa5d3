"""``make bench`` (versus): the grader beside ``jupyter nbconvert --execute``, in one run on this
machine.

Each figure is the median of several rounds; in a round every side runs once, in an order that
turns round by round (interleaved: a machine that slows down slows every side alike).

- P1: the reference solution graded through the service's warm worker (upload to verdict) vs
  the same notebook run by ``jupyter nbconvert --to notebook --execute``, set up as a student
  would by hand: a first cell prepended that makes TF1 run through ``tf.compat.v1`` and points
  MNIST to the local copy (``grader/kernel/bootstrap.py``'s ``install``, as the grader's kernel
  has it), and the rewrites the grader makes too (``grader/sanitize.py``: the course's
  ``%%writefile /root/userspace/...`` written beside the notebook). Goal, with the service's
  default settings (one CPU slot per run, ``LEND_IDLE_CPUS`` on: a lone run borrows the idle
  slots' cores): ratio <= 0.96 (the cells alone run at 0.956 of nbconvert's time). The
  grader's sandboxes run TensorFlow with oneDNN's kernels (``grader/tensorflow_env.py``), which
  TensorFlow leaves off by itself on AVX2 CPUs; nbconvert runs with TensorFlow's defaults, as a
  student's would. ``--hand-tf-env`` adds a third side, nbconvert with the grader's settings,
  whose ratio (no goal) is the service's own cost.
- P2: a one-cell notebook (``print(1)``): upload to verdict through the service (warm) and
  ``grader grade`` (cold, a process of its own), each minus nbconvert's time for the same
  notebook. Goals: <= 0.3 s warm, <= 1.5 s cold.
- P3: two uploads of the reference at once through the warm service (upload to both verdicts);
  ``--p3-runs`` rounds, 0 to skip. Goal: no slower with loans than without (``--no-lend``
  gives the figure to compare with: run both on a quiet machine).
- The phases of the warm runs, from the reports the service stored (``timings``: queue wait,
  sandbox, kernel, bootstrap, cells, exports (the probes), clean room, render, store).
- Throughput (notebooks per hour) is ``benchmarks/throughput.py``'s figure (``make bench`` runs
  it before this): its last result is quoted, not measured again.

Every side's time is a whole: nbconvert and ``grader grade`` from the process's start to its
exit; the service from the upload's request to the poll that sees the verdict (every 20 ms for
the first 10 s, then every 0.25 s: polling costs the web process CPU the grading needs). The
service (``python -m service``, embedded workers, a throwaway SQLite file) is started once and
left to settle (``--settle`` s once idle) after start-up and after each of its runs, so that a
warm pool (``WARM_POOL``, passed through from the environment) is refilled before the next run
and does not refill while another side runs. By default a grading run gets the service's default
slot of one CPU (``--cores-per-run``, the service's ``CORES_PER_RUN``) and borrows the idle
ones (``--lend``, the service's ``LEND_IDLE_CPUS``); ``--cores-per-run all`` gives a run every
CPU of the machine, as nbconvert has, and ``--no-lend`` measures the slots without loans.
Results go to ``--json``. Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import requests
from serving import free_port

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grader.config import GraderConfig  # noqa: E402
from grader.data.split import sandbox_data_dir  # noqa: E402
from grader.reference import solution_path  # noqa: E402
from grader.sandbox.cpus import usable_cpus  # noqa: E402
from grader.sanitize import sanitize_notebook  # noqa: E402
from grader.spec import Exercise  # noqa: E402
from grader.tensorflow_env import TENSORFLOW_ENV  # noqa: E402

BIN = Path(sys.executable).parent
GOAL_P1_RATIO = 0.96
GOAL_P2_WARM = 0.3
GOAL_P2_COLD = 1.5
#: The stored report's timings shown for the warm runs, in the order a run goes through them.
PHASES = ("queue_wait", "sandbox", "kernel_start", "bootstrap", "cells", "exports", "cleanroom",
          "render", "render_wait", "scoring", "store", "total")
#: The first cell of the by-hand notebook: the grader's own kernel bootstrap, loaded by path.
BOOT_CELL = """\
import importlib.util as _util, sys as _sys
_spec = _util.spec_from_file_location("_grader_boot", {path!r})
_boot = _util.module_from_spec(_spec)
_sys.modules["_grader_boot"] = _boot
_spec.loader.exec_module(_boot)
print(_boot.install({config!r}))
"""


@dataclass
class Side:
    """One way of running a notebook and the seconds of each of its runs."""

    name: str
    run: Callable[[], float]
    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


# --- notebooks --------------------------------------------------------------------------------


def one_cell() -> nbformat.NotebookNode:
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)", id="one")])


def by_hand(nb: nbformat.NotebookNode, exercise: Exercise, config: GraderConfig
            ) -> nbformat.NotebookNode:
    """``nb`` as a student would run it outside the grader: rewritten as the grader rewrites
    it before running it (``grader/sanitize.py``: no ``!pip``, ``%%writefile`` of an absolute
    path made relative), with a first cell that makes TF1 run through ``tf.compat.v1`` and
    reads the data sets from the local copy, as the grader's kernel has them."""
    nb = nbformat.reads(nbformat.writes(nb), as_version=4)
    sanitize_notebook(nb)
    runtime = exercise.runtime
    if not (runtime.tf1 or runtime.datasets):
        return nb
    boot = {"tf1": runtime.tf1,
            "datasets": {n: str(sandbox_data_dir(config.data_dir) / f"{n}.npz")
                         for n in runtime.datasets}}
    cell = nbformat.v4.new_code_cell(BOOT_CELL.format(
        path=str(ROOT / "grader" / "kernel" / "bootstrap.py"), config=boot), id="by-hand-boot")
    nb.cells.insert(0, cell)
    return nb


def unique(nb: nbformat.NotebookNode) -> bytes:
    """The notebook's bytes with a nonce in its metadata: the service takes the same notebook
    from the same student again within ``DUPLICATE_WINDOW`` as the earlier submission."""
    nb = nbformat.reads(nbformat.writes(nb), as_version=4)
    nb.metadata["bench_nonce"] = secrets.token_hex(8)
    return nbformat.writes(nb).encode()


# --- the three sides --------------------------------------------------------------------------


def quiet_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "PATH": f"{BIN}:{os.environ['PATH']}",
            "TF_CPP_MIN_LOG_LEVEL": "2", "MPLBACKEND": "Agg"}


def timed(argv: list[str], what: str, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> float:
    """Seconds from the command's start to its exit; a failure stops the bench."""
    started = time.monotonic()
    done = subprocess.run(argv, env=env or quiet_env(), cwd=cwd or ROOT, capture_output=True,
                          check=False)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"{what} exited {done.returncode}:\n"
                           f"{done.stderr.decode(errors='replace')[-3000:]}")
    return seconds


def nbconvert(path: Path, out: Path, env: dict[str, str] | None = None) -> Callable[[], float]:
    """``env``: set for the kernel besides :func:`quiet_env` (``--hand-tf-env``)."""
    argv = [str(BIN / "jupyter"), "nbconvert", "--to", "notebook", "--execute",
            "--output-dir", str(out), "--output", "executed", str(path)]
    return lambda: timed(argv, f"nbconvert of {path.name}", cwd=out,
                         env={**quiet_env(), **(env or {})})


def grader_cli(path: Path, exercise: str) -> Callable[[], float]:
    argv = [str(BIN / "grader"), "grade", str(path), "--exercise", exercise, "--json",
            "--quiet"]
    return lambda: timed(argv, f"grader grade {path.name}")


@dataclass
class Service:
    """A running ``python -m service``: its URL, a student's token, its database file."""

    url: str
    token: str
    database: Path
    settle: float
    exercise: str
    #: Submission id -> the stored report's timings, the score and upload-to-verdict seconds.
    runs: dict[int, dict[str, Any]] = field(default_factory=dict)

    def grade(self, nb: nbformat.NotebookNode, label: str) -> Callable[[], float]:
        def run() -> float:
            body = unique(nb)
            started = time.monotonic()
            answer = requests.post(f"{self.url}/api/submissions",
                                   headers={"Authorization": f"Bearer {self.token}"},
                                   data={"exercise": self.exercise},
                                   files={"notebook": ("n.ipynb", body)}, timeout=60)
            if answer.status_code != 202:
                raise RuntimeError(f"upload refused: {answer.status_code} {answer.text[:300]}")
            submission = answer.json()["id"]
            verdict = self.verdict(submission, started)
            seconds = time.monotonic() - started
            self.runs[submission] = {"label": label, "seconds": seconds, **verdict,
                                     **self.stored(submission)}
            self.wait_idle()
            return seconds

        return run

    def grade_together(self, nb: nbformat.NotebookNode, label: str, count: int = 2
                       ) -> Callable[[], float]:
        """``count`` uploads of ``nb`` at once; seconds from the first upload to the last
        verdict."""
        def run() -> float:
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {self.token}"
            started = time.monotonic()
            submissions = []
            for _ in range(count):
                answer = session.post(f"{self.url}/api/submissions",
                                      data={"exercise": self.exercise},
                                      files={"notebook": ("n.ipynb", unique(nb))}, timeout=60)
                if answer.status_code != 202:
                    raise RuntimeError(f"upload refused: {answer.status_code} "
                                       f"{answer.text[:300]}")
                submissions.append(answer.json()["id"])
            for submission in submissions:  # the last verdict is the figure
                verdict = self.verdict(submission, started)
                self.runs[submission] = {"label": label,
                                         "seconds": time.monotonic() - started,
                                         **verdict, **self.stored(submission)}
            seconds = time.monotonic() - started
            self.wait_idle()
            return seconds

        return run

    def verdict(self, submission: int, started: float) -> dict[str, Any]:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {self.token}"
        while True:
            body = session.get(f"{self.url}/api/submissions/{submission}", timeout=30).json()
            if body["state"] in ("graded", "failed"):
                return {"state": body["state"], "outcome": body.get("outcome"),
                        "score": body.get("score"), "reason": body.get("reason")}
            elapsed = time.monotonic() - started
            if elapsed > 3600:
                raise RuntimeError(f"submission {submission} has no verdict after an hour")
            time.sleep(0.02 if elapsed < 10 else 0.25)

    def stored(self, submission: int) -> dict[str, Any]:
        with sqlite3.connect(self.database) as db:
            report, queued, started, finished = db.execute(
                "SELECT report, queued_at, started_at, finished_at FROM grading_runs "
                "WHERE submission_id = ? ORDER BY id DESC LIMIT 1", (submission,)).fetchone()
        return {"timings": (json.loads(report) if report else {}).get("timings", {}),
                "queued_at": queued, "started_at": started, "finished_at": finished}

    def wait_idle(self) -> None:
        """Until no run is queued or running, then ``settle`` seconds more (a warm pool
        refills meanwhile, with no other side running)."""
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            text = requests.get(f"{self.url}/metrics", timeout=30).text
            busy = [line for line in text.splitlines()
                    if line.startswith("grader_queue_runs{")
                    and ('"queued"' in line or '"running"' in line)
                    and float(line.rsplit(" ", 1)[1]) > 0]
            if not busy:
                break
            time.sleep(0.2)
        time.sleep(self.settle)


def seed_student(env: dict[str, str]) -> str:
    """Migrate the service's database and add one student; its token."""
    from flask_migrate import upgrade

    from service import create_app
    from service.domain.roster import import_roster
    from service.extensions import db

    app = create_app({"SQLALCHEMY_DATABASE_URI": env["DATABASE_URL"],
                      "UPLOAD_DIR": env["UPLOAD_DIR"], "SECRET_KEY": env["SECRET_KEY"]})
    with app.app_context(), redirect_stderr(io.StringIO()):  # alembic's log lines
        upgrade()
        issued, _ = import_roster("student_id,name,email\nbench,Bench,\n")
        db.engine.dispose()
    return issued[0].token


@contextmanager
def service(folder: Path, cores_per_run: int, settle: float, exercise: str, lend: bool = True
            ) -> Iterator[Service]:
    """``python -m service`` on a throwaway SQLite file, as ``make run`` starts it."""
    port = free_port()
    database = folder / "service.db"
    env = {**quiet_env(), "DATABASE_URL": f"sqlite:///{database}",
           "UPLOAD_DIR": str(folder / "uploads"), "SECRET_KEY": secrets.token_hex(32),
           "HOST": "127.0.0.1", "PORT": str(port), "RATE_LIMIT": "10000/60",
           "CORES_PER_RUN": str(cores_per_run), "CPU_SLOTS_DIR": str(folder / "cpus"),
           "LEND_IDLE_CPUS": "1" if lend else "0"}
    token = seed_student(env)
    log = (folder / "service.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "service"], env=env, cwd=ROOT,
                               stdout=log, stderr=log, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError("the service stopped:\n" + (folder / "service.log")
                                   .read_text(errors="replace")[-3000:])
            try:
                if requests.get(f"{url}/readyz", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the service did not get ready within 120 s")
            time.sleep(0.1)
        running = Service(url, token, database, settle, exercise)
        running.wait_idle()
        yield running
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


# --- rounds and the table ---------------------------------------------------------------------


def interleave(sides: list[Side], rounds: int, what: str) -> None:
    """``rounds`` rounds, every side once per round, the order turned by one each round."""
    for k in range(rounds):
        order = sides[k % len(sides):] + sides[:k % len(sides)]
        for side in order:
            side.seconds.append(side.run())
            print(f"  {what} round {k + 1}/{rounds}: {side.name:<10} "
                  f"{side.seconds[-1]:8.2f} s", file=sys.stderr, flush=True)


def verdict(ok: bool) -> str:
    return "met" if ok else "missed"


def phase_table(runs: list[dict[str, Any]]) -> dict[str, float]:
    """The median of each phase over ``runs`` (the stored timings), and the upload to verdict
    seconds as ``verdict``."""
    medians = {key: statistics.median(r["timings"].get(key, 0.0) for r in runs)
               for key in PHASES}
    medians["verdict"] = statistics.median(r["seconds"] for r in runs)
    return medians


def throughput_note(path: Path) -> str:
    if not path.exists():
        return f"throughput: run benchmarks/throughput.py (make bench does; {path} not found)"
    data = json.loads(path.read_text())
    age = (time.time() - path.stat().st_mtime) / 60
    figures = ", ".join(
        f"{p['workers']} {'pinned' if p['pinned'] else 'unpinned'}: {p['per_hour']:.0f}/h"
        for p in data.get("passes", []))
    return (f"throughput (benchmarks/throughput.py, {path}, {age:.0f} min old, "
            f"{len(data.get('cpus', []))} CPU(s)): {figures}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/versus.py",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--exercise", default="chap06_cnn")
    parser.add_argument("--runs", type=int, default=5, help="P2 rounds")
    parser.add_argument("--p1-runs", type=int, default=3,
                        help="P1 rounds (0: none, P3 still runs)")
    parser.add_argument("--skip-p1", action="store_true", help="P2 and the phases only")
    parser.add_argument("--settle", type=float, default=15.0,
                        help="seconds the idle service is left alone before each warm run")
    parser.add_argument("--p3-runs", type=int, default=1,
                        help="P3 rounds (two reference uploads at once); 0: none")
    parser.add_argument("--cores-per-run", default="1",
                        help="CPUs of a service's grading run (the service's CORES_PER_RUN, "
                             "1 by default; 'all': as nbconvert has)")
    parser.add_argument("--lend", action=argparse.BooleanOptionalAction, default=True,
                        help="the service's LEND_IDLE_CPUS (on by default, as the service)")
    parser.add_argument("--hand-tf-env", action="store_true",
                        help="P1 also runs nbconvert with the grader's TensorFlow settings "
                             "(grader/tensorflow_env.py: oneDNN on) and shows that ratio too, "
                             "without a goal: how much of P1 is the settings, not the service")
    parser.add_argument("--json", type=Path, default=Path("var/bench/versus.json"))
    parser.add_argument("--throughput-json", type=Path,
                        default=Path("var/bench/throughput.json"))
    args = parser.parse_args(argv)
    if args.runs < 1:  # P2's medians are the table's first rows
        parser.error("--runs must be at least 1")
    config = GraderConfig.from_env()
    exercise = config.exercise(args.exercise)
    cpus = len(usable_cpus())
    cores = cpus if args.cores_per_run == "all" else int(args.cores_per_run)
    print(f"versus nbconvert: {exercise.id}, {config.sandbox} sandbox, {cpus} CPU(s), "
          f"{cores} per service run, LEND_IDLE_CPUS={int(args.lend)}, "
          f"WARM_POOL={os.environ.get('WARM_POOL', '(default)')}, load average "
          f"{os.getloadavg()[0]:.2f}", file=sys.stderr, flush=True)
    results: dict[str, Any] = {"exercise": exercise.id, "cpus": cpus, "cores_per_run": cores,
                               "lend": args.lend, "warm_pool": os.environ.get("WARM_POOL"),
                               "load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="grader-versus-") as tmp:
        folder = Path(tmp)
        small = one_cell()
        small_path = folder / "one_cell.ipynb"
        small_path.write_text(nbformat.writes(small))
        with service(folder, cores, args.settle, exercise.id, args.lend) as running:
            p2 = [Side("nbconvert", nbconvert(small_path, folder)),
                  Side("cold", grader_cli(small_path, exercise.id)),
                  Side("warm", running.grade(small, "p2"))]
            interleave(p2, args.runs, "P2")
            p1: list[Side] = []
            if not args.skip_p1:
                solution = nbformat.read(solution_path(exercise), as_version=4)
            if not args.skip_p1 and args.p1_runs > 0:
                hand_path = folder / "solution_by_hand.ipynb"
                hand_path.write_text(nbformat.writes(by_hand(solution, exercise, config)))
                p1 = [Side("nbconvert", nbconvert(hand_path, folder)),
                      Side("warm", running.grade(solution, "p1"))]
                if args.hand_tf_env:
                    p1.append(Side("nbconvert, grader's TF settings",
                                   nbconvert(hand_path, folder, dict(TENSORFLOW_ENV))))
                interleave(p1, args.p1_runs, "P1")
            p3: list[Side] = []
            if not args.skip_p1 and args.p3_runs > 0:
                p3 = [Side("two at once", running.grade_together(solution, "p3"))]
                interleave(p3, args.p3_runs, "P3")
            runs = list(running.runs.values())
    results["load_after"] = os.getloadavg()
    results["p2"] = {s.name: s.seconds for s in p2}
    nb2, cold, warm = (s.median for s in p2)
    print(f"\nversus jupyter nbconvert --execute, {exercise.id}, medians of interleaved "
          f"rounds\n")
    print(f"{'figure':<44}{'grader':>9}{'nbconvert':>11}{'result':>10}{'goal':>10}  ")
    if p1:
        nb1, warm1 = (s.median for s in p1[:2])
        ratio = warm1 / nb1
        results["p1"] = {s.name: s.seconds for s in p1}
        results["p1_ratio"] = ratio
        print(f"{f'P1 reference, warm service ({args.p1_runs} rounds)':<44}{warm1:>9.2f}"
              f"{nb1:>11.2f}{ratio:>9.2f}x{f'<= {GOAL_P1_RATIO}x':>10}  "
              f"{verdict(ratio <= GOAL_P1_RATIO)}")
        if len(p1) > 2:
            same = p1[2].median
            results["p1_ratio_same_tf_env"] = warm1 / same
            print(f"{'P1, nbconvert with the TF settings too':<44}{warm1:>9.2f}{same:>11.2f}"
                  f"{warm1 / same:>9.2f}x{'(none)':>10}")
    if p3:
        both = p3[0].median
        results["p3"] = {"two at once": p3[0].seconds}
        print(f"{f'P3 two references at once ({args.p3_runs} rounds)':<44}{both:>9.2f}"
              f"{'':>11}{'':>10}{'--no-lend':>10}  (compare: no slower with loans)")
    rounds = f"({args.runs} rounds)"
    print(f"{f'P2 one cell, warm service {rounds}':<44}{warm:>9.2f}{nb2:>11.2f}"
          f"{warm - nb2:>+9.2f}s{'<= 0.3 s':>10}  {verdict(warm - nb2 <= GOAL_P2_WARM)}")
    print(f"{f'P2 one cell, grader grade (cold) {rounds}':<44}{cold:>9.2f}{nb2:>11.2f}"
          f"{cold - nb2:>+9.2f}s{'<= 1.5 s':>10}  {verdict(cold - nb2 <= GOAL_P2_COLD)}")
    results["p2_overhead"] = {"warm": warm - nb2, "cold": cold - nb2}
    results["phases"] = {}
    print("\nphases of the warm service runs, median seconds (the stored report's timings; "
          "'verdict' is upload to verdict; with a warm kit, kernel_start and bootstrap were "
          "spent before the upload, while the kit waited)\n")
    labels = [label for label in ("p2", "p1", "p3") if any(r["label"] == label for r in runs)]
    print(f"{'phase':<14}" + "".join(f"{label.upper():>10}" for label in labels))
    tables = {label: phase_table([r for r in runs if r["label"] == label]) for label in labels}
    for key in (*PHASES, "verdict"):
        print(f"{key:<14}" + "".join(f"{tables[label][key]:>10.2f}" for label in labels))
    results["phases"] = tables
    results["runs"] = runs
    failed = [r for r in runs if r["state"] != "graded"]
    if failed:
        print(f"\n{len(failed)} warm run(s) not graded: {failed[0]}")
    print(f"\n{throughput_note(args.throughput_json)}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1, default=str))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
