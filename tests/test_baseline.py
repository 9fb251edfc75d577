"""Capability baselines: record what each test uses, fail a test that starts using more."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest

from pytest_permission import baseline
from pytest_permission.suggest import Grants, Needs

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="isolation needs os.fork")

SUITE = '''
import os, socket, subprocess, sys
from pathlib import Path
import pytest

HERE = Path(__file__).parent
PORT = {port}


@pytest.fixture(scope="module")
def server():
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", PORT))
        listener.listen()
        yield


def test_reads(tmp_path):
    assert (HERE / "data" / "a.txt").read_text() == "a"
    (tmp_path / "out.txt").write_text("out")


def test_talks(server):
    socket.create_connection(("127.0.0.1", PORT), timeout=5).close()


def test_spawns():
    subprocess.run([sys.executable, "-c", "pass"], check=True)


def test_pure():
    assert 2 * 2 == 4
'''


@pytest.fixture
def port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free: int = probe.getsockname()[1]
    return free


@pytest.fixture
def suite(pytester: pytest.Pytester, port: int) -> Path:
    pytester.makeini("[pytest]\n")
    tests = pytester.mkdir("tests")
    (tests / "data").mkdir()
    (tests / "data" / "a.txt").write_text("a")
    (tests / "data" / "b.txt").write_text("b")
    test_file = tests / "test_suite.py"
    test_file.write_text(SUITE.format(port=port))
    return test_file


RECORDED = {
    "tests": {
        "tests/test_suite.py::test_pure": {},
        "tests/test_suite.py::test_reads": {
            "fs_read": ["{testdir}/data/a.txt"],
            "fs_write": ["{tmp_path}"],
        },
        "tests/test_suite.py::test_spawns": {"child": True},
        "tests/test_suite.py::test_talks": {"net": ["127.0.0.1"]},  # a free port: no port
    },
    "version": 1,
}


def record(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    result = pytester.runpytest_subprocess(
        "--permission-baseline=perm.json", "--permission-baseline-update", *args
    )
    result.assert_outcomes(passed=4)
    return result


def test_record_writes_a_sorted_reviewable_file_and_check_passes_unchanged(
    pytester: pytest.Pytester, suite: Path
) -> None:
    result = record(pytester)
    result.stdout.fnmatch_lines(
        [
            "*permission baseline*",
            f"recorded 4 test(s) in {pytester.path / 'perm.json'}",
            "tests/test_suite.py::test_pure (new)",
            "tests/test_suite.py::test_reads (new)",
            "  + fs_read: {testdir}/data/a.txt",
            "  + fs_write: {tmp_path}",
        ]
    )
    text = (pytester.path / "perm.json").read_text()
    assert json.loads(text) == RECORDED
    assert text == json.dumps(RECORDED, indent=2, sort_keys=True) + "\n"

    again = record(pytester)  # stable: the same run writes the same bytes
    assert (pytester.path / "perm.json").read_text() == text
    assert "(new)" not in again.stdout.str() and "(changed)" not in again.stdout.str()

    check = pytester.runpytest_subprocess("--permission-baseline=perm.json")
    check.assert_outcomes(passed=4)
    check.stdout.fnmatch_lines(["permission: observing every test, enforcing nothing*"])
    assert "permission baseline" not in check.stdout.str()


def test_check_fails_a_test_that_uses_more_and_hints_at_what_is_no_longer_used(
    pytester: pytest.Pytester, suite: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PURE_SECRET", "s")  # reading a variable that is not set uses nothing
    record(pytester)
    source = suite.read_text()
    source = source.replace(  # test_pure starts talking to the server
        "def test_pure():\n", "def test_pure(server):\n    socket.create_connection(('127.0.0.1',"
        " PORT), timeout=5).close()\n    os.environ.get('PURE_SECRET')\n",
    )
    source = source.replace(  # test_spawns stops spawning
        '    subprocess.run([sys.executable, "-c", "pass"], check=True)\n', "    pass\n"
    )
    suite.write_text(source)
    result = pytester.runpytest_subprocess("--permission-baseline=perm.json")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_pure _*",
            "tests/test_suite.py::test_pure uses more than the permission baseline *perm.json:",
            "+ env: PURE_SECRET",
            "+ net: 127.0.0.1",
            "(if intended, record it with --permission-baseline-update)",
            "*permission baseline*",
            "no longer used (update the baseline with --permission-baseline-update):",
            "tests/test_suite.py::test_spawns",
            "  - child",
            "*FAILED tests/test_suite.py::test_pure*",
        ]
    )


def test_a_test_missing_from_the_baseline_may_use_nothing(
    pytester: pytest.Pytester, suite: Path
) -> None:
    record(pytester)
    with suite.open("a") as file:
        file.write(
            "\n\ndef test_new_pure():\n    pass\n"
            "\n\ndef test_new_reader():\n    (HERE / 'data' / 'b.txt').read_text()\n"
        )
    result = pytester.runpytest_subprocess("--permission-baseline=perm.json")
    result.assert_outcomes(passed=5, failed=1)
    result.stdout.fnmatch_lines(
        [
            "tests/test_suite.py::test_new_reader is not in the permission baseline *:",
            "+ fs_read: {testdir}/data/b.txt",
        ]
    )


def test_a_failing_test_keeps_its_failure_and_gets_the_diff_as_a_section(
    pytester: pytest.Pytester, suite: Path
) -> None:
    record(pytester)
    suite.write_text(
        suite.read_text().replace("assert 2 * 2 == 4", "open('/etc/hostname').read()\n    assert 0")
    )
    result = pytester.runpytest_subprocess("--permission-baseline=perm.json")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        ["*assert 0*", "*- permission baseline -*", "+ fs_read: /etc/hostname"]
    )


def test_update_keeps_the_entries_of_tests_that_did_not_run(
    pytester: pytest.Pytester, suite: Path
) -> None:
    stale = {"tests": {"tests/test_suite.py::test_gone": {"ffi": True}}, "version": 1}
    (pytester.path / "perm.json").write_text(json.dumps(stale))
    result = pytester.runpytest_subprocess(
        "--permission-baseline=perm.json", "--permission-baseline-update", "-k", "spawns"
    )
    result.assert_outcomes(passed=1, deselected=3)
    result.stdout.fnmatch_lines(["tests/test_suite.py::test_spawns (new)", "  + child"])
    assert json.loads((pytester.path / "perm.json").read_text())["tests"] == {
        "tests/test_suite.py::test_gone": {"ffi": True},
        "tests/test_suite.py::test_spawns": {"child": True},
    }


def test_baseline_under_xdist_records_the_same_file_and_catches_the_change(
    pytester: pytest.Pytester, suite: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("xdist")
    monkeypatch.setenv("XDIST_VAR", "x")
    record(pytester, "-n", "2")
    assert json.loads((pytester.path / "perm.json").read_text()) == RECORDED
    suite.write_text(suite.read_text().replace("assert 2 * 2 == 4", "os.getenv('XDIST_VAR')"))
    result = pytester.runpytest_subprocess("--permission-baseline=perm.json", "-n", "2")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*test_pure uses more than the permission baseline*",
                                 "+ env: XDIST_VAR"])


@pytest.mark.parametrize(
    ("args", "content", "message"),
    [
        (["--permission-baseline=none.json"], None,
         "*--permission-baseline: *none.json does not exist; record it first with "
         "--permission-baseline-update*"),
        (["--permission-baseline-update"], None,
         "*--permission-baseline-update needs --permission-baseline=FILE*"),
        (["--permission-baseline=bad.json"], "{not json",
         "*--permission-baseline: *bad.json: not JSON*"),
        (["--permission-baseline=bad.json"], '{"version": 7, "tests": {}}',
         "*bad.json: not a version 1 permission baseline*"),
        (["--permission-baseline=bad.json"], '{"version": 1, "tests": []}',
         "*bad.json: 'tests' must map node ids to grants*"),
        (["--permission-baseline-enforce"], None,
         "*--permission-baseline-enforce needs --permission-baseline=FILE*"),
        (["--permission-baseline=bad.json", "--permission-baseline-enforce",
          "--permission-baseline-update"], "{}",
         "*--permission-baseline-enforce restricts every test, --permission-baseline-update "
         "enforces nothing and records what tests use: give one of them*"),
        (["--permission-baseline=bad.json", "--permission-baseline-enforce",
          "--permission-audit"], "{}",
         "*--permission-baseline-enforce restricts every test, --permission-audit enforces "
         "nothing*"),
        (["--permission-baseline=bad.json", "--permission-baseline-enforce",
          "--permission-audit-json=a.json"], "{}",
         "*--permission-baseline-enforce restricts every test, --permission-audit-json*"),
        (["--permission-baseline=none.json", "--permission-baseline-enforce"], None,
         "*--permission-baseline: *none.json does not exist; record it first with "
         "--permission-baseline-update*"),
        (["--permission-baseline=bad.json", "--permission-baseline-enforce"],
         '{"version": 1, "tests": {"t.py::test_x": {"fs_reed": ["/x"]}}}',
         "*--permission-baseline: *bad.json: the entry of t.py::test_x: unknown keyword "
         "'fs_reed' (did you mean 'fs_read'?)*"),
        (["--permission-baseline=bad.json", "--permission-baseline-enforce"],
         '{"version": 1, "tests": {"t.py::test_x": {"child": ["yes"]}}}',
         "*bad.json: the entry of t.py::test_x: child=[[]'yes'] is not valid*"),
        (["--permission-baseline=bad.json"],  # checking validates the entries too
         '{"version": 1, "tests": {"t.py::test_x": {"fs_read": ["{nowhere}/x"]}}}',
         "*bad.json: the entry of t.py::test_x: fs_read entry '{nowhere}/x' has an unknown "
         "placeholder*"),
    ],
)
def test_usage_errors(
    pytester: pytest.Pytester, args: list[str], content: str | None, message: str
) -> None:
    pytester.makepyfile("def test_x():\n    pass\n")
    if content is not None:
        (pytester.path / "bad.json").write_text(content)
    result = pytester.runpytest_subprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_compare_lists_added_and_unused_entries() -> None:
    found = Needs(
        entries={"fs_read": {"{testdir}/data/a.txt", "/etc/hosts"}, "net": {"api.x.com:443"}},
        switches={"child"},
    )
    entry: Grants = {"fs_read": ["{testdir}/data"], "net": True, "ffi": True, "env": ["OLD"]}
    diff = baseline.compare(entry, found)
    assert diff.added == ("child", "fs_read: /etc/hosts")
    assert diff.unused == ("env: OLD", "ffi")
    assert diff.lines() == ["+ child", "+ fs_read: /etc/hosts", "- env: OLD", "- ffi"]
    assert baseline.compare(None, Needs()).lines() == []


def test_diff_lines_quote_an_entry_whose_spaces_would_not_show() -> None:
    found = Needs(entries={"env": {"    SHOUT", "PLAIN", "TAB\tBED"}})
    assert baseline.compare({"env": ["OLD "]}, found).lines() == [
        '+ env: "    SHOUT"', "+ env: PLAIN", '+ env: "TAB\\tBED"', '- env: "OLD "'
    ]


@pytest.mark.skipif(pytest.version_tuple < (9,), reason="the subtests fixture is pytest 9's")
def test_subtest_reports_do_not_stand_for_their_test(pytester: pytest.Pytester) -> None:
    """Under xdist they reach the controller first, without the test's accesses."""
    pytest.importorskip("xdist")
    pytester.makepyfile(
        """
        import os

        def test_with_subtests(subtests):
            for i in range(2):
                with subtests.test(i=i):
                    assert i >= 0
            open(os.path.join(os.path.dirname(__file__), "data.txt")).read()
        """
    )
    pytester.makefile(".txt", data="d")
    record = ("--permission-baseline=perm.json", "--permission-baseline-update", "-n", "1")
    pytester.runpytest_subprocess(*record).assert_outcomes(passed=1)
    entry = json.loads((pytester.path / "perm.json").read_text())["tests"]
    assert entry["test_subtest_reports_do_not_stand_for_their_test.py::test_with_subtests"][
        "fs_read"
    ][-1] == "{testdir}/data.txt"
    check = pytester.runpytest_subprocess("--permission-baseline=perm.json", "-n", "1")
    check.assert_outcomes(passed=1)
    assert "no longer used" not in check.stdout.str()
