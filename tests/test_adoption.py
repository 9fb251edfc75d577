"""Adopting the plugin on a suite written without it: audit, record, enforce, same outcomes.

The project below is laid out as third-party suites are: a session fixture
that makes its own folder with ``tempfile.mkdtemp()``, fixtures that use
``tmp_path_factory``, a test that writes a script and runs it, click's
``CliRunner`` ways (saving and restoring ``os.environ``, an
``isolated_filesystem`` that changes into a temporary folder and back),
subprocesses, a dot file in the home folder, and tests that fail, skip and
xfail. None has a marker. The round trip must give every test the outcome
a plain run gives it, serial and under xdist, also on another "machine"
(another folder, home and temporary folder) with the file recorded here,
and the suggestions must not change between runs, machines or xdist.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="isolation needs os.fork")

HELPERS = '''
import contextlib, os, shutil, tempfile


@contextlib.contextmanager
def isolated_filesystem():
    """As click.testing.CliRunner.isolated_filesystem does it."""
    cwd = os.getcwd()
    folder = tempfile.mkdtemp()
    os.chdir(folder)
    try:
        yield folder
    finally:
        os.chdir(cwd)
        shutil.rmtree(folder)


@contextlib.contextmanager
def isolation(**env):
    """As click.testing.CliRunner.isolation saves and restores the environment."""
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(saved)
        os.environ.update(env)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
'''

CONFTEST = '''
import os, shutil, tempfile
import pytest


@pytest.fixture(scope="session")
def workdir():
    folder = tempfile.mkdtemp()
    with open(os.path.join(folder, "seed.txt"), "w") as file:
        file.write("seed")
    yield folder
    shutil.rmtree(folder)


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    (folder / "rows.csv").write_text("a,b")
    return folder


@pytest.fixture(scope="module")
def module_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")
'''

TEST_FILES = '''
import os
from pathlib import Path
import pytest
from helpers import isolated_filesystem

HERE = Path(__file__).parent


def test_reads_the_session_folder(workdir):
    assert Path(workdir, "seed.txt").read_text() == "seed"


def test_writes_into_the_session_folder(workdir):
    Path(workdir, "out.txt").write_text("out")
    assert Path(workdir, "out.txt").read_text() == "out"


def test_reads_the_dataset(dataset):
    assert (dataset / "rows.csv").read_text() == "a,b"


def test_module_cache(module_cache):
    (module_cache / "entry").write_text("files")


def test_isolated_filesystem():
    with isolated_filesystem():
        Path("made.txt").write_text("made")
        assert Path("made.txt").read_text() == "made"


def test_home_dot_file():
    assert Path("~/.layoutrc").expanduser().read_text() == "rc"


def test_project_file():
    assert (HERE / "data.txt").read_text() == "data"


def test_odd_variable_name():
    assert os.environ.get("    SHOUT") == "loud"


def test_fails_as_before():
    assert (HERE / "data.txt").read_text() == "other"


def test_skips_as_before():
    pytest.skip("not here")


@pytest.mark.xfail(reason="known", strict=True)
def test_xfails_as_before():
    assert (HERE / "data.txt").read_text() == "other"
'''

TEST_MORE = '''
def test_module_cache_too(module_cache):
    (module_cache / "entry").write_text("more")
'''

TEST_SCRIPTS = '''
import stat, subprocess, sys
from pathlib import Path

HERE = Path(__file__).parent


def test_runs_a_script_it_wrote(tmp_path):
    script = tmp_path / "tool"
    script.write_text("#!/bin/sh\\necho tool-ran\\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    out = subprocess.run([str(script)], capture_output=True, text=True)
    assert out.stdout == "tool-ran\\n", out.stderr


def test_runs_a_python_script_it_wrote(tmp_path):
    script = tmp_path / "tool.py"
    script.write_text("print('py-ran')")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert out.stdout == "py-ran\\n", out.stderr


def test_subprocesses():
    assert subprocess.run(["true"]).returncode == 0
    out = subprocess.run(["cat", str(HERE / "data.txt")], capture_output=True, text=True)
    assert out.stdout == "data"
'''

TEST_ENVIRONMENT = '''
import os
from helpers import isolation


def test_cli_runner_isolation():
    with isolation(LAYOUT_MODE="isolated"):
        assert os.environ["LAYOUT_MODE"] == "isolated"
    assert "LAYOUT_MODE" not in os.environ
'''

PLAIN = {
    "tests.test_files::test_fails_as_before": "failed",
    "tests.test_files::test_skips_as_before": "skipped",
    "tests.test_files::test_xfails_as_before": "xfailed",
}


def make_project(root: Path) -> Path:
    tests = root / "tests"
    tests.mkdir(parents=True)
    (root / "pytest.ini").write_text("[pytest]\n")
    for name, text in [
        ("helpers.py", HELPERS), ("conftest.py", CONFTEST), ("test_files.py", TEST_FILES),
        ("test_more.py", TEST_MORE), ("test_scripts.py", TEST_SCRIPTS),
        ("test_environment.py", TEST_ENVIRONMENT), ("data.txt", "data"),
    ]:
        (tests / name).write_text(text)
    return root


Suggested = dict[str, tuple[dict[str, object], list[str]]]
"""Each test's suggested grants and notes."""


class Machine:
    """A project checkout with its own home and temporary folder, run with ``python -m pytest``."""

    def __init__(
        self, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, root: Path
    ) -> None:
        self.pytester = pytester
        self.monkeypatch = monkeypatch
        self.project = make_project(root / "project")
        self.home = root / "home"
        self.home.mkdir()
        (self.home / ".layoutrc").write_text("rc")
        self.temp = root / "temp"
        self.temp.mkdir()
        self.runs = 0
        self.root = root

    def run(self, *args: str) -> pytest.RunResult:
        self.runs += 1
        with self.monkeypatch.context() as patch:
            patch.chdir(self.project)
            patch.setenv("HOME", str(self.home))
            patch.setenv("TMPDIR", str(self.temp))
            patch.setenv("    SHOUT", "loud")
            return self.pytester.run(
                sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                f"--basetemp={self.root / f'basetemp{self.runs}'}",
                f"--junitxml={self.root / 'junit.xml'}", *args,
            )

    def outcomes(self, *args: str) -> dict[str, str]:
        """Each test's outcome in a run, from its JUnit XML."""
        self.run(*args)
        found = {}
        for case in ET.parse(self.root / "junit.xml").iter("testcase"):
            kinds = [child.tag for child in case] + [
                child.get("type", "") for child in case if child.tag == "skipped"
            ]
            outcome = (
                "failed" if "failure" in kinds else "error" if "error" in kinds
                else "xfailed" if "pytest.xfail" in kinds else "skipped" if "skipped" in kinds
                else "passed"
            )
            found[f"{case.get('classname')}::{case.get('name')}"] = outcome
        return found

    def audit(self, *args: str) -> Suggested:
        """Each test's suggested grants and notes."""
        target = self.root / "audit.json"
        self.run(f"--permission-audit-json={target}", *args)
        tests = json.loads(target.read_text())["tests"]
        return {nodeid: (entry["grants"], entry["notes"]) for nodeid, entry in tests.items()}


@pytest.fixture
def here(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Machine:
    return Machine(pytester, monkeypatch, pytester.path / "here")


@pytest.fixture
def elsewhere(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> Machine:
    return Machine(pytester, monkeypatch, tmp_path_factory.mktemp("elsewhere"))


def round_trip(here: Machine, elsewhere: Machine) -> Suggested:
    """Audit, record, enforce (serial, xdist, elsewhere); the suggestions made on the way."""
    xdist = ["-n", "2"] if importlib.util.find_spec("xdist") else []
    plain = here.outcomes()
    assert {k: v for k, v in plain.items() if v != "passed"} == PLAIN

    # The suggestions: the same serial and under xdist, here and elsewhere.
    suggested = here.audit()
    assert here.audit(*xdist) == suggested
    assert elsewhere.audit() == suggested

    # Record here, enforce the file here and elsewhere: every test restricted, same outcomes.
    baseline = here.project / "permissions.json"
    here.run(f"--permission-baseline={baseline}", "--permission-baseline-update")
    recorded = baseline.read_bytes()
    assert json.loads(recorded)["tests"] == {k: v[0] for k, v in suggested.items()}
    here.run(f"--permission-baseline={baseline}", "--permission-baseline-update", *xdist)
    assert baseline.read_bytes() == recorded
    enforce = (f"--permission-baseline={baseline}", "--permission-baseline-enforce")
    assert here.outcomes(*enforce) == plain
    assert here.outcomes(*enforce, *xdist) == plain
    shutil.copy(baseline, elsewhere.project / "permissions.json")
    assert elsewhere.outcomes(*enforce) == plain
    return suggested


def test_third_party_layouts_audit_record_enforce_with_the_outcomes_of_a_plain_run(
    here: Machine, elsewhere: Machine
) -> None:
    suggested = round_trip(here, elsewhere)
    grants = json.loads((here.project / "permissions.json").read_text())["tests"]
    assert grants["tests/test_files.py::test_reads_the_session_folder"] == {
        "fs_read": ["{tempdir}/tmp*"]
    }
    assert grants["tests/test_files.py::test_reads_the_dataset"] == {
        "fs_read": ["{basetemp}/data*"]
    }
    assert grants["tests/test_files.py::test_home_dot_file"] == {"fs_read": ["~/.layoutrc"]}
    assert grants["tests/test_files.py::test_odd_variable_name"] == {"env": ["    SHOUT"]}
    assert grants["tests/test_environment.py::test_cli_runner_isolation"] == {
        "env": ["LAYOUT_MODE"]
    }
    assert grants["tests/test_scripts.py::test_runs_a_script_it_wrote"] == {
        "fs_read": ["{tmp_path}"], "fs_write": ["{tmp_path}"], "child": True
    }
    assert grants["tests/test_scripts.py::test_subprocesses"] == {
        "fs_read": ["{testdir}/data.txt"], "child": True
    }
    # A folder made by a fixture is named by what made it.
    assert suggested["tests/test_files.py::test_reads_the_dataset"][1] == [
        "fs_read: {basetemp}/data* is the folder the fixture `dataset` made with "
        "tmp_path_factory.mktemp('data'), whatever its number (it depends on the order "
        "fixtures run)"
    ]
    assert "the fixture `workdir` made" in (
        suggested["tests/test_files.py::test_reads_the_session_folder"][1][0]
    )
