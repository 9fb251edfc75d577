"""``env``: variables not granted are invisible, as Node removes them.

At installation every variable that is not granted leaves ``os.environ``,
``os.environb`` and the C environment (``unsetenv``), so child processes and
C code calling ``getenv`` do not see it either; ``drop()`` hides more later.
``os.environ`` and ``os.environb`` then switch to a subclass that tells the
three cases apart:

- a hidden variable (it existed, it is not granted): reading finds nothing
  (``KeyError``, ``get()``'s default) and is recorded as a denial that was
  not raised, so the test gets its warning;
- a variable that does not exist and is not granted: reading finds nothing
  and records nothing, since there was nothing to hide;
- setting or deleting any variable that is not granted raises
  ``AccessDenied``, through ``os.environ`` or ``os.putenv``/``os.unsetenv``.

With implicit grants on, the variables of :data:`IMPLICIT` stay visible:
spec section 3's list, and what pytest and its common plugins read on the
test's behalf while its body runs, or set for it: hiding those would change
the report and log a denial the test never made (with ``-W error``, one that
replaced the test's real failure). ``PYTEST_CURRENT_TEST`` always does:
pytest sets and removes it around each phase, in the child too, so like the
plugin's own files it is granted even with ``implicit=False``.
``/proc/self/environ`` still shows the environment the process started
with; reading it is an ``fs.read`` matter.

In observe mode (``--permission-audit``) nothing is removed: a variable that
would be hidden still reads as itself, the read is recorded, and listing
the environment leaves it out as enforcement would, so that copying
``os.environ`` does not count as reading every variable.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from pytest_permission.audit.guard import Guard, Handler
from pytest_permission.errors import hide_under_a_denial
from pytest_permission.policy import NameRule
from pytest_permission.scopes import ENV

__tracebackhide__ = hide_under_a_denial
"""A denial's traceback ends where the access was asked for (pytest hides these frames)."""

IMPLICIT = tuple(
    NameRule(name)
    for name in (
        # spec section 3
        "PATH", "HOME", "TMPDIR", "TZ", "LANG", "LC_*", "TERM", "PYTHON*",
        # read by pytest while it explains a failed assertion in the body: colour,
        # width (shutil.get_terminal_size; tox and xdist workers set COLUMNS/LINES),
        # whether to truncate (on CI), the diff's highlighting
        "PY_COLORS", "NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES", "CI", "BUILD_NUMBER",
        "PYTEST_THEME", "PYTEST_THEME_MODE",
        # set for the test by pytest (the session) and pytest-xdist (the worker)
        "PYTEST_VERSION", "PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT",
        "PYTEST_XDIST_TESTRUNUID",
        # read by hypothesis while a @given test runs: its database folder, and
        # whether to trim a failure's traceback
        "HYPOTHESIS_STORAGE_DIRECTORY", "HYPOTHESIS_NO_TRACEBACK_TRIM",
    )
)
"""Variables granted while implicit grants are on.

Reviewed for pytest, pytest-xdist, hypothesis, coverage.py/pytest-cov,
pytest-timeout and pytest-rerunfailures: what they read outside the body
(at start-up, collection, the parent's report) needs no grant. Deliberately
not here: ``COVERAGE_PROCESS_START``/``COVERAGE_PROCESS_CONFIG``, which
would make a restricted test's Python subprocesses start measuring and
write data files outside the test's grants.
"""

PYTEST_OWN = NameRule("PYTEST_CURRENT_TEST")
"""Set by pytest itself around every phase, so granted even with ``implicit=False``."""

INHERITED_POLICY = NameRule("PYTEST_PERMISSION_POLICY")
"""The plugin's own (:mod:`pytest_permission.startup`): in the C environment,
where subprocesses inherit it, but not in the test's view (``os.environ``),
so that saving and restoring the environment neither sees nor touches it.
Setting it is no denial and no harm: every new process gets the policy in
force, put there as the process starts (:func:`startup.propagate`)."""


def install(guard: Guard) -> dict[str, Handler]:
    hidden: set[str | bytes] = set()
    removed: dict[Any, Any] = {}
    """What hiding took out of ``os.environ``, to put back when the process stops enforcing."""
    local = threading.local()
    everything: Callable[[str], bool] = lambda name: True  # noqa: E731
    visible = everything
    """Which variables the policy in force leaves visible: made once per policy change."""

    known: dict[tuple[object, bool], tuple[Callable[[str], bool], list[Any], list[Any]]] = {}
    """Per ``env`` grant: its predicate, and the names it hid from the environment's
    keys as they were (inline, every test of a plan hides the same names)."""

    def shown(keys: list[Any]) -> tuple[Callable[[str], bool], list[Any]]:
        """Which names stay visible, and which of ``keys`` (``os.environ``'s) do not:
        ``(name, key, inherited)``, the plugin's own variable being the one inherited."""
        grant = guard.effective.grant(ENV)
        key = (grant, guard.implicit.enabled)
        found = known.get(key)
        if found is not None and found[1] == keys:
            return found[0], found[2]
        keep = everything if grant.everything else NameRule.any_covers((
            *grant.rules, PYTEST_OWN, *(IMPLICIT if guard.implicit.enabled else ()),
        ))
        decode = os.environ.decodekey
        names = [
            (name, key, INHERITED_POLICY.covers(name))
            for key, name in zip(keys, map(decode, keys), strict=True) if not keep(name)
        ]
        if len(known) > 16:
            known.clear()
        known[key] = (keep, keys, names)
        return keep, names

    def hide() -> None:
        """Remove every variable no longer granted, from Python and from C."""
        nonlocal visible
        environ = os.environ
        data = environ._data  # type: ignore[attr-defined]
        visible, names = shown(list(data))
        writable.clear()
        if not guard.retired:  # enforcing from now: the guarded mapping, in C only when needed
            guarded(True)
        for name, key, inherited in names:
            if inherited:  # out of view only: children still inherit it
                removed[key] = data.pop(key)
                continue
            hidden.update((name, key))  # as os.environ and os.environb name it
            if guard.observe:
                continue
            removed[key] = data.pop(key)
            local.hiding = True
            try:
                os.unsetenv(name)
            finally:
                local.hiding = False

    def restore() -> None:
        """Put back what :func:`hide` took, as it was (a test restricted in this process)."""
        nonlocal visible
        data = os.environ._data  # type: ignore[attr-defined]
        for key, value in removed.items():
            if key not in data:
                data[key] = value
                os.putenv(key, value)
        removed.clear()
        hidden.clear()
        visible = everything
        guarded(False)

    writable: set[str | bytes] = set()
    """Names a write was allowed for under the policy in force (checked once)."""

    def require(key: str | bytes) -> None:
        if key in writable or guard.retired:
            return
        name = os.fsdecode(key)
        if visible(name) or INHERITED_POLICY.covers(name):
            writable.add(key)
        else:
            guard.deny(ENV, name)

    class GuardedEnviron(os._Environ):  # type: ignore[type-arg]
        """``os._Environ`` that reports reads of hidden variables and lists none of them.

        Writes need no method here: setting and deleting call ``putenv`` and
        ``unsetenv`` first, whose audit events :func:`on_putenv` checks.
        """

        def __getitem__(self, key: Any) -> Any:
            if isinstance(key, (str, bytes)) and key in hidden:  # absent unless observing
                guard.deny(ENV, os.fsdecode(key), raised=False)
            return super().__getitem__(key)

        def __iter__(self) -> Any:
            return (key for key in super().__iter__() if key not in hidden)

    def on_putenv(args: tuple[Any, ...]) -> None:
        key = args[0]
        if key not in writable and not getattr(local, "hiding", False):
            require(key)

    def guarded(on: bool) -> None:
        """``os.environ`` (and ``os.environb``) checked, or the plain mapping again.

        Switched off, the pytest process's mapping is the standard library's
        own: an unrestricted test pays nothing for it.
        """
        cls: Any = GuardedEnviron if on else os._Environ
        os.environ.__class__ = cls
        if os.supports_bytes_environ:
            os.environb.__class__ = cls

    hide()
    guard.on_change(hide)
    guard.on_retire(restore)
    guard.register({"os.putenv": on_putenv, "os.unsetenv": on_putenv}, exclusive=False)
    return {}
