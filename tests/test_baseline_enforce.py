"""``--permission-baseline-enforce``: a recorded baseline becomes every test's policy.

Each test records the suite's baseline first, then enforces it and checks,
by actually attempting the accesses, that every test is held to exactly its
entry: what it used works, anything more is refused with ``AccessDenied``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="isolation needs os.fork")

SUITE = '''
import os, socket, subprocess, sys
from pathlib import Path
import pytest
from pytest_permission import raises_access_denied

HERE = Path(__file__).parent


def test_reads(tmp_path):
    assert (HERE / "data" / "a.txt").read_text() == "a"
    (tmp_path / "out.txt").write_text("out")
    assert (tmp_path / "out.txt").read_text() == "out"


def test_spawns():
    subprocess.run([sys.executable, "-c", "pass"], check=True)


def test_env():
    assert os.environ["ENFORCED_TOKEN"] == "t"


def test_pure():
    assert 2 * 2 == 4


@pytest.mark.permission(fs_read=["{testdir}/data/b.txt"])
def test_marked():
    assert (HERE / "data" / "b.txt").read_text() == "b"
    with raises_access_denied("fs.read"):
        (HERE / "data" / "a.txt").read_text()


def test_drops_itself(permission):
    assert (HERE / "data" / "a.txt").read_text() == "a"
    permission.drop("fs.read")
    assert permission.has("child")  # everything it did not drop, as in a plain run
    with raises_access_denied("fs.read"):
        (HERE / "data" / "a.txt").read_text()
'''
PASSED = 6


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ENFORCED_TOKEN", "t")
    pytester.makeini("[pytest]\n")
    tests = pytester.mkdir("tests")
    (tests / "data").mkdir()
    (tests / "data" / "a.txt").write_text("a")
    (tests / "data" / "b.txt").write_text("b")
    test_file = tests / "test_suite.py"
    test_file.write_text(SUITE)
    return test_file


def record(pytester: pytest.Pytester, *args: str, passed: int = PASSED) -> dict[str, object]:
    result = pytester.runpytest_subprocess(
        "--permission-baseline=perm.json", "--permission-baseline-update", *args
    )
    result.assert_outcomes(passed=passed)
    tests: dict[str, object] = json.loads((pytester.path / "perm.json").read_text())["tests"]
    return tests


def enforce(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        "--permission-baseline=perm.json", "--permission-baseline-enforce", "-rf", *args
    )


def test_a_recorded_suite_passes_enforced_with_every_test_restricted(
    pytester: pytest.Pytester, suite: Path
) -> None:
    recorded = record(pytester)
    # Tests whose code says what they may use (a marker, the fixture) have no entry.
    assert sorted(recorded) == [
        "tests/test_suite.py::test_env",
        "tests/test_suite.py::test_pure",
        "tests/test_suite.py::test_reads",
        "tests/test_suite.py::test_spawns",
    ]
    result = enforce(pytester)
    result.assert_outcomes(passed=PASSED)
    result.stdout.fnmatch_lines(["permission: enforcing on every test; layers: audit*"])
    denials = result.stdout.str().split("permission denials")[1]
    assert "test_marked" in denials and "test_drops_itself" in denials  # what they expect
    assert "test_reads" not in denials and "test_env" not in denials
    # Checking observes the others only: the tests that expect a denial still get it.
    pytester.runpytest_subprocess("--permission-baseline=perm.json").assert_outcomes(
        passed=PASSED
    )


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_each_test_is_held_to_its_entry(
    pytester: pytest.Pytester, suite: Path, workers: list[str]
) -> None:
    if workers:
        pytest.importorskip("xdist")
    record(pytester)
    source = suite.read_text()
    source = source.replace(  # each unmarked test now does one thing more than recorded
        "    assert 2 * 2 == 4\n", "    open('/etc/hostname').close()\n"
    ).replace(
        "check=True)\n", "check=True)\n    assert os.environ.get('ENFORCED_TOKEN') == 't'\n"
    ).replace(
        '    assert os.environ["ENFORCED_TOKEN"] == "t"\n',
        '    assert os.environ["ENFORCED_TOKEN"] == "t"\n'
        '    subprocess.run([sys.executable, "-c", "pass"], check=True)\n',
    ).replace(
        '    (tmp_path / "out.txt").write_text("out")\n',
        '    (tmp_path / "out.txt").write_text("out")\n    (HERE / "data" / "b.txt").read_text()\n',
    )
    suite.write_text(source)
    result = enforce(pytester, *workers)
    result.assert_outcomes(passed=PASSED - 4, failed=4)
    result.stdout.fnmatch_lines_random(
        [f"FAILED tests/test_suite.py::test_{name}*" for name in ("pure", "spawns", "env", "reads")]
        + [
            "E   *FileSystemRead was denied for '/etc/hostname'*",
            "E   *ChildProcess was denied for *",
            "E   *FileSystemRead was denied for '*/tests/data/b.txt'*",
            "E   *assert None == 't'",  # the variable is hidden: it reads as unset
        ]
    )
    # The report says where the grants came from, and how to widen them.
    result.stdout.fnmatch_lines(
        [
            "granted fs_read: nothing (its entry in the permission baseline *perm.json)",
            'to allow it: fs_read=[[]"/etc/hostname"] in its entry, which pytest '
            "--permission-baseline=*perm.json --permission-baseline-update records",
        ]
    )


def test_a_test_missing_from_the_file_gets_nothing_or_the_allow_grants(
    pytester: pytest.Pytester, suite: Path
) -> None:
    record(pytester)
    with suite.open("a") as file:
        file.write("\n\ndef test_new():\n    (HERE / 'data' / 'a.txt').read_text()\n")
    result = enforce(pytester)
    result.assert_outcomes(passed=PASSED, failed=1)
    result.stdout.fnmatch_lines(
        [
            "E   *FileSystemRead was denied for '*/tests/data/a.txt'*",
            "granted fs_read: nothing (the test is not in the permission baseline *perm.json)",
            "FAILED *::test_new*",
        ]
    )
    enforce(pytester, "--allow-fs-read=tests/data/a.txt").assert_outcomes(passed=PASSED, failed=1)
    granted = enforce(pytester, "--permission", "--allow-fs-read=tests/data/a.txt")
    granted.assert_outcomes(passed=PASSED + 1)


def test_inherit_in_a_marker_means_what_it_means_in_a_plain_run(
    pytester: pytest.Pytester,
) -> None:
    """Without --permission the rest of the session is unrestricted: so is "inherit"."""
    pytester.makepyfile(
        """
        import pytest
        from pytest_permission import raises_access_denied

        @pytest.mark.permission("inherit", net=False)
        def test_anything_but_the_network():
            open(__file__).read()
            with raises_access_denied("net"):
                __import__("socket").create_connection(("127.0.0.1", 9))

        def test_unmarked():
            pass
        """
    )
    record(pytester, passed=2)
    enforce(pytester).assert_outcomes(passed=2)


def test_markers_and_the_fixture_win_over_the_entries(
    pytester: pytest.Pytester, suite: Path
) -> None:
    """Entries for them (a hand-edited file, or code that gained a marker) are not used."""
    entries = record(pytester)
    entries["tests/test_suite.py::test_marked"] = {"fs_read": True}  # would let a.txt be read
    entries["tests/test_suite.py::test_drops_itself"] = {}  # would deny the first read
    (pytester.path / "perm.json").write_text(json.dumps({"version": 1, "tests": entries}))
    enforce(pytester).assert_outcomes(passed=PASSED)


def test_a_script_the_test_writes_and_runs_is_granted_by_the_recorded_entry(
    pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The read of a program the test started is recorded, as the kernel layer needs it.

    ``tmp_path`` must not be below the folder pytest runs in, as it is in a
    real project: ``python -m`` puts that folder on ``sys.path``, whose code
    files (``tool.py``) are readable implicitly.
    """
    pytester.makepyfile(
        """
        import stat, subprocess, sys

        def test_runs_a_shell_script(tmp_path):
            script = tmp_path / "tool"
            script.write_text("#!/bin/sh\\necho tool-ran\\n")
            script.chmod(script.stat().st_mode | stat.S_IXUSR)
            out = subprocess.run([str(script)], capture_output=True, text=True)
            assert out.stdout == "tool-ran\\n", out.stderr

        def test_runs_a_python_script(tmp_path):
            script = tmp_path / "tool.py"
            script.write_text("print('py-ran')")
            out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
            assert out.stdout == "py-ran\\n", out.stderr
        """
    )
    basetemp = f"--basetemp={tmp_path_factory.mktemp('elsewhere')}"
    for entry in record(pytester, basetemp, passed=2).values():
        assert entry == {"child": True, "fs_read": ["{tmp_path}"], "fs_write": ["{tmp_path}"]}
    enforce(pytester, basetemp).assert_outcomes(passed=2)


def test_entries_naming_fixture_folders_and_home_are_enforced(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture(scope="session")
        def dataset(tmp_path_factory):
            folder = tmp_path_factory.mktemp("data")
            (folder / "rows.csv").write_text("rows")
            return folder
        """
    )
    pytester.makepyfile(
        """
        import os

        def test_reads_the_dataset(dataset):
            assert (dataset / "rows.csv").read_text() == "rows"

        def test_reads_home():
            assert open(os.path.expanduser("~/.apprc")).read() == "rc"
        """
    )
    home = pytester.mkdir("home")
    (home / ".apprc").write_text("rc")
    monkeypatch.setenv("HOME", str(home))
    recorded = record(pytester, passed=2)
    assert sorted(recorded.values(), key=str) == [
        {"fs_read": ["{basetemp}/data*"]}, {"fs_read": ["~/.apprc"]}
    ]
    enforce(pytester).assert_outcomes(passed=2)
    (home / ".other").write_text("")
    pytester.makepyfile(
        test_more="import os\n\ndef test_reads_home():\n"
        "    open(os.path.expanduser('~/.other')).read()\n"
    )
    enforce(pytester).assert_outcomes(passed=2, failed=1)


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_the_parity_probe_recorded_checked_and_enforced_reports_as_without_the_plugin(
    pytester: pytest.Pytester, workers: list[str]
) -> None:
    """Every kind of item and outcome of ``test_parity``'s probe, through a baseline's modes."""
    from test_parity import _probe, _run, _same

    _probe(pytester, xdist=bool(workers))
    plain = _run(pytester, "plain", "-p", "no:permission", *workers)
    baseline = "--permission-baseline=perm.json"
    for mode, args in [
        ("record", [baseline, "--permission-baseline-update"]),
        ("check", [baseline]),
        ("enforce", [baseline, "--permission-baseline-enforce"]),
    ]:
        _same(plain, _run(pytester, mode, *args, *workers), f"{mode} {' '.join(workers)}")
