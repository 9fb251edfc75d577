"""Inline isolation (``--permission-isolation=inline``, ``isolation="inline"``): no fork.

The audit layer is switched on in the pytest process around the test body
and off after it; the tests check both halves with real accesses, and that
only the test's own threads are held.
"""

from __future__ import annotations

import fnmatch
import sys

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the audit layer needs POSIX")


def test_the_body_is_restricted_in_the_pytest_process_and_only_the_body(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INLINE_SECRET", "hunter2")
    pytester.makefile(".txt", data="some data")
    pytester.makepyfile(
        """
        import os, socket, subprocess, sys, pytest
        from pytest_permission import AccessDenied, drop, has

        PARENT = os.getpid()
        DATA = os.path.join(os.path.dirname(__file__), "data.txt")

        @pytest.fixture
        def opened():
            with open(DATA) as f:  # setup is not restricted
                yield f.read()

        @pytest.mark.permission(isolation="inline")
        def test_restricted(opened):
            assert os.getpid() == PARENT and opened == "some data"
            with pytest.raises(AccessDenied):
                open(DATA)
            with pytest.raises(AccessDenied):
                socket.create_connection(("127.0.0.1", 9))
            with pytest.raises(AccessDenied):
                subprocess.run(["true"])
            assert "INLINE_SECRET" not in dict(os.environ)  # hidden (listing records nothing)

        def test_after_it_everything_is_back():
            assert os.environ["INLINE_SECRET"] == "hunter2"
            assert open(DATA).read() == "some data"
            assert has("fs.read") and has("child")
            assert "PYTEST_PERMISSION_POLICY" not in os.environ

        @pytest.mark.permission(isolation="inline", fs_read=["{testdir}"])
        def test_drop_holds_for_the_rest_of_the_test():
            assert open(DATA).read() == "some data"
            drop("fs.read")
            assert not has("fs.read", DATA)
            with pytest.raises(AccessDenied):
                open(DATA)

        @pytest.mark.permission(isolation="inline", fs_read=["{testdir}"])
        def test_and_not_after():
            assert open(DATA).read() == "some data"

        @pytest.mark.permission(isolation="inline", child=True, fs_read=["{testdir}"])
        def test_python_subprocesses_inherit_the_policy():
            code = "import sys; open(sys.argv[1]).read()"
            denied = subprocess.run([sys.executable, "-c", code, "/etc/hostname"],
                                    capture_output=True, text=True)
            assert "ERR_ACCESS_DENIED" in denied.stderr or "AccessDenied" in denied.stderr
            allowed = subprocess.run([sys.executable, "-c", code, DATA])
            assert allowed.returncode == 0
        """
    )
    result = pytester.runpytest_subprocess("-W", "error::pytest.PytestWarning")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(["permission: enforcing on marked tests; layers: *"])


def test_only_the_tests_threads_are_held(pytester: pytest.Pytester) -> None:
    """A fixture's thread in the pytest process is not the test's; a thread the test starts is."""
    pytester.makefile(".txt", data="some data")
    pytester.makepyfile(
        """
        import os, queue, threading, pytest
        from pytest_permission import AccessDenied

        DATA = os.path.join(os.path.dirname(__file__), "data.txt")

        @pytest.fixture(scope="module")
        def reader():
            requests, answers = queue.Queue(), queue.Queue()
            def serve():
                while (path := requests.get()) is not None:
                    try:
                        answers.put(open(path).read())
                    except Exception as exc:
                        answers.put(exc)
            thread = threading.Thread(target=serve)
            thread.start()
            yield lambda path: (requests.put(path), answers.get())[1]
            requests.put(None)
            thread.join()

        @pytest.mark.permission(isolation="inline", worker=True)
        def test_threads(reader):
            assert reader(DATA) == "some data"  # the fixture's thread: not held
            found = []
            def read():
                try:
                    open(DATA)
                except AccessDenied as exc:
                    found.append(exc.permission)
            thread = threading.Thread(target=read)
            thread.start()
            thread.join()
            assert found == ["FileSystemRead"]  # the test's own thread: held
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(passed=1)


def test_session_option_and_its_header(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import os

        PARENT = os.getpid()

        def test_no_fork():
            assert os.getpid() == PARENT
        """
    )
    result = pytester.runpytest_subprocess("--permission", "--permission-isolation=inline")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["permission: enforcing on every test, inline (no fork); *"])
    ini = pytester.runpytest_subprocess("--permission", "-o", "permission_isolation=inline")
    ini.assert_outcomes(passed=1)


def test_audit_runs_without_forking(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import os

        PARENT = os.getpid()

        def test_observed():
            assert os.getpid() == PARENT
            open("/etc/hostname").read()
        """
    )
    result = pytester.runpytest_subprocess("--permission-audit")
    result.assert_outcomes(passed=1)
    assert '@pytest.mark.permission(fs_read=["/etc/hostname"])' in result.stdout.str()


@pytest.mark.parametrize(
    ("args", "source", "message"),
    [
        (
            ["--permission-kernel=require", "--permission-isolation=inline"],
            "def test_x():\n    pass\n",
            "*kernel layer restricts a whole process for good, so it needs the forked child*",
        ),
        (
            ["--permission-isolation=sideways"],
            "def test_x():\n    pass\n",
            "*--permission-isolation*'sideways'*one of fork, inline*",
        ),
        (
            ["--permission-kernel=require"],
            "import pytest\n@pytest.mark.permission(isolation='inline')\ndef test_x():\n    pass\n",
            "*isolation='inline' runs the body in the pytest process*",
        ),
        (
            [],
            "import pytest\n@pytest.mark.permission(isolation='thread')\ndef test_x():\n    pass\n",
            "*isolation='thread' is not valid; accepted: 'fork'*'inline'*",
        ),
    ],
    ids=["require-and-inline", "bad-option", "require-and-inline-marker", "bad-marker"],
)
def test_mistakes_are_usage_or_collection_errors(
    pytester: pytest.Pytester, args: list[str], source: str, message: str
) -> None:
    pytester.makepyfile(source)
    result = pytester.runpytest_subprocess(*args)
    assert result.ret != 0
    assert any(fnmatch.fnmatch(line, message) for line in result.outlines + result.errlines), (
        result.outlines + result.errlines
    )
