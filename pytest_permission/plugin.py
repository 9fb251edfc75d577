"""The pytest adapter (entry point ``pytest11``): options, marker, fixture, reports.

Thin on purpose: the semantics live in :mod:`pytest_permission.policy`, the
enforcement in :mod:`pytest_permission.audit`, the forked call phase in
:mod:`pytest_permission.isolation` (parent) and
:mod:`pytest_permission.child` (child). This module decides which tests
run isolated and with which :class:`~pytest_permission.plan.Plan`.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

import pytest

import pytest_permission
from pytest_permission import child as child_role
from pytest_permission import isolation, kernel, marker, observation, options, recorded, summary
from pytest_permission.errors import Denial
from pytest_permission.kernel import widening
from pytest_permission.plan import Plan
from pytest_permission.policy import Policy

SESSION = pytest.StashKey[options.Session]()


def pytest_addoption(parser: pytest.Parser) -> None:
    options.add_options(parser)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> Generator[None, None, None]:
    """Before pytest's capture takes standard input away: is it a terminal?

    A restricted test's ``--pdb``/``--trace`` debugger runs in its forked
    child, which can only ask whether the user is there to answer now.
    """
    early_config.stash[child_role.TERMINAL] = _stdin_is_terminal()
    return (yield)


def _stdin_is_terminal() -> bool:
    try:
        return os.isatty(0)
    except OSError:
        return False


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", marker.MARKER_LINE)
    session = config.stash[SESSION] = options.session_settings(config)
    _check_kernel(session.kernel)
    widening.warn_session(config, session)
    config.pluginmanager.register(isolation, "permission-isolation")
    if session.observe:  # every access is recorded: the audit replaces the denial list
        config.pluginmanager.register(
            observation.Observation(config, session), "permission-observation"
        )
    else:
        config.pluginmanager.register(summary.DenialSummary(), "permission-summary")
    _preload()


def _preload() -> None:
    """Load ``ctypes`` unrestricted, so that ``import ctypes`` works in a test without
    ``ffi`` (its import opens the process's symbols)."""
    import ctypes  # noqa: F401


def _check_kernel(mode: str) -> None:
    """Ask the kernel once what it offers; with ``require``, refuse to start without it."""
    if mode == "off":
        return
    missing = kernel.support().missing
    if mode == "require" and missing:
        raise pytest.UsageError(
            "--permission-kernel=require (or permission_kernel = require): the kernel layer "
            "is not available here: " + "; ".join(missing)
        )
    kernel.start(mode)


CAN_ISOLATE = hasattr(os, "fork")
"""Without ``fork`` (Windows) tests run unrestricted, and the header says so."""


def pytest_report_header(config: pytest.Config) -> str:
    if not CAN_ISOLATE:
        return "permission: not enforced: this platform has no os.fork (tests run unrestricted)"
    session = config.stash[SESSION]
    if session.observe:
        return "permission: observing every test, enforcing nothing (audit/baseline run)"
    mode = "every test" if session.every_test else "marked tests"
    if session.isolation == "inline":
        return f"permission: enforcing on {mode}, inline (no fork); layers: audit"
    return f"permission: enforcing on {mode}; layers: {kernel.describe(session.kernel)}"


@pytest.hookimpl(wrapper=True)
def pytest_pycollect_makeitem(
    collector: pytest.Collector, name: str, obj: object
) -> Generator[None, Any, Any]:
    """Reject a malformed marker when its test is collected, naming the test."""
    result = yield
    items = result if isinstance(result, list) else [result]
    for item in items:
        if isinstance(item, pytest.Item):
            mark = item.get_closest_marker("permission")
            if mark is not None:
                try:
                    marker.validate(mark)
                    _kernel_needs_a_fork(mark, collector.config.stash[SESSION])
                except (ValueError, TypeError) as exc:
                    raise collector.CollectError(
                        f"{item.nodeid}: invalid @pytest.mark.permission: {exc}"
                    ) from None
                widening.warn(item, mark, item.config.stash[SESSION])
    return result


def _kernel_needs_a_fork(mark: pytest.Mark, session: options.Session) -> None:
    if mark.kwargs.get("isolation") == "inline" and session.kernel == "require":
        raise ValueError(
            "isolation='inline' runs the body in the pytest process, where the kernel layer "
            "--permission-kernel=require asks for cannot go (it restricts a process for good); "
            "accepted with require: isolation='fork' or no isolation keyword"
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    yield
    plan = plan_for(item)
    if plan is not None:
        item.stash[isolation.PLAN] = plan


def plan_for(item: pytest.Item) -> Plan | None:
    """The plan a test runs under, or ``None`` to run it untouched."""
    if not CAN_ISOLATE:
        return None
    session = item.config.stash[SESSION]
    plan = _declared_plan(item, session)
    if not session.observe or (not session.audit and recorded.manages_itself(item)):
        # A baseline covers the tests whose code says nothing: the others run as it says.
        if plan is None:
            return None
        return replace(plan, kernel="off" if plan.isolation == "inline" else session.kernel)
    # Observed, in the pytest process: observing refuses nothing, so nothing needs a fork.
    # has() keeps answering as the test would run.
    unrestricted = Plan(Policy.allow_all(), implicit=session.implicit, timeout=session.timeout)
    return replace(plan or unrestricted, observe=True, isolation="inline")


def _declared_plan(item: pytest.Item, session: options.Session) -> Plan | None:
    """The plan the marker, the fixture, an enforced baseline or ``--permission`` asks for."""
    mark = item.get_closest_marker("permission")
    own = "permission" in getattr(item, "fixturenames", ())
    if mark is None and not own and session.baseline_enforce:
        mark = recorded.entry_for(item, session.recorded)
        if mark is not None or not session.enforce:  # for the report's hint
            item.stash[marker.BASELINE_ENTRY] = (mark, str(session.baseline))
    if mark is None:
        # With the fixture a test drops what it wants itself; an enforced baseline leaves it be.
        if own and (session.baseline_enforce or not session.enforce):
            return Plan(
                Policy.allow_all(), session.strict, session.implicit, session.timeout,
                isolation=session.isolation,
            )
        if session.every_test:  # not in an enforced baseline: what --permission grants, if given
            policy = session.policy if session.enforce else Policy()
            return Plan(
                policy, session.strict, session.implicit, session.timeout,
                isolation=session.isolation,
            )
        return None
    return _marked_plan(item, session, mark)


class _Read(NamedTuple):
    """A marker, read: which per-test folders it names, and its plans by folder."""

    mark: pytest.Mark
    tmp_path: bool
    basetemp: bool
    plans: dict[tuple[Path, Path | None], Plan]


_MARKS = pytest.StashKey[dict[int, _Read]]()
"""Markers read so far, by ``id``: a module's ``pytestmark`` or a parametrized
test's marker is parsed once, not once per test."""


def _marked_plan(item: pytest.Item, session: options.Session, mark: pytest.Mark) -> Plan:
    known = item.config.stash.setdefault(_MARKS, {})
    read = known.get(id(mark))
    if read is None or read.mark is not mark:
        written = repr(mark.args) + repr(mark.kwargs)
        read = known[id(mark)] = _Read(
            mark, "{tmp_path}" in written, "{basetemp}" in written, {}
        )
    tmp_path = basetemp = None
    if read.tmp_path:
        tmp_path = item._request.getfixturevalue("tmp_path")  # type: ignore[attr-defined]
    if read.basetemp:
        factory = item._request.getfixturevalue("tmp_path_factory")  # type: ignore[attr-defined]
        basetemp = factory.getbasetemp()
    testdir = Path(item.path).parent
    found = read.plans.get((testdir, basetemp)) if tmp_path is None else None
    if found is not None:  # a tmp_path is every test's own: never kept
        return found
    settings = marker.settings_for(
        mark,
        session=session.inherited,
        rootdir=item.config.rootpath,
        testdir=testdir,
        tmp_path=tmp_path,
        basetemp=basetemp,
    )
    plan = Plan(
        settings.policy,
        session.strict if settings.strict is None else settings.strict,
        session.implicit if settings.implicit is None else settings.implicit,
        session.timeout if settings.timeout is None else settings.timeout,
        isolation=settings.isolation or session.isolation,
    )
    if tmp_path is None:
        read.plans[(testdir, basetemp)] = plan
    return plan


class PermissionFixture:
    """Node's ``process.permission`` for the running test."""

    def has(self, scope: str, resource: object = None) -> bool:
        return pytest_permission.has(scope, resource)

    def drop(self, scope: str, resource: object = None) -> None:
        pytest_permission.drop(scope, resource)

    @property
    def denials(self) -> list[Denial]:
        return pytest_permission.denials()


@pytest.fixture
def permission() -> PermissionFixture:
    """``has()``/``drop()``/``denials`` of the test's policy; isolates the test."""
    return PermissionFixture()
