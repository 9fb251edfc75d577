"""The guard: the policy in force, the denial log, and event dispatch.

Scope modules ask it two questions, "is this allowed?" and "deny this", so
the rules of what a grant covers stay in :mod:`pytest_permission.policy` and
the rules of what an operation needs stay in the scope modules.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pytest_permission import paths, scopes
from pytest_permission.audit.implicit import Implicit
from pytest_permission.errors import AccessDenied, Denial, hide_under_a_denial
from pytest_permission.policy import Policy
from pytest_permission.scopes import Scope

__tracebackhide__ = hide_under_a_denial
"""A denial's traceback ends where the access was asked for (pytest hides these frames)."""

Handler = Callable[[tuple[Any, ...]], None]

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_STDLIB = os.path.dirname(os.__file__) + os.sep
"""Skipped, like this package, when naming where a denial happened."""


class Guard:
    """Enforces one policy in this process; ``drop()`` narrows it for good."""

    def __init__(
        self,
        policy: Policy,
        *,
        implicit: bool = True,
        extra_read: Sequence[str] = (),
        extra_write: Sequence[str] = (),
        observe: bool = False,
    ) -> None:
        self.policy = policy
        self.observe = observe
        """Audit mode: check against nothing granted, record each access once, raise
        nothing. ``has()`` still answers for ``policy``, so code that asks behaves."""
        self.effective = (Policy.deny_all() if observe else policy).resolved()
        self._observed: set[tuple[str, str | None]] = set()
        self.implicit = Implicit(
            enabled=implicit,
            net=policy.has("net") or bool(policy.grant(scopes.NET).rules),
            child=policy.has("child"),
            extra_read=extra_read,
            extra_write=extra_write,
        )
        self.denials: list[Denial] = []
        self.raised: dict[int, AccessDenied] = {}
        """The error each raised denial produced, by index in ``denials``: the
        plugin tells a denial the test handled from one the code swallowed."""
        self.expected: set[int] = set()
        """``id()`` of the errors the test asserted on (see :meth:`expect`)."""
        self._handlers: dict[str, Handler] = {}
        """Every registered handler; :attr:`_live` holds those in force."""
        self._live: dict[str, Handler] = {}
        self._listeners: list[Callable[[], None]] = []
        self._restorers: list[Callable[[], None]] = []
        self.retired = False
        self.threads: set[int] | None = None
        """The threads held to the policy: in the pytest process (inline isolation),
        the thread running the test body and the threads it starts; ``None`` for
        every thread of the process (a forked child, a Python subprocess)."""
        self.debugger = False
        """The user asked for pytest's debugger (``--pdb``, ``--trace``) on a terminal:
        its trace hooks are the user's, not the test's (see :mod:`.runtime`)."""
        """Enforcing nothing: the test is over (:meth:`retire`), or not begun (:meth:`dormant`)."""
        self._busy: set[int] = set()
        """Threads inside an exclusive handler (set operations are atomic)."""
        self.dispatch = self._dispatcher()
        """The audit hook (see :meth:`_dispatcher`)."""

    @classmethod
    def dormant(cls) -> Guard:
        """A guard that allows everything and records nothing until :meth:`activate`.

        The audit layer's hooks and wrappers are installed around one of these
        in the pytest process (:func:`pytest_permission.audit.arm`), so that a
        forked child only switches them on instead of installing them, which
        would cost it milliseconds and as many copied memory pages.
        """
        guard = cls(Policy.allow_all(), implicit=False)
        guard.retired = True
        return guard

    def activate(self, prepared: Guard, threads: set[int] | None = None) -> None:
        """Enforce from now on what ``prepared`` (built ahead, never installed) holds.

        This guard keeps its own wiring (the hooks and wrappers already hold
        it) and takes everything else of ``prepared``: policy, implicit grants,
        mode. ``threads`` limits it to those threads (see :attr:`threads`).
        """
        for name, value in vars(prepared).items():
            if name not in _WIRING:
                setattr(self, name, value)
        self.threads = threads
        # this test's own records: a prepared guard serves every test of its plan
        self.denials, self.raised, self.expected, self._observed = [], {}, set(), set()
        self.implicit = self.implicit.fresh()
        self.changed()  # before the handlers go live: what listeners do is no test's access
        self._live.update(self._handlers)

    def retire(self, *, restore: bool = False) -> None:
        """Stop enforcing: the test body is over, only its report is being made.

        Formatting a failure reads source files and probes paths on pytest's
        behalf; those are not the test's accesses. With ``restore`` (a test
        restricted in the pytest process itself), what enforcing changed in
        the process is put back: the hidden environment variables.
        """
        self.retired = True
        self._live.clear()
        if restore:
            for listener in self._restorers:
                listener()

    def on_retire(self, restorer: Callable[[], None]) -> None:
        """Call ``restorer`` when this process stops enforcing (``retire(restore=True)``)."""
        self._restorers.append(restorer)

    # -- the public face: Node's has()/drop() -------------------------------

    def has(self, scope: str, resource: object = None) -> bool:
        return self.policy.has(scope, resource)

    def drop(self, scope: str, resource: object = None) -> None:
        self.policy = self.policy.dropped(scope, resource)
        if not self.observe:
            self.effective = self.policy.resolved()
        self.changed()

    # -- for scope modules ---------------------------------------------------

    def expect(self, error: AccessDenied) -> None:
        """The test asserted on ``error`` (even inside a library's own error): not swallowed."""
        self.expected.add(id(error))

    def register(self, handlers: Mapping[str, Handler], *, exclusive: bool = True) -> None:
        """Add event handlers; two for one event both run, in order.

        Handlers run :meth:`exclusive` unless told otherwise; a handler
        registered with ``exclusive=False`` answers its cached cases itself
        and wraps the rest in :meth:`exclusive`.
        """
        for event, handler in handlers.items():
            if exclusive:
                handler = self.exclusive(handler)
            previous = self._handlers.get(event)
            self._handlers[event] = handler if previous is None else _chain(previous, handler)
            if not self.retired:
                self._live[event] = self._handlers[event]

    def exclusive(self, handler: Handler) -> Handler:
        """``handler``, skipped for the events its own work raises (per thread)."""
        busy = self._busy
        ident = threading.get_ident

        def run(args: tuple[Any, ...]) -> None:
            if busy and ident() in busy:
                return
            me = ident()
            busy.add(me)
            try:
                handler(args)
            finally:
                busy.discard(me)

        return run

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` whenever cached decisions may have gone stale."""
        self._listeners.append(listener)

    def changed(self) -> None:
        for listener in self._listeners:
            listener()

    def granted(self, scope: Scope, resource: str | None = None) -> bool:
        """Whether the policy in force allows ``resource`` (not a path)."""
        return self.effective.has(scope.name, resource)

    def path_granted(
        self, scope: Scope, path: str, resolve: Callable[[str], str] = paths.resolve
    ) -> bool:
        """Whether ``path`` (absolute) is allowed once ``resolve`` has followed its links.

        Pass the path as the caller wrote it, not lexically normalised: in
        ``granted/link/../x`` the ``..`` applies to where ``link`` leads.
        """
        grant = self.effective.grant(scope)
        if grant.everything:
            return True
        real = resolve(path)
        return paths.covered(grant.rules, real) or self.implicit.covers(scope, real)

    def require(self, scope: Scope, resource: str | None) -> None:
        if not self.granted(scope, resource):
            self.deny(scope, resource)

    def require_path(self, scope: Scope, path: str) -> None:
        if not self.path_granted(scope, path):
            self.deny(scope, path)

    def deny(self, scope: Scope, resource: str | None, *, raised: bool = True) -> None:
        """Record a denial; raise ``AccessDenied`` unless the access was only hidden or observed."""
        if self.retired or not self.holds():
            return
        if self.observe:
            if (scope.permission, resource) not in self._observed:
                self._observed.add((scope.permission, resource))
                self.denials.append(Denial(scope.permission, resource, _where(), raised))
            return
        self.denials.append(Denial(scope.permission, resource, _where(), raised))
        if raised:
            error = AccessDenied(scope.permission, resource)
            self.raised[len(self.denials) - 1] = error
            raise error

    def holds(self) -> bool:
        """Whether the calling thread is held to the policy (see :attr:`threads`)."""
        threads = self.threads
        return threads is None or threading.get_ident() in threads

    # -- the audit hook ------------------------------------------------------

    def _dispatcher(self) -> Callable[[str, tuple[Any, ...]], None]:
        """The audit hook: one dict look-up per event.

        A plain function, not a bound method: CPython looks ``__cantrace__``
        up on each hook at every event, and on a bound method the miss
        raises and formats an ``AttributeError``, which cost more than a
        cached ``open`` check.
        """
        handlers = self._live
        holds = self.holds

        def dispatch(event: str, args: tuple[Any, ...]) -> None:
            handler = handlers.get(event)
            if handler is not None and holds():
                handler(args)

        return dispatch


_WIRING = frozenset({"_handlers", "_live", "_listeners", "_restorers", "_busy", "dispatch"})
"""What ties a guard to the hooks and wrappers around it: :meth:`Guard.activate` keeps it."""


def _chain(first: Handler, second: Handler) -> Handler:
    def both(args: tuple[Any, ...]) -> None:
        first(args)
        second(args)

    return both


def _where() -> str:
    """``file:line`` of the code that asked: outside this package and the stdlib if possible."""
    frame = sys._getframe(1)
    fallback = None
    while frame is not None:
        filename = frame.f_code.co_filename
        if not filename.startswith(_PACKAGE):
            if fallback is None:
                fallback = frame
            if not filename.startswith(_STDLIB) and not filename.startswith("<frozen"):
                break
        frame = frame.f_back  # type: ignore[assignment]
    frame = frame or fallback
    return "<unknown>" if frame is None else f"{frame.f_code.co_filename}:{frame.f_lineno}"


def caller_file() -> str:
    """The file of the innermost Python frame outside this package."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back  # type: ignore[assignment]
    return "" if frame is None else frame.f_code.co_filename


def absolute(path: object, dir_fd: int | None = None) -> str:
    """The absolute lexical path an event names, relative to ``dir_fd`` if given.

    Events report "no ``dir_fd``" as ``-1``, which is no descriptor.
    """
    if isinstance(path, int):
        return fd_path(path)
    text = paths.as_str(path)
    if dir_fd is not None and dir_fd >= 0 and not os.path.isabs(text):
        return paths.normalise(text, fd_path(dir_fd))
    return paths.normalise(text)


def fd_path(fd: int) -> str:
    """The path a descriptor was opened with, as the kernel knows it."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return f"/proc/self/fd/{fd}"
