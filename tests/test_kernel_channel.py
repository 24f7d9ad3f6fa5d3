"""The runner's check of the kernel's messages (``grader/kernel/channel.py``), without a
sandbox: messages as the kernel can sign and send them, decoded by the runner's channel. The
same attacks through the real sandboxes are in ``tests/test_attacks.py`` (issue 17, part 4)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jupyter_client.session import Session

from grader.kernel.channel import (
    ALLOWED_TYPES,
    MAX_DECODED_BYTES,
    Dropped,
    GuardedChannel,
    GuardedShellChannel,
    decoded_cost,
)

KEY = b"the run's key"


def _channel(kind: type[GuardedChannel] = GuardedChannel) -> GuardedChannel:
    """A channel without a socket: only its decoding is exercised here."""
    channel = kind.__new__(kind)
    channel.session = Session(key=KEY)
    channel.dropped = Dropped()
    return channel


def _frames(msg_type: Any, content: Any, parent: Any = None, header: Any = None,
            metadata: Any = None, key: bytes = KEY) -> list[bytes]:
    session = Session(key=key)
    head = header if header is not None else session.msg_header(msg_type)
    parts = [json.dumps(p, default=str).encode() if not isinstance(p, bytes) else p
             for p in (head, {"msg_id": "cell"} if parent is None else parent,
                       {} if metadata is None else metadata, content)]
    return [b"<IDS|MSG>", session.sign(parts), *parts]


def _dropped_for(frames: list[bytes], kind: type[GuardedChannel] = GuardedChannel) -> str | None:
    channel = _channel(kind)
    msg = channel._accept(frames)
    if msg is not None:
        assert not channel.dropped
        return None
    (reason,) = channel.dropped
    return reason


@pytest.mark.parametrize(("msg_type", "content", "reason"), [
    ("status", {}, "status without execution_state"),
    ("status", {"execution_state": 3}, "status without execution_state"),
    ("status", ["idle"], "content is not an object"),
    ("stream", {"name": "stdout"}, "bad stream"),
    ("stream", {"name": "stdin", "text": "t"}, "bad stream"),
    ("stream", "text", "content is not an object"),
    ("display_data", {"data": "x", "metadata": {}}, "data is not an object"),
    ("display_data", {"data": {"text/plain": 5}, "metadata": {}},
     "a mime bundle value is not text"),
    ("display_data", {"data": {}, "metadata": []}, "metadata is not an object"),
    ("display_data", {"data": {}, "transient": [1]}, "transient is not an object"),
    ("display_data", {"data": {}, "transient": {"display_id": ["x"]}},
     "display_id is not a short string"),
    ("update_display_data", {"data": None, "transient": {"display_id": "d"}},
     "data is not an object"),
    ("execute_result", {"data": {}, "metadata": {}, "execution_count": "many"},
     "execution_count is not a count"),
    ("execute_result", {"data": {}, "metadata": {}, "execution_count": True},
     "execution_count is not a count"),
    ("execute_input", {"code": "", "execution_count": -1}, "execution_count is not a count"),
    ("error", {"ename": 1}, "bad error"),
    ("error", {"ename": "E", "evalue": "v", "traceback": [1]}, "bad error"),
    ("comm_open", {"comm_id": "c", "data": {"state": {}}}, "comm_open not used"),
    ("comm_msg", {"data": None}, "comm_msg not used"),
    ("execute_reply", {"status": "ok"}, "execute_reply not used"),
    ("input_request", {"prompt": ""}, "input_request not used"),
])
def test_malformed_or_unused_iopub_messages_are_dropped(msg_type, content, reason):
    assert _dropped_for(_frames(msg_type, content)) == reason


@pytest.mark.parametrize(("msg_type", "content"), [
    ("status", {"execution_state": "idle"}),
    ("stream", {"name": "stdout", "text": "hello"}),
    ("display_data", {"data": {"text/plain": ["a", "b"], "application/json": {"a": [1]}},
                      "metadata": {}, "transient": {"display_id": "d"}}),
    ("display_data", {"data": {"image/png": "iVBOR"}}),  # metadata filled in
    ("update_display_data", {"data": {"text/plain": "x"}, "metadata": {},
                             "transient": {"display_id": "d"}}),
    ("execute_result", {"data": {}, "metadata": {}, "execution_count": 3}),
    ("error", {"ename": "E", "evalue": "v", "traceback": ["t"]}),
    ("clear_output", {"wait": True}),
])
def test_well_formed_iopub_messages_pass(msg_type, content):
    assert _dropped_for(_frames(msg_type, content)) is None


def test_shell_takes_replies_only_and_checks_them():
    assert _dropped_for(_frames("execute_reply", {"status": "ok"}), GuardedShellChannel) is None
    assert _dropped_for(_frames("execute_reply", {}), GuardedShellChannel) == (
        "execute_reply without status")
    assert _dropped_for(_frames("execute_reply", {"status": ["error"]}),
                        GuardedShellChannel) == "execute_reply without status"
    assert _dropped_for(_frames("stream", {"name": "stdout", "text": "t"}),
                        GuardedShellChannel) == "stream not used"
    assert ALLOWED_TYPES["shell"] == {"execute_reply", "kernel_info_reply"}


def test_broken_envelopes_are_dropped():
    good = _frames("stream", {"name": "stdout", "text": "t"})
    assert _dropped_for(_frames("stream", {"name": "stdout", "text": "t"}, key=b"other")) == (
        "does not decode")  # the signature
    assert _dropped_for([b"<IDS|MSG>", b"sig", *good[2:]]) == "does not decode"
    assert _dropped_for(good[1:]) == "does not decode"  # no delimiter
    assert _dropped_for(good[:4]) == "does not decode"  # too few frames
    assert _dropped_for(good + [b"x"] * 20) == "too many frames"
    assert _dropped_for(_frames("stream", {}, header={"msg_type": "stream"})) == (
        "does not decode")  # no msg_id
    assert _dropped_for(_frames("stream", {}, header=["stream"])) == "bad header"
    header = {**Session().msg_header("stream"), "version": 5}
    assert _dropped_for(_frames("stream", {"name": "stdout", "text": "t"}, header=header)) == (
        "does not decode")
    header = {**Session().msg_header("stream"), "msg_id": 5}
    assert _dropped_for(_frames("stream", {"name": "stdout", "text": "t"}, header=header)) == (
        "bad header")
    for parent in ([1], "p", None):
        frames = _frames("stream", {"name": "stdout", "text": "t"}, parent=[parent])
        assert _dropped_for(frames) == "bad parent_header"
    assert _dropped_for(_frames("stream", b"[" * 100_000 + b"]" * 100_000)) == (
        "does not decode")  # nested past the recursion limit
    assert _dropped_for(_frames("stream", b"\xff\xfe{")) == "does not decode"
    frames = _frames("stream", {"name": "stdout", "text": "t"}, metadata=[1])
    assert _dropped_for(frames) == "metadata is not an object"


def test_a_json_bomb_is_dropped_before_it_is_decoded():
    bomb = b"[" + b"{}," * (4 * 1024 * 1024) + b"{}]"  # 12 MB, about 350 MB as Python objects
    assert decoded_cost(bomb) > MAX_DECODED_BYTES
    assert _dropped_for(_frames("stream", bomb)) == "would decode too large"
    export = json.dumps({"graph_def": "A" * 48_000_000}).encode()  # an export's shape
    assert decoded_cost(export) < MAX_DECODED_BYTES
    # one emoji in 40 MB of text: Python holds all of it at 4 bytes a character, twice
    text = "a" * 40_000_000 + "\U0001F600"
    for wide in ('"' + text + '"', json.dumps(text)):  # as UTF-8, and as an escape
        frame = json.dumps({"name": "stdout", "text": "x"}).encode()[:-1] + b', "t": ' + (
            wide.encode() + b"}")
        assert decoded_cost(frame) > MAX_DECODED_BYTES
        assert _dropped_for(_frames("stream", frame)) == "would decode too large"
    assert decoded_cost(("日本語" * 1000).encode()) < 2 * 2 * 9000 + 200


def test_uncounted_greeting_and_buffers_released():
    channel = _channel()
    assert channel._accept(_frames("iopub_welcome", {})) is None
    assert not channel.dropped
    msg = channel._accept([*_frames("stream", {"name": "stdout", "text": "t"}), b"buffer"])
    assert msg is not None and msg["buffers"] == []


def test_half_a_surrogate_pair_is_dropped():
    """It decodes into a string no UTF-8 writer takes (the executed notebook, the database);
    an honest kernel never sends one (its JSON escapes no character above U+007F)."""
    for text in (rb'"\ud800"', rb'"a\udfff"', rb'"\ud83d x"'):
        frame = b'{"name": "stdout", "text": ' + text + b"}"
        assert _dropped_for(_frames("stream", frame)) == "lone surrogate"
    assert _dropped_for(_frames("execute_reply", b'{"status": "error", "evalue": "\\udc00"}'),
                        GuardedShellChannel) == "lone surrogate"
    for text in (rb'"\ud83d\ude00"', rb'"\u00e9"', '"😀"'.encode()):
        frame = b'{"name": "stdout", "text": ' + text + b"}"
        assert _dropped_for(_frames("stream", frame)) is None


# --- issue 17 part 7 (red team 2): attacks on the channel's own checks ---------------------


def test_half_a_pair_behind_an_escaped_backslash_is_dropped():
    r"""``\\ud800\udc00`` is a backslash, the text ``ud800`` and half a pair: the pattern read
    it as a whole pair, and the evalue went into ``result.json``, which the host's schema
    refuses (``string_unicode``): no record, ``sandbox_error``, retried."""
    for text in (rb'"\\ud800\udc00"', rb'"\ud800\\\udc00"', rb'"\\\\\ud800"',
                 rb'"\\\ud83d\ude00\\ud83d\udc00"'):
        frame = b'{"status": "error", "ename": "E", "evalue": ' + text + b"}"
        assert _dropped_for(_frames("execute_reply", frame), GuardedShellChannel) == (
            "lone surrogate"), text
    for text in (rb'"\\ud800"', rb'"\\\ud83d\ude00"', rb'"\\\\ud800\\udc00"'):
        frame = b'{"name": "stdout", "text": ' + text + b"}"
        assert _dropped_for(_frames("stream", frame)) is None, text


def test_a_kernel_that_drops_the_connection_again_and_again_is_reconnected_to(tmp_path):
    """The kernel owns its ports: closing its socket and accepting then closing each
    connection on the port makes the runner reconnect hundreds of times a second. pyzmq names
    a monitor's endpoint after the socket's descriptor, which a new socket reuses: after about
    200 reconnections ``EADDRINUSE`` was raised out of ``get_msg`` into nbclient (the run
    ended ``runner_error``: ``sandbox_error``, retried)."""
    import asyncio
    import socket
    import threading
    import time
    from queue import Empty

    import zmq
    import zmq.asyncio

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(128)
    server.settimeout(0.2)
    port = server.getsockname()[1]
    stop = threading.Event()

    def accept_and_close() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except OSError:
                continue
            connection.close()

    thread = threading.Thread(target=accept_and_close, daemon=True)
    thread.start()

    async def follow() -> int:
        context = zmq.asyncio.Context()
        sub = context.socket(zmq.SUB)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.linger = 0
        sub.connect(f"tcp://127.0.0.1:{port}")
        channel = GuardedChannel(sub, Session(key=KEY))
        started = time.monotonic()
        try:
            while channel.reconnections < 1000 and time.monotonic() - started < 20:
                with pytest.raises(Empty):
                    await channel.get_msg(timeout=0.5)
        finally:
            channel.close()
            context.term()
        return channel.reconnections

    # in a thread of its own: an earlier test of the session may leave this thread's event
    # loop running (jupyter_core's run_sync), and asyncio.run refuses to nest in it
    counted: list[int] = []
    runner = threading.Thread(target=lambda: counted.append(asyncio.run(follow())))
    try:
        runner.start()
        runner.join(60)
        assert counted and counted[0] >= 1000
    finally:
        stop.set()
        thread.join()
        server.close()


def test_message_types_the_runner_drops_are_counted_within_bounds():
    """A message type is the kernel's text, and each one the runner does not use was a reason
    of its own: half a surrogate pair there reached the report (which no UTF-8 encoder nor
    PostgreSQL takes), and a million types grew the count without bound."""
    from grader.kernel.channel import MAX_REASONS, OTHER_REASONS

    channel = _channel()
    for n in range(3 * MAX_REASONS):
        header = {**Session().msg_header("x"), "msg_type": f"type {n}"}
        assert channel._accept(_frames("x", {}, header=header)) is None
    assert len(channel.dropped) == MAX_REASONS
    assert channel.dropped[OTHER_REASONS] == 2 * MAX_REASONS + 1
    assert sum(channel.dropped.values()) == 3 * MAX_REASONS
    channel = _channel()
    header = {**Session().msg_header("x"), "msg_type": "\udc00x"}
    assert channel._accept(_frames("x", {}, header=header)) is None
    (reason,) = channel.dropped
    reason.encode("utf-8")
    assert reason == "?x not used"


def test_a_kernel_info_reply_without_status_is_dropped():
    """nbclient takes any shell message whose parent is the running cell as that cell's
    reply, and reads its ``status``: a ``kernel_info_reply`` without one raised ``KeyError``
    out of the runner (``sandbox_error``, retried; ``tests/test_attacks.py``)."""
    assert _dropped_for(_frames("kernel_info_reply", {}), GuardedShellChannel) == (
        "kernel_info_reply without status")
    assert _dropped_for(_frames("kernel_info_reply", {"status": 1}), GuardedShellChannel) == (
        "kernel_info_reply without status")
    honest = {"status": "ok", "protocol_version": "5.3", "implementation": "ipython"}
    assert _dropped_for(_frames("kernel_info_reply", honest), GuardedShellChannel) is None
