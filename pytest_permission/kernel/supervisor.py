"""The supervisor: what only memory tells apart, decided in the pytest process.

The seccomp filter hands some system calls to a supervisor
(:mod:`.seccomp`): those whose decision lies in memory the filter cannot
read (a socket address, a path) and that Landlock cannot decide alone
(addresses, metadata changes, write grants on single files or paths not
made yet). The supervisor is a thread of the pytest process, one per test
that needs it, started by :meth:`Supervisor.start` just before the fork and
ending by itself once no process under the filter is left.

Each call is answered one of three ways:

* *continue*: the kernel runs the call as made, and Landlock decides. Only
  where Landlock alone is at least as narrow as the grant (so a change the
  caller makes to its memory in between gains nothing);
* *refuse*: ``EACCES``, as Landlock refuses;
* *on behalf*: the supervisor checks its own copy of the address or path
  against the grant and makes the call itself, on a copy of the caller's
  socket (``pidfd_getfd``) or on the exact file (``openat2`` without
  following links), and gives back the result (or the new descriptor).

Acting on behalf is only ever done for the caller's own credentials, root
and mount namespace (:meth:`Caller.world`): where they differ from the
pytest process's, the call is refused.

Protocol with the child (:func:`handover` there, :meth:`Supervisor._run`
here), over a socket pair made before the fork: the child sends its pid
and the listener's descriptor number, waits for one byte, and closes its
listener (the pytest process has its own copy by then, through
``pidfd_getfd``). That first message comes before any code of the test runs,
so it can be trusted. Later messages are the policy after each ``drop()``:
untrusted, and only ever allowed to narrow (:meth:`.decide.View.narrowed`).
"""

from __future__ import annotations

import _thread
import contextlib
import ctypes
import errno
import functools
import json
import os
import select
import socket
import stat
import struct
import threading
from collections.abc import Callable

from pytest_permission.kernel import notify
from pytest_permission.kernel.decide import View
from pytest_permission.kernel.notify import Call, Listener
from pytest_permission.kernel.seccomp import PATH_CALLS

_CLONE_FS = 0x200
_HANDOVER_TIMEOUT = 30.0


class Undecided(Exception):
    """The supervisor cannot tell what the call names (a path through ``/proc``, a
    pipe): path calls continue, for Landlock to decide alone; others are refused."""


class Refused(Exception):
    """The call is refused with ``errno``."""

    def __init__(self, number: int) -> None:
        super().__init__(number)
        self.errno = number


class Answer:
    """How a handler answers a call: continue, a value, or a descriptor to give."""

    CONTINUE: Answer

    def __init__(
        self, value: int = 0, fd: int | None = None, cloexec: bool = False,
        *, proceed: bool = False,
    ) -> None:
        self.value = value
        self.fd = fd
        self.cloexec = cloexec
        self.proceed = proceed
        """Let the kernel run the call as made: a flag, not the identity of
        :attr:`CONTINUE`, so a second copy of this module answers alike."""


Answer.CONTINUE = Answer(proceed=True)
Handler = Callable[["Caller"], Answer]


class Caller:
    """One notified call and the process that made it, as the supervisor sees them."""

    def __init__(self, call: Call, name: str, view: View, supervisor: Supervisor) -> None:
        self.call = call
        self.name = name
        self.view = view
        self.supervisor = supervisor
        self.pid = call.pid

    def arg(self, index: int) -> int:
        return self.call.args[index]

    def signed(self, index: int) -> int:
        return self.call.signed(index)

    def memory(self, index: int, size: int) -> bytes:
        """``size`` bytes at the address in argument ``index``."""
        return notify.read(self.pid, self.arg(index), size)

    def string(self, index: int) -> bytes:
        return notify.read_string(self.pid, self.arg(index))

    def world(self) -> int:
        """The caller's umask, once its credentials, root and mount namespace are
        found to be the supervisor's own (else the call is refused): what is done on
        its behalf must be exactly what it could do itself."""
        status = _status(f"/proc/{self.pid}/status")
        same = all(status.get(k) == self.supervisor.own.get(k) for k in _CREDENTIALS)
        try:
            root = os.stat(f"/proc/{self.pid}/root")
            mine = os.stat("/")
            space = os.readlink(f"/proc/{self.pid}/ns/mnt")
        except OSError:
            raise Refused(errno.EACCES) from None
        if not same or (root.st_dev, root.st_ino) != (mine.st_dev, mine.st_ino):
            raise Refused(errno.EACCES)
        if space != self.supervisor.namespace:
            raise Refused(errno.EACCES)
        if not self.supervisor.listener.valid(self.call):  # pid reused meanwhile
            raise Refused(errno.EACCES)
        return int(status.get("Umask", "022"), 8)

    def take(self, fd: int) -> int:
        """A copy of the caller's descriptor ``fd``; refused with ``EBADF`` if none."""
        try:
            taken = notify.take_fd(self.pid, fd)
        except OSError as exc:
            raise Refused(exc.errno or errno.EBADF) from None
        if not self.supervisor.listener.valid(self.call):
            os.close(taken)
            raise Refused(errno.EBADF)
        return taken

    def folder(self, dirfd: int) -> str:
        """The folder a path relative to ``dirfd`` starts from, as the caller sees it."""
        link = f"/proc/{self.pid}/cwd" if dirfd == AT_FDCWD else f"/proc/{self.pid}/fd/{dirfd}"
        try:
            found = os.readlink(link)
        except OSError:
            raise Refused(errno.EBADF) from None
        if not found.startswith(os.sep):
            raise Refused(errno.ENOTDIR)  # a pipe, a socket, an anonymous inode
        return found

    def locate(self, dirfd: int, raw: bytes, *, follow: bool) -> str:
        """The real path the caller names, links resolved as the kernel resolves them
        for the caller (the last one only with ``follow``); its own ``/proc/<pid>``
        comes back as ``/proc/self``, as grants spell it."""
        text = os.fsdecode(raw)
        if not text:
            raise Refused(errno.ENOENT)
        full = text if text.startswith(os.sep) else os.path.join(self.folder(dirfd), text)
        real = resolve(full, self.pid, follow=follow)
        if real == "/proc" or real.startswith("/proc/"):
            raise Undecided  # names a process: Landlock's rules on /proc/self say it
        return real


def resolve(path: str, pid: int, *, follow: bool = True) -> str:
    """``os.path.realpath`` as process ``pid`` sees ``path`` (absolute).

    ``/proc/self`` and ``/proc/thread-self`` mean ``pid``, and a magic link
    of ``/proc/<pid>`` (``fd/3``, ``cwd``) leads where ``pid``'s does;
    one that names no path (a pipe, a socket) is refused. A missing tail is
    kept as written, so a file about to be made resolves through its folder.
    """
    own = {"/proc/self": f"/proc/{pid}", "/proc/thread-self": f"/proc/{pid}/task/{pid}"}
    parts = [p for p in path.split(os.sep) if p]
    parts.reverse()
    resolved, links = os.sep, 0
    while parts:
        name = parts.pop()
        if name == ".":
            continue
        if name == "..":
            resolved = os.path.dirname(resolved)
            continue
        candidate = own.get(os.path.join(resolved, name), os.path.join(resolved, name))
        if not follow and not any(p not in (".",) for p in parts):
            return candidate
        try:
            if not stat.S_ISLNK(os.lstat(candidate).st_mode):
                resolved = candidate
                continue
            target = os.readlink(candidate)
        except FileNotFoundError:
            return os.path.join(candidate, *reversed(parts)) if parts else candidate
        except OSError as exc:
            raise Refused(exc.errno or errno.EACCES) from None
        links += 1
        if links > _MAX_LINKS:
            raise Refused(errno.ELOOP)
        if not target.startswith(os.sep) and candidate.startswith("/proc/"):
            raise Undecided  # a descriptor on a pipe, a socket: no path
        if target.startswith(os.sep):
            resolved = os.sep
        parts.extend(reversed([p for p in target.split(os.sep) if p]))
    return resolved


_MAX_LINKS = 40
AT_FDCWD = -100
_CREDENTIALS = ("Uid", "Gid", "Groups", "CapEff", "CapPrm", "CapBnd")


def _status(path: str) -> dict[str, str]:
    try:
        with open(path, encoding="ascii", errors="replace") as file:
            text = file.read()
    except OSError:
        raise Refused(errno.EACCES) from None
    found = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        found[key] = " ".join(value.split())
    return found


class Supervisor:
    """Serves one test's filter from a thread of the pytest process."""

    def __init__(self, view: View, handlers: dict[int, tuple[str, Handler]]) -> None:
        self.view = view
        self.handlers = handlers
        self.parent, self.child = socket.socketpair()
        """The channel: the pytest process's end, and the child's."""
        self.listener: Listener
        self.own: dict[str, str] = {}
        self.namespace = ""

    def start(self) -> None:
        """In the pytest process, before the fork: wait for the child's listener.

        Started before the fork on purpose: after it, every page the pytest
        process writes while the child lives is copied, and starting a thread
        writes many. Until the child hands its listener over, the thread
        waits in ``recv`` and holds no lock the child could inherit.
        """
        _thread.start_new_thread(self._run, ())  # not threading's: it waits for the start

    def forked(self) -> None:
        """In the pytest process, after the fork: the child's end is the child's now (had
        there been no fork, the thread reads the end of the channel and stops)."""
        self.child.close()

    def _run(self) -> None:
        """Get ready (most likely before the fork: see :meth:`start`), take the
        child's listener, serve it."""
        channel = self.parent
        try:
            _own_fs()
            self.own, self.namespace = _identity()
            poll = select.poll()
            poll.register(channel.fileno(), select.POLLIN)
            listener_fd = self._handover(channel)
        except (OSError, ValueError):
            channel.close()
            return
        with _lock:
            _running[self] = (listener_fd, channel.fileno())
        try:  # whatever fails here closes the listener: the child's calls then fail (ENOSYS)
            self.listener = Listener(listener_fd)
            poll.register(listener_fd, select.POLLIN)
            self._serve_all(poll, listener_fd, channel)
        finally:
            with _lock:
                del _running[self]
            os.close(listener_fd)
            channel.close()

    def _serve_all(self, poll: select.poll, listener_fd: int, channel: socket.socket) -> None:
        """Answer calls and read ``drop()`` reports until no process is under the filter."""
        pending = b""
        while True:
            for fd, events in poll.poll():
                if fd == listener_fd:
                    if events & select.POLLIN:
                        self._serve()
                    elif events & (select.POLLHUP | select.POLLERR):
                        return  # no process under the filter is left
                else:
                    data = channel.recv(1 << 16) if events & select.POLLIN else b""
                    if not data:
                        poll.unregister(channel.fileno())
                    pending = self._narrow(channel, pending + data)

    def _handover(self, channel: socket.socket) -> int:
        """The child's listener, copied here; the child may then close its own.

        The message (pid and descriptor number) is the first the child sends,
        before any code of the test runs: trusted, unlike later ones.
        """
        message = channel.recv(_HANDOVER.size, socket.MSG_WAITALL)
        if len(message) != _HANDOVER.size:
            raise ValueError("the child left before handing its listener over")
        pid, fd = _HANDOVER.unpack(message)
        taken = notify.take_fd(pid, fd)
        channel.sendall(b"1")
        return taken

    def _narrow(self, channel: socket.socket, data: bytes) -> bytes:
        """Apply every whole line the child sent (a policy after ``drop()``), each
        acknowledged: the child waits, so no call of its is decided on the old view."""
        *lines, rest = data.split(b"\n")
        for line in lines:
            with contextlib.suppress(ValueError):
                self.view = self.view.narrowed(json.loads(line))
            with contextlib.suppress(OSError):
                channel.sendall(b"1")
        return rest

    def _serve(self) -> None:
        call = self.listener.receive()
        if call is None:
            return
        name, handler = self.handlers.get(call.nr, ("", None))
        try:
            if handler is None:
                raise Refused(errno.ENOSYS)
            answer = handler(Caller(call, name, self.view, self))
        except Undecided:
            if name in PATH_CALLS:
                self.listener.proceed(call)
            else:
                self.listener.reply(call, error=errno.EACCES)
            return
        except Refused as refused:
            self.listener.reply(call, error=refused.errno)
            return
        except OSError as exc:
            self.listener.reply(call, error=exc.errno or errno.EACCES)
            return
        except Exception:  # a mistake of ours: refuse rather than leave it waiting
            self.listener.reply(call, error=errno.EACCES)
            return
        if answer.proceed:
            self.listener.proceed(call)
        elif answer.fd is not None:
            try:
                self.listener.give(call, answer.fd, cloexec=answer.cloexec)
            finally:
                os.close(answer.fd)
        else:
            self.listener.reply(call, value=answer.value)


_running: dict[Supervisor, tuple[int, int]] = {}
"""Supervisors still serving (a previous test's processes may outlive it): their
descriptors, which a forked child must not keep (:func:`strays`)."""
_lock = threading.Lock()


def strays() -> tuple[tuple[int, str], ...]:
    """In the pytest process before a fork: the running supervisors' descriptors, each
    with what it names, for the child to close (:func:`close_strays`)."""
    found = []
    with _lock:
        for fds in _running.values():
            for fd in fds:
                with contextlib.suppress(OSError):
                    found.append((fd, os.readlink(f"/proc/self/fd/{fd}")))
    return tuple(found)


def close_strays(found: tuple[tuple[int, str], ...]) -> None:
    """In the child: close the descriptors :func:`strays` named, where they still name
    the same (a supervisor may have ended between the two)."""
    for fd, names in found:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}") == names:
                os.close(fd)


def handover(channel: int, listener: int) -> None:
    """In the child: hand the filter's listener to the supervisor, then close it."""
    os.write(channel, _HANDOVER.pack(os.getpid(), listener))
    ready, _, _ = select.select([channel], [], [], _HANDOVER_TIMEOUT)
    if not ready or os.read(channel, 1) != b"1":
        raise OSError(errno.ETIMEDOUT, "the supervisor did not take the seccomp listener")
    os.close(listener)


_HANDOVER = struct.Struct("=ii")
"""The child's pid and its listener's descriptor number."""


@functools.cache
def _identity() -> tuple[dict[str, str], str]:
    """This process's credentials and mount namespace, which a caller's must match."""
    return _status("/proc/thread-self/status"), os.readlink("/proc/self/ns/mnt")


def report(channel: int, described: dict[str, object]) -> None:
    """In the child, after ``drop()``: tell the supervisor the narrower policy, and
    wait until it took it."""
    with contextlib.suppress(OSError):  # the supervisor is gone: nothing it could still allow
        os.write(channel, json.dumps(described).encode() + b"\n")
        ready, _, _ = select.select([channel], [], [], _HANDOVER_TIMEOUT)
        if ready:
            os.read(channel, 1)


def _own_fs() -> None:
    """Give this thread its own umask and working folder (``unshare(CLONE_FS)``), so
    files made on a caller's behalf get the caller's umask."""
    if _libc.unshare(_CLONE_FS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_FS)")


_libc = ctypes.CDLL(None, use_errno=True)
