"""The seccomp filter every bubblewrap run gets: Docker's default profile turned around.

Namespaces, an unprivileged user and dropped capabilities already make most of the kernel's
privileged interface fail. What remains reachable is the kernel code itself: syscalls such as
``bpf``, ``userfaultfd``, ``keyctl`` or ``io_uring_setup`` are where local privilege escalations
keep being found, and a notebook has no use for them. Docker's default profile is the
reference for what ordinary programs (TensorFlow, Jupyter) do without; this filter allows
everything else and makes those fail with ``EPERM``, so a library that probes for one sees an
ordinary error instead of dying.

Also refused:

* ``clone`` asking for new namespaces (Docker's flag mask), and ``clone3`` with ``ENOSYS``,
  whose flags live in memory a filter cannot read; glibc then falls back to ``clone``;
* ``personality`` values that change more than the execution domain, such as
  ``ADDR_NO_RANDOMIZE`` (turning address randomisation off helps an exploit); the query value
  ``0xffffffff`` and the ordinary ones (``0``, ``PER_LINUX32``, ``UNAME26``) still work;
* every other ABI: 32-bit ``int 0x80`` calls and x32 calls (syscall numbers with bit 30 set)
  bypass rules written for x86-64 numbers, so libseccomp's architecture check answers them
  with ``EPERM`` too.

The filter is compiled once per process with libseccomp (through PyPI's ``pyseccomp``, plain
ctypes over Debian's ``libseccomp2``) into the classic BPF program bubblewrap loads with
``--seccomp FD`` just before it executes the command, after its own set-up (which needs
``mount`` and ``unshare``).
"""

from __future__ import annotations

import errno
import functools
import tempfile
from typing import Any

#: Syscalls that fail with EPERM inside the sandbox. Docker's default profile refuses them
#: (those it allows only with a capability the sandbox never has are included); names this
#: architecture lacks (``vm86``, ``umount``...) are skipped.
BLOCKED_SYSCALLS = (
    # kernel keyrings, eBPF, performance counters, userfaultfd: kernel attack surface
    "add_key", "keyctl", "request_key", "bpf", "perf_event_open", "userfaultfd",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    # reading or writing other processes
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    # mounts and namespaces
    "mount", "umount", "umount2", "pivot_root", "setns", "unshare", "fsopen", "fsconfig",
    "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr",
    # the machine itself
    "reboot", "kexec_load", "kexec_file_load", "swapon", "swapoff", "acct", "quotactl",
    "quotactl_fd", "syslog", "vhangup", "init_module", "finit_module", "delete_module",
    "create_module", "query_module", "get_kernel_syms", "nfsservctl", "sysfs", "_sysctl",
    "uselib", "ustat", "lookup_dcookie", "iopl", "ioperm", "vm86", "vm86old",
    # clocks
    "settimeofday", "stime", "clock_settime", "clock_adjtime", "adjtimex",
    # file handles bypass path permissions
    "open_by_handle_at", "name_to_handle_at", "fanotify_init",
    # NUMA policy (Docker: only with CAP_SYS_NICE)
    "get_mempolicy", "set_mempolicy", "set_mempolicy_home_node", "mbind", "move_pages",
)

#: ``clone`` flags that make new namespaces (Docker's mask ``0x7E020000``).
CLONE_NAMESPACE_FLAGS = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
)
#: ``personality`` bits a process may set: ``PER_LINUX32`` and ``UNAME26`` (as Docker allows).
PERSONALITY_ALLOWED_BITS = 0x0008 | 0x20000
_QUERY_BIT = 1 << 31


class SeccompError(Exception):
    """The filter cannot be built here (libseccomp missing or too old)."""


@functools.cache
def seccomp_program() -> bytes:
    """The filter as a BPF program (``struct sock_filter`` array), built on first use.

    Raises :class:`SeccompError` when libseccomp cannot be loaded or refuses a rule.
    """
    try:
        import pyseccomp as seccomp
    except (ImportError, RuntimeError, OSError) as exc:
        raise SeccompError(f"libseccomp is not usable ({exc}): apt-get install libseccomp2 "
                           "and pip install pyseccomp") from exc
    eperm = seccomp.ERRNO(errno.EPERM)
    try:
        rules = seccomp.SyscallFilter(seccomp.ALLOW)
        rules.set_attr(seccomp.Attr.ACT_BADARCH, eperm)
        for name in BLOCKED_SYSCALLS:
            if seccomp.resolve_syscall(seccomp.Arch.NATIVE, name) >= 0:
                rules.add_rule(eperm, name)
        for flag in CLONE_NAMESPACE_FLAGS:
            rules.add_rule(eperm, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
        rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
        _add_personality_rules(seccomp, rules, eperm)
        with tempfile.TemporaryFile() as out:
            rules.export_bpf(out)
            out.seek(0)
            return out.read()
    except OSError as exc:
        raise SeccompError(f"libseccomp refused the filter: {exc}") from exc


def _add_personality_rules(seccomp: Any, rules: Any, eperm: int) -> None:
    """Refuse every ``personality`` value but the allowed bits and the query ``0xffffffff``.

    A rule compares an argument once, and rules combine with *or*; so, for each bit ``b`` of
    the 32-bit value: refuse when ``b`` is a forbidden bit that is set while bit 31 is clear,
    and refuse when bit 31 is set while ``b`` is clear (only the query has all 32 bits set).
    """
    for bit in range(31):
        value = 1 << bit
        mask = value | _QUERY_BIT
        if not value & PERSONALITY_ALLOWED_BITS:
            rules.add_rule(eperm, "personality", seccomp.Arg(0, seccomp.MASKED_EQ, mask, value))
        rules.add_rule(eperm, "personality", seccomp.Arg(0, seccomp.MASKED_EQ, mask, _QUERY_BIT))
