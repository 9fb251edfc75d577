"""seccomp: the boolean scopes in the kernel, as a hand-built BPF filter.

The filter sees a system call's number and its integer arguments, never
memory, so it rules on what those tell, and hands what only memory tells
to the supervisor (:mod:`.supervisor`, ``SECCOMP_RET_USER_NOTIF``):

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
* ``net`` granted for some hosts only: ``socket()`` is refused for every
  family but Unix, netlink and plain TCP/UDP/ICMP over IPv4/IPv6 (no raw,
  packet, SCTP or vsock socket), and ``connect``, ``bind``, ``sendto`` with
  an address, ``sendmsg`` and ``sendmmsg`` go to the supervisor, which
  reads the address and decides by host and port;
* ``chmod``/``chown``/``utime``/xattr writes (no Landlock right covers
  them): refused with ``EACCES`` where nothing but ``/dev/null`` is
  writable, else sent to the supervisor, which allows them inside the
  write grants;
* write grants Landlock cannot say exactly (a file, a missing path, a
  wildcard): opening, creating, removing and renaming go to the supervisor;
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

from pytest_permission.kernel import libc, notify

PR_SET_NO_NEW_PRIVS = 38
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
_JA = 0x05  # BPF_JMP | BPF_JA

_NR, _ARCH, _ARG0, _ARG1, _ARG2, _ARG4 = 0, 4, 16, 24, 32, 48
"""Offsets in ``struct seccomp_data``; ``args[n]``'s low half (little-endian)."""
_NOTIFY = (0x06, 0, 0, 0x7FC00000)  # RET USER_NOTIF
_X32_BIT = 0x40000000
CLONE_THREAD = 0x00010000
AF_UNIX, AF_INET, AF_NETLINK, AF_INET6 = 1, 2, 16, 10
SOCK_STREAM, SOCK_DGRAM, SOCK_TYPE_MASK = 1, 2, 0xF
"""``socket()``'s type argument also carries ``SOCK_CLOEXEC``/``SOCK_NONBLOCK``."""
IPPROTO_TCP = 6
INET_PROTOCOLS = (0, IPPROTO_TCP, 17, 1, 58, 262)
"""Default, TCP, UDP, ICMP, ICMPv6 and MPTCP: each addresses a host through
``connect``/``sendto``/``sendmsg``."""


@dataclass(frozen=True)
class Arch:
    audit: int
    """``AUDIT_ARCH_*``: what ``seccomp_data.arch`` says for this ABI."""
    calls: dict[str, int]


ARCHES = {
    "x86_64": Arch(0xC000003E, {
        "socket": 41, "clone": 56, "fork": 57, "vfork": 58, "execve": 59, "execveat": 322,
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "clone3": 435,
        "connect": 42, "bind": 49, "sendto": 44, "sendmsg": 46, "sendmmsg": 307,
        "open": 2, "openat": 257, "openat2": 437, "creat": 85, "mkdir": 83, "mkdirat": 258,
        "unlink": 87, "unlinkat": 263, "rmdir": 84, "rename": 82, "renameat": 264,
        "renameat2": 316, "truncate": 76, "mknod": 133, "mknodat": 259,
        "chmod": 90, "fchmod": 91, "fchmodat": 268, "fchmodat2": 452, "chown": 92,
        "fchown": 93, "lchown": 94, "fchownat": 260, "utime": 132, "utimes": 235,
        "futimesat": 261, "utimensat": 280, "setxattr": 188, "lsetxattr": 189,
        "fsetxattr": 190, "removexattr": 197, "lremovexattr": 198, "fremovexattr": 199,
        "setxattrat": 463, "removexattrat": 466,
    }),
    "aarch64": Arch(0xC00000B7, {
        "socket": 198, "clone": 220, "execve": 221, "execveat": 281,
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "clone3": 435,
        "connect": 203, "bind": 200, "sendto": 206, "sendmsg": 211, "sendmmsg": 269,
        "openat": 56, "openat2": 437, "mkdirat": 34, "unlinkat": 35, "renameat": 38,
        "renameat2": 276, "truncate": 45, "mknodat": 33,
        "fchmod": 52, "fchmodat": 53, "fchmodat2": 452, "fchownat": 54, "fchown": 55,
        "utimensat": 88, "setxattr": 5, "lsetxattr": 6, "fsetxattr": 7, "removexattr": 14,
        "lremovexattr": 15, "fremovexattr": 16, "setxattrat": 463, "removexattrat": 466,
    }),
}

NET_CALLS = ("connect", "bind", "sendto", "sendmsg", "sendmmsg")
"""What the supervisor decides by address; ``sendto`` only with one."""
PATH_CALLS = (
    "open", "openat", "openat2", "creat", "mkdir", "mkdirat", "unlink", "unlinkat", "rmdir",
    "rename", "renameat", "renameat2", "truncate", "mknod", "mknodat",
)
"""What the supervisor serves for write grants Landlock cannot say exactly."""
META_CALLS = (
    "chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "fchown", "lchown", "fchownat",
    "utime", "utimes", "futimesat", "utimensat", "setxattr", "lsetxattr", "fsetxattr",
    "removexattr", "lremovexattr", "fremovexattr", "setxattrat", "removexattrat",
)
"""Changes to a file's metadata, which no Landlock right covers."""


@dataclass(frozen=True)
class Denied:
    """What a filter takes away, or hands to the supervisor."""

    child: bool
    worker: bool
    """Only with ``child``: see the module text."""
    net: bool
    tcp: bool = False
    """Only with ``net``: plain TCP sockets may still be made (Landlock rules their ports)."""
    hosts: bool = False
    """``net`` granted for some hosts only: sockets by family, addresses to the supervisor."""
    meta: str = "allow"
    """``allow``, ``deny`` or ``notify``: chmod/chown/utime/xattr writes."""
    paths: bool = False
    """Opening, creating, removing and renaming go to the supervisor."""

    @property
    def supervised(self) -> bool:
        """Whether the filter hands calls to a supervisor (it needs a listener)."""
        return self.hosts or self.paths or self.meta == "notify"

    def refusals(self) -> tuple[bool, ...]:
        """What the filter refuses outright: a stacked filter adds only these."""
        return (self.child, self.worker, self.net, self.tcp, self.meta == "deny")


def supported() -> str | None:
    """Why seccomp filters with a supervisor cannot be used here, or ``None`` if they can.

    The filter flags the supervisor needs are checked by asking the kernel
    to install a NULL program with them: it refuses the flags it does not
    know (``EINVAL``) before it reads the program (``EFAULT``).
    """
    if libc.MACHINE not in ARCHES:
        return f"seccomp: no filter for the {libc.MACHINE} architecture (x86_64, aarch64)"
    flags = (
        _FILTER_FLAG_TSYNC | notify.FLAG_NEW_LISTENER | notify.FLAG_TSYNC_ESRCH
        | notify.FLAG_WAIT_KILLABLE_RECV
    )
    try:
        libc.syscall(libc.SECCOMP[libc.MACHINE], _SET_MODE_FILTER, flags, None)
    except OSError as exc:
        if exc.errno != errno.EFAULT:
            return (
                "seccomp: filters with a supervisor unavailable (user notification, "
                f"Linux 5.19+: {exc.strerror})"
            )
    else:
        return "seccomp: filters unavailable"
    return notify.supported()


def program(arch: Arch, denied: Denied) -> bytes:
    """The BPF program for ``denied``: the architecture checked, then a search tree
    on the system call number leading to each call's rule, and allow.

    A tree, not a list of rules: the kernel runs the filter for every system
    call number once when it is installed (to cache the calls it always
    allows), so its cost, paid in every forked child, grows with the path
    a call takes through it.
    """
    calls = arch.calls
    rules: dict[int, Code] = {}

    def rule(names: tuple[str, ...], then: Code) -> None:
        for name in names:
            if name in calls:
                rules[calls[name]] = then

    rule(("io_uring_setup", "io_uring_enter", "io_uring_register"), [_errno(errno.ENOSYS)])
    if denied.child:
        rule(("clone3",), [_errno(errno.ENOSYS)])
        rule(("execve", "execveat", "fork", "vfork"), [_errno(errno.EPERM)])
        # clone: EPERM, but for a thread (CLONE_THREAD set) while worker is granted
        threads = [(_LD_ABS, 0, 0, _ARG0), (_JSET, 1, 0, CLONE_THREAD)]
        rule(("clone",), [*([] if denied.worker else threads), _errno(errno.EPERM)])
    if denied.net:
        rule(("socket",), _tcp_only() if denied.tcp else [
            (_LD_ABS, 0, 0, _ARG0), (_JEQ, 2, 0, AF_UNIX), (_JEQ, 1, 0, AF_NETLINK),
            _errno(errno.EPERM),
        ])
    elif denied.hosts:
        rule(("socket",), _inet_only())
        rule(tuple(n for n in NET_CALLS if n != "sendto"), [_NOTIFY])
        rule(("sendto",), _with_address())
    if denied.paths:
        rule(PATH_CALLS, [_NOTIFY])
    if denied.meta != "allow":
        rule(META_CALLS, [_NOTIFY if denied.meta == "notify" else _errno(errno.EACCES)])
    code: Code = [
        (_LD_ABS, 0, 0, _ARCH), (_JEQ, 1, 0, arch.audit), (_RET, 0, 0, _KILL_PROCESS),
        (_LD_ABS, 0, 0, _NR),
    ]
    if arch is ARCHES["x86_64"]:
        code += [(_JGE, 0, 1, _X32_BIT), (_RET, 0, 0, _KILL_PROCESS)]
    code += _tree(sorted(rules.items()))
    return b"".join(struct.pack("=HBBI", *op) for op in code)


Code = list[tuple[int, int, int, int]]
_LINEAR = 3
"""Rules checked one after the other at a leaf of the tree."""


def _tree(rules: list[tuple[int, Code]]) -> Code:
    """Code choosing among ``rules`` (sorted by number) with the number in A; every
    path ends in a ``RET`` (a rule's, or allow). A rule's code falls through to allow."""
    if len(rules) <= _LINEAR:
        code: Code = []
        for number, then in rules:
            block = [*then, (_RET, 0, 0, _ALLOW)]
            code += [(_JEQ, 0, len(block), number), *block]
        return [*code, (_RET, 0, 0, _ALLOW)]
    middle = len(rules) // 2
    low, high = _tree(rules[:middle]), _tree(rules[middle:])
    if len(low) < 256:
        return [(_JGE, len(low), 0, rules[middle][0]), *low, *high]
    return [(_JGE, 0, 1, rules[middle][0]), (_JA, 0, 0, len(low)), *low, *high]


def refuses_socket(denied: Denied, family: int, kind: int, protocol: int) -> bool:
    """Whether the filter for ``denied`` refuses this ``socket()`` call: what
    :func:`program` encodes, for the audit layer to raise its error first."""
    if family in (AF_UNIX, AF_NETLINK):
        return False
    inet = family in (AF_INET, AF_INET6)
    if denied.net:
        tcp = inet and kind & SOCK_TYPE_MASK == SOCK_STREAM
        return not (denied.tcp and tcp and protocol in (0, IPPROTO_TCP))
    if denied.hosts:
        plain = kind & SOCK_TYPE_MASK in (SOCK_STREAM, SOCK_DGRAM)
        return not (inet and plain and protocol in INET_PROTOCOLS)
    return False


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


def _inet_only() -> list[tuple[int, int, int, int]]:
    """``socket()``: Unix, netlink and plain stream or datagram IPv4/IPv6 sockets pass.

    Raw, packet, SCTP and vsock sockets would reach hosts without a
    ``connect`` or an address the supervisor reads. 16 is the ``RET``, 17
    the first instruction after the block (allowed).
    """
    protocols = [(_JEQ, 6 - i, 0, number) for i, number in enumerate(INET_PROTOCOLS)]
    return [
        (_LD_ABS, 0, 0, _ARG0),             # 0  family
        (_JEQ, 15, 0, AF_UNIX),             # 1  -> 17
        (_JEQ, 14, 0, AF_NETLINK),          # 2  -> 17
        (_JEQ, 1, 0, AF_INET),              # 3  -> 5
        (_JEQ, 0, 11, AF_INET6),            # 4  -> 5, else 16
        (_LD_ABS, 0, 0, _ARG1),             # 5  type
        (_AND, 0, 0, SOCK_TYPE_MASK),       # 6
        (_JEQ, 1, 0, SOCK_STREAM),          # 7  -> 9
        (_JEQ, 0, 7, SOCK_DGRAM),           # 8  -> 9, else 16
        (_LD_ABS, 0, 0, _ARG2),             # 9  protocol
        *protocols,                         # 10-15 -> 17 on a match, else on to 16
        _errno(errno.EPERM),                # 16
    ]


def _with_address() -> list[tuple[int, int, int, int]]:
    """``sendto``: to the supervisor when it names an address (a 64-bit pointer),
    allowed on a connected socket (NULL)."""
    return [
        (_LD_ABS, 0, 0, _ARG4),             # 0  address, low half
        (_JEQ, 0, 2, 0),                    # 1  -> 2, else 4
        (_LD_ABS, 0, 0, _ARG4 + 4),         # 2  high half
        (_JEQ, 1, 0, 0),                    # 3  -> 5 (allowed), else 4
        _NOTIFY,                            # 4
    ]


def _errno(number: int) -> tuple[int, int, int, int]:
    return (_RET, 0, 0, _ERRNO | number)


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

    def call(self, *, listener: bool = False) -> libc.Call:
        """:meth:`install`, arguments ready for the child (see :data:`.libc.Call`)."""
        return libc.syscall_call(
            libc.SECCOMP[libc.MACHINE], _SET_MODE_FILTER, _flags(listener), self._prog
        )

    def install(self, *, listener: bool = False) -> int | None:
        """Add the filter to every thread of this process (``TSYNC``), for good.

        With ``listener``, the descriptor a supervisor serves the filter's
        notified calls through (the caller waits for its answer, killable
        but not interrupted by signals once the supervisor has it).
        """
        result = libc.syscall(
            libc.SECCOMP[libc.MACHINE], _SET_MODE_FILTER, _flags(listener), self._prog
        )
        return result if listener else None


def _flags(listener: bool) -> int:
    flags = _FILTER_FLAG_TSYNC
    if listener:
        flags |= notify.FLAG_NEW_LISTENER | notify.FLAG_TSYNC_ESRCH
        flags |= notify.FLAG_WAIT_KILLABLE_RECV
    return flags
