"""The kernel's messages, checked before nbclient sees them.

The student's kernel holds the session key, so it can send anything on its sockets, signed:
``get_ipython().kernel.session.send(get_ipython().kernel.iopub_socket, ...)``. nbclient reads
messages with ``msg["content"]["execution_state"]`` and the like, so one odd message used to
raise deep in its polling tasks and end the run. Every message the runner receives from the
kernel passes :meth:`GuardedChannel.get_msg` (the one seam: nbclient reads only through the
client's shell and iopub channels, and the runner opens no other). A message is returned only
when it is of a type the runner uses on that channel and every field nbclient or the runner
reads has the type they expect; anything else (frames that do not decode, a bad signature,
``status`` without ``execution_state``, content that is not an object, a comm message, ...) is
dropped and counted by reason (:class:`Dropped`), and the wait goes on within its timeout.

Memory: the runner's sandbox has ``RUNNER_MEMORY`` (2 GiB, ``grader/kit.py``), whatever the
kernel sends. A frame is at most :data:`MAX_MESSAGE_BYTES` (ZMQ ``MAXMSGSIZE``: above it ZMQ
drops the connection, see :meth:`GuardedChannel.get_msg` for the reconnection), each socket
queues at most :data:`RECEIVE_HWM` messages (ZMQ ``RCVHWM``; the kernel's side holds the rest),
and a frame whose JSON would decode into more than :data:`MAX_DECODED_BYTES` of Python objects
(``[{},{},...]`` costs about 25 times its bytes) is dropped before it is decoded
(:func:`decoded_cost`). Only ``shell`` and ``iopub`` are connected (no ``stdin``, ``control``
or heartbeat socket: nothing there is read, so nothing may pile up there). At worst the runner
then holds, per socket, its queued messages and one being received (2 x 5 x 64 MiB), one
message being decoded (its frames and what they decode into: 64 + 256 MiB), one decoded
message waiting in the other polling task (as much again), one export (48 MB, written out after
its cell), the capped outputs (2 MiB) and itself (about 150 MiB): about 1.6 GiB, under the
2 GiB. Measured: 522 MiB at the peak of ten 240 MB and ten 60 MB display updates
(``tests/test_attacks.py``). What ZMQ cannot bound is one message of many frames (ZMQ holds
every frame until the last arrived): ``grader/outcome.py`` says what a runner killed by the
memory it was pushed becomes.

This module lives in ``grader/kernel/`` (mounted in the runner's sandbox): it imports nothing
of ``grader``.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections import Counter
from queue import Empty
from typing import Any

import zmq
import zmq.asyncio
from jupyter_client.channels import AsyncZMQSocketChannel
from zmq.utils.monitor import parse_monitor_message

MiB = 1024 * 1024
#: Largest frame the kernel may send (ZMQ ``MAXMSGSIZE``). The largest honest message is an
#: export: at most ``MAX_EXPORT_BYTES`` (48 MB) of JSON in a display, plus its envelope.
MAX_MESSAGE_BYTES = 64 * MiB
#: Most Python memory one message's JSON may decode into (estimated by :func:`decoded_cost`).
MAX_DECODED_BYTES = 256 * MiB
#: Messages each socket queues in the runner before ZMQ stops reading (the kernel's side
#: holds the rest, in the kernel's memory).
RECEIVE_HWM = 4
#: Frames of a message: the delimiter, signature, four JSON parts and a few buffers.
MAX_FRAMES = 16
#: Python objects a decoded JSON value may cost, per bracket, brace or comma (an empty dict
#: is 64 bytes, a short string about 50, a float 24, plus a pointer to each).
COST_PER_VALUE = 100

#: What the runner reads, per channel: anything else is dropped.
ALLOWED_TYPES = {
    "iopub": frozenset({"status", "stream", "display_data", "update_display_data",
                        "execute_result", "error", "clear_output", "execute_input"}),
    "shell": frozenset({"execute_reply", "kernel_info_reply"}),
}
#: Types dropped without being counted: ipykernel's greeting of each new subscriber.
UNCOUNTED_TYPES = frozenset({"iopub_welcome"})
#: Mime types whose value is JSON of any shape (nbformat's schema); the others are text.
JSON_MIME = re.compile(r"^application/(.*\+)?json$")
#: Longest display id kept (an identifier, not a payload).
MAX_DISPLAY_ID = 256
#: Numbers the monitors' endpoints. pyzmq's default endpoint is named after the socket's file
#: descriptor, which a new socket may reuse while the closed one's monitor is still bound
#: (``EADDRINUSE`` after about 200 quick reconnections, raised out of :meth:`get_msg`).
_MONITORS = itertools.count()


#: Distinct reasons a channel counts; a message type the runner does not use is a reason of
#: its own, so a kernel sending a million types would otherwise grow the count without bound.
MAX_REASONS = 64
OTHER_REASONS = "other reasons"


class Dropped(Counter[str]):
    """Messages dropped, by reason (the runner's record keeps them for diagnostics), at most
    :data:`MAX_REASONS` reasons, :data:`OTHER_REASONS` among them."""

    def add(self, reason: str) -> None:
        if reason not in self and len(self) >= MAX_REASONS - 1:
            reason = OTHER_REASONS
        self[reason] += 1


def _unused(msg_type: str) -> str:
    """The reason for dropping a message of a type the runner does not use. The type is the
    kernel's text: half a surrogate pair in it would reach the report, which neither UTF-8
    nor PostgreSQL's JSON takes."""
    return msg_type[:40].encode("utf-8", "replace").decode("utf-8") + " not used"


#: What in a frame's bytes makes Python hold its text at 4 bytes a character (a 4-byte UTF-8
#: sequence, a surrogate escape) or at 2 (a 3-byte sequence, any other escape): one emoji in
#: 60 MB of ASCII makes both the decoded text and the string 240 MB.
WIDE_4 = re.compile(rb"[\xf0-\xf4]|\\u[dD][89abAB]")
WIDE_2 = re.compile(rb"[\xe0-\xef]|\\u")

_HIGH = rb"\\u[dD][89abAB][0-9a-fA-F]{2}"
_LOW = rb"\\u[dD][c-fC-F][0-9a-fA-F]{2}"
#: A JSON escape of half a surrogate pair: it decodes into a string no UTF-8 writer accepts
#: (the executed notebook, the report's database), so such a message is dropped.
LONE_SURROGATE = re.compile(_HIGH + rb"(?!" + _LOW + rb")|(?<!" + _HIGH + rb")" + _LOW)


def has_lone_surrogate(frame: bytes) -> bool:
    """Whether JSON ``frame`` escapes half a surrogate pair. Escaped backslashes are masked
    first (left to right, as a JSON reader pairs them), so that ``\\\\ud800\\udc00`` (a
    backslash, the text ``ud800``, then half a pair) is not read as a whole pair, nor
    ``\\ud800\\\\\\udc00`` (a backslash between two halves)."""
    return b"\\u" in frame and LONE_SURROGATE.search(frame.replace(b"\\\\", b"__")) is not None


def decoded_cost(frame: bytes) -> int:
    """An upper estimate of the memory ``json.loads`` of ``frame`` takes: the decoded text and
    its strings at the widest character's width, plus :data:`COST_PER_VALUE` for each value a
    container can hold (one per comma, plus the first of each container). Strings holding
    commas or escapes only make the estimate larger."""
    width = 4 if WIDE_4.search(frame) else 2 if WIDE_2.search(frame) else 1
    containers = frame.count(b"[") + frame.count(b"{")
    return 2 * width * len(frame) + COST_PER_VALUE * (containers + frame.count(b",") + 1)


def _is_text(value: Any) -> bool:
    return isinstance(value, str) or (
        isinstance(value, list) and all(isinstance(line, str) for line in value))


def _bundle_problem(content: dict[str, Any]) -> str | None:
    data = content.get("data")
    if not isinstance(data, dict):
        return "data is not an object"
    if not isinstance(content.setdefault("metadata", {}), dict):
        return "metadata is not an object"
    for mime, value in data.items():
        if not isinstance(mime, str) or not (JSON_MIME.match(mime) or _is_text(value)):
            return "a mime bundle value is not text"
    return None


def _count_problem(content: dict[str, Any]) -> str | None:
    if "execution_count" not in content:
        return None
    count = content["execution_count"]
    if count is None or (type(count) is int and 0 <= count < 2**31):
        return None
    return "execution_count is not a count"


def _transient_problem(content: dict[str, Any]) -> str | None:
    transient = content.get("transient")
    if not transient:
        return None
    if not isinstance(transient, dict):
        return "transient is not an object"
    display_id = transient.get("display_id")
    if display_id is None or (isinstance(display_id, str) and len(display_id) <= MAX_DISPLAY_ID):
        return None
    return "display_id is not a short string"


def message_problem(msg: Any, allowed: frozenset[str]) -> str | None:
    """Why ``msg`` (as ``Session.deserialize`` made it) must be dropped, or ``None``."""
    if not isinstance(msg, dict):
        return "not a message"
    header, parent, content = msg.get("header"), msg.get("parent_header"), msg.get("content")
    if not isinstance(header, dict) or not isinstance(header.get("msg_id"), str):
        return "bad header"
    msg_type = msg.get("msg_type")
    if not isinstance(msg_type, str) or header.get("msg_type") != msg_type:
        return "bad msg_type"
    if msg_type not in allowed:
        return _unused(msg_type)
    if not isinstance(parent, dict):
        return "bad parent_header"
    if not isinstance(content, dict):
        return "content is not an object"
    if not isinstance(msg.get("metadata", {}), dict):
        return "metadata is not an object"
    problem = _count_problem(content) or _transient_problem(content)
    if problem:
        return problem
    if msg_type == "status" and not isinstance(content.get("execution_state"), str):
        return "status without execution_state"
    if msg_type in ("execute_reply", "kernel_info_reply") and not isinstance(
            content.get("status"), str):  # nbclient takes either as a cell's reply
        return f"{msg_type} without status"
    if msg_type == "stream" and not (
            content.get("name") in ("stdout", "stderr") and isinstance(content.get("text"), str)):
        return "bad stream"
    if msg_type in ("display_data", "update_display_data", "execute_result"):
        return _bundle_problem(content)
    if msg_type == "error" and not (
            isinstance(content.get("ename"), str) and isinstance(content.get("evalue"), str)
            and isinstance(content.get("traceback"), list)
            and all(isinstance(line, str) for line in content["traceback"])):
        return "bad error"
    return None


class GuardedChannel(AsyncZMQSocketChannel):
    """A kernel channel that returns only messages the runner can use (see the module's
    docstring), and reconnects when ZMQ dropped the connection (an oversized frame is a
    protocol error, after which ZMQ never reconnects by itself): the messages the kernel sent
    in between are lost, as a display too large to keep would be."""

    #: ``iopub`` or ``shell``: which message types are used (:data:`ALLOWED_TYPES`).
    name = "iopub"

    def __init__(self, socket: zmq.asyncio.Socket, session: Any, loop: Any = None) -> None:
        super().__init__(socket, session, loop)
        self.dropped = Dropped()
        self.reconnections = 0
        self._endpoint = socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self._monitor: zmq.asyncio.Socket | None = _monitor(socket)

    async def get_msg(  # type: ignore[override]
        self, timeout: float | None = None
    ) -> dict[str, Any]:
        """The next usable message; ``queue.Empty`` when none came within ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            assert self.socket is not None
            poller = zmq.asyncio.Poller()
            poller.register(self.socket, zmq.POLLIN)
            if self._monitor is not None:
                poller.register(self._monitor, zmq.POLLIN)
            ready = dict(await poller.poll(None if left is None else int(left * 1000)))
            if self._monitor is not None and self._monitor in ready:
                await self._on_monitor_event()
                continue
            if self.socket not in ready:
                raise Empty
            frames = await self.socket.recv_multipart()
            msg = self._accept(frames)
            if msg is not None:
                return msg

    def _accept(self, frames: list[bytes]) -> dict[str, Any] | None:
        """The message in ``frames`` if the runner can use it, else ``None`` (counted). The
        header is read first, so a message of a type the runner does not use is dropped
        without decoding (nor verifying) the rest: a flood of those costs little."""
        problem = self._problem(frames)
        if isinstance(problem, dict):
            return problem
        if problem:
            self.dropped.add(problem)
        return None

    def _problem(self, frames: list[bytes]) -> dict[str, Any] | str:
        """The message, or why it is dropped (``""``: without counting it)."""
        if len(frames) > MAX_FRAMES:
            return "too many frames"
        try:
            _, parts = self.session.feed_identities(frames)
            wire = [part if isinstance(part, bytes) else part.bytes for part in parts]
            header = json.loads(wire[1]) if decoded_cost(wire[1]) <= MAX_DECODED_BYTES else None
        except Exception:
            return "does not decode"
        msg_type = header.get("msg_type") if isinstance(header, dict) else None
        if not isinstance(msg_type, str):
            return "bad header"
        if msg_type not in ALLOWED_TYPES[self.name]:
            return "" if msg_type in UNCOUNTED_TYPES else _unused(msg_type)
        if any(decoded_cost(frame) > MAX_DECODED_BYTES for frame in wire[2:5]):
            return "would decode too large"
        if any(has_lone_surrogate(frame) for frame in wire[3:5]):
            return "lone surrogate"
        try:
            msg = self.session.deserialize(wire)
        except Exception:  # bad signature, JSON, header, version, nesting: all the kernel's
            return "does not decode"
        try:
            problem = message_problem(msg, ALLOWED_TYPES[self.name])
        except Exception:  # a case message_problem did not foresee: dropped all the same
            problem = "unforeseen"
        if problem is not None:
            return problem
        msg["buffers"] = []  # nothing the runner reads comes in buffers
        return msg

    async def _on_monitor_event(self) -> None:
        assert self._monitor is not None and self.socket is not None
        event = parse_monitor_message(await self._monitor.recv_multipart())
        if event["event"] != zmq.EVENT_DISCONNECTED:
            return
        old = self.socket
        kind = int(old.getsockopt(zmq.TYPE))
        self._monitor.close(linger=0)
        old.close(linger=0)
        socket = old.context.socket(kind)
        socket.linger = 0
        if kind == zmq.SUB:
            socket.setsockopt(zmq.SUBSCRIBE, b"")
        socket.connect(self._endpoint)
        self.socket = socket
        self._monitor = _monitor(socket)
        self.reconnections += 1

    def close(self) -> None:
        if self._monitor is not None:
            self._monitor.close(linger=0)
            self._monitor = None
        super().close()


def _monitor(socket: zmq.asyncio.Socket) -> zmq.asyncio.Socket:
    """A socket that tells when ``socket`` lost its connection, on an endpoint of its own."""
    return socket.get_monitor_socket(zmq.EVENT_DISCONNECTED,
                                     addr=f"inproc://guarded-monitor-{next(_MONITORS)}")


class GuardedShellChannel(GuardedChannel):
    name = "shell"
