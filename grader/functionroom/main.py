"""The function room: calls one extracted function on the grader's inputs and writes what it
returned, as data.

Usage (inside a fresh sandbox, no network, only this folder, the Python runtime and the work
directory): ``python main.py PLAN.json``. The plan names the module source (``source``: the
imports, literal constants and definitions the host extracted from the notebook, nothing
else), the function (``name``), the inputs (``inputs``: an ``.npz`` the host wrote, loaded
without pickles), the cases (each a list of argument keys in the npz or literal values),
how many times to call each (``passes``: the second pass in the reverse order, so that a
function whose answer changes between two calls on the same input is seen) and the most
values a case's output may hold (``max_values``, per case). With ``returns`` (the names of the
arrays the function returns) the function must return a tuple or a list of that many arrays,
or a dict with exactly those keys, and ``max_values`` is a list, one per array.

What this process writes is never a verdict: ``out.jsonl`` gets one line per call,
``{"pass", "case", "ok": true, "shape", "dtype", "data"}`` (``data``: the output's bytes,
base64) or ``{"pass", "case", "ok": false, "code", "detail"}``, and a ``{"load": ...}`` line
when the module or the function could not be had. With ``returns``, an answer of the right
structure is ``{"pass", "case", "ok": true, "parts": [...]}``, each part such an array record
or failure in the order of ``returns`` (``{"ok": true, "shape", ...}``); a wrong structure is
``{"ok": false, "code": "parts_count", "count"}`` (a tuple or list of another length),
``"parts_keys", "missing", "extra"`` (a dict with other keys) or ``"parts_type"``. Before each
call it announces the case on stdout (``{"event": "case", ...}``) so that the host can name
the case a timeout or a crash belongs to. The host compares with the reference's outputs,
which never come here.

The guard (defence in depth; the sandbox is the wall): once the inputs are read and the output
file open, an audit hook refuses file access outside the Python runtime's import folders,
sockets, new processes and ``ctypes``, and the clock functions of ``time`` and ``datetime``
raise. A refused access is remembered even if the function catches the exception, and the call
fails with its code (``file``, ``network``, ``process``, ``native``, ``clock``). It imports
nothing of ``grader``.
"""

from __future__ import annotations

import base64
import builtins
import datetime
import json
import os
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if p and os.path.realpath(p) != HERE]

import numpy as np  # noqa: E402
import numpy.fft  # noqa: E402  (loaded now: imported later, they would read files)
import numpy.linalg  # noqa: E402
import numpy.random  # noqa: E402

#: Output dtypes written back (the host reads these and no others).
DTYPES = {"b", "i", "u", "f"}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


class Refused(Exception):
    """An access the function room does not allow; ``code`` says which kind."""

    def __init__(self, code: str, what: str):
        super().__init__(f"the grader refused {what}")
        self.code = code


class Guard:
    """The audit hook and clock patches, and the first access each call tried."""

    def __init__(self, roots: list[str]):
        self.roots = [r.rstrip("/") + "/" for r in roots]
        self.tripped: tuple[str, str] | None = None

    def _inside(self, path: Any) -> bool:
        if not isinstance(path, str | bytes):
            return False
        real = os.path.realpath(os.fsdecode(path))
        return any((real + "/").startswith(root) for root in self.roots)

    def trip(self, code: str, what: str) -> None:
        if self.tripped is None:
            self.tripped = (code, what[:200])
        raise Refused(code, what)

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        if event == "open":
            path, mode, flags = [*args, None, None, None][:3]
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & WRITE_FLAGS)
            if writes or not self._inside(path):
                self.trip("file", f"opening {path!r}")
        elif event in ("os.listdir", "os.scandir"):
            if not self._inside(args[0] if args else "."):
                self.trip("file", f"listing {args[0] if args else '.'!r}")
        elif event.startswith(("os.remove", "os.rename", "os.mkdir", "os.rmdir", "os.symlink",
                               "os.link", "os.truncate", "os.chmod", "os.chown", "os.utime",
                               "os.chdir", "shutil.")):
            self.trip("file", event)
        elif event.startswith("socket."):
            self.trip("network", event)
        elif event.startswith(("subprocess.", "os.system", "os.exec", "os.posix_spawn",
                               "os.spawn", "os.fork", "os.forkpty", "pty.", "os.kill")):
            self.trip("process", event)
        elif event.startswith("ctypes.") or event == "sys.addaudithook":
            self.trip("native", event)

    def install(self) -> None:
        def refuse(name: str) -> Any:
            def clock(*args: Any, **kwargs: Any) -> Any:
                self.trip("clock", f"reading the clock ({name})")
            return clock

        for name in ("time", "time_ns", "monotonic", "monotonic_ns", "perf_counter",
                     "perf_counter_ns", "process_time", "process_time_ns", "thread_time",
                     "thread_time_ns", "clock_gettime", "clock_gettime_ns", "localtime",
                     "gmtime", "ctime", "asctime", "strftime"):
            if hasattr(time, name):
                setattr(time, name, refuse(f"time.{name}"))
        guard = self

        class Date(datetime.date):
            @classmethod
            def today(cls) -> Any:
                guard.trip("clock", "reading the clock (date.today)")

        class DateTime(datetime.datetime):
            @classmethod
            def now(cls, tz: Any = None) -> Any:
                guard.trip("clock", "reading the clock (datetime.now)")

            @classmethod
            def utcnow(cls) -> Any:
                guard.trip("clock", "reading the clock (datetime.utcnow)")

            @classmethod
            def today(cls) -> Any:
                guard.trip("clock", "reading the clock (datetime.today)")

        datetime.date = Date  # type: ignore[misc]
        datetime.datetime = DateTime  # type: ignore[misc]
        sys.addaudithook(self.hook)


class _Discard:
    """The function's ``print``s go nowhere (stdout carries the room's events)."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def convert(value: Any, max_values: int) -> dict[str, Any]:
    """What the function returned, as a record; refused when not numbers or too large."""
    if isinstance(value, np.ndarray | np.generic | int | float | bool):
        array = np.asarray(value)
    elif isinstance(value, list | tuple):
        if len(value) > max_values:
            return {"ok": False, "code": "too_large", "detail": f"a list of {len(value)}"}
        array = np.asarray(value)
    else:
        return {"ok": False, "code": "bad_output",
                "detail": f"returned {type(value).__name__}"[:200]}
    if array.dtype.kind not in DTYPES:
        return {"ok": False, "code": "bad_output", "detail": f"dtype {array.dtype}"}
    if array.size > max_values:
        return {"ok": False, "code": "too_large",
                "detail": f"{array.size} values (at most {max_values})"}
    array = np.ascontiguousarray(array)
    array = array.astype(array.dtype.newbyteorder("<"), copy=False)
    return {"ok": True, "shape": [int(d) for d in array.shape], "dtype": array.dtype.str,
            "data": base64.b64encode(array.tobytes()).decode("ascii")}


#: The most keys of a wrong dict named back (each at most :data:`KEY_CHARS` characters).
SHOWN_KEYS = 16
KEY_CHARS = 80


def convert_parts(value: Any, names: list[str], caps: list[int]) -> dict[str, Any]:
    """What a function of several arrays returned, as a record: its parts in the order of
    ``names``, or why its structure is wrong."""
    if isinstance(value, dict):
        keys = list(value)
        named = {k for k in keys if type(k) is str}
        missing = [n for n in names if n not in named]
        extra = [k if type(k) is str else repr(k) for k in keys if type(k) is not str
                 or k not in names][:SHOWN_KEYS]
        if missing or extra:
            return {"ok": False, "code": "parts_keys", "missing": missing,
                    "extra": [k[:KEY_CHARS] for k in extra]}
        parts = [dict.__getitem__(value, n) for n in names]
    elif isinstance(value, tuple | list):
        if len(value) != len(names):
            return {"ok": False, "code": "parts_count", "count": len(value)}
        parts = list(value)
    else:
        return {"ok": False, "code": "parts_type",
                "detail": f"{type(value).__name__}"[:200]}
    return {"ok": True, "parts": [convert_part(part, cap) for part, cap in
                                  zip(parts, caps, strict=True)]}


def convert_part(value: Any, max_values: int) -> dict[str, Any]:
    """One part: an array or a number (not a list, a tuple or a dict inside the result)."""
    if isinstance(value, list | tuple | dict):
        return {"ok": False, "code": "bad_output",
                "detail": f"a {type(value).__name__} inside the result, not an array"[:200]}
    return convert(value, max_values)


def main(plan_path: str) -> int:
    with open(plan_path, encoding="utf-8") as handle:
        plan = json.load(handle)
    with open(plan["source"], encoding="utf-8") as handle:
        source = handle.read()
    with np.load(plan["inputs"], allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    cases = plan["cases"]
    returns = plan.get("returns")
    out = open(plan["out"], "w", encoding="utf-8")
    events = os.fdopen(os.dup(1), "w")
    roots = sorted({os.path.realpath(p) for p in sys.path if p and os.path.isdir(p)})
    guard = Guard(roots)

    def emit(**fields: Any) -> None:
        events.write(json.dumps(fields) + "\n")
        events.flush()

    def record(**fields: Any) -> None:
        out.write(json.dumps(fields) + "\n")
        out.flush()

    sys.stdout = _Discard()
    sys.stderr = _Discard()
    guard.install()
    namespace: dict[str, Any] = {"__name__": "submission", "__builtins__": builtins}
    try:
        exec(compile(source, "<submission>", "exec"), namespace)
        function = namespace.get(plan["name"])
        if not callable(function):
            raise TypeError(f"{plan['name']} is not a function")
    except BaseException as exc:
        code = guard.tripped[0] if guard.tripped else "load"
        record(load={"code": code, "detail": f"{type(exc).__name__}: {exc}"[:500]})
        return 0
    for pass_index in range(int(plan["passes"])):
        order = range(len(cases)) if pass_index % 2 == 0 else reversed(range(len(cases)))
        for index in order:
            case = cases[index]
            emit(event="case", case=index, **{"pass": pass_index})
            args = [arrays[a["key"]].copy() if "key" in a else a["value"] for a in case["args"]]
            guard.tripped = None
            try:
                if returns is None:
                    result = convert(function(*args), int(case["max_values"]))
                else:
                    result = convert_parts(function(*args), returns,
                                           [int(cap) for cap in case["max_values"]])
            except MemoryError:
                result = {"ok": False, "code": "memory", "detail": "MemoryError"}
            except RecursionError:
                result = {"ok": False, "code": "error", "detail": "RecursionError"}
            except BaseException as exc:
                result = {"ok": False, "code": "error",
                          "detail": f"{type(exc).__name__}: {exc}"[:500]}
            if guard.tripped is not None:
                result = {"ok": False, "code": guard.tripped[0], "detail": guard.tripped[1]}
            record(case=index, **{"pass": pass_index}, **result)
    emit(event="done")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
