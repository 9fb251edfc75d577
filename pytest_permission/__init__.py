"""pytest-permission: Node.js's permission model for Python tests.

The public facade. ``has()`` and ``drop()`` act on the policy enforced in
this process (the forked child of a restricted test); outside one, nothing
is restricted, so ``has()`` is true and ``drop()`` refuses, because a drop
in the pytest process itself could never be undone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_permission.errors import AccessDenied, Denial
from pytest_permission.policy import Policy

if TYPE_CHECKING:
    from pytest_permission.assertions import assert_access_denied, raises_access_denied
    from pytest_permission.verdict import SwallowedDenialWarning

_LAZY = {
    "assert_access_denied": "pytest_permission.assertions",
    "raises_access_denied": "pytest_permission.assertions",
    "SwallowedDenialWarning": "pytest_permission.verdict",
}
"""Names that need pytest: imported on first use, so that a Python child
process enforcing an inherited policy does not import pytest at start-up."""


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_permission' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

__all__ = [
    "AccessDenied",
    "Denial",
    "Policy",
    "SwallowedDenialWarning",
    "assert_access_denied",
    "denials",
    "drop",
    "has",
    "raises_access_denied",
]


def has(scope: str, resource: object = None) -> bool:
    """Node's ``process.permission.has()`` for the enforced policy."""
    from pytest_permission import audit

    guard = audit.active()
    if guard is None:
        Policy.allow_all().has(scope, resource)  # validates the scope name
        return True
    return guard.has(scope, resource)


def drop(scope: str, resource: object = None) -> None:
    """Node's ``process.permission.drop()``: irreversible, for the rest of the test."""
    from pytest_permission import audit

    guard = audit.active()
    if guard is None:
        Policy.allow_all().dropped(scope, resource)  # validates the arguments
        raise RuntimeError(
            "pytest_permission.drop() needs an isolated test: use "
            "@pytest.mark.permission or request the 'permission' fixture"
        )
    guard.drop(scope, resource)


def denials() -> list[Denial]:
    """The denials recorded so far in this process."""
    from pytest_permission import audit

    guard = audit.active()
    return [] if guard is None else list(guard.denials)
