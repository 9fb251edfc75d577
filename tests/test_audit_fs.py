"""fs.read / fs.write enforcement, attempted for real in a fresh process.

Each test lays out real files, runs a snippet under a policy (the ``enforced``
fixture) and checks both the error (code, permission, resource) and that the
side effect did not happen, and that what is granted still works.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any

import pytest

READ = "FileSystemRead"
WRITE = "FileSystemWrite"

REPORT_DENIALS = """
print("@@" + json.dumps({"denials": [d.to_dict() for d in GUARD.denials]}), flush=True)
"""


def with_denials(code: str) -> str:
    """``code`` followed by a report of every denial the guard recorded."""
    return textwrap.dedent(code) + REPORT_DENIALS


def denied(permission: str, resource: Path | str) -> dict[str, Any]:
    return {
        "denied": True,
        "permission": permission,
        "resource": str(resource),
        "code": "ERR_ACCESS_DENIED",
    }


def ok(value: object) -> dict[str, Any]:
    return {"denied": False, "value": repr(value)}


@pytest.fixture
def area(tmp_path: Path) -> Path:
    """``granted/`` (with ``a.txt`` and ``sub/``) and ``outside/`` (with ``secret.txt``)."""
    root = tmp_path / "area"
    (root / "granted" / "sub").mkdir(parents=True)
    (root / "granted" / "a.txt").write_text("inside")
    (root / "outside").mkdir()
    (root / "outside" / "secret.txt").write_text("outside")
    return root


def line_of(tmp_path: Path, needle: str) -> int:
    """The line of the snippet file that contains ``needle``."""
    lines = (tmp_path / "snippet.py").read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if needle in line)


def test_read_outside_grant_is_denied_and_inside_allowed(enforced: Any, tmp_path: Path) -> None:
    granted = tmp_path / "granted"
    granted.mkdir()
    (granted / "a.txt").write_text("inside")
    secret = tmp_path / "secret.txt"
    secret.write_text("outside")
    out = enforced(
        f"""
        attempt("inside", lambda: open({str(granted / "a.txt")!r}).read())
        attempt("outside", lambda: open({str(secret)!r}).read())
        """,
        {"fs_read": [str(granted)]},
    )
    assert out["inside"] == {"denied": False, "value": "'inside'"}
    assert out["outside"] == denied(READ, secret)


def test_open_modes_need_the_matching_direction(enforced: Any, area: Path) -> None:
    target = area / "granted" / "a.txt"
    new = area / "granted" / "new.txt"
    out = enforced(
        f"""
        t, n = {str(target)!r}, {str(new)!r}
        attempt("r", lambda: open(t, "r").read())
        attempt("rb", lambda: open(t, "rb").read())
        attempt("w", lambda: open(t, "w").write("clobbered"))
        attempt("a", lambda: open(t, "a").write("appended"))
        attempt("x", lambda: open(n, "x").write("created"))
        attempt("r+", lambda: open(t, "r+").write("patched"))
        """,
        {"fs_read": [str(area / "granted")]},
    )
    assert out["r"] == ok("inside")
    assert out["rb"] == ok(b"inside")
    for mode in ("w", "a", "r+"):
        assert out[mode] == denied(WRITE, target), mode
    assert out["x"] == denied(WRITE, new)
    assert target.read_text() == "inside"
    assert not new.exists()


def test_write_only_grant_denies_reading(enforced: Any, area: Path) -> None:
    target = area / "granted" / "a.txt"
    out = enforced(
        f"""
        t = {str(target)!r}
        attempt("w", lambda: open(t, "w").write("rewritten"))
        attempt("r", lambda: open(t).read())
        attempt("r+", lambda: open(t, "r+").read())
        attempt("a", lambda: open(t, "a").write("!"))
        """,
        {"fs_write": [str(area / "granted")]},
    )
    assert out["w"] == ok(len("rewritten"))
    assert out["r"] == denied(READ, target)
    assert out["r+"] == denied(READ, target)
    assert out["a"] == ok(1)
    assert target.read_text() == "rewritten!"


def test_os_open_flags_are_decoded(enforced: Any, area: Path) -> None:
    target = area / "granted" / "a.txt"
    new = area / "granted" / "new.txt"
    out = enforced(
        f"""
        import os
        t, n = {str(target)!r}, {str(new)!r}
        def rw(path, flags):
            fd = os.open(path, flags, 0o600)
            os.close(fd)
        attempt("rdonly", lambda: rw(t, os.O_RDONLY))
        attempt("rdwr", lambda: rw(t, os.O_RDWR))
        attempt("wronly", lambda: rw(t, os.O_WRONLY))
        attempt("creat", lambda: rw(n, os.O_RDONLY | os.O_CREAT))
        attempt("trunc", lambda: rw(t, os.O_RDONLY | os.O_TRUNC))
        attempt("append", lambda: rw(t, os.O_RDONLY | os.O_APPEND))
        """,
        {"fs_read": [str(area / "granted")]},
    )
    assert out["rdonly"] == ok(None)
    for label in ("rdwr", "wronly", "trunc", "append"):
        assert out[label] == denied(WRITE, target), label
    assert out["creat"] == denied(WRITE, new)
    assert not new.exists()
    assert target.read_text() == "inside"


def test_os_open_rdwr_needs_both_directions(enforced: Any, area: Path) -> None:
    target = area / "granted" / "a.txt"
    out = enforced(
        f"""
        import os
        attempt("rdwr", lambda: os.open({str(target)!r}, os.O_RDWR))
        """,
        {"fs_write": [str(area / "granted")]},
    )
    assert out["rdwr"] == denied(READ, target)


def test_listing_a_directory_needs_read(enforced: Any, area: Path, tmp_path: Path) -> None:
    outside = area / "outside"
    out = enforced(
        with_denials(
            f"""
        import glob, os
        d = {str(outside)!r}
        attempt("listdir", lambda: os.listdir(d))
        attempt("scandir", lambda: list(os.scandir(d)))
        attempt("walk", lambda: list(os.walk(d)))
        attempt("glob", lambda: glob.glob(d + "/*"))
        attempt("granted", lambda: sorted(os.listdir({str(area / "granted")!r})))
        """
        ),
        {"fs_read": [str(area / "granted")]},
    )
    assert out["listdir"] == denied(READ, outside)
    assert out["scandir"] == denied(READ, outside)
    # os.walk and glob swallow the error, as they would a real EACCES: the
    # denial is still recorded, where the snippet asked.
    assert out["walk"] == ok([])
    assert out["glob"] == ok([])
    assert out["granted"] == ok(["a.txt", "sub"])
    records = out.results["denials"]
    assert [(d["permission"], d["resource"]) for d in records] == [(READ, str(outside))] * 4
    lines = [line_of(tmp_path, f'attempt("{label}"') for label in ("listdir", "scandir", "walk")]
    lines.append(line_of(tmp_path, 'attempt("glob"'))
    snippet = str(tmp_path / "snippet.py")
    assert [d["where"] for d in records] == [f"{snippet}:{n}" for n in lines]


def test_chdir_needs_read(enforced: Any, area: Path, tmp_path: Path) -> None:
    out = enforced(
        f"""
        import os
        attempt("outside", lambda: os.chdir({str(area / "outside")!r}))
        attempt("cwd", os.getcwd)
        attempt("granted", lambda: os.chdir({str(area / "granted")!r}))
        attempt("relative-read", lambda: open("a.txt").read())
        """,
        {"fs_read": [str(area / "granted")]},
    )
    assert out["outside"] == denied(READ, area / "outside")
    assert out["cwd"] == ok(str(tmp_path))
    assert out["granted"] == ok(None)
    assert out["relative-read"] == ok("inside")


def test_creating_and_removing_need_write(enforced: Any, area: Path) -> None:
    outside = area / "outside"
    (outside / "empty").mkdir()
    out = enforced(
        f"""
        import os
        o = {str(outside)!r}
        attempt("mkdir", lambda: os.mkdir(o + "/made"))
        attempt("makedirs", lambda: os.makedirs(o + "/x/y"))
        attempt("rmdir", lambda: os.rmdir(o + "/empty"))
        attempt("remove", lambda: os.remove(o + "/secret.txt"))
        attempt("unlink", lambda: os.unlink(o + "/secret.txt"))
        g = {str(area / "granted")!r}
        attempt("granted-mkdir", lambda: os.mkdir(g + "/made"))
        attempt("granted-rmdir", lambda: os.rmdir(g + "/made"))
        attempt("granted-remove", lambda: os.remove(g + "/a.txt"))
        """,
        {"fs_read": [str(area)], "fs_write": [str(area / "granted")]},
    )
    assert out["mkdir"] == denied(WRITE, outside / "made")
    assert out["makedirs"] == denied(WRITE, outside / "x")
    assert out["rmdir"] == denied(WRITE, outside / "empty")
    assert out["remove"] == denied(WRITE, outside / "secret.txt")
    assert out["unlink"] == denied(WRITE, outside / "secret.txt")
    assert not (outside / "made").exists() and not (outside / "x").exists()
    assert (outside / "empty").is_dir() and (outside / "secret.txt").exists()
    assert out["granted-mkdir"] == out["granted-rmdir"] == out["granted-remove"] == ok(None)
    assert not (area / "granted" / "a.txt").exists()


def test_relative_paths_resolve_against_the_current_directory(
    enforced: Any, area: Path, tmp_path: Path
) -> None:
    out = enforced(
        """
        import os
        attempt("mkdir", lambda: os.mkdir("area/granted/made"))
        attempt("chmod", lambda: os.chmod("area/granted/a.txt", 0o600))
        attempt("outside", lambda: os.mkdir("area/outside/made"))
        """,
        {"fs_write": [str(area / "granted")]},
    )
    assert out["mkdir"] == ok(None)
    assert out["chmod"] == ok(None)
    assert out["outside"] == denied(WRITE, area / "outside" / "made")
    assert (area / "granted" / "made").is_dir()
    assert not (area / "outside" / "made").exists()


def test_rename_needs_read_write_on_source_and_write_on_destination(
    enforced: Any, area: Path
) -> None:
    ro = area / "readonly"
    ro.mkdir()
    (ro / "r.txt").write_text("ro")
    wo = area / "writeonly"
    wo.mkdir()
    (wo / "w.txt").write_text("wo")
    src = area / "granted" / "a.txt"
    out = enforced(
        f"""
        import os
        g, o = {str(area / "granted")!r}, {str(area / "outside")!r}
        ro, wo = {str(ro)!r}, {str(wo)!r}
        attempt("to-outside", lambda: os.rename(g + "/a.txt", o + "/a.txt"))
        attempt("from-readonly", lambda: os.rename(ro + "/r.txt", g + "/r.txt"))
        attempt("from-writeonly", lambda: os.replace(wo + "/w.txt", g + "/w.txt"))
        attempt("inside", lambda: os.rename(g + "/a.txt", g + "/b.txt"))
        """,
        {
            "fs_read": [str(area / "granted"), str(ro), str(area / "outside")],
            "fs_write": [str(area / "granted"), str(wo)],
        },
    )
    assert out["to-outside"] == denied(WRITE, area / "outside" / "a.txt")
    assert out["from-readonly"] == denied(WRITE, ro / "r.txt")
    assert out["from-writeonly"] == denied(READ, wo / "w.txt")
    assert (ro / "r.txt").exists() and (wo / "w.txt").exists()
    assert not (area / "outside" / "a.txt").exists()
    assert out["inside"] == ok(None)
    assert not src.exists() and (area / "granted" / "b.txt").read_text() == "inside"


def test_link_and_symlink_need_both_ends(enforced: Any, area: Path) -> None:
    g, o = area / "granted", area / "outside"
    out = enforced(
        f"""
        import os
        g, o = {str(g)!r}, {str(o)!r}
        attempt("link-in", lambda: os.link(o + "/secret.txt", g + "/hard"))
        attempt("link-out", lambda: os.link(g + "/a.txt", o + "/hard"))
        attempt("symlink-to-outside", lambda: os.symlink(o + "/secret.txt", g + "/soft"))
        attempt("symlink-relative", lambda: os.symlink("../outside/secret.txt", g + "/rel"))
        attempt("symlink-in-outside", lambda: os.symlink(g + "/a.txt", o + "/soft"))
        attempt("symlink-inside", lambda: os.symlink("a.txt", g + "/ok"))
        attempt("read-through", lambda: open(g + "/ok").read())
        """,
        {"fs_read": [str(g)], "fs_write": [str(g)]},
    )
    assert out["link-in"] == denied(READ, o / "secret.txt")
    assert out["link-out"] == denied(WRITE, o / "hard")
    assert out["symlink-to-outside"] == denied(READ, o / "secret.txt")
    assert out["symlink-relative"] == denied(READ, o / "secret.txt")
    assert out["symlink-in-outside"] == denied(READ, o / "soft")
    for name in ("hard", "soft", "rel"):
        assert not os.path.lexists(g / name) and not os.path.lexists(o / name)
    assert out["symlink-inside"] == ok(None)
    assert out["read-through"] == ok("inside")


def test_metadata_changes_need_write(enforced: Any, area: Path) -> None:
    secret = area / "outside" / "secret.txt"
    before = secret.stat()
    out = enforced(
        f"""
        import os
        s = {str(secret)!r}
        attempt("chmod", lambda: os.chmod(s, 0o600))
        attempt("chown", lambda: os.chown(s, os.getuid(), -1))
        attempt("utime", lambda: os.utime(s, (0, 0)))
        attempt("truncate", lambda: os.truncate(s, 0))
        g = {str(area / "granted" / "a.txt")!r}
        attempt("granted-chmod", lambda: os.chmod(g, 0o600))
        attempt("granted-truncate", lambda: os.truncate(g, 2))
        """,
        {"fs_read": [str(area)], "fs_write": [str(area / "granted")]},
    )
    for label in ("chmod", "chown", "utime", "truncate"):
        assert out[label] == denied(WRITE, secret), label
    after = secret.stat()
    assert (after.st_mode, after.st_mtime_ns, after.st_size) == (
        before.st_mode,
        before.st_mtime_ns,
        before.st_size,
    )
    assert out["granted-chmod"] == out["granted-truncate"] == ok(None)
    assert (area / "granted" / "a.txt").read_text() == "in"


def test_fd_forms_map_the_descriptor_to_its_path(enforced: Any, area: Path) -> None:
    """A descriptor opened before enforcement still names a file the policy knows."""
    secret = area / "outside" / "secret.txt"
    before = secret.stat()
    out = enforced(
        """
        import os
        attempt("fchmod", lambda: os.fchmod(FD, 0o600))
        attempt("fchown", lambda: os.fchown(FD, os.getuid(), -1))
        attempt("futime", lambda: os.utime(FD, (0, 0)))
        attempt("ftruncate", lambda: os.ftruncate(FD, 0))
        attempt("chmod-fd", lambda: os.chmod(FD, 0o600))
        """,
        {"fs_read": [str(area)]},
        setup=f"import os\nFD = os.open({str(secret)!r}, os.O_RDWR)\n",
    )
    for label in ("fchmod", "fchown", "futime", "ftruncate", "chmod-fd"):
        assert out[label] == denied(WRITE, secret), label
    after = secret.stat()
    assert (after.st_mode, after.st_mtime_ns, after.st_size) == (
        before.st_mode,
        before.st_mtime_ns,
        before.st_size,
    )


def test_dir_fd_relative_calls_are_checked_against_the_real_folder(
    enforced: Any, area: Path
) -> None:
    outside, granted = area / "outside", area / "granted"
    out = enforced(
        """
        import os
        attempt("open", lambda: os.open("new.txt", os.O_WRONLY | os.O_CREAT, dir_fd=OUT))
        attempt("open-read", lambda: os.open("secret.txt", os.O_RDONLY, dir_fd=OUT))
        attempt("mkdir", lambda: os.mkdir("made", dir_fd=OUT))
        attempt("unlink", lambda: os.unlink("secret.txt", dir_fd=OUT))
        attempt("chmod", lambda: os.chmod("secret.txt", 0o600, dir_fd=OUT))
        attempt("granted-mkdir", lambda: os.mkdir("made", dir_fd=IN))
        create = os.O_WRONLY | os.O_CREAT
        attempt("granted-open", lambda: os.close(os.open("n.txt", create, dir_fd=IN)))
        """,
        {"fs_read": [str(granted)], "fs_write": [str(granted)]},
        setup=(
            f"import os\nOUT = os.open({str(outside)!r}, os.O_RDONLY)\n"
            f"IN = os.open({str(granted)!r}, os.O_RDONLY)\n"
        ),
    )
    assert out["open"] == denied(WRITE, outside / "new.txt")
    assert out["open-read"] == denied(READ, outside / "secret.txt")
    assert out["mkdir"] == denied(WRITE, outside / "made")
    assert out["unlink"] == denied(WRITE, outside / "secret.txt")
    assert out["chmod"] == denied(WRITE, outside / "secret.txt")
    assert sorted(os.listdir(outside)) == ["secret.txt"]
    assert out["granted-mkdir"] == out["granted-open"] == ok(None)
    assert (granted / "made").is_dir() and (granted / "n.txt").exists()


def test_shutil_operations(enforced: Any, area: Path) -> None:
    g, o = area / "granted", area / "outside"
    (o / "tree" / "leaf").mkdir(parents=True)
    out = enforced(
        f"""
        import shutil
        g, o = {str(g)!r}, {str(o)!r}
        attempt("copyfile-out", lambda: shutil.copyfile(g + "/a.txt", o + "/copy.txt"))
        attempt("copyfile-in", lambda: shutil.copyfile(o + "/secret.txt", g + "/copy.txt"))
        attempt("copytree", lambda: shutil.copytree(o + "/tree", g + "/tree"))
        attempt("move", lambda: shutil.move(o + "/secret.txt", g + "/moved.txt"))
        attempt("rmtree", lambda: shutil.rmtree(o + "/tree"))
        attempt("granted-copy", lambda: shutil.copyfile(g + "/a.txt", g + "/b.txt"))
        attempt("granted-rmtree", lambda: shutil.rmtree(g + "/sub"))
        """,
        {"fs_read": [str(g)], "fs_write": [str(g)]},
    )
    assert out["copyfile-out"] == denied(WRITE, o / "copy.txt")
    assert out["copyfile-in"] == denied(READ, o / "secret.txt")
    assert out["copytree"] == denied(READ, o / "tree")
    assert out["move"] == denied(READ, o / "secret.txt")
    assert out["rmtree"] == denied(WRITE, o / "tree")
    assert sorted(os.listdir(o)) == ["secret.txt", "tree"] and (o / "tree" / "leaf").is_dir()
    assert sorted(os.listdir(g)) == ["a.txt", "b.txt"]
    assert out["granted-copy"] == ok(str(g / "b.txt"))
    assert out["granted-rmtree"] == ok(None)


def test_tempfile_outside_grants_is_denied(enforced: Any, area: Path) -> None:
    o = area / "outside"
    out = enforced(
        f"""
        import tempfile
        attempt("mkstemp", lambda: tempfile.mkstemp(dir={str(o)!r}))
        attempt("mkdtemp", lambda: tempfile.mkdtemp(dir={str(o)!r}))
        attempt("granted", lambda: tempfile.mkdtemp(dir={str(area / "granted")!r}))
        """,
        {"fs_read": [str(area)], "fs_write": [str(area / "granted")]},
    )
    for label in ("mkstemp", "mkdtemp"):
        result = out[label]
        assert (result["denied"], result["permission"], result["code"]) == (
            True,
            WRITE,
            "ERR_ACCESS_DENIED",
        )
        assert os.path.dirname(result["resource"]) == str(o)
    assert sorted(os.listdir(o)) == ["secret.txt"]
    made = out["granted"]["value"].strip("'")
    assert os.path.dirname(made) == str(area / "granted") and os.path.isdir(made)


def test_sqlite_connect(enforced: Any, area: Path) -> None:
    import sqlite3

    db = area / "granted" / "data.db"
    with sqlite3.connect(db) as conn:
        conn.execute("create table t (x)")
        conn.execute("insert into t values (42)")
    conn.close()
    new_db = area / "outside" / "new.db"
    out = enforced(
        f"""
        import sqlite3
        attempt("outside", lambda: sqlite3.connect({str(new_db)!r}))
        attempt("read-write", lambda: sqlite3.connect({str(db)!r}))
        attempt("read-only", lambda: sqlite3.connect(
            "file:{db}?mode=ro", uri=True).execute("select x from t").fetchall())
        attempt("memory", lambda: sqlite3.connect(":memory:").execute("select 1").fetchall())
        """,
        {"fs_read": [str(area / "granted")]},
    )
    assert out["outside"] == denied(READ, new_db)
    assert out["read-write"] == denied(WRITE, db)
    assert not new_db.exists()
    assert out["read-only"] == ok([(42,)])
    assert out["memory"] == ok([(1,)])


def test_mmap_of_a_file_not_granted(enforced: Any, area: Path) -> None:
    secret = area / "outside" / "secret.txt"
    granted = area / "granted" / "a.txt"
    out = enforced(
        """
        import mmap
        attempt("read", lambda: mmap.mmap(RO, 0, access=mmap.ACCESS_READ))
        attempt("write", lambda: mmap.mmap(RW, 0, access=mmap.ACCESS_WRITE))
        attempt("default", lambda: mmap.mmap(RW, 0))
        attempt("granted", lambda: mmap.mmap(G, 0, access=mmap.ACCESS_READ)[:])
        attempt("granted-shared", lambda: mmap.mmap(G, 0))
        """,
        {"fs_read": [str(area)]},
        setup=(
            f"import os\nRO = os.open({str(secret)!r}, os.O_RDONLY)\n"
            f"RW = os.open({str(secret)!r}, os.O_RDWR)\n"
            f"G = os.open({str(granted)!r}, os.O_RDWR)\n"
        ),
    )
    assert out["read"]["denied"] is False  # area is readable
    assert out["write"] == denied(WRITE, secret)
    assert out["default"] == denied(WRITE, secret)
    assert out["granted"] == ok(b"inside")
    assert out["granted-shared"] == denied(WRITE, granted)
    assert secret.read_text() == "outside"

    out = enforced(
        """
        import mmap
        attempt("read", lambda: mmap.mmap(RO, 0, access=mmap.ACCESS_READ))
        """,
        {},
        setup=f"import os\nRO = os.open({str(secret)!r}, os.O_RDONLY)\n",
    )
    assert out["read"] == denied(READ, secret)


def _xattr_supported(path: Path) -> bool:
    try:
        os.setxattr(path, "user.probe", b"1")
    except OSError:
        return False
    return True


@pytest.mark.skipif(not hasattr(os, "setxattr"), reason="no extended attributes on this OS")
def test_extended_attributes(enforced: Any, area: Path) -> None:
    secret = area / "outside" / "secret.txt"
    if not _xattr_supported(secret):
        pytest.skip(f"the file system of {area} has no user extended attributes")
    out = enforced(
        f"""
        import os
        s = {str(secret)!r}
        attempt("get", lambda: os.getxattr(s, "user.probe"))
        attempt("list", lambda: os.listxattr(s))
        attempt("set", lambda: os.setxattr(s, "user.new", b"2"))
        attempt("remove", lambda: os.removexattr(s, "user.probe"))
        """,
        {},
    )
    assert out["get"] == out["list"] == denied(READ, secret)
    assert out["set"] == out["remove"] == denied(WRITE, secret)
    assert os.listxattr(secret) == ["user.probe"]

    out = enforced(
        f"""
        import os
        s = {str(secret)!r}
        attempt("get", lambda: os.getxattr(s, "user.probe"))
        attempt("set", lambda: os.setxattr(s, "user.new", b"2"))
        """,
        {"fs_read": [str(secret)]},
    )
    assert out["get"] == ok(b"1")
    assert out["set"] == denied(WRITE, secret)


def test_symlink_inside_grant_pointing_outside_is_denied(enforced: Any, area: Path) -> None:
    link = area / "granted" / "escape"
    link.symlink_to(area / "outside" / "secret.txt")
    dir_link = area / "granted" / "escape-dir"
    dir_link.symlink_to(area / "outside")
    out = enforced(
        f"""
        import os
        attempt("file", lambda: open({str(link)!r}).read())
        attempt("dir", lambda: os.listdir({str(dir_link)!r}))
        attempt("write", lambda: open({str(dir_link / "new.txt")!r}, "w"))
        """,
        {"fs_read": [str(area / "granted")], "fs_write": [str(area / "granted")]},
    )
    assert out["file"] == denied(READ, link)
    assert out["dir"] == denied(READ, dir_link)
    assert out["write"] == denied(WRITE, dir_link / "new.txt")
    assert not (area / "outside" / "new.txt").exists()


def test_dot_dot_after_a_link_is_applied_where_the_link_leads(enforced: Any, area: Path) -> None:
    """``granted/escape/../x`` is ``outside/../x`` to the kernel, not ``granted/x``."""
    nested = area / "outside" / "nested"
    nested.mkdir()
    (area / "granted" / "escape").symlink_to(nested)
    sneaky = area / "granted" / "escape" / ".." / "secret.txt"
    made = area / "granted" / "escape" / ".." / "made"
    plain = area / "granted" / "sub" / ".." / "a.txt"
    out = enforced(
        f"""
        import os
        attempt("read", lambda: open({str(sneaky)!r}).read())
        attempt("mkdir", lambda: os.mkdir({str(made)!r}))
        attempt("plain-dot-dot", lambda: open({str(plain)!r}).read())
        """,
        {"fs_read": [str(area / "granted")], "fs_write": [str(area / "granted")]},
    )
    assert out["read"] == denied(READ, area / "granted" / "secret.txt")
    assert out["mkdir"] == denied(WRITE, area / "granted" / "made")
    assert not (area / "outside" / "made").exists()
    assert out["plain-dot-dot"] == ok("inside")


def test_grant_given_through_a_symlink_still_works(enforced: Any, area: Path) -> None:
    alias = area / "alias"
    alias.symlink_to(area / "granted")
    out = enforced(
        f"""
        attempt("via-alias", lambda: open({str(alias / "a.txt")!r}).read())
        attempt("via-real", lambda: open({str(area / "granted" / "a.txt")!r}).read())
        attempt("outside", lambda: open({str(area / "outside" / "secret.txt")!r}).read())
        """,
        {"fs_read": [str(alias)]},
    )
    assert out["via-alias"] == out["via-real"] == ok("inside")
    assert out["outside"] == denied(READ, area / "outside" / "secret.txt")


def test_proc_self_fd_path_is_resolved(enforced: Any, area: Path) -> None:
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("no /proc/self/fd on this system")
    out = enforced(
        """
        attempt("outside", lambda: open(f"/proc/self/fd/{FD}").read())
        attempt("granted", lambda: open(f"/proc/self/fd/{G}").read())
        """,
        {"fs_read": [str(area / "granted")]},
        setup=(
            f"import os\nFD = os.open({str(area / 'outside' / 'secret.txt')!r}, os.O_RDONLY)\n"
            f"G = os.open({str(area / 'granted' / 'a.txt')!r}, os.O_RDONLY)\n"
        ),
    )
    result = out["outside"]
    assert (result["denied"], result["permission"], result["code"]) == (
        True,
        READ,
        "ERR_ACCESS_DENIED",
    )
    assert result["resource"].startswith("/proc/self/fd/")
    assert out["granted"] == ok("inside")


def test_bytecode_cache_writes_are_skipped_quietly(enforced: Any, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "fresh_module.py").write_text("VALUE = 7\n")
    out = enforced(
        with_denials(
            f"""
        import sys
        sys.dont_write_bytecode = False  # whatever PYTHONDONTWRITEBYTECODE says
        sys.path.insert(0, {str(lib)!r})
        attempt("import", lambda: __import__("fresh_module").VALUE)
        """
        ),
        {"fs_read": [str(lib)]},
    )
    assert out["import"] == ok(7)
    assert out.results["denials"] == []
    assert not (lib / "__pycache__").exists()


def test_own_writes_into_a_pycache_folder_are_denied_loudly(enforced: Any, tmp_path: Path) -> None:
    """Only the import system's cache writes are skipped quietly."""
    cache = tmp_path / "lib" / "__pycache__"
    cache.mkdir(parents=True)
    out = enforced(
        f"""
        attempt("write", lambda: open({str(cache / "x.pyc")!r}, "wb"))
        attempt("mkdir", lambda: __import__("os").mkdir({str(cache / "sub")!r}))
        """,
        {},
    )
    assert out["write"] == denied(WRITE, cache / "x.pyc")
    assert out["mkdir"] == denied(WRITE, cache / "sub")
    assert list(cache.iterdir()) == []


def test_implicit_grants_cover_code_not_data(enforced: Any, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "helper.py").write_text("NAME = 'helper'\n")
    (lib / "data.txt").write_text("data")
    out = enforced(
        f"""
        import sys
        sys.path.insert(0, {str(lib)!r})
        attempt("stdlib", lambda: __import__("decimal").Decimal("1.5"))
        attempt("module", lambda: __import__("helper").NAME)
        attempt("data", lambda: open({str(lib / "data.txt")!r}).read())
        """,
        {},
    )
    assert out["stdlib"] == ok(__import__("decimal").Decimal("1.5"))
    assert out["module"] == ok("helper")
    assert out["data"] == denied(READ, lib / "data.txt")


def _stdlib_data_file() -> Path:
    """A file of the installation that no import reads (``LICENSE.txt``)."""
    stdlib = Path(os.__file__).parent
    for entry in sorted(stdlib.iterdir()):
        if entry.is_file() and entry.suffix not in (".py", ".pyc", ".so"):
            return entry
    pytest.skip(f"no data file directly in {stdlib}")


def test_implicit_false_denies_the_installation(enforced: Any) -> None:
    data = _stdlib_data_file()
    code = f"""
        attempt("data", lambda: len(open({str(data)!r}).read()) > 0)
        """
    assert enforced(code, {})["data"] == ok(True)
    assert enforced(code, {}, implicit=False)["data"] == denied(READ, data)


def test_drop_at_runtime_revokes_a_granted_path(
    enforced: Any, area: Path, tmp_path: Path
) -> None:
    target = area / "granted" / "a.txt"
    out = enforced(
        with_denials(
            f"""
        t = {str(target)!r}
        attempt("before", lambda: open(t).read())
        attempt("has-before", lambda: GUARD.has("fs.read", t))
        GUARD.drop("fs.read", {str(area / "granted")!r})
        attempt("after", lambda: open(t).read())
        attempt("has-after", lambda: GUARD.has("fs.read", t))
        """
        ),
        {"fs_read": [str(area / "granted")]},
    )
    assert out["before"] == ok("inside")
    assert out["has-before"] == ok(True)
    assert out["after"] == denied(READ, target)
    assert out["has-after"] == ok(False)
    line = line_of(tmp_path, 'attempt("after"')
    assert [(d["permission"], d["resource"], d["where"]) for d in out.results["denials"]] == [
        (READ, str(target), f"{tmp_path / 'snippet.py'}:{line}")
    ]


def test_a_made_up_source_file_name_is_no_denial(enforced: Any, tmp_path: Path) -> None:
    """CPython opens a code object's ``<unknown>``/``<string>`` to quote a SyntaxError's line
    (``ast.parse`` of indented source, as hypothesis does on every ``@given`` method): no
    denial, no warning, no grant for it. A real file of such a name is still checked, and
    writing one is a write like any other."""
    (tmp_path / "<real>").write_text("a file with an odd name")
    out = enforced(
        with_denials(
            """
        import ast
        def parse_indented():
            try:
                ast.parse("    x = 1\\n")
            except SyntaxError as exc:
                return type(exc).__name__
        attempt("ast", parse_indented)
        attempt("compile", lambda: compile("  y = (", "<string>", "exec"))
        attempt("missing", lambda: open("<unknown>"))
        attempt("real", lambda: open("<real>").read())
        attempt("write", lambda: open("<new>", "w"))
        """
        ),
        {},
    )
    assert out["ast"] == ok("IndentationError")
    assert out["compile"]["error"] == "IndentationError"
    assert out["missing"]["error"] == "FileNotFoundError"
    assert out["real"] == denied(READ, tmp_path / "<real>")
    assert out["write"] == denied(WRITE, tmp_path / "<new>")
    assert [d["resource"] for d in out.results["denials"]] == [
        str(tmp_path / "<real>"),
        str(tmp_path / "<new>"),
    ]


def test_the_name_source_was_compiled_as_is_no_denial(enforced: Any, tmp_path: Path) -> None:
    """pytest parses snippets cut from a file as ``"source"`` to find a statement's range;
    a snippet that does not parse makes CPython open ``source`` to quote the line. Only
    that name, only right after its compile, only when no such file exists."""
    out = enforced(
        with_denials(
            """
        import ast
        def parse_snippet():
            try:
                ast.parse("def f(\\n    x,", "source", "exec")
            except SyntaxError as exc:
                return type(exc).__name__
        attempt("snippet", parse_snippet)
        attempt("other", lambda: open("other-name"))
        """
        ),
        {},
    )
    assert out["snippet"] == ok("SyntaxError")
    assert out["other"] == denied(READ, tmp_path / "other-name")
    assert [d["resource"] for d in out.results["denials"]] == [str(tmp_path / "other-name")]


def test_the_assertion_rewriters_cache_folder_is_skipped_quietly(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pytest writes a rewritten module's bytecode through ``os.makedirs``: the first
    frame outside the plugin is ``os``'s, the writer is further up. Skipped, never a
    denial, a warning or (in an audit) a grant."""
    pytester.makepyfile(
        conftest="import pytest\npytest.register_assert_rewrite('helper')\n",
        helper="def check(x):\n    assert x\n",
        test_it="""
        import pytest

        @pytest.mark.permission(strict=True)
        def test_imports_a_rewritten_helper():
            import helper
            helper.check(True)
        """,
    )
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)
    for args in ([], ["--permission-audit"]):
        for cache in pytester.path.glob("**/__pycache__"):
            for file in cache.iterdir():
                file.unlink()
            cache.rmdir()
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)
        result.assert_outcomes(passed=1)
        result.stdout.no_fnmatch_line("*__pycache__*")
