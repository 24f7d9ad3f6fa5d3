"""The database blob store (``BLOB_STORE=database``): blobs are rows of the ``blobs`` table
(``service.models.Blob``) in the service's database, so a worker on another machine needs only
the database it already uses as the queue.

The store works in the session it is given and never commits: ``put`` inserts into the caller's
transaction (the web's upload commits the blob with its submission's row, so what is
acknowledged is stored, atomically), and a worker reads and writes in a short session of its own
(``service.blobs.blob_store_session``), never held across grading. ``put`` inserts with ``ON
CONFLICT DO NOTHING`` (SQLite and PostgreSQL): two uploads of the same bytes in two
transactions both commit, the second waiting for the first on PostgreSQL. Reads select the
bytes alone, so no row object keeps them in the session's identity map."""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from service.blobs.base import BlobMissing, checked_sha256, sha256_of
from service.extensions import DbSession
from service.models import Blob, utcnow


class DatabaseBlobStore:
    in_transaction = True
    where = "the database"

    def __init__(self, session: DbSession):
        self.session = session

    def put(self, data: bytes) -> str:
        """Insert ``data`` in the session's transaction unless it is there; its sha256. Durable
        when the caller commits."""
        sha = sha256_of(data)
        if self._has(sha):  # the bytes are not sent again
            return sha
        self.session.execute(self._insert().values(
            sha256=sha, data=data, size=len(data), created_at=utcnow(),
        ).on_conflict_do_nothing(index_elements=["sha256"]))
        return sha

    def get(self, sha256: str) -> bytes:
        data = self.session.execute(
            select(Blob.data).where(Blob.sha256 == checked_sha256(sha256))).scalar_one_or_none()
        if data is None:
            raise BlobMissing(sha256, self.where)
        return bytes(data)

    def hashes(self) -> Iterator[str]:
        yield from self.session.scalars(select(Blob.sha256).order_by(Blob.sha256))

    def _has(self, sha256: str) -> bool:
        return self.session.execute(
            select(Blob.sha256).where(Blob.sha256 == sha256)).first() is not None

    def _insert(self) -> postgresql.Insert | sqlite.Insert:
        dialect = self.session.get_bind().dialect.name
        if dialect == "postgresql":
            return postgresql.insert(Blob)
        if dialect == "sqlite":
            return sqlite.insert(Blob)
        raise ValueError(f"the database blob store needs SQLite or PostgreSQL, not {dialect}")
