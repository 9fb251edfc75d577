"""The child's role: enforce, run the test body, send back what happened, leave.

Runs only in the process :func:`pytest_permission.fork.fork` made, and only
around ``item.runtest()``: everything else of the call phase (capture,
logging, warnings, skipping, the report) happens in the parent, exactly as
in an unrestricted run. That keeps the child's work, and so the pages it
copies from the parent, to the test body itself.

What the parent cannot see is sent back: the outcome (the exception,
pickled where possible, and the failure's formatted ``longrepr``, since a
traceback cannot cross processes), output written to in-memory capture
buffers, log text, user properties, warnings and denials. The child leaves
with ``os._exit`` so no atexit handler of the parent's runs twice.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from pytest_permission import audit, coverage_relay, fork, hints, kernel, marker, startup, tools
from pytest_permission.errors import Denial, chain
from pytest_permission.plan import Plan

INTERRUPTED = 130


class SwallowedDenialWarning(pytest.PytestWarning):
    """The code under test caught an ``AccessDenied`` and went on."""


@dataclass(frozen=True)
class Prepared:
    """Everything the child needs that can be computed before the fork.

    Built in the pytest process: whatever the child computes it pays for
    twice, once in work and once in the pages it copies from its parent.
    """

    guard: audit.Guard
    kernel: kernel.Prepared | None
    exported: str | None
    """The policy for Python subprocesses; ``None`` in an audit (nothing to enforce)."""
    output: _Output

    def __enter__(self) -> Prepared:
        return self

    def __exit__(self, *exc: object) -> None:
        """In the parent, after the fork: close its copies of what was opened for the child."""
        if self.kernel is not None:
            self.kernel.close()


def prepare(item: pytest.Item, plan: Plan) -> Prepared:
    """In the parent, before the fork: the child's guard, kernel rules, exported policy.

    The audit layer's hooks are installed here too, switched off, once per
    process (:func:`pytest_permission.audit.arm`): the child switches them on.
    """
    audit.arm()
    read, write = tools.paths()
    guard = audit.guard_for(
        plan.policy, implicit=plan.implicit, observe=plan.observe,
        extra_read=read, extra_write=write,
    )
    exported = None if plan.observe else startup.encode(plan.policy, plan.implicit)
    output = _Output(item)
    # last: it opens descriptors, which Prepared closes once it exists
    layer = kernel.prepare(plan, read=[*read, str(item.path)], write=write)
    return Prepared(guard, layer, exported, output)


class ChildRole:
    """Enforces a plan in the forked child and reports the body's outcome."""

    def __init__(self, item: pytest.Item, plan: Plan, writer: int, prepared: Prepared) -> None:
        self.item = item
        self.plan = plan
        self.writer = writer
        self.warnings: list[dict[str, Any]] = []
        self.output = prepared.output
        self.coverage = coverage_relay.capture()
        if prepared.exported is not None:  # an audit enforces nothing, in subprocesses neither
            startup.export(prepared.exported)
        tools.prepare()
        try:  # before the audit layer, which would refuse its ctypes calls
            kernel.apply(prepared.kernel)
        except kernel.KernelError as exc:
            fork.send(writer, {"error": str(exc)})
            os._exit(1)
        self.guard = audit.install(
            plan.policy, implicit=plan.implicit, observe=plan.observe, prepared=prepared.guard
        )
        kernel.follow(self.guard)
        if not plan.observe:
            startup.propagate(self.guard)

    def run(self, runtest: Callable[[], object]) -> None:
        """Run the test body under the plan, send the outcome, and exit."""
        signal.signal(signal.SIGINT, signal.default_int_handler)
        start = time.time()
        failure: BaseException | None = None
        with warnings.catch_warnings(record=True) as log:
            try:
                runtest()
            except (KeyboardInterrupt, pytest.exit.Exception) as stop:
                self.leave({"stop": type(stop).__name__, "reason": str(stop)})
            except BaseException as exc:
                failure = exc
            try:
                self.judge(failure)
            except BaseException as exc:  # strict, or a warning filtered to "error"
                failure = exc
            finally:
                self.guard.retire()
                self.warnings = [_warning(w) for w in log]
        message: dict[str, Any] = {}
        if failure is not None:
            message["exception"] = _portable(failure)
            message["report"] = self.failure_report(failure, start)
        self.leave(message)

    def judge(self, failure: BaseException | None) -> None:
        """Warn about swallowed denials, or fail the test under ``strict``."""
        if self.plan.observe:
            return  # nothing was refused, so nothing was swallowed
        swallowed = self.swallowed(failure)
        if not swallowed:
            return
        text = hints.swallowed(swallowed)
        if self.plan.strict and failure is None:
            pytest.fail(f"{text}\n(strict: swallowed denials fail the test)", pytrace=False)
        lineno = (self.item.location[1] or 0) + 1
        warnings.warn_explicit(
            SwallowedDenialWarning(text), SwallowedDenialWarning, str(self.item.path), lineno
        )

    def swallowed(self, failure: BaseException | None) -> list[Denial]:
        """Denials neither handled by the test's own file nor failing the test."""
        failing = {id(error) for error in chain(failure)}
        test_file = str(self.item.path)
        out = []
        for index, denial in enumerate(self.guard.denials):
            error = self.guard.raised.get(index)
            if error is not None:
                if id(error) in failing or id(error) in self.guard.expected:
                    continue
                tb = error.__traceback__
                if tb is not None and tb.tb_frame.f_code.co_filename == test_file:
                    continue  # pytest.raises / try-except in the test itself
            out.append(denial)
        return out

    def failure_report(self, failure: BaseException, start: float) -> dict[str, Any]:
        """The failure formatted here, where its traceback lives, as pytest serialises it."""
        def again() -> None:
            raise failure

        call = pytest.CallInfo.from_call(again, when="call")
        call.start = start
        report = pytest.TestReport.from_item_and_call(self.item, call)
        hint = kernel.explain(failure) or marker.hint_for(
            self.item, failure, declared=self.plan.policy, granted=self.guard.policy
        )
        addsection = getattr(report.longrepr, "addsection", None)
        if hint is not None and addsection is not None:
            addsection("permission", hint)
        config = self.item.config
        data: dict[str, Any] = config.hook.pytest_report_to_serializable(
            config=config, report=report
        )
        return data

    def leave(self, message: dict[str, Any]) -> None:
        message["warnings"] = self.warnings
        message["denials"] = [d.to_dict() for d in self.guard.denials]
        if self.coverage is not None:
            self.guard.retire()  # coverage's in-memory database is no access of the test's
            message["coverage"] = self.coverage.collected()
        message.update(self.output.collect())
        try:
            fork.send(self.writer, message)
        except Exception as exc:  # an unpicklable user property, most likely
            for key in ("report", "exception", "user_properties"):
                message.pop(key, None)
            message["error"] = f"could not send the outcome: {exc!r}"
            fork.send(self.writer, message)
        finally:
            os._exit(INTERRUPTED if "stop" in message else 0)


class _Output:
    """What the child writes where the parent cannot read it afterwards.

    File-descriptor capture writes to files shared with the parent; only
    in-memory buffers (``--capture=sys``, the log report handler) and the
    item's user properties need sending. Made in the parent just before the
    fork: where each of them ends is the same in the child.
    """

    def __init__(self, item: pytest.Item) -> None:
        self.item = item
        self.properties = len(item.user_properties)
        self.streams = {name: _memory_length(getattr(sys, name)) for name in ("stdout", "stderr")}
        self.log = _log_stream(item)
        self.log_start = len(self.log.getvalue()) if self.log is not None else 0

    def collect(self) -> dict[str, Any]:
        out: dict[str, Any] = {"user_properties": self.item.user_properties[self.properties :]}
        for name, start in self.streams.items():
            stream = getattr(sys, name)
            if start is not None and hasattr(stream, "getvalue"):
                out[name] = stream.getvalue()[start:]
            else:
                with contextlib.suppress(Exception):
                    stream.flush()
        if self.log is not None:
            out["log"] = self.log.getvalue()[self.log_start :]
        return out


def _memory_length(stream: Any) -> int | None:
    """The length of an in-memory capture buffer, ``None`` for a real stream."""
    getvalue = getattr(stream, "getvalue", None)
    return len(getvalue()) if callable(getvalue) else None


def _log_stream(item: pytest.Item) -> Any:
    plugin = item.config.pluginmanager.get_plugin("logging-plugin")
    handler = getattr(plugin, "report_handler", None)
    stream = getattr(handler, "stream", None)
    return stream if hasattr(stream, "getvalue") else None


def _portable(failure: BaseException) -> dict[str, Any]:
    """The exception in a form the parent can raise again.

    pytest's outcome exceptions (skip, fail, xfail) are not picklable (their
    ``__module__`` is ``builtins``), so they travel as their kind and fields.
    """
    outcomes = {
        pytest.skip.Exception: "skip",
        pytest.fail.Exception: "fail",
        pytest.xfail.Exception: "xfail",
    }
    for kind_type, kind in outcomes.items():
        if type(failure) is kind_type:
            return {
                "outcome": kind,
                "msg": getattr(failure, "msg", None) or "",
                "pytrace": getattr(failure, "pytrace", True),
                "fields": dict(failure.__dict__),
            }
    try:
        return {"pickled": pickle.dumps(failure, protocol=pickle.HIGHEST_PROTOCOL)}
    except Exception:
        return {"type": f"{type(failure).__module__}.{type(failure).__qualname__}",
                "text": str(failure)}


def _warning(record: warnings.WarningMessage) -> dict[str, Any]:
    category = record.category
    return {
        "message": str(record.message),
        "category": (category.__module__, category.__qualname__),
        "filename": record.filename,
        "lineno": record.lineno,
    }
