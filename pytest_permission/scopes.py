"""The scope table: Node 26's permission names and how Python spells them.

One row per scope, so that the marker keyword, the dotted ``has()``/``drop()``
name, the error's ``permission`` field and the command-line flag of a scope
can never disagree.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Kind(enum.Enum):
    """What a scope's grant can name, which decides how it is parsed."""

    PATHS = "paths"  # fs.read, fs.write
    HOSTS = "hosts"  # net
    NAMES = "names"  # env
    SWITCH = "switch"  # on or off, no resource
    BOTH_FS = "both-fs"  # "fs": has/drop only, both directions


@dataclass(frozen=True)
class Scope:
    name: str
    """The dotted name ``has()`` and ``drop()`` take."""
    permission: str
    """The ``permission`` field of :class:`AccessDenied`."""
    kind: Kind
    keyword: str | None
    """The ``@pytest.mark.permission`` keyword; ``None`` for ``fs``."""
    flag: str | None
    """Node's command-line flag; ``None`` for ``fs``."""
    gates_python: bool = True
    """False for Node scopes with no Python counterpart (wasi, openssl.store)."""


FS = Scope("fs", "FileSystem", Kind.BOTH_FS, None, None)
FS_READ = Scope("fs.read", "FileSystemRead", Kind.PATHS, "fs_read", "--allow-fs-read")
FS_WRITE = Scope("fs.write", "FileSystemWrite", Kind.PATHS, "fs_write", "--allow-fs-write")
NET = Scope("net", "Net", Kind.HOSTS, "net", "--allow-net")
CHILD = Scope("child", "ChildProcess", Kind.SWITCH, "child", "--allow-child-process")
WORKER = Scope("worker", "WorkerThreads", Kind.SWITCH, "worker", "--allow-worker")
ADDON = Scope("addon", "Addon", Kind.SWITCH, "addon", "--allow-addons")
FFI = Scope("ffi", "FFI", Kind.SWITCH, "ffi", "--allow-ffi")
INSPECTOR = Scope("inspector", "Inspector", Kind.SWITCH, "inspector", "--allow-inspector")
ENV = Scope("env", "Env", Kind.NAMES, "env", "--allow-env")
WASI = Scope("wasi", "WASI", Kind.SWITCH, "wasi", "--allow-wasi", gates_python=False)
OPENSSL_STORE = Scope(
    "openssl.store", "OpenSSLStore", Kind.SWITCH, "openssl_store", "--allow-openssl-store",
    gates_python=False,
)

ALL_SCOPES: tuple[Scope, ...] = (
    FS, FS_READ, FS_WRITE, NET, CHILD, WORKER, ADDON, FFI, INSPECTOR, ENV, WASI, OPENSSL_STORE,
)
"""Every scope, ``fs`` first; the order of tables and help texts."""

GRANTABLE: tuple[Scope, ...] = tuple(s for s in ALL_SCOPES if s.kind is not Kind.BOTH_FS)
"""The scopes a grant can name (``fs`` is only a shorthand for has/drop)."""

_BY_NAME = {s.name: s for s in ALL_SCOPES}
_BY_NAME["addons"] = ADDON  # Node accepts both spellings
_BY_KEYWORD = {s.keyword: s for s in GRANTABLE if s.keyword}
_BY_KEYWORD["addons"] = ADDON


def by_name(name: object) -> Scope:
    """The scope a ``has()``/``drop()`` name means.

    Unknown names raise ``ValueError`` where Node answers ``false``: a typo in
    a permission check must not pass silently.
    """
    if not isinstance(name, str):
        raise TypeError(f"scope must be a str such as 'fs.read', got {type(name).__name__}")
    try:
        return _BY_NAME[name]
    except KeyError:
        known = ", ".join(repr(n) for n in _BY_NAME)
        raise ValueError(f"unknown permission scope {name!r}; expected one of {known}") from None


def by_keyword(keyword: str) -> Scope | None:
    """The scope a marker keyword names, or ``None`` if it names none."""
    return _BY_KEYWORD.get(keyword)


def keywords() -> list[str]:
    """Every marker keyword, for error messages and help texts."""
    return list(_BY_KEYWORD)
