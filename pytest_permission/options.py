"""Session options: Node's ``--permission``/``--allow-*`` flags and their ini keys.

Every flag has an ini key named after it (``--allow-fs-read`` is
``permission_allow_fs_read``) so that a project can pin its session policy
in its configuration file. The command line wins: a flag given replaces the
ini value (for lists too, so the command line never has to undo the file).
The grant flags come from the scope table, so a new scope gets its flag,
its ini key and its help line at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar, cast

import pytest

from pytest_permission import recorded, scopes
from pytest_permission.plan import ISOLATIONS, Isolation
from pytest_permission.policy import Policy
from pytest_permission.scopes import Kind, Scope
from pytest_permission.suggest import Grants

Kernel = Literal["auto", "require", "off"]
KERNEL_MODES: tuple[Kernel, ...] = ("auto", "require", "off")
T = TypeVar("T")

_VALUE_HELP = {  # metavar, command-line help, ini help
    Kind.PATHS: (
        "PATH",
        "grant {what} to PATH (a folder covers what is below it; a trailing '*' is a prefix; "
        "'*' is everything); repeatable",
        "paths granted {what}, one per line ('*' for every path; relative to the ini file)",
    ),
    Kind.HOSTS: (
        "HOST",
        "grant network access to HOST ('host', 'host:port', '[v6]:port', '*.example.com', "
        "a Unix-socket path); without a value every host; repeatable",
        "hosts granted network access, one per line ('*' for every host)",
    ),
    Kind.NAMES: (
        "NAME",
        "grant the environment variable NAME ('AWS_*' for a prefix); "
        "without a value every variable; repeatable",
        "environment variables granted, one per line ('*' for every one, 'AWS_*' for a prefix)",
    ),
}


@dataclass(frozen=True)
class Session:
    """What the session options ask for, read once at configure time."""

    enforce: bool
    """``--permission``: restrict every test, not only marked ones."""
    policy: Policy
    """The grants of ``--allow-*``: what ``--permission`` restricts every test to."""
    strict: bool
    """``--permission-strict``: a swallowed denial fails the test."""
    implicit: bool
    """False with ``--permission-no-implicit``: no implicit grants."""
    kernel: Kernel
    isolation: Isolation
    """``--permission-isolation``: where a restricted body runs (``fork`` or ``inline``)."""
    audit: bool
    """``--permission-audit``: record, do not enforce."""
    timeout: float | None
    """Seconds a forked test may run; ``None`` for no limit."""
    audit_json: Path | None = None
    """``--permission-audit-json``: where to write the audit (implies ``audit``)."""
    baseline: Path | None = None
    """``--permission-baseline``: the capability baseline to check (or update)."""
    baseline_update: bool = False
    """``--permission-baseline-update``: record the baseline instead of checking it."""
    baseline_enforce: bool = False
    """``--permission-baseline-enforce``: restrict every test to its baseline entry."""
    recorded: Mapping[str, Grants] | None = None
    """The baseline's entries by node id, when checked or enforced (validated)."""

    @property
    def inherited(self) -> Policy:
        """What ``"inherit"`` takes: like the rest of this session (spec section 6).

        Under ``--permission``, the ``--allow-*`` grants; without it the session
        is unrestricted, so everything: ``("inherit", net=False)`` is then
        "anything but the network".
        """
        return self.policy if self.enforce else Policy.allow_all()

    @property
    def every_test(self) -> bool:
        """Every test is restricted: ``--permission``, or an enforced baseline."""
        return self.enforce or self.baseline_enforce

    @property
    def observe(self) -> bool:
        """Audit or baseline check/update: every test is observed, none is restricted."""
        return self.audit or (self.baseline is not None and not self.baseline_enforce)


def _ini_name(flag: str) -> str:
    """The ini key of a flag: ``--allow-fs-read`` is ``permission_allow_fs_read``."""
    name = flag.lstrip("-").replace("-", "_")
    return name if name.startswith("permission") else f"permission_{name}"


def _grant_flags() -> list[Scope]:
    return [s for s in scopes.GRANTABLE if s.flag is not None]


def add_options(parser: pytest.Parser) -> None:
    """Register the ``permission`` option group and its ini keys."""
    group = parser.getgroup("permission", "permission: Node.js permission model")

    def switch(flag: str, help: str) -> None:
        group.addoption(flag, action="store_true", dest=_ini_name(flag), help=help)
        parser.addini(_ini_name(flag), f"{help} (as {flag})", type="bool", default=False)

    switch(
        "--permission",
        "restrict every test to the --allow-* grants (markers override); "
        "without it only marked tests and tests using the 'permission' fixture are restricted",
    )
    for scope in _grant_flags():
        flag = cast(str, scope.flag)
        name = _ini_name(flag)
        if scope.kind is Kind.SWITCH:
            python = "" if scope.gates_python else " (no Python counterpart: has() only)"
            switch(flag, f"grant the '{scope.name}' permission{python}")
            continue
        what = f"'{scope.name}'"
        metavar, text, ini_text = (t.format(what=what) for t in _VALUE_HELP[scope.kind])
        optional = {} if scope.kind is Kind.PATHS else {"nargs": "?", "const": "*"}
        group.addoption(
            flag, action="append", dest=name, metavar=metavar, default=None, help=text,
            **optional,
        )
        parser.addini(name, f"{ini_text} (as {flag})", type="linelist")
    switch("--permission-strict", "fail a test whose code swallowed a denial (default: warn)")
    switch(
        "--permission-no-implicit",
        "no implicit grants (Python installation, sys.path code, system data files)",
    )
    # Command line only: these turn enforcement off for the whole run, a choice
    # to make per run (a CI job), not a setting that silently disables markers.
    group.addoption(
        "--permission-audit", action="store_true", dest="permission_audit",
        help="enforce nothing: record what each test touches and print the marker it needs",
    )
    group.addoption(
        "--permission-audit-json", dest="permission_audit_json", metavar="FILE", default=None,
        help="write the audit (each test's accesses and suggested marker) to FILE as JSON; "
        "implies --permission-audit",
    )
    group.addoption(
        "--permission-baseline", dest="permission_baseline", metavar="FILE", default=None,
        help="enforce nothing; fail each test that uses a capability the baseline FILE does "
        "not list for it",
    )
    group.addoption(
        "--permission-baseline-update", dest="permission_baseline_update", action="store_true",
        help="record each test's capabilities into the --permission-baseline FILE instead",
    )
    add_enforce_option(group)
    group.addoption(
        "--permission-kernel", dest="permission_kernel", metavar="auto|require|off",
        default=None,
        help="kernel layer (Landlock, seccomp) on Linux: auto (where supported, default), "
        "require (fail the session without it), off",
    )
    parser.addini(
        "permission_kernel", "kernel layer: auto, require or off (as --permission-kernel)",
        default="auto",
    )
    group.addoption(
        "--permission-isolation", dest="permission_isolation", metavar="fork|inline",
        default=None,
        help="where a restricted test's body runs: fork (a forked child, the default: "
        "drops are for good, the kernel layer applies) or inline (the pytest process, "
        "the audit layer only, no fork: fastest)",
    )
    parser.addini(
        "permission_isolation", "where restricted bodies run: fork or inline "
        "(as --permission-isolation)", default="fork",
    )
    group.addoption(
        "--permission-timeout", dest="permission_timeout", metavar="SECONDS", default=None,
        help="kill a restricted test's forked child after SECONDS (0: no limit, the default)",
    )
    parser.addini(
        "permission_timeout",
        "seconds after which a restricted test is killed (as --permission-timeout)",
        default="",
    )


@dataclass(frozen=True)
class _Setting:
    """One option's effective value and where it came from, for error messages."""

    value: object
    origin: str
    """``--flag`` or ``ini_key (ini)``."""
    root: Path
    """What relative paths in it are relative to."""


def _setting(config: pytest.Config, flag: str) -> _Setting:
    """The command-line value if the flag was given, else the ini value.

    Relative command-line paths are relative to the invocation directory (as
    Node's are to its working directory), relative ini paths to the ini file.
    """
    name = _ini_name(flag)
    given = config.getoption(name)
    if given is not None and given is not False:
        return _Setting(given, flag, config.invocation_params.dir)
    ini_dir = config.inipath.parent if config.inipath is not None else config.rootpath
    return _Setting(config.getini(name), f"{name} (ini)", ini_dir)


def _check_not_test_path(setting: _Setting, flag: str) -> None:
    """Refuse ``--allow-net tests``: argparse took the test path as the host.

    A flag with an optional value swallows the next argument when it is
    written with a space; Node and Deno only take the value after ``=``.
    """
    if not setting.origin.startswith("--") or not isinstance(setting.value, list):
        return
    for value in setting.value:
        path = setting.root / value.partition("::")[0]
        if path.is_file() or path.is_dir():
            raise pytest.UsageError(
                f"{flag}: {value!r} is a test path, not a value: {flag} takes its value "
                f"after '=' ({flag}=VALUE); write {flag} after the test paths to grant everything"
            )


def _policy(config: pytest.Config) -> Policy:
    """The session policy, one scope at a time so that an error names its option."""
    policy = Policy()
    for scope in _grant_flags():
        flag = cast(str, scope.flag)
        setting = _setting(config, flag)
        if not setting.value:
            continue
        if scope.kind is not Kind.PATHS:
            _check_not_test_path(setting, flag)
        try:
            policy = Policy.from_keywords(
                {cast(str, scope.keyword): setting.value}, base=policy, root=str(setting.root)
            )
        except (ValueError, TypeError) as exc:
            raise pytest.UsageError(f"{setting.origin}: {exc}") from None
    return policy


def _parsed(config: pytest.Config, flag: str, parse: Callable[[str], T], forms: str) -> T:
    setting = _setting(config, flag)
    text = str(setting.value).strip()
    try:
        return parse(text)
    except ValueError:
        raise pytest.UsageError(
            f"{setting.origin}: invalid value {text!r}; expected {forms}"
        ) from None


def _kernel(text: str) -> Kernel:
    if text not in KERNEL_MODES:
        raise ValueError(text)
    return text


def _isolation(text: str) -> Isolation:
    if text not in ISOLATIONS:
        raise ValueError(text)
    return text


def _compatible(kernel: Kernel, isolation: Isolation) -> None:
    """``inline`` runs the body in the pytest process, where no kernel rule can go."""
    if kernel == "require" and isolation == "inline":
        raise pytest.UsageError(
            "--permission-kernel=require and --permission-isolation=inline: the kernel "
            "layer restricts a whole process for good, so it needs the forked child; "
            "inline runs the test body in the pytest process with the audit layer only. "
            "Choose one (fork is the default isolation)"
        )


def _timeout(text: str) -> float | None:
    if not text:
        return None
    seconds = float(text)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(text)
    return seconds or None


def session_settings(config: pytest.Config) -> Session:
    """The session's permission settings; ``pytest.UsageError`` for a bad value."""

    def flag(name: str) -> bool:
        return bool(_setting(config, name).value)

    _refuse_the_audit_key(config)
    audit_json = _file(config, "permission_audit_json")
    baseline = _file(config, "permission_baseline")
    update = bool(config.getoption("permission_baseline_update"))
    if update and baseline is None:
        raise pytest.UsageError("--permission-baseline-update needs --permission-baseline=FILE")
    enforce_file = _enforce_baseline(config, baseline, update, audit_json)
    kernel = _parsed(config, "--permission-kernel", _kernel, "one of auto, require, off")
    isolation = _parsed(config, "--permission-isolation", _isolation, "one of fork, inline")
    _compatible(kernel, isolation)
    return Session(
        enforce=flag("--permission"),
        policy=_policy(config),
        strict=flag("--permission-strict"),
        implicit=not flag("--permission-no-implicit"),
        kernel=kernel,
        isolation=isolation,
        audit=bool(config.getoption("permission_audit")) or audit_json is not None,
        timeout=_parsed(
            config, "--permission-timeout", _timeout,
            "a number of seconds >= 0 (0 for no limit), e.g. 30 or 2.5",
        ),
        audit_json=audit_json,
        baseline=baseline,
        baseline_update=update,
        baseline_enforce=enforce_file,
        recorded=None if baseline is None or update else _recorded(baseline),
    )


def _refuse_the_audit_key(config: pytest.Config) -> None:
    """A usage error for a configuration file (or ``-o``) that still sets ``permission_audit``.

    The key once existed and switched every marker off in every run; pytest
    itself would only warn about it now that it is unknown. pytest 9 keeps
    the raw keys, ``-o`` ones included, in ``_inicfg``; pytest 8 in
    ``inicfg`` and ``_override_ini``.
    """
    given = set(vars(config).get("_inicfg", vars(config).get("inicfg", {})))
    given |= {o.partition("=")[0].strip() for o in getattr(config, "_override_ini", ())}
    if "permission_audit" in given:
        raise pytest.UsageError(
            "permission_audit (ini): audit runs are command-line only (--permission-audit), "
            "so that a configuration file can never switch enforcement off; remove the key "
            "and pass --permission-audit to the runs that audit"
        )


def _file(config: pytest.Config, name: str) -> Path | None:
    """A file option's path, relative to the invocation directory."""
    value = config.getoption(name)
    return None if not value else config.invocation_params.dir / value



# -- --permission-baseline-enforce ---------------------------------------------------------


def add_enforce_option(group: pytest.OptionGroup) -> None:
    """The flag that turns a recorded baseline into each test's policy.

    A mode of ``--permission-baseline`` as ``--permission-baseline-update``
    is, so command line only: as an ini key it would change what
    ``--permission-baseline=FILE`` does in the job that only checks it.
    """
    group.addoption(
        "--permission-baseline-enforce", dest="permission_baseline_enforce",
        action="store_true",
        help="restrict every test to what the --permission-baseline FILE records for it "
        "(markers and the 'permission' fixture still win; a test not in FILE gets nothing, "
        "or with --permission the --allow-* grants)",
    )


def _enforce_baseline(
    config: pytest.Config, baseline: Path | None, update: bool, audit_json: Path | None
) -> bool:
    """Whether the baseline is enforced; a usage error for a combination that contradicts it."""
    if not config.getoption("permission_baseline_enforce"):
        return False
    if baseline is None:
        raise pytest.UsageError("--permission-baseline-enforce needs --permission-baseline=FILE")
    clash = (
        "--permission-baseline-update" if update
        else "--permission-audit-json" if audit_json is not None
        else "--permission-audit" if config.getoption("permission_audit")
        else None
    )
    if clash is not None:
        raise pytest.UsageError(
            f"--permission-baseline-enforce restricts every test, {clash} enforces nothing "
            "and records what tests use: give one of them"
        )
    return True


def _recorded(path: Path) -> dict[str, Grants]:
    """The baseline's entries, each checked as the marker it stands for."""
    if not path.exists():
        raise pytest.UsageError(
            f"--permission-baseline: {path} does not exist; "
            "record it first with --permission-baseline-update"
        )
    try:
        return recorded.load(path)
    except ValueError as exc:
        raise pytest.UsageError(f"--permission-baseline: {exc}") from None
