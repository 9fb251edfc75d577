"""``raises_access_denied`` and ``assert_access_denied``: what passes, and how failures read.

The inner tests raise ``AccessDenied`` themselves: these helpers only read
the error's fields, whatever raised it. Failures are checked in pytest's
own output, since reading like ``pytest.raises`` is the point.
"""

from __future__ import annotations

import pytest

from pytest_permission import AccessDenied, assert_access_denied, raises_access_denied


def run(pytester: pytest.Pytester, source: str) -> pytest.RunResult:
    pytester.makepyfile(
        "from pytest_permission import AccessDenied, assert_access_denied, raises_access_denied\n"
        "import json, os, pathlib, pytest, types\n" + source
    )
    return pytester.runpytest("-p", "no:cacheprovider")


def test_matching_denials_pass(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
def test_any_denial():
    with raises_access_denied() as excinfo:
        raise AccessDenied("Net", "example.com:443")
    assert excinfo.type is AccessDenied
    assert excinfo.value.resource == "example.com:443"
    assert excinfo.match("restricted")

def test_permission_by_field_or_scope(tmp_path):
    for permission in ("FileSystemRead", "fs.read"):
        with raises_access_denied(permission, tmp_path / "x"):
            raise AccessDenied("FileSystemRead", str(tmp_path / "x"))

def test_paths_compare_normalised(tmp_path):
    denied = str(tmp_path / "a" / "b")
    for expected in (tmp_path / "a" / "b", f"{tmp_path}/a/./c/../b/", os.fsencode(denied)):
        with raises_access_denied("fs.write", expected):
            raise AccessDenied("FileSystemWrite", denied)

def test_relative_path_is_relative_to_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with raises_access_denied("fs.read", "data.txt"):
        raise AccessDenied("FileSystemRead", str(tmp_path / "data.txt"))

def test_hosts_compare_canonical():
    with raises_access_denied("net", "LOCALHOST.:8080"):
        raise AccessDenied("Net", "localhost:8080")
    with raises_access_denied("Net", "[0:0::1]:443"):
        raise AccessDenied("Net", "[::1]:443")

def test_unix_socket_and_other_resources(tmp_path):
    with raises_access_denied("net", tmp_path / "s.sock"):
        raise AccessDenied("Net", str(tmp_path / "s.sock"))
    with raises_access_denied("env", "HOME"):
        raise AccessDenied("Env", "HOME")
    with raises_access_denied("child", pathlib.Path("/usr/bin/../bin/ls")):
        raise AccessDenied("ChildProcess", "/usr/bin/ls")
    with raises_access_denied("addons"):
        raise AccessDenied("Addon", "/site/x.so")

def test_a_caught_subclass_of_permission_error():
    with pytest.raises(PermissionError):
        with raises_access_denied("fs.read"):
            raise PermissionError(13, "plain EACCES")

def test_assert_on_exception_object_and_dict(tmp_path):
    assert_access_denied(AccessDenied("FileSystemRead", str(tmp_path)), "fs.read", tmp_path)
    node = json.loads(
        '{"code": "ERR_ACCESS_DENIED", "permission": "FileSystemWrite", "resource": "/tmp/x"}'
    )
    assert_access_denied(node, "FileSystemWrite", "/tmp//x")
    assert_access_denied(node)
    fields = types.SimpleNamespace(code="ERR_ACCESS_DENIED", permission="Net", resource="h:1")
    assert_access_denied(fields, "net", "H:1")
""",
    )
    result.assert_outcomes(passed=8)


def test_did_not_raise(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
def test_nothing():
    with raises_access_denied("fs.read"):
        pass
""",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            '>       with raises_access_denied("fs.read"):',
            "E       Failed: DID NOT RAISE AccessDenied",
            "FAILED test_did_not_raise.py::test_nothing - Failed: DID NOT RAISE AccessDenied",
        ]
    )


def test_permission_mismatch(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
def test_wrong_permission():
    with raises_access_denied("fs.read"):
        raise AccessDenied("Net", "example.com:443")
""",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            # The denial itself is shown first, so its origin is in the report.
            "E *pytest_permission.AccessDenied: Access to this API has been *",
            "During handling of the above exception, another exception occurred:",
            "E       AssertionError: AccessDenied permission mismatch",
            "E         expected: 'FileSystemRead'",
            "E         got:      'Net'",
        ]
    )


def test_resource_mismatch_shows_normalised_paths(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
def test_wrong_resource():
    with raises_access_denied("FileSystemWrite", "/data/./out/"):
        raise AccessDenied("FileSystemWrite", "/data/other")
""",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "E       AssertionError: AccessDenied resource mismatch",
            "E         expected: '/data/out'",
            "E         got:      '/data/other'",
        ]
    )


def test_both_mismatches_are_reported(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
def test_both():
    with raises_access_denied("net", "db:5432"):
        raise AccessDenied("Env", "DB_HOST")
""",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "E       AssertionError: AccessDenied permission mismatch",
            "E         expected: 'Net'",
            "E         got:      'Env'",
            "E       AccessDenied resource mismatch",
            "E         expected: 'db:5432'",
            "E         got:      'DB_HOST'",
        ]
    )


def test_other_exceptions_propagate(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
def test_other():
    with raises_access_denied("fs.read"):
        raise FileNotFoundError("no such file")
""",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["E *FileNotFoundError: no such file"])
    result.stdout.no_fnmatch_line("*DID NOT RAISE*")


def test_a_library_error_caused_by_a_denial_counts(pytester: pytest.Pytester) -> None:
    # urllib turns the denial into URLError: the helper finds the denial in the
    # chain and marks it expected; pytest.raises(URLError) alone leaves it
    # swallowed, so that test gets the warning
    pytester.makepyfile(
        """
        import urllib.error, urllib.request, pytest
        from pytest_permission import raises_access_denied

        @pytest.mark.permission()
        def test_helper():
            with raises_access_denied("net", resource="127.0.0.1:8080") as info:
                urllib.request.urlopen("http://127.0.0.1:8080/")
            assert info.value.resource == "127.0.0.1:8080"

        @pytest.mark.permission()
        def test_library_error_only():
            with pytest.raises(urllib.error.URLError):
                urllib.request.urlopen("http://127.0.0.1:8080/")

        @pytest.mark.permission()
        def test_wrong_resource():
            with raises_access_denied("net", resource="127.0.0.1:9"):
                urllib.request.urlopen("http://127.0.0.1:8080/")
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=2, failed=1, warnings=1)
    result.stdout.fnmatch_lines(
        [
            "E *AccessDenied resource mismatch",
            "*warnings summary*",
            "*::test_library_error_only",
            "*SwallowedDenialWarning: the code under test swallowed 1 access denial(s):",
            "*Net 127.0.0.1:8080 at *",
        ]
    )


def test_assert_access_denied_failures(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
def test_node_child_wrong_resource():
    node = {"code": "ERR_ACCESS_DENIED", "permission": "FileSystemRead", "resource": "/etc/x"}
    assert_access_denied(node, "fs.read", "/etc/y")

def test_not_a_denial():
    assert_access_denied({"code": "ENOENT", "permission": None}, "fs.read")

def test_plain_permission_error():
    assert_access_denied(PermissionError(13, "denied"))
""",
    )
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(
        [
            '>       assert_access_denied(node, "fs.read", "/etc/y")',
            "E       AssertionError: AccessDenied resource mismatch",
            "E         expected: '/etc/y'",
            "E         got:      '/etc/x'",
            '>       assert_access_denied({"code": "ENOENT", "permission": None}, "fs.read")',
            "E       AssertionError: AccessDenied code mismatch",
            "E         expected: 'ERR_ACCESS_DENIED'",
            "E         got:      'ENOENT'",
            "E         error:    {'code': 'ENOENT', 'permission': None}",
            "E       AssertionError: AccessDenied code mismatch",
            "E         expected: 'ERR_ACCESS_DENIED'",
            "E         got:      None",
            "E         error:    PermissionError(13, 'denied')",
        ]
    )


@pytest.mark.parametrize("call", [raises_access_denied, assert_access_denied])
def test_unknown_permission_is_refused_at_once(call: object) -> None:
    """A misspelt expectation is a mistake in the test, not a failed match."""
    with pytest.raises(ValueError, match=r"^unknown permission 'fs.reed'; expected one of"):
        if call is raises_access_denied:
            raises_access_denied("fs.reed")
        else:
            assert_access_denied(AccessDenied("FileSystemRead", "/x"), "fs.reed")
    with pytest.raises(TypeError, match=r"^permission must be a str"):
        raises_access_denied(42)  # type: ignore[arg-type]


def test_excinfo_is_pytest_exception_info() -> None:
    with raises_access_denied("fs.read", "/x") as excinfo:
        raise AccessDenied("FileSystemRead", "/x")
    assert isinstance(excinfo, pytest.ExceptionInfo)
    assert excinfo.value.permission == "FileSystemRead"
    assert excinfo.value.code == "ERR_ACCESS_DENIED"


def test_mismatches_are_assertion_errors_and_no_denial_is_pytests_own_failure() -> None:
    """As ``unittest``/``numpy.testing`` helpers and ``pytest.raises(match=...)``: an
    ``AssertionError`` (an ``Exception``, unlike pytest's ``Failed``) with the fields."""
    with pytest.raises(AssertionError) as info:
        assert_access_denied(AccessDenied("FileSystemRead", "/x"), "fs.read", "/y")
    assert str(info.value) == (
        "AccessDenied resource mismatch\n  expected: '/y'\n  got:      '/x'"
    )
    try:
        assert_access_denied({"code": "ENOENT"})
    except Exception as exc:  # what a non-pytest runner or a retry loop would catch
        assert "AccessDenied code mismatch" in str(exc)
    with (
        pytest.raises(AssertionError, match=r"^AccessDenied permission mismatch\n"),
        raises_access_denied("net"),
    ):
        raise AccessDenied("FileSystemRead", "/x")
    with pytest.raises(pytest.fail.Exception, match=r"^DID NOT RAISE AccessDenied$"), (
        raises_access_denied()
    ):
        pass
