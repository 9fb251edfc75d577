"""The supervisor's file-system calls: what Landlock cannot say exactly.

Two kinds, both decided on the real path the caller names
(:meth:`.supervisor.Caller.locate`):

* opening, creating, removing, renaming, truncating a path (for write
  grants on single files, missing paths, wildcards): where the first
  Landlock layer alone allows the call, it continues (Landlock checks it
  again as it runs); where it would refuse but the grant allows, the
  supervisor makes the call on behalf of the caller, on exactly the file it
  checked (``openat2`` following no link), and gives back the descriptor
  or the result; anything else continues, for Landlock to refuse;
* changing a file's mode, owner, times or extended attributes, which no
  Landlock right covers: allowed inside the write grants, made on behalf of
  the caller on the file it checked; refused (``EACCES``) elsewhere.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import struct
from collections.abc import Callable
from dataclasses import dataclass

from pytest_permission.audit.fs import needs
from pytest_permission.kernel import notify
from pytest_permission.kernel.landlock import (
    MAKE_DIR,
    MAKE_FIFO,
    MAKE_REG,
    MAKE_SOCK,
    READ_DIR,
    READ_FILE,
    REFER,
    REMOVE_DIR,
    REMOVE_FILE,
    TRUNCATE,
    WRITE_FILE,
)
from pytest_permission.kernel.supervisor import AT_FDCWD, Answer, Caller, Refused

AT_SYMLINK_NOFOLLOW, AT_REMOVEDIR, AT_EMPTY_PATH = 0x100, 0x200, 0x1000
_O_PATH = getattr(os, "O_PATH", 0)
_O_TMPFILE = getattr(os, "O_TMPFILE", 0)
_NO_LINKS = notify.RESOLVE_NO_SYMLINKS | notify.RESOLVE_NO_MAGICLINKS
_UTIME_NOW, _UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2
_XATTR_VALUE = 1 << 16  # XATTR_SIZE_MAX

_libc = ctypes.CDLL(None, use_errno=True)


def _call(result: int) -> int:
    if result < 0:
        raise Refused(ctypes.get_errno())
    return result


# -- opening, creating, removing -------------------------------------------------


def open_(caller: Caller) -> Answer:
    return _open(caller, AT_FDCWD, 0, caller.signed(1), caller.signed(2))


def openat(caller: Caller) -> Answer:
    return _open(caller, caller.signed(0), 1, caller.signed(2), caller.signed(3))


def openat2(caller: Caller) -> Answer:
    size = caller.arg(3)
    if size < 24:
        raise Refused(errno.EINVAL)
    flags, mode, resolve = struct.unpack("=QQQ", caller.memory(2, 24))
    if resolve:
        return Answer.CONTINUE  # its own resolution rules: Landlock decides alone
    return _open(caller, caller.signed(0), 1, flags, mode)


def creat(caller: Caller) -> Answer:
    flags = os.O_CREAT | os.O_WRONLY | os.O_TRUNC
    return _open(caller, AT_FDCWD, 0, flags, caller.signed(1))


def _open(caller: Caller, dirfd: int, path: int, flags: int, mode: int) -> Answer:
    if flags & _O_PATH or flags & _O_TMPFILE == _O_TMPFILE:
        return Answer.CONTINUE  # no access Landlock checks / a nameless file: Landlock decides
    real = caller.locate(dirfd, caller.string(path), follow=not flags & os.O_NOFOLLOW)
    want_read, want_write = needs(flags)
    view = caller.view
    exists = os.path.lexists(real)
    if exists or not flags & os.O_CREAT:
        # absent now, a path may still appear before the kernel opens it: decide as for
        # a file there, and open it on the caller's behalf (ENOENT if still absent)
        folder = exists and os.path.isdir(real)
        rights = (READ_DIR if folder else READ_FILE) if want_read else 0
        rights |= WRITE_FILE if flags & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR) else 0
        rights |= TRUNCATE if flags & os.O_TRUNC else 0
        alone = view.landlock_allows(real, rights)
    else:
        rights = MAKE_REG | (READ_FILE if want_read else 0) | (WRITE_FILE if want_write else 0)
        # a new file has the rights its folders give: made read-write, it needs both there
        alone = view.landlock_allows(os.path.dirname(real), rights)
    if alone or not _granted(caller, real, want_read, want_write):
        return Answer.CONTINUE
    umask = caller.world()
    previous = os.umask(umask)
    try:
        fd = notify.openat2(real, flags & ~os.O_CLOEXEC | os.O_NOFOLLOW, mode & 0o7777, _NO_LINKS)
    finally:
        os.umask(previous)
    return Answer(fd=fd, cloexec=bool(flags & os.O_CLOEXEC))


def _granted(caller: Caller, real: str, read: bool, write: bool) -> bool:
    view = caller.view
    return (not read or view.read.covers(real)) and (not write or view.write.covers(real))


@dataclass
class _Entry:
    """A name in a folder, as creating, removing or renaming names it."""

    real: str
    folder: str
    name: str

    def open_folder(self) -> int:
        return notify.openat2(self.folder, _O_PATH | os.O_DIRECTORY, 0, _NO_LINKS)


def _entry(caller: Caller, dirfd: int, path: int) -> _Entry:
    real = caller.locate(dirfd, caller.string(path), follow=False)
    folder, name = os.path.split(real)
    return _Entry(real, folder or os.sep, name)


def _on_behalf(
    caller: Caller, entry: _Entry, rights: int, action: Callable[[int], None]
) -> Answer:
    """Continue where Landlock alone allows ``rights`` on the entry's folder, or where
    the grant does not allow writing the entry; else run ``action(folder_fd)`` with the
    caller's umask."""
    if caller.view.landlock_allows(entry.folder, rights) or not caller.view.write.covers(
        entry.real
    ):
        return Answer.CONTINUE
    umask = caller.world()
    folder = entry.open_folder()
    previous = os.umask(umask)
    try:
        action(folder)
    finally:
        os.umask(previous)
        os.close(folder)
    return Answer(0)


def mkdir(caller: Caller) -> Answer:
    return _mkdir(caller, AT_FDCWD, 0, caller.signed(1))


def mkdirat(caller: Caller) -> Answer:
    return _mkdir(caller, caller.signed(0), 1, caller.signed(2))


def _mkdir(caller: Caller, dirfd: int, path: int, mode: int) -> Answer:
    entry = _entry(caller, dirfd, path)
    return _on_behalf(
        caller, entry, MAKE_DIR, lambda fd: os.mkdir(entry.name, mode & 0o7777, dir_fd=fd)
    )


def unlink(caller: Caller) -> Answer:
    return _remove(caller, AT_FDCWD, 0, 0)


def unlinkat(caller: Caller) -> Answer:
    return _remove(caller, caller.signed(0), 1, caller.signed(2))


def rmdir(caller: Caller) -> Answer:
    return _remove(caller, AT_FDCWD, 0, AT_REMOVEDIR)


def _remove(caller: Caller, dirfd: int, path: int, flags: int) -> Answer:
    entry = _entry(caller, dirfd, path)
    if flags & AT_REMOVEDIR:
        return _on_behalf(caller, entry, REMOVE_DIR, lambda fd: os.rmdir(entry.name, dir_fd=fd))
    return _on_behalf(caller, entry, REMOVE_FILE, lambda fd: os.unlink(entry.name, dir_fd=fd))


def rename(caller: Caller) -> Answer:
    return _rename(caller, AT_FDCWD, 0, AT_FDCWD, 1, 0)


def renameat(caller: Caller) -> Answer:
    return _rename(caller, caller.signed(0), 1, caller.signed(2), 3, 0)


def renameat2(caller: Caller) -> Answer:
    return _rename(caller, caller.signed(0), 1, caller.signed(2), 3, caller.signed(4))


_RENAME_EXCHANGE = 1 << 1


def _rename(caller: Caller, sdir: int, spath: int, ddir: int, dpath: int, flags: int) -> Answer:
    source, target = _entry(caller, sdir, spath), _entry(caller, ddir, dpath)
    view = caller.view
    kind = _made_by(source.real)
    rights_source = REMOVE_DIR if kind == MAKE_DIR else REMOVE_FILE
    same = source.folder == target.folder
    refer = same or (
        view.landlock_allows(source.folder, REFER) and view.landlock_allows(target.folder, REFER)
    )
    alone = (
        refer and view.landlock_allows(source.folder, rights_source)
        and view.landlock_allows(target.folder, kind | REMOVE_FILE | REMOVE_DIR)
    )
    exchange = bool(flags & _RENAME_EXCHANGE)
    granted = (
        _granted(caller, source.real, True, True)
        and _granted(caller, target.real, exchange, True)
    )
    if alone or not granted:
        return Answer.CONTINUE
    caller.world()
    sfd, dfd = source.open_folder(), target.open_folder()
    try:
        _call(_libc.renameat2(
            sfd, os.fsencode(source.name), dfd, os.fsencode(target.name), flags
        ))
    finally:
        os.close(sfd)
        os.close(dfd)
    return Answer(0)


def _made_by(real: str) -> int:
    """The Landlock right that makes a file of ``real``'s type."""
    try:
        mode = os.lstat(real).st_mode
    except OSError:
        return MAKE_REG
    if stat.S_ISDIR(mode):
        return MAKE_DIR
    if stat.S_ISFIFO(mode):
        return MAKE_FIFO
    if stat.S_ISSOCK(mode):
        return MAKE_SOCK
    return MAKE_REG


def truncate(caller: Caller) -> Answer:
    real = caller.locate(AT_FDCWD, caller.string(0), follow=True)
    view = caller.view
    if view.landlock_allows(real, TRUNCATE) or not view.write.covers(real):
        return Answer.CONTINUE
    caller.world()
    fd = notify.openat2(real, os.O_WRONLY | os.O_NOFOLLOW, 0, _NO_LINKS)
    try:
        os.ftruncate(fd, caller.arg(1) - (1 << 64 if caller.arg(1) >> 63 else 0))
    finally:
        os.close(fd)
    return Answer(0)


def mknod(caller: Caller) -> Answer:
    return _mknod(caller, AT_FDCWD, 0, caller.signed(1))


def mknodat(caller: Caller) -> Answer:
    return _mknod(caller, caller.signed(0), 1, caller.signed(2))


def _mknod(caller: Caller, dirfd: int, path: int, mode: int) -> Answer:
    kind = stat.S_IFMT(mode)
    right = {stat.S_IFIFO: MAKE_FIFO, stat.S_IFSOCK: MAKE_SOCK, 0: MAKE_REG,
             stat.S_IFREG: MAKE_REG}.get(kind)
    if right is None:
        return Answer.CONTINUE  # a device: no grant allows it, Landlock refuses
    entry = _entry(caller, dirfd, path)
    return _on_behalf(
        caller, entry, right, lambda fd: os.mknod(entry.name, mode, 0, dir_fd=fd)
    )


# -- metadata: mode, owner, times, extended attributes ------------------------------


@dataclass
class _Target:
    """The file a metadata call changes, opened here (``fd``), and its real path."""

    fd: int
    real: str
    link: bool
    """The file is a symbolic link itself (a ``NOFOLLOW`` call named one)."""
    given: bool
    """Named by the caller's descriptor (``fchmod``), not by a path."""


Change = Callable[[_Target], None]
Find = Callable[[], _Target]


def _by_fd(caller: Caller, index: int) -> Find:
    """The file the caller's descriptor in argument ``index`` names."""
    return lambda: _described(caller, caller.signed(index))


def _described(caller: Caller, number: int) -> _Target:
    fd = caller.take(number)
    try:
        real = os.readlink(f"/proc/self/fd/{fd}")
        link = stat.S_ISLNK(os.fstat(fd).st_mode)
    except OSError:
        os.close(fd)
        raise Refused(errno.EBADF) from None
    return _Target(fd, real, link, True)


def _by_path(caller: Caller, dirfd: int, path: int, *, follow: bool, empty: bool = False) -> Find:
    """The file a path argument names (or, with ``empty`` and ``""``, a NULL path for
    the ``*at`` calls that allow one, the descriptor ``dirfd``)."""

    def find() -> _Target:
        raw = caller.string(path) if caller.arg(path) else b""
        if not raw and (empty or not caller.arg(path)):
            if dirfd != AT_FDCWD:
                return _described(caller, dirfd)
            real = caller.folder(AT_FDCWD)
        else:
            real = caller.locate(dirfd, raw, follow=follow)
        flags = _O_PATH | (0 if follow else os.O_NOFOLLOW)
        fd = notify.openat2(real, flags, 0, _NO_LINKS)
        return _Target(fd, real, stat.S_ISLNK(os.fstat(fd).st_mode), False)

    return find


def _meta(caller: Caller, find: Find, change: Change) -> Answer:
    """Run ``change`` on the file ``find`` names if the write grants cover it, else
    refuse (``EACCES``, as Landlock refuses)."""
    target = find()
    try:
        if not target.real.startswith(os.sep) or not caller.view.write.covers(target.real):
            raise Refused(errno.EACCES)
        caller.world()
        change(target)
    finally:
        os.close(target.fd)
    return Answer(0)


def _at(caller: Caller, flags: int) -> Find:
    """The file an ``*at`` call with ``flags`` at arguments 0 (folder) and 1 (path) names."""
    return _by_path(
        caller, caller.signed(0), 1, follow=not flags & AT_SYMLINK_NOFOLLOW,
        empty=bool(flags & AT_EMPTY_PATH),
    )


def _mode(mode: int) -> Change:
    def change(target: _Target) -> None:
        if target.given:
            os.fchmod(target.fd, mode)
        elif target.link:
            raise Refused(errno.EOPNOTSUPP)
        else:
            os.chmod(f"/proc/self/fd/{target.fd}", mode)

    return change


def chmod(caller: Caller) -> Answer:
    change = _mode(caller.signed(1) & 0o7777)
    return _meta(caller, _by_path(caller, AT_FDCWD, 0, follow=True), change)


def fchmod(caller: Caller) -> Answer:
    return _meta(caller, _by_fd(caller, 0), _mode(caller.signed(1) & 0o7777))


def fchmodat(caller: Caller) -> Answer:
    return _meta(caller, _at(caller, 0), _mode(caller.signed(2) & 0o7777))


def fchmodat2(caller: Caller) -> Answer:
    return _meta(caller, _at(caller, caller.signed(3)), _mode(caller.signed(2) & 0o7777))


def _owner(uid: int, gid: int) -> Change:
    def change(target: _Target) -> None:
        if target.given and not target.link:
            os.fchown(target.fd, uid, gid)
        else:
            _call(_libc.fchownat(target.fd, b"", uid, gid, AT_EMPTY_PATH))

    return change


def chown(caller: Caller) -> Answer:
    change = _owner(caller.signed(1), caller.signed(2))
    return _meta(caller, _by_path(caller, AT_FDCWD, 0, follow=True), change)


def lchown(caller: Caller) -> Answer:
    change = _owner(caller.signed(1), caller.signed(2))
    return _meta(caller, _by_path(caller, AT_FDCWD, 0, follow=False), change)


def fchown(caller: Caller) -> Answer:
    return _meta(caller, _by_fd(caller, 0), _owner(caller.signed(1), caller.signed(2)))


def fchownat(caller: Caller) -> Answer:
    change = _owner(caller.signed(2), caller.signed(3))
    return _meta(caller, _at(caller, caller.signed(4)), change)


def _times(times: bytes | None) -> Change:
    def change(target: _Target) -> None:
        buffer = ctypes.create_string_buffer(times, 32) if times is not None else None
        if target.given:
            _call(_libc.futimens(target.fd, buffer))  # glibc's utimensat refuses a NULL path
        else:
            _call(_libc.utimensat(target.fd, b"", buffer, AT_EMPTY_PATH))

    return change


def _timespecs(caller: Caller, index: int, unit: str) -> bytes | None:
    """The caller's times (``utimbuf``, ``timeval[2]`` or ``timespec[2]``) as ``timespec[2]``."""
    if not caller.arg(index):
        return None
    if unit == "utimbuf":
        access, modify = struct.unpack("=qq", caller.memory(index, 16))
        return struct.pack("=qqqq", access, 0, modify, 0)
    raw = caller.memory(index, 32)
    if unit == "timeval":
        a_sec, a_usec, m_sec, m_usec = struct.unpack("=qqqq", raw)
        return struct.pack("=qqqq", a_sec, a_usec * 1000, m_sec, m_usec * 1000)
    return raw


def utime(caller: Caller) -> Answer:
    change = _times(_timespecs(caller, 1, "utimbuf"))
    return _meta(caller, _by_path(caller, AT_FDCWD, 0, follow=True), change)


def utimes(caller: Caller) -> Answer:
    change = _times(_timespecs(caller, 1, "timeval"))
    return _meta(caller, _by_path(caller, AT_FDCWD, 0, follow=True), change)


def futimesat(caller: Caller) -> Answer:
    return _meta(caller, _at(caller, 0), _times(_timespecs(caller, 2, "timeval")))


def utimensat(caller: Caller) -> Answer:
    change = _times(_timespecs(caller, 2, "timespec"))
    return _meta(caller, _at(caller, caller.signed(3)), change)


def _name(caller: Caller, index: int) -> str:
    return os.fsdecode(notify.read_string(caller.pid, caller.arg(index), 255))


def _value(caller: Caller, address: int, size: int) -> bytes:
    if size > _XATTR_VALUE:
        raise Refused(errno.E2BIG)
    return notify.read(caller.pid, address, size)


def _set(name: str, value: bytes, flags: int) -> Change:
    def change(target: _Target) -> None:
        if target.given:
            os.setxattr(target.fd, name, value, flags)
        elif target.link:
            raise Refused(errno.EPERM)  # what a symbolic link answers for user attributes
        else:
            os.setxattr(f"/proc/self/fd/{target.fd}", name, value, flags)

    return change


def _unset(name: str) -> Change:
    def change(target: _Target) -> None:
        if target.given:
            os.removexattr(target.fd, name)
        elif target.link:
            raise Refused(errno.EPERM)
        else:
            os.removexattr(f"/proc/self/fd/{target.fd}", name)

    return change


def _set_from(caller: Caller) -> Change:
    """The change ``setxattr``-like arguments 1 to 4 (name, value, size, flags) ask for."""
    return _set(_name(caller, 1), _value(caller, caller.arg(2), caller.arg(3)), caller.signed(4))


def setxattr(caller: Caller) -> Answer:
    return _meta(caller, _by_path(caller, AT_FDCWD, 0, follow=True), _set_from(caller))


def lsetxattr(caller: Caller) -> Answer:
    return _meta(caller, _by_path(caller, AT_FDCWD, 0, follow=False), _set_from(caller))


def fsetxattr(caller: Caller) -> Answer:
    return _meta(caller, _by_fd(caller, 0), _set_from(caller))


def setxattrat(caller: Caller) -> Answer:
    value_at, size, flags = struct.unpack("=QII", caller.memory(4, 16))
    change = _set(_name(caller, 3), _value(caller, value_at, size), flags)
    return _meta(caller, _at(caller, caller.signed(2)), change)


def removexattr(caller: Caller) -> Answer:
    return _meta(caller, _by_path(caller, AT_FDCWD, 0, follow=True), _unset(_name(caller, 1)))


def lremovexattr(caller: Caller) -> Answer:
    return _meta(caller, _by_path(caller, AT_FDCWD, 0, follow=False), _unset(_name(caller, 1)))


def fremovexattr(caller: Caller) -> Answer:
    return _meta(caller, _by_fd(caller, 0), _unset(_name(caller, 1)))


def removexattrat(caller: Caller) -> Answer:
    return _meta(caller, _at(caller, caller.signed(2)), _unset(_name(caller, 3)))
