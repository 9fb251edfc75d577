"""The implicit grants of spec section 3: what ordinary tests need to run.

Kept apart from the declared policy on purpose: ``has()`` answers for what
the test declared, and ``drop()`` cannot take away the interpreter's own
ability to import code or read the time-zone database.
"""

from __future__ import annotations

import functools
import os
import site
import sys
from collections.abc import Sequence

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


def system_paths(*, net: bool) -> list[str]:
    """The system files the implicit read grant names; the resolver's with ``net``."""
    return list(SYSTEM_DATA) + (list(RESOLVER) + _ca_files() if net else [])


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
        extra_read: Sequence[str] = (),
        extra_write: Sequence[str] = (),
    ) -> None:
        self.enabled = enabled
        read = list(extra_read)
        write = list(extra_write)
        if enabled:
            read += installation() + system_paths(net=net)
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
        """Whether ``real`` lies below an entry of ``sys.path`` or a loaded package.

        Loaded packages count because editable installs and import hooks put
        code where ``sys.path`` does not name it, and tracebacks read it.
        """
        if sys.path != self._sys_path or len(sys.modules) != self._modules:
            self._sys_path = list(sys.path)
            self._modules = len(sys.modules)
            found = [p or os.getcwd() for p in self._sys_path]
            for module in list(sys.modules.values()):
                found += list(getattr(module, "__path__", None) or ())
            roots = (paths.resolve(p) for p in found if isinstance(p, str))
            self._code_roots = tuple(dict.fromkeys(r.rstrip(os.sep) + os.sep for r in roots))
        return real.startswith(self._code_roots)
