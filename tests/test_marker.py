"""``@pytest.mark.permission``: how its arguments become a test's settings, and every refusal.

The markers are real ``pytest.mark.permission(...)`` objects; the settings
are checked through the resulting policy's ``has()``, the answer enforcement
relies on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_permission import scopes
from pytest_permission.marker import MARKER_LINE, TestSettings, settings_for, validate
from pytest_permission.policy import Policy

SESSION = Policy.from_keywords(
    {"fs_read": ["/session/read/*"], "net": ["session.example:443"], "child": True, "env": ["HOME"]}
)


def mark(*args: Any, **kwargs: Any) -> pytest.Mark:
    decorator: pytest.MarkDecorator = pytest.mark.permission(*args, **kwargs)
    return decorator.mark


@pytest.fixture
def folders(tmp_path: Path) -> dict[str, Path]:
    """A root, a test folder inside it and a tmp_path, all real directories."""
    root = tmp_path / "root"
    (root / "tests").mkdir(parents=True)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    return {"rootdir": root, "testdir": root / "tests", "tmp_path": tmp}


def settings(folders: dict[str, Path], marker: pytest.Mark) -> TestSettings:
    return settings_for(marker, session=SESSION, **folders)


def test_marker_line_documents_every_keyword() -> None:
    assert MARKER_LINE.startswith("permission(base='none', *, fs_read=..., fs_write=...")
    for keyword in scopes.keywords():  # openssl_store and the addons alias too
        assert f"{keyword}=..." in MARKER_LINE
    assert "addon=... (or addons=...), ffi=..." in MARKER_LINE
    assert "strict=None, implicit=None, timeout=None, isolation=None)" in MARKER_LINE
    assert MARKER_LINE.endswith("(Node.js permission model)")


def test_empty_marker_denies_everything(folders: dict[str, Path]) -> None:
    result = settings(folders, mark())
    assert result == TestSettings(Policy(), strict=None, implicit=None, timeout=None)
    assert not result.policy.has("fs.read", "/session/read")
    assert not result.policy.has("child")


def test_base_none_grants_only_what_is_named(folders: dict[str, Path]) -> None:
    for marker in (mark(net=["localhost"]), mark("none", net=["localhost"])):
        policy = settings(folders, marker).policy
        assert policy.has("net", "127.0.0.1:80")
        assert not policy.has("child")
        assert not policy.has("fs.read", "/session/read")


@pytest.mark.parametrize("marker", [mark("inherit", net=False), mark(base="inherit", net=False)])
def test_base_inherit_starts_from_the_session(
    folders: dict[str, Path], marker: pytest.Mark
) -> None:
    policy = settings(folders, marker).policy
    assert policy.has("fs.read", "/session/read/file")
    assert policy.has("child")
    assert policy.has("env", "HOME")
    assert not policy.has("net", "session.example:443")


def test_keyword_inherit_takes_one_scope_from_the_session(folders: dict[str, Path]) -> None:
    policy = settings(folders, mark(net="inherit", fs_read="inherit", env="inherit")).policy
    assert policy.has("net", "session.example:443")
    assert not policy.has("net", "other.example:443")
    assert policy.has("fs.read", "/session/read/x")
    assert policy.has("env", "HOME")
    assert not policy.has("child")


def test_keyword_inherit_of_an_ungranted_scope_denies(folders: dict[str, Path]) -> None:
    policy = settings(folders, mark("inherit", worker="inherit")).policy
    assert not policy.has("worker")
    assert policy.has("child")


@pytest.mark.parametrize("keyword", ["fs_read", "fs_write"])
def test_placeholders_expand_in_paths(folders: dict[str, Path], keyword: str) -> None:
    scope = keyword.replace("_", ".")
    marker = mark(**{keyword: ["{tmp_path}/out", "{rootdir}/data", "{testdir}"]})
    policy = settings(folders, marker).policy
    assert policy.has(scope, folders["tmp_path"] / "out")
    assert not policy.has(scope, folders["tmp_path"] / "other")
    assert policy.has(scope, folders["rootdir"] / "data")
    assert policy.has(scope, folders["testdir"] / "test_x.py")  # an existing folder covers below
    assert not policy.has(scope, folders["rootdir"] / "other")


def test_placeholder_in_a_single_path_string(folders: dict[str, Path]) -> None:
    policy = settings(folders, mark(fs_write="{tmp_path}")).policy
    assert policy.has("fs.write", folders["tmp_path"] / "deep" / "file")


def test_placeholder_in_a_unix_socket_grant(folders: dict[str, Path]) -> None:
    policy = settings(folders, mark(net=["{tmp_path}/app.sock", "localhost:8080"])).policy
    assert policy.has("net", f"{folders['tmp_path']}/app.sock")
    assert policy.has("net", "localhost:8080")
    assert not policy.has("net", f"{folders['tmp_path']}/other.sock")


def test_placeholders_do_not_expand_in_env_names(folders: dict[str, Path]) -> None:
    policy = settings(folders, mark(env=["{tmp_path}"])).policy
    assert policy.has("env", "{tmp_path}")


def test_relative_paths_are_relative_to_rootdir(folders: dict[str, Path]) -> None:
    policy = settings(folders, mark(fs_read=["data", "tests"], fs_write="out/../log")).policy
    assert policy.has("fs.read", folders["rootdir"] / "data")
    assert policy.has("fs.read", folders["testdir"] / "test_a.py")
    assert not policy.has("fs.read", Path.cwd() / "data")
    assert policy.has("fs.write", folders["rootdir"] / "log")


def test_path_forms(folders: dict[str, Path]) -> None:
    tmp = folders["tmp_path"]
    policy = settings(folders, mark(fs_read=[tmp / "a", bytes(tmp / "b"), str(tmp / "c*")])).policy
    assert policy.has("fs.read", tmp / "a")
    assert policy.has("fs.read", tmp / "b")
    assert policy.has("fs.read", tmp / "c2" / "x")
    assert settings(folders, mark(fs_read=True)).policy.has("fs.read", "/anything")
    assert settings(folders, mark(fs_read="*")).policy.has("fs.read", "/anything")
    assert not settings(folders, mark(fs_read=False)).policy.has("fs.read", "/anything")
    assert not settings(folders, mark(fs_read=[])).policy.has("fs.read", "/anything")


def test_switches_and_settings(folders: dict[str, Path]) -> None:
    result = settings(
        folders, mark(child=True, worker=False, addons=True, strict=True, implicit=False, timeout=5)
    )
    assert result.policy.has("child")
    assert not result.policy.has("worker")
    assert result.policy.has("addon")
    assert (result.strict, result.implicit, result.timeout) == (True, False, 5.0)
    assert isinstance(result.timeout, float)
    assert settings(folders, mark(timeout=0.5)).timeout == 0.5


def test_tmp_path_placeholder_without_tmp_path(folders: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match=r"fs_write entry '\{tmp_path\}/x' needs \{tmp_path\}"):
        settings_for(
            mark(fs_write=["{tmp_path}/x"]),
            session=SESSION,
            rootdir=folders["rootdir"],
            testdir=folders["testdir"],
            tmp_path=None,
        )
    # Without the placeholder, no tmp_path is needed.
    settings_for(
        mark(fs_write=["{rootdir}"]),
        session=SESSION,
        rootdir=folders["rootdir"],
        testdir=folders["testdir"],
        tmp_path=None,
    )


@pytest.mark.parametrize(
    "marker",
    [
        mark(),
        mark("inherit", net=False),
        mark(fs_read=["{tmp_path}", "{rootdir}/x", "{testdir}"], fs_write="{tmp_path}/out"),
        mark(net=["localhost:8080", "*.example.com", "[::1]:443", "{tmp_path}/s.sock"]),
        mark(env=["AWS_*", "HOME"], child=True, strict=False, implicit=True, timeout=1),
        mark(fs_read="inherit", net="inherit"),
    ],
)
def test_validate_accepts_good_markers(marker: pytest.Mark) -> None:
    validate(marker)


PATH_FORMS = r"accepted: True, '\*', False, a path or a list of str/bytes/os.PathLike paths"
HOST_FORMS = r"accepted: 'host', 'host:port', '\[v6\]:port', '\*.example.com'"


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        (
            mark(fs_reed=["/x"]),
            r"^unknown keyword 'fs_reed' \(did you mean 'fs_read'\?\); "
            r"accepted: base, fs_read, fs_write, net, child, worker, addon, ffi, inspector, env",
        ),
        (mark(timout=3), r"^unknown keyword 'timout' \(did you mean 'timeout'\?\)"),
        (mark(banana=1), r"^unknown keyword 'banana'; accepted: base, fs_read"),
        (mark(fs_read=42), rf"^fs_read=42 \(int\) is not a valid grant; {PATH_FORMS}$"),
        (
            mark(fs_write=[42]),
            rf"^fs_write entry 42 must be str, bytes or os.PathLike, got int; {PATH_FORMS}$",
        ),
        (mark(fs_write={"a": 1}), r"^fs_write=\{'a': 1\} \(dict\) is not a valid grant"),
        (mark(net=3), rf"^net=3 \(int\) is not a valid grant; {HOST_FORMS}"),
        (mark(net=[3]), rf"^net entry 3 is not a str; {HOST_FORMS}"),
        (mark(child="yes"), r"^child='yes' is not valid; accepted: True or False$"),
        (mark(worker=1), r"^worker=1 is not valid; accepted: True or False$"),
        (mark(env=3), r"^env=3 \(int\) is not a valid grant; accepted: True, '\*', False"),
        (mark(env=["A=B"]), r"^env entry 'A=B' is not a variable name; accepted: True"),
        (mark(fs_read=[""]), rf"^fs_read has an empty path; {PATH_FORMS}$"),
        (mark(fs_write=""), rf"^fs_write has an empty path; {PATH_FORMS}$"),
        (mark(net="exa mple"), rf"^net: malformed host 'exa mple'; {HOST_FORMS}"),
        (mark(net=["[::1"]), rf"^net: malformed host '\[::1'; {HOST_FORMS}"),
        (mark(net=["host:99999"]), r"^net: malformed port in 'host:99999': expected 0-65535$"),
        (
            mark(fs_read=["{tmpdir}/x"]),
            r"^fs_read entry '\{tmpdir\}/x' has an unknown placeholder '\{tmpdir\}'; "
            r"accepted: \{tmp_path\}, \{rootdir\}, \{testdir\}, \{basetemp\}, \{tempdir\}$",
        ),
        (mark(net=["{sock}"]), r"^net entry '\{sock\}' has an unknown placeholder '\{sock\}'"),
        (
            mark("none", "inherit"),
            r"^takes at most one positional argument, the base 'none' or 'inherit'; "
            r"got 2: 'none', 'inherit'$",
        ),
        (mark("all"), r"^base 'all' is not valid; accepted: 'none' or 'inherit'$"),
        (mark(base=True), r"^base True is not valid; accepted: 'none' or 'inherit'$"),
        (mark("none", base="inherit"), r"^the base is given twice"),
        (mark(strict="yes"), r"^strict='yes' is not valid; accepted: True, False or None$"),
        (mark(implicit=0), r"^implicit=0 is not valid; accepted: True, False or None$"),
        (
            mark(timeout=-1),
            r"^timeout=-1 is not valid; accepted: a positive number of seconds or None$",
        ),
        (mark(timeout=0), r"^timeout=0 is not valid"),
        (mark(timeout=True), r"^timeout=True is not valid"),
        (mark(timeout="5"), r"^timeout='5' is not valid"),
        (mark(timeout=float("nan")), r"^timeout=nan is not valid"),
    ],
)
def test_validate_refuses(marker: pytest.Mark, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate(marker)


def test_settings_for_refuses_as_validate_does(folders: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match=r"^child='yes' is not valid"):
        settings(folders, mark(child="yes"))


def test_settings_class_is_not_collected_as_a_test() -> None:
    assert TestSettings.__test__ is False
