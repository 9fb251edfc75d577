"""The implicit grants of spec section 3: what ordinary tests need to run.

Kept apart from the declared policy on purpose: ``has()`` answers for what
the test declared, and ``drop()`` cannot take away the interpreter's own
ability to import code or read the time-zone database.

One list for both layers: the audit layer answers from it for Python code
(:class:`Implicit`), the kernel layer turns the same entries into Landlock
rules for C code and the programs a test starts
(:func:`pytest_permission.kernel.mapping.implicit_rules`), so neither layer
allows what the other refuses. Each entry says what it is for:

* :func:`installation`: the interpreter's folders and site-packages;
* importable code files below ``sys.path`` entries and loaded packages
  (:func:`code_roots`; only files with a :data:`CODE_SUFFIXES` suffix);
* :data:`SYSTEM_DATA`: read by the runtime on its own behalf;
* :func:`loader_paths`: the dynamic loader's library folders and its cache,
  read whenever an extension module (``sqlite3``, ``_ssl``) or a granted
  ``ctypes`` library loads a shared library;
* with ``net`` granted: :data:`RESOLVER` files and the CA certificates;
* with ``child`` granted: :data:`PROGRAMS`, read (and, by the kernel layer,
  executed) by the programs the test starts;
* :data:`WRITABLE`: written.
"""

from __future__ import annotations

import functools
import glob
import os
import site
import sys
from collections.abc import Iterable, Sequence

from pytest_permission import paths, scopes
from pytest_permission.scopes import Scope

CODE_SUFFIXES = (".py", ".pyc", ".so", ".pyd", ".pth", ".pyi", ".typed")
"""Files the import system reads from ``sys.path`` entries."""

SYSTEM_DATA = (
    "/usr/share/zoneinfo",
    "/etc/localtime",
    "/usr/lib/locale",
    "/usr/share/locale",
    "/dev/null",
    "/dev/urandom",
    "/dev/random",
)
"""Read by the runtime on its own behalf (time zones, locales, entropy)."""

RESOLVER = (
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/nsswitch.conf",
    "/etc/gai.conf",
    "/etc/host.conf",
    "/etc/services",
)
"""Read by the C resolver; granted with ``net``."""

PROGRAMS = (
    "/bin", "/sbin", "/usr", "/lib", "/lib32", "/lib64", "/libx32",
    "/etc/ld.so.preload", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf",
)
"""Read and executed by the programs a test granted ``child`` starts."""

LOADER_CACHE = "/etc/ld.so.cache"
LOADER_CONFIG = "/etc/ld.so.conf"
_LOADER_DEFAULTS = ("/lib", "/usr/lib", "/lib64", "/usr/lib64")
"""Searched by the loader after its cache, besides the multiarch folders."""

WRITABLE = ("/dev/null",)


@functools.lru_cache(maxsize=16)
def _rules(entries: tuple[str, ...]) -> tuple[paths.PathRule, ...]:
    """Resolved once per set of entries: forked children inherit the cache."""
    return tuple(dict.fromkeys(paths.resolved(paths.parse(e)) for e in entries if e))


@functools.cache
def installation() -> list[str]:
    """The interpreter's folders and its site-packages."""
    found = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    found += site.getsitepackages() if hasattr(site, "getsitepackages") else []
    user = site.getusersitepackages() if site.ENABLE_USER_SITE else None
    return found + ([user] if isinstance(user, str) else [])


@functools.cache
def _ca_files() -> list[str]:
    import ssl

    verify = ssl.get_default_verify_paths()
    found = (verify.cafile, verify.capath, verify.openssl_cafile, verify.openssl_capath)
    return [p for p in found if p]


@functools.cache
def loader_paths() -> tuple[str, ...]:
    """The folders the dynamic loader finds shared libraries in, and its cache.

    Those of ``/etc/ld.so.conf`` (with its ``include`` files), the default
    and multiarch folders, ``LD_LIBRARY_PATH`` as the session started, and
    the folders of the libraries this process has mapped (which covers the
    ``RPATH`` folders of what the interpreter loaded), except the project's
    own folders. Only existing ones.
    """
    found = [*_ld_so_conf(LOADER_CONFIG, set()), *_LOADER_DEFAULTS]
    multiarch = getattr(sys.implementation, "_multiarch", "")
    if multiarch:
        found += [os.path.join(folder, multiarch) for folder in ("/lib", "/usr/lib")]
    found += os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep)
    project = tuple(r.rstrip(os.sep) + os.sep for r in code_roots() if not _installed(r))
    found += [f for f in _mapped_library_folders() if not (f + os.sep).startswith(project)]
    kept = [f for f in dict.fromkeys(found) if f and os.path.isabs(f) and os.path.isdir(f)]
    return (*kept, LOADER_CACHE)


def _installed(path: str) -> bool:
    return any(
        (path.rstrip(os.sep) + os.sep).startswith(root.rstrip(os.sep) + os.sep)
        for root in installation()
    )


def _ld_so_conf(path: str, seen: set[str]) -> list[str]:
    """The folders a loader configuration file names, following ``include``."""
    if path in seen:
        return []
    seen.add(path)
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            lines = file.read().splitlines()
    except OSError:
        return []
    found: list[str] = []
    for line in lines:
        text = line.split("#", 1)[0].strip()
        if text.startswith("include"):
            pattern = text[len("include"):].strip()
            pattern = os.path.join(os.path.dirname(path), pattern)
            for included in sorted(glob.glob(pattern)):
                found += _ld_so_conf(included, seen)
        elif text:
            found.append(text.split("=", 1)[0].strip())  # libc5-era "dir=TYPE"
    return found


def _mapped_library_folders() -> list[str]:
    """The folders of the shared libraries (``lib*.so*``) mapped into this process.

    Extension modules (``name.cpython-311-x86_64-linux-gnu.so``) are left
    out: their folders are code, granted file by file.
    """
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            lines = maps.read().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5].startswith(os.sep):
            folder, name = os.path.split(fields[5])
            if name.startswith("lib") and ".so" in name:
                found.append(folder)
    return list(dict.fromkeys(found))


def system_paths(*, net: bool, child: bool = False) -> list[str]:
    """The system paths the implicit read grant names, for what ``net``/``child`` add."""
    found = [*SYSTEM_DATA, *loader_paths()]
    if net:
        found += [*RESOLVER, *_ca_files()]
    if child:
        found += PROGRAMS
    return found


def code_roots(entries: Iterable[object] | None = None) -> list[str]:
    """``sys.path`` entries and the folders of loaded packages: where code is imported from.

    Loaded packages count because editable installs and import hooks put
    code where ``sys.path`` does not name it, and tracebacks read it.
    """
    found = [p or os.getcwd() for p in (sys.path if entries is None else entries)
             if isinstance(p, str)]
    for module in list(sys.modules.values()):
        found += [p for p in getattr(module, "__path__", None) or () if isinstance(p, str)]
    return list(dict.fromkeys(found))


PDB_CONFIG = ".pdbrc"


def _pdb_config(real: str) -> bool:
    """``~/.pdbrc`` or ``./.pdbrc``, as ``pdb.Pdb()`` itself reads them.

    pytest's doctest runner makes a ``Pdb`` for each doctest, its debugger one
    for ``--pdb``/``--trace``, ``breakpoint()`` one: that reading is pytest's
    and pdb's, not the test's, so it is granted even with ``implicit=False``.
    The test's own code reading those files needs a grant like any other.
    """
    if os.path.basename(real) != PDB_CONFIG:
        return False
    home = paths.resolve(os.path.expanduser("~/.pdbrc"))
    if real not in (home, paths.resolve(os.path.join(os.getcwd(), ".pdbrc"))):
        return False
    pdb_file = getattr(sys.modules.get("pdb"), "__file__", None)
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename == pdb_file:
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


class Implicit:
    """Answers whether an implicit grant covers a real path."""

    def __init__(
        self,
        *,
        enabled: bool,
        net: bool,
        child: bool = False,
        extra_read: Sequence[str] = (),
        extra_write: Sequence[str] = (),
    ) -> None:
        self.enabled = enabled
        read = list(extra_read)
        write = list(extra_write)
        if enabled:
            read += installation() + system_paths(net=net, child=child)
            write += list(WRITABLE)
        self._read = _rules(tuple(read))
        self._write = _rules(tuple(write))
        self._sys_path: list[str] = []
        self._modules = 0
        self._code_roots: tuple[str, ...] = ()
        self.sources: set[str] = set()
        """Source files the plugin reads to format a failure (its frames' files), even
        with ``implicit=False``: showing the failing line is pytest's need, not the test's."""

    def fresh(self) -> Implicit:
        """The same grants, with no source file of an earlier test's failure in them."""
        copy = object.__new__(Implicit)
        vars(copy).update(vars(self))
        copy.sources = set()
        return copy

    def covers(self, scope: Scope, real: str) -> bool:
        if scope is scopes.FS_WRITE:
            return paths.covered(self._write, real)
        if real in self.sources or paths.covered(self._read, real) or _pdb_config(real):
            return True
        return self.enabled and real.endswith(CODE_SUFFIXES) and self.importable(real)

    def importable(self, real: str) -> bool:
        """Whether ``real`` lies below an entry of ``sys.path`` or a loaded package."""
        if sys.path != self._sys_path or len(sys.modules) != self._modules:
            self._sys_path = list(sys.path)
            self._modules = len(sys.modules)
            roots = (paths.resolve(p) for p in code_roots(self._sys_path))
            self._code_roots = tuple(dict.fromkeys(r.rstrip(os.sep) + os.sep for r in roots))
        return real.startswith(self._code_roots)
