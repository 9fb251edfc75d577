"""How a restricted test's failure reads, in real pytest sessions, and that nothing else alarms.

A denial's traceback ends in the test's frame, as a ``PermissionError``'s
does; under it the ``permission`` section says what was granted and what to
change, and applying that change makes the test pass. Swallowed denials
point at ``raises_access_denied``. Variables that pytest and its plugins
read for the test, pseudo-file names and pdb's start-up files raise no
false alarm, even under ``-W error``.
"""

from __future__ import annotations

import re
import sys

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="isolation needs os.fork")


def literal(lines: list[str]) -> list[str]:
    """fnmatch patterns for ``lines``: ``[`` matches itself, ``*`` stays a wildcard."""
    return [line.replace("[", "[[]") for line in lines]


def failure_block(lines: list[str], test: str) -> list[str]:
    """The traceback part of one test's failure: from its header to its sections."""
    start = next(i for i, line in enumerate(lines) if re.match(rf"^_+ {test} _+$", line))
    block = []
    for line in lines[start + 1 :]:
        if re.match(r"^(_{3,} |-{3,} |={3,} )", line):
            break
        block.append(line)
    return block


@pytest.mark.parametrize("style", ["auto", "long", "short"])
def test_a_denials_traceback_reads_like_a_permission_errors(
    pytester: pytest.Pytester, style: str
) -> None:
    """The same test raising ``PermissionError`` itself differs only in the exception lines."""
    source = """
        import pytest

        @pytest.mark.permission()
        def test_it():
            name = "/etc/hostname"
            {statement}
        """
    blocks = []
    for statement in ("open(name)", 'raise PermissionError(13, "Permission denied", name)'):
        pytester.makepyfile(test_it=source.format(statement=statement))
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--tb={style}")
        result.assert_outcomes(failed=1)
        blocks.append(failure_block(result.outlines, "test_it"))
    denied, plain = blocks
    assert len(denied) == len(plain), "\n".join(denied)
    differing = [(a, b) for a, b in zip(denied, plain, strict=True) if a != b]
    assert [" ".join(a.split()).split(":")[0] for a, _ in differing] == [
        "> open(name)" if style != "short" else "open(name)",
        "E pytest_permission.AccessDenied",
        *(["test_it.py"] if style != "short" else []),  # short has no location line
    ]
    if style != "short":
        assert differing[-1] == ("test_it.py:6: AccessDenied", "test_it.py:6: PermissionError")
    assert not any("pytest_permission" in line for line in denied if not line.startswith("E"))


def test_the_report_says_what_to_change_and_the_change_works(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\n")
    tests = pytester.mkdir("tests")
    (tests / "data").mkdir()
    (tests / "data" / "rows.csv").write_text("city\nOslo\n")
    test_file = tests / "test_app.py"
    test_file.write_text(
        "from pathlib import Path\n"
        "import pytest\n\n"
        '@pytest.mark.permission(fs_read=["data"])\n'
        "def test_reads():\n"
        '    assert (Path(__file__).parent / "data" / "rows.csv").read_text()\n'
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    root = pytester.path
    result.stdout.fnmatch_lines(
        literal(
            [
                "E   *AccessDenied: Access to this API has been restricted. FileSystemRead was "
                f"denied for '{tests}/data/rows.csv'. Use @pytest.mark.permission(fs_read=[...]) "
                "or --allow-fs-read to manage permissions.",
                "*- permission -*",
                f"granted fs_read: {root}/data ('data' as written: relative marker paths are "
                f"relative to rootdir {root})",
                f"'data' is relative, so it was joined to rootdir ({root}/data), not to the test's "
                f"folder ({tests}/data)",
                'to allow it: fs_read=["{testdir}/data"] in its @pytest.mark.permission(...)',
                "every grant this test needs: "
                "pytest --permission-audit tests/test_app.py::test_reads",
            ]
        )
    )
    test_file.write_text(test_file.read_text().replace('["data"]', '["{testdir}/data"]'))
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_a_denial_a_library_wrapped_is_explained_too(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import urllib.request
        import pytest

        @pytest.mark.permission(net=["127.0.0.1:8080"])
        def test_fetch():
            urllib.request.urlopen("http://localhost:8080/")
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        literal(
            [
                "E   *URLError: <urlopen error Access to this API has been restricted. *",
                "*- permission -*",
                "granted net: 127.0.0.1:8080",
                "'localhost' is a name, looked up before connecting: *",
                'to allow it: net=["127.0.0.1:8080", "localhost:8080"] in its *',
            ]
        )
    )


def test_a_swallowed_denial_points_at_raises_access_denied(pytester: pytest.Pytester) -> None:
    source = """
        import urllib.error, urllib.request
        import pytest
        from pytest_permission import raises_access_denied

        @pytest.mark.permission(strict=True)
        def test_offline():
            with {expect}:
                urllib.request.urlopen("http://127.0.0.1:8080/")
        """
    pytester.makepyfile(test_it=source.format(expect="pytest.raises(urllib.error.URLError)"))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        literal(
            [
                "the code under test swallowed 1 access denial(s):",
                "  Net 127.0.0.1:8080 at *",
                "expected, inside an error a library raised? assert it with "
                "pytest_permission.raises_access_denied(...), which finds the denial in the "
                "error's __cause__/__context__; needed? grant it in @pytest.mark.permission(...)",
                "(strict: swallowed denials fail the test)",
            ]
        )
    )
    pytester.makepyfile(test_it=source.format(expect='raises_access_denied("net")'))
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_breakpoint_under_inspector_reads_pdbrc_without_a_denial(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pdb reads ``~/.pdbrc`` and ``./.pdbrc``: implicit once ``inspector`` is granted.

    The kernel layer is off: it reads its own rules, without these files.
    """
    home = pytester.mkdir("home")
    (home / ".pdbrc").write_text("p 'home rc'\n")
    (pytester.path / ".pdbrc").write_text("continue\n")  # so pdb never waits for input
    monkeypatch.setenv("HOME", str(home))
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.permission(inspector=True, strict=True)
        def test_debugs():
            breakpoint()
        """
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-s", "--permission-kernel=off", "-W", "error"
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(literal(["'home rc'"]))
    result.stdout.no_fnmatch_line("*permission denials*")


def test_hypothesis_under_tox_like_columns_and_w_error_reports_the_real_failure(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ``SwallowedDenialWarning`` replaces the failure: not for ``COLUMNS``/``LINES``
    (tox exports them) nor for the ``<unknown>`` source file hypothesis makes CPython
    look for on every ``@given`` method."""
    pytest.importorskip("hypothesis")
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.setenv("LINES", "40")
    pytester.makepyfile(
        test_h="""
        import pytest
        from hypothesis import given, strategies as st

        @pytest.mark.permission()
        @given(st.integers())
        def test_function(x):
            assert x < 10

        class TestMethods:
            @pytest.mark.permission()
            @given(st.integers())
            def test_method(self, x):
                assert x < 10
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        literal(
            [
                "E       assert 10 < 10",
                "E       Failing test case: test_function(",
                "E           x=10,",
                "E       assert 10 < 10",
                "E       Failing test case: test_method(",
                "FAILED *::test_function - assert 10 < 10",
                "FAILED *::TestMethods::test_method - assert 10 < 10",
            ]
        )
    )
    result.stdout.no_fnmatch_line("*SwallowedDenialWarning*")
    result.stdout.no_fnmatch_line("*<unknown>*")


def test_an_audit_suggests_no_grant_for_the_made_up_file_name(pytester: pytest.Pytester) -> None:
    pytest.importorskip("hypothesis")
    pytester.makepyfile(
        test_h="""
        from hypothesis import given, strategies as st

        class TestMethods:
            @given(st.integers())
            def test_method(self, x):
                assert isinstance(x, int)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--permission-audit")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*permission audit*",
            "test_h.py::TestMethods::test_method",
            "    @pytest.mark.permission()",
        ]
    )
    result.stdout.no_fnmatch_line("*<unknown>*")


def test_the_theme_pytest_reads_to_colour_a_diff_is_no_denial(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTEST_THEME", "monokai")
    monkeypatch.setenv("PYTEST_THEME_MODE", "dark")
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.permission()
        def test_diff():
            assert [1, 2, 3] == [1, 2, 4]
        """
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--color=yes", "-W", "error", "-rf"
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(literal(["*FAILED*test_diff*assert [1, 2, 3] == [1, 2, 4]*"]))
    result.stdout.no_fnmatch_line("*SwallowedDenialWarning*")
    result.stdout.no_fnmatch_line("*permission denials*")


INHERIT_SUITE = """
    import socket, subprocess, sys
    import pytest
    from pytest_permission import raises_access_denied

    @pytest.mark.permission("inherit", net=False)
    def test_offline(tmp_path):
        (tmp_path / "out.txt").write_text("written")
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        with raises_access_denied("net"):
            socket.create_connection(("127.0.0.1", 9))
    """


def test_inherit_without_permission_is_everything_but_what_the_marker_takes_away(
    pytester: pytest.Pytester,
) -> None:
    """Spec section 6: a session without ``--permission`` is unrestricted."""
    pytester.makepyfile(INHERIT_SUITE)
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_inherit_under_permission_is_the_allow_options(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(INHERIT_SUITE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--permission")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        literal(
            [
                "E   *AccessDenied: *FileSystemWrite was denied for '*out.txt'*",
                'granted fs_write: nothing (taken from the session ("inherit"))',
            ]
        )
    )


def test_markers_lists_every_keyword_and_alias(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--markers")
    result.stdout.fnmatch_lines(
        literal(
            [
                "@pytest.mark.permission(base='none', *, fs_read=..., *addon=... (or addons=...), "
                "*wasi=..., openssl_store=..., strict=None, implicit=None, timeout=None, "
                "isolation=None): *"
            ]
        )
    )


SUMMARY_SUITE = """
    import pytest
    from pytest_permission import raises_access_denied

    @pytest.mark.permission()
    def test_expects_it():
        with raises_access_denied("fs.read"):
            open("/etc/hostname")

    @pytest.mark.permission()
    def test_fails_on_it():
        open("/etc/passwd")
    """


@pytest.mark.parametrize("quiet", [False, True])
def test_the_denial_summary_under_q_lists_only_failing_tests(
    pytester: pytest.Pytester, quiet: bool
) -> None:
    pytester.makepyfile(test_s=SUMMARY_SUITE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *(["-q"] if quiet else []))
    result.assert_outcomes(passed=1, failed=1)
    section = result.outlines[
        next(i for i, line in enumerate(result.outlines) if "permission denials" in line) :
    ]
    expected = [] if quiet else ["test_s.py::test_expects_it", "  FileSystemRead /etc/hostname *"]
    result.stdout.fnmatch_lines(
        literal(
            [
                "*permission denials*",
                *expected,
                "test_s.py::test_fails_on_it",
                "  FileSystemRead /etc/passwd *",
            ]
        )
    )
    assert any("test_expects_it" in line for line in section) is not quiet


def test_under_q_no_section_when_every_denial_was_expected(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_s=SUMMARY_SUITE.split("@pytest.mark.permission()\n    def test_f")[0])
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*permission denials*")
