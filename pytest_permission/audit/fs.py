"""File-system scopes: what each operation needs from ``fs.read``/``fs.write``.

A path is checked as the kernel will follow it: made absolute as written
(``..`` kept, so that ``granted/link/../x`` means where ``link`` leads), then
resolved through links; the error names the lexical path, as Node's does.

Two caches keep this cheap. Decisions for ``open`` are kept per (path,
flags), so a repeated open costs one dict look-up; the real path of each
folder is kept, so a new file costs one ``lstat`` instead of ``realpath``'s
one per component. Both are cleared by every event that can
change what a path resolves to (rename, remove, link, symlink, chdir, a
child process), by ``drop()`` and in a forked child. A link swapped by C
code or by another process in between is the residual risk the kernel
layer closes.
"""

from __future__ import annotations

import errno
import functools
import os
import stat
import sys
import threading
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pytest_permission import paths
from pytest_permission.audit.guard import Guard, Handler, absolute, caller_file, fd_path
from pytest_permission.audit.implicit import PDB_CONFIG
from pytest_permission.errors import hide_under_a_denial
from pytest_permission.scopes import FS_READ as READ
from pytest_permission.scopes import FS_WRITE as WRITE

__tracebackhide__ = hide_under_a_denial
"""A denial's traceback ends where the access was asked for (pytest hides these frames)."""

if sys.platform != "win32":
    import fcntl

_PYCACHE = f"{os.sep}__pycache__"
_IMPORT_SYSTEM = "<frozen importlib"
"""How the import system's frames are named (``co_filename``)."""
_ACCESS_DEFAULT = 0  # mmap.ACCESS_DEFAULT, without importing mmap
_ACCESS_WRITE = 2  # mmap.ACCESS_WRITE


def _skip_bytecode_cache(full: str) -> None:
    """Refuse a bytecode-cache access quietly: its writers ignore the failure.

    The writers are the import system and pytest's assertion rewriter (which
    writes its own ``.pyc`` through a temporary file and a rename).
    """
    if _PYCACHE not in full:
        return
    rewrite = getattr(sys.modules.get("_pytest.assertion.rewrite"), "__file__", None)
    frame = sys._getframe(1)
    for _ in range(12):  # the writer, through os.makedirs and the like
        if frame is None:
            return
        name = frame.f_code.co_filename
        if name.startswith(_IMPORT_SYSTEM) or name == rewrite:
            raise PermissionError(errno.EACCES, "bytecode cache writes are skipped", full)
        frame = frame.f_back  # type: ignore[assignment]


class _DirFd(threading.local):
    """The ``dir_fd`` of the ``os.open`` call under way in this thread."""

    value: int | None = None


class _Resolver:
    """``os.path.realpath`` with the real path of each folder remembered."""

    def __init__(self) -> None:
        self.folders: dict[str, str] = {}

    def __call__(self, raw: str) -> str:
        head, sep, tail = raw.rpartition(os.sep)
        if not sep or tail in ("", ".", ".."):
            return paths.resolve(raw)
        folder = self.folders.get(head)
        if folder is None:
            folder = self.folders[head] = paths.resolve(head or os.sep)
        full = folder + tail if folder.endswith(os.sep) else folder + os.sep + tail
        try:
            if not stat.S_ISLNK(os.lstat(full).st_mode):
                return full
        except OSError:
            return full  # missing (about to be created): kept, as realpath does
        return paths.resolve(full)


def _raw(path: object, dir_fd: int | None) -> str:
    """The absolute path as written, ``..`` kept to be applied after links."""
    if isinstance(path, int):
        return fd_path(path)
    text = paths.as_str(path)
    if os.path.isabs(text):
        return text
    if dir_fd is not None and dir_fd >= 0:
        return os.path.join(fd_path(dir_fd), text)
    return os.path.join(os.getcwd(), text)


def _made_up(path: object, dir_fd: int | None) -> bool:
    """A code object's made-up file name (``<unknown>``, ``<string>``) naming no file.

    CPython opens such a name to quote the source line of a ``SyntaxError``
    (``ast.parse`` of indented source, as hypothesis does for every ``@given``
    method): there is nothing to read, so nothing to deny, warn about or
    grant. Reading it finds no file, as without the plugin; a file of that
    name that does exist is checked like any other.
    """
    if isinstance(path, str):  # never bytes against str: ``python -bb`` makes it an error
        if not path.endswith(">"):
            return False  # every ordinary open: one check, no decoding
    elif not isinstance(path, bytes) or not path.endswith(b">"):
        return False
    text = os.fsdecode(path)
    return text.startswith("<") and os.sep not in text and not os.path.lexists(_raw(path, dir_fd))


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


def _compiled_as(path: object, compiled: threading.local) -> bool:
    """The file name the last ``compile()`` of this thread was given, naming no file.

    Like :func:`_made_up`, for names without brackets: pytest parses source
    snippets as ``"source"`` to find a statement's range, and CPython opens
    that name to quote a ``SyntaxError``'s line (the snippet is cut from a
    file and often does not parse on its own).
    """
    name = getattr(compiled, "name", None)
    return (
        name is not None and path == name and isinstance(path, str)
        and os.sep not in path and not os.path.lexists(path)
    )


def _by_caller(path: str | bytes) -> bool:
    """Granted for who reads it (pdb's start-up files): never cached by path alone."""
    return os.path.basename(os.fsdecode(path)) == PDB_CONFIG



def install(guard: Guard) -> dict[str, Handler]:
    """The fs handlers; ``open`` is registered here, non-exclusive, for its fast path."""
    cache: dict[object, set[int]] = {}  # path -> open flags known to be allowed
    resolve = _Resolver()
    open_dir_fd = _DirFd()
    in_dir_fd_open: set[int] = set()  # threads inside os.open(..., dir_fd=...)

    listed: set[str | bytes] = set()
    """Absolute folders whose listing the policy in force grants (checked once)."""

    def forget() -> None:
        cache.clear()
        listed.clear()
        resolve.folders.clear()

    guard.on_change(forget)
    if sys.platform != "win32":
        os.register_at_fork(after_in_child=forget)  # /proc/self names another process

    def read(path: object, dir_fd: int | None = None) -> None:
        if not guard.path_granted(READ, _raw(path, dir_fd), resolve):
            full = absolute(path, dir_fd)
            _skip_bytecode_cache(full)
            guard.deny(READ, full)

    def write(path: object, dir_fd: int | None = None) -> None:
        if guard.path_granted(WRITE, _raw(path, dir_fd), resolve):
            return
        full = absolute(path, dir_fd)
        _skip_bytecode_cache(full)
        guard.deny(WRITE, full)

    def both(path: object, dir_fd: int | None = None) -> None:
        read(path, dir_fd)
        write(path, dir_fd)

    compiled = threading.local()

    def on_compile(args: tuple[Any, ...]) -> None:
        compiled.name = args[1]  # what a SyntaxError from this source will try to open

    def on_open(args: tuple[Any, ...]) -> None:
        # The hot path, before any other work (registered non-exclusive for
        # that): one look-up, unless some thread opens relative to a dir_fd.
        try:
            if not in_dir_fd_open and args[2] in cache.get(args[0], ()):
                return
        except TypeError:
            pass  # an unhashable path-like object: never cached
        check_open(args)

    def open_checked(args: tuple[Any, ...]) -> None:
        path, _mode, flags = args
        if isinstance(path, int):
            return  # wrapping a descriptor opened earlier
        base = open_dir_fd.value if in_dir_fd_open else None
        want_read, want_write = needs(flags)
        if not want_write and (_made_up(path, base) or _compiled_as(path, compiled)):
            return
        if want_write:
            write(path, base)
        if want_read:
            read(path, base)
        if base is None and isinstance(path, (str, bytes)) and not _by_caller(path):
            cache.setdefault(path, set()).add(flags)

    check_open = guard.exclusive(open_checked)
    guard.register({"open": on_open}, exclusive=False)

    def on_listing(args: tuple[Any, ...]) -> None:
        path = "." if args[0] is None else args[0]
        absolute_text = isinstance(path, (str, bytes)) and os.path.isabs(path)
        if absolute_text and path in listed:
            return
        if guard.path_granted(READ, _raw(path, None), resolve):
            if absolute_text:
                listed.add(path)
            return
        if caller_file().startswith(_IMPORT_SYSTEM):
            return  # the import system looking for modules
        read(path)

    def changing(handler: Handler) -> Handler:
        def run(args: tuple[Any, ...]) -> None:
            forget()
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

    _wrap_open_dir_fd(open_dir_fd, in_dir_fd_open)
    return {
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
        "compile": on_compile,
        "mmap.__new__": on_mmap,
        "subprocess.Popen": lambda a: forget(),
    }


def _wrap_open_dir_fd(current: _DirFd, threads: set[int]) -> None:
    """``os.open``'s audit event omits ``dir_fd``; pass it to the handler."""
    real_open = os.open

    @functools.wraps(real_open)
    def open_(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        if dir_fd is None:
            return real_open(path, flags, mode)
        me = threading.get_ident()
        current.value = dir_fd
        threads.add(me)
        try:
            return real_open(path, flags, mode, dir_fd=dir_fd)
        finally:
            threads.discard(me)
            current.value = None

    os.open = open_
    if real_open in os.supports_dir_fd:
        os.supports_dir_fd.add(open_)
