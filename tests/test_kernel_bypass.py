"""Known ways around the audit layer, attempted for real; the kernel layer stops each.

Every test runs in the plugin's forked child under its marker and checks,
there, that the operation failed and that its side effect is absent (no
file, no connection, no thread ran). Run with ``--permission-kernel=off``
(``tests/test_kernel.py`` does), the tests marked ``audit_misses`` fail:
that is the list of what the audit layer alone lets through, as the README
states it; the others pass in both runs because the audit layer stops them
too. Self-contained, so that it can be copied into an inner session.
"""

from __future__ import annotations

import _thread
import ctypes
import errno
import multiprocessing.util
import os
import select
import site
import socket
import stat
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pytest_permission import AccessDenied, kernel

RAW_START_THREAD = _thread.start_new_thread
"""Bound at import, before any enforcement: the audit layer's wrapper (Python
3.10/3.11, which raise no thread-start event) never sees calls through it."""
SPAWNV_PASSFDS = multiprocessing.util.spawnv_passfds
"""Bound at import likewise: it calls ``_posixsubprocess.fork_exec`` directly."""
O_WRONLY_CREAT = os.O_WRONLY | os.O_CREAT
STARTUP_HOOK = any(
    os.path.exists(os.path.join(folder, "pytest_permission_startup.pth"))
    for folder in site.getsitepackages()
)
"""Whether new interpreters (subprocesses, sub-interpreters) install the audit layer."""
SECRET = "the secret outside the grants"


def kernel_off(config: pytest.Config) -> bool:
    mode = config.getoption("permission_kernel") or config.getini("permission_kernel")
    return bool(mode == "off")


def kernel_missing(config: pytest.Config) -> bool:
    return not kernel_off(config) and bool(kernel.support().missing)


pytestmark = pytest.mark.skipif(
    "kernel_missing(config)", reason="the kernel lacks Landlock or seccomp support"
)
audit_misses = pytest.mark.xfail(
    "kernel_off(config)", strict=True, reason="the audit layer alone lets this through"
)
GRANTED_IN = ["{tmp_path}/inside"]


@pytest.fixture
def inside(tmp_path: Path) -> Path:
    folder = tmp_path / "inside"
    folder.mkdir()
    return folder


@pytest.fixture
def outside(tmp_path: Path, inside: Path) -> Path:
    """A folder no grant names, with a secret file in it."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_text(SECRET)
    return folder


@pytest.fixture
def server() -> Iterator[socket.socket]:
    """A loopback TCP server, listening before the fork; no one accepts."""
    with socket.create_server(("127.0.0.1", 0)) as listening:
        yield listening


@pytest.fixture
def udp_server() -> Iterator[socket.socket]:
    """A loopback UDP socket, bound before the fork."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as bound:
        bound.bind(("127.0.0.1", 0))
        yield bound


def no_connection(server: socket.socket) -> bool:
    readable, _, _ = select.select([server], [], [], 0.3)
    return not readable


def libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def python(code: str) -> subprocess.CompletedProcess[str]:
    """A Python child without ``site`` (so without the policy the ``.pth`` hook passes on)."""
    return subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=60
    )


# -- process creation ----------------------------------------------------------


@audit_misses
@pytest.mark.permission(fs_read=GRANTED_IN, fs_write=GRANTED_IN)
def test_spawnv_passfds_bound_early_calls_fork_exec(outside: Path) -> None:
    marker = outside / "spawned"
    with pytest.raises(PermissionError) as info:
        pid = SPAWNV_PASSFDS(b"/usr/bin/touch", [b"touch", os.fsencode(marker)], ())
        os.waitpid(pid, 0)
    assert info.value.errno == errno.EPERM
    assert not marker.exists()


@audit_misses
@pytest.mark.permission(ffi=True)
def test_ctypes_system(outside: Path) -> None:
    marker = outside / "by-system"
    assert libc().system(f"touch {marker}".encode()) != 0
    assert not marker.exists()


@pytest.mark.xfail(
    "kernel_off(config) and not STARTUP_HOOK", strict=True,
    reason="audit hooks belong to one interpreter; only the installed .pth hook adds them "
    "to a new one",
)
@pytest.mark.permission(worker=True)
def test_subinterpreter_running_os_system(outside: Path) -> None:
    interpreters = pytest.importorskip(
        "_interpreters" if sys.version_info >= (3, 13) else "_xxsubinterpreters"
    )
    marker = outside / "by-subinterpreter"
    interpreter = interpreters.create()
    code = f"import os\ntry:\n    os.system('touch {marker}')\nexcept Exception:\n    pass"
    interpreters.run_string(interpreter, code)
    interpreters.destroy(interpreter)
    assert not marker.exists()


# -- threads -------------------------------------------------------------------


@pytest.mark.xfail(
    "kernel_off(config) and sys.version_info < (3, 12)", strict=True,
    reason="before 3.12 the audit layer wraps _thread.start_new_thread; a binding made "
    "earlier goes around it (3.12+ raise an audit event for every thread start)",
)
@pytest.mark.permission()
def test_raw_start_new_thread() -> None:
    ran = threading.Event()
    with pytest.raises((RuntimeError, AccessDenied)):
        RAW_START_THREAD(ran.set, ())
    assert not ran.wait(0.3)


@audit_misses
@pytest.mark.permission(ffi=True)
def test_ctypes_pthread_create() -> None:
    ran = []
    callback = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)(lambda _: ran.append(1))
    handle = ctypes.c_ulong()
    lib = libc()
    result = lib.pthread_create(ctypes.byref(handle), None, callback, None)
    if result == 0:
        lib.pthread_join(handle, None)
    assert result in (errno.EAGAIN, errno.EPERM)
    assert ran == []


# -- files -----------------------------------------------------------------------


@audit_misses
@pytest.mark.permission(ffi=True, fs_read=GRANTED_IN, fs_write=GRANTED_IN)
def test_ctypes_open_outside_the_grants(outside: Path) -> None:
    lib = libc()
    assert lib.open(str(outside / "secret.txt").encode(), os.O_RDONLY) == -1
    assert ctypes.get_errno() == errno.EACCES
    created = outside / "created"
    assert lib.open(str(created).encode(), O_WRONLY_CREAT, 0o644) == -1
    assert ctypes.get_errno() == errno.EACCES
    assert not created.exists()


@audit_misses
@pytest.mark.permission(fs_read=GRANTED_IN, fs_write=GRANTED_IN)
def test_mkfifo_outside_the_write_grants(outside: Path) -> None:
    with pytest.raises(PermissionError) as info:
        os.mkfifo(outside / "fifo")
    assert info.value.errno == errno.EACCES
    assert not (outside / "fifo").exists()


@audit_misses
@pytest.mark.permission(fs_read=GRANTED_IN, fs_write=GRANTED_IN)
def test_mknod_outside_the_write_grants(outside: Path) -> None:
    with pytest.raises(PermissionError) as info:
        os.mknod(outside / "node", 0o600 | 0o010000)  # S_IFIFO: no privilege needed
    assert info.value.errno == errno.EACCES
    assert not (outside / "node").exists()


@pytest.mark.permission(fs_read=GRANTED_IN, fs_write=GRANTED_IN)
def test_dir_fd_relative_escape(inside: Path, outside: Path) -> None:
    folder = os.open(inside, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(PermissionError):
            os.open("../outside/secret.txt", os.O_RDONLY, dir_fd=folder)
        with pytest.raises(PermissionError):
            os.open("../outside/escaped", O_WRONLY_CREAT, dir_fd=folder)
    finally:
        os.close(folder)
    assert not (outside / "escaped").exists()


# -- child processes the test was allowed to start -----------------------------------


@audit_misses
@pytest.mark.permission(child=True, fs_read=GRANTED_IN)
def test_granted_cat_reading_outside_the_grants(outside: Path) -> None:
    done = subprocess.run(["cat", str(outside / "secret.txt")], capture_output=True, text=True)
    assert done.returncode != 0
    assert "Permission denied" in done.stderr
    assert SECRET not in done.stdout


@audit_misses
@pytest.mark.permission(child=True, fs_read=GRANTED_IN)
def test_granted_python_child_reading_outside_the_grants(outside: Path) -> None:
    done = python(f"print(open({str(outside / 'secret.txt')!r}).read())")
    assert "PermissionError" in done.stderr
    assert SECRET not in done.stdout


@audit_misses
@pytest.mark.permission(child=True, net=False)
def test_granted_child_connecting_with_net_denied(server: socket.socket) -> None:
    port = server.getsockname()[1]
    done = python(f"import socket; socket.create_connection(('127.0.0.1', {port}))")
    # Landlock refuses the connect (EACCES); without TCP rules seccomp the socket (EPERM)
    assert "PermissionError: [Errno" in done.stderr
    assert no_connection(server)


@audit_misses
@pytest.mark.skipif(
    "not kernel_off(config) and kernel.support().landlock < 4",
    reason="TCP rules need Landlock ABI 4",
)
@pytest.mark.permission(child=True, net=["127.0.0.1:9"])
def test_granted_child_connecting_to_a_port_not_granted(server: socket.socket) -> None:
    port = server.getsockname()[1]
    done = python(f"import socket; socket.create_connection(('127.0.0.1', {port}))")
    assert "PermissionError: [Errno 13]" in done.stderr  # Landlock: port not granted
    assert no_connection(server)


# -- sockets -----------------------------------------------------------------------


@audit_misses
@pytest.mark.permission(ffi=True)
def test_ctypes_socket_and_connect(server: socket.socket) -> None:
    lib = libc()
    fd = lib.socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    if fd >= 0:  # Landlock rules TCP (ABI 4+): the socket is made, the connect refused
        host, port = server.getsockname()
        address = struct.pack("=HH4s8x", socket.AF_INET, socket.htons(port), socket.inet_aton(host))
        connected = lib.connect(fd, address, len(address))
        failure = ctypes.get_errno()
        os.close(fd)
        assert (connected, failure) == (-1, errno.EACCES)
    else:  # seccomp refuses the socket itself
        assert ctypes.get_errno() == errno.EPERM
    assert no_connection(server)


@audit_misses
@pytest.mark.permission(ffi=True)
def test_ctypes_udp_sendto(udp_server: socket.socket) -> None:
    lib = libc()
    fd = lib.socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    if fd >= 0:
        host, port = udp_server.getsockname()
        address = struct.pack("=HH4s8x", socket.AF_INET, socket.htons(port), socket.inet_aton(host))
        lib.sendto(fd, b"x", 1, 0, address, len(address))
        os.close(fd)
    assert fd == -1
    assert ctypes.get_errno() == errno.EPERM  # seccomp: no UDP socket
    assert no_connection(udp_server)


# -- grants the kernel layer once made wider than the marker --------------------------
#
# Each row is attempted from C code (ctypes) and from a child program (a
# real program, or a Python without ``site``, so without the audit layer).
# The kernel layer used to map these grants to folders that allowed the
# attempt; each test failed against it.


def c_open(path: Path | str, flags: int = os.O_RDONLY) -> int:
    """``open(2)`` from C: 0 if it worked, else its errno."""
    lib = libc()
    fd = lib.open(os.fsencode(path), flags, 0o644)
    if fd < 0:
        return ctypes.get_errno()
    os.close(fd)
    return 0


def program(*argv: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=60, check=False
    )


MISSING_READ = ["/nonexistent-pytest-permission/app/settings.yaml"]
"""A grant below a missing top-level folder: its nearest existing folder is ``/``."""


@audit_misses
@pytest.mark.permission(ffi=True, fs_read=MISSING_READ)
def test_missing_path_grant_c_reads_nothing_else(outside: Path) -> None:
    assert c_open(outside / "secret.txt") == errno.EACCES


@audit_misses
@pytest.mark.permission(child=True, fs_read=MISSING_READ)
def test_missing_path_grant_child_reads_nothing_else(outside: Path) -> None:
    done = program("cat", outside / "secret.txt")
    assert done.returncode != 0
    assert SECRET not in done.stdout


MISSING_WRITE = ["{tmp_path}/out/report.json"]
"""A grant of a file in a folder not made yet: its nearest existing folder is ``tmp_path``."""


@audit_misses
@pytest.mark.permission(ffi=True, fs_write=MISSING_WRITE)
def test_missing_file_grant_c_creates_nothing_else(tmp_path: Path) -> None:
    assert c_open(tmp_path / "other", O_WRONLY_CREAT) == errno.EACCES
    assert c_open(tmp_path / "out", O_WRONLY_CREAT) == errno.EACCES
    assert not (tmp_path / "other").exists()
    assert not (tmp_path / "out").exists()


@audit_misses
@pytest.mark.permission(child=True, fs_write=MISSING_WRITE)
def test_missing_file_grant_child_creates_nothing_else(tmp_path: Path) -> None:
    assert program("touch", tmp_path / "other").returncode != 0
    assert program("mkdir", tmp_path / "out").returncode != 0
    assert not (tmp_path / "other").exists()
    assert not (tmp_path / "out").exists()


@pytest.fixture
def sibling(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Path:
    """A folder beside ``tmp_path`` (``{tmp_path}*`` does not name it), with a secret."""
    folder = tmp_path_factory.mktemp("sibling")
    assert folder.parent == tmp_path.parent
    (folder / "secret.txt").write_text(SECRET)
    return folder


@audit_misses
@pytest.mark.permission(ffi=True, fs_read=["{tmp_path}*"])
def test_wildcard_grant_c_reads_no_sibling(tmp_path: Path, sibling: Path) -> None:
    assert c_open(tmp_path) == 0  # the grant's own folder
    assert c_open(sibling / "secret.txt") == errno.EACCES


@audit_misses
@pytest.mark.permission(child=True, fs_read=["{tmp_path}*"])
def test_wildcard_grant_child_reads_no_sibling(sibling: Path) -> None:
    done = program("cat", sibling / "secret.txt")
    assert done.returncode != 0
    assert SECRET not in done.stdout


@pytest.fixture
def dotenv() -> Iterator[Path]:
    """A ``.env`` in the folder this module is imported from (on ``sys.path``)."""
    path = Path(__file__).parent / ".env"
    path.write_text(f"TOKEN={SECRET}\n")
    yield path
    path.unlink()


@audit_misses
@pytest.mark.permission(ffi=True)
def test_sys_path_folder_c_reads_no_data_file(dotenv: Path) -> None:
    assert str(dotenv.parent) in sys.path or "" in sys.path
    assert c_open(Path(__file__)) == 0  # code: readable
    assert c_open(dotenv) == errno.EACCES


@audit_misses
@pytest.mark.permission(child=True)
def test_sys_path_folder_child_reads_no_data_file(dotenv: Path) -> None:
    done = program("cat", dotenv)
    assert done.returncode != 0
    assert SECRET not in done.stdout


@pytest.fixture
def anywhere(request: pytest.FixtureRequest) -> Iterator[socket.socket]:
    """A TCP server on every loopback address; the marker's ``net`` grant names its
    port (a marker added before the call phase is the one the test runs under)."""
    with socket.create_server(("0.0.0.0", 0)) as listening:
        port = listening.getsockname()[1]
        grant = {"port": [f"127.0.0.1:{port}"], "host": ["127.0.0.1"]}[request.param]
        request.node.add_marker(pytest.mark.permission(ffi=True, child=True, net=grant))
        yield listening


def c_connect(host: str, port: int, kind: int = socket.SOCK_STREAM) -> int:
    """``connect(2)`` (or a datagram's ``sendto``) from C: 0 if it worked, else errno."""
    lib = libc()
    fd = lib.socket(socket.AF_INET, kind, 0)
    assert fd >= 0, ctypes.get_errno()
    address = struct.pack("=HH4s8x", socket.AF_INET, socket.htons(port), socket.inet_aton(host))
    try:
        if kind == socket.SOCK_DGRAM:
            done = lib.sendto(fd, b"x", 1, 0, address, len(address))
        else:
            done = lib.connect(fd, address, len(address))
        return 0 if done >= 0 else ctypes.get_errno()
    finally:
        os.close(fd)


@audit_misses
@pytest.mark.parametrize("anywhere", ["port", "host"], indirect=True)
def test_net_grant_c_reaches_no_other_host(anywhere: socket.socket) -> None:
    port = anywhere.getsockname()[1]
    assert c_connect("127.0.0.2", port) == errno.EACCES
    assert no_connection(anywhere)
    assert c_connect("127.0.0.1", port) == 0  # the granted host
    assert not no_connection(anywhere)


@audit_misses
@pytest.mark.parametrize("anywhere", ["port", "host"], indirect=True)
def test_net_grant_child_reaches_no_other_host(anywhere: socket.socket) -> None:
    port = anywhere.getsockname()[1]
    done = python(f"import socket; socket.create_connection(('127.0.0.2', {port}))")
    assert "PermissionError: [Errno 13]" in done.stderr
    assert no_connection(anywhere)


@audit_misses
@pytest.mark.permission(ffi=True, net=["127.0.0.1"])
def test_net_host_grant_c_sends_no_datagram_elsewhere(udp_server: socket.socket) -> None:
    port = udp_server.getsockname()[1]
    assert c_connect("127.0.0.2", port, socket.SOCK_DGRAM) == errno.EACCES
    assert no_connection(udp_server)


PYTEST_PROCESS_SECRET = "PYTEST_PERMISSION_HIDDEN"
"""Set in the environment the pytest process started with; ``env=`` hides it."""


@audit_misses
@pytest.mark.permission(ffi=True, fs_read=["/proc/self"])
def test_c_reads_no_environ_of_the_pytest_process() -> None:
    assert c_open("/proc/self/status") == 0  # its own process: granted
    assert c_open(f"/proc/{os.getppid()}/environ") == errno.EACCES


@audit_misses
@pytest.mark.permission(child=True)
def test_child_reads_no_environ_of_the_pytest_process() -> None:
    done = program("cat", f"/proc/{os.getppid()}/environ")
    assert done.returncode != 0
    assert PYTEST_PROCESS_SECRET not in done.stdout


CHARACTER_DEVICE = 0o600 | stat.S_IFCHR
NULL_DEVICE = os.makedev(1, 3)
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="making a device needs CAP_MKNOD")


@root_only
@audit_misses
@pytest.mark.permission(ffi=True, fs_read=GRANTED_IN, fs_write=GRANTED_IN)
def test_c_makes_no_device_in_a_write_grant(inside: Path) -> None:
    lib = libc()
    device = ctypes.c_uint64(NULL_DEVICE)
    assert lib.mknod(os.fsencode(inside / "dev"), CHARACTER_DEVICE, device) == -1
    assert ctypes.get_errno() == errno.EACCES
    assert not (inside / "dev").exists()


@root_only
@audit_misses
@pytest.mark.permission(child=True, fs_read=GRANTED_IN, fs_write=GRANTED_IN)
def test_child_makes_no_device_in_a_write_grant(inside: Path) -> None:
    assert program("mknod", inside / "dev", "c", 1, 3).returncode != 0
    assert not (inside / "dev").exists()


@pytest.fixture
def metadata(outside: Path) -> tuple[Path, os.stat_result]:
    """The secret outside the grants, and its metadata before the test."""
    secret = outside / "secret.txt"
    return secret, os.stat(secret)


def unchanged(path: Path, before: os.stat_result, attributes: bytes) -> bool:
    """Whether ``path``'s mode, owner, times and attributes (as listed) are as before."""
    now = os.stat(path)  # no audit event: stat needs no grant
    same = (now.st_mode, now.st_uid, now.st_mtime_ns) == (
        before.st_mode, before.st_uid, before.st_mtime_ns
    )
    return same and b"user.stamp" not in attributes


def c_attributes(path: Path) -> bytes:
    """``listxattr(2)`` from C (no Landlock right covers reading them)."""
    buffer = ctypes.create_string_buffer(4096)
    size = libc().listxattr(os.fsencode(path), buffer, 4096)
    assert size >= 0, ctypes.get_errno()
    return buffer.raw[:size]


@audit_misses
@pytest.mark.permission(ffi=True, fs_read=GRANTED_IN, fs_write=GRANTED_IN)
def test_c_changes_no_metadata_outside_the_write_grants(
    inside: Path, metadata: tuple[Path, os.stat_result]
) -> None:
    secret, before = metadata
    lib, name = libc(), os.fsencode(secret)
    times = (ctypes.c_long * 4)(0, 0, 0, 0)
    attempts: dict[str, Callable[[], int]] = {
        "chmod": lambda: lib.chmod(name, 0o777),
        "chown": lambda: lib.chown(name, 65534, 65534),
        "utimensat": lambda: lib.utimensat(-100, name, times, 0),
        "setxattr": lambda: lib.setxattr(name, b"user.stamp", b"x", 1, 0),
    }
    for call, attempt in attempts.items():
        assert (attempt(), ctypes.get_errno()) == (-1, errno.EACCES), call
    assert unchanged(secret, before, c_attributes(secret))
    mine = inside / "mine"
    mine.write_text("")  # inside the write grant: all allowed
    assert lib.chmod(os.fsencode(mine), 0o600) == 0
    assert os.stat(mine).st_mode & 0o777 == 0o600


@audit_misses
@pytest.mark.permission(child=True, fs_read=GRANTED_IN, fs_write=GRANTED_IN)
def test_child_changes_no_metadata_outside_the_write_grants(
    metadata: tuple[Path, os.stat_result]
) -> None:
    secret, before = metadata
    assert program("chmod", "777", secret).returncode != 0
    assert program("touch", "-d", "@0", secret).returncode != 0
    if os.geteuid() == 0:
        assert program("chown", "65534", secret).returncode != 0
    done = python(f"import os; os.setxattr({str(secret)!r}, 'user.stamp', b'x')")
    assert "PermissionError" in done.stderr
    listed = python(f"import os; print(os.listxattr({str(secret)!r}))").stdout
    assert unchanged(secret, before, listed.encode())
