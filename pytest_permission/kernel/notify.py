"""seccomp user notification and the other kernel calls the supervisor makes.

A seccomp filter may answer a system call with ``SECCOMP_RET_USER_NOTIF``:
the calling thread then waits while a supervisor holding the filter's
*listener* descriptor reads the call (number, arguments, caller's pid),
and answers it: with a result or an error, by letting the kernel run it
(``CONTINUE``), or by placing a descriptor of its own into the caller
(``ADDFD``). Linux 5.0 (notifications), 5.9 (``ADDFD``), 5.19
(``WAIT_KILLABLE_RECV``); ``pidfd_getfd`` 5.6, ``openat2`` 5.6.

Also here: reading and writing the caller's memory (``process_vm_readv``),
taking a copy of one of its descriptors (``pidfd_getfd``) and ``openat2``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import struct
from dataclasses import dataclass

from pytest_permission.kernel import libc

RET_USER_NOTIF = 0x7FC00000
FLAG_NEW_LISTENER = 1 << 3
FLAG_TSYNC_ESRCH = 1 << 4
FLAG_WAIT_KILLABLE_RECV = 1 << 5
_RECV = 0xC0502100  # SECCOMP_IOWR(0, struct seccomp_notif)
_SEND = 0xC0182101  # SECCOMP_IOWR(1, struct seccomp_notif_resp)
_ID_VALID = 0x40082102  # SECCOMP_IOW(2, __u64)
_ADDFD = 0x40182103  # SECCOMP_IOW(3, struct seccomp_notif_addfd)
_SET_FLAGS = 0x40082104  # SECCOMP_IOW(4, __u64)
_FLAG_CONTINUE = 1
_ADDFD_SEND = 1 << 1
_SYNC_WAKE_UP = 1
_GET_NOTIF_SIZES = 3
_NOTIF = struct.Struct("=QIIiIQ6Q")
"""``struct seccomp_notif``: id, pid, flags, then ``struct seccomp_data``."""
_PIDFD_OPEN, _PIDFD_GETFD, _OPENAT2 = 434, 438, 437
"""The same numbers on x86_64 and aarch64."""
_PIDFD_THREAD = os.O_EXCL
RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS = 0x02, 0x04
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def supported() -> str | None:
    """Why a supervisor cannot be used here, or ``None`` if it can."""
    sizes = ctypes.create_string_buffer(6)
    try:
        libc.syscall(libc.SECCOMP[libc.MACHINE], _GET_NOTIF_SIZES, 0, sizes)
        libc.syscall(_PIDFD_GETFD, -1, 0, 0)
    except OSError as exc:
        if exc.errno != errno.EBADF:
            return f"seccomp user notification unavailable ({exc.strerror})"
    notif, _resp, _data = struct.unpack("=HHH", sizes.raw)
    if notif != _NOTIF.size:
        return f"seccomp user notification: unknown struct size {notif}"
    return None


@dataclass(frozen=True)
class Call:
    """One notified system call."""

    id: int
    pid: int
    nr: int
    args: tuple[int, ...]

    def signed(self, index: int) -> int:
        """Argument ``index`` as a C ``int`` (the kernel reads only the low half)."""
        value = self.args[index] & 0xFFFFFFFF
        return value - (1 << 32) if value & 0x80000000 else value


class Listener:
    """The supervisor's end of a filter: receive calls, answer them."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        with contextlib.suppress(OSError):  # before Linux 6.6: woken up the ordinary way
            fcntl.ioctl(fd, _SET_FLAGS, struct.pack("=Q", _SYNC_WAKE_UP))

    def receive(self) -> Call | None:
        """The next call; ``None`` if it vanished first (its caller was killed)."""
        buffer = bytearray(_NOTIF.size)
        try:
            fcntl.ioctl(self.fd, _RECV, buffer, True)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.EINTR):
                return None
            raise
        ident, pid, _flags, nr, _arch, _ip, *args = _NOTIF.unpack(buffer)
        return Call(ident, pid, nr, tuple(args))

    def valid(self, call: Call) -> bool:
        """Whether ``call``'s caller is still waiting: its pid still names it."""
        try:
            fcntl.ioctl(self.fd, _ID_VALID, struct.pack("=Q", call.id))
        except OSError:
            return False
        return True

    def reply(self, call: Call, value: int = 0, error: int = 0) -> None:
        """Answer: ``value``, or failure with ``error`` (an errno)."""
        self._send(struct.pack("=QqiI", call.id, value, -error if error else 0, 0))

    def proceed(self, call: Call) -> None:
        """Let the kernel run the call as made (its other rules, Landlock, still apply)."""
        self._send(struct.pack("=QqiI", call.id, 0, 0, _FLAG_CONTINUE))

    def give(self, call: Call, fd: int, *, cloexec: bool) -> None:
        """Answer with a copy of our ``fd`` placed in the caller, its number the result."""
        request = struct.pack(
            "=QIIII", call.id, _ADDFD_SEND, fd, 0, os.O_CLOEXEC if cloexec else 0
        )
        try:
            fcntl.ioctl(self.fd, _ADDFD, request)
        except OSError as exc:
            if exc.errno != errno.ENOENT:  # the caller is gone: nothing to answer
                raise

    def _send(self, response: bytes) -> None:
        try:
            fcntl.ioctl(self.fd, _SEND, bytearray(response), True)
        except OSError as exc:
            if exc.errno != errno.ENOENT:  # the caller is gone: nothing to answer
                raise


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


_libc = ctypes.CDLL(None, use_errno=True)
_readv = _libc.process_vm_readv
_readv.restype = ctypes.c_ssize_t
_readv.argtypes = [
    ctypes.c_int, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong,
    ctypes.c_ulong,
]
_writev = _libc.process_vm_writev
_writev.restype = ctypes.c_ssize_t
_writev.argtypes = _readv.argtypes


def read(pid: int, address: int, size: int) -> bytes:
    """``size`` bytes of process ``pid``'s memory at ``address``; ``OSError`` (``EFAULT``)
    if any of it is not mapped."""
    if size <= 0:
        return b""
    local = ctypes.create_string_buffer(size)
    mine = _Iovec(ctypes.addressof(local), size)
    theirs = _Iovec(address, size)
    done = _readv(pid, ctypes.byref(mine), 1, ctypes.byref(theirs), 1, 0)
    if done != size:
        raise _error(errno.EFAULT)
    return local.raw


def read_string(pid: int, address: int, limit: int = 4096) -> bytes:
    """The NUL-terminated string at ``address``, read page by page; ``OSError``
    (``EFAULT``) if unmapped, (``ENAMETOOLONG``) if longer than ``limit``."""
    if not address:
        raise _error(errno.EFAULT)
    found = b""
    while len(found) <= limit:
        start = address + len(found)
        chunk = read(pid, start, PAGE - start % PAGE)
        end = chunk.find(b"\0")
        if end >= 0:
            return found + chunk[:end]
        found += chunk
    raise _error(errno.ENAMETOOLONG)


def write(pid: int, address: int, data: bytes) -> None:
    """Write ``data`` into process ``pid``'s memory at ``address``."""
    local = ctypes.create_string_buffer(data, len(data))
    mine = _Iovec(ctypes.addressof(local), len(data))
    theirs = _Iovec(address, len(data))
    if _writev(pid, ctypes.byref(mine), 1, ctypes.byref(theirs), 1, 0) != len(data):
        raise _error(errno.EFAULT)


def take_fd(pid: int, fd: int) -> int:
    """A copy, in this process, of descriptor ``fd`` of thread ``pid``."""
    try:
        pidfd = libc.syscall(_PIDFD_OPEN, pid, _PIDFD_THREAD)
    except OSError as exc:  # before Linux 6.9: the thread group's leader (one table)
        if exc.errno != errno.EINVAL:
            raise
        pidfd = libc.syscall(_PIDFD_OPEN, _leader(pid), 0)
    try:
        return libc.syscall(_PIDFD_GETFD, pidfd, fd, 0)
    finally:
        os.close(pidfd)


def _leader(tid: int) -> int:
    with open(f"/proc/{tid}/status", encoding="ascii", errors="replace") as status:
        for line in status:
            if line.startswith("Tgid:"):
                return int(line.split()[1])
    raise _error(errno.ESRCH)


def openat2(path: str, flags: int, mode: int = 0, resolve: int = RESOLVE_NO_SYMLINKS) -> int:
    """``openat2(AT_FDCWD, path, ...)``: ``path`` is taken as it is, no link followed."""
    how = ctypes.create_string_buffer(struct.pack("=QQQ", flags | os.O_CLOEXEC, mode, resolve))
    return libc.syscall(_OPENAT2, -100, os.fsencode(path), how, 24)


def _error(number: int) -> OSError:
    return OSError(number, os.strerror(number))
