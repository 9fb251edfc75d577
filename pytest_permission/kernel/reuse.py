"""The last test's kernel layer, reused by the next test that needs the very same.

Most tests of a module share a marker; checking that the next one does
touches far fewer objects than making its layer anew, and in a process that
forks before every test each object touched costs a page fault.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pytest_permission import scopes
from pytest_permission.kernel import landlock, mapping, supervisor
from pytest_permission.kernel.landlock import identify
from pytest_permission.plan import Plan

if TYPE_CHECKING:
    from pytest_permission.kernel import Prepared


class Reuse:
    """A test's kernel layer, and what it was made from.

    Only for policies without file-system grants (whose rules depend on
    which paths exist), without a supervisor (one per child) and while no
    supervisor of an earlier test still serves.
    """

    def __init__(
        self, prepared: Prepared, plan: Plan, read: Sequence[str], write: Sequence[str],
    ) -> None:
        self.prepared = prepared
        self.inputs = (plan.policy, plan.implicit, plan.kernel, tuple(read), tuple(write))
        self.sys_path = list(sys.path)
        self.modules = len(sys.modules)
        self.slot = list(landlock._slot_key)
        watch = mapping.watch()
        self.generation = watch.generation()
        rules = prepared.step.rules
        self.unwatched = [  # a change in a watched folder changes the generation
            path for path in (rules.paths if rules is not None else ())
            if os.path.dirname(path) not in watch.folders
        ]
        self.identities = self.identify()

    @staticmethod
    def reusable(prepared: Prepared, plan: Plan) -> bool:
        rules = prepared.step.rules
        return (
            prepared.supervisor is None and (rules is None or not rules.own)
            and not prepared.strays
            and not plan.policy.grant(scopes.FS_READ).rules
            and not plan.policy.grant(scopes.FS_WRITE).rules
        )

    def identify(self) -> tuple[object, ...]:
        return tuple(identify(path) for path in self.unwatched)

    def fits(self, plan: Plan, read: Sequence[str], write: Sequence[str]) -> bool:
        return (
            (plan.policy, plan.implicit, plan.kernel, tuple(read), tuple(write)) == self.inputs
            and sys.path == self.sys_path and len(sys.modules) == self.modules
            and landlock._slot_key == self.slot and not supervisor._running
            and mapping.watch().generation() == self.generation
            and (not self.unwatched or self.identify() == self.identities)
        )


_last: list[Reuse] = []


def last() -> Reuse | None:
    """The last test's layer, if it may be reused at all."""
    return _last[0] if _last else None


def keep(prepared: Prepared, plan: Plan, read: Sequence[str], write: Sequence[str]) -> None:
    """Remember ``prepared`` for the next test, where it may be reused."""
    _last[:] = [Reuse(prepared, plan, read, write)] if Reuse.reusable(prepared, plan) else []
