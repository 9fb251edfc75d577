"""``--pdb`` and ``--trace`` on a restricted test: the debugger runs in the forked child.

The child is where the failing frame lives, so that is where the debugger
must stop; it needs standard input to be a terminal. The tests drive a real
pytest on a pseudo-terminal, as a user at a prompt would.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="isolation needs os.fork")

FAILING = """
import pytest

@pytest.mark.permission()
def test_fails():
    ini = "the failing frame's variable"
    assert ini == "something else"

@pytest.mark.permission()
def test_after():
    pass
"""


class Terminal:
    """A pytest session on a pseudo-terminal, read and answered like a user would."""

    def __init__(self, pytester: pytest.Pytester, *args: str) -> None:
        self.master, slave = os.openpty()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
        env.pop("PYTEST_ADDOPTS", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
            cwd=pytester.path, stdin=slave, stdout=slave, stderr=slave, env=env,
            start_new_session=True,
        )
        os.close(slave)
        self.seen = b""

    def expect(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while text.encode() not in self.seen:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.master], [], [], max(left, 0))
            if not ready:
                raise AssertionError(f"no {text!r} within {timeout}s; got:\n{self.text()}")
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # the session ended
                chunk = b""
            if not chunk:
                raise AssertionError(f"session ended before {text!r}; got:\n{self.text()}")
            self.seen += chunk
        before, _, self.seen = self.seen.partition(text.encode())
        return before.decode(errors="replace")

    def send(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\n")

    def finish(self, timeout: float = 60) -> str:
        """Everything the session writes until it ends."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([self.master], [], [], 1)
                try:
                    chunk = os.read(self.master, 4096) if ready else b""
                except OSError:  # the session ended and closed the terminal
                    break
                if ready and not chunk:
                    break
                self.seen += chunk
                if not ready and self.proc.poll() is not None:
                    break
        finally:
            self.proc.wait(timeout=60)
            os.close(self.master)
        return self.text()

    def text(self) -> str:
        return self.seen.decode(errors="replace")


def test_pdb_stops_at_the_failing_frame_in_the_child(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(FAILING)
    session = Terminal(pytester, "--pdb")
    session.expect("(Pdb)")
    session.send("p ini")
    assert "the failing frame's variable" in session.expect("(Pdb)")
    session.send("c")
    assert "1 failed, 1 passed" in session.finish()
    assert session.proc.returncode == 1


def test_trace_stops_at_the_start_of_the_test_in_the_child(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.permission()
        def test_traced():
            value = 41
            assert value + 1 == 42
        """
    )
    session = Terminal(pytester, "--trace")
    session.expect("(Pdb)")
    session.send("n")
    session.expect("(Pdb)")
    session.send("p value")
    assert "41" in session.expect("(Pdb)")
    session.send("c")
    session.finish()
    assert session.proc.returncode == 0


@pytest.mark.parametrize("option", ["--pdb", "--trace"])
def test_without_a_terminal_a_note_says_why_not(pytester: pytest.Pytester, option: str) -> None:
    pytester.makepyfile(FAILING)
    result = pytester.runpytest_subprocess(option)  # its standard input is closed
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines([f"*{option}: not entered: a restricted test *terminal*"])
