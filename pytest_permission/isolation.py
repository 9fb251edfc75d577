"""The parent's role: fork around the test body, relay what the child sent back.

Only ``item.runtest()`` runs in the child. The call phase around it —
capture, logging, warnings, skipping, the report — runs in the parent
through pytest's own hooks, so output capture and outcomes behave as in an
unrestricted run, and plugins that drive the protocol themselves
(pytest-rerunfailures, pytest-timeout) keep working beside this one.

The relay puts back what the parent could not see: in-memory output, log
text, user properties and warnings are re-issued where pytest expects them;
the child's exception is raised again (so ``xfail(raises=...)`` and friends
see its type), and the failure text the child formatted from the real
traceback replaces the parent's in the report.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import pickle
import sys
import warnings
from collections.abc import Callable, Generator
from typing import Any

import pytest

from pytest_permission import child as child_role
from pytest_permission import coverage_relay, fork
from pytest_permission.child import ChildRole
from pytest_permission.errors import Denial
from pytest_permission.plan import Plan

PLAN = pytest.StashKey[Plan]()
"""Set by the plugin on an item that must run isolated."""
_LONGREPR = pytest.StashKey[dict[str, Any]]()
_DENIED = pytest.StashKey[list[dict[str, object]]]()

REPORT_ATTRIBUTE = "permission_denials"
"""The call report's list of denial dicts: it travels with the report (to an
xdist controller too), so summaries are built from reports, not from state."""
JUNIT_PROPERTY = "permission_denial"


CHILD_FAILED = 70
"""Exit status of a child whose own machinery failed (``EX_SOFTWARE``)."""


class ChildError(Exception):
    """An exception from the child that could not be sent as itself."""


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    plan = item.stash.get(PLAN, None)
    if plan is None:
        return (yield)
    own = item.__dict__.get("runtest")
    item.runtest = functools.partial(_forked, item, plan, item.runtest)  # type: ignore[method-assign]
    try:
        return (yield)
    finally:
        if own is None:
            del item.runtest
        else:
            item.runtest = own  # type: ignore[method-assign]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> pytest.TestReport | None:
    """The parent's report, with the child's failure text and its denials."""
    if call.when != "call" or _DENIED not in item.stash:
        return None
    denials = item.stash[_DENIED]
    del item.stash[_DENIED]
    report = pytest.TestReport.from_item_and_call(item, call)
    sent = item.stash.get(_LONGREPR, None)
    if sent is not None:
        del item.stash[_LONGREPR]
        if call.excinfo is not None:
            config = item.config
            child: pytest.TestReport = config.hook.pytest_report_from_serializable(
                config=config, data=sent
            )
            report.longrepr = child.longrepr
    setattr(report, REPORT_ATTRIBUTE, denials)
    return report


def denials_of(report: pytest.TestReport) -> list[Denial]:
    """The denials a call report carries (none for an unrestricted test)."""
    return [Denial.from_dict(d) for d in getattr(report, REPORT_ATTRIBUTE, ())]


def _forked(item: pytest.Item, plan: Plan, runtest: Callable[[], object]) -> None:
    """``item.runtest`` for an isolated test, in the parent."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()  # nothing buffered may be written twice
    with child_role.prepare(item, plan) as prepared:
        child, writer = fork.fork()
        if child is None:
            assert writer is not None
            try:
                ChildRole(item, plan, writer, prepared).run(runtest)  # leaves with os._exit
            finally:  # whatever escapes, the child must never go on with the session
                os._exit(CHILD_FAILED)
    assert child is not None
    ended = fork.wait(child, plan.timeout)
    message = ended.message if isinstance(ended.message, dict) else {}
    coverage_relay.merge(message.get("coverage"))
    _relay(item, message)
    stop = message.get("stop")
    if stop == "KeyboardInterrupt":
        raise KeyboardInterrupt
    if stop is not None:
        pytest.exit(message.get("reason", ""))
    if "exception" in message:
        if "report" in message:
            item.stash[_LONGREPR] = message["report"]
        raise _rebuilt(message["exception"])
    if ended.message is None or "error" in message:
        why = message.get("error") or f"the forked test process {ended.describe()}"
        if ended.timed_out:
            why += f" ({plan.timeout:g}s)"
        pytest.fail(f"{why} before reporting; its captured output follows", pytrace=False)


def _relay(item: pytest.Item, message: dict[str, Any]) -> None:
    """Put back, in the parent, what the child's body produced."""
    _record_denials(item, message.get("denials", []))
    item.user_properties.extend(message.get("user_properties", ()))
    for name in ("stdout", "stderr"):
        if message.get(name):
            getattr(sys, name).write(message[name])
    plugin = item.config.pluginmanager.get_plugin("logging-plugin")
    if message.get("log") and plugin is not None:  # the child only sends it if it exists
        plugin.report_handler.stream.write(message["log"])
    for record in message.get("warnings", ()):
        _reissue(record)


def _rebuilt(sent: dict[str, Any]) -> BaseException:
    kind = sent.get("outcome")
    if kind is not None:
        cls = {"skip": pytest.skip.Exception, "fail": pytest.fail.Exception,
               "xfail": pytest.xfail.Exception}[kind]
        error = cls.__new__(cls)
        BaseException.__init__(error, sent["msg"])
        error.__dict__.update(sent["fields"])
        return error
    if "pickled" in sent:
        try:
            exc: BaseException = pickle.loads(sent["pickled"])
            return exc
        except Exception:
            pass
    return ChildError(f"{sent.get('type', 'exception')}: {sent.get('text', '')}")


def _reissue(record: dict[str, Any]) -> None:
    module, name = record["category"]
    category: type[Warning] = UserWarning
    try:
        found = importlib.import_module(module)
        for part in name.split("."):
            found = getattr(found, part)
        if isinstance(found, type) and issubclass(found, Warning):
            category = found
    except Exception:
        pass
    # An "error" filter already failed the test in the child.
    with contextlib.suppress(Warning):
        warnings.warn_explicit(record["message"], category, record["filename"], record["lineno"])


def _record_denials(item: pytest.Item, denials: list[dict[str, object]]) -> None:
    """Keep the child's denials for the call report and the JUnit properties."""
    item.stash[_DENIED] = denials
    for data in denials:
        item.user_properties.append((JUNIT_PROPERTY, Denial.from_dict(data).line()))
