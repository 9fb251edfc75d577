"""File-system scopes: what each operation needs from ``fs.read``/``fs.write``.

Decisions for ``open`` are cached per (path, flags), because resolving links
on every open would cost a quarter of a small read; the cache is cleared by
every event that can change what a path resolves to (rename, remove, link,
chdir, a child process) and by ``drop()``. A link swapped by C code or by
another process between two opens is the residual risk the kernel layer
closes.
"""

from __future__ import annotations

import errno
import functools
import os
import sys
import threading
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pytest_permission.audit.guard import Guard, Handler, absolute, caller_file
from pytest_permission.scopes import FS_READ as READ
from pytest_permission.scopes import FS_WRITE as WRITE

if sys.platform != "win32":
    import fcntl

_PYCACHE = f"{os.sep}__pycache__"
_IMPORT_SYSTEM = "<frozen importlib"
"""How the import system's frames are named (``co_filename``)."""
_ACCESS_DEFAULT = 0  # mmap.ACCESS_DEFAULT, without importing mmap
_ACCESS_WRITE = 2  # mmap.ACCESS_WRITE


def needs(flags: int) -> tuple[bool, bool]:
    """(read, write) that ``os.open`` flags ask for; ``O_RDWR`` asks for both."""
    access = flags & os.O_ACCMODE
    read = access in (os.O_RDONLY, os.O_RDWR)
    write = access in (os.O_WRONLY, os.O_RDWR) or bool(
        flags & (os.O_CREAT | os.O_TRUNC | os.O_APPEND)
    )
    return read, write


def _writable(fd: int) -> bool:
    """Whether a descriptor was opened for writing."""
    if sys.platform == "win32":
        return True  # no way to ask: assume the worst
    try:
        return fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE != os.O_RDONLY
    except OSError:
        return False


def install(guard: Guard) -> dict[str, Handler]:
    cache: dict[tuple[object, int], bool] = {}
    local = threading.local()
    guard.on_change(cache.clear)

    def read(path: object, dir_fd: int | None = None) -> None:
        guard.require_path(READ, absolute(path, dir_fd))

    def write(path: object, dir_fd: int | None = None) -> None:
        full = absolute(path, dir_fd)
        if guard.path_granted(WRITE, full):
            return
        if _PYCACHE in full and caller_file().startswith(_IMPORT_SYSTEM):
            # The import system ignores a failed cache write: nothing to report.
            raise PermissionError(errno.EACCES, "bytecode cache writes are skipped", full)
        guard.deny(WRITE, full)

    def both(path: object, dir_fd: int | None = None) -> None:
        read(path, dir_fd)
        write(path, dir_fd)

    def on_open(args: tuple[Any, ...]) -> None:
        path, _mode, flags = args
        if isinstance(path, int):
            return  # wrapping a descriptor opened earlier
        base = getattr(local, "dir_fd", None)
        key = (path, flags)
        if base is None and key in cache:
            return
        want_read, want_write = needs(flags)
        if want_write:
            write(path, base)
        if want_read:
            read(path, base)
        if base is None and isinstance(path, (str, bytes)):
            cache[key] = True

    def on_listing(args: tuple[Any, ...]) -> None:
        if caller_file().startswith(_IMPORT_SYSTEM):
            return  # the import system looking for modules
        read("." if args[0] is None else args[0])

    def changing(handler: Handler) -> Handler:
        def run(args: tuple[Any, ...]) -> None:
            cache.clear()
            handler(args)

        return run

    def on_rename(args: tuple[Any, ...]) -> None:
        src, dst, src_dir_fd, dst_dir_fd = args
        both(src, src_dir_fd)
        write(dst, dst_dir_fd)

    def on_link(args: tuple[Any, ...]) -> None:
        src, dst, src_dir_fd, dst_dir_fd = args
        both(src, src_dir_fd)
        write(dst, dst_dir_fd)

    def from_to(args: tuple[Any, ...]) -> None:
        """``shutil`` copies: read the source, write the destination."""
        read(args[0])
        write(args[1])

    def on_move(args: tuple[Any, ...]) -> None:
        both(args[0])
        write(args[1])

    def on_rmtree(args: tuple[Any, ...]) -> None:
        # Python 3.10 reports only the path; 3.11+ add dir_fd.
        write(args[0], args[1] if len(args) > 1 else None)

    def on_symlink(args: tuple[Any, ...]) -> None:
        target, link, dir_fd = args
        link_path = absolute(link, dir_fd)
        target_text = os.fsdecode(target)
        if not os.path.isabs(target_text):
            target_text = os.path.join(os.path.dirname(link_path), target_text)
        both(target_text)
        both(link_path)

    def on_sqlite(args: tuple[Any, ...]) -> None:
        database = args[0]
        text = os.fsdecode(database) if isinstance(database, (str, bytes, os.PathLike)) else ""
        if text in ("", ":memory:"):
            return
        read_only = False
        if text.startswith("file:"):
            parts = urlsplit(text)
            query = parse_qs(parts.query)
            if query.get("mode") == ["memory"]:
                return
            read_only = query.get("mode") == ["ro"]
            text = parts.path
        read(text)
        if not read_only:
            write(text)

    def on_mmap(args: tuple[Any, ...]) -> None:
        fileno, _length, access = args[:3]
        if fileno == -1:
            return  # anonymous memory
        read(fileno)
        if access == _ACCESS_WRITE or (access == _ACCESS_DEFAULT and _writable(fileno)):
            write(fileno)  # a shared mapping of a writable descriptor writes the file

    _wrap_open_dir_fd(local)
    return {
        "open": on_open,
        "os.listdir": on_listing,
        "os.scandir": on_listing,
        "os.chdir": changing(lambda a: read(a[0])),
        "os.getxattr": lambda a: read(a[0]),
        "os.listxattr": lambda a: read("." if a[0] is None else a[0]),
        "os.chflags": lambda a: write(a[0]),
        "os.lchflags": lambda a: write(a[0]),
        "os.chmod": lambda a: write(a[0], a[2]),
        "os.chown": lambda a: write(a[0], a[3]),
        "os.utime": lambda a: write(a[0], a[3]),
        "os.truncate": lambda a: write(a[0]),
        "os.setxattr": lambda a: write(a[0]),
        "os.removexattr": lambda a: write(a[0]),
        "os.mkdir": lambda a: write(a[0], a[2]),
        "os.remove": changing(lambda a: write(a[0], a[1])),
        "os.rmdir": changing(lambda a: write(a[0], a[1])),
        "os.rename": changing(on_rename),
        "os.link": changing(on_link),
        "os.symlink": changing(on_symlink),
        "shutil.copyfile": from_to,
        "shutil.copymode": from_to,
        "shutil.copystat": from_to,
        "shutil.copytree": from_to,
        "shutil.chown": lambda a: write(a[0]),
        "shutil.move": changing(on_move),
        "shutil.rmtree": changing(on_rmtree),
        "shutil.unpack_archive": lambda a: from_to((a[0], a[1] or ".")),
        "shutil.make_archive": lambda a: from_to((a[2] or ".", a[0])),
        "tempfile.mkstemp": lambda a: write(a[0]),
        "tempfile.mkdtemp": lambda a: write(a[0]),
        "sqlite3.connect": on_sqlite,
        "mmap.__new__": on_mmap,
        "subprocess.Popen": lambda a: cache.clear(),
    }


def _wrap_open_dir_fd(local: threading.local) -> None:
    """``os.open``'s audit event omits ``dir_fd``; pass it to the handler."""
    real_open = os.open

    @functools.wraps(real_open)
    def open_(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        if dir_fd is None:
            return real_open(path, flags, mode)
        local.dir_fd = dir_fd
        try:
            return real_open(path, flags, mode, dir_fd=dir_fd)
        finally:
            local.dir_fd = None

    os.open = open_
    if real_open in os.supports_dir_fd:
        os.supports_dir_fd.add(open_)
