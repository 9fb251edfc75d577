"""What a forked child enforces for one test, decided by the plugin in the parent."""

from __future__ import annotations

from dataclasses import dataclass

from pytest_permission.policy import Policy


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
