"""Landlock: the file-system grants, and TCP ports from ABI 4, in the kernel.

A Landlock layer lists, for the access rights it handles, the folders and
files where each right stays allowed; everything else is refused with
``EACCES`` (``EXDEV`` for a rename across folders without ``REFER``), in
this process and every process it starts, for good. Layers stack: a new one
can only narrow, which is how ``drop()`` follows the audit layer, up to the
kernel's limit of 16 layers per process.

Landlock names inodes, not strings, so a grant is mapped to a folder or
file that exists when the layer is made:

* a folder or file grant: that folder or file;
* a wildcard grant (``/home/foo*``): a string prefix Landlock cannot
  express, so the folder holding the prefix (``/home``);
* a grant of a path that does not exist yet: its nearest existing folder.

The kernel layer is thus coarser than the grant in the last two cases; the
audit layer still enforces the exact rule. Links need nothing special: the
kernel checks the file a path leads to.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pytest_permission.kernel import libc

EXECUTE = 1 << 0
WRITE_FILE = 1 << 1
READ_FILE = 1 << 2
READ_DIR = 1 << 3
REMOVE_DIR = 1 << 4
REMOVE_FILE = 1 << 5
MAKE_CHAR = 1 << 6
MAKE_DIR = 1 << 7
MAKE_REG = 1 << 8
MAKE_SOCK = 1 << 9
MAKE_FIFO = 1 << 10
MAKE_BLOCK = 1 << 11
MAKE_SYM = 1 << 12
REFER = 1 << 13  # ABI 2
TRUNCATE = 1 << 14  # ABI 3
IOCTL_DEV = 1 << 15  # ABI 5

BIND_TCP = 1 << 0  # ABI 4
CONNECT_TCP = 1 << 1

SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1

READ = READ_FILE | READ_DIR | IOCTL_DEV
"""What an ``fs_read`` grant allows (``EXECUTE`` too where ``child`` is granted)."""
WRITE = (
    WRITE_FILE | REMOVE_DIR | REMOVE_FILE | MAKE_CHAR | MAKE_DIR | MAKE_REG | MAKE_SOCK
    | MAKE_FIFO | MAKE_BLOCK | MAKE_SYM | REFER | TRUNCATE | IOCTL_DEV
)
"""What an ``fs_write`` grant allows."""
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV
"""The rights a rule on a file (not a folder) may name; the kernel refuses others."""

_FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}
_CREATE_RULESET_VERSION = 1 << 0
_RULE_PATH_BENEATH = 1
_RULE_NET_PORT = 2
_O_PATH = getattr(os, "O_PATH", 0)


def abi() -> int:
    """The Landlock ABI the running kernel offers; 0 without Landlock."""
    try:
        return libc.syscall(libc.CREATE_RULESET, None, 0, _CREATE_RULESET_VERSION)
    except OSError:
        return 0  # ENOSYS (not built) or EOPNOTSUPP (not enabled at boot)


def handled_fs(version: int) -> int:
    """Every file-system right ABI ``version`` knows, all of which a layer handles."""
    return _FS_BY_ABI[max(v for v in _FS_BY_ABI if v <= version)]


@dataclass(frozen=True)
class Rules:
    """One layer: rights per path, allowed TCP ports, scopes."""

    paths: Mapping[str, int]
    """Folder or file (as the grant or implicit rule names it) -> rights."""
    ports: frozenset[int] | None
    """TCP ports allowed to bind and connect; ``None`` leaves TCP alone."""
    scoped: int = 0
    """``SCOPE_*`` flags: abstract Unix sockets and signals kept inside the layer."""


def anchor(text: str, prefix: str | None) -> str:
    """The existing folder or file a grant is mapped to (see the module text)."""
    if prefix is None:
        target = text
    elif prefix.endswith(os.sep):
        target = prefix.rstrip(os.sep) or os.sep
    else:
        target = os.path.dirname(prefix)
    while not os.path.lexists(target) and target != os.sep:
        target = os.path.dirname(target)
    return target


def merge(entries: Iterable[tuple[str, int]]) -> dict[str, int]:
    """Rights per path, the rights of a path named twice combined."""
    out: dict[str, int] = {}
    for path, rights in entries:
        out[path] = out.get(path, 0) | rights
    return out


class Landlock:
    """The layers this process added, and a handle on each path they name.

    Paths are opened (``O_PATH``) when the first layer's ruleset is built,
    in the pytest process before the fork, and the child keeps its copies:
    a later, narrower layer needs no ``open`` while the audit layer is in
    force, and means the same inodes even if a path was renamed since.
    """

    def __init__(self, version: int) -> None:
        self.version = version
        self.handles: dict[str, int] = {}
        self.rules: Rules | None = None

    def ruleset(self, rules: Rules) -> int:
        """A ruleset descriptor allowing only ``rules``, for :meth:`restrict`; ``OSError``
        if the kernel refuses it."""
        if self.rules is None:
            for path in rules.paths:
                with contextlib.suppress(OSError):  # missing: nothing to allow there
                    self.handles.setdefault(path, os.open(path, _O_PATH | os.O_CLOEXEC))
        handled_net = self._handled_net(rules)
        fs = handled_fs(self.version)
        scoped = rules.scoped if self.version >= 6 else 0
        attr = ctypes.create_string_buffer(struct.pack("=QQQ", fs, handled_net, scoped))
        ruleset = libc.syscall(libc.CREATE_RULESET, attr, 24, 0)
        try:
            for path, rights in rules.paths.items():
                handle = self.handles.get(path)
                if handle is not None:
                    self._add_path(ruleset, handle, rights & fs)
            for port in sorted(rules.ports or ()) if handled_net else ():
                rule = struct.pack("=QQ", handled_net, port)
                libc.syscall(libc.ADD_RULE, ruleset, _RULE_NET_PORT, _buffer(rule), 0)
        except BaseException:
            os.close(ruleset)
            raise
        return ruleset

    def restrict(self, rules: Rules, ruleset: int | None = None) -> None:
        """Add a layer allowing only ``rules``, from ``ruleset`` if it was built ahead
        (and then closed here, so the test cannot add to it); ``OSError`` if refused."""
        if ruleset is None:
            ruleset = self.ruleset(rules)
        try:
            libc.syscall(libc.RESTRICT_SELF, ruleset, 0)
        finally:
            os.close(ruleset)
        self.rules = rules

    def close(self) -> None:
        """Close the handles: the pytest process's copies, once the child has its own."""
        for handle in self.handles.values():
            os.close(handle)
        self.handles.clear()

    def _handled_net(self, rules: Rules) -> int:
        return 0 if rules.ports is None or self.version < 4 else BIND_TCP | CONNECT_TCP

    def _add_path(self, ruleset: int, handle: int, rights: int) -> None:
        if not stat.S_ISDIR(os.fstat(handle).st_mode):
            rights &= FILE_RIGHTS
        if not rights:
            return
        rule = struct.pack("=Qi", rights, handle)
        try:
            libc.syscall(libc.ADD_RULE, ruleset, _RULE_PATH_BENEATH, _buffer(rule), 0)
        except OSError as exc:
            if exc.errno != errno.EBADFD:  # a file system Landlock cannot tag: skip it
                raise


def _buffer(data: bytes) -> ctypes.Array[ctypes.c_char]:
    return ctypes.create_string_buffer(data, len(data))
