"""What ``has()`` answers after Node's flags and ``drop()`` calls: Node 26 is the reference.

Data only; ``tests/test_conformance.py`` checks every row against our
:class:`~pytest_permission.policy.Policy` and, when a Node 26 binary is
available, against real Node.

``{tmp}`` stands for a fresh folder laid out as :data:`LAYOUT` (folders end
in ``/``), which is also the current directory of both sides, so relative
paths mean the same. Paths outside ``{tmp}`` (``/slow``, ``/example/foo``)
are Node's own test vectors and do not exist, except ``/tmp``, ``/home`` and
``/etc`` which do on any Linux machine (Node checks at grant time whether a
plain grant names a directory).

Sources of the vectors: Node's ``test/parallel/test-permission-fs-wildcard.js``
(the ``has()`` assertions of each allow list) and
``test/fixtures/permission/fs-wildcard.js`` (the paths it reads under the
same allow list, written here as ``has()`` queries).

Where we knowingly answer differently (:data:`DIVERGENCES`, both answers
asserted): in Node's radix tree a sibling grant can split the tree so that
``/q/r/*`` next to ``/q/rs`` stops covering the folder ``/q/r``; we apply the
documented rule (the prefix, plus the folder itself when the prefix ends in
a separator) whatever the other grants. (Node 26.10's other quirks, a ``*``
grant covering its prefix minus one character and a lone ``/etc/passwd.*``
covering ``/etc/passwd``, are gone in 26.12: those rows are now in
:data:`CASES`.) ``has('addons')`` is an unknown scope to Node (false) and our alias
of ``addon``. Unknown scopes are ``false`` in Node and a ``ValueError`` here
(tested in ``test_conformance.py`` only, Node has no error to compare).
"""

from __future__ import annotations

from typing import NamedTuple

NODE_RELEASE = "26.12.1"
"""The Node release this table describes; ``.ci/run`` installs exactly this one.
Moving to a newer Node: change it here, run the conformance tests, and move
the rows Node now answers differently."""

LAYOUT = ("dir/", "dir/sub/", "dir/file.txt", "file.txt")
"""Created under ``{tmp}`` before the grants are parsed."""


class Case(NamedTuple):
    """One grant set, the drops applied in order, then ``has()`` queries."""

    name: str
    args: tuple[str, ...]
    drops: tuple[tuple[str, str | None], ...]
    checks: tuple[tuple[str, str | None, bool], ...]
    """(scope, resource or None, what both Node and we answer)."""


class Divergence(NamedTuple):
    """Rows where Node's radix tree answers by the shape of the other grants.

    We follow the documented rule instead; both answers are asserted so CI
    notices the day Node changes.
    """

    name: str
    args: tuple[str, ...]
    drops: tuple[tuple[str, str | None], ...]
    checks: tuple[tuple[str, str | None, bool, bool], ...]
    """(scope, resource, our answer, Node's answer)."""


NODE_WILDCARD_ALLOW = (
    "/tmp/*",
    "/example/foo*",
    "/example/bar*",
    "/folder/*",
    "/show",
    "/slower",
    "/slown",
    "/home/foo/*",
    "/files/index.js",
    "/files/index.json",
    "/files/i",
)
"""The allow list of Node's test-permission-fs-wildcard.js."""


def _read(*paths: str) -> tuple[str, ...]:
    return tuple(f"--allow-fs-read={p}" for p in paths)


CASES: tuple[Case, ...] = (
    Case(
        "node-wildcard-allow-list",
        _read(*NODE_WILDCARD_ALLOW),
        (),
        (
            ("fs.read", "/slow", False),
            ("fs.read", "/slows", False),
            ("fs.read", "/slown", True),
            ("fs.read", "/slower", True),
            ("fs.read", "/slower/x", False),
            ("fs.read", "/show", True),
            ("fs.read", "/home/foo", True),
            ("fs.read", "/home/foo/", True),
            ("fs.read", "/home/fo", False),
            ("fs.read", "/home/foox", False),
            ("fs.read", "/home/foo/bar/baz", True),
            ("fs.read", "/files/index.js", True),
            ("fs.read", "/files/index.json", True),
            ("fs.read", "/files/index.j", False),
            ("fs.read", "/files/i", True),
            ("fs.read", "/files/in", False),
            ("fs.read", "/files", False),
            ("fs.read", "/tmp", True),
            ("fs.read", "/tmp/", True),
            ("fs.read", "/tmpd", False),
            ("fs.write", "/tmp/foo/file", False),
            ("fs.read", None, False),
        ),
    ),
    Case(
        # The fixture fs-wildcard.js reads these under the same allow list.
        "node-wildcard-fixture-reads",
        _read(*NODE_WILDCARD_ALLOW),
        (),
        (
            ("fs.read", "/test.txt", False),
            ("fs.read", "/tmp/foo/file", True),
            ("fs.read", "/example/foo/file", True),
            ("fs.read", "/example/foo2/file", True),
            ("fs.read", "/example/foo2", True),
            ("fs.read", "/example/fo/foo2.js", False),
            ("fs.read", "/example/for", False),
            ("fs.read", "/example/bar/file", True),
            ("fs.read", "/example/bar2/file", True),
            ("fs.read", "/example/bar", True),
            ("fs.read", "/example/ba/foo2.js", False),
            ("fs.read", "/folder/a/subfolder/b", True),
            ("fs.read", "/folder/a/subfolder/b/c.txt", True),
            ("fs.read", "/folder/a/foo2.js", True),
        ),
    ),
    Case(
        "node-wildcard-nested",
        _read("/a/b/*", "/a/b/d", "/etc/passwd.*", "/home/*.js"),
        (),
        (
            ("fs.read", "/a/b/c", True),
            ("fs.read", "/a/c/c", False),
            ("fs.read", "/etc/passwd", False),
            ("fs.read", "/home/another-file.md", True),
            ("fs.read", "/a/b/d", True),
            ("fs.read", "/a/b/d/e", True),
            ("fs.read", "/a/b", True),
            ("fs.read", "/a/bc", False),
            ("fs.read", "/etc/passwd.bak", True),
            ("fs.read", "/etc/passwd.", True),
            ("fs.read", "/home/x/y.md", True),
        ),
    ),
    Case(
        "text-after-star-is-ignored",
        _read("/home/*.js", "/srv/data*/x"),
        (),
        (
            ("fs.read", "/home/notes.txt", True),
            ("fs.read", "/srv/data", True),
            ("fs.read", "/srv/database/y", True),
            ("fs.read", "/srv/dat", False),
        ),
    ),
    Case(
        "existing-directory-covers-itself-and-below",
        _read("{tmp}/dir"),
        (),
        (
            ("fs.read", "{tmp}/dir", True),
            ("fs.read", "{tmp}/dir/", True),
            ("fs.read", "{tmp}/dir/file.txt", True),
            ("fs.read", "{tmp}/dir/sub/deeper/missing", True),
            ("fs.read", "{tmp}/di", False),
            ("fs.read", "{tmp}/dirx", False),
            ("fs.read", "{tmp}/dir.txt", False),
            ("fs.read", "{tmp}", False),
            ("fs.read", "{tmp}/file.txt", False),
            ("fs.write", "{tmp}/dir", False),
            ("fs.read", "dir/file.txt", True),
            ("fs.read", "file.txt", False),
        ),
    ),
    Case(
        "dot-dot-traversal",
        _read("{tmp}/dir"),
        (),
        (
            ("fs.read", "{tmp}/dir/../file.txt", False),
            ("fs.read", "{tmp}/dir/sub/../file.txt", True),
            ("fs.read", "{tmp}/dir/sub/../../file.txt", False),
            ("fs.read", "{tmp}/dir/./file.txt", True),
            ("fs.read", "{tmp}/dir//file.txt", True),
            ("fs.read", "{tmp}/dir/../dir/file.txt", True),
            ("fs.read", "{tmp}/other/../dir/file.txt", True),
            ("fs.read", "{tmp}/dir/../../../../etc/passwd", False),
            ("fs.read", "dir/../file.txt", False),
            ("fs.read", "./dir/sub/..", True),
        ),
    ),
    Case(
        "grant-spelled-with-dots-and-slashes",
        _read("{tmp}/dir/sub/..", "{tmp}//file.txt/", "./dir/sub/"),
        (),
        (
            ("fs.read", "{tmp}/dir/x", True),
            ("fs.read", "{tmp}/dir/sub/y", True),
            ("fs.read", "{tmp}/file.txt", True),
            ("fs.read", "{tmp}/file.txt/x", False),
            ("fs.read", "{tmp}/dirx", False),
        ),
    ),
    Case(
        "file-grant-is-exact",
        _read("{tmp}/file.txt"),
        (),
        (
            ("fs.read", "{tmp}/file.txt", True),
            ("fs.read", "{tmp}/file.txt/", True),
            ("fs.read", "{tmp}/file.txt/x", False),
            ("fs.read", "{tmp}/file.tx", False),
            ("fs.read", "{tmp}/file.txt2", False),
            ("fs.read", "{tmp}", False),
        ),
    ),
    Case(
        "missing-path-grant-is-exact",
        _read("{tmp}/missing", "{tmp}/dir/not-yet/"),
        (),
        (
            ("fs.read", "{tmp}/missing", True),
            ("fs.read", "{tmp}/missing/", True),
            ("fs.read", "{tmp}/missing/x", False),
            ("fs.read", "{tmp}/missin", False),
            ("fs.read", "{tmp}/missingx", False),
            ("fs.read", "{tmp}/dir/not-yet", True),
            ("fs.read", "{tmp}/dir/not-yet/x", False),
            ("fs.read", "{tmp}/dir", False),
        ),
    ),
    Case(
        "star-prefix-on-a-real-directory",
        _read("{tmp}/di*", "{tmp}/dir/sub/*"),
        (),
        (
            ("fs.read", "{tmp}/dir", True),
            ("fs.read", "{tmp}/dirt/x", True),
            ("fs.read", "{tmp}/di", True),
            ("fs.read", "{tmp}/dx", False),
            ("fs.read", "{tmp}/file.txt", False),
        ),
    ),
    Case(
        "star-everything",
        ("--allow-fs-read=*",),
        (),
        (
            ("fs.read", None, True),
            ("fs.read", "/anything/at/all", True),
            ("fs.read", "relative", True),
            ("fs.write", None, False),
            ("fs.write", "/anything", False),
            ("fs", None, False),
            ("fs", "/anything", False),
        ),
    ),
    Case(
        "root-is-not-everything-without-resource",
        _read("/"),
        (),
        (
            ("fs.read", None, False),
            ("fs.read", "/x", True),
            ("fs.read", "/", True),
            ("fs.read", "{tmp}/dir/file.txt", True),
        ),
    ),
    Case(
        "fs-needs-both-directions-in-full",
        ("--allow-fs-read=*", "--allow-fs-write={tmp}/dir"),
        (),
        (
            ("fs", None, False),
            ("fs", "{tmp}/dir", False),
            ("fs.write", "{tmp}/dir/x", True),
            ("fs.write", None, False),
        ),
    ),
    Case(
        "fs-with-both-stars",
        ("--allow-fs-read=*", "--allow-fs-write=*"),
        (),
        (("fs", None, True), ("fs", "/x", True), ("fs.write", None, True)),
    ),
    Case(
        "no-flags-denies-everything",
        (),
        (),
        (
            ("fs", None, False),
            ("fs.read", None, False),
            ("fs.read", "/", False),
            ("fs.write", "{tmp}", False),
            ("child", None, False),
            ("worker", None, False),
            ("addon", None, False),
            ("addons", None, False),
            ("ffi", None, False),
            ("inspector", None, False),
            ("wasi", None, False),
            ("net", None, False),
        ),
    ),
    Case(
        "drop-path-removes-exactly-that-grant",
        _read("{tmp}/dir", "{tmp}/file.txt"),
        (("fs.read", "{tmp}/dir"),),
        (
            ("fs.read", "{tmp}/dir", False),
            ("fs.read", "{tmp}/dir/file.txt", False),
            ("fs.read", "{tmp}/file.txt", True),
        ),
    ),
    Case(
        "drop-path-is-normalised",
        _read("{tmp}/dir", "{tmp}/file.txt"),
        (("fs.read", "{tmp}/dir/sub/../"), ("fs.read", "file.txt")),
        (
            ("fs.read", "{tmp}/dir/file.txt", False),
            ("fs.read", "{tmp}/file.txt", False),
        ),
    ),
    Case(
        "drop-child-of-granted-folder-does-nothing",
        _read("{tmp}/dir"),
        (("fs.read", "{tmp}/dir/sub"), ("fs.read", "{tmp}/dir/file.txt")),
        (
            ("fs.read", "{tmp}/dir/sub", True),
            ("fs.read", "{tmp}/dir/file.txt", True),
        ),
    ),
    Case(
        "drop-wildcard-grant-by-its-text",
        _read("/example/foo*", "/example/bar*"),
        (("fs.read", "/example/foo*"), ("fs.read", "/example/bar")),
        (
            ("fs.read", "/example/foo", False),
            ("fs.read", "/example/foox", False),
            ("fs.read", "/example/bar", True),
            ("fs.read", "/example/barx", True),
        ),
    ),
    Case(
        "drop-under-star-does-nothing",
        ("--allow-fs-read=*",),
        (("fs.read", "{tmp}/dir"),),
        (("fs.read", "{tmp}/dir", True), ("fs.read", None, True)),
    ),
    Case(
        "drop-scope-removes-it-whole",
        ("--allow-fs-read={tmp}/dir", "--allow-fs-write=*"),
        (("fs.write", None),),
        (
            ("fs.write", "{tmp}/dir", False),
            ("fs.write", None, False),
            ("fs.read", "{tmp}/dir", True),
        ),
    ),
    Case(
        "drop-star-scope-whole",
        ("--allow-fs-read=*",),
        (("fs.read", None),),
        (("fs.read", None, False), ("fs.read", "/x", False)),
    ),
    Case(
        "drop-fs-path-drops-both-directions",
        (
            "--allow-fs-read={tmp}/dir",
            "--allow-fs-write={tmp}/dir",
            "--allow-fs-write={tmp}/file.txt",
        ),
        (("fs", "{tmp}/dir"),),
        (
            ("fs.read", "{tmp}/dir", False),
            ("fs.write", "{tmp}/dir", False),
            ("fs.write", "{tmp}/file.txt", True),
        ),
    ),
    Case(
        "drop-fs-scope-drops-both",
        ("--allow-fs-read=*", "--allow-fs-write=*"),
        (("fs", None),),
        (("fs", None, False), ("fs.read", "/x", False), ("fs.write", "/x", False)),
    ),
    Case(
        "nothing-regrants-after-drop",
        _read("{tmp}/dir"),
        (("fs.read", None), ("fs.read", "{tmp}/dir"), ("fs.read", "{tmp}/other")),
        (("fs.read", "{tmp}/dir", False), ("fs.read", None, False)),
    ),
    Case(
        "switch-scopes-granted",
        (
            "--allow-child-process",
            "--allow-worker",
            "--allow-addons",
            "--allow-ffi",
            "--allow-inspector",
            "--allow-wasi",
            "--allow-net",
        ),
        (),
        (
            ("child", None, True),
            ("worker", None, True),
            ("addon", None, True),
            ("ffi", None, True),
            ("inspector", None, True),
            ("wasi", None, True),
            ("net", None, True),
            ("net", "example.com", True),
            ("fs.read", None, False),
        ),
    ),
    Case(
        "switch-scopes-dropped",
        (
            "--allow-child-process",
            "--allow-worker",
            "--allow-addons",
            "--allow-ffi",
            "--allow-inspector",
            "--allow-wasi",
        ),
        (("child", None), ("worker", None), ("addon", None), ("inspector", None)),
        (
            ("child", None, False),
            ("worker", None, False),
            ("addon", None, False),
            ("addons", None, False),
            ("inspector", None, False),
            ("ffi", None, True),
            ("wasi", None, True),
        ),
    ),
    Case(
        "addon-drop-leaves-others",
        ("--allow-addons", "--allow-ffi", "--allow-wasi"),
        (("addon", None), ("ffi", None), ("wasi", None)),
        (
            ("addons", None, False),
            ("addon", None, False),
            ("ffi", None, False),
            ("wasi", None, False),
        ),
    ),
    Case(
        # Node 26.10 accepted a "*" grant's prefix minus its last character
        # ("{tmp}/di*" covered "{tmp}/d"); 26.12 follows the documented rule.
        "star-grant-does-not-cover-its-prefix-minus-one-character",
        _read("{tmp}/di*", "{tmp}/dir/sub/*"),
        (),
        (("fs.read", "{tmp}/d", False), ("fs.read", "{tmp}/dir/sub", True)),
    ),
    Case(
        # Node 26.10 let a lone "/etc/passwd.*" cover "/etc/passwd"; 26.12 does not.
        "lone-star-grant-does-not-cover-its-stem",
        _read("/etc/passwd.*"),
        (),
        (("fs.read", "/etc/passwd", False), ("fs.read", "/etc/passwd.d", True)),
    ),
    Case(
        # Node 26.10 let a lone "/example/foo*" cover "/example/fo"; 26.12 does not.
        "lone-star-grant-does-not-cover-a-shorter-prefix",
        _read("/example/foo*"),
        (),
        (("fs.read", "/example/fo", False), ("fs.read", "/example/foo", True)),
    ),
)


DIVERGENCES: tuple[Divergence, ...] = (
    Divergence(
        # "/q/r/*" covers the folder "/q/r" (as "/home/foo/*" covers "/home/foo"
        # in Node's own test), but a sibling grant "/q/rs" splits Node's tree so
        # that "/q/r" is no longer found.
        "sibling-grant-hides-folder-of-star-grant-in-node",
        _read("/q/r/*", "/q/rs"),
        (),
        (("fs.read", "/q/r", True, False), ("fs.read", "/q/r/x", True, True)),
    ),
    Divergence(
        # Node 26 knows only "addon" in has()/drop(); "addons" (its flag's
        # spelling) is an unknown scope there: false, and a silent no-op drop.
        # We accept both spellings, as the marker does.
        "addons-alias",
        ("--allow-addons", "--allow-ffi"),
        (("addons", None),),
        (("addons", None, False, False), ("addon", None, False, True), ("ffi", None, True, True)),
    ),
    Divergence(
        "addons-alias-has",
        ("--allow-addons",),
        (),
        (("addons", None, True, False), ("addon", None, True, True)),
    ),
)
