"""The runner: executes a notebook in the student's kernel and collects the exports.

Usage (inside the grader's sandbox): ``python runner.py SESSION.json``. The student's kernel
runs in *another* sandbox, under another user, started by the host; this process connects to it
over the loopback network the two sandboxes share, drives it with nbclient, and writes what it
saw into its own folder, which the kernel cannot see or write. It imports nothing from the
``grader`` package (only this folder is mounted: the plans' models, ``plan.py``, are imported
from beside this file) and never sees reference answers.

Two steps, so that a kit can be warm before any submission exists (``grader/kit.py``): with the
session plan the runner connects to the kernel and runs the bootstrap (TensorFlow imported),
says ``{"event": "warm"}``, then waits for the run plan (``plan.json``, written by the host in
one rename when a submission is handed over) and only then reads the notebook and runs it.

What it records is the runner's own observation (which cells ran, how long, what they printed,
whether they raised) and, per graded item, the export the kernel answered with: untrusted data
the host validates and the clean room measures. Paths in the plan are relative to the working
directory. ``out/result.json`` is rewritten after every cell, so a run stopped from outside
still leaves what it reached. Progress goes to stdout as one JSON object per line,
``{"event": "cell", "index": 3, ...}``, a ``ProgressEvent`` (``events.py``, beside this file,
which the host reads each line back with).

The kernel's liveness: the host writes ``out/control/kernel-exited`` when the kernel's sandbox
ends; nbclient asks :meth:`ExternalKernelClient.is_alive` whenever a reply is late.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
from channel import MAX_MESSAGE_BYTES, RECEIVE_HWM, GuardedChannel, GuardedShellChannel
from events import MAX_TEXT_CHARS, EventKind, ProgressEvent, event_line
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_core.utils import run_sync
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from plan import ExportStep, KernelConnection, RunPlan, SessionPlan

HERE = Path(__file__).resolve().parent
EXPORT_MIME = "application/x-grader-export+json"
RESULT_VERSION = 2
#: Largest export kept for one item (its base64 JSON); a larger one is recorded as an error.
MAX_EXPORT_BYTES = 48 * 1024 * 1024
#: How often the warm runner looks for its run plan.
PLAN_POLL_SECONDS = 0.005
#: Characters at the end of a printed text in which the progress event's last line is sought.
PROGRESS_TAIL = 4096


class KernelGone(RuntimeError):
    """The kernel's sandbox ended while the runner waited for a notebook."""


def emit(event: EventKind, **fields: Any) -> None:
    """One progress event on stdout, read line by line by the host (``events.read_event``)."""
    line = event_line(ProgressEvent(event=event, t=round(time.time(), 3), **fields))
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def printable(text: str) -> str:
    """``text`` with NUL characters and lone surrogates (a kernel's JSON may hold ``\\ud800``)
    replaced, so that it can be written as JSON and stored."""
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")


class HiddenCellError(RuntimeError):
    """Code the runner sent (bootstrap, an export) raised in the kernel."""


class ExternalKernelClient(AsyncKernelClient):
    """A client of a kernel this process did not start: alive until the host says it ended.
    Its messages come through :class:`channel.GuardedChannel`, checked and bounded."""

    exit_marker: Path = Path("out/control/kernel-exited")
    shell_channel_class = GuardedShellChannel
    iopub_channel_class = GuardedChannel

    def dropped(self) -> dict[str, int]:
        """Messages dropped so far, by reason, and the channels' reconnections."""
        counts: dict[str, int] = {}
        for channel in (self._iopub_channel, self._shell_channel):
            if isinstance(channel, GuardedChannel):
                for reason, n in channel.dropped.items():
                    counts[reason] = counts.get(reason, 0) + n
                if channel.reconnections:
                    counts[f"{channel.name} reconnected"] = channel.reconnections
        return dict(sorted(counts.items(), key=lambda kv: -kv[1])[:40])

    def is_alive(self) -> bool:  # type: ignore[override]
        return not self.exit_marker.exists()


class ExternalKernel:
    """What nbclient asks of a kernel manager, for a kernel the host owns (never shut down or
    interrupted from here: the host kills its sandbox)."""

    has_kernel = True
    kernel_id = "external"

    def __init__(self, client: ExternalKernelClient) -> None:
        self._client = client

    def client(self) -> ExternalKernelClient:
        return self._client

    def is_alive(self) -> bool:
        return self._client.is_alive()

    def shutdown_kernel(self, now: bool = False, restart: bool = False) -> None:
        return None

    def interrupt_kernel(self) -> None:
        return None

    def cleanup_resources(self, restart: bool = False) -> None:
        return None


def connect_kernel(connection: KernelConnection, timeout: float) -> ExternalKernelClient:
    """A started client of the kernel described by ``connection`` (ports, key), once it answers
    ``kernel_info``; ``RuntimeError`` when it never does."""
    import zmq

    client = ExternalKernelClient()
    client.context.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
    client.context.setsockopt(zmq.RCVHWM, RECEIVE_HWM)
    client.load_connection_info(connection.model_dump())
    # shell and iopub only: nothing reads stdin or control, so nothing may pile up there
    client.start_channels(hb=False, stdin=False, control=False)
    run_sync(client.wait_for_ready)(timeout=timeout)
    client.allow_stdin = False
    return client


class CappedClient(NotebookClient):
    """A NotebookClient that keeps at most ``cell_output_bytes`` of output per cell and
    ``notebook_output_bytes`` in all, so a cell printing in a loop cannot flood the host.
    Display updates (``update_display_data``, a display reusing a ``display_id``) count against
    the same caps as new outputs; nothing of comms or widgets is kept (their messages never get
    here: :mod:`channel` drops them, and the executed notebook has no use for widget state)."""

    def __init__(self, nb: Any, *, cell_output_bytes: int, notebook_output_bytes: int, **kw: Any):
        super().__init__(nb, store_widget_state=False, **kw)
        self.cell_output_bytes = cell_output_bytes
        self.notebook_output_bytes = notebook_output_bytes
        self._cell_bytes: dict[int, int] = {}
        self._total_bytes = 0
        self._truncated: set[int] = set()
        self._last_emit = 0.0
        #: Cells of the student's notebook; hidden cells (bootstrap, exports) come after them.
        self.visible_cells = len(nb.cells)

    def _emit_output(self, cell_index: int, text: str) -> None:
        """Forward the last printed line as a progress event (training epochs), at most 2/s.
        Only the text's tail is split: the whole of a 60 MB ``"ab\\n" * 20_000_000`` made 20
        million strings (1.5 GiB), before the caps cut the output, and took the runner past
        its memory limit with one message."""
        now = time.monotonic()
        if now - self._last_emit < 0.5:
            return
        lines = [line for line in text[-PROGRESS_TAIL:].splitlines() if line.strip()]
        if lines:
            self._last_emit = now
            emit("output", index=cell_index, text=printable(lines[-1][:MAX_TEXT_CHARS]))

    def _room(self, cell_index: int) -> int:
        return min(self.cell_output_bytes - self._cell_bytes.get(cell_index, 0),
                   self.notebook_output_bytes - self._total_bytes)

    def _charge(self, cell_index: int, size: int) -> None:
        self._cell_bytes[cell_index] = self._cell_bytes.get(cell_index, 0) + size
        self._total_bytes += size

    def _mark_truncated(self, cell_index: int, outs: list[Any]) -> None:
        if cell_index not in self._truncated:
            self._truncated.add(cell_index)
            outs.append(nbformat.v4.new_output(
                "stream", name="stderr", text="\n[grader] output truncated here\n"))

    def output(self, outs, msg, display_id, cell_index):
        """Keep an output within the caps; a message the kernel malformed is dropped (the
        kernel is the student's: it can send anything over its sockets)."""
        try:
            return self._capped_output(outs, msg, display_id, cell_index)
        except Exception:
            return None

    def _capped_output(self, outs, msg, display_id, cell_index):
        content = msg.get("content", {})
        if msg.get("msg_type") == "stream" and cell_index < self.visible_cells:
            self._emit_output(cell_index, str(content.get("text", "")))
        hidden = cell_index >= self.visible_cells
        if hidden:  # a hidden cell's index is reused by the next: no display may point there
            display_id = None
        if hidden and msg.get("msg_type") == "display_data" and EXPORT_MIME in content.get(
                "data", {}):
            if any(EXPORT_MIME in out.get("data", {}) for out in outs):
                return None  # one export per hidden cell, the first: more would only fill memory
            return super().output(outs, msg, display_id, cell_index)  # the runner's own cells
        size = len(json.dumps(content, default=str))
        room = self._room(cell_index)
        if size > room:
            if msg.get("msg_type") == "stream" and room > 200:
                content = dict(content, text=_json_prefix(content.get("text", ""), room - 200))
                msg = dict(msg, content=content)
                size = room
            else:
                self._mark_truncated(cell_index, outs)
                return None
        self._charge(cell_index, size)
        return super().output(outs, msg, display_id, cell_index)

    def _update_display_id(self, display_id: str, msg: dict[str, Any]) -> None:
        """Replace the outputs shown under ``display_id`` within the caps: what an update adds
        to an output counts against that output's cell and the notebook, and an update that
        does not fit is dropped (the cell marked truncated), the output left as it was."""
        try:
            self._capped_update(display_id, msg)
        except Exception:  # the kernel's message; the output stays as it was
            return None

    def _capped_update(self, display_id: str, msg: dict[str, Any]) -> None:
        content = msg["content"]
        new = {"data": content["data"], "metadata": content.get("metadata", {})}
        size = len(json.dumps(new, default=str))
        for cell_index, positions in self._display_id_map.get(display_id, {}).items():
            if cell_index >= self.visible_cells:
                continue
            outs = self.nb.cells[cell_index].outputs
            for position in positions:
                if position >= len(outs) or "data" not in outs[position]:
                    continue
                out = outs[position]
                old = len(json.dumps({"data": out.get("data"), "metadata": out.get("metadata")},
                                     default=str))
                if size - old > self._room(cell_index):
                    self._mark_truncated(cell_index, outs)
                    continue
                self._charge(cell_index, size - old)
                out["data"] = nbformat.from_dict(new["data"])
                out["metadata"] = nbformat.from_dict(new["metadata"])


#: Characters of a failed cell's exception name and message the runner keeps.
MAX_ENAME = 200
MAX_EVALUE = 2000


def _short(value: Any, limit: int) -> str:
    """A string the kernel sent, cut to ``limit``; anything else by its type's name."""
    return value[:limit] if isinstance(value, str) else type(value).__name__


def _json_prefix(text: str, limit: int) -> str:
    """The longest prefix of ``text`` (to a halving) whose JSON takes at most ``limit``
    characters: a character can take up to 12 (``\\u0001``, a surrogate pair), so cutting at
    ``limit`` characters kept up to 12 times the cap."""
    cut = limit
    while cut > 0 and len(json.dumps(text[:cut])) - 2 > limit:
        cut //= 2
    return text[:cut]


class Runner:
    def __init__(self, session: SessionPlan):
        self.session = session
        self.plan: RunPlan | None = None
        self.out = Path(session.out)
        (self.out / "exports").mkdir(parents=True, exist_ok=True)
        self.nb = nbformat.v4.new_notebook()  # the submission's, once the run plan came
        self.result: dict[str, Any] = {
            "version": RESULT_VERSION,
            "status": "running",
            "cells": [],
            "exports": {},
            "fresh": {},
            "bootstrap": [],
            "timings": {},
            "error": None,
        }
        self.replies: dict[int, dict[str, Any]] = {}
        self.client = CappedClient(
            self.nb,
            timeout=int(session.bootstrap_timeout),
            kernel_name="python3",
            allow_errors=True,
            record_timing=False,
            cell_output_bytes=1,  # the run plan's caps replace these before any cell runs
            notebook_output_bytes=1,
            on_cell_executed=self._on_cell_executed,
        )

    def wait_for_plan(self) -> RunPlan:
        """The run plan, once the host has handed a submission over; :class:`KernelGone` when
        the kernel's sandbox ends first."""
        path = Path(self.session.plan)
        while not path.exists():
            if not ExternalKernelClient.exit_marker.parent.exists() or (
                    ExternalKernelClient.exit_marker.exists()):
                raise KernelGone("the kernel ended before a notebook was handed over")
            time.sleep(PLAN_POLL_SECONDS)
        plan = RunPlan.model_validate_json(path.read_text())
        self.plan = plan
        self.nb = nbformat.read(plan.notebook, as_version=4)
        self.client.nb = self.nb
        self.client.visible_cells = len(self.nb.cells)
        self.client.timeout = int(plan.cell_timeout)
        self.client.cell_output_bytes = plan.cell_output_bytes
        self.client.notebook_output_bytes = plan.notebook_output_bytes
        return plan

    def _on_cell_executed(self, cell: Any, cell_index: int, execute_reply: Any) -> None:
        """Keep what the runner reads of a cell's reply: its status and error, short. The
        reply is the kernel's, up to a frame (64 MiB): kept whole for every cell, a thousand
        cells of 60 MB replies held the runner past its memory."""
        if execute_reply is not None:
            content = execute_reply.get("content", {})
            self.replies[cell_index] = {
                "status": _short(content.get("status"), 20),
                "ename": _short(content.get("ename", ""), MAX_ENAME),
                "evalue": _short(content.get("evalue", ""), MAX_EVALUE),
            }

    def write(self) -> None:
        kc = self.client.kc
        if isinstance(kc, ExternalKernelClient) and (dropped := kc.dropped()):
            self.result["dropped_messages"] = dropped
        path = self.out / "result.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.result))
        os.replace(tmp, path)

    def hidden(self, code: str, timeout: float) -> list[Any]:
        """Run code the student did not write: not stored in the notebook, not in history."""
        cell = nbformat.v4.new_code_cell(code)
        self.nb.cells.append(cell)
        saved_timeout = self.client.timeout
        self.client.timeout = int(timeout)
        try:
            self.client.execute_cell(cell, len(self.nb.cells) - 1, store_history=False)
        finally:
            self.client.timeout = saved_timeout
            self.nb.cells.pop()
        reply = self.replies.pop(len(self.nb.cells), None)
        if reply and reply.get("status") == "error":
            raise HiddenCellError(f"{reply.get('ename')}: {reply.get('evalue')}")
        return list(cell.outputs)

    def export(self, name: str, args: dict[str, Any]) -> dict[str, Any] | bytes:
        """What the kernel answers to export ``name``: the raw JSON bytes of its display data
        (kept as they came, never interpreted here), or an error record."""
        code = (
            f"__import__('_grader_exporter').run({name!r}, "
            f"__import__('json').loads({json.dumps(args)!r}))"
        )
        assert self.plan is not None
        outputs = self.hidden(code, self.plan.export_timeout)
        for out in outputs:
            data = out.get("data", {}) if out.get("output_type") == "display_data" else {}
            if EXPORT_MIME in data:
                raw = json.dumps(data[EXPORT_MIME]).encode()
                if len(raw) > MAX_EXPORT_BYTES:
                    return {"error": {"ename": "TooLarge",
                                      "evalue": f"the export is {len(raw)} bytes"}}
                return raw
        return {"error": {"ename": "NoResult", "evalue": "the kernel published no export"}}

    def bootstrap(self) -> None:
        sources = {
            "_grader_boot": (HERE / "bootstrap.py").read_text(),
            "_grader_exporter": (HERE / "exporter.py").read_text(),
        }
        config = self.session.bootstrap.model_dump()
        code = (
            "def __grader_install(sources, config):\n"
            "    import sys, types\n"
            "    for name, src in sources.items():\n"
            "        module = types.ModuleType(name)\n"
            "        sys.modules[name] = module\n"
            "        exec(compile(src, '<' + name + '>', 'exec'), module.__dict__)\n"
            "    return sys.modules['_grader_boot'].install(config)\n"
            f"__grader_notes = __grader_install({sources!r}, {config!r})\n"
            "del __grader_install\n"
            "print('\\n'.join(__grader_notes))\n"
            "del __grader_notes\n"
        )
        outputs = self.hidden(code, self.session.bootstrap_timeout)
        for out in outputs:
            if out.get("output_type") == "stream" and out.get("name") == "stdout":
                self.result["bootstrap"].extend(out.get("text", "").split("\n"))
        self.result["bootstrap"] = [n for n in self.result["bootstrap"] if n][:100]

    def run(self) -> None:
        started = time.monotonic()
        timings = self.result["timings"]
        try:
            ExternalKernelClient.exit_marker = self.out / "control" / "kernel-exited"
            kc = connect_kernel(self.session.connection, self.session.startup_timeout)
            self.client.km = ExternalKernel(kc)  # type: ignore[assignment]
            self.client.kc = kc
            with self.client.setup_kernel():
                timings["kernel_start"] = round(time.monotonic() - started, 3)
                t0 = time.monotonic()
                self.bootstrap()
                timings["bootstrap"] = round(time.monotonic() - t0, 3)
                emit("warm")
                t0 = time.monotonic()
                plan = self.wait_for_plan()
                timings["wait"] = round(time.monotonic() - t0, 3)
                started = time.monotonic()  # the run's own time starts with its notebook
                exports_by_cell: dict[int, list[ExportStep]] = {}
                for step in plan.exports:
                    exports_by_cell.setdefault(step.cell, []).append(step)
                code_cells = [i for i, c in enumerate(self.nb.cells) if c.cell_type == "code"]
                emit("kernel_ready", cells=len(code_cells))
                timings["cells"] = 0.0
                timings["exports"] = 0.0
                for position, index in enumerate(code_cells):
                    if not self.run_cell(index, position, len(code_cells), exports_by_cell):
                        break
                else:
                    self.result["status"] = "completed"
        except DeadKernelError as exc:
            self.result["status"] = "kernel_died"
            self.result["error"] = {"ename": "DeadKernelError", "evalue": str(exc)}
        except Exception as exc:  # the kernel never answered, the bootstrap failed, ...
            self.result["status"] = "runner_error"
            self.result["error"] = {"ename": type(exc).__name__, "evalue": str(exc)[:4000]}
        finally:
            timings["total"] = round(time.monotonic() - started, 3)
            try:  # the outputs are the kernel's: a text no UTF-8 takes must not cost the record
                text = nbformat.writes(self.nb)
                (self.out / "executed.ipynb").write_bytes(text.encode("utf-8", "replace"))
            except Exception as exc:
                self.result["executed_error"] = f"{type(exc).__name__}: {exc}"[:400]
            self.write()
            emit("done", status=self.result["status"])

    def run_cell(
        self, index: int, position: int, count: int,
        exports_by_cell: dict[int, list[ExportStep]],
    ) -> bool:
        """Execute one cell and its exports; ``False`` when the run must stop here."""
        timings = self.result["timings"]
        exports = exports_by_cell.get(index, [])
        before: dict[str, Any] = {}
        t0 = time.monotonic()
        for step in exports:
            if step.fresh:
                try:
                    before[step.item] = self._identity(step.fresh)
                except HiddenCellError:
                    before[step.item] = {}
                except CellTimeoutError:
                    self.result["status"] = "timeout"
                    self.result["timeout_cell"] = index
                    self.write()
                    return False
        timings["exports"] += time.monotonic() - t0
        emit("cell", index=index, position=position, count=count)
        t0 = time.monotonic()
        record: dict[str, Any] = {"index": index, "status": "ok"}
        self.result["cells"].append(record)
        assert self.plan is not None
        budget = self.plan.cell_budgets.get(index, self.plan.cell_timeout)
        self.client.timeout = max(1, int(budget))
        try:
            self.client.execute_cell(self.nb.cells[index], index)
        except CellTimeoutError:
            record.update(status="timeout", seconds=round(time.monotonic() - t0, 3))
            self.result["status"] = "timeout"
            self.result["timeout_cell"] = index
            self.result["timeout_budget"] = budget
            self.write()
            return False
        except DeadKernelError:
            record.update(status="kernel_died", seconds=round(time.monotonic() - t0, 3))
            self.result["status"] = "kernel_died"
            self.result["died_cell"] = index
            self.write()
            return False
        seconds = time.monotonic() - t0
        timings["cells"] += seconds
        record["seconds"] = round(seconds, 3)
        reply = self.replies.get(index, {})
        if reply.get("status") == "error":
            record.update(
                status="error",
                ename=str(reply.get("ename", ""))[:200],
                evalue=str(reply.get("evalue", ""))[:2000],
            )
        t0 = time.monotonic()
        for step in exports:
            item = step.item
            emit("export", item=item, index=index)
            try:
                if step.fresh:
                    after = self._identity(step.fresh)
                    self.result["fresh"][item] = bool(
                        after.get("defined") and after.get("id") != before[item].get("id"))
                answer = self.export(step.export, dict(step.args))
            except CellTimeoutError:  # the kernel is still busy: nothing more can run
                record["export_timeout"] = item
                self.result["status"] = "timeout"
                self.result["timeout_cell"] = index
                self.write()
                return False
            except HiddenCellError as exc:  # the student's code broke the exporter
                answer = {"error": {"ename": "ExportFailed", "evalue": str(exc)[:2000]}}
            path = self.out / "exports" / f"{len(self.result['exports'])}.json"
            if isinstance(answer, bytes):
                path.write_bytes(answer)
                self.result["exports"][item] = {"file": path.name}
            else:
                self.result["exports"][item] = answer
        timings["exports"] += time.monotonic() - t0
        self.write()
        return True

    def _identity(self, expr: str) -> dict[str, Any]:
        answer = self.export("identity", {"expr": expr})
        if isinstance(answer, bytes):
            try:
                value = json.loads(answer)
                return value if isinstance(value, dict) else {}
            except ValueError:
                return {}
        return {}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: runner.py SESSION.json", file=sys.stderr)
        return 2
    session = SessionPlan.model_validate_json(Path(argv[1]).read_text())
    Runner(session).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
