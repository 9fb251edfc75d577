"""``example_project/`` is documentation that runs: its suite must pass as the README says.

It is copied to a temporary folder and run there with ``python -m pytest``,
as a user would run it after ``cd example_project``, so that nothing in the
repository (its pyproject.toml, its caches) takes part.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="isolation needs os.fork")

EXAMPLE = Path(__file__).resolve().parent.parent / "example_project"
README = EXAMPLE.parent / "README.md"
TESTS = 23
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


GUIDE = README.read_text().split("### Adopting the plugin on an existing suite")[1]
"""The README's adoption guide (and what follows it)."""


def guide_block(kind: str, index: int = 0) -> list[str]:
    """The lines of the guide's ``index``-th block of ``kind`` (console, text)."""
    blocks: list[str] = re.findall(rf"```{kind}\n(.*?)```", GUIDE, re.S)
    return blocks[index].splitlines()


def guide_commands() -> list[list[str]]:
    """The pytest commands of the README's adoption guide, as written there."""
    return [
        shlex.split(line[len("$ pytest") :].split("#")[0])
        for line in guide_block("console")
        if line.startswith("$ pytest")
    ]


def test_the_readme_adoption_guide_runs_as_written(
    pytester: pytest.Pytester, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    audit, record, enforce, check = guide_commands()
    monkeypatch.setenv("HOME", str(pytester.mkdir("home")))

    looked = run(pytester, *audit)
    looked.assert_outcomes(passed=4)
    shown = guide_block("text", 0)
    assert "permission audit" in shown[0] and len(shown) == 10
    looked.stdout.re_match_lines([re.escape(line) + "$" for line in shown[1:]])
    run(pytester, *record).stdout.fnmatch_lines(
        ["recorded 5 test(s) in *permissions.json", "*23 passed*"]
    )
    entries = json.loads((project / "permissions.json").read_text())["tests"]
    assert sorted(entries) == [
        "tests/test_client.py::test_parses_the_service_url",
        *(f"tests/test_unmarked.py::test_{name}" for name in (
            "a_config_file_of_its_own", "forecast", "the_command_line", "the_shared_cache",
        )),
    ]
    enforced = run(pytester, *enforce)
    enforced.assert_outcomes(passed=TESTS)
    enforced.stdout.fnmatch_lines(["permission: enforcing on every test; layers: *"])
    run(pytester, *check).assert_outcomes(passed=TESTS)

    # A change: test_forecast starts reading a dot file in the home folder.
    (Path.home() / ".weatherrc").write_text("units = metric\n")
    unmarked = project / "tests" / "test_unmarked.py"
    unmarked.write_text(unmarked.read_text().replace(
        "def test_forecast(weather_server):\n",
        "def test_forecast(weather_server):\n"
        "    (__import__('pathlib').Path.home() / '.weatherrc').read_text()\n",
    ))
    refused = run(pytester, *enforce)
    refused.assert_outcomes(passed=TESTS - 1, failed=1)
    refused.stdout.fnmatch_lines(["E   *FileSystemRead was denied for '*/.weatherrc'*"])
    checked = run(pytester, *check)
    checked.assert_outcomes(passed=TESTS - 1, failed=1)
    first, *rest = guide_block("text", 1)
    checked.stdout.fnmatch_lines([first.replace("permissions.json", "*permissions.json"), *rest])
    run(pytester, *record)
    run(pytester, *enforce).assert_outcomes(passed=TESTS)
