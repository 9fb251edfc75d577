"""Forked per-test isolation (spec section 6), through real inner pytest sessions."""

from __future__ import annotations

import sys

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="isolation needs os.fork")


def test_marked_test_runs_in_a_child_with_its_policy(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import os, pytest
        from pytest_permission import AccessDenied

        PARENT = os.getpid()

        @pytest.mark.permission()
        def test_denied(tmp_path):
            assert os.getpid() != PARENT
            with pytest.raises(AccessDenied) as info:
                open(os.path.join(os.path.dirname(__file__), "data.txt"))
            assert info.value.permission == "FileSystemRead"

        def test_untouched():
            assert os.getpid() == PARENT
        """
    )
    pytester.makefile(".txt", data="secret")
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=2)


def test_unrestricted_tests_after_a_restricted_one_are_unaffected(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first restricted test arms the audit layer's hooks in the pytest
    # process, switched off: everything after it must behave as before.
    pytester.makepyfile(
        """
        import ctypes, os, socket, subprocess, sys, threading, pytest
        from pytest_permission import AccessDenied, audit

        @pytest.mark.permission()
        def test_restricted():
            with pytest.raises(AccessDenied):
                os.environ["DENIED_HERE"] = "1"

        def test_everything_allowed_after(tmp_path):
            assert audit.active() is None
            assert os.environ["SECRET_TOKEN"] == "hunter2"
            os.environ["PYTEST_PERMISSION_POLICY"] = "set by a test"
            del os.environ["PYTEST_PERMISSION_POLICY"]
            assert open("/etc/hostname").read() is not None
            (tmp_path / "f").write_text("x")
            assert ctypes.CDLL(None).getpid() == os.getpid()
            tracer = lambda *a: None
            sys.settrace(tracer)
            sys.settrace(None)
            ran = []
            thread = threading.Thread(target=ran.append, args=(1,))
            thread.start()
            thread.join()
            assert ran == [1]
            assert subprocess.run(["true"]).returncode == 0
            with socket.socket() as server:
                server.bind(("127.0.0.1", 0))
        """
    )
    monkeypatch.setenv("SECRET_TOKEN", "hunter2")
    result = pytester.runpytest_subprocess("-W", "error::pytest.PytestWarning")
    result.assert_outcomes(passed=2)
    result.stdout.no_fnmatch_line("*test_everything_allowed_after*")  # no denial listed


def test_unhandled_denial_fails_the_test_with_the_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.permission(fs_read=[])
        def test_reads():
            open("/etc/hostname").read()
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*AccessDenied: Access to this API has been restricted.*FileSystemRead*/etc/hostname*",
            "*permission denials*",
            "*test_reads*",
            "*FileSystemRead /etc/hostname at *test_unhandled_denial_*.py:5",
        ]
    )


def test_setup_and_teardown_run_once_in_the_parent(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import os, pytest

        EVENTS = []
        PARENT = os.getpid()

        @pytest.fixture(scope="module")
        def resource():
            EVENTS.append(("setup", os.getpid()))
            yield "value"
            EVENTS.append(("teardown", os.getpid()))

        @pytest.mark.permission()
        @pytest.mark.parametrize("n", range(3))
        def test_uses(resource, n):
            assert resource == "value"
            EVENTS.append(("child", n))  # lost with the child, on purpose

        def test_after():
            assert EVENTS == [("setup", PARENT)]
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=4)


def test_output_capture_matches_an_unrestricted_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import logging, os, sys, pytest

        @pytest.mark.permission()
        def test_capsys(capsys):
            print("to stdout")
            assert capsys.readouterr().out == "to stdout\\n"

        @pytest.mark.permission()
        def test_capfd(capfd):
            os.write(1, b"raw fd\\n")
            assert capfd.readouterr().out == "raw fd\\n"

        @pytest.mark.permission()
        def test_caplog(caplog):
            logging.getLogger("app").warning("logged")
            assert caplog.messages == ["logged"]

        @pytest.mark.permission()
        def test_fails_with_output():
            print("shown on failure")
            sys.stderr.write("err on failure\\n")
            logging.getLogger("app").error("log on failure")
            assert False
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*Captured stdout call*",
            "shown on failure",
            "*Captured stderr call*",
            "err on failure",
            "*Captured log call*",
            "*log on failure*",
        ]
    )
    result = pytester.runpytest_subprocess("-s", "-k", "fails_with_output")
    result.stdout.fnmatch_lines(["*shown on failure*"])


def test_failure_report_on_ci_matches_an_unrestricted_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pytest reads CI while it explains a failed assert, in the child: the
    # variable must be visible (no truncation on CI) and not count as a denial
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.permission()
        def test_long_diff():
            assert list(range(40)) == list(range(1, 41))
        """
    )
    monkeypatch.setenv("CI", "true")
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*Full diff:*"])
    result.stdout.no_fnmatch_line("*truncated*")
    result.stdout.no_fnmatch_line("*SwallowedDenialWarning*")


def test_crashing_child_is_a_failed_test_and_the_session_goes_on(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import os, signal, pytest

        @pytest.mark.permission()
        def test_segfault():
            print("before the crash", flush=True)
            os.kill(os.getpid(), signal.SIGSEGV)

        @pytest.mark.permission()
        def test_exits():
            os._exit(3)

        def test_next():
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:faulthandler")
    result.assert_outcomes(failed=2, passed=1)
    result.stdout.fnmatch_lines(
        [
            "*forked test process was killed by signal 11 (SIGSEGV)*",
            "*before the crash*",
            "*forked test process exited with status 3*",
        ]
    )


def test_child_the_plugin_fails_to_restrict_fails_its_test_and_runs_nothing_else(
    pytester: pytest.Pytester,
) -> None:
    """Before this, only a kernel error ended such a child: any other one went
    on as a copy of the pytest process, running the rest of the session."""
    pytester.makeconftest(
        """
        import os
        from pytest_permission import audit

        PARENT = os.getpid()
        real = audit.install

        def install(*args, **kwargs):
            if os.getpid() != PARENT:
                raise RuntimeError("no guard today")
            return real(*args, **kwargs)

        audit.install = install
        """
    )
    pytester.makepyfile(
        """
        import os, pytest

        RAN = os.path.join(os.path.dirname(__file__), "ran.log")

        def log(name):
            with open(RAN, "a") as f:
                f.write(f"{name} {os.getpid()}\\n")

        @pytest.mark.permission()
        def test_restricted():
            pass

        def test_after():
            log("after")

        def test_last():
            log("last")
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(failed=1, passed=2)
    result.stdout.fnmatch_lines(
        ["*the forked test process *, and it could not be restricted: "
         "RuntimeError('no guard today')*"]
    )
    ran = (pytester.path / "ran.log").read_text().split()
    assert ran[::2] == ["after", "last"]


def test_timeout_kills_a_hung_child(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import time, pytest

        @pytest.mark.permission(timeout=1)
        def test_hangs():
            time.sleep(60)
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*killed after exceeding its timeout (1s)*"])


def test_keyboard_interrupt_stops_the_session(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.permission()
        def test_interrupts():
            raise KeyboardInterrupt

        def test_never_runs():
            pass
        """
    )
    result = pytester.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*KeyboardInterrupt*"])
    result.stdout.no_fnmatch_line("*test_never_runs PASSED*")


def test_outcomes_survive_serialisation(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.permission()
        def test_skip():
            pytest.skip("skipped inside")

        @pytest.mark.permission()
        @pytest.mark.xfail(reason="known")
        def test_xfail():
            assert False

        @pytest.mark.permission()
        @pytest.mark.xfail(strict=True)
        def test_xpass_strict():
            pass

        @pytest.mark.permission()
        def test_props(record_property):
            record_property("answer", 42)
        """
    )
    result = pytester.runpytest_subprocess("-rsx", "--junitxml=out.xml")
    result.assert_outcomes(skipped=1, xfailed=1, failed=1, passed=1)
    result.stdout.fnmatch_lines(["*skipped inside*", "*XFAIL*known*"])
    assert 'name="answer" value="42"' in (pytester.path / "out.xml").read_text()


def test_child_warnings_reach_the_parent_summary(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import warnings, pytest

        class AppWarning(UserWarning):
            pass

        @pytest.mark.permission()
        def test_warns():
            warnings.warn("careful", AppWarning)
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(["*warnings summary*", "*AppWarning: careful*"])
    result = pytester.runpytest_subprocess("-W", "error::UserWarning")
    result.assert_outcomes(failed=1)


def test_swallowed_denial_warns_and_strict_fails(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        app="""
        def load():
            try:
                return open("/etc/hostname").read()
            except OSError:
                return "default"
        """,
        test_app="""
        import pytest, app

        @pytest.mark.permission()
        def test_lenient():
            assert app.load() == "default"

        @pytest.mark.permission(strict=True)
        def test_strict():
            assert app.load() == "default"

        @pytest.mark.permission()
        def test_expected():
            with pytest.raises(PermissionError):
                open("/etc/hostname")
        """,
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=2, failed=1, warnings=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_strict _*",
            "the code under test swallowed 1 access denial(s):",
            "*FileSystemRead /etc/hostname at *app.py:3",
            "*strict: swallowed denials fail the test*",
            "*test_app.py:3: SwallowedDenialWarning: the code under test swallowed 1 access*",
            "*FileSystemRead /etc/hostname at *app.py:3*",
        ]
    )
    quiet = pytester.runpytest_subprocess(
        "-W", "ignore::pytest_permission.SwallowedDenialWarning", "-k", "lenient"
    )
    quiet.assert_outcomes(passed=1)


def test_threads_in_the_parent_give_no_fork_warning(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import threading, pytest

        @pytest.fixture(scope="session", autouse=True)
        def background():
            stop = threading.Event()
            thread = threading.Thread(target=stop.wait)
            thread.start()
            yield
            stop.set()
            thread.join()

        @pytest.mark.permission()
        def test_isolated():
            pass
        """
    )
    result = pytester.runpytest_subprocess("-W", "error")
    result.assert_outcomes(passed=1)


def test_no_zombies_and_no_leaked_descriptors(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import os, pytest

        AFTER_FIRST = []

        @pytest.mark.permission()
        @pytest.mark.parametrize("n", range(40))
        def test_many(n):
            pass

        def test_after_the_first_forty():
            AFTER_FIRST.append(len(os.listdir("/proc/self/fd")))

        @pytest.mark.permission()
        @pytest.mark.parametrize("n", range(40))
        def test_many_more(n):
            pass

        @pytest.mark.permission()
        @pytest.mark.parametrize("n", range(5))
        def test_crashes(n):
            os._exit(1)

        def test_clean():
            # the plan's prepared descriptors are kept, once: none more per test
            assert len(os.listdir("/proc/self/fd")) == AFTER_FIRST[0]
            with pytest.raises(ChildProcessError):
                os.waitpid(-1, os.WNOHANG)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(passed=82, failed=5)


def test_denials_are_junit_properties(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.permission()
        def test_swallows():
            try:
                open("/etc/hostname")
            except OSError:
                pass
        """
    )
    result = pytester.runpytest_subprocess("--junitxml=out.xml")
    result.assert_outcomes(passed=1)  # caught by the test itself: expected, no warning
    xml = (pytester.path / "out.xml").read_text()
    assert 'name="permission_denial" value="FileSystemRead /etc/hostname at ' in xml
