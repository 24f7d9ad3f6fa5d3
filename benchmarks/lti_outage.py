"""``make bench-lti``: grade passback through an LMS outage (issue 19's third "Done when": the
LMS's token or scores endpoint down for five minutes: the score arrives after it is back, once,
with nothing else delayed).

The real service (``python -m service``) with its DEFAULT settings (embedded workers, the
bubblewrap sandbox, SQLite, warm pool, grade passback's default ``Retry``: 30 s doubling to
30 min, 20 % jitter either way), the tests' LTI 1.3 platform (:mod:`tests.lti`) registered by the
real ``flask --app service lti register``; two learners, A and B, launched from a resource link
that has a line item (``requests`` sessions that follow the platform's self-submitting forms, as
a browser would). Then:

1. **baseline**: the demo student (a token, no LMS account, so nothing is passed back and no
   access token is cached) uploads the short notebook of ``tests/browser/test_student_flow.py``
   twice through the upload form: the second grading time (upload to ``graded`` on the
   submission's ``status.json``) is the baseline, the first warms up;
2. **outage**: the platform's token and scores endpoints fail (``--endpoints``); by default
   they answer 503 for the first half of ``--outage-seconds`` and the platform is offline
   (connection refused) for the second half (``--mode 503`` or ``--mode offline`` for one kind
   only). Learner A uploads at its start; learner B uploads once A is graded and the workers
   had ``--settle`` seconds. Both gradings must take at most 1.5 x baseline + 5 s (nothing else
   delayed), and both outbox rows (``lti_scores``) must stay pending with their attempts and
   last answer recorded;
3. **restore**: the platform is back. Each learner's score must arrive within the bound the
   backoff allows, exactly once (no copy within ``--watch-after`` seconds, more than the
   senders' minute sweep), with ``scoreGiven`` equal to the score the service shows.

**The bound.** A row whose first attempt failed at ``f`` (at or after the outage's start) is
tried again ``w_k`` after its ``k``-th failure, ``w_k`` within 0.8..1.2 x ``min(30 s x
2^(k-1), 30 min)``. The attempt before the restore is at most the ``n``-th, where ``n`` is the
largest ``k`` whose earliest time, ``0.8 x sum(b_1 .. b_(k-1))``, falls inside the outage; the
next attempt comes at most ``1.2 x b_n`` after it, so at most that long after the restore, plus
the sender's poll (5 s) and the send itself (a margin of 10 s). For 300 s: attempts at the
earliest 0, 24, 72, 168 s (the 5th at 360 s is past it), so ``n = 4`` and the bound is 1.2 x
240 s + 15 s = 303 s. The trial also prints each row's scheduled next attempt (read from the
database at the restore): the score must come by then (+ the margin), or earlier when the other
row's success brings it forward (the outbox's catch-up).

``--quick`` is a smoke run: a 30 s outage, shorter settles. Exits 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import nbformat
import requests
from sqlalchemy import create_engine, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grader.config import GraderConfig  # noqa: E402
from service.domain.lti_outbox import DEFAULT_RETRY, Retry  # noqa: E402
from service.models import LtiAccount, LtiScore  # noqa: E402
from service.queue.lti_sender import POLL_SECONDS  # noqa: E402
from tests.browser.test_student_flow import short_notebook  # noqa: E402
from tests.lti import Platform, ResourceLink, Role, ToolRegistration, User, follow_forms  # noqa: E402

EXERCISE = "chap06_cnn"
LINK = ResourceLink("rl-cnn", "CNN", {"exercise": EXERCISE})
LEARNERS = {"A": User("learner-a-sub", "Aiko", "Abe", "aiko@example.org"),
            "B": User("learner-b-sub", "Bunta", "Baba", "bunta@example.org")}
TOKEN = re.compile(r"\bgt_[A-Za-z0-9_-]{16,}")
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
#: Service settings taken out of the environment so that the service runs with its defaults.
SETTINGS = ("GRADER_ENV", "PUBLIC_URL", "QUEUE", "WORKERS", "RUNS_PER_HOST", "CORES_PER_RUN",
            "PIN_CPUS", "WARM_POOL", "WARM_POOL_MAX_IDLE", "WARM_POOL_MIN_FREE_MB", "RATE_LIMIT",
            "DUPLICATE_WINDOW", "LEASE_SECONDS", "MAX_ATTEMPTS", "GRADER_SANDBOX", "SECRET_KEY",
            "DATABASE_URL", "UPLOAD_DIR", "METRICS_TOKEN")
#: Nothing else delayed: a grading during the outage takes at most this times the baseline ...
SLOWDOWN = 1.5
#: ... plus this many seconds.
SLACK = 5.0
#: Seconds allowed beyond the backoff's wait: the sender's poll and the send itself.
SEND_MARGIN = POLL_SECONDS + 10.0


def say(text: str) -> None:
    print(text, flush=True)


# --- the service --------------------------------------------------------------------------


@dataclass
class Service:
    url: str
    env: dict[str, str]
    demo_token: str
    log: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def service(root: Path) -> Iterator[Service]:
    """``python -m service`` on a fresh SQLite file under ``root``, default settings, its own
    address as ``PUBLIC_URL``; stopped with its process group (workers, sandboxes) at the end."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {name: value for name, value in os.environ.items() if name not in SETTINGS}
    env.update(HOST="127.0.0.1", PORT=str(port), DATABASE_URL=f"sqlite:///{root / 'grader.db'}",
               UPLOAD_DIR=str(root / "uploads"), PUBLIC_URL=url, PYTHONUNBUFFERED="1")
    log = root / "service.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "service"], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield Service(url, env, _wait_until_up(proc, url, log), log)
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
                proc.wait(timeout=15)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue


def _wait_until_up(proc: subprocess.Popen[bytes], url: str, log: Path,
                   timeout: float = 90) -> str:
    """The demo student's token, once ``/healthz`` answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the service exited ({proc.returncode}):\n"
                             f"{log.read_text(errors='replace')[-4000:]}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                if response.status == 200:
                    found = TOKEN.search(log.read_text(errors="replace"))
                    if found is None:
                        raise SystemExit("no demo token in the service's output")
                    return found.group(0)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise SystemExit(f"the service did not answer /healthz in {timeout:.0f} s")


def register(tool: Service, lms: Platform) -> None:
    """The platform registered in the tool by the administrator's command."""
    command = [sys.executable, "-m", "flask", "--app", "service", "lti", "register",
               *lms.registration_options()]
    done = subprocess.run(command, cwd=ROOT, env=tool.env, capture_output=True, text=True,
                          timeout=120)
    if done.returncode != 0 or f"registered {lms.issuer}" not in done.stdout:
        raise SystemExit(f"lti register failed:\n{done.stdout}{done.stderr}")


# --- students -----------------------------------------------------------------------------


def launched(lms: Platform, tool: Service, user: User) -> requests.Session:
    """A browser-like session of ``user`` launched from the platform onto the upload page."""
    browser = requests.Session()
    page = follow_forms(browser, browser.get(lms.launch_url(user, [Role.LEARNER], LINK),
                                             timeout=30))
    if page.status_code != 200 or not page.url.startswith(f"{tool.url}/?exercise={EXERCISE}"):
        raise SystemExit(f"the launch of {user.sub} ended at {page.url} ({page.status_code})")
    return browser


def logged_in(tool: Service) -> requests.Session:
    """The demo student's session (token login)."""
    browser = requests.Session()
    page = browser.get(f"{tool.url}/login", timeout=30)
    answer = browser.post(f"{tool.url}/login", timeout=30, data={
        "csrf_token": _csrf(page.text), "token": tool.demo_token})
    if answer.status_code != 200 or "/login" in answer.url:
        raise SystemExit(f"the demo student could not log in ({answer.status_code})")
    return browser


def _csrf(page: str) -> str:
    found = CSRF.search(page)
    if found is None:
        raise SystemExit("no CSRF token on the page")
    return found.group(1)


@dataclass
class Graded:
    submission_id: int
    seconds: float
    score: float | None
    state: str


def upload_and_wait(tool: Service, browser: requests.Session, notebook: bytes,
                    timeout: float = 600) -> Graded:
    """Upload through the form, follow ``status.json`` until the run is finished."""
    form = browser.get(f"{tool.url}/?exercise={EXERCISE}", timeout=30)
    started = time.monotonic()
    answer = browser.post(f"{tool.url}/", timeout=60, allow_redirects=False,
                          data={"csrf_token": _csrf(form.text), "exercise": EXERCISE},
                          files={"notebook": ("pooling_only.ipynb", notebook,
                                              "application/x-ipynb+json")})
    found = re.search(r"/submissions/(\d+)$", answer.headers.get("Location", ""))
    if answer.status_code != 303 or found is None:
        raise SystemExit(f"upload refused: {answer.status_code} {answer.text[:500]}")
    number = int(found.group(1))
    while time.monotonic() - started < timeout:
        body = browser.get(f"{tool.url}/submissions/{number}/status.json", timeout=30).json()
        if body["state"] in ("graded", "failed"):
            return Graded(number, time.monotonic() - started, body.get("score"), body["state"])
        time.sleep(0.2)
    raise SystemExit(f"submission {number} not graded in {timeout:.0f} s")


def notebooks(folder: Path) -> tuple[bytes, bytes]:
    """The short notebook, and the same with one more markdown cell (the demo student's second
    upload is not the first one again, which the service would take as a duplicate)."""
    path = short_notebook(folder)
    other = nbformat.read(path, as_version=4)
    other.cells.append(nbformat.v4.new_markdown_cell("(the baseline's second upload)"))
    return path.read_bytes(), nbformat.writes(other).encode()


# --- the outbox ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    sub: str
    state: str
    attempts: int
    last_status: int | None
    last_error: str | None
    next_attempt_at: dt.datetime
    score_given: float | None


def outbox(tool: Service) -> dict[str, Row]:
    """The ``lti_scores`` rows by the learner's ``sub``, read from the service's database."""
    engine = create_engine(tool.env["DATABASE_URL"])
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(LtiAccount.sub, LtiScore.state, LtiScore.attempts, LtiScore.last_status,
                       LtiScore.last_error, LtiScore.next_attempt_at, LtiScore.score_given)
                .join(LtiAccount, LtiAccount.id == LtiScore.account_id)).all()
    finally:
        engine.dispose()
    return {row[0]: Row(*row) for row in rows}


def metrics_pending(tool: Service) -> str:
    """The outbox's gauge on ``/metrics`` (what an operator's dashboard sees)."""
    text = requests.get(f"{tool.url}/metrics", timeout=10).text
    return " ".join(line for line in text.splitlines() if line.startswith("grader_lti_scores{"))


# --- the bound ----------------------------------------------------------------------------


def base_wait(retry: Retry, attempts: int) -> float:
    """The wait after the ``attempts``-th failure before jitter (as ``Retry.backoff``)."""
    return min(retry.first * 2 ** max(0, min(attempts - 1, 20)), retry.longest).total_seconds()


def attempts_within(retry: Retry, outage: float) -> int:
    """The most attempts a row whose first attempt failed in an outage of ``outage`` seconds
    can make before it ends (each wait at its shortest)."""
    n, earliest = 1, 0.0
    while True:
        earliest += (1 - retry.jitter) * base_wait(retry, n)
        if earliest >= outage:
            return n
        n += 1


def bound_after_restore(retry: Retry, outage: float) -> float:
    """The longest a score can wait after the restore (see the module's docstring)."""
    n = attempts_within(retry, outage)
    return (1 + retry.jitter) * base_wait(retry, n) + SEND_MARGIN


# --- the trial ----------------------------------------------------------------------------


class Goals:
    """Goals checked, and which were missed."""

    def __init__(self) -> None:
        self.missed: list[str] = []

    def check(self, ok: bool, text: str) -> None:
        say(f"  [{'ok' if ok else 'MISSED'}] {text}")
        if not ok:
            self.missed.append(text)


def wait_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


def fail_endpoints(lms: Platform, endpoints: list[str], kind: str) -> None:
    if kind == "503":
        lms.set_outage(*endpoints, status=503)
    else:
        lms.go_offline()


def trial(args: argparse.Namespace) -> int:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the platform's request lines
    retry = DEFAULT_RETRY
    goals = Goals()
    points = GraderConfig.from_env().exercise(EXERCISE).max_score
    phases = {"503": ["503"], "offline": ["offline"], "503+offline": ["503", "offline"]}[args.mode]
    say(f"LTI outage trial: {args.outage_seconds:.0f} s outage of {'+'.join(args.endpoints)} "
        f"({' then '.join(phases)}), Retry {retry.first.total_seconds():.0f} s doubling to "
        f"{retry.longest.total_seconds():.0f} s, +/-{retry.jitter:.0%}")
    with tempfile.TemporaryDirectory(prefix="bench-lti-") as folder, \
            service(Path(folder)) as tool, Platform() as lms:
        root = Path(folder)
        first, second = notebooks(root)
        lms.register_tool(ToolRegistration.at(tool.url, "grader", ("1",)))
        register(tool, lms)
        item = lms.add_line_item("CNN", points, resource_link=LINK.id, resource_id=EXERCISE)
        sessions = {name: launched(lms, tool, user) for name, user in LEARNERS.items()}
        say(f"service {tool.url} (log {tool.log}), platform {lms.issuer}; learners A and B "
            "launched onto the upload page")

        demo = logged_in(tool)
        warm = upload_and_wait(tool, demo, first)
        time.sleep(args.settle)
        baseline = upload_and_wait(tool, demo, second)
        say(f"baseline (demo student, no LMS): first grading {warm.seconds:.1f} s, "
            f"second {baseline.seconds:.1f} s (the baseline)")
        time.sleep(args.settle)
        limit = SLOWDOWN * baseline.seconds + SLACK
        goals.check(not lms.requests_to("token") and not lms.requests_to("scores"),
                    "no token asked and no score sent before the outage (no access token "
                    "cached: the first attempt asks the token endpoint)")

        # --- the outage
        started = time.monotonic()
        started_wall = time.time()
        fail_endpoints(lms, args.endpoints, phases[0])
        switch = started + args.outage_seconds / len(phases)
        graded: dict[str, Graded] = {"A": upload_and_wait(tool, sessions["A"], first)}
        time.sleep(args.settle)
        graded["B"] = upload_and_wait(tool, sessions["B"], first)
        for name in "AB":
            goals.check(graded[name].state == "graded" and graded[name].seconds <= limit,
                        f"learner {name} graded in {graded[name].seconds:.1f} s during the "
                        f"outage (baseline {baseline.seconds:.1f} s, limit {SLOWDOWN} x + "
                        f"{SLACK:.0f} s = {limit:.1f} s)")
        # B's row has had an attempt before anything changes
        deadline = time.monotonic() + 30
        while outbox(tool).get(LEARNERS["B"].sub, None) is None or \
                outbox(tool)[LEARNERS["B"].sub].attempts < 1:
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if len(phases) == 2:
            wait_until(switch)
            mid = outbox(tool)
            say(f"at {time.monotonic() - started:.0f} s (503 half over): " + "; ".join(
                f"{name} {row.state}, {row.attempts} attempts, last {row.last_status}"
                for name, user in LEARNERS.items() if (row := mid.get(user.sub)) is not None))
            fail_endpoints(lms, args.endpoints, "offline")
        wait_until(max(started + args.outage_seconds, time.monotonic()))
        during = outbox(tool)
        pending_metric = metrics_pending(tool)
        restored = time.monotonic()
        restored_wall = time.time()
        if "offline" in phases:
            lms.go_online()
        lms.clear_outage()
        outage = restored - started
        say(f"outage {outage:.1f} s; the outbox at the restore (metrics: {pending_metric}):")
        for name, user in LEARNERS.items():
            row = during.get(user.sub)
            if row is None:
                goals.check(False, f"learner {name} has an outbox row")
                continue
            due = row.next_attempt_at.replace(tzinfo=dt.UTC).timestamp() - restored_wall
            say(f"  {name}: {row.state}, {row.attempts} attempts, last status "
                f"{row.last_status}, next attempt at restore {due:+.1f} s; last error: "
                f"{(row.last_error or '')[:100]}")
            goals.check(row.state == "pending" and row.attempts >= 1 and row.last_error,
                        f"learner {name}'s row pending with its attempts and last answer kept")
        asked = [r for r in lms.requests if r.endpoint in ("token", "scores")
                 and started_wall <= r.at <= restored_wall]
        kinds = collections.Counter(f"{r.endpoint} {r.status}" for r in asked)
        say(f"requests that reached the platform during the outage: {len(asked)} ("
            + ", ".join(f"{kind} x{count}" for kind, count in sorted(kinds.items()))
            + "); a connection refused while offline is not seen by the platform")
        goals.check(all(r.status == 503 for r in asked),
                    "every request that reached the platform was refused with 503")

        # --- after the restore
        bound = bound_after_restore(retry, outage)
        say(f"bound after the restore: {bound:.0f} s ({attempts_within(retry, outage)} attempts "
            f"at most in {outage:.0f} s, then 1.2 x "
            f"{base_wait(retry, attempts_within(retry, outage)):.0f} s + {SEND_MARGIN:.0f} s)")
        arrived: dict[str, float] = {}
        for name, user in LEARNERS.items():
            try:
                result = lms.wait_for_result(item, user.sub, timeout=max(
                    0.0, restored + bound - time.monotonic()) + 1)
            except AssertionError:
                goals.check(False, f"learner {name}'s score arrived within {bound:.0f} s")
                continue
            arrived[name] = result.received_at - restored_wall
        if arrived:
            last = max(arrived.values()) + restored_wall
            time.sleep(max(0.0, last + args.watch_after - time.time()))
        rows = outbox(tool)
        for name, user in LEARNERS.items():
            received = [s for s in lms.gradebook.received if s.user_id == user.sub]
            row = during.get(user.sub)
            scheduled = (row.next_attempt_at.replace(tzinfo=dt.UTC).timestamp() - restored_wall
                         if row else float("nan"))
            given = received[0].score_given if received else None
            say(f"learner {name}: score arrived {arrived.get(name, float('nan')):.1f} s after "
                f"the restore (scheduled attempt {scheduled:+.1f} s), receipts {len(received)}, "
                f"scoreGiven {given} vs the service's {graded[name].score}, "
                f"row {rows[user.sub].state if user.sub in rows else '-'}")
            if name in arrived:
                goals.check(0 <= arrived[name] <= bound,
                            f"{name}'s score after the restore, within the bound "
                            f"({arrived[name]:.1f} s <= {bound:.0f} s)")
                others = [when for other, when in arrived.items() if other != name]
                goals.check(arrived[name] <= max(scheduled, 0) + SEND_MARGIN or any(
                    0 <= arrived[name] - when <= SEND_MARGIN for when in others),
                            f"{name}'s score by its scheduled attempt + {SEND_MARGIN:.0f} s "
                            "(or brought forward by the other's success)")
            goals.check(len(received) == 1, f"{name}'s score received exactly once "
                        f"(watched {args.watch_after:.0f} s after the last arrival)")
            goals.check(given is not None and given == graded[name].score,
                        f"{name}'s scoreGiven equals the service's score")
            goals.check(rows.get(user.sub) is not None and rows[user.sub].state == "sent",
                        f"{name}'s outbox row sent")
        goals.check(lms.errors == [], "the platform failed on no request")
    if goals.missed:
        say(f"{len(goals.missed)} goal(s) missed")
        return 1
    say("every goal met")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outage-seconds", type=float, default=None,
                        help="how long the endpoints fail (default 300; 30 with --quick)")
    parser.add_argument("--endpoints", default="token,scores",
                        help="the platform's endpoints that fail (default token,scores)")
    parser.add_argument("--mode", choices=("503+offline", "503", "offline"),
                        default="503+offline",
                        help="how they fail: 503 then offline, each half the outage (default), "
                             "503 only, or offline only (connection refused)")
    parser.add_argument("--settle", type=float, default=None,
                        help="seconds between two gradings, for the workers' warm kits to be "
                             "made again (default 20; 5 with --quick)")
    parser.add_argument("--watch-after", type=float, default=None,
                        help="seconds to watch for a second copy after the last score came "
                             "(default 75: past the senders' minute sweep; 10 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: a 30 s outage")
    args = parser.parse_args(argv)
    args.endpoints = [name.strip() for name in args.endpoints.split(",") if name.strip()]
    if args.outage_seconds is None:
        args.outage_seconds = 30.0 if args.quick else 300.0
    if args.settle is None:
        args.settle = 5.0 if args.quick else 20.0
    if args.watch_after is None:
        args.watch_after = 10.0 if args.quick else 75.0
    return trial(args)


if __name__ == "__main__":
    sys.exit(main())
