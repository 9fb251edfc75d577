"""Every Python example in README.md, run as it stands.

A block that defines tests runs as a test module in a fresh pytest session
and all its tests must pass; any other block runs as a script. Next to each,
``data/rows.csv`` exists, as the first example reads it.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(), re.S | re.M)


def test_the_readme_has_examples() -> None:
    assert len(BLOCKS) >= 6


@pytest.mark.parametrize(
    "source", BLOCKS, ids=[f"block{n}" for n in range(1, len(BLOCKS) + 1)]
)
def test_readme_example_runs(pytester: pytest.Pytester, source: str) -> None:
    (pytester.path / "data").mkdir()
    (pytester.path / "data" / "rows.csv").write_text("city,temperature\nOslo,3\n")
    tests = len(re.findall(r"^def test_", source, re.M))
    if tests:
        pytester.makepyfile(test_example=source)
        result = pytester.runpytest_subprocess("-W", "error::pytest.PytestWarning")
        result.assert_outcomes(passed=tests)
    else:
        script = pytester.makepyfile(example=source)
        done = pytester.run(sys.executable, script)
        assert done.ret == 0, done.stderr.str()
