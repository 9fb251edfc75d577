"""addon, ffi and inspector enforcement, attempted for real in a fresh process.

The addon tests build a tiny C extension once per session, so that a real
compiled module from outside the standard library is loaded (or not).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import PRELUDE

EXTENSION_SOURCE = r"""
#include <Python.h>

static PyObject *answer(PyObject *self, PyObject *args) { return PyLong_FromLong(42); }

static PyMethodDef methods[] = {{"answer", answer, METH_NOARGS, NULL}, {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "permext", NULL, -1, methods};

PyMODINIT_FUNC PyInit_permext(void) { return PyModule_Create(&module); }
"""


def denied(permission: str, resource: str) -> dict[str, Any]:
    return {
        "denied": True,
        "permission": permission,
        "resource": resource,
        "code": "ERR_ACCESS_DENIED",
    }


@pytest.fixture(scope="session")
def extension(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``permext``, a compiled module answering 42, built for this interpreter."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler (gcc or cc) to build a test extension module")
    folder = tmp_path_factory.mktemp("ext")
    source = folder / "permext.c"
    source.write_text(EXTENSION_SOURCE)
    suffix: str = sysconfig.get_config_var("EXT_SUFFIX")
    target = folder / ("permext" + suffix)
    subprocess.run(
        [compiler, "-shared", "-fPIC", "-I", sysconfig.get_paths()["include"],
         "-o", str(target), str(source)],
        check=True,
        capture_output=True,
    )
    return target


# -- addon -------------------------------------------------------------------


def test_extension_outside_stdlib_is_denied_and_not_loaded(enforced: Any, extension: Path) -> None:
    out = enforced(
        """
        attempt("import", lambda: __import__("permext"))
        attempt("loaded", lambda: "permext" in sys.modules)
        attempt("stdlib", lambda: __import__("_bz2").__name__)
        """,
        setup=f"import sys; sys.path.insert(0, {str(extension.parent)!r})\n",
    )
    assert out["import"] == denied("Addon", str(extension))
    assert out["loaded"] == {"denied": False, "value": "False"}
    # The standard library's own extensions are part of the interpreter.
    assert out["stdlib"] == {"denied": False, "value": "'_bz2'"}


def test_granted_extension_loads(enforced: Any, extension: Path) -> None:
    out = enforced(
        'attempt("import", lambda: __import__("permext").answer())',
        {"addon": True},
        setup=f"import sys; sys.path.insert(0, {str(extension.parent)!r})\n",
    )
    assert out["import"] == {"denied": False, "value": "42"}


def test_extension_loaded_before_enforcement_stays_usable(
    enforced: Any, extension: Path
) -> None:
    out = enforced(
        'attempt("import", lambda: __import__("permext").answer())',
        setup=f"import sys; sys.path.insert(0, {str(extension.parent)!r}); import permext\n",
    )
    assert out["import"] == {"denied": False, "value": "42"}


# -- ffi ---------------------------------------------------------------------

FFI_SETUP = """
import ctypes
libc = ctypes.CDLL("libc.so.6")
mkdir = libc.mkdir  # looked up before enforcement: only the call is left
mkdir_address = ctypes.cast(mkdir, ctypes.c_void_p).value
"""


def test_loading_a_library_is_denied(enforced: Any) -> None:
    out = enforced(
        """
        import ctypes
        attempt("cdll", lambda: ctypes.CDLL("libc.so.6"))
        attempt("unloaded", lambda: ctypes.CDLL("libcrypt.so.1"))
        attempt("maps", lambda: "libcrypt.so" in open("/proc/self/maps").read())
        attempt("dlsym", lambda: libc.getpid)
        attempt("pythonapi", lambda: ctypes.pythonapi.Py_IsInitialized())
        """,
        {"fs_read": ["/proc/self/maps"]},
        setup=FFI_SETUP,
    )
    assert out["cdll"] == denied("FFI", "libc.so.6")
    assert out["unloaded"] == denied("FFI", "libcrypt.so.1")
    assert out["maps"] == {"denied": False, "value": "False"}
    assert out["dlsym"] == denied("FFI", "libc.so.6")
    assert out["pythonapi"] == denied("FFI", "<main program>")


def test_calling_a_function_looked_up_before_is_denied(enforced: Any, tmp_path: Path) -> None:
    target = tmp_path / "made-by-libc"
    out = enforced(
        f"""
        import os
        import _ctypes
        path = {str(target).encode()!r}
        attempt("call", lambda: mkdir(path, 0o755))
        prototype = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p, ctypes.c_int)
        attempt("prototype", lambda: prototype(mkdir_address)(path, 0o755))
        attempt("call_function", lambda: _ctypes.call_function(mkdir_address, (path, 0o755)))
        attempt("exists", lambda: os.path.lexists(path))
        attempt("address", lambda: hex(mkdir_address))
        """,
        setup=FFI_SETUP,
    )
    # C code does not go through the file-system checks: ffi is what stops it.
    assert out["call"] == denied("FFI", "mkdir")
    address = out["address"]["value"].strip("'")
    assert out["prototype"] == denied("FFI", address)
    assert out["call_function"] == denied("FFI", address)
    assert out["exists"] == {"denied": False, "value": "False"}
    assert not target.exists()


def test_raw_memory_helpers_are_denied_and_buffer_views_allowed(enforced: Any) -> None:
    out = enforced(
        """
        import ctypes
        buffer = ctypes.create_string_buffer(b"secret")
        attempt("string_at", lambda: ctypes.string_at(buffer, 6))
        attempt("memmove", lambda: ctypes.memmove(buffer, b"public", 6))
        attempt("after", lambda: buffer.value)
        attempt("cast", lambda: ctypes.cast(buffer, ctypes.c_void_p))
        address = ctypes.addressof(buffer)
        attempt("from_address", lambda: (ctypes.c_char * 6).from_address(address).raw)
        attempt("from_buffer", lambda: ctypes.c_int.from_buffer(bytearray(8), 4).value)
        attempt("repr", lambda: repr(ctypes.c_char_p(b"x")).startswith("c_char_p("))
        """,
    )
    assert out["string_at"] == denied("FFI", "ctypes.string_at")
    assert out["memmove"] == denied("FFI", "ctypes.memmove")
    assert out["after"] == {"denied": False, "value": "b'secret'"}
    assert out["cast"] == denied("FFI", "ctypes.cast")
    assert out["from_address"]["denied"] is True
    assert out["from_address"]["permission"] == "FFI"
    assert out["from_address"]["resource"].startswith("0x")
    assert out["from_buffer"] == {"denied": False, "value": "0"}
    assert out["repr"] == {"denied": False, "value": "True"}


def test_granted_ffi_loads_and_calls(enforced: Any) -> None:
    out = enforced(
        """
        import ctypes, os
        attempt("getpid", lambda: ctypes.CDLL("libc.so.6").getpid() == os.getpid())
        attempt("pythonapi", lambda: ctypes.pythonapi.Py_IsInitialized())
        attempt("string_at", lambda: ctypes.string_at(ctypes.create_string_buffer(b"ok"), 2))
        """,
        {"ffi": True},
    )
    assert out["getpid"] == {"denied": False, "value": "True"}
    assert out["pythonapi"] == {"denied": False, "value": "1"}
    assert out["string_at"] == {"denied": False, "value": "b'ok'"}


def test_drop_stops_calls_into_a_library_opened_while_granted(enforced: Any) -> None:
    out = enforced(
        """
        import ctypes, os
        getpid = ctypes.CDLL("libc.so.6").getpid
        attempt("granted", lambda: getpid() == os.getpid())
        GUARD.drop("ffi")
        attempt("dropped", lambda: getpid())
        """,
        {"ffi": True},
    )
    assert out["granted"] == {"denied": False, "value": "True"}
    assert out["dropped"] == denied("FFI", "getpid")


@pytest.mark.skipif(
    importlib.util.find_spec("_cffi_backend") is None, reason="cffi is not installed"
)
def test_cffi_loading_is_denied(enforced: Any) -> None:
    out = enforced(
        """
        import cffi, _cffi_backend  # imported after enforcement: patched on load
        attempt("abi", lambda: cffi.FFI().dlopen(None))
        attempt("out_of_line", lambda: _cffi_backend.FFI().dlopen("libm.so.6"))
        """,
        {"addon": True},
    )
    assert out["abi"] == denied("FFI", "<main program>")
    assert out["out_of_line"] == denied("FFI", "libm.so.6")


@pytest.mark.skipif(
    importlib.util.find_spec("_cffi_backend") is None, reason="cffi is not installed"
)
def test_granted_cffi_loads(enforced: Any) -> None:
    out = enforced(
        """
        import cffi
        ffi = cffi.FFI()
        ffi.cdef("int getpid(void);")
        attempt("abi", lambda: ffi.dlopen(None).getpid() == __import__("os").getpid())
        """,
        {"addon": True, "ffi": True},
    )
    assert out["abi"] == {"denied": False, "value": "True"}


def test_stdlib_shared_ctypes_work_without_ffi(enforced: Any) -> None:
    out = enforced(
        """
        import multiprocessing.sharedctypes
        attempt("value", lambda: multiprocessing.sharedctypes.RawValue("i", 7).value)
        """,
        {"fs_read": ["/dev/shm"], "fs_write": ["/dev/shm"]},
    )
    assert out["value"] == {"denied": False, "value": "7"}


# -- inspector -----------------------------------------------------------------

INSPECTOR_SETUP = """
import sys, threading
calls = []
def hook(frame, event, arg):
    calls.append(event)
    return hook
def work():
    return sum(range(3))
"""


def test_trace_and_profile_hooks_are_denied(enforced: Any) -> None:
    out = enforced(
        """
        attempt("settrace", lambda: sys.settrace(hook))
        attempt("setprofile", lambda: sys.setprofile(hook))
        attempt("threading", lambda: threading.settrace(hook))
        work()
        attempt("installed", lambda: (sys.gettrace(), sys.getprofile(), calls))
        attempt("remove", lambda: sys.settrace(None))
        """,
        setup=INSPECTOR_SETUP,
    )
    assert out["settrace"] == denied("Inspector", "sys.settrace")
    assert out["setprofile"] == denied("Inspector", "sys.setprofile")
    assert out["threading"] == denied("Inspector", "threading.settrace")
    assert out["installed"] == {"denied": False, "value": "(None, None, [])"}
    assert out["remove"] == {"denied": False, "value": "None"}


def test_hook_from_a_saved_reference_is_denied_by_the_event(enforced: Any) -> None:
    out = enforced(
        """
        attempt("saved", lambda: settrace(hook))
        work()
        attempt("calls", lambda: calls)
        """,
        setup=INSPECTOR_SETUP + "from sys import settrace\n",
    )
    assert out["saved"] == denied("Inspector", "sys.settrace")
    assert out["calls"] == {"denied": False, "value": "[]"}


def test_breakpoint_is_denied(enforced: Any) -> None:
    out = enforced(
        """
        attempt("breakpoint", lambda: breakpoint())
        attempt("hook_called", lambda: stopped)
        """,
        setup="import sys\nstopped = []\nsys.breakpointhook = lambda: stopped.append(1)\n",
    )
    assert out["breakpoint"] == denied("Inspector", "breakpoint")
    assert out["hook_called"] == {"denied": False, "value": "[]"}


@pytest.mark.skipif(sys.version_info < (3, 12), reason="sys.monitoring is new in Python 3.12")
def test_monitoring_callback_is_denied(enforced: Any) -> None:
    out = enforced(
        """
        mon = sys.monitoring
        mon.use_tool_id(3, "test")
        attempt("register", lambda: mon.register_callback(3, mon.events.PY_START, hook))
        attempt("unregister", lambda: mon.register_callback(3, mon.events.PY_START, None))
        """,
        setup=INSPECTOR_SETUP,
    )
    assert out["register"] == denied("Inspector", "sys.monitoring.register_callback")
    assert out["unregister"] == {"denied": False, "value": "None"}


def test_granted_inspector_traces(enforced: Any) -> None:
    out = enforced(
        """
        def traced():
            sys.settrace(hook)
            work()
            sys.settrace(None)
            return "call" in calls
        attempt("settrace", traced)
        def in_thread():
            threading.settrace(hook)
            thread = threading.Thread(target=work)
            thread.start()
            thread.join()
            return calls.count("call")
        calls.clear()
        attempt("thread", in_thread)
        """,
        {"inspector": True, "worker": True},
        setup=INSPECTOR_SETUP,
    )
    assert out["settrace"] == {"denied": False, "value": "True"}
    assert out["thread"]["denied"] is False
    assert int(out["thread"]["value"]) >= 1


@pytest.mark.parametrize("inspector", [True, False])
@pytest.mark.parametrize("implicit", [True, False])
def test_pdb_reads_its_start_up_files_the_test_does_not(
    enforced: Any, tmp_path: Path, inspector: bool, implicit: bool
) -> None:
    """Every ``pdb.Pdb`` (``breakpoint()``, each doctest's) reads ``~/.pdbrc`` and ``./.pdbrc``:
    pdb's reading, granted; the test's own reading of them is not."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".pdbrc").write_text("p 'home'\n")
    (tmp_path / ".pdbrc").write_text("p 'here'\n")
    code = """
        attempt("rc", lambda: pdb.Pdb().rcLines)
        print("@@" + json.dumps({"denials": [d.resource for d in GUARD.denials]}), flush=True)
        attempt("own", lambda: open(os.path.expanduser("~/.pdbrc")).read())
        """
    env = {**os.environ, "HOME": str(home)}
    out = enforced(
        code, {"inspector": inspector}, env=env, implicit=implicit, setup="import os, pdb\n"
    )
    # without implicit grants HOME is hidden: pdb looks in the account's home instead
    read = ["p 'home'\n", "p 'here'\n"] if implicit else ["p 'here'\n"]
    assert out["rc"] == {"denied": False, "value": repr(read)}
    assert [d for d in out.results["denials"] if d.endswith(".pdbrc")] == []
    assert out["own"]["denied"] is True


@pytest.mark.skipif(
    importlib.util.find_spec("coverage") is None, reason="coverage is not installed"
)
def test_coverage_keeps_working(tmp_path: Path) -> None:
    snippet = tmp_path / "snippet.py"
    snippet.write_text(
        PRELUDE
        + textwrap.dedent(
            """
            import threading
            def in_thread():
                return "thread line ran"
            thread = threading.Thread(target=in_thread)
            thread.start()
            thread.join()
            attempt("main", lambda: "main line ran")
            """
        )
    )
    config = {
        "grants": {"worker": True, "fs_read": [str(tmp_path)], "fs_write": [str(tmp_path)]},
        "implicit": True,
    }
    data = tmp_path / ".coverage"
    run = subprocess.run(
        [sys.executable, "-m", "coverage", "run", f"--data-file={data}", str(snippet),
         json.dumps(config)],
        capture_output=True, text=True, cwd=str(tmp_path), timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert '"main": {"denied": false' in run.stdout
    report = tmp_path / "coverage.json"
    subprocess.run(
        [sys.executable, "-m", "coverage", "json", f"--data-file={data}", "-o", str(report)],
        check=True, capture_output=True, cwd=str(tmp_path),
    )
    files = json.loads(report.read_text())["files"]
    executed = set(next(iter(files.values()))["executed_lines"])
    lines = snippet.read_text().splitlines()
    thread_line = lines.index('    return "thread line ran"') + 1
    main_line = lines.index('attempt("main", lambda: "main line ran")') + 1
    assert {thread_line, main_line} <= executed
