"""The folder blob store (``BLOB_STORE=folder``, the default): a blob lives at
``<UPLOAD_DIR>/<sha[:2]>/<sha>``, written to a temporary file, fsynced and renamed into place,
so a row that references a hash always finds complete bytes. Every process that reads or writes
blobs (the web, every worker) needs the same folder: a worker on another machine needs it
mounted, or the database store."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from service.blobs.base import HEX, BlobMissing, checked_sha256, sha256_of


class FolderBlobStore:
    in_transaction = False

    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.where = f"the folder {self.root}"

    def path(self, sha256: str) -> Path:
        checked_sha256(sha256)
        return self.root / sha256[:2] / sha256

    def put(self, data: bytes) -> str:
        """Store ``data`` durably (fsync) and return its sha256; a write that fails leaves no
        file."""
        sha = sha256_of(data)
        target = self.path(sha)
        if target.exists():
            return sha
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return sha

    def get(self, sha256: str) -> bytes:
        try:
            return self.path(sha256).read_bytes()
        except FileNotFoundError:
            raise BlobMissing(sha256, self.where) from None

    def hashes(self) -> Iterator[str]:
        """Every complete blob (temporary files and anything else left out), folder by folder."""
        if not self.root.is_dir():
            return
        for folder in sorted(self.root.iterdir()):
            if len(folder.name) != 2 or not HEX.issuperset(folder.name) or not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                name = path.name
                if len(name) == 64 and name.startswith(folder.name) and HEX.issuperset(name):
                    yield name
