"""``@pytest.mark.permission``: its arguments, their checks and the settings they give.

A marker is checked twice with the same code: at collection by
:func:`validate` (no fixture exists yet, so placeholders expand to a dummy
folder), and before the call by :func:`settings_for`, with the test's real
folders. Either way a bad marker is a ``ValueError`` naming the keyword and
the accepted forms, never a crash and never a silently ignored typo.
"""

from __future__ import annotations

import difflib
import math
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_permission import hints, scopes
from pytest_permission.plan import ISOLATIONS, Isolation
from pytest_permission.policy import INHERIT, Policy
from pytest_permission.scopes import Kind

NONE = "none"
BASES = (NONE, INHERIT)
PLACEHOLDERS = ("tmp_path", "rootdir", "testdir", "basetemp", "tempdir")
_SETTINGS = ("strict", "implicit", "timeout", "isolation")
BASELINE_ENTRY = pytest.StashKey[tuple["pytest.Mark | None", str]]()
"""On a test restricted by an enforced baseline: the marker its entry stands for (``None``
for a test the file lacks), and the file."""


def _marker_line() -> str:
    """The ``pytest --markers`` line, every keyword from the scope table (aliases too)."""
    names = {keyword: scopes.by_keyword(keyword) for keyword in scopes.keywords()}

    def spelled(keyword: str) -> str:
        aliases = [a for a, s in names.items() if s is names[keyword] and a != keyword]
        return f"{keyword}=..." + "".join(f" (or {alias}=...)" for alias in aliases)

    keywords = [spelled(k) for k, scope in names.items() if scope and scope.keyword == k]
    settings = ", ".join(f"{name}=None" for name in _SETTINGS)
    return (
        f"permission(base='none', *, {', '.join(keywords)}, {settings}): run the test in a "
        "forked child with only these permissions (Node.js permission model)"
    )


MARKER_LINE = _marker_line()
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


@dataclass(frozen=True)
class TestSettings:
    """What one test's marker asks for; ``None`` leaves it to the session options."""

    __test__ = False  # a library class, not a test class for pytest to collect

    policy: Policy
    strict: bool | None
    implicit: bool | None
    timeout: float | None
    isolation: Isolation | None = None


def _accepted_keywords() -> list[str]:
    return ["base", *scopes.keywords(), *_SETTINGS]


def _check_keyword(keyword: str) -> None:
    accepted = _accepted_keywords()
    if keyword in accepted:
        return
    close = difflib.get_close_matches(keyword, accepted, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"unknown keyword {keyword!r}{hint}; accepted: {', '.join(accepted)}")


def _base(marker: pytest.Mark) -> str:
    if len(marker.args) > 1:
        raise ValueError(
            f"takes at most one positional argument, the base 'none' or 'inherit'; "
            f"got {len(marker.args)}: {', '.join(map(repr, marker.args))}"
        )
    if marker.args and "base" in marker.kwargs:
        raise ValueError("the base is given twice, as positional argument and as base=")
    base = marker.args[0] if marker.args else marker.kwargs.get("base", NONE)
    if not isinstance(base, str) or base not in BASES:
        raise ValueError(f"base {base!r} is not valid; accepted: 'none' or 'inherit'")
    return base


def _expand(text: str, where: str, folders: Mapping[str, Path]) -> str:
    """``text`` with its placeholders replaced, and a leading ``~`` with the home folder."""
    if text == "~" or text.startswith("~/"):
        text = str(Path.home()) + text[1:]

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in PLACEHOLDERS:
            known = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
            raise ValueError(
                f"{where} {text!r} has an unknown placeholder {match.group(0)!r}; accepted: {known}"
            )
        folder = folders.get(name)
        if folder is None:
            raise ValueError(f"{where} {text!r} needs {match.group(0)}, which this test lacks")
        return str(folder)

    return _PLACEHOLDER.sub(one, text)


def _expanded(keyword: str, value: object, folders: Mapping[str, Path]) -> object:
    """A path or host grant with placeholders expanded in its str entries.

    Anything else goes through unchanged, for the policy to accept or reject
    with its own message.
    """
    scope = scopes.by_keyword(keyword)
    if scope is None or scope.kind not in (Kind.PATHS, Kind.HOSTS):
        return value
    where = f"{keyword} entry"
    if isinstance(value, str):
        return value if value == INHERIT else _expand(value, where, folders)
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_expand(v, where, folders) if isinstance(v, str) else v for v in value]
    return value


def _bool_setting(marker: pytest.Mark, keyword: str) -> bool | None:
    value = marker.kwargs.get(keyword)
    if value is not None and not isinstance(value, bool):
        raise ValueError(f"{keyword}={value!r} is not valid; accepted: True, False or None")
    return value


def _timeout(marker: pytest.Mark) -> float | None:
    value = marker.kwargs.get("timeout")
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(
            f"timeout={value!r} is not valid; accepted: a positive number of seconds or None"
        )
    return float(value)


def _isolation(marker: pytest.Mark) -> Isolation | None:
    value = marker.kwargs.get("isolation")
    if value is None:
        return None
    if value not in ISOLATIONS:
        raise ValueError(
            f"isolation={value!r} is not valid; accepted: 'fork' (a forked child, for good, "
            "with the kernel layer), 'inline' (the pytest process, audit layer only) or None"
        )
    return value  # type: ignore[no-any-return]


def settings_for(
    marker: pytest.Mark,
    *,
    session: Policy,
    rootdir: Path,
    testdir: Path,
    tmp_path: Path | None,
    basetemp: Path | None = None,
) -> TestSettings:
    """The settings a ``permission`` marker gives one test.

    Scopes not named are denied (base ``"none"``) or taken from ``session``
    (base ``"inherit"``); relative paths are relative to ``rootdir``.
    Raises ``ValueError`` naming the keyword and the accepted forms.
    """
    base = _base(marker)
    for keyword in marker.kwargs:
        _check_keyword(keyword)
    folders = {"rootdir": rootdir, "testdir": testdir, "tempdir": Path(tempfile.gettempdir())}
    if tmp_path is not None:
        folders["tmp_path"] = tmp_path
    if basetemp is not None:
        folders["basetemp"] = basetemp
    grants = {
        keyword: _expanded(keyword, value, folders)
        for keyword, value in marker.kwargs.items()
        if keyword != "base" and keyword not in _SETTINGS
    }
    try:
        policy = Policy.from_keywords(
            grants,
            base=session if base == INHERIT else None,
            session=session,
            root=str(rootdir),
        )
    except TypeError as exc:
        raise ValueError(str(exc)) from None
    return TestSettings(
        policy=policy,
        strict=_bool_setting(marker, "strict"),
        implicit=_bool_setting(marker, "implicit"),
        timeout=_timeout(marker),
        isolation=_isolation(marker),
    )


def validate(marker: pytest.Mark) -> None:
    """Check a marker at collection, before any fixture (``tmp_path``) exists.

    Placeholders expand to a dummy existing folder, so only the marker's own
    mistakes are reported.
    """
    dummy = Path(tempfile.gettempdir())
    settings_for(
        marker, session=Policy(), rootdir=dummy, testdir=dummy, tmp_path=dummy, basetemp=dummy
    )


def hint_for(
    item: pytest.Item, failure: BaseException, *, declared: Policy, granted: Policy
) -> str | None:
    """The report's ``permission`` section for a test that failed with a denial.

    ``declared`` is the policy the test started with, ``granted`` the one in
    force when it failed; see :mod:`pytest_permission.hints`.
    """
    mark = item.get_closest_marker("permission")
    baseline = None
    if mark is None and BASELINE_ENTRY in item.stash:
        mark, baseline = item.stash[BASELINE_ENTRY]
    tmp_path = getattr(item, "funcargs", {}).get("tmp_path")
    context = hints.Context(
        nodeid=item.nodeid,
        granted=granted,
        declared=declared,
        written=None if mark is None else dict(mark.kwargs),
        inherit=mark is not None and _base(mark) == INHERIT,
        rootdir=str(item.config.rootpath),
        testdir=str(Path(item.path).parent),
        tmp_path=None if tmp_path is None else str(tmp_path),
        baseline=baseline,
    )
    return hints.explain(failure, context)
