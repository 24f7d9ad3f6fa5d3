"""``make bench-service``: the web service at course scale, on SQLite and PostgreSQL.

For each database the script makes a throwaway one (a file in a temporary folder; a database on
the machine's PostgreSQL, created here and dropped at the end), migrates it, seeds it with
``--students`` roster students and, for each of ``--exercises`` exercises, ``--submissions``
graded submissions (by default 1,000 students x 10 exercises x 10 submissions each: 100,000
submissions, each run with a realistic report and its item scores) under the course's rules
(a schedule per exercise with a due time, a late window and a penalty, some extensions and
adjustments; issue 18). The exercises are ``chap06_cnn`` and copies of it under other ids, in a
temporary exercises folder (``GRADER_EXERCISES``): the service knows exercises from that
folder. It starts a real server on it (``--server``:
``gunicorn`` with ``gunicorn.conf.py``, or ``waitress`` single-process as ``make run`` serves)
with no grading worker (uploads stay queued: nothing is graded), then measures:

- uploads at a steady ``--rate`` per second for ``--seconds`` (an open loop, as students
  arrive: each upload starts on schedule whatever the others are doing, up to ``--clients`` at
  once), p50 and p99 from the scheduled start;
- a burst: ``--clients`` concurrent clients posting short notebooks to ``POST /api/submissions``
  back to back (each a different student, each notebook different), p50, p99 and uploads per
  second. A closed loop saturates the machine by design: its latency is the clients over the
  throughput (Little's law), see docs/operations.md;
- the same uploads while ``--refreshers`` instructors reload the class dashboard in a loop;
- the class dashboard page (the class table, goal 300 ms) and the exercise's grades CSV: median
  time over ``--repeat`` requests, and size;
- the course's gradebook CSV (every exercise and the total; goal 1 s): over HTTP from
  ``/dashboard/gradebook.csv`` where the service has that route, and in-process
  (``csv_export.gradebook_csv(gradebook.course_gradebook(...))``, what the route serves, with
  no HTTP around it) always;
- ``GET /api/submissions`` of one student with ``--student-submissions`` submissions.

Each figure is printed beside its goal. Speed goals live here, not in timed tests: the numbers
depend on the machine. Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import requests

ROOT = Path(__file__).resolve().parent.parent
EXERCISE = "chap06_cnn"
#: An admin connection string of the PostgreSQL to measure; unset: a throwaway cluster of this
#: run's own (Debian's server binaries, fsync on as in production), removed at the end.
POSTGRES_ADMIN = os.environ.get("GRADER_BENCH_POSTGRES")
GOALS = {"upload_p99": 0.200, "dashboard": 0.300, "dashboard_bytes": 300_000, "csv": 0.500,
         "gradebook_csv": 1.0}
PASSWORD = "bench password 1234"


# --- databases --------------------------------------------------------------------------------


@contextmanager
def sqlite_database(folder: Path) -> Iterator[str]:
    yield f"sqlite:///{folder / 'bench.db'}"


@contextmanager
def postgres_database() -> Iterator[str]:
    """A database of its own on ``GRADER_BENCH_POSTGRES``, or on a throwaway cluster; dropped
    at the end."""
    if POSTGRES_ADMIN is None:
        sys.path.insert(0, str(ROOT))
        from tests.servers import ThrowawayPostgres

        with ThrowawayPostgres(durable=True) as cluster, postgres_on(cluster.admin_url) as url:
            yield url
        return
    with postgres_on(POSTGRES_ADMIN) as url:
        yield url


@contextmanager
def postgres_on(admin_url: str) -> Iterator[str]:
    admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
    name = f"grader_bench_{os.getpid()}"
    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.execute(f'CREATE DATABASE "{name}"')
    info = psycopg.conninfo.conninfo_to_dict(admin_url)
    user = info.get("user") or os.environ.get("USER", "postgres")
    try:
        yield (f"postgresql+psycopg://{user}@{info.get('host', '127.0.0.1')}:"
               f"{info.get('port', '5432')}/{name}")
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


# --- seeding ----------------------------------------------------------------------------------


def exercise_folders(folder: Path, count: int) -> tuple[Path, Path, list[str]]:
    """``count`` exercises for the service to know: ``chap06_cnn`` and copies of it under other
    ids (``chap06_cnn_02``...), in ``folder/exercises`` with their reference folders (links to
    chap06_cnn's) in ``folder/reference``. The roots and the ids."""
    exercises, references = folder / "exercises", folder / "reference"
    spec = (ROOT / "exercises" / EXERCISE / "exercise.toml").read_text()
    ids = [EXERCISE, *(f"{EXERCISE}_{n:02d}" for n in range(2, count + 1))]
    for exercise_id in ids:
        (exercises / exercise_id).mkdir(parents=True)
        (exercises / exercise_id / "exercise.toml").write_text(
            spec.replace(f'id = "{EXERCISE}"', f'id = "{exercise_id}"', 1))
        shutil.copy(ROOT / "exercises" / EXERCISE / "template.ipynb", exercises / exercise_id)
        references.mkdir(exist_ok=True)
        (references / exercise_id).symlink_to(ROOT / "reference" / EXERCISE)
    return exercises, references, ids


def seed(env: dict[str, str], students: int, submissions: int, heavy_student: int,
         exercise_ids: list[str]) -> dict:
    """Migrate and fill the database; returns the tokens of the students and the instructor.
    ``submissions`` of each exercise: of ``chap06_cnn``, ``heavy_student`` of them by student 0
    (the API list's measure) and the rest spread over the others; of the other exercises, spread
    evenly over every student."""
    os.environ.update(env)
    from flask_migrate import upgrade
    from sqlalchemy import insert, update
    from werkzeug.security import generate_password_hash

    from service import create_app
    from service.extensions import db
    from service.models import Adjustment, ExtensionGrant, Instructor, Schedule, Student

    app = create_app()
    tokens = [secrets.token_urlsafe(24) for _ in range(students)]
    with app.app_context():
        upgrade()
        exercise = app.config["GRADER"].exercise(EXERCISE)
        items = [(item.id, item.points) for item in exercise.items]
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        start = now - dt.timedelta(days=7)
        session = db.session
        session.execute(insert(Student), [
            {"id": k + 1, "student_id": f"s{k:05d}", "name": f"Student {k} 学生",
             "email": f"s{k}@example.org",
             "token_hash": hashlib.sha256(tokens[k].encode()).hexdigest(), "created_at": start}
            for k in range(students)])
        session.execute(insert(Instructor), [{
            "username": "bench", "password_hash": generate_password_hash(PASSWORD),
            "must_change_password": False}])
        # the course's rules: chap06_cnn is due in a week (the uploads measured below are on
        # time); the others were due 5 days after the start, late until a day after, 10% per
        # started day (about a seventh of their submissions late, a seventh after closing)
        for exercise_id in exercise_ids:
            due = now + dt.timedelta(days=7) if exercise_id == EXERCISE else (
                start + dt.timedelta(days=5))
            session.add(Schedule(exercise=exercise_id, due_at=due,
                                 late_until=due + dt.timedelta(days=1), late_penalty="10%/day",
                                 counts="best", timezone="Asia/Tokyo", weight=1.0,
                                 release={"holdout_accuracy": "after_late_until"}))
        for pk in range(1, students + 1, 20):  # one student in 20: two more days everywhere
            for exercise_id in exercise_ids:
                session.add(ExtensionGrant(student_pk=pk, exercise=exercise_id,
                                           due_at=start + dt.timedelta(days=7), comment="bench"))
        for pk in range(1, students + 1, 25):  # one in 25: a bonus, and an item set by hand
            for exercise_id in exercise_ids:
                session.add(Adjustment(student_pk=pk, exercise=exercise_id, item_id=None,
                                       mode="add", points=2.0, comment="bench", author="bench"))
                session.add(Adjustment(student_pk=pk, exercise=exercise_id, item_id=items[0][0],
                                       mode="set", points=items[0][1], comment="bench",
                                       author="bench"))
        session.flush()
        first = 0
        for e, exercise_id in enumerate(exercise_ids):
            first = seed_exercise(session, exercise_id, e, first, students, submissions,
                                  heavy_student if exercise_id == EXERCISE else 0, items, start)
        if db.engine.dialect.name == "postgresql":  # explicit ids: move the sequences on
            for table in ("students", "submissions", "grading_runs", "item_scores",
                          "instructors"):
                session.execute(db.text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"))
        session.execute(update(Instructor).values(must_change_password=False))
        session.commit()
        if db.engine.dialect.name == "postgresql":
            session.execute(db.text("ANALYZE"))  # as autovacuum would soon after a bulk load
            session.commit()
        db.engine.dispose()
    return {"tokens": tokens}


def seed_exercise(session: Any, exercise_id: str, e: int, first: int, students: int,
                  submissions: int, heavy_student: int, items: list[tuple[str, float]],
                  start: dt.datetime) -> int:
    """``submissions`` graded submissions of one exercise, ids from ``first + 1``; the next
    free id."""
    from sqlalchemy import insert

    from service.models import GradingRun, ItemScore, Submission
    from service.states import ItemStatus, Outcome, RunState

    if heavy_student:  # student 0 gets heavy_student submissions; the rest spread over others
        owners = [1] * heavy_student + [2 + k % max(1, students - 1)
                                        for k in range(submissions - heavy_student)]
    else:
        owners = [1 + k % students for k in range(submissions)]
    subs, runs, scores = [], [], []
    for n, owner in enumerate(owners):
        k = first + n
        created = start + dt.timedelta(seconds=n * 600_000 / submissions)
        score = float(((n + 13 * e) * 37) % 101)
        subs.append({"id": k + 1, "student_pk": owner, "exercise": exercise_id,
                     "filename": "cnn.ipynb", "notebook_sha256": f"{k:064x}",
                     "size": 20_000, "created_at": created})
        report_items = [{"id": item_id, "score": points / 2, "max_score": points,
                         "status": ItemStatus.PARTIAL,
                         "feedback": {"ja": "部分点です。" * 20, "en": "Partial. " * 30},
                         "details": {"observed": list(range(40))}}
                        for item_id, points in items]
        runs.append({"id": k + 1, "submission_id": k + 1, "state": RunState.GRADED,
                     "outcome": Outcome.GRADED, "attempts": 1, "worker": "bench",
                     "queued_at": created, "started_at": created,
                     "finished_at": created + dt.timedelta(seconds=90),
                     "score": score, "max_score": 100.0, "measured_accuracy": 0.97,
                     "report": {"items": report_items, "notes": [],
                                "log": "x" * 4000, "timings": {"total": 90.0}}})
        scores += [{"run_id": k + 1, "position": p, "item_id": item_id, "score": pts / 2,
                    "max_score": pts, "status": ItemStatus.PARTIAL,
                    "feedback_ja": "部分点です。", "feedback_en": "Partial."}
                   for p, (item_id, pts) in enumerate(items)]
    for chunk in range(0, len(subs), 2000):
        session.execute(insert(Submission), subs[chunk:chunk + 2000])
        session.execute(insert(GradingRun), runs[chunk:chunk + 2000])
    for chunk in range(0, len(scores), 5000):
        session.execute(insert(ItemScore), scores[chunk:chunk + 5000])
    session.commit()
    return first + len(owners)


# --- the server -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def server(kind: str, env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    full = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    if kind == "gunicorn":
        command = [str(Path(sys.executable).parent / "gunicorn"), "-c",
                   str(ROOT / "gunicorn.conf.py"), "--bind", f"127.0.0.1:{port}",
                   "service:create_app()"]
    else:  # what `make run` serves, without its workers and janitor
        command = [sys.executable, "-c",
                   "import sys; from waitress import serve; from service import create_app; "
                   "app = create_app(); serve(app, host='127.0.0.1', port=int(sys.argv[1]), "
                   "threads=8, max_request_body_size=app.config['MAX_CONTENT_LENGTH'] + 2**20)",
                   str(port)]
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(command, env=full, cwd=ROOT, stdout=log, stderr=log,
                               start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if requests.get(f"{url}/healthz", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            if process.poll() is not None:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("the server did not start")
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError("the server stopped:\n" + log.read().decode()[-3000:])
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def instructor_session(url: str) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{url}/dashboard/login").text
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    data = {"username": "bench", "password": PASSWORD}
    if token:
        data["csrf_token"] = token.group(1)
    answer = session.post(f"{url}/dashboard/login", data=data, allow_redirects=False)
    if answer.status_code not in (302, 303):
        raise RuntimeError(f"instructor login failed: {answer.status_code}")
    return session


# --- measurements -----------------------------------------------------------------------------


def notebook(template: dict[str, Any], nonce: str) -> bytes:
    """A short notebook: the template's first cells and a cell that makes it unique."""
    short = dict(template, cells=[*template["cells"][:6], {
        "cell_type": "markdown", "metadata": {}, "source": f"bench {nonce}"}])
    return json.dumps(short).encode()


def post_upload(session: requests.Session, url: str, token: str, body: bytes) -> str | None:
    """One upload; None when it was accepted (202), else what came back."""
    answer = session.post(f"{url}/api/submissions", headers={"Authorization": f"Bearer {token}"},
                          data={"exercise": EXERCISE}, files={"notebook": ("n.ipynb", body)})
    return None if answer.status_code == 202 else f"{answer.status_code} {answer.text[:200]}"


def uploads(url: str, tokens: list[str], clients: int, per_client: int,
            template: dict[str, Any]) -> tuple[list[float], float]:
    """A burst: ``clients`` at once, each sending ``per_client`` uploads back to back (a closed
    loop: a client sends its next upload as soon as the last is answered). Seconds of each
    upload and of the whole burst; every upload must be accepted."""
    failures: list[str] = []

    def client(k: int) -> list[float]:
        session = requests.Session()
        times = []
        for j in range(per_client):
            body = notebook(template, f"{k}-{j}-{secrets.token_hex(4)}")
            started = time.perf_counter()
            failure = post_upload(session, url, tokens[k], body)
            times.append(time.perf_counter() - started)
            if failure:
                failures.append(failure)
        return times

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(client, range(clients)))
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} uploads refused, e.g. {failures[0]}")
    return [t for times in results for t in times], elapsed


def steady_uploads(url: str, tokens: list[str], clients: int, rate: float, count: int,
                   template: dict[str, Any]) -> list[float]:
    """An open loop: ``count`` uploads started at ``rate`` per second whatever the answers
    (the way students arrive), by up to ``clients`` connections at once. Seconds of each,
    measured from its scheduled start (a late start counts as waiting)."""
    failures: list[str] = []
    local = threading.local()

    def one(k: int, due: float) -> float:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        body = notebook(template, f"steady-{k}-{secrets.token_hex(4)}")
        failure = post_upload(session, url, tokens[k % len(tokens)], body)
        if failure:
            failures.append(failure)
        return time.perf_counter() - due

    start = time.perf_counter() + 0.2
    futures = []
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        for k in range(count):
            due = start + k / rate
            time.sleep(max(0.0, due - time.perf_counter()))
            futures.append(pool.submit(one, k, due))
        times = [future.result() for future in futures]
    if failures:
        raise RuntimeError(f"{len(failures)} uploads refused, e.g. {failures[0]}")
    return times


def timed_get(session: requests.Session, url: str, repeat: int) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        answer = session.get(url)
        times.append(time.perf_counter() - started)
        answer.raise_for_status()
        size = len(answer.content)
    return statistics.median(times), size


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(url: str, tokens: list[str], args: argparse.Namespace, exercise_ids: list[str]
            ) -> dict[str, float]:
    template = json.loads((ROOT / "exercises" / EXERCISE / "template.ipynb").read_text())
    staff = instructor_session(url)
    figures: dict[str, float] = {}
    figures["dashboard"], figures["dashboard_bytes"] = timed_get(
        staff, f"{url}/dashboard/{EXERCISE}", args.repeat)
    # an exercise past its due: late submissions, penalties, closed ones, extensions
    figures["dashboard_due"], _ = timed_get(staff, f"{url}/dashboard/{exercise_ids[-1]}",
                                            args.repeat)
    figures["csv"], figures["csv_bytes"] = timed_get(
        staff, f"{url}/dashboard/{EXERCISE}/grades.csv", args.repeat)
    if staff.get(f"{url}/dashboard/gradebook.csv").status_code == 200:
        figures["gradebook_http"], figures["gradebook_http_bytes"] = timed_get(
            staff, f"{url}/dashboard/gradebook.csv", args.repeat)
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {tokens[0]}"
    figures["api_list"], figures["api_list_bytes"] = timed_get(
        api, f"{url}/api/submissions", args.repeat)
    students = tokens[1:1 + args.clients]
    uploads(url, students, args.clients, 1, template)  # warm-up (connections, caches)
    times, elapsed = uploads(url, students, args.clients, args.uploads, template)
    figures["upload_p50"], figures["upload_p99"] = percentile(times, .5), percentile(times, .99)
    figures["upload_rate"] = len(times) / elapsed
    steady = steady_uploads(url, students, args.clients, args.rate,
                            max(50, round(args.rate * args.seconds)), template)
    figures["steady_p50"], figures["steady_p99"] = percentile(steady, .5), percentile(steady, .99)
    if args.refreshers:
        stop = threading.Event()

        def refresh() -> None:
            session = instructor_session(url)
            while not stop.is_set():
                session.get(f"{url}/dashboard/{EXERCISE}")

        threads = [threading.Thread(target=refresh) for _ in range(args.refreshers)]
        for thread in threads:
            thread.start()
        try:
            busy, _ = uploads(url, tokens[1 + args.clients:1 + 2 * args.clients],
                              args.clients, args.uploads, template)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        figures["busy_upload_p50"] = percentile(busy, .5)
        figures["busy_upload_p99"] = percentile(busy, .99)
    return figures


def gradebook_in_process(exercise_ids: list[str], repeat: int) -> tuple[float, int]:
    """The course's gradebook CSV as ``/dashboard/gradebook.csv`` makes it, without HTTP:
    ``gradebook_csv(course_gradebook(...))`` over every exercise, median seconds and bytes. A
    fresh session each time (nothing cached between requests, as in the service), the heap
    settled as in a web process."""
    from service import create_app
    from service.domain.csv_export import gradebook_csv
    from service.domain.gradebook import course_gradebook
    from service.extensions import db
    from service.heap import settle

    app = create_app()
    settle()  # as a web process does once the app is loaded (gunicorn.conf.py)
    times, size = [], 0
    with app.app_context():
        grader = app.config["GRADER"]
        columns = [(i, grader.exercise(i).max_score) for i in exercise_ids]
        for _ in range(repeat):
            started = time.perf_counter()
            text = gradebook_csv(course_gradebook(db.session, columns))
            times.append(time.perf_counter() - started)
            size = len(text.encode())
            db.session.remove()
        db.engine.dispose()
    return statistics.median(times), size


def report(name: str, figures: dict[str, float], args: argparse.Namespace) -> None:
    def ms(value: float) -> str:
        return f"{value * 1000:8.0f} ms"

    def verdict(key: str) -> str:
        return "ok" if figures[key] < GOALS[key] else "MISSED"

    print(f"\n== {name} ({args.server}; {args.students} students, {args.exercises} exercises x "
          f"{args.submissions} submissions) ==")
    print(f"  upload p50, {args.rate:g}/s steady   {ms(figures['steady_p50'])}")
    print(f"  upload p99, {args.rate:g}/s steady   {ms(figures['steady_p99'])}   goal < 200 ms  "
          f"{'ok' if figures['steady_p99'] < GOALS['upload_p99'] else 'MISSED'}")
    print(f"  upload p50, burst         {ms(figures['upload_p50'])}   "
          f"({args.clients} clients back to back: {figures['upload_rate']:.0f} uploads/s)")
    print(f"  upload p99, burst         {ms(figures['upload_p99'])}   goal < 200 ms  "
          f"{verdict('upload_p99')}")
    if "busy_upload_p99" in figures:
        print(f"  upload p50, {args.refreshers} refreshing  {ms(figures['busy_upload_p50'])}")
        print(f"  upload p99, {args.refreshers} refreshing  {ms(figures['busy_upload_p99'])}   "
              f"goal < 200 ms  {'ok' if figures['busy_upload_p99'] < 0.2 else 'MISSED'}")
    print(f"  dashboard                 {ms(figures['dashboard'])}   goal < 300 ms  "
          f"{verdict('dashboard')}")
    print(f"  dashboard page       {figures['dashboard_bytes'] / 1000:10.0f} KB   "
          f"goal < 300 KB  {verdict('dashboard_bytes')}")
    print(f"  class table, past due     {ms(figures['dashboard_due'])}   goal < 300 ms  "
          f"{'ok' if figures['dashboard_due'] < GOALS['dashboard'] else 'MISSED'}")
    print(f"  exercise CSV              {ms(figures['csv'])}   goal < 500 ms  {verdict('csv')}"
          f"   ({figures['csv_bytes'] / 1000:.0f} KB)")
    print(f"  gradebook CSV, in-process {ms(figures['gradebook_csv'])}   goal < 1 s     "
          f"{verdict('gradebook_csv')}   ({figures['gradebook_csv_bytes'] / 1000:.0f} KB; "
          f"{args.exercises} exercises and the total)")
    if "gradebook_http" in figures:
        print(f"  gradebook CSV, HTTP       {ms(figures['gradebook_http'])}   goal < 1 s     "
              f"{'ok' if figures['gradebook_http'] < GOALS['gradebook_csv'] else 'MISSED'}")
    else:
        print("  gradebook CSV, HTTP       (no /dashboard/gradebook.csv in this service)")
    print(f"  GET /api/submissions      {ms(figures['api_list'])}   "
          f"({figures['api_list_bytes'] / 1000:.0f} KB; student with "
          f"{args.student_submissions} submissions)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/serving.py",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--server", choices=("gunicorn", "waitress"), default="gunicorn")
    parser.add_argument("--students", type=int, default=1000)
    parser.add_argument("--submissions", type=int, default=10_000, help="per exercise")
    parser.add_argument("--exercises", type=int, default=10)
    parser.add_argument("--student-submissions", type=int, default=500)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--uploads", type=int, default=4, help="uploads per client")
    parser.add_argument("--rate", type=float, default=20.0,
                        help="uploads per second of the steady (open-loop) measurement")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="length of the steady measurement")
    parser.add_argument("--refreshers", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path, default=Path("var/bench/service.json"))
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))  # this checkout's service, as the server runs it (PYTHONPATH)
    if args.students < 1 + 2 * args.clients:
        parser.error("--students must be at least 1 + 2 * --clients")
    results = {}
    for name in args.databases.split(","):
        folder = Path(tempfile.mkdtemp(prefix="grader-bench-"))
        try:
            maker = sqlite_database(folder) if name == "sqlite" else postgres_database()
            with maker as url:
                exercises, references, exercise_ids = exercise_folders(folder, args.exercises)
                env = {"DATABASE_URL": url, "UPLOAD_DIR": str(folder / "uploads"),
                       "GRADER_EXERCISES": str(exercises), "GRADER_REFERENCE": str(references),
                       "SECRET_KEY": secrets.token_hex(32), "QUEUE": "embedded",
                       "RATE_LIMIT": "1000/600", "PROMETHEUS_MULTIPROC_DIR": str(
                           folder / "metrics")}
                (folder / "metrics").mkdir()
                started = time.perf_counter()
                seeded = seed(env, args.students, args.submissions, args.student_submissions,
                              exercise_ids)
                print(f"{name}: seeded in {time.perf_counter() - started:.0f} s", flush=True)
                with server(args.server, env) as base:
                    figures = measure(base, seeded["tokens"], args, exercise_ids)
                figures["gradebook_csv"], figures["gradebook_csv_bytes"] = (
                    gradebook_in_process(exercise_ids, args.repeat))
                report(name, figures, args)
                results[name] = figures
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"server": args.server, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
