"""The plugin beside the tools users already run (issue 5), through real pytest sessions.

Each test installs nothing: a test that needs an optional plugin skips with
the reason when it is missing (tox installs them all).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="isolation needs os.fork")

APP = """
def only_in_child():
    value = 1
    return value + 1


def never():
    return 0
"""

TEST_APP = """
import pytest
import app

@pytest.mark.permission()
def test_restricted():
    assert app.only_in_child() == 2
"""

CHILD_ONLY = "app.py*5*1*80%*7"
"""Lines 2-3 run only in the forked child; only ``never()``'s body (7) is missed."""


# -- coverage -------------------------------------------------------------------


def test_pytest_cov_counts_lines_run_in_the_child(pytester: pytest.Pytester) -> None:
    pytest.importorskip("pytest_cov")
    pytester.makepyfile(app=APP, test_app=TEST_APP)
    result = pytester.runpytest_subprocess("--cov=app", "--cov-report=term-missing")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([CHILD_ONLY])


def test_pytest_cov_with_xdist_counts_lines_run_in_the_child(pytester: pytest.Pytester) -> None:
    pytest.importorskip("pytest_cov")
    pytest.importorskip("xdist")
    pytester.makepyfile(app=APP, test_app=TEST_APP)
    result = pytester.runpytest_subprocess("-n", "2", "--cov=app", "--cov-report=term-missing")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([CHILD_ONLY])


@pytest.mark.parametrize("run", [["-p"], []], ids=["parallel", "append"])
def test_coverage_run_and_combine_count_lines_run_in_the_child(
    pytester: pytest.Pytester, run: list[str]
) -> None:
    pytest.importorskip("coverage")
    pytester.makepyfile(app=APP, test_app=TEST_APP)

    def coverage(*args: str) -> pytest.RunResult:
        return pytester.run(sys.executable, "-m", "coverage", *args)

    assert coverage("run", *run, "-m", "pytest", "-p", "no:cacheprovider").ret == 0
    combine = ["combine"] if run else ["combine", "--append"]
    assert coverage(*combine).ret == 0
    report = coverage("report", "-m", "--include=app.py")
    report.stdout.fnmatch_lines([CHILD_ONLY])


# -- pytest-xdist -----------------------------------------------------------------

XDIST_SUITE = """
import os, pytest
from pytest_permission import AccessDenied

@pytest.mark.permission()
@pytest.mark.parametrize("n", range(4))
def test_denied(n):
    with pytest.raises(AccessDenied) as info:
        open("/etc/hostname")
    assert (info.value.code, info.value.permission, info.value.resource) == (
        "ERR_ACCESS_DENIED", "FileSystemRead", "/etc/hostname")

@pytest.mark.permission()
def test_swallowed():
    try:
        open("/etc/passwd")
    except OSError:
        pass

@pytest.mark.permission(fs_read=["/etc/hostname"])
def test_granted():
    assert open("/etc/hostname").read()
"""


@pytest.mark.parametrize("workers", ["2", "auto"])
def test_xdist_aggregates_denials_on_the_controller(
    pytester: pytest.Pytester, workers: str
) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile(test_suite=XDIST_SUITE)
    result = pytester.runpytest_subprocess("-n", workers, "--junitxml=out.xml")
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(["*= permission denials =*"])
    for n in range(4):
        result.stdout.fnmatch_lines(
            [f"test_suite.py::test_denied[[]{n}[]]", "*FileSystemRead /etc/hostname at *"]
        )
    result.stdout.fnmatch_lines(
        ["test_suite.py::test_swallowed", "*FileSystemRead /etc/passwd at *"]
    )
    xml = (pytester.path / "out.xml").read_text()
    assert xml.count('name="permission_denial" value="FileSystemRead /etc/hostname at ') == 4
    assert 'name="permission_denial" value="FileSystemRead /etc/passwd at ' in xml


def test_xdist_loadscope_sets_module_fixtures_up_once_per_worker(
    pytester: pytest.Pytester,
) -> None:
    pytest.importorskip("xdist")
    module = """
        import os, pytest

        @pytest.fixture(scope="module")
        def resource(request):
            with open(os.path.join(str(request.config.rootpath), "setups.log"), "a") as log:
                log.write(f"{{__name__}} {{os.getpid()}}\\n")
            return os.getpid()

        @pytest.mark.permission()
        @pytest.mark.parametrize("n", range(5))
        def test_uses(resource, n):
            assert resource == os.getppid()
        """
    pytester.makepyfile(test_one=module.format(), test_two=module.format())
    result = pytester.runpytest_subprocess("-n", "2", "--dist", "loadscope")
    result.assert_outcomes(passed=10)
    setups = (pytester.path / "setups.log").read_text().split()[::2]
    assert sorted(setups) == ["test_one", "test_two"]


def test_xdist_workers_with_threads_fork_under_w_error(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
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
        @pytest.mark.parametrize("n", range(4))
        def test_isolated(n):
            pass
        """
    )
    quiet = ("-p", "no:benchmark", "-p", "no:asyncio")  # they warn at configure, unrelated
    result = pytester.runpytest_subprocess("-n", "2", "-W", "error", *quiet)
    result.assert_outcomes(passed=4)


def test_xdist_kills_a_wedged_child_and_names_it(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile(
        """
        import time, pytest

        @pytest.mark.permission()
        def test_wedged():
            time.sleep(600)

        @pytest.mark.permission()
        def test_fine():
            pass
        """
    )
    result = pytester.runpytest_subprocess("-n", "2", "--permission-timeout=1", timeout=60)
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        ["*_ test_wedged _*", "*killed after exceeding its timeout (1s)*", "FAILED *test_wedged*"]
    )


# -- pytest-rerunfailures ------------------------------------------------------------


def test_rerun_of_a_restricted_test_forks_again(pytester: pytest.Pytester) -> None:
    pytest.importorskip("pytest_rerunfailures")
    pytester.makepyfile(
        """
        import os, pytest

        @pytest.mark.permission(fs_read=["{rootdir}/runs.log"], fs_write=["{rootdir}/runs.log"])
        @pytest.mark.flaky(reruns=2)
        def test_flaky(request):
            log = os.path.join(str(request.config.rootpath), "runs.log")
            with open(log, "a") as out:
                out.write(f"{os.getpid()}\\n")
            with open(log) as runs:
                assert len(runs.read().split()) == 2
            with pytest.raises(PermissionError):
                open("/etc/hostname")
        """
    )
    result = pytester.runpytest_subprocess("-rR")
    outcomes = result.parseoutcomes()
    assert (outcomes.get("passed"), outcomes.get("rerun")) == (1, 1), outcomes
    pids = (pytester.path / "runs.log").read_text().split()
    assert len(pids) == 2 and len(set(pids)) == 2 and str(os.getpid()) not in pids


# -- pytest-timeout ------------------------------------------------------------------


@pytest.mark.parametrize("method", ["signal", "thread"])
def test_pytest_timeout_with_forked_tests(pytester: pytest.Pytester, method: str) -> None:
    pytest.importorskip("pytest_timeout")
    pytester.makepyfile(
        """
        import time, pytest

        @pytest.mark.permission()
        @pytest.mark.parametrize("n", range(3))
        def test_quick(n):
            time.sleep(0.05)

        @pytest.mark.permission()
        @pytest.mark.timeout(1)
        def test_hangs():
            time.sleep(600)
        """
    )
    result = pytester.runpytest_subprocess(f"--timeout-method={method}", timeout=60)
    if method == "signal":  # the alarm fires in the parent while it waits: child killed
        result.assert_outcomes(passed=3, failed=1)
        result.stdout.fnmatch_lines(["*Failed: Timeout (>1.0s) from pytest-timeout*"])
    else:  # the thread method ends the whole session, as it does without this plugin
        result.stdout.fnmatch_lines(["*+ Timeout +*", "*Stack of MainThread*"])
        assert result.ret != 0
    time.sleep(0.5)
    assert not _processes_below(pytester.path), "a forked child outlived its session"


def _processes_below(folder: object) -> list[int]:
    """Processes whose command line names ``folder`` (the inner session and its children)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if os.fsencode(str(folder)) in cmdline.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


# -- async tests -----------------------------------------------------------------------


def test_pytest_asyncio_tests_run_restricted(pytester: pytest.Pytester) -> None:
    pytest.importorskip("pytest_asyncio")
    pytester.makepyfile(
        """
        import asyncio, os, pytest, pytest_asyncio
        from pytest_permission import AccessDenied

        PARENT = os.getpid()

        @pytest_asyncio.fixture
        async def loop_pid():
            return os.getpid()

        @pytest.mark.asyncio
        @pytest.mark.permission()
        async def test_denied(loop_pid):
            assert loop_pid == PARENT != os.getpid()
            await asyncio.sleep(0)
            with pytest.raises(AccessDenied) as info:
                open("/etc/hostname")
            assert (info.value.code, info.value.permission, info.value.resource) == (
                "ERR_ACCESS_DENIED", "FileSystemRead", "/etc/hostname")

        @pytest.mark.asyncio
        @pytest.mark.permission(net=["localhost"])
        async def test_getaddrinfo_needs_worker():
            loop = asyncio.get_running_loop()
            with pytest.raises(AccessDenied) as info:
                await loop.getaddrinfo("localhost", 80)
            assert info.value.permission == "WorkerThreads"

        @pytest.mark.asyncio
        @pytest.mark.permission(net=["localhost"], worker=True)
        async def test_getaddrinfo_with_worker():
            loop = asyncio.get_running_loop()
            assert await loop.getaddrinfo("localhost", 80)
        """
    )
    result = pytester.runpytest_subprocess("-p", "asyncio", "--asyncio-mode=strict")
    result.assert_outcomes(passed=3)


def test_anyio_tests_run_restricted(pytester: pytest.Pytester) -> None:
    pytest.importorskip("anyio")
    pytester.makepyfile(
        """
        import os, pytest, anyio
        from pytest_permission import AccessDenied

        @pytest.fixture
        def anyio_backend():
            return "asyncio"

        @pytest.mark.anyio
        @pytest.mark.permission(fs_write=["{tmp_path}"])
        async def test_restricted(tmp_path):
            await anyio.sleep(0)
            with open(tmp_path / "ok.txt", "w") as out:
                out.write("ok")
            outside = os.path.join(os.path.dirname(str(tmp_path)), "escaped.txt")
            with pytest.raises(AccessDenied) as info:
                open(outside, "w")
            assert (info.value.permission, info.value.resource) == ("FileSystemWrite", outside)
            assert not os.path.exists(outside)

        @pytest.mark.anyio
        @pytest.mark.permission(fs_write=["{tmp_path}"])
        async def test_file_io_in_threads_needs_worker(tmp_path):
            with pytest.raises(AccessDenied) as info:
                await anyio.Path(tmp_path / "ok.txt").write_text("ok")
            assert info.value.permission == "WorkerThreads"
            assert not (tmp_path / "ok.txt").exists()

        @pytest.mark.anyio
        @pytest.mark.permission(fs_read=["{tmp_path}"], fs_write=["{tmp_path}"], worker=True)
        async def test_file_io_in_threads_with_worker(tmp_path):
            await anyio.Path(tmp_path / "ok.txt").write_text("ok")
            assert (tmp_path / "ok.txt").read_text() == "ok"
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=3)


# -- hypothesis ------------------------------------------------------------------------


def test_hypothesis_given_under_a_marker_saves_examples_without_denials(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("hypothesis")
    pytester.makepyfile(
        """
        import pytest
        from hypothesis import given, strategies as st
        from pytest_permission import AccessDenied

        @pytest.mark.permission()
        @given(st.integers())
        def test_passes(n):
            with pytest.raises(AccessDenied):
                open("/etc/hostname")

        @pytest.mark.permission()
        @given(st.integers())
        def test_fails(n):
            assert n < 10
        """
    )
    # hypothesis imports modules lazily, and pytest's assertion rewriter then
    # writes their bytecode in site-packages: no concern of this test
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    # on CI hypothesis loads its "ci" profile, which keeps no example database
    options = ("-p", "no:cacheprovider", "--hypothesis-profile=default")
    result = pytester.runpytest_subprocess(*options)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*assert 10 < 10*", "*: test_fails(*"])  # "Falsifying example"
    result.stdout.no_fnmatch_line("*SwallowedDenialWarning*")
    result.stdout.no_fnmatch_line("*FileSystemWrite*")
    result.stdout.no_fnmatch_line("*Inspector*")
    assert list((pytester.path / ".hypothesis" / "examples").iterdir())
    again = pytester.runpytest_subprocess(*options, "-k", "fails")
    again.stdout.fnmatch_lines(["*: test_fails(*", "*n=10,*"])


def test_hypothesis_statistics_of_restricted_tests_are_shown(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hypothesis keeps them on the item during the call, in the child: they come back."""
    pytest.importorskip("hypothesis")
    pytester.makepyfile(
        """
        import pytest
        from hypothesis import given, settings, strategies as st

        @pytest.mark.permission()
        @settings(max_examples=7, database=None)
        @given(st.integers())
        def test_counted(n):
            pass
        """
    )
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--hypothesis-profile=default", "--hypothesis-show-statistics"
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        "*Hypothesis Statistics*",
        "*test_counted:*",
        "*7 passing, 0 failing*",
    ])


# -- Python subprocesses -----------------------------------------------------------------

SCRIPT = """
import json, sys
out = {}
for name in sys.argv[1:]:
    try:
        out[name] = open(name).read()
    except PermissionError as exc:
        out[name] = [getattr(exc, "code", None), getattr(exc, "permission", None),
                     getattr(exc, "resource", None)]
print(json.dumps(out))
"""


def test_python_subprocesses_inherit_the_policy(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(script=SCRIPT)
    pytester.makefile(".txt", allowed="granted text", secret="secret text")
    pytester.makepyfile(
        textwrap.dedent(
            """
            import json, os, subprocess, sys, pytest
            from pytest_permission import drop

            HERE = os.path.dirname(__file__)
            ALLOWED, SECRET = (os.path.join(HERE, n) for n in ("allowed.txt", "secret.txt"))

            def run(*flags, **kwargs):
                done = subprocess.run(
                    [sys.executable, *flags, os.path.join(HERE, "script.py"), ALLOWED, SECRET],
                    capture_output=True, text=True, **kwargs)
                assert done.returncode == 0, done.stderr
                return json.loads(done.stdout)

            GRANTS = ["{testdir}/allowed.txt", "{testdir}/script.py"]

            @pytest.mark.permission(child=True, fs_read=GRANTS)
            def test_inherits():
                out = run()
                assert out[ALLOWED] == "granted text"
                assert out[SECRET] == ["ERR_ACCESS_DENIED", "FileSystemRead", SECRET]

            @pytest.mark.permission(child=True, fs_read=GRANTS)
            def test_inherits_under_bytes_warnings_as_errors():
                out = run("-bb")  # the plugin's checks never compare bytes with str
                assert out[ALLOWED] == "granted text"
                assert out[SECRET] == ["ERR_ACCESS_DENIED", "FileSystemRead", SECRET]

            @pytest.mark.permission(child=True, fs_read=GRANTS)
            def test_explicit_env_and_drop():
                drop("fs.read", ALLOWED)
                for out in (run(env={"PATH": os.environ["PATH"]}), run()):
                    assert out[ALLOWED] == ["ERR_ACCESS_DENIED", "FileSystemRead", ALLOWED]
                    assert out[SECRET] == ["ERR_ACCESS_DENIED", "FileSystemRead", SECRET]

            @pytest.mark.permission(
                child=True, env=True, fs_read=[*GRANTS, "{tmp_path}"], fs_write=["{tmp_path}"]
            )
            def test_cannot_widen_the_inherited_policy(tmp_path):
                assert "PYTEST_PERMISSION_POLICY" not in os.environ  # not in the test's view
                saved = dict(os.environ)
                os.environ.clear()
                os.environ.update(saved)  # saving and restoring: no denial
                wider = '{"grants": {"fs_read": true}, "implicit": true}'
                os.environ["PYTEST_PERMISSION_POLICY"] = wider  # no denial, and no effect:
                outputs = [run(), run(env=dict(os.environ))]
                out = tmp_path / "out.json"
                script = os.path.join(HERE, "script.py")
                command = f"'{sys.executable}' '{script}' '{ALLOWED}' '{SECRET}' > '{out}'"
                assert os.system(command) == 0
                outputs.append(json.loads(out.read_text()))
                for got in outputs:
                    assert got[SECRET] == ["ERR_ACCESS_DENIED", "FileSystemRead", SECRET]

            def test_unrestricted_tests_start_unrestricted_interpreters():
                out = run()
                assert out[SECRET] == "secret text"
            """
        )
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=5)


def test_startup_hook_is_installed_with_the_package() -> None:
    """The ``.pth`` line runs in every interpreter: without the variable it does nothing."""
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_PERMISSION_POLICY"}
    code = "import sys; print('pytest_permission.startup' in sys.modules)"
    plain = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert plain.stdout.strip() == "False"
    policy = json.dumps({"grants": {}, "implicit": True})
    restricted = subprocess.run(
        [sys.executable, "-c", "open('/etc/hostname')"],
        capture_output=True, text=True, env={**env, "PYTEST_PERMISSION_POLICY": policy},
    )
    assert restricted.returncode == 1
    assert "AccessDenied" in restricted.stderr and "/etc/hostname" in restricted.stderr
