"""The blob stores (``service.blobs``), folder and database, each on SQLite and PostgreSQL: the
same promises (put returns the sha256 and is idempotent, get gives the bytes back or says
which blob is missing from where), the database store's put committed with the caller's
transaction (an upload's blob and its submission together, or neither), and ``flask blobs
move`` and ``check``."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest
from flask import Flask
from flask_migrate import downgrade, upgrade
from sqlalchemy import func, inspect, select

from service.blobs import BlobMissing, DatabaseBlobStore, FolderBlobStore, blob_store
from service.extensions import db
from service.models import Blob, Submission
from service.settings import SettingsError, load_settings
from tests.service.service_support import cli, count, in_session, tiny_notebook

STORES = ["folder", "database"]


def blob_rows(app: Flask) -> int:
    return in_session(app, lambda s: s.execute(select(func.count()).select_from(Blob))
                      .scalar_one())


def files_in(folder: str | Path) -> list[Path]:
    return [p for p in Path(folder).rglob("*") if p.is_file()]


# --- both stores ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", STORES)
def test_put_returns_the_sha256_and_get_gives_the_bytes_back(make_app, kind):
    app = make_app(BLOB_STORE=kind)
    data = tiny_notebook("put and get")
    with app.app_context():
        store = blob_store(app)
        sha = store.put(data)
        assert store.put(data) == sha  # idempotent
        db.session.commit()
    assert sha == hashlib.sha256(data).hexdigest()
    with app.app_context():  # another session: committed, durable
        store = blob_store(app)
        assert store.get(sha) == data
        assert list(store.hashes()) == [sha]
    assert type(store) is {"folder": FolderBlobStore, "database": DatabaseBlobStore}[kind]
    # stored once, where the setting says, and nowhere else
    assert (blob_rows(app), len(files_in(app.config["UPLOAD_DIR"]))) == (
        (0, 1) if kind == "folder" else (1, 0))


@pytest.mark.parametrize("kind", STORES)
def test_a_missing_blob_is_a_clear_error_naming_it_and_the_store(make_app, kind):
    app = make_app(BLOB_STORE=kind)
    absent = "ab" * 32
    with app.app_context(), pytest.raises(BlobMissing) as raised:
        blob_store(app).get(absent)
    assert raised.value.sha256 == absent
    where = f"the folder {app.config['UPLOAD_DIR']}" if kind == "folder" else "the database"
    assert str(raised.value) == f"blob {absent} is not in {where}"
    with app.app_context(), pytest.raises(ValueError, match="not a sha256"):
        blob_store(app).get("../../etc/passwd")


def test_blob_store_is_a_setting_refusing_unknown_stores():
    assert load_settings({})["BLOB_STORE"] == "folder"
    assert load_settings({"BLOB_STORE": "database"})["BLOB_STORE"] == "database"
    with pytest.raises(SettingsError, match="BLOB_STORE must be one of folder, database"):
        load_settings({"BLOB_STORE": "s3"})


def test_the_blobs_migration_goes_both_ways(app):
    with app.app_context():
        downgrade(revision="c8f1d3e5a7b9")
        assert "blobs" not in inspect(db.engine).get_table_names()
        db.session.remove()
        upgrade()
        columns = {c["name"] for c in inspect(db.engine).get_columns("blobs")}
        assert columns == {"sha256", "data", "size", "created_at"}
        assert inspect(db.engine).get_pk_constraint("blobs")["constrained_columns"] == ["sha256"]


# --- the database store: in the caller's transaction -----------------------------------------

def test_the_database_store_commits_with_the_caller_and_not_before(make_app):
    app = make_app(BLOB_STORE="database")
    with app.app_context():
        sha = blob_store(app).put(b"rolled back")
        db.session.rollback()
        with pytest.raises(BlobMissing):
            blob_store(app).get(sha)
    assert blob_rows(app) == 0


def test_a_put_racing_another_of_the_same_bytes_stores_them_once(make_app, monkeypatch):
    """Two uploads of the same bytes in two transactions: the second's look finds nothing (the
    first has not committed), then its insert meets the first's row: it must not fail."""
    app = make_app(BLOB_STORE="database")
    with app.app_context():
        sha = blob_store(app).put(b"same bytes")
        db.session.commit()
    monkeypatch.setattr(DatabaseBlobStore, "_has", lambda self, sha256: False)
    with app.app_context():
        assert blob_store(app).put(b"same bytes") == sha
        db.session.commit()
    assert blob_rows(app) == 1


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_students_uploading_the_same_bytes_at_once_both_get_them_stored(make_app, submit):
    app = make_app(BLOB_STORE="database")
    data = tiny_notebook("the same for both")
    start, answers = threading.Barrier(2), {}

    def send(student: str) -> None:
        start.wait()
        answers[student] = submit(data, student=student, via=app).status_code

    threads = [threading.Thread(target=send, args=(s,)) for s in ("alice", "bob")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == {"alice": 202, "bob": 202}
    assert (count(app, Submission), blob_rows(app)) == (2, 1)


@pytest.fixture
def refused_after_the_blob(monkeypatch):
    """The upload's transaction fails after its blob was put (here: at the queue's NOTIFY)."""

    def fail(session):
        raise RuntimeError("the transaction fails after the blob was put")

    monkeypatch.setattr("service.domain.submissions.notify_queued", fail)


@pytest.mark.parametrize("kind", STORES)
def test_an_upload_stores_its_blob_with_its_submission(make_app, submit, kind):
    app = make_app(BLOB_STORE=kind, WTF_CSRF_ENABLED=False)
    data = tiny_notebook("acknowledged")
    answer = submit(data, via=app)
    assert answer.status_code == 202, answer.get_data(as_text=True)
    sha = in_session(app, lambda s: s.get(Submission, answer.get_json()["id"]).notebook_sha256)
    with app.app_context():
        assert blob_store(app).get(sha) == data
    assert (blob_rows(app), len(files_in(app.config["UPLOAD_DIR"]))) == (
        (0, 1) if kind == "folder" else (1, 0))


def test_a_failed_upload_leaves_no_blob_in_the_database(make_app, submit,
                                                        refused_after_the_blob):
    app = make_app(BLOB_STORE="database")
    with pytest.raises(RuntimeError):
        submit(tiny_notebook("never acknowledged"), via=app)
    assert (count(app, Submission), blob_rows(app)) == (0, 0)


# --- flask blobs move | check -----------------------------------------------------------------

def _uploaded(app: Flask, submit, n: int) -> list[bytes]:
    notebooks = [tiny_notebook(f"move {k}") for k in range(n)]
    for data in notebooks:
        assert submit(data, via=app).status_code == 202
    return notebooks


def test_move_to_the_database_copies_each_blob_once_and_check_finds_them(make_app, submit):
    folder_app = make_app()  # BLOB_STORE=folder, the default
    notebooks = _uploaded(folder_app, submit, 3)

    moved = cli(folder_app, "blobs", "move", "--to", "database")
    assert moved.exit_code == 0, moved.output
    assert moved.stdout == "3 copied, 0 already there, 0 refused\n"
    assert "set BLOB_STORE=database" in moved.stderr
    again = cli(folder_app, "blobs", "move", "--to", "database")
    assert (again.exit_code, again.stdout) == (0, "0 copied, 3 already there, 0 refused\n")
    assert blob_rows(folder_app) == 3

    database_app = make_app(BLOB_STORE="database", UPLOAD_DIR=str(Path(
        folder_app.config["UPLOAD_DIR"]).parent / "elsewhere"))
    checked = cli(database_app, "blobs", "check")
    assert checked.exit_code == 0, checked.output
    assert checked.stdout == ("3 notebooks and 0 executed notebooks referenced, 0 missing "
                              "from the database\n")
    with database_app.app_context():
        store = blob_store(database_app)
        assert {store.get(hashlib.sha256(d).hexdigest()) for d in notebooks} == set(notebooks)


def test_move_refuses_a_corrupted_blob_and_copies_the_others(make_app, submit):
    app = make_app()
    notebooks = _uploaded(app, submit, 2)
    shas = [hashlib.sha256(d).hexdigest() for d in notebooks]
    corrupted = FolderBlobStore(app.config["UPLOAD_DIR"]).path(shas[0])
    corrupted.write_bytes(corrupted.read_bytes() + b" ")

    moved = cli(app, "blobs", "move", "--to", "database")
    assert moved.exit_code == 1
    assert moved.stdout == "1 copied, 0 already there, 1 refused\n"
    assert f"refused {shas[0]}: its " in moved.stderr
    assert "1 blobs refused" in moved.stderr
    with app.app_context():
        store = DatabaseBlobStore(db.session)
        assert list(store.hashes()) == [shas[1]]
        assert store.get(shas[1]) == notebooks[1]

    # check, on the database: the corrupted one is named missing
    checked = cli(make_app(BLOB_STORE="database"), "blobs", "check")
    assert checked.exit_code == 1
    assert "1 missing from the database" in checked.stdout
    assert "submission 1: notebook " + shas[0] in checked.stderr


def test_move_to_the_folder_copies_the_database_blobs_into_upload_dir(make_app, submit,
                                                                      tmp_path):
    app = make_app(BLOB_STORE="database", UPLOAD_DIR=str(tmp_path / "new-folder"))
    notebooks = _uploaded(app, submit, 2)
    assert files_in(app.config["UPLOAD_DIR"]) == []

    moved = cli(app, "blobs", "move", "--to", "folder")
    assert (moved.exit_code, moved.stdout) == (0, "2 copied, 0 already there, 0 refused\n")
    folder = FolderBlobStore(app.config["UPLOAD_DIR"])
    assert sorted(folder.get(sha) for sha in folder.hashes()) == sorted(notebooks)
    assert cli(app, "blobs", "move", "--to", "folder").stdout == (
        "0 copied, 2 already there, 0 refused\n")


# --- readers beside the upload and the worker -----------------------------------------------

def test_a_similarity_check_reads_the_notebooks_from_the_database_store(make_app, submit,
                                                                       tmp_path):
    from service.domain import similarity_check

    app = make_app(BLOB_STORE="database", UPLOAD_DIR=str(tmp_path / "never-written"))
    for student in ("alice", "bob"):
        assert submit(tiny_notebook(f"code of {student}"), student=student,
                      via=app).status_code == 202
    with app.app_context():
        gathered = similarity_check.gather(db.session, "chap06_cnn", app.config["GRADER"],
                                           blob_store(app))
    assert gathered.skipped == {}
    assert {s: "code of " + s in code for s, code in gathered.codes.items()} == {
        "alice": True, "bob": True}
