"""Placeholder."""

from __future__ import annotations

from pytest_permission.audit.guard import Guard, Handler


def install(guard: Guard) -> dict[str, Handler]:
    return {}
