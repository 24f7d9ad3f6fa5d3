"""The blob store: uploaded notebooks and executed notebooks' HTML, kept by their sha256.

Rows name blobs by hash (``Submission.notebook_sha256``, ``GradingRun.executed_html_sha256``);
the bytes are in the blob store the ``BLOB_STORE`` setting chooses:

- ``folder`` (the default): files under ``UPLOAD_DIR`` (:mod:`service.blobs.folder`). Every
  process that reads or writes blobs needs that same folder: the web (uploads, pages), every
  worker (the notebook it grades, the HTML it renders). Workers on another machine need it
  mounted; without it, their runs fail "missing from the upload store".
- ``database``: the ``blobs`` table of the service's database (:mod:`service.blobs.database`).
  A worker on another machine needs nothing more than the database it already takes runs from.

What every store promises is in :mod:`service.blobs.base`. :func:`blob_store` builds the app's
store, the one place that reads the setting; ``flask blobs move --to database|folder`` copies
blobs from one store to the other, ``flask blobs check`` finds rows whose blob is missing
(``service.blob_commands``).

Who commits: the web's upload puts the notebook in the request's session and commits it with
its submission (``service.domain.submissions``); a worker reads the notebook at the start and
puts the HTML at the end, each in a short session of its own (:func:`blob_store_session`),
never holding a transaction across grading. A worker's grading host is handed its store once,
as :data:`BlobSessions` (:func:`blob_sessions`), rather than the app.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TypeAlias

from flask import Flask

from service.blobs.base import BlobMissing, BlobStore, sha256_of
from service.blobs.database import DatabaseBlobStore
from service.blobs.folder import FolderBlobStore
from service.extensions import db, sessions_of
from service.settings import BLOB_STORES

__all__ = ["BLOB_STORES", "BlobMissing", "BlobSessions", "BlobStore", "DatabaseBlobStore",
           "FolderBlobStore", "blob_sessions", "blob_store", "blob_store_session", "sha256_of"]


def blob_store(app: Flask) -> BlobStore:
    """The store ``BLOB_STORE`` names; the database store works in the current app context's
    session (``db.session``), so it needs an app context."""
    kind = app.config["BLOB_STORE"]
    if kind == "database":
        return DatabaseBlobStore(db.session)
    if kind == "folder":
        return FolderBlobStore(app.config["UPLOAD_DIR"])
    raise ValueError(f"BLOB_STORE must be one of {', '.join(BLOB_STORES)}, not {kind!r}")


@contextmanager
def blob_store_session(app: Flask) -> Iterator[BlobStore]:
    """The app's store in a short session of its own (a worker, outside any request): what was
    put is committed on a clean exit, rolled back if the caller raises; the session is closed
    either way."""
    with app.app_context():
        try:
            yield blob_store(app)
            db.session.commit()
        finally:
            db.session.remove()


#: The store in a short session of its own, as :func:`blob_store_session` gives it, without
#: being handed the app: what a worker's grading host holds (``with host.blobs() as blobs``).
BlobSessions: TypeAlias = Callable[[], AbstractContextManager[BlobStore]]


def blob_sessions(app: Flask) -> BlobSessions:
    """``app``'s :data:`BlobSessions`: ``BLOB_STORE`` read now (a bad value raises now)."""
    kind = app.config["BLOB_STORE"]
    if kind not in BLOB_STORES:
        raise ValueError(f"BLOB_STORE must be one of {', '.join(BLOB_STORES)}, not {kind!r}")
    if kind == "folder":
        folder = FolderBlobStore(app.config["UPLOAD_DIR"])

        @contextmanager
        def in_folder() -> Iterator[BlobStore]:
            yield folder

        return in_folder
    sessions = sessions_of(app)

    @contextmanager
    def in_database() -> Iterator[BlobStore]:
        with sessions() as session:
            yield DatabaseBlobStore(session)
            session.commit()

    return in_database
