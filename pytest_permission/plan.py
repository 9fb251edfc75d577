"""What a forked child enforces for one test, decided by the plugin in the parent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pytest_permission.policy import Policy

Isolation = Literal["fork", "inline"]
ISOLATIONS: tuple[Isolation, ...] = ("fork", "inline")


@dataclass(frozen=True)
class Plan:
    policy: Policy
    strict: bool = False
    """Fail the test when its code swallowed a denial (else: a warning)."""
    implicit: bool = True
    timeout: float | None = None
    """Seconds before the parent kills the child; ``None`` waits for ever."""
    observe: bool = False
    """Audit and baseline modes: record every access beyond the implicit grants
    and enforce nothing (the kernel layer stays off, it could only refuse)."""
    kernel: str = "off"
    """``--permission-kernel``: ``auto``, ``require`` or ``off`` (see :mod:`.kernel`)."""
    isolation: Isolation = "fork"
    """``fork``: the body runs in a forked child (drops are for good, the kernel layer
    can apply); ``inline``: in the pytest process, the audit layer switched on
    around the call phase only (see :mod:`pytest_permission.inline`)."""
