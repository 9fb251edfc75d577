"""``AccessDenied`` and the record every denial leaves behind.

The error subclasses ``PermissionError`` so that code which already copes
with a real ``EACCES`` degrades the same way under a policy.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from pytest_permission import scopes

CODE = "ERR_ACCESS_DENIED"


def _hint(permission: str) -> str:
    """How to grant a permission, in marker and command-line form."""
    for scope in scopes.GRANTABLE:
        if scope.permission == permission and scope.keyword and scope.flag:
            value = {
                scopes.Kind.PATHS: "[...]",
                scopes.Kind.HOSTS: "[...]",
                scopes.Kind.NAMES: "[...]",
            }.get(scope.kind, "True")
            return (
                f"Use @pytest.mark.permission({scope.keyword}={value}) "
                f"or {scope.flag} to manage permissions."
            )
    return "Use @pytest.mark.permission(...) or --allow-* options to manage permissions."


class AccessDenied(PermissionError):
    """An operation the active policy does not grant, as Node's ERR_ACCESS_DENIED."""

    __module__ = "pytest_permission"  # its public name, in reports and pickles alike
    code = CODE

    def __init__(self, permission: str, resource: str | None = None, message: str | None = None):
        if message is None:
            what = f" {permission} was denied for {resource!r}." if resource else ""
            message = f"Access to this API has been restricted.{what} {_hint(permission)}"
        super().__init__(message)
        # errno without strerror keeps str() as the message itself.
        self.errno = errno.EACCES
        self.permission = permission
        self.resource = resource

    def __reduce__(self) -> tuple[type[AccessDenied], tuple[str, str | None, str]]:
        return (type(self), (self.permission, self.resource, str(self)))


def hide_under_a_denial(excinfo: Any) -> bool:
    """``__tracebackhide__`` of the modules that raise denials: hide their frames for one.

    pytest hides a frame whose module global ``__tracebackhide__`` is true, or
    a callable that answers true for the exception being shown. So a denial's
    traceback ends in the frame that asked for the access, as a real
    ``PermissionError``'s does, while any other exception passing through
    (a bug in this plugin) keeps every frame. ``--fulltrace`` shows them all.
    """
    return excinfo is not None and bool(excinfo.errisinstance(AccessDenied))


@dataclass(frozen=True)
class Denial:
    """One denied operation, kept even when the code under test swallowed it."""

    code: ClassVar[str] = CODE
    """As on :class:`AccessDenied`, so ``assert_access_denied`` accepts a record too."""
    permission: str
    resource: str | None
    where: str
    """``file:line`` of the innermost frame outside this package."""
    raised: bool = True
    """False when the access was hidden rather than refused (env reads)."""

    def line(self) -> str:
        """The one-line form every report shows: permission, resource, place."""
        return f"{self.permission} {self.resource} at {self.where}"

    def to_dict(self) -> dict[str, object]:
        return {
            "permission": self.permission,
            "resource": self.resource,
            "where": self.where,
            "raised": self.raised,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Denial:
        return cls(
            str(data["permission"]),
            None if data["resource"] is None else str(data["resource"]),
            str(data["where"]),
            bool(data.get("raised", True)),
        )


def chain(error: BaseException | None) -> Iterator[BaseException]:
    """``error``, then what caused it (``__cause__``, else ``__context__``), and so on.

    A library's own error often wraps a denial or an ``OSError`` this way.
    """
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__
