"""Inline isolation: a restricted body runs in the pytest process, no fork.

The audit layer is switched on around the test body only (the innermost
``pytest_runtest_call`` wrapper) and off right after, with what it hid put
back (:func:`pytest_permission.audit.enter`, :func:`~pytest_permission.audit.leave`).
Everything else of the call phase — capture, logging, the report — runs
as in an unrestricted test, so reports need no relaying at all.

What it gives up for its speed (a fork costs milliseconds, this some
microseconds): no kernel layer (a kernel rule lasts as long as the
process, and this process is pytest's); ``drop()`` holds for the rest of
the test, not for good; and the body's changes to Python objects stay in
the pytest process, as in any unrestricted test. It is also how audits and
baselines observe every test: observing refuses nothing, so there is
nothing to isolate.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Generator

import pytest

from pytest_permission import audit, startup, tools, verdict
from pytest_permission.audit.guard import Guard
from pytest_permission.plan import Plan
from pytest_permission.policy import Policy

DENIALS = pytest.StashKey[list[dict[str, object]]]()
"""The denials of the test's inline call phase, for its call report."""
GRANTED = pytest.StashKey[Policy]()
"""The policy in force when the body ended (after any ``drop()``), for the report's hint."""


def run(
    item: pytest.Item, plan: Plan, prepared: Guard, exported: str | None
) -> Generator[None, object, object]:
    """Delegated to by the ``pytest_runtest_call`` wrapper: the body runs under ``plan``.

    ``prepared`` is the plan's guard and ``exported`` its policy for Python
    subprocesses (``None`` when observing), both made once per plan.
    """
    before = os.environ.get(startup.VARIABLE)
    if exported is not None:
        startup.export(exported)
    undo = tools.prepare()
    guard = audit.enter(prepared, threads={threading.get_ident()})
    try:
        try:
            result = yield
        except (pytest.exit.Exception, KeyboardInterrupt):
            raise
        except BaseException as exc:
            verdict.judge(guard, plan, item, exc)
            raise
        verdict.judge(guard, plan, item, None)
        return result
    finally:
        item.stash[DENIALS] = [d.to_dict() for d in guard.denials]
        item.stash[GRANTED] = guard.policy
        audit.leave()
        undo()
        if exported is not None:
            if before is None:
                os.unsetenv(startup.VARIABLE)
            else:
                os.putenv(startup.VARIABLE, before)
