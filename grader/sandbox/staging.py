"""Directories a grader makes on the host for its runs, and the sweep of those killed graders
left behind.

* A *stage*: each bubblewrap run gets ``<stage root>/grader-bwrap-<owner>-<random>``,
  world-traversable (mode 0711). It holds the generated ``/etc`` files and, when the grader is
  root, the empty mount points that sources are bind-mounted onto inside the run's private
  mount namespace (see :mod:`grader.sandbox.launch`); on the host they stay empty directories.
* A *run directory*: each submission's grading gets ``grader-run-<owner>-<random>``
  (:func:`create_run_dir`), mode 0700 and the grader's, holding one subdirectory per sandbox
  (the kernel's, the runner's, the clean room's). Nobody but the grader can enter it; the
  sandboxes still reach their own subdirectory, because root binds it in through the staging
  mounts, which bypass the parents' modes. Each subdirectory a sandbox writes is given to that
  sandbox's user, mode 0700, so no other host user (nor the other sandbox) reads it.

``<owner>`` is the :func:`~grader.sandbox.process.owner_tag` of the grader that made it. Both
are removed when their ``with`` block ends, except when the grader is killed with SIGKILL:
:func:`sweep_stages` and :func:`sweep_run_dirs` then remove them, once that grader no longer
exists. Several graders (service workers) may share a root; none ever removes another live
one's directory.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from grader.sandbox.process import owner_gone, owner_tag

logger = logging.getLogger(__name__)

STAGE_PREFIX = "grader-bwrap-"
RUN_DIR_PREFIX = "grader-run-"
MOUNTINFO_FILE = Path("/proc/self/mountinfo")


def _owned_name(prefix: str) -> re.Pattern[str]:
    """A directory name made by this module; group 1 is the owner tag. Names without one
    (older versions, other tools) never match: whose they are cannot be known."""
    return re.compile(re.escape(prefix) + r"(\d+-\d+)-[A-Za-z0-9_]+")


_STAGE_NAME = _owned_name(STAGE_PREFIX)
_RUN_DIR_NAME = _owned_name(RUN_DIR_PREFIX)


@contextmanager
def create_stage(root: str | None = None) -> Iterator[Path]:
    """A fresh staging directory under ``root`` (default: :func:`tempfile.gettempdir`),
    traversable by the sandbox user and removed with everything in it when the block ends."""
    with tempfile.TemporaryDirectory(
        prefix=f"{STAGE_PREFIX}{owner_tag()}-", dir=root, ignore_cleanup_errors=True
    ) as stage:
        os.chmod(stage, 0o711)
        yield Path(stage)


@contextmanager
def create_run_dir(root: str | None = None) -> Iterator[Path]:
    """A fresh directory for one submission's sandboxes under ``root`` (default:
    :func:`tempfile.gettempdir`), mode 0700, the grader's; removed with everything in it when
    the block ends. Make it in the sandbox's ``stage_root`` so every run's sweep finds it.
    A ``root`` that does not exist yet is made (a deployment's empty work folder)."""
    if root is not None:
        os.makedirs(root, mode=0o711, exist_ok=True)
    with tempfile.TemporaryDirectory(
        prefix=f"{RUN_DIR_PREFIX}{owner_tag()}-", dir=root, ignore_cleanup_errors=True
    ) as run_dir:
        os.chmod(run_dir, 0o700)
        yield Path(run_dir)


def write_etc(stage: Path, *, uid: int, gid: int, home: str, hostname: str) -> Path:
    """The generated ``/etc`` files of the sandbox, in ``stage`` (readable by the sandbox user).

    ``uid``/``gid`` are the ids the command sees inside; they are called ``sandbox``.
    """
    etc = stage / "etc"
    etc.mkdir(mode=0o711)
    files = {
        "passwd": f"sandbox:x:{uid}:{gid}:sandbox:{home}:/bin/sh\n"
                  "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        "group": f"sandbox:x:{gid}:\nnogroup:x:65534:\n",
        "hosts": f"127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost\n",
        "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files\n",
        "hostname": f"{hostname}\n",
    }
    for name, text in files.items():
        (etc / name).write_text(text)
        (etc / name).chmod(0o644)
    return etc


def sweep_stages(root: str | None = None) -> list[Path]:
    """Remove the staging directories under ``root`` whose grader is gone; never raises.

    Only directories named by :func:`create_stage`, owned by this user (``/tmp`` is shared:
    another user's entry, or a symlink, is never followed) and with nothing mounted inside
    (``rmtree`` would delete through a mount) are removed. Returns the directories removed.
    """
    return _sweep(root, _STAGE_NAME, "staging directory")


def sweep_run_dirs(root: str | None = None) -> list[Path]:
    """Remove the run directories (:func:`create_run_dir`) under ``root`` whose grader is
    gone, on the same terms as :func:`sweep_stages`; never raises."""
    return _sweep(root, _RUN_DIR_NAME, "run directory")


def _sweep(root: str | None, name: re.Pattern[str], what: str) -> list[Path]:
    root = os.path.realpath(root or tempfile.gettempdir())
    try:
        stale = [entry.path for entry in os.scandir(root) if _is_stale(entry, name)]
    except OSError:
        return []
    mounts = _mount_points() if stale else []
    removed: list[Path] = []
    for path in stale:
        if mounts is None or any(m == path or m.startswith(path + "/") for m in mounts):
            logger.warning("stale %s may hold mounts, not removed: %s", what, path)
            continue
        try:
            shutil.rmtree(path)
        except FileNotFoundError:
            continue  # another grader's sweep was quicker
        except OSError as exc:
            logger.warning("stale %s not removed (%s): %s", what, exc, path)
            continue
        removed.append(Path(path))
    return removed


def _is_stale(entry: os.DirEntry[str], name: re.Pattern[str]) -> bool:
    """A directory of this user named by ``name`` whose grader is gone (never a symlink)."""
    match = name.fullmatch(entry.name)
    if not match or not owner_gone(match[1]):
        return False
    try:
        info = entry.stat(follow_symlinks=False)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()


def _mount_points(mountinfo: Path = MOUNTINFO_FILE) -> list[str] | None:
    """Mount points of this mount namespace, or ``None`` when they cannot be read."""
    try:
        lines = mountinfo.read_text().splitlines()
    except OSError:
        return None
    points = []
    for line in lines:
        fields = line.split()
        if len(fields) > 4:
            points.append(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), fields[4]))
    return points
