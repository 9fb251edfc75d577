"""The permission model: grants per scope, ``has()`` and ``drop()``.

Pure and immutable: a :class:`Policy` never changes, ``dropped()`` returns a
new one, so that the semantics can be tested as a table (and compared with
Node 26, see ``tests/conformance_table.py``) without installing anything.
The only side effect is ``os.stat`` at grant time, Node's rule for deciding
whether a grant names a directory.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Generic, TypeVar

from pytest_permission import hosts, paths, scopes
from pytest_permission.scopes import Kind, Scope

INHERIT = "inherit"
"""Marker value (and base) meaning: take this from the session policy."""


@dataclass(frozen=True)
class NameRule:
    """One ``env`` grant: a variable name, or a prefix when it ends in ``*``."""

    text: str

    def covers(self, name: str) -> bool:
        if self.text.endswith("*"):
            return name.startswith(self.text[:-1])
        return name == self.text

    @staticmethod
    def any_covers(rules: Iterable[NameRule]) -> Callable[[str], bool]:
        """Whether any of ``rules`` covers a name, as one set look-up and one
        ``startswith``: for checking a whole environment at once."""
        exact = {rule.text for rule in rules if not rule.text.endswith("*")}
        prefixes = tuple(rule.text[:-1] for rule in rules if rule.text.endswith("*"))
        return lambda name: name in exact or name.startswith(prefixes)


R = TypeVar("R", paths.PathRule, hosts.HostRule, NameRule)


@dataclass(frozen=True)
class Grant(Generic[R]):
    """What one scope allows: everything, or the listed rules."""

    everything: bool = False
    rules: tuple[R, ...] = ()

    def without(self, text: str) -> Grant[R]:
        """Node's drop of one resource: that exact grant goes, a ``*`` stays."""
        return replace(self, rules=tuple(r for r in self.rules if r.text != text))


NOTHING: Grant = Grant()  # type: ignore[type-arg]
EVERYTHING: Grant = Grant(everything=True)  # type: ignore[type-arg]

PATH_FORMS = "True, '*', False, a path or a list of str/bytes/os.PathLike paths"
NAME_FORMS = "True, '*', False, a variable name or a list of names ('AWS_*' for a prefix)"
SWITCH_FORMS = "True or False"


@dataclass(frozen=True)
class Policy:
    """Grants for every scope; absent scopes are denied (Node's default)."""

    grants: Mapping[str, Grant] = field(default_factory=dict)  # type: ignore[type-arg]

    def __hash__(self) -> int:
        """Equal policies hash alike, so what is built for one can be kept for the next."""
        found: int | None = self.__dict__.get("_hash")
        if found is None:
            found = hash(tuple(sorted(self.grants.items())))
            object.__setattr__(self, "_hash", found)  # immutable: worked out once
        return found

    # -- construction -------------------------------------------------------

    @classmethod
    def deny_all(cls) -> Policy:
        return cls()

    @classmethod
    def allow_all(cls) -> Policy:
        return cls({s.name: EVERYTHING for s in scopes.GRANTABLE})

    @classmethod
    def from_keywords(
        cls,
        values: Mapping[str, object],
        *,
        base: Policy | None = None,
        session: Policy | None = None,
        root: str | None = None,
    ) -> Policy:
        """A policy from marker keywords (``fs_read=[...]``, ``net=False``…).

        Scopes not named keep ``base`` (default: nothing). ``"inherit"`` takes
        a scope from ``session``. Relative paths are joined to ``root``
        (default: the current directory). Raises ``ValueError``/``TypeError``
        naming the keyword and the accepted forms.
        """
        grants = dict((base or cls()).grants)
        for keyword, value in values.items():
            scope = scopes.by_keyword(keyword)
            if scope is None:
                raise ValueError(
                    f"unknown keyword {keyword!r}; expected one of "
                    + ", ".join(scopes.keywords())
                )
            if isinstance(value, str) and value == INHERIT:
                inherited = (session or cls()).grants.get(scope.name)
                if inherited is None:
                    grants.pop(scope.name, None)
                else:
                    grants[scope.name] = inherited
                continue
            grants[scope.name] = parse_grant(scope, value, root)
        return cls({k: v for k, v in grants.items() if v.everything or v.rules})

    @classmethod
    def from_node_args(cls, args: Sequence[str], *, root: str | None = None) -> Policy:
        """A policy from Node's flags (``--allow-fs-read=/tmp``, ``--allow-net``…).

        Each flag may repeat; a flag with no value grants the whole scope.
        """
        by_flag = {s.flag: s for s in scopes.GRANTABLE}
        by_flag["--allow-addons"] = scopes.ADDON
        values: dict[str, list[str] | bool] = {}
        for arg in args:
            flag, eq, value = arg.partition("=")
            if flag == "--permission":
                continue
            scope = by_flag.get(flag)
            if scope is None or scope.keyword is None:
                known = ", ".join(map(str, by_flag))
                raise ValueError(f"unknown flag {arg!r}; expected one of {known}")
            current = values.get(scope.keyword, [])
            if not eq or scope.kind is Kind.SWITCH or current is True:
                values[scope.keyword] = True
            else:
                assert isinstance(current, list)
                current.append(value)
                values[scope.keyword] = current
        return cls.from_keywords(values, root=root)

    # -- queries ------------------------------------------------------------

    def grant(self, scope: Scope) -> Grant:  # type: ignore[type-arg]
        return self.grants.get(scope.name, NOTHING)

    def has(self, scope: str, resource: object = None) -> bool:
        """Node's ``process.permission.has(scope, reference)``."""
        target = scopes.by_name(scope)
        if target.kind is Kind.BOTH_FS:
            return self.grant(scopes.FS_READ).everything and self.grant(scopes.FS_WRITE).everything
        grant = self.grant(target)
        if grant.everything:
            return True
        if target.kind is Kind.SWITCH:
            return bool(grant.rules)
        if resource is None or resource == "" or resource == b"":
            return False
        if target.kind is Kind.PATHS:
            path = paths.normalise(paths.as_str(resource))
            return paths.covered(grant.rules, path)
        text = _text(resource, target)
        if target.kind is Kind.HOSTS:
            host, port = hosts.split(text)
            return any(rule.covers(host, port) for rule in grant.rules)
        return any(rule.covers(text) for rule in grant.rules)

    def dropped(self, scope: str, resource: object = None) -> Policy:
        """The policy after Node's ``process.permission.drop(scope, reference)``.

        A resource removes exactly the grant that names it (so dropping a
        child of a granted folder, or a path under ``*``, changes nothing);
        no resource, or a scope without resources, removes the scope whole.
        """
        target = scopes.by_name(scope)
        targets = (scopes.FS_READ, scopes.FS_WRITE) if target.kind is Kind.BOTH_FS else (target,)
        grants = dict(self.grants)
        for one in targets:
            if resource is None or one.kind is Kind.SWITCH:
                grants.pop(one.name, None)
                continue
            grant = self.grant(one)
            if one.kind is Kind.PATHS:
                text = paths.normalise(paths.as_str(resource))
            elif one.kind is Kind.HOSTS:
                text = hosts.parse(_text(resource, one)).text
            else:
                text = _text(resource, one)
            remaining = grant.without(text)
            if remaining.everything or remaining.rules:
                grants[one.name] = remaining
            else:
                grants.pop(one.name, None)
        return Policy(grants)

    def resolved(self) -> Policy:
        """The same policy with path grants resolved through symbolic links.

        The enforcer checks real paths against this, so a link inside a
        granted folder cannot lead outside it, and a grant spelled through a
        link (``/var`` → ``/private/var``) still works.
        """
        grants = dict(self.grants)
        for scope in (scopes.FS_READ, scopes.FS_WRITE):
            grant = self.grant(scope)
            if grant.rules:
                grants[scope.name] = replace(
                    grant, rules=tuple(dict.fromkeys(paths.resolved(r) for r in grant.rules))
                )
        return Policy(grants)

    def describe(self) -> dict[str, object]:
        """Marker keywords for this policy: ``True`` or the grant texts."""
        out: dict[str, object] = {}
        for scope in scopes.GRANTABLE:
            grant = self.grant(scope)
            if grant.everything or (scope.kind is Kind.SWITCH and grant.rules):
                out[scope.keyword or scope.name] = True
            elif grant.rules:
                out[scope.keyword or scope.name] = [r.text for r in grant.rules]
        return out


def _text(resource: object, scope: Scope) -> str:
    if isinstance(resource, bytes):
        return resource.decode()
    if not isinstance(resource, str):
        raise TypeError(
            f"resource for {scope.name!r} must be a str, got {type(resource).__name__}"
        )
    return resource


def _items(scope: Scope, value: object, forms: str) -> list[object]:
    if isinstance(value, (str, bytes, os.PathLike)):
        return [value]
    if isinstance(value, Iterable) and not isinstance(value, Mapping):
        return list(value)
    raise TypeError(
        f"{scope.keyword}={value!r} ({type(value).__name__}) is not a valid grant; "
        f"accepted: {forms}"
    )


def parse_grant(scope: Scope, value: object, root: str | None = None) -> Grant:  # type: ignore[type-arg]
    """The grant a marker value gives one scope; errors name the accepted forms."""
    if value is True or (isinstance(value, str) and value == "*"):
        return EVERYTHING
    if value is False or value is None:
        return NOTHING
    if scope.kind is Kind.SWITCH:
        raise TypeError(f"{scope.keyword}={value!r} is not valid; accepted: {SWITCH_FORMS}")
    if scope.kind is Kind.PATHS:
        rules: list[paths.PathRule] = []
        for item in _items(scope, value, PATH_FORMS):
            where = f"{scope.keyword} entry {item!r}"
            try:
                text = paths.as_str(item, where) if item is not None else ""
            except TypeError as exc:
                raise TypeError(f"{exc}; accepted: {PATH_FORMS}") from None
            if text == "*":
                return EVERYTHING
            if not text:
                raise ValueError(f"{scope.keyword} has an empty path; accepted: {PATH_FORMS}")
            rules.append(paths.parse(text, root))
        return Grant(rules=tuple(dict.fromkeys(rules)))
    if scope.kind is Kind.HOSTS:
        host_rules: list[hosts.HostRule] = []
        for item in _items(scope, value, hosts.ACCEPTED):
            if not isinstance(item, str):
                raise TypeError(f"net entry {item!r} is not a str; accepted: {hosts.ACCEPTED}")
            if item.strip() == "*":
                return EVERYTHING
            try:
                host_rules.append(hosts.parse(item))
            except ValueError as exc:
                raise ValueError(f"net: {exc}") from None
        return Grant(rules=tuple(dict.fromkeys(host_rules)))
    names: list[NameRule] = []
    for item in _items(scope, value, NAME_FORMS):
        if not isinstance(item, str) or not item or "=" in item:
            raise ValueError(f"env entry {item!r} is not a variable name; accepted: {NAME_FORMS}")
        if item == "*":
            return EVERYTHING
        names.append(NameRule(item))
    return Grant(rules=tuple(dict.fromkeys(names)))
