"""Enforcing a capability baseline: each test restricted to what the file records for it.

``--permission-baseline=FILE --permission-baseline-enforce`` turns a file
recorded with ``--permission-baseline-update`` into the policy of every
test, so that one recording run makes a whole suite a restricted one. An
entry is in the marker's own words (see :mod:`pytest_permission.baseline`),
so it is enforced exactly as the marker it stands for: the same checks, the
same placeholders, base ``"none"`` (only what the entry lists).

What the code says about a test still wins: its own marker, and the
``permission`` fixture, with which a test manages its permissions itself
(everything allowed until it drops, as in the run that recorded the file;
restricting it to its entry would change what its ``has()`` calls answer).
A marker means what it means in a plain run (``"inherit"`` takes
everything unless ``--permission`` is given too). A test the file does not
list gets nothing, as a new test should until it is recorded; with
``--permission`` given too, the ``--allow-*`` grants, as any test without a
marker.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from pytest_permission import baseline, marker
from pytest_permission.suggest import Grants


def as_marker(grants: Grants) -> pytest.Mark:
    """The ``@pytest.mark.permission(...)`` an entry stands for."""
    return pytest.mark.permission(**grants).mark


def load(path: Path) -> dict[str, Grants]:
    """A baseline's entries; ``ValueError`` naming the file, the test and what is wrong."""
    entries = baseline.load(path)
    for nodeid, grants in entries.items():
        try:
            marker.validate(as_marker(grants))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: the entry of {nodeid}: {exc}") from None
    return entries


def manages_itself(item: pytest.Item) -> bool:
    """Whether the test's code says what it may use: a marker, or the ``permission`` fixture.

    Such a test runs as its code says in every baseline run (recording,
    checking, enforcing) and has no entry.
    """
    return (
        item.get_closest_marker("permission") is not None
        or "permission" in getattr(item, "fixturenames", ())
    )


def entry_for(item: pytest.Item, entries: Mapping[str, Grants] | None) -> pytest.Mark | None:
    """The marker a test gets from an enforced baseline, if the file lists it."""
    grants = None if entries is None else entries.get(item.nodeid)
    return None if grants is None else as_marker(grants)
