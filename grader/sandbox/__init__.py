"""Sandbox backends, chosen by name from configuration.

* ``bwrap``: :class:`BubblewrapSandbox`, namespaces + an unprivileged user + a per-run cgroup.
* ``unsafe``: :class:`UnsafeLocalSandbox`, no isolation, for development only.

:func:`sweep_leftovers` removes what graders killed with SIGKILL left on the host (run cgroups,
staging directories); every bubblewrap run calls it first.

A ``docker`` backend is planned; it will register in :data:`BACKENDS` like the others.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from grader.sandbox.base import LineCallback, Mount, Sandbox, SandboxRequest, SandboxResult
from grader.sandbox.bwrap import BubblewrapSandbox, sweep_leftovers
from grader.sandbox.cgroups import CgroupError
from grader.sandbox.unsafe import UnsafeLocalSandbox, UnsafeSandboxWarning

#: Backend name -> factory taking the backend's options as keyword arguments.
BACKENDS: dict[str, Callable[..., Sandbox]] = {
    "bwrap": BubblewrapSandbox,
    "unsafe": UnsafeLocalSandbox,
}


def get_sandbox(name: str, **options: Any) -> Sandbox:
    """The backend called ``name``, built with ``options`` (its documented fields)."""
    try:
        factory = BACKENDS[name]
    except KeyError:
        known = ", ".join(sorted(BACKENDS))
        raise ValueError(f"unknown sandbox backend {name!r}; known: {known}") from None
    return factory(**options)


__all__ = [
    "BACKENDS",
    "BubblewrapSandbox",
    "CgroupError",
    "LineCallback",
    "Mount",
    "Sandbox",
    "SandboxRequest",
    "SandboxResult",
    "UnsafeLocalSandbox",
    "UnsafeSandboxWarning",
    "get_sandbox",
    "sweep_leftovers",
]
