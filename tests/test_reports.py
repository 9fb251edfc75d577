"""How a restricted test's failure reads, in real pytest sessions, and that nothing else alarms.

A denial's traceback ends in the test's frame, as a ``PermissionError``'s
does; under it the ``permission`` section says what was granted and what to
change, and applying that change makes the test pass. Swallowed denials
point at ``raises_access_denied``. Variables that pytest and its plugins
read for the test, pseudo-file names and pdb's start-up files raise no
false alarm, even under ``-W error``.
"""

from __future__ import annotations

import re
import sys

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="isolation needs os.fork")


def literal(lines: list[str]) -> list[str]:
    """fnmatch patterns for ``lines``: ``[`` matches itself, ``*`` stays a wildcard."""
    return [line.replace("[", "[[]") for line in lines]


def failure_block(lines: list[str], test: str) -> list[str]:
    """The traceback part of one test's failure: from its header to its sections."""
    start = next(i for i, line in enumerate(lines) if re.match(rf"^_+ {test} _+$", line))
    block = []
    for line in lines[start + 1 :]:
        if re.match(r"^(_{3,} |-{3,} |={3,} )", line):
            break
        block.append(line)
    return block


@pytest.mark.parametrize("style", ["auto", "long", "short"])
def test_a_denials_traceback_reads_like_a_permission_errors(
    pytester: pytest.Pytester, style: str
) -> None:
    """The same test raising ``PermissionError`` itself differs only in the exception lines."""
    source = """
        import pytest

        @pytest.mark.permission()
        def test_it():
            name = "/etc/hostname"
            {statement}
        """
    blocks = []
    for statement in ("open(name)", 'raise PermissionError(13, "Permission denied", name)'):
        pytester.makepyfile(test_it=source.format(statement=statement))
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--tb={style}")
        result.assert_outcomes(failed=1)
        blocks.append(failure_block(result.outlines, "test_it"))
    denied, plain = blocks
    assert len(denied) == len(plain), "\n".join(denied)
    differing = [(a, b) for a, b in zip(denied, plain, strict=True) if a != b]
    assert [" ".join(a.split()).split(":")[0] for a, _ in differing] == [
        "> open(name)" if style != "short" else "open(name)",
        "E pytest_permission.AccessDenied",
        *(["test_it.py"] if style != "short" else []),  # short has no location line
    ]
    if style != "short":
        assert differing[-1] == ("test_it.py:6: AccessDenied", "test_it.py:6: PermissionError")
    assert not any("pytest_permission" in line for line in denied if not line.startswith("E"))
