"""What the plugin adds to a restricted call phase's outcome, in either isolation.

Shared by :mod:`pytest_permission.child` and :mod:`pytest_permission.inline`:

* swallowed denials: a denial the test's own file handled (``pytest.raises``,
  a ``try`` in the test), one the test asserted on (``raises_access_denied``)
  and one the failure itself carries were not swallowed; any other was, and
  gets a warning, or under ``strict`` fails the test;
* under a failure the policy probably caused, what was granted and the one
  change that would allow it (:func:`annotate`).
"""

from __future__ import annotations

import warnings

import pytest

from pytest_permission import hints, kernel, marker
from pytest_permission.audit.guard import Guard
from pytest_permission.errors import Denial, chain
from pytest_permission.plan import Plan
from pytest_permission.policy import Policy


class SwallowedDenialWarning(pytest.PytestWarning):
    """The code under test caught an ``AccessDenied`` and went on."""


def judge(guard: Guard, plan: Plan, item: pytest.Item, failure: BaseException | None) -> None:
    """Warn about swallowed denials, or fail the test under ``strict``."""
    if plan.observe:
        return  # nothing was refused, so nothing was swallowed
    found = swallowed(guard, item, failure)
    if not found:
        return
    text = hints.swallowed(found)
    if plan.strict and failure is None:
        pytest.fail(f"{text}\n(strict: swallowed denials fail the test)", pytrace=False)
    lineno = (item.location[1] or 0) + 1
    warnings.warn_explicit(
        SwallowedDenialWarning(text), SwallowedDenialWarning, str(item.path), lineno
    )


def swallowed(guard: Guard, item: pytest.Item, failure: BaseException | None) -> list[Denial]:
    """Denials neither handled by the test's own file nor failing the test."""
    failing = {id(error) for error in chain(failure)}
    test_file = str(item.path)
    out = []
    for index, denial in enumerate(guard.denials):
        error = guard.raised.get(index)
        if error is not None:
            if id(error) in failing or id(error) in guard.expected:
                continue
            tb = error.__traceback__
            if tb is not None and tb.tb_frame.f_code.co_filename == test_file:
                continue  # pytest.raises / try-except in the test itself
        out.append(denial)
    return out


def annotate(
    item: pytest.Item, plan: Plan, granted: Policy,
    report: pytest.TestReport, call: pytest.CallInfo[None],
) -> None:
    """A ``permission`` section under a failure the kernel layer or the policy caused."""
    if call.excinfo is None or not report.failed:
        return
    failure = call.excinfo.value
    hint = kernel.explain(failure) or marker.hint_for(
        item, failure, declared=plan.policy, granted=granted
    )
    addsection = getattr(report.longrepr, "addsection", None)
    if hint is not None and addsection is not None:
        addsection("permission", hint)
