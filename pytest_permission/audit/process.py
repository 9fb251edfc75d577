"""The ``child`` and ``worker`` scopes: starting processes, threads and interpreters.

Audit events cover most of it. Where CPython raises none, the function is
wrapped instead: ``multiprocessing``'s spawn/forkserver launcher, thread
start before Python 3.12, and sub-interpreter creation (3.13 raises no
``cpython.PyInterpreterState_New`` for it; earlier versions turn the error
into a bare ``RuntimeError``).
"""

from __future__ import annotations

import _thread
import errno
import functools
import importlib
import os
import shutil
import sys
import threading
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from pytest_permission import paths
from pytest_permission.audit.guard import Guard, Handler
from pytest_permission.audit.implicit import PROGRAMS
from pytest_permission.errors import hide_under_a_denial
from pytest_permission.scopes import CHILD, WORKER
from pytest_permission.scopes import FS_READ as READ

__tracebackhide__ = hide_under_a_denial
"""A denial's traceback ends where the access was asked for (pytest hides these frames)."""

SHELLS = frozenset({"sh", "bash", "dash", "ash", "ksh", "zsh"})
"""Programs whose ``-c`` argument is a command line (``shell=True`` runs ``/bin/sh``)."""
SUBINTERPRETER = "subinterpreter"
"""The resource of a denied sub-interpreter."""


def executable(program: object, cwd: object = None, env: object = None) -> str:
    """The absolute path a program name runs: searched on ``PATH`` without a slash."""
    name = os.fsdecode(program) if isinstance(program, (str, bytes, os.PathLike)) else str(program)
    if os.sep not in name:
        search = env.get("PATH") if isinstance(env, Mapping) else None
        found = shutil.which(name, path=search if isinstance(search, str) else None)
        if found is None:
            return name
        name = found
    base = paths.normalise(os.fsdecode(cwd)) if isinstance(cwd, (str, bytes, os.PathLike)) else None
    return paths.normalise(name, base)


def first_word(command: object) -> str:
    """The program a shell command line starts (its first word)."""
    text = os.fsdecode(command) if isinstance(command, (str, bytes)) else str(command)
    words = text.split(None, 1)
    return words[0] if words else text


def popen_program(args: tuple[Any, ...]) -> str:
    """What ``subprocess.Popen`` runs; a shell command line is named by its first word.

    That is what ``os.system`` can name too, and more telling than ``/bin/sh``.
    """
    program, argv, cwd, env = args
    if (
        isinstance(argv, (list, tuple))
        and len(argv) == 3
        and argv[1] == "-c"
        and os.path.basename(os.fsdecode(argv[0])) in SHELLS
    ):
        program = first_word(argv[2])  # shell=True: [shell, "-c", command]
    return executable(program, cwd, env)


def thread_target(function: object) -> str | None:
    """``module.qualname`` of what a new thread runs (a Thread's target, not its bootstrap)."""
    owner = getattr(function, "__self__", None)
    if isinstance(owner, threading.Thread):
        target = getattr(owner, "_target", None)
        function = owner.run if target is None else target
    name = getattr(function, "__qualname__", None)
    module = getattr(function, "__module__", None)
    if not isinstance(name, str):
        return None
    return f"{module}.{name}" if isinstance(module, str) else name


def read_by(program: str, argv: object, cwd: object = None) -> list[str]:
    """What a started program reads for sure: itself and the existing paths it is given.

    An interpreter reads its script, ``cat`` its file; the kernel layer
    checks them all. The system's programs and files are left out: a test
    granted ``child`` may read those (:data:`~pytest_permission.audit.implicit.PROGRAMS`).
    """
    base = paths.normalise(os.fsdecode(cwd)) if isinstance(cwd, (str, bytes, os.PathLike)) else None
    found = [program]
    if isinstance(argv, (list, tuple)):
        for arg in argv[1:]:
            if isinstance(arg, (str, bytes, os.PathLike)) and os.fsdecode(arg)[:1] not in ("", "-"):
                found.append(paths.normalise(os.fsdecode(arg), base))
    system = tuple(folder + os.sep for folder in PROGRAMS)
    return [
        path for path in dict.fromkeys(found)
        if os.path.isabs(path) and not (path + os.sep).startswith(system) and os.path.exists(path)
    ]


def _follow_threads(guard: Guard) -> None:
    """A thread started by a held thread is held too (see :attr:`Guard.threads`).

    Only ``threading`` threads (``concurrent.futures`` and ``asyncio.to_thread``
    use them); a bare ``_thread.start_new_thread`` from a held thread starts an
    unheld one. Needed only where the guard holds some threads, not all.
    """
    start, bootstrap = threading.Thread.start, threading.Thread._bootstrap_inner  # type: ignore[attr-defined]

    @functools.wraps(start)
    def start_(self: threading.Thread) -> None:
        if guard.threads is not None and not guard.retired and guard.holds():
            vars(self)["_pytest_permission_held"] = guard.threads
        start(self)

    @functools.wraps(bootstrap)
    def bootstrap_(self: threading.Thread) -> None:
        held = vars(self).pop("_pytest_permission_held", None)
        if held is None:
            return bootstrap(self)  # type: ignore[no-any-return]
        ident = threading.get_ident()
        held.add(ident)
        try:
            return bootstrap(self)  # type: ignore[no-any-return]
        finally:
            held.discard(ident)

    threading.Thread.start = start_  # type: ignore[method-assign]
    threading.Thread._bootstrap_inner = bootstrap_  # type: ignore[attr-defined]


def install(guard: Guard) -> dict[str, Handler]:
    def child(resource: str | None) -> None:
        guard.require(CHILD, resource)

    def start(program: str, argv: object, cwd: object = None) -> None:
        """A new program: in an audit, also what it will read (the kernel layer would ask)."""
        child(program)
        if guard.observe:
            for path in read_by(program, argv, cwd):
                guard.require_path(READ, path)

    def on_exec(args: tuple[Any, ...]) -> None:
        path = executable(args[0])
        if not guard.granted(CHILD) and not os.path.exists(path):
            # The exec would fail the same way; os.execvp goes on to the next PATH entry.
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        child(path)

    def on_pty(args: tuple[Any, ...]) -> None:
        argv = args[0]
        child(executable(argv if isinstance(argv, (str, bytes)) else argv[0]))

    def on_kill(args: tuple[Any, ...]) -> None:
        pid = args[0]
        if pid != os.getpid():
            child(str(pid))

    def worker(function: object) -> None:
        guard.require(WORKER, thread_target(function))

    def subinterpreter(args: tuple[Any, ...]) -> None:
        guard.require(WORKER, SUBINTERPRETER)

    _wrap(_multiprocessing_util(), "spawnv_passfds", lambda a: child(executable(a[0])))
    if sys.version_info < (3, 12):  # no thread-start event before 3.12
        for module, name in (
            (_thread, "start_new_thread"),
            (_thread, "start_new"),
            (threading, "_start_new_thread"),
        ):
            _wrap(module, name, lambda a: worker(a[0]))
    interpreters = _interpreters()
    if interpreters is not None:
        _wrap(interpreters, "create", subinterpreter)
    _follow_threads(guard)
    return {
        "subprocess.Popen": lambda a: start(popen_program(a), a[1], a[2]),
        "os.system": lambda a: child(executable(first_word(a[0]))),
        "os.exec": on_exec,
        "os.posix_spawn": lambda a: start(executable(a[0], env=a[2]), a[1]),
        "os.spawn": lambda a: start(executable(a[1], env=a[3]), a[2]),
        "os.startfile": lambda a: child(executable(a[0])),
        "pty.spawn": on_pty,
        "os.fork": lambda a: child(None),
        "os.forkpty": lambda a: child(None),
        "os.kill": on_kill,
        "os.killpg": lambda a: child(str(a[0])),
        "_thread.start_new_thread": lambda a: worker(a[0]),
        "_thread.start_joinable_thread": lambda a: worker(a[0]),
        "cpython.PyInterpreterState_New": subinterpreter,
    }


def _wrap(module: ModuleType, name: str, check: Handler) -> None:
    """Make ``module.name`` pass its positional arguments to ``check`` first, as an event would."""
    real = getattr(module, name, None)
    if real is None:
        return

    @functools.wraps(real)
    def checked(*args: Any, **kwargs: Any) -> Any:
        check(args)
        return real(*args, **kwargs)

    setattr(module, name, checked)


def _multiprocessing_util() -> ModuleType:
    """``multiprocessing.util``, whose ``spawnv_passfds`` starts processes without an event."""
    import multiprocessing.util

    return multiprocessing.util


@functools.cache
def _interpreters() -> ModuleType | None:
    """The sub-interpreter module: its ``create`` raises no event (3.13) or loses our error."""
    for name in ("_interpreters", "_xxsubinterpreters"):
        try:
            return importlib.import_module(name)
        except ImportError:
            pass
    return None
