"""Assertion helpers for denials: ``pytest.raises`` that also checks Node's three fields.

A denial is fully described by ``code``, ``permission`` and ``resource``; these
helpers compare all three, accept either spelling of a permission
(``"FileSystemRead"`` or ``"fs.read"``), and compare resources in canonical
form (normalised absolute paths, canonical ``host:port``) so that a test does
not fail over ``tmp_path / "x"`` versus ``"/tmp/.../x"``. The same check works
on a Node.js child's error parsed from JSON, whose fields have the same names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import TracebackType

import pytest

from pytest_permission import audit, hosts, paths, scopes
from pytest_permission.errors import CODE, AccessDenied, chain

__all__ = ["RaisesAccessDenied", "assert_access_denied", "raises_access_denied"]

_FS_PERMISSIONS = frozenset(
    s.permission for s in scopes.ALL_SCOPES if s.kind in (scopes.Kind.PATHS, scopes.Kind.BOTH_FS)
)
_PERMISSIONS = frozenset(s.permission for s in scopes.ALL_SCOPES)


def _permission_field(permission: str) -> str:
    """The error's ``permission`` field for either spelling ('FileSystemRead' or 'fs.read').

    A misspelt expectation raises at once rather than failing every match.
    """
    if not isinstance(permission, str):
        raise TypeError(
            f"permission must be a str such as 'fs.read' or 'FileSystemRead', "
            f"got {type(permission).__name__}"
        )
    if permission in _PERMISSIONS:
        return permission
    try:
        return scopes.by_name(permission).permission
    except ValueError:
        known = ", ".join(repr(s.permission) for s in scopes.ALL_SCOPES)
        names = ", ".join(repr(s.name) for s in scopes.ALL_SCOPES)
        raise ValueError(
            f"unknown permission {permission!r}; expected one of {known} or a scope name: {names}"
        ) from None


def _canonical(permission: object, resource: object) -> object:
    """The form two resources are compared in, decided by the denied permission.

    Paths (every fs resource, any bytes/``os.PathLike``, any absolute str) are
    normalised lexically as the error reports them; net endpoints are brought
    to ``host:port`` form; anything else (env names, API names) compares as is.
    """
    if resource is None:
        return None
    is_path = isinstance(resource, (bytes, os.PathLike)) or (
        isinstance(resource, str)
        and (permission in _FS_PERMISSIONS or os.path.isabs(resource))
    )
    if is_path:
        return paths.normalise(paths.as_str(resource))
    if permission == scopes.NET.permission and isinstance(resource, str):
        try:
            return hosts.format_endpoint(*hosts.split(resource))
        except ValueError:
            return resource
    return resource


def _field(error: object, name: str) -> object:
    if isinstance(error, Mapping):
        return error.get(name)
    return getattr(error, name, None)


def _block(what: str, expected: object, got: object) -> str:
    return f"AccessDenied {what} mismatch\n  expected: {expected!r}\n  got:      {got!r}"


def _mismatches(error: object, permission: str | None, resource: object) -> list[str]:
    """One "expected ... got ..." block per field that differs."""
    code = _field(error, "code")
    if code != CODE:  # not a denial at all: its other fields mean nothing
        return [_block("code", CODE, code) + f"\n  error:    {error!r}"]
    blocks = []
    got_permission = _field(error, "permission")
    if permission is not None and got_permission != permission:
        blocks.append(_block("permission", permission, got_permission))
    if resource is not None:
        # Canonicalised by the permission actually denied, which is always there.
        expected = _canonical(got_permission, resource)
        got = _canonical(got_permission, _field(error, "resource"))
        if got != expected:
            blocks.append(_block("resource", expected, got))
    return blocks


def assert_access_denied(
    error: object, permission: str | None = None, resource: object = None
) -> None:
    """Raise ``AssertionError`` unless ``error`` is an access denial with these fields.

    ``error`` may be an exception, any object with ``code``/``permission``/
    ``resource`` attributes, or a mapping with those keys (a Node.js error
    parsed from JSON). ``None`` for ``permission``/``resource`` checks nothing.
    An ``AssertionError``, as ``unittest`` and ``numpy.testing`` helpers raise,
    so ``except Exception`` and non-pytest runners see a plain failed check.
    """
    __tracebackhide__ = True
    expected_permission = None if permission is None else _permission_field(permission)
    blocks = _mismatches(error, expected_permission, resource)
    if blocks:
        raise AssertionError("\n".join(blocks))


class RaisesAccessDenied:
    """The context manager :func:`raises_access_denied` returns."""

    def __init__(self, permission: str | None, resource: object) -> None:
        self.permission = None if permission is None else _permission_field(permission)
        self.resource = resource
        self.excinfo: pytest.ExceptionInfo[AccessDenied] | None = None

    def __enter__(self) -> pytest.ExceptionInfo[AccessDenied]:
        self.excinfo = pytest.ExceptionInfo.for_later()
        return self.excinfo

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool:
        __tracebackhide__ = True
        if exc_val is None:
            pytest.fail("DID NOT RAISE AccessDenied")
        denial = _denial_in(exc_val)
        if denial is None or exc_tb is None:
            return False  # as pytest.raises: any other exception propagates
        assert self.excinfo is not None, "__exit__ without __enter__"
        self.excinfo.fill_unfilled((type(denial), denial, denial.__traceback__ or exc_tb))
        blocks = _mismatches(denial, self.permission, self.resource)
        if blocks:
            raise AssertionError("\n".join(blocks))
        guard = audit.active()
        if guard is not None:
            guard.expect(denial)
        return True


def _denial_in(error: BaseException) -> AccessDenied | None:
    """``error`` or, when a library raised an error of its own, the denial that caused it."""
    return next((found for found in chain(error) if isinstance(found, AccessDenied)), None)


def raises_access_denied(
    permission: str | None = None, resource: object = None
) -> RaisesAccessDenied:
    """``pytest.raises(AccessDenied)`` that also checks ``code``, ``permission`` and ``resource``.

    ``permission`` is the error's field (``"FileSystemRead"``) or the scope
    (``"fs.read"``); ``resource`` compares as a normalised absolute path where
    it is one and as ``host:port`` for net. Returns pytest's ``ExceptionInfo``,
    of the denial.

    An error a library raised because of a denial (urllib's ``URLError``,
    requests' ``ConnectionError``) counts when the denial is in its
    ``__cause__``/``__context__`` chain, and that denial is then expected, not
    swallowed.

    Failures follow ``pytest.raises``: no exception at all is pytest's
    ``Failed: DID NOT RAISE AccessDenied``; a denial whose fields differ is an
    ``AssertionError`` naming each field expected and got (as ``pytest.raises``
    does when ``match=`` does not match); any other exception propagates.
    """
    return RaisesAccessDenied(permission, resource)
