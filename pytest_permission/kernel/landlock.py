"""Landlock: the file-system grants, and TCP ports from ABI 4, in the kernel.

A Landlock layer lists, for the access rights it handles, the folders and
files where each right stays allowed; everything else is refused with
``EACCES`` (``EXDEV`` for a rename across folders without ``REFER``), in
this process and every process it starts, for good. Layers stack: a new one
can only narrow, which is how ``drop()`` follows the audit layer, up to the
kernel's limit of 16 layers per process.

Landlock names inodes that exist when the layer is made, and a rule on a
folder covers everything below it. :mod:`.mapping` decides which paths a
policy becomes; this module makes the layers, as cheaply as it can:

* the paths of the implicit grants, the same in every test, are opened
  once (``O_PATH``), when the session starts (:func:`keep`);
* the last ruleset built is kept (:func:`ruleset`), in one descriptor made
  when the session starts, and reused by the next test that needs the same
  files with the same rights (``landlock_restrict_self`` does not consume
  it). The child closes it before the test body runs, so no test can add
  a rule to it.

So the pytest process holds a fixed set of descriptors from the start of
the session, whatever the number of tests.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

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
    WRITE_FILE | REMOVE_DIR | REMOVE_FILE | MAKE_DIR | MAKE_REG | MAKE_SOCK | MAKE_FIFO
    | MAKE_SYM | REFER | TRUNCATE | IOCTL_DEV
)
"""What an ``fs_write`` grant allows: never ``MAKE_CHAR``/``MAKE_BLOCK``. A device
node made in a writable folder would open a device (a disk, memory) no grant names."""
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
    """Folder or file -> rights: this test's own (its grants, its file)."""
    ports: frozenset[int] | None
    """TCP ports allowed to bind and connect; ``None`` leaves TCP alone."""
    scoped: int = 0
    """``SCOPE_*`` flags: abstract Unix sockets and signals kept inside the layer."""
    own: Mapping[str, int] = field(default_factory=dict)
    """Paths below ``/proc/self`` -> rights: they name the child's own process, so the
    child opens them and adds them to the ruleset itself (:meth:`Landlock.restrict`)."""
    shared: Shared | None = None
    """Rules many tests share (the implicit grants), their files looked up once."""

    def all(self) -> dict[str, int]:
        """Every path of the layer, with its rights."""
        found = dict(self.shared.rules) if self.shared is not None else {}
        for path, rights in self.paths.items():
            found[path] = found.get(path, 0) | rights
        return found


@dataclass(frozen=True)
class Entry:
    """A rule ready to add: the path, the file it names, the rights it may carry."""

    path: str
    identity: Identity
    rights: int


class Shared:
    """Rules shared by many tests, with the file each path names looked up once
    (through :func:`keep`'s descriptors, or ``known``, or one ``stat``)."""

    def __init__(self, rules: Mapping[str, int], known: Mapping[str, Identity]) -> None:
        self.rules = dict(rules)
        self.entries = tuple(_entries(self.rules, known))
        self.key = frozenset((e.identity.dev, e.identity.ino, e.rights) for e in self.entries)


def merge(entries: Iterable[tuple[str, int]]) -> dict[str, int]:
    """Rights per path, the rights of a path named twice combined."""
    out: dict[str, int] = {}
    for path, rights in entries:
        out[path] = out.get(path, 0) | rights
    return out


@dataclass(frozen=True)
class Identity:
    """Which file a path named: device, inode, and whether a folder."""

    dev: int
    ino: int
    folder: bool


_kept: dict[str, tuple[int, Identity]] = {}
"""Descriptors kept for the session: path -> (descriptor, identity) (see :func:`keep`)."""
_slot: list[int] = []
"""The descriptor the last ruleset is kept in, made by :func:`reserve`."""
_slot_key: list[object] = []


def keep(paths: Iterable[str]) -> None:
    """Open ``paths`` for the session (those every test's rules name): the implicit
    grants' folders, which never change while tests run."""
    for path in paths:
        if path in _kept:
            continue
        try:
            fd = os.open(path, _O_PATH | os.O_CLOEXEC)
        except OSError:
            continue
        found = os.fstat(fd)
        _kept[path] = (fd, Identity(found.st_dev, found.st_ino, stat.S_ISDIR(found.st_mode)))


def reserve() -> None:
    """Make the descriptor the last ruleset is kept in (once)."""
    if not _slot:
        _slot.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))


def identify(path: str) -> Identity | None:
    """Which file ``path`` names now; ``None`` if none."""
    kept = _kept.get(path)
    if kept is not None:
        return kept[1]
    try:
        found = os.stat(path)
    except OSError:
        return None
    return Identity(found.st_dev, found.st_ino, stat.S_ISDIR(found.st_mode))


class Landlock:
    """The layers this process added."""

    def __init__(self, version: int) -> None:
        self.version = version
        self.rules: Rules | None = None

    def ruleset(self, rules: Rules, *, keep: bool = False) -> int:
        """A ruleset descriptor allowing only ``rules`` (but :attr:`Rules.own`).

        With ``keep`` (in the pytest process), the last one built is reused
        when it allowed the same files with the same rights, and the new one
        kept for the next test. ``OSError`` if the kernel refuses. The
        descriptor belongs to this module: see :meth:`restrict` and
        :func:`release`.
        """
        fs = handled_fs(self.version)
        own = _entries(rules.paths, {})
        shared = rules.shared
        handled_net = self._handled_net(rules)
        scoped = rules.scoped if self.version >= 6 else 0
        key = (
            shared.key if shared is not None else frozenset(),
            frozenset((e.identity.dev, e.identity.ino, e.rights) for e in own),
            rules.ports if handled_net else None, scoped, fs,
        )
        keeping = keep and bool(_slot) and not rules.own
        if keeping and _slot_key == [key]:
            return _slot[0]
        attr = ctypes.create_string_buffer(struct.pack("=QQQ", fs, handled_net, scoped))
        ruleset = libc.syscall(libc.CREATE_RULESET, attr, 24, 0)
        try:
            for entry in (*(shared.entries if shared is not None else ()), *own):
                _add_path(ruleset, entry.path, entry.identity, entry.rights & fs)
            for port in sorted(rules.ports or ()) if handled_net else ():
                rule = struct.pack("=QQ", handled_net, port)
                libc.syscall(libc.ADD_RULE, ruleset, _RULE_NET_PORT, _buffer(rule), 0)
            if keeping:  # in the session's descriptor, for the next test
                os.dup2(ruleset, _slot[0])
                os.close(ruleset)
                _slot_key[:] = [key]
                return _slot[0]
        except BaseException:
            os.close(ruleset)
            raise
        return ruleset

    def restrict(self, rules: Rules, ruleset: int | None = None) -> None:
        """Add a layer allowing only ``rules``, from ``ruleset`` if it was built ahead.

        In the child, its own ``/proc/self`` paths are added to the ruleset
        first; every ruleset descriptor is then closed, so the test cannot add
        to one. ``OSError`` if refused.
        """
        if ruleset is None:
            ruleset = self.ruleset(rules)
        try:
            fs = handled_fs(self.version)
            for path, rights in rules.own.items():
                identity = identify(path)
                if identity is not None:
                    mask = ~0 if identity.folder else FILE_RIGHTS
                    _add_path(ruleset, path, identity, rights & fs & mask)
            libc.syscall(libc.RESTRICT_SELF, ruleset, 0)
        finally:
            release(ruleset)
            seal()
        self.rules = rules

    def _handled_net(self, rules: Rules) -> int:
        return 0 if rules.ports is None or self.version < 4 else BIND_TCP | CONNECT_TCP


def _entries(rules: Mapping[str, int], known: Mapping[str, Identity]) -> list[Entry]:
    found = []
    for path, rights in rules.items():
        identity = known.get(path) or identify(path)
        if identity is not None:
            kept = rights & (~0 if identity.folder else FILE_RIGHTS)
            if kept:
                found.append(Entry(path, identity, kept))
    return found


def seal() -> None:
    """In the child, once restricted: close the kept ruleset (the next test may reuse
    it, so no test may add a rule to it), and keep none from now on."""
    if _slot:
        os.close(_slot[0])
    _slot.clear()
    _slot_key.clear()


def release(ruleset: int | None) -> None:
    """In the pytest process after the fork: close a ruleset that is not the kept one."""
    if ruleset is not None and not (_slot and ruleset == _slot[0]):
        os.close(ruleset)


def _add_path(ruleset: int, path: str, identity: Identity, rights: int) -> None:
    """Allow ``rights`` below ``path``, if it still names the file ``identity`` says."""
    if not rights:
        return
    kept = _kept.get(path)
    if kept is not None:
        fd, opened = kept[0], False
    else:
        try:
            fd = os.open(path, _O_PATH | os.O_CLOEXEC)
        except OSError:
            return  # gone meanwhile: nothing to allow there
        opened = True
    try:
        if opened:
            now = os.fstat(fd)
            if (now.st_dev, now.st_ino) != (identity.dev, identity.ino):
                return  # another file meanwhile: the rule was for the one listed
        rule = struct.pack("=Qi", rights, fd)
        try:
            libc.syscall(libc.ADD_RULE, ruleset, _RULE_PATH_BENEATH, _buffer(rule), 0)
        except OSError as exc:
            if exc.errno != errno.EBADFD:  # a file system Landlock cannot tag: skip it
                raise
    finally:
        if opened:
            os.close(fd)


def _buffer(data: bytes) -> ctypes.Array[ctypes.c_char]:
    return ctypes.create_string_buffer(data, len(data))
