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

from pytest_permission import coverage_relay, fork
from pytest_permission.child import ChildRole
from pytest_permission.errors import Denial
from pytest_permission.plan import Plan

PLAN = pytest.StashKey[Plan]()
"""Set by the plugin on an item that must run isolated."""
_SENT = pytest.StashKey[dict[str, Any]]()
_DENIED = pytest.StashKey[list[dict[str, object]]]()

REPORT_ATTRIBUTE = "permission_denials"
"""The call report's list of denial dicts: it travels with the report (to an
xdist controller too), so summaries are built from reports, not from state."""
JUNIT_PROPERTY = "permission_denial"


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
    coverage_relay.merge(message.get("coverage"))
    _record_denials(item, message.get("denials", []))
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
    """The child's call report in place of the parent's, carrying the denials."""
    if call.when != "call" or _DENIED not in item.stash:
        return None
    denials = item.stash[_DENIED]
    del item.stash[_DENIED]
    if _SENT in item.stash:
        config = item.config
        report: pytest.TestReport = config.hook.pytest_report_from_serializable(
            config=config, data=item.stash[_SENT]
        )
        del item.stash[_SENT]
        # record_property ran in the child; junitxml reads the item's list later.
        for prop in report.user_properties:
            if prop not in item.user_properties:
                item.user_properties.append(prop)
    else:  # the child died: the relay's failure, with the parent's capture
        report = pytest.TestReport.from_item_and_call(item, call)
    setattr(report, REPORT_ATTRIBUTE, denials)
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


def _record_denials(item: pytest.Item, denials: list[dict[str, object]]) -> None:
    """Keep the child's denials for the call report and the JUnit properties."""
    item.stash[_DENIED] = denials
    for data in denials:
        denial = Denial.from_dict(data)
        item.user_properties.append(
            (JUNIT_PROPERTY, f"{denial.permission} {denial.resource} at {denial.where}")
        )


def denials_of(report: pytest.TestReport) -> list[Denial]:
    """The denials a call report carries (none for an unrestricted test)."""
    return [Denial.from_dict(d) for d in getattr(report, REPORT_ATTRIBUTE, ())]
