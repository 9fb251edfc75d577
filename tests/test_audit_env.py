"""env enforcement: variables not granted are invisible, writes are refused.

Each snippet starts with real variables in its environment and looks for
them through ``os.environ``, ``os.getenv``, C ``getenv`` and a child process.
"""

from __future__ import annotations

import os
from typing import Any

CHILD_SEES = (
    "import subprocess, sys\n"
    "def child_sees(name):\n"
    "    code = f'import os; print(os.environ.get({name!r}))'\n"
    "    return subprocess.run([sys.executable, '-c', code], capture_output=True,\n"
    "                          text=True, check=True).stdout.strip()\n"
)


def environment(**extra: str) -> dict[str, str]:
    return {**os.environ, **extra}


def denied(resource: str) -> dict[str, Any]:
    return {"denied": True, "permission": "Env", "resource": resource, "code": "ERR_ACCESS_DENIED"}


def test_variable_not_granted_is_invisible_everywhere(enforced: Any) -> None:
    out = enforced(
        """
        import ctypes, os
        attempt("getenv", lambda: os.getenv("SECRET_TOKEN"))
        attempt("getenvb", lambda: os.getenvb(b"SECRET_TOKEN"))
        attempt("item", lambda: os.environ["SECRET_TOKEN"])
        attempt("listed", lambda: "SECRET_TOKEN" in dict(os.environ))
        libc = ctypes.CDLL(None)
        libc.getenv.restype = ctypes.c_char_p
        attempt("c_getenv", lambda: libc.getenv(b"SECRET_TOKEN"))
        attempt("child", lambda: child_sees("SECRET_TOKEN"))
        attempt("denials", lambda: [(d.permission, d.resource, d.raised) for d in GUARD.denials])
        """,
        {"child": True, "ffi": True},
        setup=CHILD_SEES,
        env=environment(SECRET_TOKEN="hunter2"),
    )
    assert out["getenv"] == {"denied": False, "value": "None"}
    assert out["getenvb"] == {"denied": False, "value": "None"}
    assert out["item"] == {"denied": False, "error": "KeyError", "message": "'SECRET_TOKEN'"}
    assert out["listed"] == {"denied": False, "value": "False"}
    assert out["c_getenv"] == {"denied": False, "value": "None"}
    assert out["child"] == {"denied": False, "value": "'None'"}
    # Each read through os.environ is recorded, though nothing was raised.
    assert out["denials"] == {"denied": False, "value": repr([("Env", "SECRET_TOKEN", False)] * 3)}


def test_reading_a_variable_that_does_not_exist_records_nothing(enforced: Any) -> None:
    out = enforced(
        """
        import os
        attempt("get", lambda: os.environ.get("NEVER_SET_ANYWHERE", "default"))
        attempt("denials", lambda: GUARD.denials)
        """,
    )
    assert out["get"] == {"denied": False, "value": "'default'"}
    assert out["denials"] == {"denied": False, "value": "[]"}


def test_setting_or_deleting_a_variable_not_granted_raises(enforced: Any) -> None:
    out = enforced(
        """
        import os
        attempt("set", lambda: os.environ.__setitem__("NEW_VAR", "x"))
        attempt("setdefault", lambda: os.environ.setdefault("NEW_VAR", "x"))
        attempt("set_hidden", lambda: os.environ.__setitem__("SECRET_TOKEN", "x"))
        attempt("del_hidden", lambda: os.environ.__delitem__("SECRET_TOKEN"))
        attempt("setb", lambda: os.environb.__setitem__(b"NEW_VAR", b"x"))
        attempt("putenv", lambda: os.putenv("NEW_VAR", "x"))
        attempt("unsetenv", lambda: os.unsetenv("SECRET_TOKEN"))
        attempt("python_sees", lambda: "NEW_VAR" in os.environ)
        attempt("child", lambda: child_sees("NEW_VAR"))
        """,
        {"child": True},
        setup=CHILD_SEES,
        env=environment(SECRET_TOKEN="hunter2"),
    )
    for label in ("set", "setdefault", "setb", "putenv"):
        assert out[label] == denied("NEW_VAR"), label
    for label in ("set_hidden", "del_hidden", "unsetenv"):
        assert out[label] == denied("SECRET_TOKEN"), label
    assert out["python_sees"] == {"denied": False, "value": "False"}
    assert out["child"] == {"denied": False, "value": "'None'"}


def test_granted_names_and_prefixes_behave_normally(enforced: Any) -> None:
    out = enforced(
        """
        import os
        attempt("prefix", lambda: os.environ["AWS_REGION"])
        attempt("exact", lambda: os.getenv("APP_MODE"))
        attempt("set", lambda: os.environ.__setitem__("AWS_PROFILE", "ci"))
        attempt("child_set", lambda: child_sees("AWS_PROFILE"))
        attempt("del", lambda: os.environ.__delitem__("APP_MODE"))
        attempt("child_del", lambda: child_sees("APP_MODE"))
        attempt("other", lambda: os.getenv("APP_MODE_EXTRA"))
        attempt("denials", lambda: GUARD.denials)
        """,
        {"env": ["AWS_*", "APP_MODE"], "child": True},
        setup=CHILD_SEES,
        env=environment(AWS_REGION="eu-west-1", APP_MODE="test"),
    )
    assert out["prefix"] == {"denied": False, "value": "'eu-west-1'"}
    assert out["exact"] == {"denied": False, "value": "'test'"}
    assert out["set"] == {"denied": False, "value": "None"}
    assert out["child_set"] == {"denied": False, "value": "'ci'"}
    assert out["del"] == {"denied": False, "value": "None"}
    assert out["child_del"] == {"denied": False, "value": "'None'"}
    assert out["other"] == {"denied": False, "value": "None"}
    assert out["denials"] == {"denied": False, "value": "[]"}


def test_env_true_grants_everything(enforced: Any) -> None:
    out = enforced(
        """
        import os
        attempt("get", lambda: os.environ["SECRET_TOKEN"])
        attempt("set", lambda: os.environ.__setitem__("NEW_VAR", "x"))
        """,
        {"env": True},
        env=environment(SECRET_TOKEN="hunter2"),
    )
    assert out["get"] == {"denied": False, "value": "'hunter2'"}
    assert out["set"] == {"denied": False, "value": "None"}


def test_implicit_variables_stay_visible_unless_implicit_is_off(enforced: Any) -> None:
    code = """
        import os
        attempt("path", lambda: os.environ.get("PATH") == PATH)
        attempt("lc", lambda: os.environ.get("LC_TEST_PERMISSION"))
        attempt("python", lambda: os.environ.get("PYTHONTESTPERMISSION"))
        attempt("ci", lambda: os.environ.get("CI"))
        def pytest_sets():
            os.environ["PYTEST_CURRENT_TEST"] = "t.py::t (call)"
            return os.environ["PYTEST_CURRENT_TEST"]
        attempt("pytest", pytest_sets)
        """
    setup = "import os\nPATH = os.environ['PATH']\n"
    env = environment(LC_TEST_PERMISSION="C", PYTHONTESTPERMISSION="1", CI="true")
    on = enforced(code, setup=setup, env=env)
    assert on["path"] == {"denied": False, "value": "True"}
    assert on["lc"] == {"denied": False, "value": "'C'"}
    assert on["python"] == {"denied": False, "value": "'1'"}
    assert on["ci"] == {"denied": False, "value": "'true'"}
    assert on["pytest"] == {"denied": False, "value": "'t.py::t (call)'"}
    off = enforced(code, setup=setup, env=env, implicit=False)
    assert off["path"] == {"denied": False, "value": "False"}
    assert off["lc"] == {"denied": False, "value": "None"}
    assert off["python"] == {"denied": False, "value": "None"}
    assert off["ci"] == {"denied": False, "value": "None"}
    # pytest itself sets this one around every phase: never hidden.
    assert off["pytest"] == {"denied": False, "value": "'t.py::t (call)'"}


def test_drop_hides_a_granted_variable_from_then_on(enforced: Any) -> None:
    out = enforced(
        """
        import os
        attempt("before", lambda: os.environ["APP_TOKEN"])
        GUARD.drop("env", "APP_TOKEN")
        attempt("has", lambda: GUARD.has("env", "APP_TOKEN"))
        attempt("after", lambda: os.getenv("APP_TOKEN"))
        attempt("child", lambda: child_sees("APP_TOKEN"))
        attempt("set", lambda: os.environ.__setitem__("APP_TOKEN", "again"))
        attempt("denials", lambda: [(d.resource, d.raised) for d in GUARD.denials])
        """,
        {"env": ["APP_TOKEN"], "child": True},
        setup=CHILD_SEES,
        env=environment(APP_TOKEN="t0k3n"),
    )
    assert out["before"] == {"denied": False, "value": "'t0k3n'"}
    assert out["has"] == {"denied": False, "value": "False"}
    assert out["after"] == {"denied": False, "value": "None"}
    assert out["child"] == {"denied": False, "value": "'None'"}
    assert out["set"] == denied("APP_TOKEN")
    assert out["denials"] == {
        "denied": False,
        "value": repr([("APP_TOKEN", False), ("APP_TOKEN", True)]),
    }


TOOLS_READ = {
    "PYTEST_THEME": "monokai",  # pytest, colouring an assertion diff
    "PYTEST_THEME_MODE": "dark",
    "PYTEST_VERSION": "9.2.0",  # set by pytest for the session
    "PYTEST_XDIST_WORKER": "gw1",  # set by pytest-xdist for each worker
    "PYTEST_XDIST_WORKER_COUNT": "2",
    "PYTEST_XDIST_TESTRUNUID": "abc",
    "HYPOTHESIS_STORAGE_DIRECTORY": "/tmp/h",  # hypothesis, while a @given test runs
    "HYPOTHESIS_NO_TRACEBACK_TRIM": "1",
}


def test_what_pytest_and_its_plugins_read_for_the_test_is_implicit(enforced: Any) -> None:
    """Hidden, each read was a swallowed denial the test never made; under ``-W error`` the
    warning replaced the test's real failure. Still hidden with ``implicit=False``, and
    coverage's subprocess switch stays hidden (it would make subprocesses write data)."""
    code = f"""
        import os
        for name in {sorted(TOOLS_READ)!r} + ["COVERAGE_PROCESS_START"]:
            attempt(name, lambda: os.environ.get(name))
        print("@@" + json.dumps({{"denials": [d.resource for d in GUARD.denials]}}), flush=True)
        """
    env = environment(**TOOLS_READ, COVERAGE_PROCESS_START="/x/.coveragerc")
    on = enforced(code, env=env)
    for name, value in TOOLS_READ.items():
        assert on[name] == {"denied": False, "value": repr(value)}
    assert on["COVERAGE_PROCESS_START"] == {"denied": False, "value": "None"}
    assert on.results["denials"] == ["COVERAGE_PROCESS_START"]
    off = enforced(code, env=env, implicit=False)
    assert all(off[name] == {"denied": False, "value": "None"} for name in TOOLS_READ)
