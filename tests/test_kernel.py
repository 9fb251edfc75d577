"""The kernel layer: support detection, the option, granted work under it, drop().

The layer only ever applies in a forked child, so every check runs in an
inner pytest session (``pytester``), where the plugin forks as usual.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_permission import kernel
from pytest_permission.kernel import libc

pytestmark = pytest.mark.skipif(
    bool(kernel.support().missing), reason="; ".join(kernel.support().missing)
)
BYPASS_MODULE = Path(__file__).with_name("test_kernel_bypass.py")


def test_support_reports_the_running_kernel() -> None:
    offered = kernel.support()
    assert offered.landlock >= 1
    assert offered.seccomp
    assert offered.layers() == [f"landlock ABI {offered.landlock}", "seccomp", "supervisor"]


ALL_LAYERS = f"audit, landlock ABI {kernel.support().landlock}, seccomp, supervisor"


@pytest.mark.parametrize(
    ("args", "layers"),
    [
        ((), ALL_LAYERS),
        (("--permission-kernel=require",), ALL_LAYERS),
        (("--permission-kernel=off",), "audit (kernel layer off)"),
    ],
)
def test_header_names_the_active_layers(
    pytester: pytest.Pytester, args: tuple[str, ...], layers: str
) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest(*args)
    result.stdout.fnmatch_lines([f"permission: enforcing on marked tests; layers: {layers}"])
    assert result.ret == 0


def test_require_fails_the_session_where_the_kernel_lacks_support(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = kernel.Support(0, False, ("Landlock: not in this kernel", "seccomp: no filters"))
    monkeypatch.setattr(kernel, "support", lambda: missing)
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest("--permission-kernel=require")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "*--permission-kernel=require*the kernel layer is not available here: "
        "Landlock: not in this kernel; seccomp: no filters"
    ])
    auto = pytester.runpytest()
    auto.stdout.fnmatch_lines([
        "*layers: audit (unavailable: Landlock: not in this kernel; seccomp: no filters)"
    ])
    assert auto.ret == 0


GRANTED_WORK = '''
import logging, os, subprocess, sys, threading
import pytest

RW = ["{tmp_path}"]

@pytest.mark.permission(fs_read=RW, fs_write=RW)
def test_read_write_rename_remove_inside_the_grants(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a").write_text("data")
    os.rename(tmp_path / "sub" / "a", tmp_path / "b")
    with open(tmp_path / "b", "r+") as f:
        f.truncate(2)
    assert (tmp_path / "b").read_text() == "da"
    os.mkfifo(tmp_path / "fifo")
    os.symlink(tmp_path / "b", tmp_path / "link")
    (tmp_path / "b").unlink()
    os.rmdir(tmp_path / "sub")
    assert sorted(os.listdir(tmp_path)) == ["fifo", "link"]

@pytest.mark.permission(child=True, fs_read=RW, fs_write=RW)
def test_granted_child_processes(tmp_path):
    (tmp_path / "f").touch()
    assert subprocess.run(["ls", str(tmp_path)], capture_output=True, text=True).stdout == "f\\n"
    done = subprocess.run([sys.executable, "-c", "import json; print(json.dumps([1]))"],
                          capture_output=True, text=True)
    assert done.stdout == "[1]\\n", done.stderr
    assert subprocess.run("echo hi > out", shell=True, cwd=tmp_path).returncode == 0
    assert (tmp_path / "out").read_text() == "hi\\n"

@pytest.mark.permission(worker=True)
def test_granted_threads():
    seen = []
    threads = [threading.Thread(target=seen.append, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == [0, 1, 2, 3]

@pytest.mark.permission(net=["localhost"])
def test_granted_network(tmp_path):
    import socket
    with socket.create_server(("127.0.0.1", 0)) as server:
        with socket.create_connection(server.getsockname()):
            conn, _ = server.accept()
            conn.close()

@pytest.mark.permission()
def test_capture_and_logging(capsys, caplog):
    print("to stdout")
    sys.stderr.write("to stderr\\n")
    logging.getLogger("x").warning("logged")
    assert capsys.readouterr() == ("to stdout\\n", "to stderr\\n")
    assert "logged" in caplog.text

@pytest.mark.permission(implicit=False)
def test_a_failure_is_reported_with_its_source_and_diff():
    print("shown on failure")
    assert "kernel layer" == "kernel lair"
'''


def test_granted_work_runs_under_the_kernel_layer(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(GRANTED_WORK)
    result = pytester.runpytest("--permission-kernel=require")
    result.assert_outcomes(passed=5, failed=1)
    result.stdout.fnmatch_lines([
        "*layers: audit, landlock ABI *, seccomp, supervisor",
        '>       assert "kernel layer" == "kernel lair"',
        "E       AssertionError: assert 'kernel layer' == 'kernel lair'",
        "E         - kernel lair",
        "E         + kernel layer",
        "*Captured stdout call*",
        "shown on failure",
    ])


def test_the_child_runs_with_no_new_privileges_and_a_seccomp_filter(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile('''
        import pytest

        @pytest.mark.permission(fs_read=["/proc"])
        def test_status():
            status = open("/proc/self/status").read()
            assert "NoNewPrivs:\\t1" in status
            assert "Seccomp:\\t2" in status
    ''')
    pytester.runpytest("--permission-kernel=require").assert_outcomes(passed=1)
    off = pytester.runpytest("--permission-kernel=off")
    off.assert_outcomes(failed=1)
    off.stdout.fnmatch_lines(["*assert 'NoNewPrivs:\\t1' in *"])


def test_no_landlock_ruleset_reaches_the_test_body(pytester: pytest.Pytester) -> None:
    """The ruleset is built in the parent and inherited; the child closes it before
    the body runs, so C code in the test cannot add rules to it."""
    pytester.makepyfile('''
        import os, pytest

        @pytest.mark.permission(fs_read=["/proc"])
        @pytest.mark.parametrize("n", range(3))
        def test_descriptors(n):
            links = []
            for fd in os.listdir("/proc/self/fd"):
                try:
                    links.append(os.readlink(f"/proc/self/fd/{fd}"))
                except OSError:
                    pass
            assert "anon_inode:[landlock-ruleset]" not in links, links
    ''')
    pytester.runpytest("--permission-kernel=require").assert_outcomes(passed=3)


def test_tests_with_the_same_marker_share_one_layer_and_each_is_held_by_it(
    pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A layer is reused by the next test that needs the very same (no grant
    naming a path, no supervisor): it must be, and must still hold in C."""
    pytester.makeconftest("""
        from pytest_permission.kernel import layer

        BUILT = []
        real = layer.Layer.__init__

        def counting(self, *args, **kwargs):
            BUILT.append(1)
            real(self, *args, **kwargs)

        layer.Layer.__init__ = counting

        def pytest_sessionfinish(session):
            print(f"layers built: {len(BUILT)}")
    """)
    secret = tmp_path_factory.mktemp("outside") / "secret.txt"  # outside sys.path
    secret.write_text("")
    pytester.makepyfile(f"""
        import ctypes, errno, os, pytest

        libc = ctypes.CDLL(None, use_errno=True)
        SECRET = {bytes(secret)!r}

        def c_open():
            fd = libc.open(SECRET, os.O_RDONLY)
            assert fd == -1, "the kernel layer let C code read an ungranted file"
            return ctypes.get_errno()

        @pytest.mark.parametrize("n", range(3))
        @pytest.mark.permission(net=False, ffi=True)
        def test_same(n):
            assert c_open() == errno.EACCES

        @pytest.mark.permission(child=True, ffi=True)
        def test_other():
            assert c_open() == errno.EACCES

        @pytest.mark.permission(net=False, ffi=True)
        def test_same_again():
            assert c_open() == errno.EACCES
    """)
    result = pytester.runpytest_subprocess("--permission-kernel=require", "-s")  # a fresh process
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(["*layers built: 3"])


def test_a_kernel_refusal_in_a_failure_names_the_grant(
    pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("outside") / "outside.txt"  # not on sys.path
    outside.write_text("x")
    pytester.makepyfile(f'''
        import ctypes, os, pytest

        @pytest.mark.permission(ffi=True)
        def test_foreign_open():
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.open({str(outside).encode()!r}, os.O_RDONLY) < 0:
                number = ctypes.get_errno()
                raise OSError(number, os.strerror(number), {str(outside)!r})
    ''')
    result = pytester.runpytest("--permission-kernel=require")
    result.assert_outcomes(failed=1)
    lines = result.stdout.lines
    error = f"E           PermissionError: [Errno 13] Permission denied: '{outside}'"
    section = lines.index(next(line for line in lines if " permission " in line))
    assert lines.index(error) < section
    assert lines[section + 1] == (
        f"the kernel layer (Landlock) refused this access to {outside} (PermissionError: "
        f"[Errno 13] Permission denied); @pytest.mark.permission(fs_read=['{outside}']) "
        "would allow it"
    )


DROPS = '''
import ctypes, errno, multiprocessing.util, os, socket
import pytest
from pytest_permission import drop
from pytest_permission.kernel import KernelError

SPAWN = multiprocessing.util.spawnv_passfds

def foreign_open(path):
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.open(os.fsencode(path), os.O_RDONLY)
    if fd >= 0:
        os.close(fd)
        return 0
    return ctypes.get_errno()

@pytest.fixture
def folders(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "file").write_text(name)
    return tmp_path

@pytest.mark.permission(ffi=True, fs_read=["{tmp_path}/a", "{tmp_path}/b"])
def test_dropping_a_folder_narrows_landlock(folders):
    assert foreign_open(folders / "a" / "file") == 0
    drop("fs.read", str(folders / "a"))
    assert foreign_open(folders / "a" / "file") == errno.EACCES
    assert foreign_open(folders / "b" / "file") == 0

@pytest.mark.permission(ffi=True, child=True, net=True)
def test_dropping_child_and_net_stacks_seccomp_filters(tmp_path):
    libc = ctypes.CDLL(None, use_errno=True)
    drop("net")
    assert libc.socket(socket.AF_INET, socket.SOCK_DGRAM, 0) == -1
    assert ctypes.get_errno() == errno.EPERM
    drop("child")
    with pytest.raises(PermissionError):
        SPAWN(b"/usr/bin/touch", [b"touch", os.fsencode(tmp_path / "marker")], ())
    assert not (tmp_path / "marker").exists()

@pytest.fixture
def many(tmp_path):
    for i in range(20):
        (tmp_path / str(i)).mkdir()
    return tmp_path

@pytest.mark.permission(fs_read=["{tmp_path}/%d" % i for i in range(20)])
def test_landlock_layer_limit(many):
    for i in range(15):
        drop("fs.read", str(many / str(i)))
    with pytest.raises(KernelError, match="Landlock allows 16 stacked layers"):
        drop("fs.read", str(many / "15"))
    with pytest.raises(PermissionError):
        open(many / "15" / "x", "w")  # the audit layer did narrow
'''


def test_drop_narrows_the_kernel_layer(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(DROPS)
    result = pytester.runpytest("--permission-kernel=require")
    result.assert_outcomes(passed=3)


def test_sockets_with_net_denied_raise_access_denied_not_eperm(pytester: pytest.Pytester) -> None:
    """The kernel layer must not pre-empt the audit layer's error: a TCP socket
    is made and its connect refused with ``host:port``; a UDP socket, which
    seccomp refuses outright, is refused first by the audit layer."""
    if kernel.support().landlock < 4:
        pytest.skip("TCP rules need Landlock ABI 4; without them seccomp refuses the socket")
    pytester.makepyfile('''
        import select, socket, pytest
        from pytest_permission import raises_access_denied

        @pytest.fixture
        def tcp():
            with socket.create_server(("127.0.0.1", 0)) as server:
                yield server

        @pytest.fixture
        def udp():
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
                server.bind(("127.0.0.1", 0))
                yield server

        def quiet(server):
            return not select.select([server], [], [], 0.3)[0]

        @pytest.mark.permission()
        def test_tcp(tcp):
            port = tcp.getsockname()[1]
            with socket.socket() as client:
                with raises_access_denied("net", resource=f"127.0.0.1:{port}"):
                    client.connect(("127.0.0.1", port))
            assert quiet(tcp)

        @pytest.mark.permission()
        def test_udp(udp):
            with raises_access_denied("net", resource="AF_INET SOCK_DGRAM"):
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", udp.getsockname())
            assert quiet(udp)

        @pytest.mark.permission(net=["127.0.0.1"])
        def test_udp_granted(udp):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
                client.sendto(b"x", udp.getsockname())
            assert not quiet(udp)
    ''')
    result = pytester.runpytest("--permission-kernel=require")
    result.assert_outcomes(passed=3)


def test_seccomp_kills_a_foreign_system_call_convention(pytester: pytest.Pytester) -> None:
    """On x86_64, an x32 system call number (bit 30) means another ABI: the filter kills."""
    if libc.MACHINE != "x86_64":
        pytest.skip("x32 exists on x86_64 only")
    pytester.makepyfile('''
        import ctypes, pytest

        @pytest.mark.permission(ffi=True)
        def test_x32_getpid():
            ctypes.CDLL(None).syscall(0x40000000 | 39)
    ''')
    result = pytester.runpytest("--permission-kernel=require")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*killed by signal 31 (SIGSYS)*"])


@pytest.mark.parametrize("mode", ["off", "require"])
def test_bypass_module_under_each_mode(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """The README's table: what the audit layer alone lets through.

    Under ``off`` each test marked so must fail (strict xfail: an unexpected
    pass fails the run) and each other test pass; under ``require`` all pass.
    """
    monkeypatch.setenv("PYTEST_PERMISSION_HIDDEN", "in the pytest process's environ")
    pytester.makepyfile(test_bypass_copy=BYPASS_MODULE.read_text())  # own name: no clash
    # a fresh process, as users run it: in this one the audit layer's wrappers
    # are already armed, so the module's early bindings would catch them; its
    # temporary folders outside the rootdir, which the module's grants name
    basetemp = pytester.path.parent / f"basetemp-{mode}"
    result = pytester.runpytest_subprocess(f"--permission-kernel={mode}", f"--basetemp={basetemp}")
    outcomes = result.parseoutcomes()
    assert "failed" not in outcomes and "errors" not in outcomes, result.stdout.str()
    devices = 2 if os.geteuid() == 0 else 0  # making a device needs root: else skipped
    assert outcomes.get("passed", 0) + outcomes.get("xfailed", 0) == 32 + devices
    assert outcomes.get("passed", 0) == 32 + devices or mode == "off"
    assert outcomes.get("xfailed", 0) >= 28 + devices or mode != "off"


def test_a_grant_the_kernel_can_only_widen_is_named_at_collection(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile('''
        import pytest

        @pytest.mark.permission(net=["*.example.com:443"])
        def test_wildcard_host():
            pass

        @pytest.mark.permission(net=["localhost:8080"], fs_read=["/missing/settings.yaml"])
        def test_exact():
            pass
    ''')
    result = pytester.runpytest("--collect-only", "-q")
    result.stdout.fnmatch_lines([
        "*KernelWarning: test_*.py::test_wildcard_host: net grant '*.example.com:443': the "
        "kernel sees addresses, not names, so C code and child programs may reach port 443 "
        "of any address",
    ])
    assert "test_exact:" not in result.stdout.str()
    off = pytester.runpytest("--collect-only", "-q", "--permission-kernel=off")
    assert "KernelWarning" not in off.stdout.str()
    session = pytester.runpytest("--permission", "--allow-net=*.example.com", "-q")
    session.stdout.fnmatch_lines(["*KernelWarning: --permission: net grant '*.example.com'*"])
