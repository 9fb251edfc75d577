"""The parent's role: fork at the call phase, then relay what the child reported.

The fork happens where the test body starts: ``item.runtest`` is swapped
for the call phase (by the innermost wrapper of ``pytest_runtest_call``, so
every other wrapper — capture, logging, skipping — has set up in the parent
and the child inherits it). The child runs the body and goes on from there
through the rest of the call phase, exactly as an unforked run would,
makes the call report with pytest's own hooks, and sends every report it
would have logged (:mod:`pytest_permission.child`).
The parent then puts those reports where pytest expects them: the subtest
reports are logged at once, the call report is the answer to
``pytest_runtest_makereport``, and the captured output, user properties and
warnings of the call phase are added to the item and re-issued, so the
teardown report and the warnings summary read as in an unrestricted run.

In the parent, the body's place is taken by a stand-in that returns, or
raises a private ``Skipped`` subclass when the child's call raised, so
pytest's own wrappers finish the call phase as usual (with nothing new to
capture), and ``xfail`` does not judge the child's final report a second
time: for that wrapper an exception that no ``raises=`` names and no
exception at all are exactly the two cases where it agrees with the
child.

Nothing the child sent runs here: it arrives as JSON data
(:mod:`pytest_permission.transport`); reports are rebuilt by pytest's own
deserialisation, warnings with their category only where the parent already
had that class and it has no code of its own that would run.
"""

from __future__ import annotations

import functools
import sys
import types
import warnings
from collections.abc import Callable, Generator
from typing import Any

import pytest

from pytest_permission import child as child_role
from pytest_permission import coverage_relay, fork, inline, tools, transport, verdict
from pytest_permission.errors import Denial
from pytest_permission.fork import Ended
from pytest_permission.plan import Plan

PLAN = pytest.StashKey[Plan]()
"""Set by the plugin on an item that must run isolated."""
_FINAL = pytest.StashKey[pytest.TestReport]()
"""The child's call report, until ``pytest_runtest_makereport`` returns it."""
_EXITING = pytest.StashKey[int]()
"""The child that sent its report and is exiting while the parent goes on."""
_PREPARED = pytest.StashKey[dict[tuple[object, ...], child_role.Prepared]]()
"""On the config: what each distinct plan's tests need, made once (guard,
exported policy, the tools' paths) and kept until the end; the kernel layer
keeps what it can reuse itself."""

REPORT_ATTRIBUTE = "permission_denials"
"""The call report's list of denial dicts: it travels with the report (to an
xdist controller too), so summaries are built from reports, not from state."""
JUNIT_PROPERTY = "permission_denial"

_OUTCOMES = frozenset({"passed", "failed", "skipped"})


class ChildRaised(pytest.skip.Exception):  # type: ignore[name-defined,misc]
    """In the parent, the call phase's exception when the child's call raised.

    The child's own report stands (``pytest_runtest_makereport`` returns it);
    this only tells pytest's wrappers in the parent that the call raised.
    A ``Skipped`` subclass, because no ``xfail(raises=...)`` names it and
    pytest never enters the debugger for it.
    """


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    plan = item.stash.get(PLAN, None)
    if plan is None:
        return (yield)
    if plan.isolation == "inline":
        prepared = _prepared(item, plan)
        return (yield from inline.run(item, plan, prepared.guard, prepared.exported))
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
    """The child's call report, as the child's pytest made it."""
    if call.when != "call" or _FINAL not in item.stash:
        return None
    report = item.stash[_FINAL]
    del item.stash[_FINAL]
    return report


@pytest.hookimpl(wrapper=True, specname="pytest_runtest_makereport")
def pytest_runtest_makereport_inline(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A test restricted inline: its denials on its call report, as a child's carry them."""
    report = yield
    if call.when == "call" and inline.DENIALS in item.stash:
        denials = item.stash[inline.DENIALS]
        del item.stash[inline.DENIALS]
        _carry(item, report, denials)
        verdict.annotate(item, item.stash[PLAN], item.stash[inline.GRANTED], report, call)
        if hasattr(item.config, "workerinput"):
            report = _sendable(item, report)
    return report


def _sendable(item: pytest.Item, report: pytest.TestReport) -> pytest.TestReport:
    """A report xdist can send, as a child's is: properties that are not plain data as
    their ``repr``, lone surrogates in a failure's text escaped.

    execnet refuses both; plain xdist then loses the report (and, for a
    failure, passes the session).
    """
    item.user_properties[:] = [(k, transport.plain(v)) for k, v in item.user_properties]
    report.user_properties = list(item.user_properties)  # the teardown report's too
    if not report.failed:
        return report
    config = item.config
    data = config.hook.pytest_report_to_serializable(config=config, report=report)
    payload = transport.encode(data)
    if b"\\ud" not in payload:
        return report
    return _report(item, transport.decode(payload, utf8=True))


def _carry(item: pytest.Item, report: pytest.TestReport, denials: list[dict[str, object]]) -> None:
    """The call report carries the denials; each is a JUnit property of its test too."""
    setattr(report, REPORT_ATTRIBUTE, denials)
    for data in denials:
        line = (JUNIT_PROPERTY, Denial.from_dict(data).line())
        item.user_properties.append(line)
        report.user_properties.append(line)


def denials_of(report: pytest.TestReport) -> list[Denial]:
    """The denials a call report carries (none for an unrestricted test)."""
    return [Denial.from_dict(d) for d in getattr(report, REPORT_ATTRIBUTE, ())]


def _forked(item: pytest.Item, plan: Plan, runtest: Callable[[], object]) -> None:
    """``item.runtest`` of an isolated test: the body runs in a child, which reports.

    In the child this runs the body and returns (or raises) as the body did:
    the child goes on with the rest of the call phase. In the parent it
    stands for the body once the child is done (see :func:`_relay`).
    """
    for stream in (sys.stdout, sys.stderr):
        stream.flush()  # nothing buffered may be written twice
    prepared = _prepared(item, plan)
    layer = prepared.layer(plan)
    try:
        child, writer = fork.fork()
    except BaseException:
        if layer is not None:
            layer.close()
        raise
    if child is None:
        assert writer is not None
        child_role.run(item, plan, writer, prepared, layer, runtest)
        return
    if layer is not None:
        layer.close()  # the parent's part of it; the child keeps its own
    ended = fork.wait(child, plan.timeout)
    if ended.status is None:
        item.stash[_EXITING] = child.pid
    _relay(item, plan, ended)()


def _prepared(item: pytest.Item, plan: Plan) -> child_role.Prepared:
    """The plan's :class:`~pytest_permission.child.Prepared`, made on first use."""
    cache = item.config.stash.setdefault(_PREPARED, {})
    key = (plan, str(item.path))  # the tools' folders are known by the time tests run
    found = cache.get(key)
    if found is None:
        found = cache[key] = child_role.prepare(item, plan)
    return found


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, object, object]:
    """Reap the test's child once its teardown is done: it exited meanwhile."""
    try:
        return (yield)
    finally:
        pid = item.stash.get(_EXITING, None)
        if pid is not None:
            del item.stash[_EXITING]
            fork.reap(pid)


def pytest_unconfigure(config: pytest.Config) -> None:
    fork.reap()


def _relay(item: pytest.Item, plan: Plan, ended: Ended) -> Callable[[], None]:
    """Put back what the child reported; return the stand-in for the test body."""
    message: dict[str, Any] = {}
    problem = ended.invalid
    if ended.payload is not None:
        try:
            message = transport.decode(ended.payload, utf8=hasattr(item.config, "workerinput"))
        except ValueError as exc:
            problem = f"its report could not be read ({exc})"
    try:
        coverage_relay.merge(message.get("coverage"))
        final = _replay(item, message)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        final, problem = None, f"its report could not be read ({type(exc).__name__}: {exc})"
    stop = message.get("stop")
    if isinstance(stop, dict) and problem is None:
        _stop(stop)
    if final is None or problem is not None:
        why = f"the forked test process {ended.describe()}"
        if ended.timed_out:
            why += f" ({plan.timeout:g}s)"
        detail = problem or message.get("error")
        text = f"{why}, and {detail}" if detail else f"{why} before reporting"
        return lambda: pytest.fail(f"{text}; its captured output follows", pytrace=False)
    item.stash[_FINAL] = final
    return _raise_reported if message.get("raised") is True else _nothing


def _nothing() -> None:
    """The test body, in the parent: it already ran, in the child."""


def _raise_reported() -> None:
    raise ChildRaised("the forked test process's call raised; its report stands")


def _stop(stop: dict[str, Any]) -> None:
    """The child's test stopped the session: stop it here the same way."""
    if stop.get("interrupt"):
        raise KeyboardInterrupt
    returncode = stop.get("returncode")
    pytest.exit(str(stop.get("reason", "")), returncode if isinstance(returncode, int) else None)


def _replay(item: pytest.Item, message: dict[str, Any]) -> pytest.TestReport | None:
    """Log the child's other reports, re-issue its warnings; the call report, made ready."""
    denials = [Denial.from_dict(d).to_dict() for d in message.get("denials", [])]
    failed = message.get("failed_subtests", 0)
    if isinstance(failed, int) and failed > 0:
        child_role.count_failed_subtests(item, failed)
    for data in message.get("reports", []):
        item.ihook.pytest_runtest_logreport(report=_report(item, data))
    for record in message.get("warnings", []):
        _reissue(record)
    for note in _list(message.get("notes", [])):  # why --pdb/--trace did not stop here
        _reissue({"message": str(note), "category": ["pytest.PytestWarning"],
                  "filename": str(item.path), "lineno": (item.location[1] or 0) + 1})
    item._report_sections.extend(_triples(message.get("sections", [])))
    tools.restore_item_state(item, message.get("item_state"))
    item.user_properties[:] = _pairs(message.get("user_properties", []))
    data = message.get("final")
    if data is None:
        return None
    final = _report(item, data)
    final.user_properties = list(item.user_properties)
    _carry(item, final, denials)
    return final


def _report(item: pytest.Item, data: object) -> pytest.TestReport:
    """A report the child serialised, rebuilt by pytest, pinned to this item's call."""
    if not isinstance(data, dict):
        raise ValueError("a report is not a JSON object")
    config = item.config
    report = config.hook.pytest_report_from_serializable(config=config, data=data)
    if not isinstance(report, pytest.TestReport) or report.outcome not in _OUTCOMES:
        raise ValueError("not a test report")
    report.nodeid = item.nodeid
    report.location = item.location
    report.when = "call"
    if isinstance(report.longrepr, list):  # JSON has no tuples: (path, lineno, reason)
        report.longrepr = tuple(report.longrepr)
    report.sections = _pairs(report.sections)
    report.user_properties = _pairs(report.user_properties)
    _keep_subtest_context(report, data)
    return report


def _pairs(items: object) -> list[tuple[Any, Any]]:
    return [tuple(p) for p in _list(items) if isinstance(p, (list, tuple)) and len(p) == 2]


def _triples(items: object) -> list[tuple[str, str, str]]:
    return [
        (str(w), str(k), str(c))
        for w, k, c in (t for t in _list(items) if isinstance(t, (list, tuple)) and len(t) == 3)
    ]


def _list(items: object) -> list[Any]:
    if not isinstance(items, list):
        raise ValueError(f"expected a list, got {type(items).__name__}")
    return items


def _keep_subtest_context(report: pytest.TestReport, data: dict[str, Any]) -> None:
    """A subtest's parameters as the child had them (already in ``repr`` form).

    pytest 9 rebuilds a subtest's context with ``repr()`` applied to each
    parameter a second time (``i='0'`` for ``i=0``); xdist does that too,
    but a serial run must read as an unforked one.
    """
    context = getattr(report, "context", None)
    sent = data.get("_subtest.context")
    kwargs = sent.get("kwargs") if isinstance(sent, dict) else None
    if context is not None and isinstance(kwargs, dict):
        object.__setattr__(context, "kwargs", {str(k): str(v) for k, v in kwargs.items()})


def _reissue(record: object) -> None:
    """A warning of the child's, recorded here as pytest records warnings of a test.

    Issued under an ``always`` filter: the child already applied the
    session's filters, so each warning that arrives is recorded once.
    """
    if not isinstance(record, dict):
        return
    category = _category([str(n) for n in _list(record.get("category", []))])
    lineno = record.get("lineno")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn_explicit(
            str(record.get("message", "")),
            category,
            str(record.get("filename", "")),
            lineno if isinstance(lineno, int) else 0,
        )


_STAND_INS: dict[str, type[Warning]] = {}
_CODE = frozenset({
    "__init__", "__new__", "__str__", "__repr__", "__getattribute__", "__getattr__",
    "__format__", "__del__", "__init_subclass__",
})
"""Methods a warning's re-issue and report call: a class with its own never runs here."""


def _category(names: list[str]) -> type[Warning]:
    """The parent's class of that name if it has no code of its own, else a stand-in."""
    if not names:
        return UserWarning
    found = _existing(names[0])
    if found is not None:
        return found
    if names[0] not in _STAND_INS:
        module, _, qualname = names[0].rpartition(".")
        stand_in = type(qualname.rpartition(".")[2] or "Warning", (pytest.PytestWarning,), {
            "__module__": module, "__qualname__": qualname,
            "__doc__": "A warning class of the forked test process's, by name only.",
        })
        _STAND_INS[names[0]] = stand_in
    return _STAND_INS[names[0]]


def _existing(name: str) -> type[Warning] | None:
    """The warning class ``module.qualname`` if the parent has it and it runs no code."""
    for module_name in _prefixes(name):
        module = sys.modules.get(module_name)
        if module is None:
            continue
        found: object = module
        for part in name[len(module_name) + 1 :].split("."):
            # vars() of a plain module or class reads its __dict__: no code of its own runs
            found = vars(found).get(part) if type(found) in (types.ModuleType, type) else None
        if isinstance(found, type) and issubclass(found, Warning) and _inert(found):
            return found
        return None
    return None


def _prefixes(name: str) -> list[str]:
    """``a.b.C`` → ``a.b``, ``a``: the modules a qualified name may start with."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]


def _inert(cls: type) -> bool:
    for base in cls.__mro__:
        if type(base) is not type:
            return False
        if base.__module__ != "builtins" and _CODE & vars(base).keys():
            return False
    return True

