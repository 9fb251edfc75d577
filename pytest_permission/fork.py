"""Process plumbing for the forked call phase: fork, pipe, bounded wait, exit status.

Knows nothing of pytest or policies, so the parent and child roles
(:mod:`pytest_permission.isolation`, :mod:`pytest_permission.child`) share
one implementation of the parts that are easy to get wrong: no zombie, no
leaked descriptor, no hang on a wedged child.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pickle
import select
import signal
import struct
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_HEADER = struct.Struct("!Q")
PR_SET_PDEATHSIG = 1


@dataclass
class Child:
    """The parent's handle on a forked child."""

    pid: int
    reader: int


@dataclass
class Ended:
    """What the parent learnt from a child."""

    message: Any | None
    """The object the child sent, or ``None`` if it sent nothing whole."""
    status: int
    """The raw ``waitpid`` status."""
    timed_out: bool = False

    def describe(self) -> str:
        """How the child ended, in words (``killed by signal 11 (SIGSEGV)``)."""
        if self.timed_out:
            return "was killed after exceeding its timeout"
        if os.WIFSIGNALED(self.status):
            number = os.WTERMSIG(self.status)
            try:
                name = signal.Signals(number).name
            except ValueError:
                name = "unknown signal"
            return f"was killed by signal {number} ({name})"
        return f"exited with status {os.waitstatus_to_exitcode(self.status)}"


def fork() -> tuple[Child | None, int | None]:
    """Fork; the parent gets ``(Child, None)``, the child ``(None, writer)``.

    Python 3.12+ warns when a process with threads forks; the child only runs
    the test body and leaves with ``os._exit``, the case the warning is not
    about, so it is silenced here rather than in the user's filters.
    """
    reader, writer = os.pipe()
    parent = os.getpid()
    _prctl()  # looked up here, so the child only calls it
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*fork\(\) may lead to deadlocks")
        pid = os.fork()
    if pid == 0:
        os.close(reader)
        _die_with(parent)
        return None, writer
    os.close(writer)
    return Child(pid, reader), None


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


def send(writer: int, message: Any) -> None:
    """Send one object to the parent (the child's last act)."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(writer, view) :]


def wait(child: Child, timeout: float | None = None) -> Ended:
    """Read the child's message and reap it; kill it if ``timeout`` passes.

    Any exception here (``KeyboardInterrupt`` above all) kills and reaps the
    child before it propagates.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    chunks: list[bytes] = []
    timed_out = False
    try:
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([child.reader], [], [], remaining)
            if not ready:
                timed_out = True
                os.kill(child.pid, signal.SIGKILL)
                break
            chunk = os.read(child.reader, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    except BaseException:
        _kill(child.pid)
        raise
    finally:
        os.close(child.reader)
    _, status = os.waitpid(child.pid, 0)
    return Ended(_decode(b"".join(chunks)), status, timed_out)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def _decode(data: bytes) -> Any | None:
    if len(data) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack_from(data)
    body = data[_HEADER.size : _HEADER.size + size]
    if len(body) != size:
        return None
    return pickle.loads(body)
