"""The pytest process trusts nothing the child sends (spec section 6).

Each test attacks the pytest process from a restricted test body, as a
hostile test could, and checks the effect from outside the child: a file
the pytest process would have written, a module in its ``sys.modules``,
the outcome it reported.
"""

from __future__ import annotations

import sys

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="isolation needs os.fork")

PARENT_WATCH = """
import json, os, sys
PARENT = os.getpid()

def pytest_sessionfinish(session):
    if not hasattr(session.config, "workerinput"):
        with open(os.path.join(str(session.config.rootpath), "parent.json"), "w") as f:
            json.dump({"modules": sorted(m for m in sys.modules if m.startswith("evil"))}, f)
"""

EVIL = """
import os
PWNED = os.environ["PWNED_FILE"]

def pwn():
    with open(PWNED, "a") as f:
        f.write(f"{os.getpid()}\\n")

class Pwn:
    def __reduce__(self):
        return (exec, ("import evil_helpers; evil_helpers.pwn()",))

    def __repr__(self):
        return "<Pwn>"
"""


@pytest.fixture
def watched(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A project whose pytest process records what it ran and imported."""
    pytester.makeconftest(PARENT_WATCH)
    pytester.makepyfile(evil_helpers=EVIL)
    monkeypatch.setenv("PWNED_FILE", str(pytester.path / "pwned.txt"))
    return pytester


def _pwned_pids(pytester: pytest.Pytester) -> set[str]:
    path = pytester.path / "pwned.txt"
    return set(path.read_text().split()) if path.exists() else set()


def test_a_property_that_unpickles_to_code_is_only_text(watched: pytest.Pytester) -> None:
    watched.makepyfile(
        """
        import pytest
        from evil_helpers import Pwn

        @pytest.mark.permission()
        def test_property(record_property):
            record_property("payload", Pwn())
        """
    )
    result = watched.runpytest_subprocess("--junitxml=out.xml")
    result.assert_outcomes(passed=1)
    assert _pwned_pids(watched) == set()
    assert 'name="payload" value="&lt;Pwn&gt;"' in (watched.path / "out.xml").read_text()


def test_an_exception_that_unpickles_to_code_is_only_text(watched: pytest.Pytester) -> None:
    watched.makepyfile(
        """
        import pytest
        from evil_helpers import Pwn

        class Boom(Exception):
            def __reduce__(self):
                return Pwn().__reduce__()

        @pytest.mark.permission()
        @pytest.mark.xfail(raises=Boom, reason="raises= is matched in the child")
        def test_xfails():
            raise Boom("xfail")

        @pytest.mark.permission()
        def test_fails():
            raise Boom("fail")
        """
    )
    result = watched.runpytest_subprocess()
    result.assert_outcomes(failed=1, xfailed=1)
    result.stdout.fnmatch_lines(["E *.Boom: fail"])
    assert _pwned_pids(watched) == set()


def test_a_warning_category_is_never_imported_or_run_in_the_pytest_process(
    watched: pytest.Pytester,
) -> None:
    watched.makepyfile(
        evil_warnings="""
        import evil_helpers
        evil_helpers.pwn()  # importing this module runs code

        class EvilWarning(UserWarning):
            pass
        """,
        test_warns="""
        import warnings, pytest
        import evil_helpers

        class CodeWarning(UserWarning):
            def __init__(self, *args):
                evil_helpers.pwn()
                super().__init__(*args)

        @pytest.mark.permission(fs_write=["{rootdir}/pwned.txt"])
        def test_imported_in_the_body():
            import evil_warnings
            warnings.warn("from a module the body imported", evil_warnings.EvilWarning)

        @pytest.mark.permission(fs_write=["{rootdir}/pwned.txt"])
        def test_class_with_code():
            warnings.warn(CodeWarning("from a class with an __init__"))
        """,
    )
    result = watched.runpytest_subprocess()
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([
        "*EvilWarning: from a module the body imported*",
        "*CodeWarning: from a class with an __init__*",
    ])
    parent = (watched.path / "parent.json").read_text()
    assert '"evil_warnings"' not in parent  # the pytest process never imported it
    assert len(_pwned_pids(watched)) == 2  # two children ran the code: the parent did not
    assert result.ret == 0


def test_the_tests_objects_are_formatted_under_enforcement(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        secret="def read():\n    return open(__file__.replace('.py', '.txt')).read()\n"
    )
    pytester.makefile(".txt", secret="the secret")
    pytester.makepyfile(
        """
        import warnings, pytest
        import secret

        class Leaky(Exception):
            def __str__(self):
                return "leaked: " + secret.read()

        class LeakyValue:
            def __repr__(self):
                return "leaked: " + secret.read()

        @pytest.mark.permission()
        def test_exception_text():
            raise Leaky()

        @pytest.mark.permission()
        def test_property_text(record_property):
            record_property("value", LeakyValue())

        @pytest.mark.permission()
        def test_warning_text():
            warnings.warn(Leaky())
        """
    )
    result = pytester.runpytest_subprocess("--junitxml=out.xml", "-rA")
    assert "the secret" not in result.stdout.str()
    assert "the secret" not in (pytester.path / "out.xml").read_text()
    result.stdout.fnmatch_lines(["*FileSystemRead*secret.txt*"])  # each attempt is a denial


def test_a_forged_report_fails_the_test(pytester: pytest.Pytester) -> None:
    """The body finds the report pipe and writes a believable "passed" report on it."""
    pytester.makepyfile(
        """
        import json, os, resource, stat, struct, pytest

        def forge(report):
            payload = json.dumps(report).encode()
            frame = struct.pack("!Q", len(payload)) + payload + bytes(32)
            limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            for fd in range(3, min(limit, 1 << 20)):
                try:
                    if stat.S_ISFIFO(os.fstat(fd).st_mode):
                        os.write(fd, frame)
                except OSError:
                    pass

        @pytest.mark.permission()
        def test_claims_to_pass(request):
            forge({"final": {"$report_type": "TestReport", "nodeid": request.node.nodeid,
                             "location": ["x", 0, "x"], "keywords": {}, "outcome": "passed",
                             "longrepr": None, "when": "call", "sections": [],
                             "duration": 0, "start": 0, "stop": 0, "user_properties": []},
                   "raised": False, "denials": []})
            os._exit(0)

        @pytest.mark.permission()
        def test_garbles_then_fails(request):
            forge({"final": None})
            assert False, "the real failure"
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines([
        "*test_claims_to_pass*",
        "*not one report signed by the plugin*",
    ])
