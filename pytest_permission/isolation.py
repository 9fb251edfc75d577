"""The parent's role: fork for the call phase, relay what the child sent back.

The fork happens inside every other ``pytest_runtest_call`` wrapper
(``trylast``): capture, logging and warnings are set up unrestricted in the
parent, and the child, a copy, finishes them, so its report carries the
captured sections exactly as an unrestricted run would.

Only the call phase is taken over, at the level of ``pytest_runtest_call``
and ``pytest_runtest_makereport``; setup and teardown run in the parent
through pytest's normal protocol, so plugins that also drive the protocol
(pytest-rerunfailures, pytest-timeout) keep working beside this one.

In the parent, the test's ``runtest`` is replaced for the duration of the
call by a relay that re-issues the child's warnings (so ``-W`` filters and
the warnings summary see them) or fails with how the child died; the
child's report then stands in for the one pytest would make.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Generator
from typing import Any

import pytest

from pytest_permission import fork
from pytest_permission.child import ChildRole
from pytest_permission.errors import Denial
from pytest_permission.plan import Plan

PLAN = pytest.StashKey[Plan]()
"""Set by the plugin on an item that must run isolated."""
_SENT = pytest.StashKey[dict[str, Any]]()
DENIALS = pytest.StashKey[dict[str, list[Denial]]]()
"""Per node id, every denial its child recorded (config stash)."""


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    plan = item.stash.get(PLAN, None)
    if plan is None:
        return (yield)
    child, writer = fork.fork()
    if child is None:
        assert writer is not None
        return (yield from ChildRole(item, plan, writer).call_phase())
    ended = fork.wait(child, plan.timeout)
    message = ended.message if isinstance(ended.message, dict) else {}
    _record_denials(item, message)
    original = item.__dict__.get("runtest")
    item.runtest = _relay(item, message, ended, plan)  # type: ignore[method-assign]
    try:
        return (yield)
    finally:
        if original is None:
            del item.runtest
        else:
            item.runtest = original  # type: ignore[method-assign]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> pytest.TestReport | None:
    if call.when != "call" or _SENT not in item.stash:
        return None
    data = item.stash[_SENT]
    del item.stash[_SENT]
    config = item.config
    report: pytest.TestReport = config.hook.pytest_report_from_serializable(
        config=config, data=data
    )
    # record_property ran in the child; junitxml reads the item's list later.
    for prop in report.user_properties:
        if prop not in item.user_properties:
            item.user_properties.append(prop)
    return report


def _relay(item: pytest.Item, message: dict[str, Any], ended: fork.Ended, plan: Plan) -> Callable[[], None]:
    def runtest() -> None:
        for record in message.get("warnings", ()):
            _reissue(record)
        stop = message.get("stop")
        if stop == "KeyboardInterrupt":
            raise KeyboardInterrupt
        if stop is not None:
            pytest.exit(message.get("reason", ""))
        if "report" in message:
            item.stash[_SENT] = message["report"]
            return
        why = message.get("error") or f"the forked test process {ended.describe()}"
        if ended.timed_out:
            why += f" ({plan.timeout:g}s)"
        pytest.fail(f"{why} before reporting; its captured output follows", pytrace=False)

    return runtest


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
    try:
        warnings.warn_explicit(record["message"], category, record["filename"], record["lineno"])
    except Warning:
        pass  # an "error" filter already failed the test in the child


def _record_denials(item: pytest.Item, message: dict[str, Any]) -> None:
    found = [Denial.from_dict(d) for d in message.get("denials", ())]
    if found:
        item.config.stash.setdefault(DENIALS, {}).setdefault(item.nodeid, []).extend(found)
