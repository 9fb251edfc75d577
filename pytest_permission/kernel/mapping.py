"""What the kernel layer allows for a policy: Landlock rules never wider than the grants.

Landlock names files and folders that exist when a layer is made, and a
rule on a folder covers everything below it. A grant is mapped so that the
kernel allows no more than the audit layer:

* an existing folder (or ``/folder/*``): a rule on the folder;
* an existing file: a rule on the file;
* a wildcard ``/folder/name*``: a rule on each entry of ``/folder`` whose
  name starts with ``name`` when the test starts (never the folder itself);
* a path that does not exist yet: nothing.

What Landlock cannot say exactly is a *gap*: a write grant on a file, on a
missing path or on the entries a wildcard may still gain. Creating,
removing or renaming those needs a right on the folder holding them, which
would cover every other file there too; the supervisor
(:mod:`.supervisor`) does those operations on the test's behalf instead,
exactly as far as the grant goes. A read grant on something that does not
exist yet stays narrower (the audit layer still answers precisely).

The implicit grants come from :mod:`pytest_permission.audit.implicit`, the
list the audit layer uses too. Code below ``sys.path`` entries is granted
file by file (a project folder's ``.env`` is not code), a folder whose
whole tree is code as one rule; a tree too large to list within
:data:`CODE_RULES` rules is granted whole and named in :attr:`Mapping.widened`.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import select
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pytest_permission import paths, scopes
from pytest_permission.audit import implicit
from pytest_permission.kernel.landlock import (
    EXECUTE,
    READ,
    READ_DIR,
    READ_FILE,
    WRITE,
    WRITE_FILE,
    Identity,
    Shared,
    merge,
)
from pytest_permission.policy import Policy

CODE_RULES = 512
"""Most rules the code below one ``sys.path`` entry may take; beyond, the folder is
granted whole (and the widening named)."""
CODE_ENTRIES = 20000
"""Most entries listed below one ``sys.path`` entry before it counts as too large."""
PROC_SELF = "/proc/self"


@dataclass(frozen=True)
class Base:
    """The implicit grants' rules: the same for every test of a session with the same
    implicit grants and code folders, so made once (:func:`base`)."""

    shared: Shared
    widened: tuple[str, ...]
    """What the kernel allows beyond the implicit grants, in words."""


@dataclass(frozen=True)
class Mapping:
    """The Landlock side of one policy: rules, and what the rules cannot say."""

    base: Base
    extra: dict[str, int]
    """What the plugin and the tools beside the test need, whatever the policy."""
    grants: dict[tuple[str, str], tuple[tuple[str, int], ...]]
    """Rules per grant, by (scope name, grant text); ``drop()`` removes a grant's."""
    gaps: tuple[paths.PathRule, ...]
    """Write grants Landlock cannot make exact: the supervisor's to serve."""

    def rules(self, keep: Iterable[tuple[str, str]] | None = None) -> dict[str, int]:
        """Rights per path but the base's: the extra ones, and those of the grants
        ``keep`` names (all of them without)."""
        found = dict(self.extra)
        for key in self.grants if keep is None else keep:
            for path, rights in self.grants.get(key, ()):
                found[path] = found.get(path, 0) | rights
        return found


def read_rights(child: bool) -> int:
    return READ | (EXECUTE if child else 0)


def grant_rules(policy: Policy, *, child: bool) -> tuple[
    dict[tuple[str, str], tuple[tuple[str, int], ...]], tuple[paths.PathRule, ...]
]:
    """The rules of each file-system grant of ``policy`` (resolved), and its gaps.

    A gap is a grant that covers paths its rules do not: what a write grant
    lets the test create, remove or rename; for a read grant, the entries
    a wildcard or a path not made yet will name. The supervisor decides
    those calls (the same grant, read by the audit layer's rules).
    """
    out: dict[tuple[str, str], tuple[tuple[str, int], ...]] = {}
    gaps: list[paths.PathRule] = []
    for scope, rights in ((scopes.FS_READ, read_rights(child)), (scopes.FS_WRITE, WRITE)):
        grant = policy.grant(scope)
        if grant.everything:
            out[(scope.name, "*")] = ((os.sep, rights),)
        for rule in grant.rules:
            found, exact = anchors(rule)
            out[(scope.name, rule.text)] = tuple((path, rights) for path in found)
            # reading needs no folder rights: an existing file is all a plain grant names
            read_said = rule.prefix is None and bool(found)
            if not exact and (scope is scopes.FS_WRITE or not read_said):
                gaps.append(rule)
    return out, tuple(gaps)


def anchors(rule: paths.PathRule) -> tuple[list[str], bool]:
    """The existing paths a grant becomes, and whether Landlock says it exactly.

    Exact means: what the grant lets the test create, remove or rename can be
    done with rights on those paths alone.
    """
    prefix = rule.prefix
    if prefix is None:
        if not os.path.lexists(rule.text):
            return [], False
        if os.path.isdir(rule.text):
            return [], False  # exactly the folder, not its contents: nothing to say
        return [rule.text], False  # a file: removing or renaming it needs its folder
    if prefix.endswith(os.sep):
        folder = prefix.rstrip(os.sep) or os.sep
        return ([folder], True) if os.path.isdir(folder) else ([], False)
    folder, start = os.path.split(prefix)
    try:
        names = [entry.name for entry in os.scandir(folder or os.sep)]
    except OSError:
        return [], False
    return [os.path.join(folder, n) for n in sorted(names) if n.startswith(start)], False


def own_proc(path: str) -> bool:
    """Whether ``path`` lies below ``/proc/self``: the child adds those rules itself."""
    return path == PROC_SELF or path.startswith(PROC_SELF + os.sep)


def base(*, enabled: bool, net: bool, child: bool) -> Base:
    """The implicit grants' rules (made once per set of arguments and state of the
    code folders)."""
    roots = tuple(code_roots()) if enabled else ()
    generation = watch().generation()
    if generation != _seen[0]:
        _seen[0] = generation
        _trees.clear()
        _bases.clear()
    key = (enabled, net, child, roots)
    made = _bases.get(key)
    if made is None:
        if len(_bases) > 64:
            _bases.clear()
        static = static_rules(enabled=enabled, net=net, child=child)
        found, known, widened = code_rules(roots, child=child)
        made = _bases[key] = Base(Shared(merge([*static, *found]), known), tuple(widened))
    return made


_bases: dict[tuple[object, ...], Base] = {}
_seen = [0]
"""The watch's generation the lists were made at."""


def extra_rules(read: Sequence[str], write: Sequence[str], *, child: bool) -> dict[str, int]:
    """What the plugin and the tools beside the test need whatever the policy, as
    ``read``/``write`` grants name it (``*`` grants name their folder, made yet or not)."""
    return dict(_extra(tuple(read), tuple(write), child))


@functools.lru_cache(maxsize=64)
def _extra(read: tuple[str, ...], write: tuple[str, ...], child: bool) -> tuple[
    tuple[str, int], ...
]:
    entries = []
    for texts, given in ((read, read_rights(child)), (write, WRITE)):
        entries += [(paths.normalise(text.split("*", 1)[0]), given) for text in texts]
    return tuple(merge(entries).items())


@functools.lru_cache(maxsize=8)
def static_rules(*, enabled: bool, net: bool, child: bool) -> tuple[tuple[str, int], ...]:
    """The implicit grants' rules (and the installation's, needed even with ``implicit=False``
    to report), without those a rule on a folder above already covers."""
    rights = read_rights(child)
    entries = [(path, rights) for path in implicit.installation()]
    if enabled:
        entries += [(p, READ) for p in implicit.system_paths(net=net)]
        entries += [(p, READ | EXECUTE) for p in implicit.PROGRAMS if child]
        entries += [(p, WRITE_FILE) for p in implicit.WRITABLE]
    return tuple(prune(merge(entries)))


def static_paths() -> list[str]:
    """Every path :func:`static_rules` may name: opened once, when the session starts."""
    found = [*implicit.installation(), *implicit.system_paths(net=True), *implicit.PROGRAMS]
    return list(dict.fromkeys([*found, *implicit.WRITABLE]))


def prune(rules: dict[str, int]) -> list[tuple[str, int]]:
    """``rules`` with one rule per real path, and none below a folder allowing as much."""
    by_real: dict[str, tuple[str, int]] = {}
    for path, rights in rules.items():
        real = os.path.realpath(path)
        first, before = by_real.get(real, (path, 0))
        by_real[real] = (first, before | rights)
    folders = [(real.rstrip(os.sep) + os.sep, rights)
               for real, (_, rights) in by_real.items() if os.path.isdir(real)]
    return [
        (path, rights) for real, (path, rights) in by_real.items()
        if not any((real + os.sep).startswith(folder) and real + os.sep != folder
                   and granted & rights == rights for folder, granted in folders)
    ]


# -- code below sys.path -----------------------------------------------------------

_roots: dict[tuple[tuple[str, ...], int], list[str]] = {}
"""The folders code is imported from, for one state of ``sys.path``/``sys.modules``."""


def code_roots() -> list[str]:
    """``sys.path`` and loaded packages outside the installation, none below another."""
    import sys

    key = (tuple(p for p in sys.path if isinstance(p, str)), len(sys.modules))
    if key not in _roots:
        _roots.clear()
        _roots[key] = _below(implicit.installation(), implicit.code_roots(key[0]))
    return _roots[key]


def _below(roots: Iterable[str], found: Iterable[str]) -> list[str]:
    """``found`` (resolved), without the paths below ``roots`` or below one another."""
    kept: list[str] = []
    covered = tuple(os.path.realpath(r).rstrip(os.sep) + os.sep for r in roots)
    for path in sorted({os.path.realpath(p) for p in found}, key=len):
        if not (path + os.sep).startswith(covered) and os.path.isdir(path):
            kept.append(path)
            covered += (path.rstrip(os.sep) + os.sep,)
    return kept


@dataclass
class _Tree:
    """The code rules of one root, and the folders whose listing they depend on."""

    rules: list[tuple[str, int]]
    known: dict[str, Identity]
    folders: list[str]
    whole: bool
    """Too large: the root is granted whole."""


_trees: dict[tuple[str, bool], _Tree] = {}
_watch: _Watch | None = None


def code_rules(roots: Sequence[str], *, child: bool) -> tuple[
    list[tuple[str, int]], dict[str, Identity], list[str]
]:
    """Rules letting the import system list ``roots`` and read the code files below.

    Listed once and kept while no listed folder changes (an inotify
    descriptor, :func:`watch`, read by :func:`base`).
    """
    watching = watch()
    rules: list[tuple[str, int]] = []
    known: dict[str, Identity] = {}
    widened = []
    for root in roots:
        key = (root, child)
        tree = _trees.get(key)
        if tree is None:
            tree = _trees[key] = _list(root, child)
            watching.add(tree.folders)
        rules += tree.rules
        known.update(tree.known)
        if tree.whole:
            widened.append(
                f"the code folder {root} (on sys.path) is readable whole: it holds too "
                f"many files to grant its code one by one ({CODE_RULES} rules, "
                f"{CODE_ENTRIES} entries)"
            )
    return rules, known, widened


def watch() -> _Watch:
    """The session's inotify watch on listed code folders (made once)."""
    global _watch
    if _watch is None:
        _watch = _Watch()
    return _watch


_SKIPPED = ("node_modules",)


def _list(root: str, child: bool) -> _Tree:
    """Walk ``root``: a rule per code file, one per folder whose whole tree is code."""
    file_rights = READ_FILE | (EXECUTE if child else 0)
    tree_rights = read_rights(child)
    rules: list[tuple[str, int]] = [(root, READ_DIR)]
    known: dict[str, Identity] = {}
    folders: list[str] = []
    listed = [0]

    def visit(folder: str) -> bool:
        """Add ``folder``'s rules; whether its whole tree is code (no rule added then)."""
        folders.append(folder)
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return False
        listed[0] += len(entries)
        if listed[0] > CODE_ENTRIES:
            raise _TooLarge
        files, subfolders, pure = [], [], True
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    skip = entry.name.startswith(".") or entry.name in _SKIPPED
                    if skip or os.path.exists(os.path.join(entry.path, "pyvenv.cfg")):
                        pure = False  # not code: never granted, so never whole
                    else:
                        subfolders.append(entry.path)
                elif entry.is_file() and entry.name.endswith(implicit.CODE_SUFFIXES):
                    found = entry.stat()
                    known[entry.path] = Identity(found.st_dev, found.st_ino, False)
                    files.append(entry.path)
                else:
                    pure = False
            except OSError:
                pure = False
        whole = [sub for sub in subfolders if visit(sub)]
        if pure and len(whole) == len(subfolders):
            return True
        rules.extend((path, file_rights) for path in files)
        rules.extend((sub, tree_rights) for sub in whole)
        if len(rules) > CODE_RULES:
            raise _TooLarge
        return False

    try:
        if visit(root):
            rules = [(root, tree_rights)]
    except _TooLarge:
        return _Tree([(root, tree_rights)], {}, [root], whole=True)
    return _Tree(rules, known, folders, whole=False)


class _TooLarge(Exception):
    pass


class _Watch:
    """An inotify descriptor watching the listed folders for entries added or removed."""

    _MASK = 0x100 | 0x200 | 0x40 | 0x80 | 0x400 | 0x800 | 0x01000000
    """IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF |
    IN_MOVE_SELF | IN_ONLYDIR."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._add = libc.inotify_add_watch
        self._add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        self.broken = self.fd < 0
        self.folders: set[str] = set()
        self.count = 0
        self._poll = select.poll()
        if not self.broken:
            self._poll.register(self.fd, select.POLLIN)

    def add(self, folders: Iterable[str]) -> None:
        for folder in folders:
            if self.broken:
                return
            if self._add(self.fd, os.fsencode(folder), self._MASK) < 0:
                self.broken = ctypes.get_errno() == errno.ENOSPC  # out of watches
                # a folder that vanished meanwhile: listed again at the next change
            else:
                self.folders.add(folder)

    def generation(self) -> int:
        """A number that changes whenever a watched folder changed (at every call,
        without inotify).

        Asked before every test, so the usual answer allocates next to nothing:
        a process that forks before every test pays for every page it writes.
        """
        if self.broken:
            self.count += 1
        elif self._poll.poll(0):
            while self._poll.poll(0):
                os.read(self.fd, 1 << 16)
            self.count += 1
        return self.count
