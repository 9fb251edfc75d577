"""Process plumbing for the forked call phase: fork, report channel, bounded wait, reaping.

Knows nothing of pytest or policies, so the parent and child roles
(:mod:`pytest_permission.isolation`, :mod:`pytest_permission.child`) share
one implementation of the parts that are easy to get wrong: no zombie, no
leaked descriptor, no hang on a wedged child, and a report channel that the
test body cannot write a believable report into by accident.

The channel carries bytes, never objects: one frame, its length, the payload
and an HMAC of it under a key drawn in the parent for this fork. In the
child the write end is moved to a random high descriptor, close-on-exec, and
the key lives only in the :class:`Writer`. A test body that writes to the
channel (it found the descriptor, or inherited a guess) produces a frame the
parent rejects; one that also digs the key out of the plugin's objects can
still forge a report — the body runs in the same process as the code that
reports on it, so no secret is out of reach of code that sets out to read
its own process's memory. The README says so.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import hmac
import os
import resource
import secrets
import select
import signal
import struct
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

_HEADER = struct.Struct("!Q")
_DIGEST = hashlib.sha256
_TAG = _DIGEST().digest_size
PR_SET_PDEATHSIG = 1


@dataclass
class Child:
    """The parent's handle on a forked child."""

    pid: int
    reader: int
    key: bytes


@dataclass
class Ended:
    """What the parent learnt from a child."""

    payload: bytes | None
    """The one frame the child sent, verified; ``None`` if it sent none."""
    status: int | None
    """The raw ``waitpid`` status; ``None`` while the child, its report sent, is
    left to exit on its own (see :func:`reap`)."""
    timed_out: bool = False
    invalid: str | None = None
    """Why what arrived was not one frame signed with this fork's key."""

    def describe(self) -> str:
        """How the child ended, in words (``killed by signal 11 (SIGSEGV)``)."""
        if self.timed_out:
            return "was killed after exceeding its timeout"
        if self.status is None:
            return "sent its report"
        if os.WIFSIGNALED(self.status):
            number = os.WTERMSIG(self.status)
            try:
                name = signal.Signals(number).name
            except ValueError:
                name = "unknown signal"
            return f"was killed by signal {number} ({name})"
        return f"exited with status {os.waitstatus_to_exitcode(self.status)}"


class Writer:
    """The child's end of the report channel; sends one signed frame."""

    __slots__ = ("_fd", "_key")

    def __init__(self, fd: int, key: bytes) -> None:
        self._fd = fd
        self._key = key

    def send(self, payload: bytes) -> None:
        """Send the report (the child's last act)."""
        tag = hmac.new(self._key, payload, _DIGEST).digest()
        view = memoryview(_HEADER.pack(len(payload)) + payload + tag)
        while view:
            view = view[os.write(self._fd, view) :]


def fork() -> tuple[Child | None, Writer | None]:
    """Fork; the parent gets ``(Child, None)``, the child ``(None, Writer)``.

    Python 3.12+ warns when a process with threads forks; the child only runs
    the test's call phase and leaves with ``os._exit``, the case the warning is
    not about, so it is silenced here rather than in the user's filters.
    """
    key = secrets.token_bytes(32)
    reader, writer = os.pipe()
    parent = os.getpid()
    _prctl()  # looked up here, so the child only calls it
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*fork\(\) may lead to deadlocks")
        pid = os.fork()
    if pid == 0:
        os.close(reader)
        _die_with(parent)
        return None, Writer(_hide(writer), key)
    os.close(writer)
    return Child(pid, reader, key), None


def _hide(fd: int) -> int:
    """Move ``fd`` to a random free descriptor number high up, close-on-exec."""
    limit = min(resource.getrlimit(resource.RLIMIT_NOFILE)[0], 1 << 20)
    if limit > 64:
        with contextlib.suppress(OSError):  # no free number above: keep the one we have
            lowest = limit // 2 + secrets.randbelow(limit // 2)
            moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, lowest)
            os.close(fd)
            return moved
    return fd


@functools.cache
def _prctl() -> Callable[..., int] | None:
    """libc's ``prctl``, looked up once in the parent (not in every child)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    return prctl


def _die_with(parent: int) -> None:
    """Linux: be killed when the parent dies, however it dies.

    A parent that ends without reaping (pytest-timeout's thread method calls
    ``os._exit``, ``kill -9``) would otherwise leave a wedged child running.
    """
    prctl = _prctl()
    if prctl is None:
        return
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(1)


_exiting: set[int] = set()
"""Children whose report arrived and who were left to exit (see :func:`reap`)."""


def wait(child: Child, timeout: float | None = None) -> Ended:
    """Read the child's frame; kill it if ``timeout`` passes.

    A child whose whole signed frame arrived is not waited for: it only has
    to exit, which takes as long as unmapping its pages, and the parent goes
    on meanwhile; :func:`reap` collects it. Any other child is reaped here,
    so its exit status can explain the failure. Any exception here
    (``KeyboardInterrupt`` above all) kills and reaps the child before it
    propagates.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    data = b""
    timed_out = False
    try:
        while not _complete(data):
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([child.reader], [], [], remaining)
            if not ready:
                timed_out = True
                os.kill(child.pid, signal.SIGKILL)
                break
            chunk = os.read(child.reader, 1 << 16)
            if not chunk:
                break
            data += chunk
    except BaseException:
        _kill(child.pid)
        raise
    finally:
        os.close(child.reader)
    payload, invalid = _verify(data, child.key)
    if payload is not None and not timed_out:
        _exiting.add(child.pid)
        return Ended(payload, None)
    _, status = os.waitpid(child.pid, 0)
    return Ended(payload, status, timed_out, invalid)


def reap(pid: int | None = None) -> None:
    """Wait for a child :func:`wait` left to exit (``None``: every one of them)."""
    for found in [pid] if pid is not None else list(_exiting):
        if found in _exiting:
            _exiting.discard(found)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(found, 0)


def _complete(data: bytes) -> bool:
    """Whether ``data`` holds a whole frame (or more, which :func:`_verify` rejects)."""
    if len(data) < _HEADER.size:
        return False
    size: int = _HEADER.unpack_from(data)[0]
    return len(data) >= _HEADER.size + size + _TAG


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def _verify(data: bytes, key: bytes) -> tuple[bytes | None, str | None]:
    """The payload of the one frame in ``data``, or why there is none that counts."""
    if not data:
        return None, None
    if len(data) >= _HEADER.size:
        (size,) = _HEADER.unpack_from(data)
        if len(data) == _HEADER.size + size + _TAG:
            payload = data[_HEADER.size : _HEADER.size + size]
            tag = hmac.new(key, payload, _DIGEST).digest()
            if hmac.compare_digest(tag, data[-_TAG:]):
                return payload, None
    return None, (
        f"its report channel carried {len(data)} bytes that are not one report signed by "
        "the plugin (did the test write to the plugin's report descriptor?)"
    )
