"""What the report of a denial adds under its traceback: the grants, the near miss, the fix.

The error's own message stays Node's first sentence and a generic "use
--allow-..." (spec section 4). Under the traceback of a test that failed
with a denial (also one a library wrapped in an error of its own), pytest
prints a ``permission`` section made here:

- the test's grants for the denied scope, as they were enforced: a relative
  marker path with the ``rootdir`` it was joined to, a grant taken over from
  the session or narrowed by ``drop()`` saying so;
- the grant that almost matched, when one did: a relative path meant
  relative to the test's folder, a folder that did not exist when the marker
  was read (it covers that exact path only), a symbolic link leading out of
  a granted folder, the other direction (read vs write), a host name looked
  up where only an address was granted, another port;
- the one change to the marker that allows the access;
- ``--permission-audit``, which finds every grant the test needs.

:func:`swallowed` writes the text of the warning (or, under ``strict``, the
failure) of a test whose code caught denials and went on.

Pure: no pytest. It looks at the file system only to tell a missing folder
and a symbolic link apart (``os.path.isdir``, ``os.path.realpath``).
"""

from __future__ import annotations

import ipaddress
import json
import os
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pytest_permission import hosts, paths, scopes
from pytest_permission.errors import AccessDenied, Denial, chain
from pytest_permission.policy import INHERIT, Policy
from pytest_permission.scopes import Kind, Scope
from pytest_permission.suggest import Places, placed

_BY_PERMISSION = {s.permission: s for s in scopes.GRANTABLE}


@dataclass(frozen=True)
class Context:
    """What one failed test was granted, and where it ran."""

    nodeid: str
    granted: Policy
    """The policy in force when the test failed (after any ``drop()``)."""
    declared: Policy
    """The policy the test started with."""
    written: Mapping[str, object] | None
    """The marker's keywords as written; ``None`` for a test without a marker."""
    inherit: bool
    """The marker's base is ``"inherit"``."""
    rootdir: str
    testdir: str
    tmp_path: str | None = None
    baseline: str | None = None
    """The enforced permission baseline, when its entry stands for the marker (``written``;
    ``None``: the file lacks the test)."""

    def names(self, scope: Scope) -> bool:
        """Whether the marker names the scope (``addons`` names ``addon``)."""
        spellings = {"addon", "addons"} if scope is scopes.ADDON else {scope.keyword}
        return self.written is not None and bool(spellings & set(self.written))

    def from_session(self, scope: Scope) -> bool:
        """Whether the scope's grant is the session's (``--permission``, ``"inherit"``)."""
        if self.written is None:
            return True
        value = self.written.get(scope.keyword or "", INHERIT if self.inherit else None)
        return isinstance(value, str) and value == INHERIT

    def entries(self, scope: Scope) -> list[str]:
        """The scope's entries as the test's grant spells them: the marker's, else the session's."""
        if self.from_session(scope):
            return [rule.text for rule in self.granted.grant(scope).rules]
        value = None if self.written is None else self.written.get(scope.keyword or "")
        if isinstance(value, (str, bytes, os.PathLike)):
            value = [value]
        if not isinstance(value, (list, tuple, set, frozenset)):
            return []
        return [paths.as_str(v) if isinstance(v, (bytes, os.PathLike)) else str(v) for v in value]

    def expand(self, entry: str) -> str:
        """A marker entry with its placeholders replaced, made absolute against ``rootdir``."""
        folders = {"rootdir": self.rootdir, "testdir": self.testdir, "tmp_path": self.tmp_path}
        for name, folder in folders.items():
            if folder is not None:
                entry = entry.replace("{" + name + "}", folder)
        return paths.normalise(entry, self.rootdir)

    def placed(self, path: str) -> str:
        """``path`` with the narrowest placeholder that fits (``{tmp_path}``, ``{testdir}``...)."""
        return placed(path, Places(self.rootdir, self.testdir, "", self.tmp_path))


@dataclass(frozen=True)
class _Fix:
    """The marker entry that allows the access, and the entry as written it replaces."""

    entry: str
    """``""`` for a switch scope, ``"*"`` for the whole scope."""
    replaces: str | None = None


def explain(error: BaseException, context: Context) -> str | None:
    """The ``permission`` section for a test that failed with ``error``; ``None`` if no denial."""
    denial = next((e for e in chain(error) if isinstance(e, AccessDenied)), None)
    scope = None if denial is None else _BY_PERMISSION.get(denial.permission)
    if denial is None or scope is None:
        return None
    resource = denial.resource
    lines = [_granted(scope, context)]
    if _has(context.declared, scope, resource) and not _has(context.granted, scope, resource):
        lines.append("the test started with a grant for it: permission.drop() took it away")
    else:
        near, fix = _near_miss(scope, resource, context)
        lines += near
        lines.append(_change(scope, fix, context))
    lines.append(
        f"every grant this test needs: pytest --permission-audit {shlex.quote(context.nodeid)}"
    )
    return "\n".join(lines)


def swallowed(denials: list[Denial]) -> str:
    """The warning for denials the code under test caught, and what to do about them.

    The usual cause is a library turning the denial into an error of its own
    (urllib's ``URLError``); ``raises_access_denied`` finds the denial inside
    such an error and counts it as expected.
    """
    lines = [f"the code under test swallowed {len(denials)} access denial(s):"]
    lines += [f"  {denial.line()}" for denial in denials]
    if any(denial.raised for denial in denials):
        lines.append(
            "expected, inside an error a library raised? assert it with "
            "pytest_permission.raises_access_denied(...), which finds the denial in the "
            "error's __cause__/__context__; needed? grant it in @pytest.mark.permission(...)"
        )
    if not all(denial.raised for denial in denials):
        lines.append(
            "a variable not granted reads as missing: grant it with env=[...] if the test "
            "needs it"
        )
    return "\n".join(lines)


def _granted(scope: Scope, context: Context) -> str:
    """``granted fs_read: ...`` with where that grant came from."""
    grant = context.granted.grant(scope)
    if scope.kind is Kind.SWITCH:
        shown = "yes" if grant.everything or grant.rules else "no"
    elif grant.everything:
        shown = "everything"
    elif not grant.rules:
        shown = "nothing"
    else:
        shown = ", ".join(
            _path_rule(scope, rule, context) if scope.kind is Kind.PATHS else rule.text
            for rule in grant.rules
        )
    if context.baseline is not None:
        where = "its entry in" if context.written is not None else "the test is not in"
        why = [f"{where} the permission baseline {context.baseline}"]
    elif context.written is None and context.declared == Policy.allow_all():
        why = ["the test has no marker: it started with everything"]
    elif context.written is None:
        why = ["the session's --allow-* options: the test has no marker"]
    elif context.from_session(scope):
        why = ['taken from the session ("inherit")']
    elif not context.names(scope):
        why = [f"the marker does not name {scope.keyword}: every scope it does not name is denied"]
    else:
        why = []
    if context.declared.grant(scope) != grant:
        why.append("narrowed by permission.drop() during the test")
    return f"granted {scope.keyword}: {shown}" + (f" ({'; '.join(why)})" if why else "")


def _path_rule(scope: Scope, rule: paths.PathRule, context: Context) -> str:
    """One path grant as enforced, with what a newcomer could not guess from the marker."""
    text = rule.text
    notes = [
        f"{entry!r} as written: relative marker paths are relative to rootdir {context.rootdir}"
        for entry in context.entries(scope)
        if _relative(entry) and context.expand(entry) == text
    ]
    if rule.prefix is None and os.path.isdir(text):
        notes.append("did not exist when the marker was read: covers that exact path only")
    return text + "".join(f" ({note})" for note in notes)


def _near_miss(scope: Scope, resource: str | None, context: Context) -> tuple[list[str], _Fix]:
    """Sentences about the grant that almost matched, and the fix."""
    if scope.kind is Kind.SWITCH or resource is None:
        return [], _Fix("")
    if scope.kind is Kind.PATHS:
        return _path_miss(scope, resource, context)
    if scope.kind is Kind.HOSTS:
        return _host_miss(resource, context)
    return [], _Fix(resource)


def _path_miss(scope: Scope, resource: str, context: Context) -> tuple[list[str], _Fix]:
    near = []
    other = scopes.FS_WRITE if scope is scopes.FS_READ else scopes.FS_READ
    if context.granted.has(other.name, resource):
        verb = "read" if scope is scopes.FS_READ else "write"
        near.append(f"it is granted to {other.keyword}, but to {verb} it needs {scope.keyword}")
    fix = _Fix(context.placed(resource))
    for rule in context.granted.grant(scope).rules:
        if rule.covers(resource):  # lexically covered, so a link led outside
            real = os.path.realpath(resource)
            near.append(
                f"it lies below the grant {rule.text} but its real path is {real} "
                "(a symbolic link), and the real path is what is checked"
            )
            fix = _Fix(context.placed(real))
        elif rule.prefix is None and _below(resource, rule.text):
            near.append(
                f"{rule.text} did not exist when the marker was read, so it covers that exact "
                "path only, nothing below it: create the folder in a fixture, or grant it with "
                "a trailing '/*' (the folder and everything below it, made yet or not)"
            )
            fix = _respelled(scope, rule.text, context, lambda e: e.rstrip(os.sep) + "/*")
    for entry in context.entries(scope):
        meant = paths.normalise(entry, context.testdir)
        if _relative(entry) and meant != context.expand(entry) and _below(resource, meant):
            near.append(
                f"{entry!r} is relative, so it was joined to rootdir ({context.expand(entry)}),"
                f" not to the test's folder ({meant})"
            )
            spelled = "{testdir}/" + entry.rstrip(os.sep)
            if not paths.parse(meant).covers(resource):
                spelled += "/*"
            fix = _Fix(spelled, entry)
    return near, fix


def _respelled(
    scope: Scope, granted: str, context: Context, change: Callable[[str], str]
) -> _Fix:
    """The entry that was written for the grant ``granted``, changed by ``change``."""
    for entry in context.entries(scope):
        if context.expand(entry) == granted:
            return _Fix(change(entry), entry)
    return _Fix(change(context.placed(granted)))


def _host_miss(resource: str, context: Context) -> tuple[list[str], _Fix]:
    if resource.startswith((os.sep, "@")):  # a Unix socket
        return [], _Fix(context.placed(resource))
    try:
        host, port = hosts.split(resource)
    except ValueError:  # netlink, packet...: no host
        return [f"{resource} is not a host: only net=True grants it"], _Fix("*")
    rules = context.granted.grant(scopes.NET).rules
    near = []
    if _is_address(host):
        if any(not _is_address(r.host) and r.host != "localhost" for r in rules):
            near.append(
                f"{host} is an address: a granted host name allows the addresses it resolved "
                "to only once the test has looked it up (connect by name, or grant the address)"
            )
    else:
        addresses = [r for r in rules if _is_address(r.host) and r.port in (None, port)]
        if host == "localhost" and any(hosts.is_loopback(r.host) for r in addresses):
            near.append(
                "'localhost' is a name, looked up before connecting: a loopback address grant "
                "does not cover the name (while a 'localhost' grant covers the loopback addresses)"
            )
        elif addresses:
            near.append(
                f"{host!r} is a name, looked up before connecting: an address grant does not "
                "cover a name"
            )
    for rule in rules:
        if rule.wildcard and host == rule.host:
            near.append(f"{rule.text} covers the names below {rule.host}, not {rule.host} itself")
        elif not rule.wildcard and rule.port is not None and rule.covers(host, rule.port):
            near.append(f"{rule.text} grants {rule.host} on port {rule.port} only")
    return near, _Fix(hosts.format_endpoint(host, port))


def _change(scope: Scope, fix: _Fix, context: Context) -> str:
    """The one change to the marker that allows the access (and the session's flag)."""
    if scope.kind is Kind.SWITCH or fix.entry == "*":
        value = "True"
    else:
        current = context.entries(scope)
        entries = [fix.entry if e == fix.replaces else e for e in current]
        value = json.dumps(entries if fix.entry in entries else [*entries, fix.entry])
    change = f"{scope.keyword}={value}"
    if context.baseline is not None:
        where = "its entry" if context.written is not None else "an entry for it"
        return (
            f"to allow it: {change} in {where}, which "
            f"pytest --permission-baseline={shlex.quote(context.baseline)} "
            "--permission-baseline-update records"
        )
    if context.written is None:
        text = f'@pytest.mark.permission("inherit", {change}) on the test'
    else:
        text = f"{change} in its @pytest.mark.permission(...)"
    if context.from_session(scope) and scope.flag is not None:
        is_path = scope.kind is Kind.PATHS or fix.entry.startswith("{")  # a Unix socket too
        given = context.expand(fix.entry) if is_path else fix.entry
        flag = scope.flag if value == "True" else f"{scope.flag}={given}"
        text += f", or {flag} for the session"
    return f"to allow it: {text}"


def _has(policy: Policy, scope: Scope, resource: str | None) -> bool:
    """``policy.has()``, false for a resource no grant can name (``AF_INET SOCK_DGRAM``)."""
    try:
        return policy.has(scope.name, resource)
    except ValueError:
        return False


def _relative(entry: str) -> bool:
    return not entry.startswith(("{", os.sep, "*"))


def _below(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
