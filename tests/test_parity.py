"""Outcome parity (spec section 6): every item reports with the plugin exactly as without it.

One probe project holds every kind of outcome pytest knows, in every kind of
item (functions, parametrized, unittest ``TestCase`` with ``subTest``,
pytest 9's ``subtests``, doctests, an item whose plugin overrides
``runtest``). It runs without the plugin (``-p no:permission``), then with
``--permission`` and every grant, with ``--permission-audit``, and with
markers and the ``permission`` fixture on every test, each serially and
under ``-n 2``. A conftest records what the terminal reporter counted
(category, test id, phase, subtest) and each failure's crash line; the test
asserts that these records and the exit status are identical to the plain
run's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="isolation needs os.fork")

PYTEST_9 = int(pytest.__version__.split(".")[0]) >= 9

RECORDER = '''
import json, os, pytest

def pytest_configure(config):
    config.addinivalue_line("markers", "probe: a probe marker")

def _row(category, report):
    context = getattr(report, "context", None)
    sub = None if context is None else [context.msg, sorted(map(list, context.kwargs.items()))]
    crash = getattr(getattr(report, "longrepr", None), "reprcrash", None)
    message = None if crash is None else crash.message.splitlines()[0]
    longrepr = None if report.longrepr is None or crash is not None else str(report.longrepr)
    return [category, report.nodeid, report.when, sub, message, longrepr,
            getattr(report, "wasxfail", None)]

@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    terminalreporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if hasattr(session.config, "workerinput") or terminalreporter is None:
        return
    rows = []
    for category, reports in terminalreporter.stats.items():
        for report in reports:
            if hasattr(report, "nodeid") and category != "warnings":
                rows.append(_row(category, report))
    warned = terminalreporter.stats.get("warnings", [])
    warnings = sorted(str(w.message).splitlines()[0] for w in warned)
    out = {"rows": sorted(rows, key=json.dumps), "warnings": warnings}
    with open(os.environ["PARITY_OUT"], "w", encoding="utf-8", errors="surrogateescape") as f:
        json.dump(out, f, sort_keys=True)
'''

PLAIN_ITEM_PLUGIN = '''
import pytest

def pytest_collect_file(parent, file_path):
    if file_path.suffix == ".probe":
        return ProbeFile.from_parent(parent, path=file_path)

class ProbeFile(pytest.File):
    def collect(self):
        for line in self.path.read_text().splitlines():
            name, _, expected = line.partition("=")
            yield ProbeItem.from_parent(self, name=name, expected=expected)

class ProbeItem(pytest.Item):
    def __init__(self, *, expected, **kwargs):
        super().__init__(**kwargs)
        self.expected = expected

    def runtest(self):
        if self.expected != "ok":
            raise ProbeFailure(self.expected)

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, ProbeFailure):
            return f"probe {self.name} failed: {excinfo.value}"
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, 0, f"probe: {self.name}"

class ProbeFailure(Exception):
    pass
'''

FUNCTIONS = '''
import os, sys, warnings, pytest

@pytest.fixture
def broken_setup():
    raise RuntimeError("setup broke")

@pytest.fixture
def broken_teardown():
    yield
    raise RuntimeError("teardown broke")

class NoArgs(Exception):
    """Pickles, but does not unpickle: __init__ takes no argument (attrs' frozen errors)."""
    def __init__(self):
        super().__init__("no-args error")

def test_passes():
    print("some output")

def test_fails():
    x = 1
    assert x == 2, "one is not two"

def test_errors():
    raise KeyError("missing")

def test_setup_error(broken_setup):
    pass

def test_teardown_error(broken_teardown):
    pass

def test_fails_and_teardown_error(broken_teardown):
    assert False

@pytest.mark.skip(reason="decorated")
def test_skip_mark():
    pass

@pytest.mark.skipif(True, reason="condition")
def test_skipif_mark():
    pass

def test_skip_in_body():
    pytest.skip("in the body")

def test_importorskip():
    pytest.importorskip("no_such_module_for_parity")

@pytest.mark.xfail(reason="known")
def test_xfail_fails():
    assert False

@pytest.mark.xfail(reason="known")
def test_xpass():
    pass

@pytest.mark.xfail(reason="strict", strict=True)
def test_xpass_strict():
    pass

@pytest.mark.xfail(raises=ValueError, reason="raises")
def test_xfail_raises_matches():
    raise ValueError("v")

@pytest.mark.xfail(raises=ValueError, reason="raises")
def test_xfail_raises_mismatch():
    raise TypeError("t")

@pytest.mark.xfail(raises=NoArgs, reason="unpicklable")
def test_xfail_raises_unpicklable():
    raise NoArgs()

@pytest.mark.xfail(raises=NoArgs, reason="unpicklable", strict=True)
def test_xfail_raises_unpicklable_mismatch():
    raise NoArgs.__new__(TypeError, "not NoArgs")

def test_unpicklable_failure():
    raise NoArgs()

def test_xfail_in_body():
    pytest.xfail("imperative")

def test_dynamic_xfail(request):
    request.applymarker(pytest.mark.xfail(reason="dynamic"))
    assert False

def test_fail_call():
    pytest.fail("explicit", pytrace=False)

def test_warns():
    warnings.warn(UserWarning("a user warning"))

def test_system_exit():
    sys.exit(3)

@pytest.mark.parametrize("value", [1, 2, "three", b"\\xff".decode("utf-8", "surrogateescape")])
def test_parametrized(value):
    assert isinstance(value, int)

@pytest.mark.parametrize("name", ["ok"], ids=["caf\\u00e9-\\U0001F600"])
def test_unicode_id(name):
    assert name == "ok"

def test_environment_saved_and_restored():
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(saved)
    assert dict(os.environ) == saved

def test_record_property(record_property):
    record_property("answer", 42)

class TestClass:
    def test_method_passes(self):
        pass

    def test_method_fails(self):
        assert [1, 2] == [1, 3]
'''

UNITTESTS = '''
import unittest

class Probe(unittest.TestCase):
    def test_passes(self):
        self.assertTrue(True)

    def test_fails(self):
        self.assertEqual(1, 2)

    def test_errors(self):
        raise ValueError("unittest error")

    @unittest.skip("decorated")
    def test_skip_decorator(self):
        pass

    def test_skip_in_body(self):
        self.skipTest("in the body")

    @unittest.expectedFailure
    def test_expected_failure(self):
        self.assertEqual(1, 2)

    @unittest.expectedFailure
    def test_unexpected_success(self):
        pass

    def test_subtests(self):
        for i in range(4):
            with self.subTest(i=i):
                self.assertEqual(i % 2, 0)

    def test_subtests_all_pass(self):
        for i in range(3):
            with self.subTest("even", i=i):
                self.assertEqual(i * 2 % 2, 0)

class BrokenSetUp(unittest.TestCase):
    def setUp(self):
        raise RuntimeError("setUp broke")

    def test_never_runs(self):
        pass

@unittest.skip("whole class")
class SkippedClass(unittest.TestCase):
    def test_in_skipped_class(self):
        pass
'''

SURROGATES = '''
import pytest

def test_surrogate_in_message():
    pytest.fail("bad name: " + b"\\xff".decode("utf-8", "surrogateescape"))

def test_record_object_property(record_property):
    record_property("object", object())
'''
"""Failure text that is not valid UTF-8, a property that is no plain data:
execnet cannot send them, so xdist itself breaks on them (see
test_xdist_breaks_the_same_way); the plugin sends the property as its repr."""

SUBTESTS = '''
def test_subtests_fixture(subtests):
    for i in range(4):
        with subtests.test(msg="case", i=i):
            assert i % 2 == 0

def test_subtests_fixture_all_pass(subtests):
    for i in range(3):
        with subtests.test(i=i):
            pass
'''

DOCTESTS = '''
def double(x):
    """
    >>> double(2)
    4
    >>> double(3)
    7
    """
    return x * 2

def triple(x):
    """
    >>> triple(2)
    6
    """
    return x * 3
'''

STOPPERS = {
    "exit": '''
import pytest

def test_before():
    pass

def test_exits():
    pytest.exit("stopping here", returncode=3)

def test_after():
    pass
''',
    "interrupt": '''
def test_before():
    pass

def test_interrupts():
    raise KeyboardInterrupt

def test_after():
    pass
''',
    "maxfail": '''
import pytest

def test_first_fails():
    assert False

def test_second_fails():
    assert False

def test_third():
    pass
''',
}

EVERY_GRANT = [
    "--permission",
    "--allow-fs-read=*",
    "--allow-fs-write=*",
    "--allow-net",
    "--allow-child-process",
    "--allow-worker",
    "--allow-addons",
    "--allow-ffi",
    "--allow-inspector",
    "--allow-env",
]

MARK_EVERY_TEST = '''
import pytest

def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.permission("inherit"))
'''

FIXTURE_ON_EVERY_TEST = '''
import pytest

def pytest_collection_modifyitems(items):
    for item in items:
        if hasattr(item, "fixturenames") and "permission" not in item.fixturenames:
            item.fixturenames.append("permission")
'''

MODES: dict[str, list[str]] = {
    "permission": EVERY_GRANT,
    "inline": [*EVERY_GRANT, "--permission-isolation=inline"],
    "audit": ["--permission-audit"],
}


def _probe(
    pytester: pytest.Pytester, extra_conftest: str = "", *, xdist: bool = False
) -> None:
    pytester.makeconftest(RECORDER + PLAIN_ITEM_PLUGIN + extra_conftest)
    pytester.makepyfile(
        **({} if xdist else {"test_surrogates": SURROGATES}),
        test_functions=FUNCTIONS,
        test_unittests=UNITTESTS,
        probe_doctests=DOCTESTS,
        **({"test_subtests": SUBTESTS} if PYTEST_9 else {}),
    )
    (pytester.path / "items.probe").write_text("first=ok\nsecond=boom\n")
    pytester.makeini("[pytest]\naddopts = --doctest-modules -p no:cacheprovider -p no:randomly\n")


def _run(pytester: pytest.Pytester, name: str, *args: str) -> dict[str, Any]:
    """One session in a new process; output read as bytes (a probe prints surrogates)."""
    out = pytester.path / f"parity-{name}.json"
    env = {**os.environ, "PARITY_OUT": str(out)}
    env.pop("PYTEST_ADDOPTS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "xdist", *args],
        cwd=pytester.path, env=env, capture_output=True, timeout=300, stdin=subprocess.DEVNULL,
    )
    recorded = (
        json.loads(out.read_text(encoding="utf-8", errors="surrogateescape"))
        if out.exists() else None
    )
    stdout = (proc.stdout + proc.stderr).decode("utf-8", "backslashreplace")
    return {"exit": proc.returncode, "recorded": recorded, "stdout": stdout[-6000:]}


def _same(plain: dict[str, Any], other: dict[str, Any], label: str) -> None:
    assert plain["recorded"] is not None, plain["stdout"]
    assert other["recorded"] is not None, f"{label}: no outcome recorded\n{other['stdout']}"
    rows_plain = {json.dumps(r) for r in plain["recorded"]["rows"]}
    rows_other = {json.dumps(r) for r in other["recorded"]["rows"]}
    assert sorted(rows_other - rows_plain) == [] and sorted(rows_plain - rows_other) == [], (
        f"{label}: outcomes differ from the plain run\n"
        f"only with the plugin: {sorted(rows_other - rows_plain)}\n"
        f"only without it: {sorted(rows_plain - rows_other)}\n{other['stdout']}"
    )
    assert other["exit"] == plain["exit"], f"{label}: exit status\n{other['stdout']}"


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
@pytest.mark.parametrize("mode", sorted(MODES))
def test_session_modes_report_exactly_as_without_the_plugin(
    pytester: pytest.Pytester, mode: str, workers: list[str]
) -> None:
    _probe(pytester, xdist=bool(workers))
    plain = _run(pytester, "plain", "-p", "no:permission", *workers)
    other = _run(pytester, mode, *MODES[mode], *workers)
    _same(plain, other, f"--{mode} {' '.join(workers)}")
    if mode != "audit":
        assert other["recorded"]["warnings"] == plain["recorded"]["warnings"]


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
@pytest.mark.parametrize(
    "how", [MARK_EVERY_TEST, FIXTURE_ON_EVERY_TEST], ids=["marker", "fixture"]
)
def test_markers_and_fixture_report_exactly_as_without_the_plugin(
    pytester: pytest.Pytester, how: str, workers: list[str]
) -> None:
    _probe(pytester, xdist=bool(workers))
    plain = _run(pytester, "plain", "-p", "no:permission", *workers)
    _probe(pytester, how, xdist=bool(workers))
    other = _run(pytester, "marked", *workers)
    _same(plain, other, f"{how.split(chr(10))[3]} {' '.join(workers)}")
    assert other["recorded"]["warnings"] == plain["recorded"]["warnings"]


@pytest.mark.parametrize("mode", ["permission", "inline"])
@pytest.mark.parametrize("options", [[], ["--maxfail=1"], ["-x"]], ids=["all", "maxfail", "x"])
@pytest.mark.parametrize("stopper", sorted(STOPPERS))
def test_stopping_the_session_is_the_same(
    pytester: pytest.Pytester, stopper: str, options: list[str], mode: str
) -> None:
    pytester.makeconftest(RECORDER)
    pytester.makepyfile(test_stop=STOPPERS[stopper])
    plain = _run(pytester, "plain", "-p", "no:permission", *options)
    other = _run(pytester, mode, *MODES[mode], *options)
    _same(plain, other, f"{stopper} {options} {mode}")


def test_the_probe_covers_what_it_claims(pytester: pytest.Pytester) -> None:
    """The plain run of the probe has every outcome kind, so parity means something."""
    _probe(pytester)
    plain = _run(pytester, "plain", "-p", "no:permission")
    categories = {row[0] for row in plain["recorded"]["rows"]}
    assert {"passed", "failed", "error", "skipped", "xfailed", "xpassed"} <= categories
    ids = {row[1] for row in plain["recorded"]["rows"]}
    assert any("Probe::test_subtests" in i for i in ids)
    assert any(i.endswith("probe_doctests.double") for i in ids)
    assert "items.probe::second" in ids
    if PYTEST_9:
        assert any(row[3] is not None for row in plain["recorded"]["rows"])  # subtest reports



@pytest.mark.parametrize("mode", sorted(MODES))
def test_xdist_reports_what_execnet_cannot_send(pytester: pytest.Pytester, mode: str) -> None:
    """Better than plain xdist, never worse: a failure whose text is not UTF-8 still fails.

    Plain xdist loses that report (execnet refuses it, the worker logs an
    internal error) and the session passes. A restricted test's report is
    relayed by the plugin, which escapes what execnet cannot send.
    """
    pytester.makeconftest(RECORDER)
    pytester.makepyfile(test_surrogates=SURROGATES, test_other="def test_passes():\n    pass\n")
    plain = _run(pytester, "plain", "-p", "no:permission", "-n", "2")
    assert plain["exit"] != 1  # xdist's own loss: the failure is not counted
    other = _run(pytester, mode, *MODES[mode], "-n", "2")
    assert other["exit"] == 1, other["stdout"]
    failed = [r[1] for r in other["recorded"]["rows"] if r[0] == "failed"]
    assert failed == ["test_surrogates.py::test_surrogate_in_message"], other["stdout"]
