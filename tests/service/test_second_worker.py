"""A worker on a second machine, in small: a web app and a ``flask worker`` process sharing the
PostgreSQL database but not the upload folder (each its own ``UPLOAD_DIR``). With
``BLOB_STORE=database`` the worker grades what was uploaded to the web and the web serves the
executed notebook the worker stored; with ``BLOB_STORE=folder`` the run fails saying the
notebook is missing from the upload store, which is why the folder store needs a folder shared
by the web and every worker (docs/deployment.md, "Adding a GPU machine to a running course").

The worker's grader is ``tests.service.echo_worker``'s stub (the uploaded notebook is the
executed one, rendered for real): the test is about where the bytes are, not the sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask

from tests.service.service_support import (
    VENV_BIN,
    Processes,
    only_run,
    service_env,
    tiny_notebook,
    wait_for,
)

pytestmark = [pytest.mark.processes, pytest.mark.timeout(180),
              pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)]

MARKER = "uploaded to the web, graded on host 2"


def web_and_second_host(make_app, processes: Processes, tmp_path: Path, store: str,
                        worker: str = "tests.service.echo_worker") -> Flask:
    """The web app (``UPLOAD_DIR`` web-uploads) and a worker process of "host 2" (its own
    ``UPLOAD_DIR``, its own ``GPU_HOST``), both on ``BLOB_STORE=store``; the web app. The
    worker is ``python -m <worker> --app service worker``: the stub's by default, ``flask``'s
    own (the real grader) with ``worker="flask"``."""
    web = make_app(BLOB_STORE=store, UPLOAD_DIR=str(tmp_path / "web-uploads"),
                   WTF_CSRF_ENABLED=False)
    env = service_env(web, BLOB_STORE=store, UPLOAD_DIR=str(tmp_path / "host-2-uploads"),
                      GPU_HOST="host-2", WARM_POOL="0")
    processes.start("host-2", [str(VENV_BIN / "python"), "-m", worker,
                               "--app", "service", "worker", "--threads", "1"], env)
    return web


def finished(web: Flask, submission_id: int, processes: Processes, timeout: float = 60) -> dict:
    return wait_for(lambda: (r := only_run(web, submission_id))["state"] in (
        "graded", "failed") and r, timeout=timeout, what="the second host's worker to finish",
        describe=lambda: f"{only_run(web, submission_id)}\n{processes.logs()}")


def files_in(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def test_with_the_database_store_a_worker_without_the_web_folder_grades_the_upload(
        make_app, submit, tokens, processes, tmp_path):
    web = web_and_second_host(make_app, processes, tmp_path, "database")
    answer = submit(tiny_notebook(MARKER), via=web)
    assert answer.status_code == 202, answer.get_data(as_text=True)
    submission_id = answer.get_json()["id"]

    run = finished(web, submission_id, processes)
    assert (run["state"], run["outcome"], run["attempts"]) == ("graded", "graded", 1), run
    assert run["executed_html_sha256"], run

    # the web serves the executed notebook the worker rendered and stored
    student = web.test_client()
    assert student.post("/login", data={"token": tokens["alice"]}).status_code == 303
    page = student.get(f"/submissions/{submission_id}/notebook")
    assert page.status_code == 200
    assert MARKER in page.get_data(as_text=True)
    # and neither side wrote a file
    assert files_in(tmp_path / "web-uploads") == files_in(tmp_path / "host-2-uploads") == []


def test_with_the_folder_store_a_worker_without_the_web_folder_fails_the_run_saying_why(
        make_app, submit, processes, tmp_path):
    web = web_and_second_host(make_app, processes, tmp_path, "folder")
    answer = submit(tiny_notebook(MARKER), via=web)
    assert answer.status_code == 202, answer.get_data(as_text=True)
    assert len(files_in(tmp_path / "web-uploads")) == 1  # on the web's side only

    run = finished(web, answer.get_json()["id"], processes)
    assert run["state"] == "failed", run
    assert run["reason"].startswith("the submitted notebook is missing from the upload store "
                                    "(BlobMissing: blob "), run
    assert str(tmp_path / "host-2-uploads") in run["reason"]


@pytest.mark.sandbox
@pytest.mark.timeout(300)
def test_the_real_grader_on_the_second_host_grades_from_the_database(
        make_app, submit, tokens, short_notebook, processes, tmp_path):
    """The same with the real grader in the bubblewrap sandbox: the solution up to its
    pooling items, 36 of 100 points, its executed notebook shown by the web."""
    web = web_and_second_host(make_app, processes, tmp_path, "database", worker="flask")
    submission_id = submit(short_notebook, via=web).get_json()["id"]

    run = finished(web, submission_id, processes, timeout=240)
    assert (run["state"], run["outcome"]) == ("graded", "graded"), run
    assert (run["score"], run["max_score"]) == (36, 100), run
    student = web.test_client()
    assert student.post("/login", data={"token": tokens["alice"]}).status_code == 303
    page = student.get(f"/submissions/{submission_id}/notebook")
    assert page.status_code == 200 and "pool3" in page.get_data(as_text=True)
    assert files_in(tmp_path / "web-uploads") == files_in(tmp_path / "host-2-uploads") == []
