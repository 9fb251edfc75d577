"""The ``permission`` section under a denial's traceback: grants, near miss, the one change.

Each case builds the test's policy from a real marker, exactly as the plugin
does (:func:`pytest_permission.marker.settings_for`), and explains a real
``AccessDenied``. Every "to allow it" is then applied to the marker and must
grant the denied access: a hint that would not fix the test cannot pass.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from pytest_permission import AccessDenied, scopes
from pytest_permission.errors import Denial
from pytest_permission.hints import Context, explain, swallowed
from pytest_permission.marker import settings_for
from pytest_permission.policy import Policy

NODEID = "tests/test_app.py::test_it"
AUDIT = f"every grant this test needs: pytest --permission-audit {NODEID}"


@pytest.fixture
def places(tmp_path: Path) -> dict[str, Path]:
    """A project (``rootdir``) with its tests folder, and a ``tmp_path`` outside it."""
    root = tmp_path / "project"
    (root / "tests").mkdir(parents=True)
    (tmp_path / "tmp").mkdir()
    return {"rootdir": root, "testdir": root / "tests", "tmp_path": tmp_path / "tmp"}


def policy_of(
    places: dict[str, Path], *args: Any, session: Policy | None = None, **kwargs: Any
) -> Policy:
    mark = pytest.mark.permission(*args, **kwargs).mark
    return settings_for(mark, session=session or Policy(), **places).policy


def context(
    places: dict[str, Path],
    *args: Any,
    granted: Policy | None = None,
    session: Policy | None = None,
    marked: bool = True,
    **kwargs: Any,
) -> Context:
    """The context of a test with this marker (``marked=False``: no marker, ``--permission``)."""
    declared = policy_of(places, *args, session=session, **kwargs) if marked else session
    assert declared is not None
    return Context(
        nodeid=NODEID,
        granted=granted or declared,
        declared=declared,
        written=dict(kwargs) if marked else None,
        inherit=bool(args) and args[0] == "inherit",
        rootdir=str(places["rootdir"]),
        testdir=str(places["testdir"]),
        tmp_path=str(places["tmp_path"]),
    )


def hint(error: BaseException, ctx: Context) -> list[str]:
    text = explain(error, ctx)
    assert text is not None
    return text.splitlines()


def assert_the_change_allows_it(
    lines: list[str],
    ctx: Context,
    places: dict[str, Path],
    denial: AccessDenied,
    session: Policy | None = None,
) -> None:
    """Apply the printed change to the marker: the denied access must now be granted."""
    change = next(line for line in lines if line.startswith("to allow it: "))
    keyword, value = re.search(r"(\w+)=(\[.*?\]|True)", change).groups()  # type: ignore[union-attr]
    written = dict(ctx.written or {})
    written[keyword] = True if value == "True" else json.loads(value)
    base = ("inherit",) if ctx.inherit or ctx.written is None else ()
    policy = policy_of(places, *base, session=session, **written)
    scope = next(s for s in scopes.GRANTABLE if s.permission == denial.permission)
    if scope.kind is scopes.Kind.PATHS:  # as enforced: real paths against resolved grants
        assert policy.resolved().has(scope.name, os.path.realpath(str(denial.resource)))
    else:
        assert policy.has(scope.name, denial.resource)


def test_a_relative_marker_path_meant_relative_to_the_test_folder(
    places: dict[str, Path],
) -> None:
    root, tests = places["rootdir"], places["testdir"]
    (tests / "data").mkdir()
    ctx = context(places, fs_read=["data"])
    denial = AccessDenied("FileSystemRead", str(tests / "data" / "rows.csv"))
    lines = hint(denial, ctx)
    assert lines == [
        f"granted fs_read: {root}/data ('data' as written: relative marker paths are "
        f"relative to rootdir {root})",
        f"'data' is relative, so it was joined to rootdir ({root}/data), not to the test's "
        f"folder ({tests}/data)",
        'to allow it: fs_read=["{testdir}/data"] in its @pytest.mark.permission(...)',
        AUDIT,
    ]
    assert_the_change_allows_it(lines, ctx, places, denial)


def test_a_folder_missing_when_the_marker_was_read_covers_only_that_path(
    places: dict[str, Path],
) -> None:
    out = places["tmp_path"] / "out"
    ctx = context(places, fs_write=["{tmp_path}/out"])  # read before the folder exists
    out.mkdir()  # as the test body does
    denial = AccessDenied("FileSystemWrite", str(out / "report.txt"))
    lines = hint(denial, ctx)
    assert lines == [
        f"granted fs_write: {out} (did not exist when the marker was read: covers that "
        "exact path only)",
        f"{out} did not exist when the marker was read, so it covers that exact path only, "
        "nothing below it: create the folder in a fixture, or grant it with a trailing '/*' "
        "(the folder and everything below it, made yet or not)",
        'to allow it: fs_write=["{tmp_path}/out/*"] in its @pytest.mark.permission(...)',
        AUDIT,
    ]
    assert_the_change_allows_it(lines, ctx, places, denial)


def test_a_name_looked_up_where_its_loopback_address_was_granted(
    places: dict[str, Path],
) -> None:
    ctx = context(places, net=["127.0.0.1:8080"])
    denial = AccessDenied("Net", "localhost:8080")
    lines = hint(denial, ctx)
    assert lines == [
        "granted net: 127.0.0.1:8080",
        "'localhost' is a name, looked up before connecting: a loopback address grant does "
        "not cover the name (while a 'localhost' grant covers the loopback addresses)",
        'to allow it: net=["127.0.0.1:8080", "localhost:8080"] in its @pytest.mark.permission(...)',
        AUDIT,
    ]
    assert_the_change_allows_it(lines, ctx, places, denial)


@pytest.mark.parametrize(
    ("grant", "resource", "near"),
    [
        ("127.0.0.1:8080", "127.0.0.1:9090", "127.0.0.1:8080 grants 127.0.0.1 on port 8080 only"),
        (
            "*.example.com",
            "example.com:443",
            "*.example.com covers the names below example.com, not example.com itself",
        ),
        (
            "example.com",
            "93.184.216.34:443",
            "93.184.216.34 is an address: a granted host name allows the addresses it resolved "
            "to only once the test has looked it up (connect by name, or grant the address)",
        ),
        (
            "10.0.0.1",
            "db.internal:5432",
            "'db.internal' is a name, looked up before connecting: an address grant does not "
            "cover a name",
        ),
    ],
)
def test_host_near_misses(places: dict[str, Path], grant: str, resource: str, near: str) -> None:
    ctx = context(places, net=[grant])
    denial = AccessDenied("Net", resource)
    lines = hint(denial, ctx)
    assert lines[1] == near
    assert_the_change_allows_it(lines, ctx, places, denial)


def test_granted_for_the_other_direction(places: dict[str, Path]) -> None:
    data = places["testdir"] / "data"
    data.mkdir()
    ctx = context(places, fs_read=["{testdir}/data"])
    denial = AccessDenied("FileSystemWrite", str(data / "new.csv"))
    lines = hint(denial, ctx)
    assert lines[:2] == [
        "granted fs_write: nothing (the marker does not name fs_write: every scope it does not "
        "name is denied)",
        "it is granted to fs_read, but to write it needs fs_write",
    ]
    assert lines[2] == (
        'to allow it: fs_write=["{testdir}/data/new.csv"] in its @pytest.mark.permission(...)'
    )
    assert_the_change_allows_it(lines, ctx, places, denial)


def test_a_symbolic_link_leading_out_of_a_granted_folder(places: dict[str, Path]) -> None:
    granted, elsewhere = places["tmp_path"] / "granted", places["tmp_path"] / "elsewhere"
    granted.mkdir()
    elsewhere.mkdir()
    (granted / "link").symlink_to(elsewhere)
    ctx = context(places, fs_read=["{tmp_path}/granted"])
    denial = AccessDenied("FileSystemRead", str(granted / "link" / "x.txt"))
    lines = hint(denial, ctx)
    assert lines[1] == (
        f"it lies below the grant {granted} but its real path is {elsewhere}/x.txt (a symbolic "
        "link), and the real path is what is checked"
    )
    assert lines[2] == (
        'to allow it: fs_read=["{tmp_path}/granted", "{tmp_path}/elsewhere/x.txt"] in its '
        "@pytest.mark.permission(...)"
    )
    assert_the_change_allows_it(lines, ctx, places, denial)


def test_a_grant_dropped_during_the_test(places: dict[str, Path]) -> None:
    declared = policy_of(places, fs_write=["{tmp_path}"])
    ctx = context(places, fs_write=["{tmp_path}"], granted=declared.dropped("fs.write"))
    denial = AccessDenied("FileSystemWrite", str(places["tmp_path"] / "x"))
    assert hint(denial, ctx) == [
        "granted fs_write: nothing (narrowed by permission.drop() during the test)",
        "the test started with a grant for it: permission.drop() took it away",
        AUDIT,
    ]


def test_a_test_with_only_the_fixture_that_dropped(places: dict[str, Path]) -> None:
    """Requesting ``permission`` isolates a test with everything granted until it drops."""
    everything = Policy.allow_all()
    ctx = context(places, session=everything, marked=False, granted=everything.dropped("net"))
    assert hint(AccessDenied("Net", "example.com:443"), ctx) == [
        "granted net: nothing (the test has no marker: it started with everything; narrowed by "
        "permission.drop() during the test)",
        "the test started with a grant for it: permission.drop() took it away",
        AUDIT,
    ]


def test_a_test_without_a_marker_under_permission(places: dict[str, Path]) -> None:
    session = Policy.from_keywords({"fs_read": ["/srv/data"]})
    ctx = context(places, session=session, marked=False)
    denial = AccessDenied("FileSystemRead", "/etc/hostname")
    lines = hint(denial, ctx)
    assert lines == [
        "granted fs_read: /srv/data (the session's --allow-* options: the test has no marker)",
        'to allow it: @pytest.mark.permission("inherit", fs_read=["/srv/data", "/etc/hostname"])'
        " on the test, or --allow-fs-read=/etc/hostname for the session",
        AUDIT,
    ]
    assert_the_change_allows_it(lines, ctx, places, denial, session=session)


def test_a_scope_taken_from_the_session(places: dict[str, Path]) -> None:
    session = Policy.from_keywords({"net": ["db.internal:5432"]})
    ctx = context(places, net="inherit", session=session)
    denial = AccessDenied("Net", "cache.internal:6379")
    lines = hint(denial, ctx)
    assert lines[0] == 'granted net: db.internal:5432 (taken from the session ("inherit"))'
    assert lines[1] == (
        'to allow it: net=["db.internal:5432", "cache.internal:6379"] in its '
        "@pytest.mark.permission(...), or --allow-net=cache.internal:6379 for the session"
    )
    assert_the_change_allows_it(lines, ctx, places, denial, session=session)


@pytest.mark.parametrize(
    ("kwargs", "denial", "first", "change"),
    [
        (
            {"fs_read": True},
            AccessDenied("ChildProcess", "/usr/bin/uname"),
            "granted child: no (the marker does not name child: every scope it does not name "
            "is denied)",
            "to allow it: child=True in its @pytest.mark.permission(...)",
        ),
        (
            {"env": ["WEATHER_*"]},
            AccessDenied("Env", "AWS_SECRET_ACCESS_KEY"),
            "granted env: WEATHER_*",
            'to allow it: env=["WEATHER_*", "AWS_SECRET_ACCESS_KEY"] in its '
            "@pytest.mark.permission(...)",
        ),
        (
            {"addons": False},
            AccessDenied("Addon", "/site/fast.so"),
            "granted addon: no",
            "to allow it: addon=True in its @pytest.mark.permission(...)",
        ),
    ],
)
def test_switches_and_names(
    places: dict[str, Path],
    kwargs: dict[str, Any],
    denial: AccessDenied,
    first: str,
    change: str,
) -> None:
    ctx = context(places, **kwargs)
    lines = hint(denial, ctx)
    assert lines == [first, change, AUDIT]
    assert_the_change_allows_it(lines, ctx, places, denial)


def test_a_socket_no_address_can_name_takes_the_whole_scope(places: dict[str, Path]) -> None:
    """A UDP socket refused at creation names its kind, which no host grant covers."""
    ctx = context(places, net=["127.0.0.1:53"])
    lines = hint(AccessDenied("Net", "AF_INET SOCK_DGRAM"), ctx)
    assert lines == [
        "granted net: 127.0.0.1:53",
        "AF_INET SOCK_DGRAM is not a host: only net=True grants it",
        "to allow it: net=True in its @pytest.mark.permission(...)",
        AUDIT,
    ]


def test_a_unix_socket_from_the_session_gets_its_flag_expanded(places: dict[str, Path]) -> None:
    session = Policy.from_keywords({"net": ["db.internal:5432"]})
    ctx = context(places, "inherit", session=session)
    socket = places["tmp_path"] / "app.sock"
    lines = hint(AccessDenied("Net", str(socket)), ctx)
    assert lines[1] == (
        'to allow it: net=["db.internal:5432", "{tmp_path}/app.sock"] in its '
        f"@pytest.mark.permission(...), or --allow-net={socket} for the session"
    )
    assert_the_change_allows_it(lines, ctx, places, AccessDenied("Net", str(socket)), session)


def test_a_denial_inside_a_library_error_is_explained(places: dict[str, Path]) -> None:
    class FetchError(Exception):
        pass

    try:
        try:
            raise AccessDenied("Net", "127.0.0.1:8080")
        except AccessDenied as exc:
            raise FetchError("could not fetch") from exc
    except FetchError as wrapped:
        error = wrapped
    assert hint(error, context(places))[0].startswith("granted net: nothing")
    assert explain(ValueError("no denial here"), context(places)) is None


def test_the_node_id_is_quoted_for_the_shell(places: dict[str, Path]) -> None:
    ctx = Context(
        nodeid="tests/test_app.py::test_it[a b]",
        granted=Policy(),
        declared=Policy(),
        written={},
        inherit=False,
        rootdir=str(places["rootdir"]),
        testdir=str(places["testdir"]),
    )
    lines = hint(AccessDenied("WorkerThreads", "run"), ctx)
    assert lines[-1] == (
        "every grant this test needs: pytest --permission-audit 'tests/test_app.py::test_it[a b]'"
    )


def test_swallowed_denials_name_raises_access_denied_and_env_grants() -> None:
    raised = Denial("Net", "127.0.0.1:8080", "/src/app.py:3")
    hidden = Denial("Env", "API_TOKEN", "/src/app.py:9", raised=False)
    assert swallowed([raised, hidden]).splitlines() == [
        "the code under test swallowed 2 access denial(s):",
        "  Net 127.0.0.1:8080 at /src/app.py:3",
        "  Env API_TOKEN at /src/app.py:9",
        "expected, inside an error a library raised? assert it with "
        "pytest_permission.raises_access_denied(...), which finds the denial in the error's "
        "__cause__/__context__; needed? grant it in @pytest.mark.permission(...)",
        "a variable not granted reads as missing: grant it with env=[...] if the test needs it",
    ]
    assert "env=" not in swallowed([raised])
    assert "raises_access_denied" not in swallowed([hidden])
