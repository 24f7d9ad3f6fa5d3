"""Kits closed in the background have an owner that waits for them (issue 22): a kit given a
pool's :class:`~grader.kit.KitClosers` is closed in a thread of theirs, off the caller's path,
and that pool's close waits for it; another pool's close does not (no module keeps such
threads). The kit's sandboxes are faked by what its close runs: a callback that blocks."""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from grader.config import GraderConfig
from grader.kit import Kit, KitClosers, KitKey
from grader.warm_pool import PoolSettings, WarmPool


def _kit(release: threading.Event, closed: list[str], name: str) -> Kit:
    """A kit whose closing blocks until ``release`` is set, then notes ``name``."""
    stack = ExitStack()

    def close_slowly() -> None:
        release.wait(10)
        closed.append(name)

    stack.callback(close_slowly)
    fake: Any = None
    return Kit(KitKey(name), Path("/nonexistent"), fake, fake, fake, None, fake, None, stack)


def _pool() -> WarmPool:
    return WarmPool(GraderConfig.from_env(), [], lambda cpus: None,  # type: ignore[arg-type,return-value]
                    settings=PoolSettings(size=0))


def test_a_kit_closed_by_closers_is_closed_off_the_path_and_waited_for():
    release, closed = threading.Event(), []
    closers = KitClosers()
    kit = _kit(release, closed, "a")
    kit.close(closers)  # returns at once: its close runs in the closers' thread
    assert kit.closed and closed == [] and closers.pending() == 1
    kit.close(closers)  # idempotent: not closed twice
    assert closers.pending() == 1
    assert not closers.wait(timeout=0.2)  # still closing
    release.set()
    assert closers.wait(timeout=10) and closed == ["a"] and closers.pending() == 0


def test_a_pool_waits_for_its_own_kits_closed_in_the_background_only():
    release_a, release_b, closed = threading.Event(), threading.Event(), []
    pool_a, pool_b = _pool(), _pool()
    _kit(release_a, closed, "a").close(pool_a.closers)
    _kit(release_b, closed, "b").close(pool_b.closers)
    threading.Timer(0.3, release_a.set).start()
    began = time.monotonic()
    pool_a.close(timeout=5)  # waits for its kit, not for the other pool's
    assert closed == ["a"] and 0.25 <= time.monotonic() - began < 4
    assert pool_b.closers.pending() == 1
    release_b.set()
    pool_b.close(timeout=5)
    assert closed == ["a", "b"] and pool_b.closers.pending() == 0
