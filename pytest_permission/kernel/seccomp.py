"""seccomp: the boolean scopes in the kernel, as a hand-built BPF filter.

The filter sees a system call's number and its integer arguments, never
memory, so it rules on what those tell:

* ``child`` denied: ``execve``/``execveat``/``fork``/``vfork`` and ``clone``
  without ``CLONE_THREAD`` fail with ``EPERM``;
* ``worker`` denied as well: every ``clone`` fails with ``EPERM``. With
  ``child`` granted, thread creation is left to the audit layer: the filter
  is inherited by the child processes the test may start, and ordinary
  programs (``sort``, ``git``, ``node``) start threads;
* either denied: ``clone3`` fails with ``ENOSYS``, because its flags lie in
  memory the filter cannot read; glibc then falls back to ``clone``, so
  granted threads still start;
* ``net`` denied (no grant but Unix-socket paths): ``socket()`` for any
  family but ``AF_UNIX`` and ``AF_NETLINK`` fails with ``EPERM``. Unix
  sockets stay: the C library talks to local services over them, and
  binding one at a path needs a Landlock write grant. Where Landlock rules
  TCP ports (ABI 4+), plain TCP sockets stay too: Landlock refuses their
  ``connect`` and ``bind``, and the audit layer, in front, can then raise
  its ``AccessDenied`` naming ``host:port`` where the kernel would have
  refused the socket with a bare ``EPERM``. UDP, raw and other sockets
  Landlock cannot rule are still refused at ``socket()``;
* always: ``io_uring`` is unavailable (``ENOSYS``, as on a kernel without
  it), since its requests would not pass through the rules above.

A system call of another architecture (i386 through ``int 0x80``, x32 on
x86_64) kills the process: its numbers mean other calls.
"""

from __future__ import annotations

import ctypes
import errno
import struct
from dataclasses import dataclass

from pytest_permission.kernel import libc

PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_MODE_FILTER = 2
_SET_MODE_FILTER = 1
_FILTER_FLAG_TSYNC = 1

_KILL_PROCESS = 0x80000000
_ERRNO = 0x00050000
_ALLOW = 0x7FFF0000

_LD_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_AND = 0x54  # BPF_ALU | BPF_AND | BPF_K
_JEQ = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_JSET = 0x45  # BPF_JMP | BPF_JSET | BPF_K
_RET = 0x06  # BPF_RET | BPF_K

_NR, _ARCH, _ARG0, _ARG1, _ARG2 = 0, 4, 16, 24, 32
"""Offsets in ``struct seccomp_data``; ``args[n]``'s low half (little-endian)."""
_X32_BIT = 0x40000000
CLONE_THREAD = 0x00010000
AF_UNIX, AF_INET, AF_NETLINK, AF_INET6 = 1, 2, 16, 10
SOCK_STREAM, SOCK_TYPE_MASK = 1, 0xF
"""``socket()``'s type argument also carries ``SOCK_CLOEXEC``/``SOCK_NONBLOCK``."""
IPPROTO_TCP = 6


@dataclass(frozen=True)
class Arch:
    audit: int
    """``AUDIT_ARCH_*``: what ``seccomp_data.arch`` says for this ABI."""
    calls: dict[str, int]


ARCHES = {
    "x86_64": Arch(0xC000003E, {
        "socket": 41, "clone": 56, "fork": 57, "vfork": 58, "execve": 59, "execveat": 322,
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "clone3": 435,
    }),
    "aarch64": Arch(0xC00000B7, {
        "socket": 198, "clone": 220, "execve": 221, "execveat": 281,
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "clone3": 435,
    }),
}


@dataclass(frozen=True)
class Denied:
    """The scopes a filter takes away."""

    child: bool
    worker: bool
    """Only with ``child``: see the module text."""
    net: bool
    tcp: bool = False
    """Only with ``net``: plain TCP sockets may still be made (Landlock rules their ports)."""


def supported() -> str | None:
    """Why seccomp filters cannot be used here, or ``None`` if they can."""
    if libc.MACHINE not in ARCHES:
        return f"seccomp: no filter for the {libc.MACHINE} architecture (x86_64, aarch64)"
    try:
        libc.prctl(_PR_SET_SECCOMP, _MODE_FILTER, 0)
    except OSError as exc:
        if exc.errno == errno.EFAULT:
            return None  # filters exist; the NULL program was refused
        return f"seccomp: filters unavailable ({exc.strerror})"
    return "seccomp: filters unavailable"


def program(arch: Arch, denied: Denied) -> bytes:
    """The BPF program for ``denied``: one block per rule, then allow."""
    calls = arch.calls
    code = [
        (_LD_ABS, 0, 0, _ARCH), (_JEQ, 1, 0, arch.audit), (_RET, 0, 0, _KILL_PROCESS),
        (_LD_ABS, 0, 0, _NR),
    ]
    if arch is ARCHES["x86_64"]:
        code += [(_JGE, 0, 1, _X32_BIT), (_RET, 0, 0, _KILL_PROCESS)]
    for name in ("io_uring_setup", "io_uring_enter", "io_uring_register"):
        code += _when(calls[name], [_errno(errno.ENOSYS)])
    if denied.child:
        code += _when(calls["clone3"], [_errno(errno.ENOSYS)])
        for name in ("execve", "execveat", "fork", "vfork"):
            if name in calls:
                code += _when(calls[name], [_errno(errno.EPERM)])
        # clone: EPERM, but for a thread (CLONE_THREAD set) while worker is granted
        threads = [(_LD_ABS, 0, 0, _ARG0), (_JSET, 1, 0, CLONE_THREAD)]
        code += _when(calls["clone"], [*([] if denied.worker else threads), _errno(errno.EPERM)])
    if denied.net:
        code += _when(calls["socket"], _tcp_only() if denied.tcp else [
            (_LD_ABS, 0, 0, _ARG0), (_JEQ, 2, 0, AF_UNIX), (_JEQ, 1, 0, AF_NETLINK),
            _errno(errno.EPERM),
        ])
    code.append((_RET, 0, 0, _ALLOW))
    return b"".join(struct.pack("=HBBI", *op) for op in code)


def refuses_socket(denied: Denied, family: int, kind: int, protocol: int) -> bool:
    """Whether the filter for ``denied`` refuses this ``socket()`` call: what
    :func:`program` encodes, for the audit layer to raise its error first."""
    if not denied.net or family in (AF_UNIX, AF_NETLINK):
        return False
    tcp = family in (AF_INET, AF_INET6) and kind & SOCK_TYPE_MASK == SOCK_STREAM
    return not (denied.tcp and tcp and protocol in (0, IPPROTO_TCP))


def _tcp_only() -> list[tuple[int, int, int, int]]:
    """``socket()``: Unix, netlink and plain TCP sockets pass; the rest get ``EPERM``.

    Jump offsets count from the next instruction; 11 is the ``RET``, 12 the
    first instruction after the block (allowed).
    """
    return [
        (_LD_ABS, 0, 0, _ARG0),             # 0  family
        (_JEQ, 10, 0, AF_UNIX),             # 1  -> 12
        (_JEQ, 9, 0, AF_NETLINK),           # 2  -> 12
        (_JEQ, 1, 0, AF_INET),              # 3  -> 5
        (_JEQ, 0, 6, AF_INET6),             # 4  -> 5, else 11
        (_LD_ABS, 0, 0, _ARG1),             # 5  type
        (_AND, 0, 0, SOCK_TYPE_MASK),       # 6
        (_JEQ, 0, 3, SOCK_STREAM),          # 7  -> 8, else 11
        (_LD_ABS, 0, 0, _ARG2),             # 8  protocol
        (_JEQ, 2, 0, 0),                    # 9  -> 12
        (_JEQ, 1, 0, IPPROTO_TCP),          # 10 -> 12, else 11
        _errno(errno.EPERM),                # 11
    ]


def _errno(number: int) -> tuple[int, int, int, int]:
    return (_RET, 0, 0, _ERRNO | number)


def _when(number: int, then: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """``then`` for system call ``number``; every way out of ``then`` but its
    ``RET`` lands after it, where the number is loaded again for the next rule."""
    return [(_JEQ, 0, len(then), number), *then, (_LD_ABS, 0, 0, _NR)]


class Filter:
    """A BPF program in the memory ``seccomp(2)`` reads, made before it is needed.

    The plugin makes the first one in the pytest process, so the forked child
    only makes the system call.
    """

    def __init__(self, code: bytes) -> None:
        self._filters = ctypes.create_string_buffer(code, len(code))
        self._prog = ctypes.create_string_buffer(
            struct.pack("=HxxxxxxQ", len(code) // 8, ctypes.addressof(self._filters)), 16
        )

    def install(self) -> None:
        """Add the filter to every thread of this process (``TSYNC``), for good."""
        libc.syscall(libc.SECCOMP[libc.MACHINE], _SET_MODE_FILTER, _FILTER_FLAG_TSYNC, self._prog)
