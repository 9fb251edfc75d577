"""``addon``, ``ffi`` and ``inspector``: ways to reach below the interpreter.

addon
    The extension loader raises ``import`` a second time with the file it is
    about to ``dlopen``; a file outside the standard library is denied. The
    standard library's own extensions (``lib-dynload``) are part of the
    interpreter, as Node's built-ins are part of Node. Modules already in
    ``sys.modules`` are not loaded again, so they stay usable.

ffi
    ctypes raises events for loading (``ctypes.dlopen``, ``ctypes.dlsym``…)
    and the raw-memory helpers, but not for calling a foreign function, so
    the call of every ctypes function pointer is wrapped as well: that is
    what stops a function looked up before enforcement from being called
    after it. ``import ctypes`` itself opens the main program (for
    ``pythonapi``), so this module imports ctypes before the hook is added:
    ``import ctypes`` works in a test, ``CDLL(...)`` and calls are denied.
    Calls made by the standard library outside ctypes itself
    (``multiprocessing.sharedctypes`` clearing its own buffers) belong to
    the interpreter and pass. ``from_buffer``/``from_buffer_copy`` stay
    allowed: they are bounds-checked views of Python buffers (ctypes' own
    ``repr`` uses them), told apart from ``from_address`` by the
    ``ctypes.cdata/buffer`` event that precedes their ``ctypes.cdata``.
    cffi's ``load_library`` and ``FFI.dlopen`` are wrapped once
    ``_cffi_backend`` is loaded.

inspector
    ``sys.settrace``/``sys.setprofile`` events carry no argument, so the
    setters are wrapped to see the hook: removing a hook (``None``) and
    putting back one that was in force at installation (doctest restores
    the tracer it found) inspect nothing and pass. Code of the ``coverage``
    package may always install its hooks, so the test's coverage keeps
    working. ``threading.settrace`` only stores a hook, so it is checked
    when called, and the stored hook when a new thread installs it.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import importlib.util
import os
import site
import sys
import sysconfig
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from pytest_permission.audit.guard import Guard, Handler, caller_file
from pytest_permission.errors import hide_under_a_denial
from pytest_permission.scopes import ADDON, FFI, INSPECTOR

__tracebackhide__ = hide_under_a_denial
"""A denial's traceback ends where the access was asked for (pytest hides these frames)."""

MAIN_PROGRAM = "<main program>"
"""The ``ffi`` resource for ``CDLL(None)``: the symbols of the process itself."""

CTYPES_HELPERS = ("memmove", "memset", "_cast", "_string_at", "_wstring_at")
"""ctypes functions that are foreign calls themselves; named for their denials."""

TRUSTED: dict[int, tuple[Any, frozenset[int]]] = {}
"""ctypes functions the plugin itself calls after installation, by ``id``:
``(function, first arguments allowed)``. The kernel layer registers its
``syscall`` here for the system calls that can only take rights away
(Landlock rules and layers, seccomp filters), so that ``drop()`` can narrow
the kernel policy too. Not a way around ``ffi``: it names function objects
the plugin made before enforcement began, and only for those calls.
"""


def install(guard: Guard) -> dict[str, Handler]:
    interpreter = interpreter_files()
    try:
        ffi = _ffi(guard, interpreter)
    except ImportError:  # no ctypes here (a sub-interpreter on 3.12): nothing to call through
        ffi = {}
    return {
        **_addon(guard, interpreter),
        **ffi,
        **_inspector(guard),
    }


@functools.cache
def interpreter_files() -> Callable[[str], bool]:
    """A test for files of the standard library, site-packages excluded.

    site-packages usually lies inside the stdlib folder, hence the two lists.
    """
    found = sysconfig.get_paths()
    sites = [found["purelib"], found["platlib"], *site.getsitepackages()]
    user = site.getusersitepackages() if site.ENABLE_USER_SITE else None
    stdlib = _roots([found["stdlib"], found["platstdlib"]])
    others = _roots([*sites, *([user] if isinstance(user, str) else [])])

    def belongs(path: str) -> bool:
        real = os.path.realpath(path)
        return real.startswith(stdlib) and not real.startswith(others)

    return belongs


def _roots(folders: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(os.path.realpath(f).rstrip(os.sep) + os.sep for f in folders))


# -- addon -------------------------------------------------------------------


def _addon(guard: Guard, interpreter: Callable[[str], bool]) -> dict[str, Handler]:
    def on_import(args: tuple[Any, ...]) -> None:
        filename = args[1]
        if filename is None or guard.granted(ADDON):
            return  # the import system's first event, or allowed
        path = os.path.abspath(os.fsdecode(filename))
        if not interpreter(path):
            guard.deny(ADDON, path)

    return {"import": on_import}


# -- ffi ---------------------------------------------------------------------


def _ffi(guard: Guard, interpreter: Callable[[str], bool]) -> dict[str, Handler]:
    import _ctypes
    import ctypes

    ctypes_dir = os.path.dirname(os.path.realpath(ctypes.__file__)) + os.sep
    base_call = _ctypes.CFuncPtr.__call__

    def require(resource: str) -> None:
        guard.require(FFI, resource)

    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not guard.retired and not guard.granted(FFI) and not _trusted(self, args):
            caller = os.path.realpath(caller_file())
            if not interpreter(caller) or caller.startswith(ctypes_dir):
                guard.deny(FFI, _function_name(self))
        return base_call(self, *args, **kwargs)

    def guard_calls(cls: Any) -> Any:
        if "__call__" not in vars(cls):
            cls.__call__ = call
        return cls

    def guarding(factory: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(factory)
        def make(*args: Any, **kwargs: Any) -> Any:
            return guard_calls(factory(*args, **kwargs))

        return make

    for cls in _ctypes.CFuncPtr.__subclasses__():
        guard_calls(cls)
    for name in ("CFUNCTYPE", "PYFUNCTYPE", "WINFUNCTYPE"):
        if hasattr(ctypes, name):
            setattr(ctypes, name, guarding(getattr(ctypes, name)))
    _guard_new_libraries(ctypes.CDLL, guard_calls)
    for name in CTYPES_HELPERS:
        helper = getattr(ctypes, name, None)
        if helper is not None and "__name__" not in vars(helper):
            helper.__name__ = "ctypes." + name.lstrip("_")
    _after_import("_cffi_backend", lambda backend: _guard_cffi(backend, require))

    def library(lib: object) -> str:
        name = getattr(lib, "_name", None)
        return MAIN_PROGRAM if name is None else str(name)

    viewing = threading.local()

    def on_buffer_view(args: tuple[Any, ...]) -> None:
        pointer, _size, offset = args
        viewing.address = pointer + offset

    def on_cdata(args: tuple[Any, ...]) -> None:
        if getattr(viewing, "address", None) == args[0]:
            viewing.address = None  # from_buffer() placing its bounds-checked view
            return
        require(hex(args[0]))

    return {
        "ctypes.dlopen": lambda a: require(MAIN_PROGRAM if a[0] is None else os.fsdecode(a[0])),
        "ctypes.dlsym": lambda a: require(library(a[0])),
        "ctypes.dlsym/handle": lambda a: require(hex(a[0])),
        "ctypes.call_function": lambda a: require(hex(a[0])),
        "ctypes.cdata/buffer": on_buffer_view,
        "ctypes.cdata": on_cdata,
        "ctypes.string_at": lambda a: require(hex(a[0])),
        "ctypes.wstring_at": lambda a: require(hex(a[0])),
        "ctypes.PyObj_FromPtr": lambda a: require(hex(id(a[0]))),
    }


def _trusted(function: Any, args: tuple[Any, ...]) -> bool:
    """Whether this is one of the plugin's own calls listed in ``TRUSTED``."""
    entry = TRUSTED.get(id(function))
    if entry is None or entry[0] is not function or not args:
        return False
    return isinstance(args[0], int) and args[0] in entry[1]


def _function_name(pointer: Any) -> str:
    """A ctypes function's name if it was looked up by name, else its address."""
    name = vars(pointer).get("__name__")
    if isinstance(name, str):
        return name
    return hex(int.from_bytes(bytes(memoryview(pointer)), sys.byteorder))


def _guard_new_libraries(cdll: Any, guard_calls: Callable[[Any], Any]) -> None:
    """Each ``CDLL`` makes its own function class; guard the ones made from now on."""
    init = cdll.__init__

    @functools.wraps(init)
    def init_and_guard(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        guard_calls(self._FuncPtr)

    cdll.__init__ = init_and_guard


def _guard_cffi(backend: Any, require: Callable[[str], None]) -> None:
    """Check cffi's two ways of opening a library: ``ffi.dlopen`` of both APIs."""
    load_library = backend.load_library

    @functools.wraps(load_library)
    def load(name: object = None, *args: Any, **kwargs: Any) -> Any:
        require(MAIN_PROGRAM if name is None else os.fsdecode(name))  # type: ignore[arg-type]
        return load_library(name, *args, **kwargs)

    class GuardedFFI(backend.FFI):  # type: ignore[misc]
        __doc__ = backend.FFI.__doc__

        def dlopen(self, name: object = None, *args: Any, **kwargs: Any) -> Any:
            require(MAIN_PROGRAM if name is None else os.fsdecode(name))  # type: ignore[arg-type]
            return super().dlopen(name, *args, **kwargs)

    GuardedFFI.__name__ = GuardedFFI.__qualname__ = "FFI"
    backend.load_library = load
    backend.FFI = GuardedFFI


class _PatchOnLoad(importlib.abc.MetaPathFinder):
    """Runs ``patch`` on a module right after its first load."""

    def __init__(self, name: str, patch: Callable[[ModuleType], None]) -> None:
        self.name = name
        self.patch = patch

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_and_patch(module: ModuleType) -> None:
            exec_module(module)
            self.patch(module)

        loader.exec_module = exec_and_patch  # type: ignore[method-assign]
        return spec


def _after_import(name: str, patch: Callable[[ModuleType], None]) -> None:
    """Patch ``name`` now if it is loaded, else when it is first imported."""
    module = sys.modules.get(name)
    if module is not None:
        patch(module)
    else:
        sys.meta_path.insert(0, _PatchOnLoad(name, patch))


# -- inspector -----------------------------------------------------------------

SETTERS = (
    (sys, "settrace"),
    (sys, "setprofile"),
    (sys, "_settraceallthreads"),
    (sys, "_setprofileallthreads"),
    (threading, "settrace"),
    (threading, "setprofile"),
)
"""Functions that install a trace or profile hook; absent ones are skipped."""


def _inspector(guard: Guard) -> dict[str, Handler]:
    local = threading.local()
    approved: list[object] = []

    def approve_current() -> None:
        """The hooks in place when enforcement starts (coverage's tracer) stay allowed."""
        current = (
            sys.gettrace(),
            sys.getprofile(),
            getattr(threading, "_trace_hook", None),
            getattr(threading, "_profile_hook", None),
        )
        approved.extend(hook for hook in current if hook not in approved)

    guard.on_change(approve_current)

    def by_coverage() -> bool:
        """Coverage's tracer, hypothesis's explain phase (a line tracer of its own), or
        the debugger the user asked for (``guard.debugger``)."""
        caller = caller_file()
        coverage = getattr(sys.modules.get("coverage"), "__file__", None)
        explain = getattr(sys.modules.get("hypothesis.internal.scrutineer"), "__file__", None)
        if guard.debugger and caller == getattr(sys.modules.get("bdb"), "__file__", None):
            return True
        return caller == explain or (
            coverage is not None and caller.startswith(os.path.dirname(coverage) + os.sep)
        )

    def allowed(hook: object) -> bool:
        if hook is None or hook in approved or guard.granted(INSPECTOR):
            return True
        if by_coverage():
            approved.append(hook)
            return True
        return False

    def wrap(owner: ModuleType, name: str) -> None:
        setter = getattr(owner, name)
        resource = f"{owner.__name__}.{name}"

        @functools.wraps(setter)
        def set_hook(hook: object) -> None:
            if not allowed(hook):
                guard.deny(INSPECTOR, resource)
            local.approved = True
            try:
                setter(hook)
            finally:
                local.approved = False

        setattr(owner, name, set_hook)

    def on_set_hook(event: str) -> Handler:
        def check(args: tuple[Any, ...]) -> None:
            if getattr(local, "approved", False) or guard.granted(INSPECTOR) or by_coverage():
                return
            guard.deny(INSPECTOR, event)

        return check

    def on_register(args: tuple[Any, ...]) -> None:
        if not allowed(args[0]):
            guard.deny(INSPECTOR, "sys.monitoring.register_callback")

    for owner, name in SETTERS:
        if hasattr(owner, name):
            wrap(owner, name)
    return {
        "sys.settrace": on_set_hook("sys.settrace"),
        "sys.setprofile": on_set_hook("sys.setprofile"),
        "sys.monitoring.register_callback": on_register,
        "builtins.breakpoint": lambda a: guard.require(INSPECTOR, "breakpoint"),
        "sys.remote_exec": lambda a: guard.require(INSPECTOR, "sys.remote_exec"),
    }
