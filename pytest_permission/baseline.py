"""Capability baselines: what each test may use, recorded once, checked on every run.

For teams that do not hand-write markers: ``--permission-baseline=FILE
--permission-baseline-update`` records what every test that ran used;
``--permission-baseline=FILE`` fails each test that now uses something its
entry lacks. The file is meant to be reviewed in pull requests, so it is
JSON with sorted keys, one test per key, entries in the marker's own words
(placeholders, folders collapsed as in :mod:`pytest_permission.suggest`)::

    {
      "tests": {
        "tests/test_api.py::test_fetch": {
          "env": ["API_TOKEN"],
          "fs_read": ["{testdir}/fixtures"],
          "net": ["api.example.com:443"]
        },
        "tests/test_math.py::test_add": {}
      },
      "version": 1
    }

A test absent from the file may use nothing. Updating keeps the entries of
tests that did not run, so a partial run (``-k``, one file) never drops the
rest. Pure (no pytest).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pytest_permission.suggest import VERSION, Grants, Needs, covers


@dataclass(frozen=True)
class Diff:
    """One test against its entry: ``keyword: entry`` lines, or a bare switch name."""

    added: tuple[str, ...]
    """Used now, not in the baseline: the test fails."""
    unused: tuple[str, ...]
    """In the baseline, not used any more: a hint to update it."""

    def lines(self) -> list[str]:
        return [f"+ {line}" for line in self.added] + [f"- {line}" for line in self.unused]


def load(path: Path) -> dict[str, Grants]:
    """The entries of a baseline file; ``ValueError`` saying what is wrong with it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise ValueError(f"{path}: not a version {VERSION} permission baseline")
    tests = data.get("tests")
    if not isinstance(tests, dict) or not all(isinstance(v, dict) for v in tests.values()):
        raise ValueError(f"{path}: 'tests' must map node ids to grants")
    return tests


def dump(entries: Mapping[str, Grants]) -> str:
    """The file's text: stable order, so a change shows as a small diff."""
    return json.dumps({"version": VERSION, "tests": dict(entries)}, indent=2, sort_keys=True) + "\n"


def shown(entry: str) -> str:
    """An entry as a diff line shows it: quoted where spaces or unprintables would hide it."""
    return entry if entry.isprintable() and entry == entry.strip() and entry else json.dumps(entry)


def compare(entry: Grants | None, found: Needs) -> Diff:
    """What ``found`` uses beyond ``entry`` (``None``: the test is not in the file), and back."""
    granted = {} if entry is None else entry
    added = [s for s in sorted(found.switches) if granted.get(s) is not True]
    used: set[tuple[str, str]] = set()
    for keyword, entries in sorted(found.entries.items()):
        grant = granted.get(keyword)
        for observed in sorted(entries):
            if grant is True:
                continue
            owners = [g for g in grant or () if covers(keyword, g, observed)]
            used.update((keyword, g) for g in owners)
            if not owners:
                added.append(f"{keyword}: {shown(observed)}")
    unused = []
    for keyword, grant in sorted(granted.items()):
        if keyword == "implicit":
            continue
        if grant is True:
            if keyword not in found.switches and keyword not in found.entries:
                unused.append(keyword)
        elif isinstance(grant, list):
            unused += [f"{keyword}: {shown(g)}" for g in grant if (keyword, g) not in used]
    return Diff(tuple(added), tuple(unused))
