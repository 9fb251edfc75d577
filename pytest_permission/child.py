"""The child's role: enforce, run the call phase as pytest would, send back its reports, leave.

Runs only in the process :func:`pytest_permission.fork.fork` made, which
goes on exactly where the parent forked: inside pytest's own
``call_and_report``, where ``item.runtest()`` is called. So the child runs
the test body and then the rest of the call phase as an unforked run would
— the wrappers' reading of captured output and logs, pytest's
``CallInfo``, the ``pytest_runtest_makereport`` hook, and with ``--pdb``
the debugger — and every item type reports as it would unforked:
unittest's result collection, subtests, doctests and ``xfail(raises=...)``
happen where their state lives.

The child's hook calls go through :meth:`ChildRole._hookexec`: reports that
would be logged (a subtest's, the call report) are kept instead of reaching
the terminal, JUnit or an xdist channel, and the first hook of the next
phase (``pytest_runtest_teardown``) ends the child. It then sends the
reports as JSON data — formatted, like every other text made from the
test's objects, while enforcement is still on — and leaves with
``os._exit``, running no atexit handler of the parent's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NoReturn

import pytest

from pytest_permission import (
    audit,
    coverage_relay,
    kernel,
    startup,
    tools,
    transport,
    verdict,
)
from pytest_permission.errors import chain
from pytest_permission.fork import Writer
from pytest_permission.plan import Plan

CHILD_FAILED = 70
"""Exit status of a child whose own machinery failed (``EX_SOFTWARE``)."""

ROLE = pytest.StashKey["ChildRole"]()
"""On the item, in the child only: the role running its call phase."""
TERMINAL = pytest.StashKey[bool]()
"""On the config: whether standard input was a terminal before pytest's capture took it."""

_PHASE_OVER = frozenset({
    "pytest_runtest_teardown", "pytest_runtest_logfinish", "pytest_runtest_protocol",
    "pytest_runtest_setup", "pytest_runtest_logstart", "pytest_internalerror",
    "pytest_keyboard_interrupt", "pytest_sessionfinish", "pytest_unconfigure",
    "pytest_terminal_summary",
})
"""Hooks that run only after the call phase: the first one ends the child."""


@dataclass(frozen=True)
class Prepared:
    """What a plan's children need that can be computed before the fork, once per plan.

    Built in the pytest process: whatever the child computes it pays for
    twice, once in work and once in the pages it copies from its parent.
    The kernel layer is prepared per fork (:func:`pytest_permission.kernel.prepare`
    keeps what it can reuse itself): a supervisor serves one test's processes.
    """

    guard: audit.Guard
    exported: str | None
    """The policy for Python subprocesses; ``None`` in an audit (nothing to enforce)."""
    read: tuple[str, ...]
    write: tuple[str, ...]
    """What the plugin and the tools beside the test use on its behalf, for the kernel layer."""

    def layer(self, plan: Plan) -> kernel.Prepared | None:
        """In the parent, right before a fork: the kernel layer of that child."""
        return kernel.prepare(plan, read=self.read, write=self.write)


def prepare(item: pytest.Item, plan: Plan) -> Prepared:
    """In the parent, before the fork: the child's guard, exported policy, tools' paths.

    The audit layer's hooks are installed here too, switched off, once per
    process (:func:`pytest_permission.audit.arm`): the child switches them on.
    """
    audit.arm()
    tools.make_folders()
    read, write = tools.paths()
    guard = audit.guard_for(
        plan.policy, implicit=plan.implicit, observe=plan.observe,
        extra_read=read, extra_write=write,
    )
    exported = None if plan.observe else startup.encode(plan.policy, plan.implicit)
    return Prepared(guard, exported, (*read, str(item.path)), tuple(write))


def run(
    item: pytest.Item, plan: Plan, writer: Writer, prepared: Prepared,
    layer: kernel.Prepared | None, runtest: Callable[[], object],
) -> None:
    """In the child: restrict the process, run the body, judge swallowed denials.

    Returns or raises as the body did, so pytest goes on with the call phase
    here; the next phase's first hook ends the child (:meth:`ChildRole.finish`).
    """
    try:
        role = ChildRole(item, plan, writer, prepared, layer)
    except BaseException as exc:  # never go on as a copy of the pytest process
        _abandon(writer, f"it could not be restricted: {exc!r}")
    try:
        runtest()
    except BaseException as exc:
        if isinstance(exc, role.stops):
            role.finish(stop=exc)
        role.judge(exc)
        raise
    role.judge(None)


class ChildRole:
    """Enforces a plan in the forked child and reports the call phase's outcome."""

    def __init__(
        self, item: pytest.Item, plan: Plan, writer: Writer, prepared: Prepared,
        layer: kernel.Prepared | None,
    ) -> None:
        self.item = item
        self.plan = plan
        self.writer = writer
        config = item.config
        self.stops: tuple[type[BaseException], ...] = (pytest.exit.Exception,) + (
            () if config.getoption("usepdb", False) else (KeyboardInterrupt,)
        )
        """What pytest's ``call_and_report`` lets through: it stops the session."""
        self.sections = len(item._report_sections)
        self.subtests = "subtests" in getattr(item, "fixturenames", ())
        """pytest 9's ``subtests`` fixture counts its failures on the config (below)."""
        self.failed_subtests = count_failed_subtests(item) if self.subtests else 0
        self.logged: list[pytest.TestReport] = []
        self.final: pytest.TestReport | None = None
        self.raised = False
        self.notes: list[str] = []
        self.recorded: list[dict[str, Any]] = []
        """Warnings pytest recorded in the child (``pytest_warning_recorded``), as data."""
        self.coverage = coverage_relay.capture()
        if prepared.exported is not None:  # an audit enforces nothing, in subprocesses neither
            startup.export(prepared.exported)
        tools.prepare()
        try:  # before the audit layer, which would refuse its ctypes calls
            kernel.apply(layer)
        except kernel.KernelError as exc:
            _abandon(writer, str(exc))
        self.guard = audit.install(
            plan.policy, implicit=plan.implicit, observe=plan.observe, prepared=prepared.guard
        )
        kernel.follow(self.guard)
        self.guard.debugger = _debugging(config)
        self._untraced = None
        if config.getoption("trace", False) and not self.guard.debugger:
            config.option.trace = False  # in this child only: pdb would read no commands
            self._untraced = config.pluginmanager.get_plugin("pdbtrace")
            self.notes.append(
                "--trace: not entered: a restricted test runs in a forked child, where the "
                "debugger needs standard input to be a terminal, and it is not one"
            )
        signal.signal(signal.SIGINT, signal.default_int_handler)
        self._warnings = warnings.catch_warnings(record=True)
        self.warnings = self._warnings.__enter__()
        self._inner = config.pluginmanager._inner_hookexec
        config.pluginmanager._inner_hookexec = self._hookexec  # type: ignore[assignment]
        item.stash[ROLE] = self

    # -- the call phase ------------------------------------------------------

    def judge(self, failure: BaseException | None) -> None:
        """Warn about swallowed denials, or fail the test under ``strict``."""
        verdict.judge(self.guard, self.plan, self.item, failure)

    def _hookexec(
        self, name: str, impls: list[Any], kwargs: dict[str, Any], firstresult: bool
    ) -> Any:
        """Every hook call in the child: keep reports, end with the call phase."""
        if name in _PHASE_OVER:
            self.finish()
        if name == "pytest_runtest_logreport":
            report = kwargs["report"]
            self.logged.append(report)
            self.item.session.pytest_runtest_logreport(report)  # -x / --maxfail bookkeeping
            return []
        if name == "pytest_warning_recorded":
            self.recorded.append(_warning(kwargs["warning_message"]))
            return []
        if name == "pytest_exception_interact":
            return self._interact(impls, kwargs, firstresult)
        if name == "pytest_pyfunc_call" and self._untraced is not None:
            impls = [i for i in impls if i.plugin is not self._untraced]
        if name == "pytest_runtest_makereport" and kwargs["call"].excinfo is not None:
            _drop_own_frames(kwargs["call"].excinfo.tb)
            self.guard.implicit.sources.update(_source_files(kwargs["call"].excinfo.value))
        result = self._inner(name, impls, kwargs, firstresult)
        if name == "pytest_runtest_makereport" and isinstance(result, pytest.TestReport):
            call = kwargs["call"]
            if call.when == "call" and kwargs["item"] is self.item:
                self.final = result
                self.raised = call.excinfo is not None
                verdict.annotate(self.item, self.plan, self.guard.policy, result, call)
        return result

    def _interact(self, impls: list[Any], kwargs: dict[str, Any], firstresult: bool) -> Any:
        """``--pdb``: the debugger runs here, in the failing test's process, on a terminal."""
        if not self.guard.debugger:
            if self.item.config.getoption("usepdb", False):
                self.notes.append(
                    "--pdb: not entered: a restricted test fails in its forked child, where "
                    "the debugger needs standard input to be a terminal, and it is not one"
                )
            return []
        try:
            return self._inner("pytest_exception_interact", impls, kwargs, firstresult)
        except (pytest.exit.Exception, KeyboardInterrupt) as stop:  # "quit" in the debugger
            self.finish(stop=stop)

    # -- the end -----------------------------------------------------------------

    def finish(self, stop: BaseException | None = None) -> None:
        """Send what happened, formatted under enforcement, and exit. Never returns."""
        try:
            message = self.message(stop)
            encoded = transport.encode(message)  # every repr() still under enforcement
            self.guard.retire()
            if self.coverage is not None:  # coverage's own in-memory database: no test access
                encoded = encoded[:-1] + b',"coverage":' + transport.encode(
                    {"data": self.coverage.collected()}
                ) + b"}"
            _flush()  # os._exit flushes nothing: what the test printed must not be lost
            self.writer.send(encoded)
        except BaseException as exc:  # the plugin's own failure: say so, never hang or go on
            self.guard.retire()
            _abandon(self.writer, f"it failed to report: {exc!r}")
        os._exit(0)

    def message(self, stop: BaseException | None) -> dict[str, Any]:
        """The call phase as data: the reports pytest would have logged, and what goes with them."""
        self._warnings.__exit__(None, None, None)
        config = self.item.config
        message: dict[str, Any] = {
            "warnings": self.recorded + [_warning(w) for w in self.warnings],
            "sections": self.item._report_sections[self.sections :],
            "user_properties": transport.plain(self.item.user_properties),
            "notes": self.notes,
            "failed_subtests": (
                count_failed_subtests(self.item) - self.failed_subtests if self.subtests else 0
            ),
            "item_state": tools.item_state(self.item),
        }
        if stop is not None:
            message["stop"] = {
                "interrupt": not isinstance(stop, pytest.exit.Exception),
                "reason": str(getattr(stop, "msg", "") or ""),
                "returncode": getattr(stop, "returncode", None),
            }
        final = self.final
        message["reports"] = [
            config.hook.pytest_report_to_serializable(config=config, report=report)
            for report in self.logged
            if report is not final
        ]
        message["denials"] = [d.to_dict() for d in self.guard.denials]
        if final is not None and stop is None:
            message["final"] = config.hook.pytest_report_to_serializable(
                config=config, report=final
            )
            message["raised"] = self.raised
        return message


def _abandon(writer: Writer, why: str) -> NoReturn:
    """End a child the plugin itself failed in: say why (the test fails), run nothing more."""
    try:
        writer.send(transport.encode({"error": why}))
    finally:
        os._exit(CHILD_FAILED)


_OWN_MODULES = frozenset({__name__, "pytest_permission.isolation"})


def _drop_own_frames(tb: TracebackType | None) -> None:
    """Unlink the plugin's frames around the body from a traceback, in place.

    Between pytest's runner and the test body the child has two frames of
    its own (``isolation._forked``, :func:`run`): without them even a
    ``--tb=native`` traceback reads as it would in an unrestricted run.
    """
    while tb is not None and tb.tb_next is not None:
        following = tb.tb_next
        if following.tb_frame.f_globals.get("__name__") in _OWN_MODULES:
            tb.tb_next = following.tb_next
        else:
            tb = following


def _flush() -> None:
    """Write out what Python buffered for the process's own streams (``-s``, ``--pdb``)."""
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(Exception):
            if stream is not None:
                stream.flush()


def count_failed_subtests(item: pytest.Item, add: int = 0) -> int:
    """pytest 9's count of the test's failed subtests (``add`` to it first).

    pytest fails a test whose ``subtests`` failed by this count, kept on
    the config (a private stash key of ``_pytest.subtests``): the child
    counts, the parent's terminal reporter reads, so the parent adds what
    the child counted. Always 0 with pytest 8 (no built-in subtests).
    """
    try:
        from _pytest.subtests import failed_subtests_key
    except ImportError:
        return 0
    counts: dict[Any, int] = item.config.stash[failed_subtests_key]  # type: ignore[index]
    key = getattr(item, "id", item.nodeid)  # pytest 9.2+ keys by the structured node id
    if add:
        counts[key] = counts.get(key, 0) + add
    return counts.get(key, 0)


def _source_files(error: BaseException) -> set[str]:
    """The real paths of the files of every frame in ``error``'s traceback and its causes."""
    found = set()
    for link in chain(error):
        tb = link.__traceback__
        while tb is not None:
            found.add(os.path.realpath(tb.tb_frame.f_code.co_filename))
            tb = tb.tb_next
    return found


def _debugging(config: pytest.Config) -> bool:
    """``--pdb``/``--trace`` with a terminal to debug on: the debugger may trace."""
    asked = config.getoption("usepdb", False) or config.getoption("trace", False)
    return bool(asked) and config.stash.get(TERMINAL, False)


def _warning(record: warnings.WarningMessage) -> dict[str, Any]:
    """A warning as data: its category by name (with its bases), its text and place."""
    category = record.category
    return {
        "message": str(record.message),
        "category": [f"{c.__module__}.{c.__qualname__}" for c in category.__mro__],
        "filename": str(record.filename),
        "lineno": int(record.lineno or 0),
    }

