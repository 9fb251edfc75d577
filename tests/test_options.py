"""Session options: Node's flags, their ini keys, and the ``Session`` they produce.

The installed plugin is switched off (``-p no:permission``) and a conftest
registers the options exactly as the plugin does, so these tests see only
:mod:`pytest_permission.options`.
"""

from __future__ import annotations

import pytest

from pytest_permission.options import Session, session_settings
from pytest_permission.policy import Policy

CONFTEST = """
from pytest_permission.options import add_options, session_settings

def pytest_addoption(parser):
    add_options(parser)

def pytest_configure(config):
    print("SESSION", session_settings(config))
"""

OFF = ("-p", "no:permission")


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    return pytester


def settings(pytester: pytest.Pytester, *args: str) -> Session:
    return session_settings(pytester.parseconfig(*OFF, *args))


def test_help_lists_the_group_and_every_option(project: pytest.Pytester) -> None:
    result = project.runpytest(*OFF, "--help")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "permission: Node.js permission model:",
            "  --permission *restrict every test to the --allow-* grants*",
            "  --allow-fs-read=PATH *grant 'fs.read' to PATH*",
            "  --allow-fs-write=PATH",
            "*grant 'fs.write' to PATH*",
            "  --allow-net=?HOST? *grant network access to HOST*",
            "  --allow-child-process",
            "*grant the 'child' permission",
            "  --allow-worker *grant the 'worker' permission",
            "  --allow-addons *grant the 'addon' permission",
            "  --allow-ffi *grant the 'ffi' permission",
            "  --allow-inspector *grant the 'inspector' permission",
            "  --allow-env=?NAME? *grant the environment variable NAME*",
            "  --allow-wasi *grant the 'wasi' permission*",
            "  --permission-strict *fail a test whose code swallowed a denial*",
            "  --permission-no-implicit",
            "*no implicit grants*",
            "  --permission-audit *enforce nothing*",
            "  --permission-kernel=auto|require|off",
            "  --permission-timeout=SECONDS",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "  permission (bool):*",
            "  permission_allow_fs_read (linelist):",
            "  permission_allow_fs_write (linelist):",
            "  permission_allow_net (linelist):",
            "  permission_allow_child_process (bool):",
            "  permission_allow_worker (bool):",
            "  permission_allow_addons (bool):",
            "  permission_allow_ffi (bool):",
            "  permission_allow_inspector (bool):",
            "  permission_allow_env (linelist):",
            "  permission_allow_wasi (bool):",
            "  permission_strict (bool):",
            "  permission_no_implicit (bool):",
            "  permission_kernel (string):",
            "  permission_timeout (string):",
        ]
    )


def test_defaults(project: pytest.Pytester) -> None:
    assert settings(project) == Session(
        enforce=False,
        policy=Policy(),
        strict=False,
        implicit=True,
        kernel="auto",
        isolation="fork",
        audit=False,
        timeout=None,
    )


def test_command_line(project: pytest.Pytester) -> None:
    data = project.mkdir("data")
    session = settings(
        project,
        "--permission",
        "--allow-fs-read=data",
        "--allow-fs-read=/etc/hostname",
        "--allow-fs-write=out/../log",
        "--allow-net=localhost:8080",
        "--allow-net=*.example.com",
        "--allow-env=HOME",
        "--allow-env=AWS_*",
        "--allow-child-process",
        "--allow-worker",
        "--permission-strict",
        "--permission-no-implicit",
        "--permission-audit",
        "--permission-kernel=off",
        "--permission-timeout=2.5",
    )
    assert (session.enforce, session.strict, session.implicit) == (True, True, False)
    assert (session.audit, session.kernel, session.timeout) == (True, "off", 2.5)
    policy = session.policy
    assert policy.has("fs.read", data / "file")
    assert policy.has("fs.read", "/etc/hostname")
    assert not policy.has("fs.read", "/etc/passwd")
    assert policy.has("fs.write", project.path / "log")
    assert not policy.has("fs.write", data)
    assert policy.has("net", "127.0.0.1:8080")
    assert policy.has("net", "api.example.com:443")
    assert not policy.has("net", "127.0.0.1:80")
    assert policy.has("env", "HOME")
    assert policy.has("env", "AWS_REGION")
    assert not policy.has("env", "USER")
    assert policy.has("child")
    assert policy.has("worker")
    for scope in ("addon", "ffi", "inspector", "wasi"):
        assert not policy.has(scope)


@pytest.mark.parametrize(
    "args",
    [("--allow-net",), ("--allow-net=*",), ("--allow-net=localhost", "--allow-net")],
)
def test_bare_allow_net_grants_every_host(project: pytest.Pytester, args: tuple[str]) -> None:
    policy = settings(project, *args).policy
    assert policy.has("net")
    assert policy.has("net", "example.org:443")


def test_bare_allow_env_and_star_paths_grant_everything(project: pytest.Pytester) -> None:
    policy = settings(project, "--allow-env", "--allow-fs-read=*", "--allow-fs-write=*").policy
    assert policy.has("env")
    assert policy.has("fs")


def test_flag_with_optional_value_after_the_test_paths(project: pytest.Pytester) -> None:
    project.makepyfile(test_a="def test_a(): pass")
    config = project.parseconfig(*OFF, "test_a.py", "--allow-net")
    assert session_settings(config).policy.has("net")
    assert config.args == ["test_a.py"]


def test_relative_command_line_paths_follow_the_invocation_dir(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.makeini("[pytest]\npermission_allow_fs_write = ini-out\n")
    sub = project.mkdir("sub")
    monkeypatch.chdir(sub)
    policy = settings(project, "--rootdir", str(project.path), "--allow-fs-read=data").policy
    assert policy.has("fs.read", sub / "data")
    assert not policy.has("fs.read", project.path / "data")
    # ... while ini paths are relative to the ini file, whatever the current folder.
    assert policy.has("fs.write", project.path / "ini-out")
    assert not policy.has("fs.write", sub / "ini-out")


def test_ini(project: pytest.Pytester) -> None:
    project.makeini(
        """
        [pytest]
        permission = true
        permission_allow_fs_read =
            data
            /etc/hostname
        permission_allow_net =
            localhost
            db.internal:5432
        permission_allow_env = CI
        permission_allow_child_process = true
        permission_allow_ffi = true
        permission_strict = true
        permission_no_implicit = true
        permission_kernel = require
        permission_timeout = 30
        """
    )
    session = settings(project)
    assert (session.enforce, session.strict, session.implicit) == (True, True, False)
    assert (session.audit, session.kernel, session.timeout) == (False, "require", 30.0)
    policy = session.policy
    assert policy.has("fs.read", project.path / "data")
    assert policy.has("fs.read", "/etc/hostname")
    assert policy.has("net", "127.0.0.1:1234")
    assert policy.has("net", "db.internal:5432")
    assert not policy.has("net", "db.internal:80")
    assert policy.has("env", "CI")
    assert policy.has("child")
    assert policy.has("ffi")
    assert not policy.has("worker")


def test_help_has_no_ini_key_that_switches_enforcement_off(project: pytest.Pytester) -> None:
    result = project.runpytest(*OFF, "--help")
    result.stdout.fnmatch_lines(["  --permission-audit *enforce nothing*"])
    result.stdout.no_fnmatch_line("  permission_audit*")


@pytest.mark.parametrize("where", ["ini", "-o"])
def test_the_audit_ini_key_is_a_usage_error(project: pytest.Pytester, where: str) -> None:
    """A configuration file must never switch every marker off: audit runs are command-line only."""
    project.makepyfile(test_a="def test_a(): pass")
    args: tuple[str, ...] = ()
    if where == "ini":
        project.makeini("[pytest]\npermission_audit = true\n")
    else:
        args = ("-o", "permission_audit=true")
    result = project.runpytest(*OFF, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: permission_audit (ini): audit runs are command-line only "
            "(--permission-audit), so that a configuration file can never switch enforcement "
            "off; remove the key and pass --permission-audit to the runs that audit"
        ]
    )
    result.stdout.no_fnmatch_line("*passed*")


def test_inherit_takes_the_grants_under_permission_and_everything_without(
    project: pytest.Pytester,
) -> None:
    """Spec section 6: "inherit" is like the rest of the session (unrestricted without
    --permission)."""
    project.makeini("[pytest]\npermission_allow_fs_read = data\n")
    assert settings(project).inherited == Policy.allow_all()
    session = settings(project, "--permission")
    assert session.inherited == session.policy
    assert session.inherited.has("fs.read", project.path / "data")
    assert not session.inherited.has("net")


def test_ini_star_grants_everything(project: pytest.Pytester) -> None:
    project.makeini("[pytest]\npermission_allow_net = *\npermission_allow_env = *\n")
    policy = settings(project).policy
    assert policy.has("net")
    assert policy.has("env")


def test_command_line_overrides_ini(project: pytest.Pytester) -> None:
    project.makeini(
        """
        [pytest]
        permission_allow_net = ini.example
        permission_allow_fs_read = from-ini
        permission_allow_worker = true
        permission_kernel = off
        permission_timeout = 30
        """
    )
    session = settings(
        project,
        "--allow-net=cli.example",
        "--allow-child-process",
        "--permission-kernel=require",
        "--permission-timeout=0",
    )
    policy = session.policy
    assert policy.has("net", "cli.example:443")
    assert not policy.has("net", "ini.example:443")  # a list given replaces the ini list
    assert policy.has("fs.read", project.path / "from-ini")  # not given: the ini list stays
    assert policy.has("child")
    assert policy.has("worker")  # a switch not given keeps its ini value
    assert session.kernel == "require"
    assert session.timeout is None  # 0 lifts the ini limit


@pytest.mark.parametrize(
    ("args", "ini", "message"),
    [
        (
            ("--allow-net=exa mple",),
            "",
            "--allow-net: net: malformed host 'exa mple'; accepted: 'host', 'host:port', "
            "'[v6]:port', '*.example.com', an IP address, an absolute Unix-socket path, "
            "True or False",
        ),
        (
            (),
            "permission_allow_net = db:99999",
            "permission_allow_net (ini): net: malformed port in 'db:99999': expected 0-65535",
        ),
        (
            ("--allow-fs-read=",),
            "",
            "--allow-fs-read: fs_read has an empty path; accepted: True, '*', False, "
            "a path or a list of str/bytes/os.PathLike paths",
        ),
        (
            ("--allow-env=A=B",),
            "",
            "--allow-env: env entry 'A=B' is not a variable name; accepted: True, '*', False, "
            "a variable name or a list of names ('AWS_*' for a prefix)",
        ),
        (
            ("--permission-kernel=maybe",),
            "",
            "--permission-kernel: invalid value 'maybe'; expected one of auto, require, off",
        ),
        (
            (),
            "permission_kernel = Auto",
            "permission_kernel (ini): invalid value 'Auto'; expected one of auto, require, off",
        ),
        (
            ("--permission-timeout=-1",),
            "",
            "--permission-timeout: invalid value '-1'; expected a number of seconds >= 0 "
            "(0 for no limit), e.g. 30 or 2.5",
        ),
        (
            (),
            "permission_timeout = soon",
            "permission_timeout (ini): invalid value 'soon'; expected a number of seconds >= 0 "
            "(0 for no limit), e.g. 30 or 2.5",
        ),
        (("--permission-timeout=nan",), "", "--permission-timeout: invalid value 'nan'; *"),
        (
            ("--allow-net", "tests"),
            "",
            "--allow-net: 'tests' is a test path, not a value: --allow-net takes its value "
            "after '=' (--allow-net=VALUE); write --allow-net after the test paths to grant "
            "everything",
        ),
        (
            ("--allow-env", "tests/test_a.py::test_a"),
            "",
            "--allow-env: 'tests/test_a.py::test_a' is a test path, not a value: *",
        ),
    ],
)
def test_bad_values_are_usage_errors(
    project: pytest.Pytester, args: tuple[str, ...], ini: str, message: str
) -> None:
    project.makeini(f"[pytest]\n{ini}\n")
    project.mkdir("tests")
    project.path.joinpath("tests", "test_a.py").write_text("def test_a(): pass\n")
    result = project.runpytest(*OFF, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    result.stdout.no_fnmatch_line("*passed*")


def test_usage_error_from_session_settings(project: pytest.Pytester) -> None:
    config = project.parseconfig(*OFF, "--permission-kernel=on")
    with pytest.raises(pytest.UsageError, match="--permission-kernel: invalid value 'on'"):
        session_settings(config)
