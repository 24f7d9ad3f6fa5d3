"""The service's templates compiled once per test process rather than once per app.

Every test builds apps of its own (``tests/service/conftest.py``'s ``make_app``), and each app's
Jinja environment parses and compiles every page it renders again: about 10 ms a template, four
or five a test, a fifth of the service tests' CPU time. The apps share a Jinja bytecode cache
instead (:class:`CompiledTemplates`, the session fixture ``compiled_templates``), which keeps the
code objects in memory. It is a cache only: Jinja checks each entry against its template's
source (a changed page is compiled again), and the key holds the environment's extensions, so
an app whose environment compiles differently does not take another's code. The service itself
compiles a page once per process anyway (one app), so it keeps Jinja's defaults.
"""

from __future__ import annotations

from types import CodeType

from jinja2 import BytecodeCache
from jinja2.bccache import Bucket


class CompiledTemplates(BytecodeCache):
    """Jinja's compiled templates in memory, shared by every environment given it."""

    def __init__(self) -> None:
        self._code: dict[str, tuple[str, CodeType]] = {}

    def _key(self, bucket: Bucket) -> str:
        extensions = ",".join(sorted(bucket.environment.extensions))
        return f"{bucket.key}|{extensions}"

    def load_bytecode(self, bucket: Bucket) -> None:
        found = self._code.get(self._key(bucket))
        if found is not None and found[0] == bucket.checksum:
            bucket.code = found[1]

    def dump_bytecode(self, bucket: Bucket) -> None:
        if bucket.code is not None:
            self._code[self._key(bucket)] = (bucket.checksum, bucket.code)

    def clear(self) -> None:
        self._code.clear()

    def __len__(self) -> int:
        return len(self._code)
