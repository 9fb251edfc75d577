"""The child's role: enforce, run the call phase, send the report, leave.

Runs only in the process :func:`pytest_permission.fork.fork` made. The call
phase runs through pytest's own hooks (capture, logging, skipping…), so
output capture behaves as in an unrestricted run; the final call report
goes back through ``pytest_report_to_serializable``, and the child leaves
with ``os._exit`` so no atexit handler or session teardown of the parent's
runs twice.
"""

from __future__ import annotations

import os
import signal
import sys
import warnings
from collections.abc import Generator
from typing import Any

import pytest

from pytest_permission import audit, coverage_relay, fork, startup
from pytest_permission.errors import Denial
from pytest_permission.plan import Plan

INTERRUPTED = 130


class SwallowedDenialWarning(pytest.PytestWarning):
    """The code under test caught an ``AccessDenied`` and went on."""


class ChildRole:
    """Registered as a plugin in the child only, for its ``makereport``."""

    def __init__(self, item: pytest.Item, plan: Plan, writer: int) -> None:
        self.item = item
        self.plan = plan
        self.writer = writer
        self.warnings: list[dict[str, Any]] = []
        self.coverage = coverage_relay.capture()
        startup.export(plan.policy, plan.implicit)
        read, write = plugin_paths()
        self.guard = audit.install(
            plan.policy, implicit=plan.implicit, observe=plan.observe,
            extra_read=read, extra_write=write,
        )
        startup.propagate(self.guard)

    def call_phase(self) -> Generator[None, object, object]:
        """Body of the ``pytest_runtest_call`` wrapper, in the child."""
        signal.signal(signal.SIGINT, signal.default_int_handler)
        self.item.config.pluginmanager.register(self, "permission-child")
        with warnings.catch_warnings(record=True) as log:
            try:
                result = yield
            except (KeyboardInterrupt, pytest.exit.Exception) as stop:
                self.leave({"stop": type(stop).__name__, "reason": str(stop)})
            except BaseException as failure:
                self.judge(failure)
                raise
            else:
                self.judge(None)
            finally:
                self.guard.retire()
                self.warnings = [_warning(w) for w in log]
        return result

    def judge(self, failure: BaseException | None) -> None:
        """Warn about swallowed denials, or fail the test under ``strict``."""
        if self.plan.observe:
            return  # nothing was refused, so nothing was swallowed
        swallowed = self.swallowed(failure)
        if not swallowed:
            return
        lines = "\n".join(f"  {d.permission} {d.resource} at {d.where}" for d in swallowed)
        text = f"the code under test swallowed {len(swallowed)} access denial(s):\n{lines}"
        if self.plan.strict and failure is None:
            pytest.fail(f"{text}\n(strict: swallowed denials fail the test)", pytrace=False)
        lineno = (self.item.location[1] or 0) + 1
        warnings.warn_explicit(
            SwallowedDenialWarning(text), SwallowedDenialWarning, str(self.item.path), lineno
        )

    def swallowed(self, failure: BaseException | None) -> list[Denial]:
        """Denials neither handled by the test's own file nor failing the test."""
        failing = set()
        while failure is not None and id(failure) not in failing:
            failing.add(id(failure))
            failure = failure.__cause__ or failure.__context__
        test_file = str(self.item.path)
        out = []
        for index, denial in enumerate(self.guard.denials):
            error = self.guard.raised.get(index)
            if error is not None:
                if id(error) in failing:
                    continue
                tb = error.__traceback__
                if tb is not None and tb.tb_frame.f_code.co_filename == test_file:
                    continue  # pytest.raises / try-except in the test itself
            out.append(denial)
        return out

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if item is self.item and call.when == "call":
            self.send_report(report)
        return report

    def send_report(self, report: pytest.TestReport) -> None:
        config = self.item.config
        data = config.hook.pytest_report_to_serializable(config=config, report=report)
        self.leave({"report": data})

    def leave(self, message: dict[str, Any]) -> None:
        message["warnings"] = self.warnings
        message["denials"] = [d.to_dict() for d in self.guard.denials]
        if self.coverage is not None:
            self.guard.retire()  # coverage's in-memory database is no access of the test's
            message["coverage"] = self.coverage.collected()
        try:
            fork.send(self.writer, message)
        except Exception as exc:  # an unpicklable user property, most likely
            message.pop("report", None)
            message["error"] = f"could not send the report: {exc!r}"
            fork.send(self.writer, message)
        finally:
            for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
                try:
                    if stream is not None:
                        stream.flush()
                except Exception:
                    pass
            os._exit(INTERRUPTED if "stop" in message else 0)


def plugin_paths() -> tuple[list[str], list[str]]:
    """Paths the tools beside the test need in the child, as ``(read, write)``.

    Granted implicitly (even with ``implicit=False``) by the audit layer and
    the kernel layer alike. Hypothesis keeps its example database and caches
    under its storage directory (``.hypothesis/``) and reads and writes them
    while a ``@given`` test runs; a trailing ``*`` covers the folder whether
    or not it exists yet. Coverage needs nothing: see :mod:`.coverage_relay`.
    """
    found: list[str] = []
    configuration = sys.modules.get("hypothesis.configuration")
    if configuration is not None:
        storage = configuration.storage_directory()
        found.append(os.fspath(getattr(storage, "path", storage)))
        database = sys.modules["hypothesis"].settings.default.database
        if isinstance(getattr(database, "path", None), (str, os.PathLike)):
            found.append(os.fspath(database.path))
    grants = [os.path.abspath(p) + "*" for p in found]
    return grants, grants


def _warning(record: warnings.WarningMessage) -> dict[str, Any]:
    category = record.category
    return {
        "message": str(record.message),
        "category": (category.__module__, category.__qualname__),
        "filename": record.filename,
        "lineno": record.lineno,
    }
