"""What every backend checks of a request before it makes a sandbox, and the work directory it
hands to the run's user.

Shared by the bubblewrap and docker backends: a request both refuse is refused alike (a
``sandbox_error`` naming the problem), and the work directory is given to the run's host user
the same way.
"""

from __future__ import annotations

import os
from pathlib import Path

from grader.sandbox.base import SandboxRequest


def under_any(path: str, roots: tuple[str, ...]) -> bool:
    """Whether ``path`` is one of ``roots`` or lies below one."""
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def request_problem(request: SandboxRequest, reserved: tuple[str, ...]) -> str | None:
    """Why ``request`` cannot run (empty command, missing work directory or mount source, a
    target that is not a normalised absolute path or lies in ``reserved``), else ``None``."""
    if not request.argv:
        return "empty command"
    if request.workdir is not None and not request.workdir.is_dir():
        return f"work directory does not exist: {request.workdir}"
    for target in [request.workdir_target, *(m.target for m in request.mounts)]:
        if not target.startswith("/") or os.path.normpath(target) != target or target == "/":
            return f"mount target must be a normalised absolute path below /: {target!r}"
        if under_any(target, reserved):
            return f"mount target is reserved by the sandbox: {target}"
    for mount in request.mounts:
        if not os.path.exists(mount.source):
            return f"mount source does not exist: {mount.source}"
    return None


def give_workdir(root: Path, uid: int, gid: int) -> None:
    """Give the work directory to the run's user, mode 0700 (never following symlinks).

    Root binds it in (bubblewrap through the staging mounts, docker through the daemon), which
    bypasses its parents' modes; so the run directory around it can stay 0700 and the
    grader's, and no other host user reads it.
    """
    os.lchown(root, uid, gid)
    os.chmod(root, 0o700)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), uid, gid)
