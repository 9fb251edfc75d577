"""The kernel layer never in the way of what the marker and the implicit grants allow.

Honest code, under ``--permission-kernel=require``, in inner sessions: every
extension module of the standard library and a third-party one with a
system-library dependency import; a test reads its own ``/proc/self``;
grants Landlock cannot say exactly (a file not made yet, a wildcard) work
from Python, C code and child programs alike; metadata changes inside the
write grants and connections to granted hosts work from all three.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from pytest_permission import kernel

pytestmark = pytest.mark.skipif(
    bool(kernel.support().missing), reason="; ".join(kernel.support().missing)
)


def extension_modules() -> list[str]:
    """The standard library's extension modules that import here without the plugin."""
    folder = os.path.dirname(importlib.import_module("_json").__file__ or "")
    names = sorted({f.split(".")[0] for f in os.listdir(folder) if f.endswith(".so")})
    code = textwrap.dedent(f"""
        import importlib, warnings
        warnings.simplefilter("ignore")
        for name in {names!r}:
            try:
                importlib.import_module(name)
            except Exception:
                continue
            print(name)
    """)
    done = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True
    )
    return done.stdout.split()


STDLIB = '''
import importlib, subprocess, sys, warnings
import pytest

NAMES = {names!r}
IMPORT_ALL = """
import importlib, warnings
warnings.simplefilter("ignore")
failed = {{}}
for name in %r:
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed[name] = repr(exc)
print(failed)
""" % (NAMES,)

@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.permission(ffi=True)
def test_each_one_not_loaded_yet_imports_in_the_body():
    fresh = [name for name in NAMES if name not in sys.modules]
    assert "_sqlite3" in fresh  # the others this session loaded already: see the next test
    failed = {{}}
    for name in fresh:
        try:
            importlib.import_module(name)
        except Exception as exc:
            failed[name] = repr(exc)
    assert failed == {{}}

@pytest.mark.permission(child=True)
def test_all_of_them_import_in_a_granted_python_child():
    done = subprocess.run([sys.executable, "-c", IMPORT_ALL], capture_output=True, text=True)
    assert done.stdout.strip() == "{{}}", done.stdout + done.stderr

@pytest.mark.permission(fs_read=["{{tmp_path}}"], fs_write=["{{tmp_path}}"])
def test_sqlite3_works(tmp_path):
    import sqlite3
    with sqlite3.connect(tmp_path / "db.sqlite") as db:
        db.execute("create table t (x)")
        db.execute("insert into t values (1)")
    assert sqlite3.connect(tmp_path / "db.sqlite").execute("select x from t").fetchall() == [(1,)]

@pytest.mark.permission(net=True)
def test_ssl_loads_the_ca_certificates():
    import ssl
    assert ssl.create_default_context().cert_store_stats()["x509_ca"] > 0
'''


def test_every_stdlib_extension_module_imports(pytester: pytest.Pytester) -> None:
    names = extension_modules()
    assert {"_sqlite3", "_ssl", "_ctypes", "_decimal", "readline", "_curses"} <= set(names)
    pytester.makepyfile(STDLIB.format(names=names))
    result = pytester.runpytest_subprocess("--permission-kernel=require")
    result.assert_outcomes(passed=4)


EXTENSION = r"""
#include <Python.h>
const char *sqlite3_libversion(void);
static PyObject *version(PyObject *self, PyObject *args) {
    return PyUnicode_FromString(sqlite3_libversion());
}
static PyMethodDef methods[] = {{"version", version, METH_NOARGS, NULL}, {NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "sysdep", NULL, -1, methods};
PyMODINIT_FUNC PyInit_sysdep(void) { return PyModule_Create(&module); }
"""


@pytest.fixture
def sysdep(pytester: pytest.Pytester) -> Path:
    """A C extension, built here with the gcc of the machine, that needs libsqlite3: a
    system library the interpreter has not loaded."""
    compiler = shutil.which("gcc")
    if compiler is None:
        pytest.skip("no gcc to build a C extension with")
    source = pytester.path / "sysdep.c"
    source.write_text(EXTENSION)
    target = pytester.path / f"sysdep{sysconfig.get_config_var('EXT_SUFFIX')}"
    include = sysconfig.get_paths()["include"]
    built = subprocess.run(
        [compiler, "-shared", "-fPIC", f"-I{include}", str(source), "-o", str(target), "-lsqlite3"],
        capture_output=True, text=True, check=False,
    )
    if built.returncode:
        pytest.skip(f"could not build against libsqlite3: {built.stderr}")
    source.unlink()
    return target


def test_a_third_party_extension_with_a_system_library(
    pytester: pytest.Pytester, sysdep: Path
) -> None:
    pytester.makepyfile('''
        import pytest

        @pytest.fixture
        def fresh():
            with open("/proc/self/maps") as maps:
                assert "libsqlite3" not in maps.read()  # the child loads it itself

        @pytest.mark.permission(addon=True)
        def test_import(fresh):
            import sysdep
            assert sysdep.version().startswith("3.")
    ''')
    result = pytester.runpytest_subprocess("--permission-kernel=require")
    result.assert_outcomes(passed=1)


HONEST = '''
import ctypes, errno, os, shutil, socket, struct, subprocess, sys, tarfile
import pytest
from pytest_permission import drop

def c_write(path, data=b"c"):
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.open(os.fsencode(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    assert fd >= 0, os.strerror(ctypes.get_errno())
    assert libc.write(fd, data, len(data)) == len(data)
    os.close(fd)

def sh(command, cwd):
    done = subprocess.run(["sh", "-c", command], cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout

@pytest.mark.permission(fs_read=["/proc/self"], ffi=True)
def test_its_own_proc_self():
    assert "NoNewPrivs:\\t1" in open("/proc/self/status").read()
    assert os.listdir("/proc/self/fd")
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.open(b"/proc/self/status", os.O_RDONLY)
    assert fd >= 0, os.strerror(ctypes.get_errno())
    os.close(fd)

@pytest.fixture
def out(tmp_path):
    (tmp_path / "out").mkdir()
    return tmp_path / "out"

REPORT = ["{tmp_path}/out/report.json"]

@pytest.mark.permission(fs_read=REPORT, fs_write=REPORT, ffi=True, child=True)
def test_a_file_not_made_yet_from_python_c_and_a_child(out):
    report = out / "report.json"
    report.write_text("python")
    assert report.read_text() == "python"
    os.chmod(report, 0o600)
    assert os.stat(report).st_mode & 0o777 == 0o600
    report.unlink()
    c_write(report)
    assert report.read_text() == "c"
    sh("echo child > report.json && cat report.json", cwd=out)
    assert report.read_text() == "child\\n"
    with pytest.raises(PermissionError):
        (out / "other").write_text("x")  # the audit layer: exactly that file

@pytest.mark.permission(fs_read=REPORT, fs_write=REPORT)
def test_a_file_made_on_its_behalf_gets_its_umask(out):
    os.umask(0o077)
    (out / "report.json").write_text("")
    assert os.stat(out / "report.json").st_mode & 0o777 == 0o600

RUNS = ["{tmp_path}/run*"]

@pytest.mark.permission(fs_read=RUNS, fs_write=RUNS, ffi=True, child=True)
def test_new_entries_of_a_wildcard_from_python_c_and_a_child(tmp_path):
    (tmp_path / "run-1").mkdir()
    (tmp_path / "run-1" / "log").write_text("python")
    c_write(tmp_path / "run-2")
    sh("mkdir run-3 && echo child > run-3/log", cwd=tmp_path)
    assert (tmp_path / "run-3" / "log").read_text() == "child\\n"
    os.rename(tmp_path / "run-2", tmp_path / "run-4")
    shutil.rmtree(tmp_path / "run-3")
    found = [name for name in ("run-1", "run-2", "run-3", "run-4") if (tmp_path / name).exists()]
    assert found == ["run-1", "run-4"]  # (listing tmp_path itself is no grant of the test's)

@pytest.fixture
def archive(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    (source / "data").write_text("x")
    os.symlink("data", source / "link")
    os.utime(source / "data", (0, 0))
    with tarfile.open(tmp_path / "a.tar", "w") as tar:
        tar.add(source, arcname="tree")
    return tmp_path / "a.tar"

RW = ["{tmp_path}"]

@pytest.mark.permission(fs_read=RW, fs_write=RW, ffi=True, child=True)
def test_metadata_inside_the_write_grants(tmp_path, archive):
    with tarfile.open(archive) as tar:  # modes, times (also of a link), owners
        tar.extractall(tmp_path / "x")
    assert os.stat(tmp_path / "x" / "tree" / "data").st_mtime == 0
    shutil.copy2(tmp_path / "x" / "tree" / "data", tmp_path / "copy")  # copystat, xattrs
    os.setxattr(tmp_path / "copy", "user.note", b"1")
    os.chown(tmp_path / "copy", os.getuid(), os.getgid())
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.chmod(os.fsencode(tmp_path / "copy"), 0o640) == 0
    sh("chmod 600 copy && touch -d @5 copy", cwd=tmp_path)
    assert os.stat(tmp_path / "copy").st_mtime == 5

@pytest.fixture
def server(request):
    """A server on 127.0.0.1; the test's marker grants it as ``request.param`` says
    (``{host}``: this machine's name, resolved by the supervisor)."""
    if "{host}" in request.param and socket.gethostbyname(socket.gethostname()) != "127.0.0.1":
        pytest.skip("this machine's name does not resolve to 127.0.0.1")
    with socket.create_server(("127.0.0.1", 0)) as listening:
        port = listening.getsockname()[1]
        host = socket.gethostname() if "{host}" in request.param else "127.0.0.1"
        grant = request.param.format(port=port, host=host)
        request.node.add_marker(pytest.mark.permission(ffi=True, child=True, net=[grant]))
        yield listening, host

def c_connect(host, port):
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    address = struct.pack("=HH4s8x", socket.AF_INET, socket.htons(port), socket.inet_aton(host))
    try:
        return 0 if libc.connect(fd, address, len(address)) == 0 else ctypes.get_errno()
    finally:
        os.close(fd)

GRANTS = ["localhost:{port}", "127.0.0.1", "{host}:{port}"]

@pytest.mark.parametrize("server", GRANTS, indirect=True)
def test_a_granted_host_from_python_c_and_a_child(server):
    listening, host = server
    port = listening.getsockname()[1]
    with socket.create_connection((host, port), timeout=10) as client:
        client.sendall(b"python")
    assert c_connect("127.0.0.1", port) == 0
    code = f"import socket; socket.create_connection(({host!r}, {port})).close()"
    done = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for _ in range(3):
        listening.accept()[0].close()

@pytest.fixture
def udp():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as bound:
        bound.bind(("127.0.0.1", 0))
        yield bound

@pytest.mark.permission(net=["127.0.0.1"], ffi=True)
def test_datagrams_to_a_granted_host(udp):
    target = udp.getsockname()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.sendto(b"to", target)
        client.sendmsg([b"msg"], [], 0, target)
        client.connect(target)
        client.send(b"connected")
    assert [udp.recv(16) for _ in range(3)] == [b"to", b"msg", b"connected"]

@pytest.mark.parametrize("server", ["127.0.0.1"], indirect=True)
def test_drop_narrows_the_supervisor_too(server):
    port = server[0].getsockname()[1]
    assert c_connect("127.0.0.1", port) == 0
    drop("net", "127.0.0.1")
    assert c_connect("127.0.0.1", port) == errno.EACCES
'''


def test_honest_code_is_not_refused(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(HONEST)
    result = pytester.runpytest_subprocess("--permission-kernel=require", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=10)


WILDCARD_READ = '''
import ctypes, errno, os, subprocess, tempfile, time
import pytest

SPOOL = {spool!r}

def c_read(path):
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.open(os.fsencode(path), os.O_RDONLY)
    if fd < 0:
        return ctypes.get_errno()
    with os.fdopen(fd, "rb") as file:
        return file.read()

@pytest.mark.permission(
    fs_read=[SPOOL + "/tmp*"], fs_write=[SPOOL], ffi=True, child=True
)
def test_files_it_makes_in_a_write_grant_read_back_through_a_wildcard():
    with tempfile.NamedTemporaryFile("w", dir=SPOOL) as named:  # created read-write
        named.write("python")
        named.flush()
        assert open(named.name).read() == "python"
        assert c_read(named.name) == b"python"
    done = subprocess.run(
        ["sh", "-c", "echo child > tmp-child && cat tmp-child"], cwd=SPOOL,
        capture_output=True, text=True,
    )
    assert done.stdout == "child\\n", done.stderr
    assert c_read(os.path.join(SPOOL, "tmp-child")) == b"child\\n"
    with open(os.path.join(SPOOL, "other"), "w") as other:  # granted: writing
        other.write("x")
    assert c_read(os.path.join(SPOOL, "other")) == errno.EACCES  # no read grant names it

NOT_YET = SPOOL + "/later/settings.yaml"

@pytest.mark.permission(fs_read=[NOT_YET], ffi=True)
def test_a_read_grant_of_a_file_another_process_makes_meanwhile(made_meanwhile):
    found = errno.ENOENT
    for _ in range(500):
        found = c_read(NOT_YET)
        if found != errno.ENOENT:
            break
        time.sleep(0.01)
    assert found == b"made meanwhile"
    assert c_read(SPOOL + "/later/beside.yaml") == errno.EACCES
'''


def test_grants_covering_entries_made_during_the_test_are_honoured(
    pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A wildcard read grant beside a write grant (``tempfile`` in a granted
    folder, as click's tests do) and a read grant of a file another process
    makes meanwhile: Landlock has no rule for entries made after the test
    starts, so the supervisor must decide them, never refuse what the marker
    allows, never allow what it does not."""
    spool = tmp_path_factory.mktemp("spool")  # outside the inner session's sys.path
    pytester.makeconftest(f'''
        import os, threading, pytest

        @pytest.fixture
        def made_meanwhile():
            """Files made by the pytest process once the test's child runs."""
            later = os.path.join({str(spool)!r}, "later")
            os.makedirs(later)

            def make():
                for name in ("beside.yaml", "settings.yaml"):
                    with open(os.path.join(later, name), "w") as file:
                        file.write("made meanwhile")

            timer = threading.Timer(0.5, make)
            timer.start()
            yield
            timer.join()
    ''')
    pytester.makepyfile(WILDCARD_READ.format(spool=str(spool)))
    result = pytester.runpytest("--permission-kernel=require", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
