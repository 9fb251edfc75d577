"""The rules that turn recorded accesses into the smallest marker (pure, no pytest run)."""

from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

from pytest_permission import suggest
from pytest_permission.errors import Denial
from pytest_permission.marker import settings_for
from pytest_permission.policy import Policy
from pytest_permission.suggest import Audited, Grants, Places

PLACES = Places(
    rootdir="/work/project",
    testdir="/work/project/tests",
    tempdir="/tmp",
    tmp_path="/tmp/pytest-of-me/pytest-3/test_x0",
    ephemeral=(32768, 60999),
    basetemp="/tmp/pytest-of-me/pytest-3",
    home="/home/me",
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
        ("/tmp/pytest-of-me/pytest-3/data0/a", "{basetemp}/data0/a"),
        ("/tmp/pytest-of-me/pytest-30/x", "{tempdir}/pytest-of-me/pytest-30/x"),
        ("/tmp/tmpab12cd34", "{tempdir}/tmpab12cd34"),
        ("/home/me/.pdbrc", "~/.pdbrc"),
        ("/home/me", "~"),
        ("/home/meow/.pdbrc", "/home/meow/.pdbrc"),
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


def notes_and_grants(*accesses: tuple[str, str], places: Places) -> tuple[Grants, list[str]]:
    found = suggest.needs([Denial(p, r, "x:1") for p, r in accesses], places)
    return suggest.grants(found), found.notes


def test_a_temporary_file_of_its_own_grants_the_names_tempfile_makes_and_says_so() -> None:
    assert notes_and_grants(
        ("FileSystemWrite", "/tmp/tmpa1b2c3_d"), ("FileSystemRead", "/tmp/tmpzz99xx00/f.txt"),
        places=PLACES,
    ) == (
        {"fs_read": ["{tempdir}/tmp*"], "fs_write": ["{tempdir}/tmp*"]},
        [  # one note for both keywords
            "fs_read, fs_write: {tempdir}/tmp* is every name tempfile makes, as it makes one "
            "anew every run: the test used a temporary file or folder of its own; the tmp_path "
            "fixture would keep it narrow"
        ],
    )


def test_a_session_fixture_s_mkdtemp_folder_is_named_by_the_fixture_in_the_note() -> None:
    places = replace(PLACES, fixtures=(("workdir", "/tmp/tmpk2j3l4m5"),))
    assert notes_and_grants(("FileSystemRead", "/tmp/tmpk2j3l4m5/seed.txt"), places=places) == (
        {"fs_read": ["{tempdir}/tmp*"]},
        [
            "fs_read: {tempdir}/tmp* is every name tempfile makes, as it makes one anew every "
            "run: the test used the folder the fixture `workdir` made; tmp_path_factory in the "
            "fixture would keep it narrow"
        ],
    )


def test_other_names_in_the_temporary_folder_grant_all_of_it() -> None:
    grants, notes = notes_and_grants(("FileSystemWrite", "/tmp/myapp-x1/f"), places=PLACES)
    assert grants == {"fs_write": ["{tempdir}"]}
    assert notes[0].startswith("fs_write: {tempdir} is the whole temporary folder: the test used")


@pytest.mark.parametrize(
    ("path", "grant"),
    [
        ("/tmp/pytest-of-me/pytest-3/data0/rows.csv", "{basetemp}/data*"),
        ("/tmp/pytest-of-me/pytest-3/data12", "{basetemp}/data*"),
        ("/tmp/pytest-of-me/pytest-3/fixed/x", "{basetemp}/fixed"),  # mktemp(numbered=False)
        ("/tmp/pytest-of-me/pytest-3", "{basetemp}"),
    ],
)
def test_folders_tmp_path_factory_made_are_granted_by_their_name(path: str, grant: str) -> None:
    assert notes_and_grants(("FileSystemRead", path), places=PLACES)[0] == {"fs_read": [grant]}


def test_a_numbered_folder_note_names_the_fixture_that_made_it() -> None:
    places = replace(PLACES, fixtures=(("dataset", "/tmp/pytest-of-me/pytest-3/data0"),))
    _, notes = notes_and_grants(
        ("FileSystemRead", "/tmp/pytest-of-me/pytest-3/data0/rows.csv"), places=places
    )
    assert notes == [
        "fs_read: {basetemp}/data* is the folder the fixture `dataset` made with "
        "tmp_path_factory.mktemp('data'), whatever its number (it depends on the order "
        "fixtures run)"
    ]


def test_the_project_folder_itself_is_granted_with_a_note() -> None:
    grants, notes = notes_and_grants(("FileSystemRead", "/work/project"), places=PLACES)
    assert grants == {"fs_read": ["{rootdir}"]}
    assert notes == [
        "fs_read: {rootdir} is the whole project: the test used the project folder itself "
        "(listed it, changed into it), and a folder is granted with what is below it"
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
    places = replace(PLACES, fixtures=(("workdir", "/tmp/tmpk2j3l4m5"),), implicit=False)
    assert Places.from_dict(json.loads(json.dumps(places.to_dict()))) == places
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


@pytest.mark.parametrize(
    ("folders", "path", "entry"),
    [
        ({"rootdir": "/home/me/src/app", "home": "/home/me"}, "/home/me/src/app/x", "{rootdir}/x"),
        ({"home": "/tmp/home", "tempdir": "/tmp"}, "/tmp/home/.pdbrc", "~/.pdbrc"),
        (  # pytester: the inner session's basetemp is inside its rootdir
            {"rootdir": "/tmp/t0", "basetemp": "/tmp/t0/runpytest-0"},
            "/tmp/t0/runpytest-0/data0",
            "{basetemp}/data0",
        ),
        ({"home": "/"}, "/etc/hostname", "/etc/hostname"),  # HOME=/ is no folder of its own
        ({"tempdir": "/tmp/"}, "/tmp/x", "{tempdir}/x"),
    ],
)
def test_the_narrowest_folder_wins_however_they_nest(
    folders: dict[str, str], path: str, entry: str
) -> None:
    places = Places.from_dict({**PLACES.to_dict(), **folders})
    assert suggest.placed(path, places) == entry


def test_every_placeholder_expands_back_to_the_path_through_the_marker(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a suggestion writes, the marker reads back as the same path on this machine."""
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    root = tmp_path / "root"
    folders = {
        "rootdir": root, "testdir": root / "tests", "tmp_path": tmp_path / "t",
        "basetemp": tmp_path_factory.getbasetemp(),
    }
    places = Places(
        rootdir=str(root), testdir=str(root / "tests"), tempdir=tempfile.gettempdir(),
        tmp_path=str(tmp_path / "t"), basetemp=str(folders["basetemp"]), home=str(home),
    )
    for path in [
        root / "tests" / "data.txt", root / "setup.cfg", tmp_path / "t" / "out",
        Path(folders["basetemp"]) / "data0" / "rows.csv", home / ".pdbrc",
        Path(tempfile.gettempdir()) / "tmpabcdefgh" / "f",
    ]:
        entry = suggest.placed(str(path), places)
        assert entry != str(path), path
        policy = settings_for(
            pytest.mark.permission(fs_read=[entry]).mark, session=Policy(), **folders
        ).policy
        assert policy.has("fs.read", path), (entry, path)
        assert not policy.has("fs.read", path.parent / "elsewhere"), (entry, path)


SERIAL_HERE = PLACES
XDIST_ELSEWHERE = Places(  # another machine, another run, an xdist worker
    rootdir="/Users/ci/src/project",
    testdir="/Users/ci/src/project/tests",
    tempdir="/var/folders/ab/T",
    tmp_path="/var/folders/ab/T/pytest-of-ci/pytest-81/popen-gw1/test_x1",
    ephemeral=(49152, 65535),
    basetemp="/var/folders/ab/T/pytest-of-ci/pytest-81/popen-gw1",
    home="/Users/ci",
)


def accesses_of_one_test(places: Places, run: int) -> list[Denial]:
    """The same test's accesses in one run: only names made anew every run differ."""
    assert places.tmp_path is not None and places.basetemp is not None and places.home
    made = f"tmp{'abcdefgh' if run else '01234567'}"
    return [
        Denial(p, r, "tests/test_x.py:1")
        for p, r in [
            ("FileSystemWrite", f"{places.tmp_path}/out/f.txt"),
            ("FileSystemRead", f"{places.testdir}/data/a.txt"),
            ("FileSystemRead", f"{places.testdir}/data/b.txt"),
            ("FileSystemRead", f"{places.rootdir}/setup.cfg"),
            ("FileSystemRead", f"{places.basetemp}/data{run * 3}/rows.csv"),
            ("FileSystemRead", f"{places.tempdir}/{made}/seed.txt"),
            ("FileSystemWrite", f"{places.tempdir}/{made}/out.txt"),
            ("FileSystemRead", f"{places.home}/.pdbrc"),
            ("Env", "    SHOUT"),
            ("Net", f"127.0.0.1:{places.ephemeral[0] + run}"),
            ("ChildProcess", "/usr/bin/git"),
        ]
    ]


def test_suggestions_are_the_same_on_any_machine_in_any_run_serial_or_under_xdist() -> None:
    here = suggest.needs(accesses_of_one_test(SERIAL_HERE, 0), SERIAL_HERE)
    there = suggest.needs(accesses_of_one_test(XDIST_ELSEWHERE, 1), XDIST_ELSEWHERE)
    assert suggest.grants(here) == suggest.grants(there) == {
        "fs_read": [
            "{basetemp}/data*", "{rootdir}/setup.cfg", "{tempdir}/tmp*", "{testdir}/data",
            "~/.pdbrc",
        ],
        "fs_write": ["{tempdir}/tmp*", "{tmp_path}"],
        "net": ["127.0.0.1"],
        "child": True,
        "env": ["    SHOUT"],
    }
    assert here.notes == there.notes


def test_env_names_are_kept_exactly_and_quoted_in_the_marker() -> None:
    assert marker_for(("Env", "    SHOUT"), ("Env", 'A"B')) == (
        '@pytest.mark.permission(env=["    SHOUT", "A\\"B"])'
    )
