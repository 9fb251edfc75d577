"""``example_project/`` is documentation that runs: its suite must pass as the README says.

It is copied to a temporary folder and run there with ``python -m pytest``,
as a user would run it after ``cd example_project``, so that nothing in the
repository (its pyproject.toml, its caches) takes part.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="isolation needs os.fork")

EXAMPLE = Path(__file__).resolve().parent.parent / "example_project"
TESTS = 19
SWALLOWING = [
    "tests/test_cache.py::test_a_denied_write_is_recorded_even_when_swallowed",
    "tests/test_config.py::TestEnvironment::test_variables_not_granted_are_hidden",
]
"""The tests whose application code swallows a denial (and silence its warning)."""


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    copy = pytester.path / "example_project"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("__pycache__", ".*_cache"))
    monkeypatch.chdir(copy)
    for name in ("WEATHER_API_KEY", "WEATHER_URL"):  # as on a machine without the app
        monkeypatch.delenv(name, raising=False)
    return copy


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.run(sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rfE", *args)


def test_example_project_passes(pytester: pytest.Pytester, project: Path) -> None:
    result = run(pytester)
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=TESTS, warnings=0)
    result.stdout.fnmatch_lines(
        [
            "permission: enforcing on marked tests; layers: *",
            "*permission denials*",
            "tests/test_cli.py::test_shelling_out_needs_the_child_permission",
            "  ChildProcess * at */src/weatherapp/cli.py:*",
        ]
    )


def test_strict_session_fails_exactly_the_tests_that_swallow_denials(
    pytester: pytest.Pytester, project: Path
) -> None:
    result = run(pytester, "--permission-strict")
    result.assert_outcomes(passed=TESTS - len(SWALLOWING), failed=len(SWALLOWING))
    result.stdout.fnmatch_lines_random(
        [f"FAILED {nodeid}*" for nodeid in SWALLOWING]
        + ["*(strict: swallowed denials fail the test)*"]
    )
