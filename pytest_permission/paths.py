"""File-system grants: Node 26's lexical rules, then symbolic-link resolution.

Node's rules (``src/permission/fs_permission.cc``), reproduced for ``has()``:

* every path is made absolute and normalised lexically (``.``, ``..``,
  repeated and trailing separators);
* a grant naming an existing directory covers it and everything below;
* a grant naming anything else (a file, a missing path) covers exactly it;
* a grant with a ``*`` is a string prefix made of what comes before the
  first ``*`` (what follows is ignored); when the prefix ends in a
  separator, the folder it names is covered too (``/home/foo/*`` covers
  ``/home/foo``), as Node's directory expansion needs;
* ``*`` alone is everything, and is kept by the policy, not here.

Node's radix tree answers a few prefix queries differently depending on which
*other* grants exist (``/etc/passwd.*`` alone covers ``/etc/passwd`` there,
with one more grant it does not). We follow the rule Node documents and its
own tests assert; ``tests/conformance_table.py`` lists those rows.

The second step, :func:`resolve`, is beyond Node: the enforcer checks the
real path (links, ``/proc/self/fd/N``) against grants resolved the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

Resource = str | bytes | os.PathLike  # type: ignore[type-arg]


def as_str(resource: object, what: str = "path") -> str:
    """A ``str`` for a ``str``/``bytes``/``os.PathLike`` resource."""
    if isinstance(resource, (str, bytes, os.PathLike)):
        value = os.fspath(resource)
        return os.fsdecode(value)
    raise TypeError(
        f"{what} must be str, bytes or os.PathLike, got {type(resource).__name__}"
    )


def normalise(path: str, base: str | None = None) -> str:
    """Absolute and lexically normal, as Node's ``path.resolve``."""
    if not os.path.isabs(path):
        path = os.path.join(base if base is not None else os.getcwd(), path)
    path = os.path.normpath(path)
    if path.startswith("//"):  # POSIX keeps a leading "//"; Node does not
        path = "/" + path.lstrip("/")
    return path


@dataclass(frozen=True)
class PathRule:
    """One file-system grant."""

    text: str
    """The normalised grant, as ``drop()`` names it (``/home/foo*``)."""
    prefix: str | None
    """Covers every path starting with this (wildcards, directories)."""

    def covers(self, path: str) -> bool:
        """Whether this grant covers ``path`` (absolute and normalised)."""
        prefix = self.prefix
        if prefix is None:
            return path == self.text
        if path.startswith(prefix):
            return True
        return prefix.endswith(os.sep) and path == prefix[:-1]


def parse(grant: str, base: str | None = None) -> PathRule:
    """The rule for one grant that is not ``*`` alone.

    ``os.stat`` decides whether a plain grant is a directory, at the moment
    the grant is made, as in Node.
    """
    text = normalise(grant, base)
    star = text.find("*")
    if star >= 0:
        return PathRule(text, text[:star])
    if os.path.isdir(text):
        return PathRule(text, text if text.endswith(os.sep) else text + os.sep)
    return PathRule(text, None)


def resolve(path: str) -> str:
    """The real path: links, ``..`` after links and ``/proc/self/fd`` followed.

    A missing tail is kept as written, so a file about to be created resolves
    through its existing parent. This process's ``/proc/<pid>`` comes back as
    ``/proc/self`` (see :func:`own_proc`).
    """
    return own_proc(os.path.realpath(path))


def own_proc(real: str) -> str:
    """``/proc/<pid of this process>/...`` as ``/proc/self/...``; other paths unchanged.

    ``/proc/self`` names whichever process asks: a grant resolved in the
    pytest process and a path resolved in its forked child must both mean
    the asking process, never the pytest process's own ``/proc/<pid>``.
    """
    if not real.startswith("/proc/"):
        return real
    own = f"/proc/{os.getpid()}"
    if real == own or real.startswith(own + os.sep):
        return "/proc/self" + real[len(own):]
    return real


def resolved(rule: PathRule) -> PathRule:
    """The same grant with its fixed part resolved, so links in grants work."""
    if rule.prefix is None:
        return PathRule(resolve(rule.text), None)
    head, sep, tail = rule.prefix.rpartition(os.sep)
    real_head = resolve(head or os.sep).rstrip(os.sep)
    prefix = real_head + sep + tail
    star = rule.text.find("*")
    text = prefix + rule.text[star:] if star >= 0 else prefix.rstrip(os.sep) or os.sep
    return PathRule(text, prefix)


def covered(rules: tuple[PathRule, ...], path: str) -> bool:
    return any(rule.covers(path) for rule in rules)
