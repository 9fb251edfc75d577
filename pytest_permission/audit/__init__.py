"""The audit layer: PEP 578 hooks plus wrappers where CPython raises no event.

``install()`` is irreversible (audit hooks cannot be removed), which is why
the plugin calls it only in a forked child. The per-scope rules live in one
module each (``fs``, ``net``, ``process``, ``runtime``, ``env``); the
:class:`~pytest_permission.audit.guard.Guard` holds the policy and the
denials and dispatches events to them.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from pytest_permission.audit.guard import Guard
from pytest_permission.policy import Policy

__all__ = ["Guard", "active", "guard_for", "install", "prepare"]

_active: Guard | None = None


def active() -> Guard | None:
    """The guard enforcing in this process, if any."""
    return _active


def prepare() -> None:
    """Do once, before forking, the policy-independent work of ``install()``.

    Imports, the interpreter's folders, resolved implicit grants: a forked
    child inherits them, which takes most of the cost out of each test.
    """
    from pytest_permission.audit import env, fs, net, process, runtime  # noqa: F401

    Guard(Policy.deny_all())
    Guard(Policy.allow_all())
    runtime.interpreter_files()
    process.preload()


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
    (:func:`guard_for`) in the pytest process, so a forked child only
    registers and activates it.

    ``extra_read``/``extra_write`` are paths the caller itself needs (the
    plugin's report pipe, coverage data); they are granted even with
    ``implicit=False`` and never show in ``has()``. With ``observe`` nothing
    is enforced: every access beyond the implicit grants is recorded instead.
    """
    global _active
    if _active is not None:
        raise RuntimeError("enforcement is already installed in this process")
    from pytest_permission.audit import env, fs, net, process, runtime

    guard = prepared or guard_for(
        policy, implicit=implicit, extra_read=extra_read, extra_write=extra_write,
        observe=observe,
    )
    for module in (fs, net, process, runtime, env):
        guard.register(module.install(guard))
    _active = guard
    sys.addaudithook(guard.dispatch)
    return guard
