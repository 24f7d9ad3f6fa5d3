"""Reading what a sandbox wrote (``grader.results.read_capped_json``): the file is the sandbox's,
so it may be a link to a host file, a FIFO that never ends, or larger than allowed."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from grader.results import read_capped_json


def test_a_plain_file_within_the_limit_is_read(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    path.write_text('{"ok": true}')
    assert read_capped_json(path, 100, "the result") == {"ok": True}


def test_a_link_is_not_followed_and_its_target_not_quoted(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET-KEY=hunter2")  # not JSON: an error would quote it if read
    link = tmp_path / "result.json"
    link.symlink_to(secret)
    with pytest.raises(ValueError) as caught:
        read_capped_json(link, 1000, "the result")
    assert "link" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "result.json"
    os.mkfifo(fifo)
    outcome: list[str] = []

    def read() -> None:
        try:
            read_capped_json(fifo, 1000, "the result")
        except ValueError as exc:
            outcome.append(str(exc))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(10)
    assert outcome and "not a plain file" in outcome[0]


def test_a_file_over_the_limit_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    path.write_text("[" + "1," * 1000 + "1]")
    with pytest.raises(ValueError, match="over the 100 limit"):
        read_capped_json(path, 100, "the result")


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="missing"):
        read_capped_json(tmp_path / "nothing.json", 100, "the result")
