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
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
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
