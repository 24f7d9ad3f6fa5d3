"""What every blob store promises, and its one error.

A blob store keeps bytes under their sha256 (uploaded notebooks, executed notebooks' HTML):

- ``put(data)`` returns ``sha256(data)`` and is idempotent (the same bytes twice are kept once);
- what was put is durable no later than the commit of the caller's database transaction, so a
  row that references a hash, committed after ``put`` in the same session, always finds the
  bytes: the folder store's ``put`` is durable when it returns (fsync, rename), the database
  store's is part of the caller's transaction (:attr:`BlobStore.in_transaction`) and becomes
  durable with the row that references it, or not at all;
- ``get(sha256)`` gives the bytes back whole, or raises :class:`BlobMissing`;
- ``hashes()`` lists what is stored (``flask blobs move`` and ``check``).

Whole bytes rather than streams: every blob is bounded before it is stored (an upload by
``MAX_UPLOAD_BYTES`` and the notebook's limits, an executed notebook's HTML by
``HTML_MAX_BYTES``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Protocol

HEX = frozenset("0123456789abcdef")


class BlobMissing(LookupError):
    """No blob of this sha256 in the store (``where`` says which store: a folder, the
    database)."""

    def __init__(self, sha256: str, where: str):
        super().__init__(f"blob {sha256} is not in {where}")
        self.sha256 = sha256
        self.where = where


class BlobStore(Protocol):
    #: Which store, for messages: ``the folder /srv/uploads``, ``the database``.
    where: str
    #: ``put`` writes into the caller's database session, committed with it (the database
    #: store); ``False``: ``put`` is durable when it returns (the folder store).
    in_transaction: bool

    def put(self, data: bytes) -> str:
        """Store ``data``; its sha256."""
        ...

    def get(self, sha256: str) -> bytes:
        """The bytes of ``sha256``; :class:`BlobMissing` when the store has none."""
        ...

    def hashes(self) -> Iterator[str]:
        """The sha256 of every blob stored."""
        ...


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def checked_sha256(sha256: str) -> str:
    """``sha256`` if it is 64 lowercase hex digits, else ``ValueError`` (a hash read from a row
    becomes a file name)."""
    if len(sha256) != 64 or not HEX.issuperset(sha256):
        raise ValueError(f"not a sha256: {sha256!r}")
    return sha256
