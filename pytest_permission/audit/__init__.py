"""The audit layer: PEP 578 hooks plus wrappers where CPython raises no event.

``install()`` is irreversible (audit hooks cannot be removed), which is why
the plugin calls it only in a forked child; the hooks themselves are put in
place, switched off, in the pytest process (``arm()``). The per-scope rules
live in one module each (``fs``, ``net``, ``process``, ``runtime``,
``env``); the :class:`~pytest_permission.audit.guard.Guard` holds the
policy and the denials and dispatches events to them.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from pytest_permission.audit.guard import Guard
from pytest_permission.policy import Policy

__all__ = ["Guard", "active", "arm", "enter", "guard_for", "install", "leave"]

_armed: Guard | None = None
_active: Guard | None = None


def active() -> Guard | None:
    """The guard enforcing in this process, if any."""
    return _active


def arm() -> Guard:
    """Install the audit layer's hooks and wrappers in this process, switched off.

    Idempotent. The plugin arms the pytest process before its first fork, so
    each forked child only activates what it inherits (:func:`install`).
    Switched off, the hooks dispatch no event and the wrappers allow
    everything and record nothing: the pytest process and its unrestricted
    tests behave as before. Installing costs some milliseconds, and a child
    installing for itself would pay them again in memory pages copied from
    its parent.
    """
    global _armed
    if _armed is None:
        from pytest_permission import startup
        from pytest_permission.audit import env, fs, net, process, runtime

        guard = Guard.dormant()
        for module in (fs, net, process, runtime, env):
            guard.register(module.install(guard))
        startup.propagate(guard)
        sys.addaudithook(guard.dispatch)
        _armed = guard
    return _armed


def guard_for(
    policy: Policy,
    *,
    implicit: bool = True,
    extra_read: Sequence[str] = (),
    extra_write: Sequence[str] = (),
    observe: bool = False,
) -> Guard:
    """The guard :func:`install` would use, built without installing anything."""
    return Guard(
        policy, implicit=implicit, extra_read=extra_read, extra_write=extra_write,
        observe=observe,
    )


def enter(prepared: Guard, threads: set[int] | None = None) -> Guard:
    """Enforce ``prepared`` (from :func:`guard_for`) in this process until :func:`leave`.

    The inline isolation: a test's body runs restricted in the pytest
    process itself. Only the audit layer can do that (a kernel rule lasts
    as long as the process); ``drop()`` holds until :func:`leave`. With
    ``threads``, only those threads (and the threads they start) are held:
    the pytest process's own threads (a fixture's server, xdist's) are not
    the test's.
    """
    global _active
    if _active is not None:
        raise RuntimeError("enforcement is already on in this process")
    guard = arm()
    guard.activate(prepared, threads)
    _active = guard
    return guard


def leave() -> None:
    """Stop what :func:`enter` started, and put back what it hid (environment variables)."""
    global _active
    if _active is not None:
        _active.retire(restore=True)
        _active = None


def install(
    policy: Policy,
    *,
    implicit: bool = True,
    extra_read: Sequence[str] = (),
    extra_write: Sequence[str] = (),
    observe: bool = False,
    prepared: Guard | None = None,
) -> Guard:
    """Enforce ``policy`` in this process from now on, for good.

    ``prepared`` is the guard for exactly these arguments, built ahead
    (:func:`guard_for`) in the pytest process; with :func:`arm` called
    there too, a forked child only switches enforcement on.

    ``extra_read``/``extra_write`` are paths the caller itself needs (the
    plugin's report pipe, coverage data); they are granted even with
    ``implicit=False`` and never show in ``has()``. With ``observe`` nothing
    is enforced: every access beyond the implicit grants is recorded instead.
    """
    global _active
    if _active is not None:
        raise RuntimeError("enforcement is already installed in this process")
    guard = arm()
    guard.activate(prepared or guard_for(
        policy, implicit=implicit, extra_read=extra_read, extra_write=extra_write,
        observe=observe,
    ))
    _active = guard
    return guard
