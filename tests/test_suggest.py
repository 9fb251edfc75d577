"""The rules that turn recorded accesses into the smallest marker (pure, no pytest run)."""

from __future__ import annotations

import json

import pytest

from pytest_permission import suggest
from pytest_permission.errors import Denial
from pytest_permission.suggest import Audited, Places

PLACES = Places(
    rootdir="/work/project",
    testdir="/work/project/tests",
    tempdir="/tmp",
    tmp_path="/tmp/pytest-of-me/pytest-3/test_x0",
    ephemeral=(32768, 60999),
)


def marker_for(*accesses: tuple[str, str | None], places: Places = PLACES) -> str:
    denials = [Denial(permission, resource, "test_x.py:1") for permission, resource in accesses]
    return suggest.marker(suggest.grants(suggest.needs(denials, places)))


@pytest.mark.parametrize(
    ("path", "placed"),
    [
        ("/tmp/pytest-of-me/pytest-3/test_x0/out/f.txt", "{tmp_path}/out/f.txt"),
        ("/tmp/pytest-of-me/pytest-3/test_x0", "{tmp_path}"),
        ("/work/project/tests/data/a.txt", "{testdir}/data/a.txt"),
        ("/work/project/tests", "{testdir}"),
        ("/work/project/setup.cfg", "{rootdir}/setup.cfg"),
        ("/work/project-other/x", "/work/project-other/x"),  # a prefix is not a folder
        ("/etc/hostname", "/etc/hostname"),
    ],
)
def test_the_narrowest_placeholder_that_fits(path: str, placed: str) -> None:
    assert suggest.placed(path, PLACES) == placed


def test_anything_below_tmp_path_is_tmp_path() -> None:
    assert marker_for(
        ("FileSystemWrite", "/tmp/pytest-of-me/pytest-3/test_x0/out"),
        ("FileSystemWrite", "/tmp/pytest-of-me/pytest-3/test_x0/out/deep/f.txt"),
    ) == '@pytest.mark.permission(fs_write=["{tmp_path}"])'


def test_files_of_one_project_folder_collapse_to_it() -> None:
    assert marker_for(
        ("FileSystemRead", "/work/project/tests/data/a.txt"),
        ("FileSystemRead", "/work/project/tests/data/b.txt"),
        ("FileSystemRead", "/work/project/tests/data/sub/c.txt"),
    ) == '@pytest.mark.permission(fs_read=["{testdir}/data"])'


def test_a_lone_file_is_not_widened_to_its_folder() -> None:
    assert marker_for(
        ("FileSystemRead", "/work/project/tests/data/a.txt"),
        ("FileSystemRead", "/work/project/README.md"),
    ) == '@pytest.mark.permission(fs_read=["{rootdir}/README.md", "{testdir}/data/a.txt"])'


def test_paths_outside_the_project_are_never_collapsed() -> None:
    assert marker_for(
        ("FileSystemRead", "/etc/ssl/a.pem"),
        ("FileSystemRead", "/etc/ssl/b.pem"),
    ) == '@pytest.mark.permission(fs_read=["/etc/ssl/a.pem", "/etc/ssl/b.pem"])'


def test_a_file_of_its_own_in_the_temp_folder_grants_the_folder_and_says_so() -> None:
    found = suggest.needs([Denial("FileSystemWrite", "/tmp/tmpa1b2c3", "x:1")], PLACES)
    assert suggest.grants(found) == {"fs_write": ["/tmp"]}
    assert found.notes == [
        "fs_write: /tmp is the whole temp folder (the test used a temporary file of its "
        "own): the tmp_path fixture would keep the grant narrow"
    ]


@pytest.mark.parametrize(
    ("resource", "entry"),
    [
        ("api.example.com:443", "api.example.com:443"),
        ("127.0.0.1:8080", "127.0.0.1:8080"),
        ("[::1]:8080", "[::1]:8080"),
        ("127.0.0.1:0", "127.0.0.1"),  # bind to any port
        ("127.0.0.1:45678", "127.0.0.1"),  # a free port: different next run
        ("example.com", "example.com"),  # a look-up without a port
        ("/tmp/pytest-of-me/pytest-3/test_x0/app.sock", "{tmp_path}/app.sock"),
    ],
)
def test_hosts_keep_their_ports_unless_the_port_is_a_free_one(resource: str, entry: str) -> None:
    assert suggest.grants(suggest.needs([Denial("Net", resource, "x:1")], PLACES)) == {
        "net": [entry]
    }


def test_a_port_less_host_covers_the_same_host_with_ports() -> None:
    assert marker_for(
        ("Net", "db.internal"), ("Net", "db.internal:5432"), ("Net", "localhost:8080"),
        ("Net", "127.0.0.1:8080"),
    ) == '@pytest.mark.permission(net=["db.internal", "localhost:8080"])'


def test_an_address_that_is_not_a_host_needs_net_true() -> None:
    found = suggest.needs([Denial("Net", "(0, 0)", "x:1")], PLACES)
    assert suggest.grants(found) == {"net": True}
    assert found.notes == ["net: (0, 0) is not a host: only net=True grants it"]


def test_switch_scopes_env_and_scope_table_order() -> None:
    assert marker_for(
        ("Env", "API_TOKEN"),
        ("WorkerThreads", "mod.run"),
        ("ChildProcess", "/usr/bin/git"),
        ("Inspector", "sys.settrace"),
        ("FFI", "libc.so.6"),
        ("Addon", "/site/ext.so"),
        ("Env", "AWS_REGION"),
        ("FileSystemRead", "/etc/hostname"),
    ) == (
        '@pytest.mark.permission(fs_read=["/etc/hostname"], child=True, worker=True, '
        'addon=True, ffi=True, inspector=True, env=["API_TOKEN", "AWS_REGION"])'
    )


def test_nothing_touched_is_the_empty_marker_and_implicit_off_is_kept() -> None:
    assert marker_for() == "@pytest.mark.permission()"
    off = Places(PLACES.rootdir, PLACES.testdir, PLACES.tempdir, implicit=False)
    assert marker_for(places=off) == "@pytest.mark.permission(implicit=False)"


@pytest.mark.parametrize(
    ("keyword", "grant", "entry", "covered"),
    [
        ("fs_read", "{testdir}/data", "{testdir}/data/a.txt", True),
        ("fs_read", "{testdir}/data", "{testdir}/database", False),
        ("fs_read", "{testdir}/d*", "{testdir}/database", True),
        ("net", "127.0.0.1", "127.0.0.1:8080", True),
        ("net", "127.0.0.1:80", "127.0.0.1:8080", False),
        ("net", "localhost", "[::1]:80", True),
        ("net", "*.example.com", "api.example.com:443", True),
        ("env", "AWS_*", "AWS_REGION", True),
        ("env", "AWS_*", "HOME", False),
        ("child", "child", "child", True),
    ],
)
def test_covers(keyword: str, grant: str, entry: str, covered: bool) -> None:
    assert suggest.covers(keyword, grant, entry) is covered


def test_places_and_the_audit_document_round_trip_through_json() -> None:
    assert Places.from_dict(json.loads(json.dumps(PLACES.to_dict()))) == PLACES
    audited = Audited(
        "tests/test_x.py::test_b",
        "passed",
        (Denial("Env", "TOKEN", "tests/test_x.py:9", raised=False),),
        PLACES,
    )
    first = Audited("tests/test_x.py::test_a", "failed", (), PLACES)
    document = json.loads(suggest.audit_json([audited, first]))
    assert document == {
        "version": 1,
        "tests": {
            "tests/test_x.py::test_a": {
                "outcome": "failed",
                "marker": "@pytest.mark.permission()",
                "grants": {},
                "notes": [],
                "accesses": [],
            },
            "tests/test_x.py::test_b": {
                "outcome": "passed",
                "marker": '@pytest.mark.permission(env=["TOKEN"])',
                "grants": {"env": ["TOKEN"]},
                "notes": [],
                "accesses": [
                    {"permission": "Env", "resource": "TOKEN", "where": "tests/test_x.py:9"}
                ],
            },
        },
    }
    assert list(document["tests"]) == sorted(document["tests"])
