"""``--permission-audit`` (spec section 8) through real inner pytest sessions.

The suite below touches files (in ``tmp_path``, beside the test file, in
the project, in the temp folder), a server on 127.0.0.1, a subprocess, a
thread and an environment variable. The audit must let all of it happen,
and the markers it prints, pasted back, must make the same suite pass with
every test restricted.
"""

from __future__ import annotations

import json
import os
import random
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="isolation needs os.fork")

SUITE = '''
import os, socket, subprocess, sys, tempfile, threading
from pathlib import Path
import pytest

HERE = Path(__file__).parent
PORT = {port}


@pytest.fixture(scope="module")
def server():
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", PORT))
        listener.listen()
        yield


def test_files(tmp_path):
    assert (HERE / "data" / "a.txt").read_text() == "a"
    assert (HERE / "data" / "b.txt").read_text() == "b"
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "result.txt").write_text("done")
    assert (tmp_path / "out" / "result.txt").read_text() == "done"


def test_project_file():
    assert (HERE.parent / "settings.cfg").read_text() == "x=1"


def test_net(server):
    socket.create_connection(("127.0.0.1", PORT), timeout=5).close()


def test_child():
    out = subprocess.run([sys.executable, "-c", "print(42)"], capture_output=True, text=True)
    assert out.stdout == "42\\n"


def test_thread():
    seen = []
    worker = threading.Thread(target=seen.append, args=(1,))
    worker.start()
    worker.join()
    assert seen == [1]


def test_env():
    assert os.environ["AUDIT_TOKEN"] == "t0k3n"


def test_temp_file():
    fd, name = tempfile.mkstemp()
    os.close(fd)
    os.remove(name)


@pytest.mark.permission(fs_write=[])
def test_narrow_marker(tmp_path):
    (tmp_path / "made.txt").write_text("made")
    assert (tmp_path / "made.txt").exists()


def test_nothing():
    assert sum([1, 2]) == 3
'''


def free_port() -> int:
    """A free port below the ephemeral range, so that the audit keeps it."""
    for _ in range(200):
        port = random.randint(20000, 30000)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port in 20000-30000")


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The suite in ``tests/``, a data folder beside it and a file in the project."""
    port = free_port()
    monkeypatch.setenv("AUDIT_TOKEN", "t0k3n")
    pytester.makeini("[pytest]\n")
    tests = pytester.mkdir("tests")
    (tests / "data").mkdir()
    (tests / "data" / "a.txt").write_text("a")
    (tests / "data" / "b.txt").write_text("b")
    (pytester.path / "settings.cfg").write_text("x=1")
    test_file = tests / "test_suite.py"
    test_file.write_text(SUITE.format(port=port))
    return {"port": port, "file": test_file}


def expected_markers(port: int) -> dict[str, str]:
    return {
        "test_files": '@pytest.mark.permission(fs_read=["{testdir}/data", "{tmp_path}"], '
        'fs_write=["{tmp_path}"])',
        "test_project_file": '@pytest.mark.permission(fs_read=["{rootdir}/settings.cfg"])',
        "test_net": f'@pytest.mark.permission(net=["127.0.0.1:{port}"])',
        "test_child": "@pytest.mark.permission(child=True)",
        "test_thread": "@pytest.mark.permission(worker=True)",
        "test_env": '@pytest.mark.permission(env=["AUDIT_TOKEN"])',
        "test_temp_file": '@pytest.mark.permission(fs_read=["{tempdir}/tmp*"], '
        'fs_write=["{tempdir}/tmp*"])',
        "test_narrow_marker": '@pytest.mark.permission(fs_write=["{tmp_path}"])',
        "test_nothing": "@pytest.mark.permission()",
    }


def printed_markers(lines: list[str]) -> dict[str, list[str]]:
    """The ``permission audit`` section: test name -> its marker and comment lines."""
    start = next(i for i, line in enumerate(lines) if "permission audit" in line)
    found: dict[str, list[str]] = {}
    current: list[str] = []
    for line in lines[start + 1 :]:
        if not line.strip() and not found:
            continue
        if line.startswith("    "):
            current.append(line.strip())
        elif "::" in line and not line.startswith(("=", "FAILED")):
            current = found.setdefault(line.split("::")[-1], [])
        else:
            break
    return found


def paste(test_file: Path, printed: dict[str, list[str]]) -> None:
    """Write the printed markers over the suite's own, as a user would."""
    lines = [
        line for line in test_file.read_text().splitlines()
        if not line.startswith("@pytest.mark.permission")
    ]
    out = []
    for line in lines:
        name = re.match(r"def (test_\w+)\(", line)
        if name:
            out += printed[name.group(1)]
        out.append(line)
    test_file.write_text("\n".join(out) + "\n")


def test_audit_enforces_nothing_and_prints_the_markers_that_make_the_suite_pass(
    pytester: pytest.Pytester, suite: dict[str, Any]
) -> None:
    restricted = pytester.runpytest_subprocess("--permission")
    restricted.assert_outcomes(passed=1, failed=8)  # the suite needs its grants

    audited = pytester.runpytest_subprocess("--permission-audit")
    audited.assert_outcomes(passed=9)
    audited.stdout.fnmatch_lines(
        ["permission: observing every test, enforcing nothing (audit/baseline run)"]
    )
    assert "permission denials" not in audited.stdout.str()
    assert "swallowed" not in audited.stdout.str()
    printed = printed_markers(audited.outlines)
    assert {name: lines[0] for name, lines in printed.items()} == expected_markers(suite["port"])
    assert printed["test_temp_file"][1:] == [
        "# fs_read, fs_write: {tempdir}/tmp* is every name tempfile makes, as it makes one anew "
        "every run: the test used a temporary file or folder of its own; the tmp_path fixture "
        "would keep it narrow"
    ]

    paste(suite["file"], printed)
    again = pytester.runpytest_subprocess("--permission")
    again.assert_outcomes(passed=9)
    assert "permission denials" not in again.stdout.str()
    assert "swallowed" not in again.stdout.str()


def test_a_marker_missing_one_grant_fails_the_round_trip(
    pytester: pytest.Pytester, suite: dict[str, Any]
) -> None:
    """The round trip is meaningful: each printed grant is needed."""
    printed = printed_markers(pytester.runpytest_subprocess("--permission-audit").outlines)
    printed["test_net"] = ["@pytest.mark.permission(net=['127.0.0.1:1'])"]
    printed["test_env"] = ["@pytest.mark.permission()"]
    paste(suite["file"], printed)
    result = pytester.runpytest_subprocess("--permission")
    result.assert_outcomes(passed=7, failed=2)
    result.stdout.fnmatch_lines(["*Net*127.0.0.1:*", "*permission denials*", "*Env AUDIT_TOKEN*"])


def test_audit_json_follows_the_documented_schema(
    pytester: pytest.Pytester, suite: dict[str, Any]
) -> None:
    result = pytester.runpytest_subprocess("--permission-audit-json=audit.json")
    result.assert_outcomes(passed=9)
    result.stdout.fnmatch_lines(["*permission audit*", f"audit written to {pytester.path}*"])
    data = json.loads((pytester.path / "audit.json").read_text())
    assert set(data) == {"version", "tests"} and data["version"] == 1
    assert list(data["tests"]) == sorted(data["tests"])
    markers = expected_markers(suite["port"])
    for nodeid, entry in data["tests"].items():
        assert set(entry) == {"outcome", "marker", "grants", "notes", "accesses"}
        assert entry["outcome"] == "passed"
        assert entry["marker"] == markers[nodeid.split("::")[-1]]
        for keyword, value in entry["grants"].items():
            assert value is True or (
                isinstance(value, list) and all(isinstance(v, str) for v in value)
            ), keyword
        assert all(isinstance(note, str) for note in entry["notes"])
        for access in entry["accesses"]:
            assert set(access) == {"permission", "resource", "where"}
            assert access["where"].startswith(str(suite["file"]) + ":")
    net = data["tests"]["tests/test_suite.py::test_net"]
    assert net["grants"] == {"net": [f"127.0.0.1:{suite['port']}"]}
    assert net["accesses"][0]["permission"] == "Net"
    assert net["accesses"][0]["resource"] == f"127.0.0.1:{suite['port']}"
    env = data["tests"]["tests/test_suite.py::test_env"]["accesses"]
    assert [(a["permission"], a["resource"]) for a in env] == [("Env", "AUDIT_TOKEN")]


def test_audit_under_xdist_is_aggregated_on_the_controller(
    pytester: pytest.Pytester, suite: dict[str, Any]
) -> None:
    pytest.importorskip("xdist")
    result = pytester.runpytest_subprocess("-n", "2", "--permission-audit-json=audit.json")
    result.assert_outcomes(passed=9)
    assert result.stdout.str().count("permission audit") == 1
    printed = printed_markers(result.outlines)
    assert {name: lines[0] for name, lines in printed.items()} == expected_markers(suite["port"])
    data = json.loads((pytester.path / "audit.json").read_text())
    assert len(data["tests"]) == 9


def test_a_failing_test_is_audited_with_a_note(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import os

        def test_reads_then_fails():
            os.listdir(os.path.dirname(__file__))
            raise AssertionError("boom")
        """
    )
    result = pytester.runpytest_subprocess("--permission-audit")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*permission audit*",
            "test_a_failing_test_is_audited_with_a_note.py::test_reads_then_fails",
            '    @pytest.mark.permission(fs_read=["{testdir}"])',
            "    # the test failed: this covers only what ran before it stopped",
        ]
    )


OBSERVED = '''
import json, os, socket, sys, threading
from pytest_permission import Policy, audit

guard = audit.install(Policy.from_keywords({"env": ["SEEN"]}), observe=True)
path = sys.argv[1]
for _ in range(3):
    with open(path, "w") as file:
        file.write("written")
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen()
socket.create_connection(listener.getsockname()).close()
threading.Thread(target=len, args=((),)).start()
copied = dict(os.environ)
print(json.dumps({
    "file": open(path).read(),
    "secret": os.environ.get("SECRET"),
    "seen": os.environ["SEEN"],
    "copied": "SECRET" in copied,
    "has_env": guard.has("env", "SEEN"),
    "has_net": guard.has("net"),
    "denials": [[d.permission, d.resource, d.raised] for d in guard.denials],
}))
'''


def test_an_observing_guard_lets_everything_happen_and_records_each_access_once(
    tmp_path: Path,
) -> None:
    script = tmp_path / "observed.py"
    script.write_text(textwrap.dedent(OBSERVED))
    target = tmp_path / "target.txt"
    env = dict(os.environ, SECRET="s", SEEN="v")
    proc = subprocess.run(
        [sys.executable, str(script), str(target)], capture_output=True, text=True, env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert target.read_text() == "written"  # nothing was enforced
    assert out["file"] == "written"
    assert out["secret"] == "s" and out["seen"] == "v"  # not hidden, but recorded
    assert out["copied"] is False  # listing leaves it out, as enforcement would
    assert out["has_env"] is True and out["has_net"] is False  # has() answers for the policy
    denials = [tuple(d) for d in out["denials"]]
    assert denials.count(("FileSystemWrite", str(target), True)) == 1
    assert ("FileSystemRead", str(target), True) in denials
    assert ("Net", "127.0.0.1:0", True) in denials
    assert ("Env", "SECRET", False) in denials
    assert ("Env", "SEEN", False) in denials  # observing checks against nothing granted
    assert ("WorkerThreads", "builtins.len", True) in denials
    assert len(denials) == len(set(denials))


def test_python_subprocesses_of_an_audited_test_are_not_restricted(
    pytester: pytest.Pytester,
) -> None:
    """Subprocesses inherit a restricted test's policy; an audited test's enforce nothing."""
    pytester.makepyfile(
        """
        import os, subprocess, sys
        import pytest

        DATA = os.path.join(os.path.dirname(__file__), "data.txt")

        @pytest.mark.permission(child=True)
        def test_spawns_a_reader():
            out = subprocess.run(
                [sys.executable, "-c", "import sys; print(open(sys.argv[1]).read())", DATA],
                capture_output=True, text=True,
            )
            assert out.returncode == 0, out.stderr
            assert out.stdout == "data\\n"
        """
    )
    pytester.makefile(".txt", data="data")
    result = pytester.runpytest_subprocess("--permission-audit")
    result.assert_outcomes(passed=1)
    restricted = pytester.runpytest_subprocess()  # the marker alone: the reader is refused
    restricted.assert_outcomes(failed=1)
    restricted.stdout.fnmatch_lines(["*Access to this API has been restricted*data.txt*"])


@pytest.mark.skipif(pytest.version_tuple < (9,), reason="the subtests fixture is pytest 9's")
def test_what_the_plugin_reads_for_the_audit_is_no_access_of_the_test(
    pytester: pytest.Pytester,
) -> None:
    """The ephemeral port range, the temporary folder: read once, in the pytest process."""
    pytester.makepyfile(
        """
        import socket

        def test_binds_a_free_port():
            with socket.socket() as server:
                server.bind(("127.0.0.1", 0))

        def test_with_subtests(subtests):
            for i in range(2):
                with subtests.test(i=i):
                    assert i >= 0
        """
    )
    result = pytester.runpytest_subprocess("--permission-audit-json=audit.json")
    result.assert_outcomes(passed=2)
    tests = json.loads((pytester.path / "audit.json").read_text())["tests"]
    accesses = [a for entry in tests.values() for a in entry["accesses"]]
    assert [(a["permission"], a["resource"]) for a in accesses] == [("Net", "127.0.0.1:0")]
