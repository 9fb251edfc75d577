"""Audit and baseline runs, on the pytest side.

In these runs every test is observed (the plugin gives it a plan with
``observe=True``): its forked body runs with nothing enforced while the
guard records every access beyond the implicit grants. Here, on the
process that runs the test, the call report gets the test's
:class:`~pytest_permission.suggest.Places` and, when a baseline is checked,
the comparison (a test that now uses more fails there, so it fails under
pytest-xdist too). Everything else is built from logged reports, so that
an xdist controller, which sees every worker's reports, prints one audit
and writes one file.

The places are worked out in the pytest process once a test's fixtures are
set up, before its body runs anywhere: what the plugin reads for them (the
ephemeral port range, the temporary folder) must never look like the
test's own access, and the call report may be made where the body runs.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Generator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pytest_permission import baseline, suggest
from pytest_permission.child import ROLE
from pytest_permission.isolation import PLAN, denials_of
from pytest_permission.options import Session
from pytest_permission.suggest import Audited, Grants, Places

PLACES = "permission_places"
"""Call-report attribute: the test's :class:`Places` as a dict."""
_PLACES = pytest.StashKey[Places]()
_SUBTEST_REPORTS = frozenset({"SubtestReport", "SubTestReport"})
"""pytest 9's ``subtests`` and the pytest-subtests plugin: one more report per subtest."""
UNUSED = "permission_baseline_unused"
"""Call-report attribute: baseline entries the test no longer used."""


class Observation:
    """Registered instead of the denial summary when the session observes."""

    def __init__(self, config: pytest.Config, session: Session) -> None:
        self.config = config
        self.session = session
        self.checking = session.baseline is not None and not session.baseline_update
        self.entries: dict[str, Grants] = dict(session.recorded or {})
        if session.baseline_update and session.baseline is not None and session.baseline.exists():
            self.entries = _load(session.baseline)
        self.audited: dict[str, Audited] = {}
        self.unused: dict[str, list[str]] = {}
        self.changed: dict[str, list[str]] = {}
        # Once per session, in the pytest process: see the module's docstring.
        self.ephemeral = suggest.ephemeral_ports()
        self.tempdir = tempfile.gettempdir()
        self.home = os.path.expanduser("~")

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, None, None]:
        yield
        item.stash[_PLACES] = self.places(item)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        plan = item.stash.get(PLAN, None)
        if ROLE in item.stash:
            return report  # the forked child: the parent adds this to the report it relays
        places = item.stash.get(_PLACES, None)
        if call.when == "call" and plan is not None and plan.observe and places is not None:
            places = replace(places, implicit=plan.implicit)
            setattr(report, PLACES, places.to_dict())
            if self.checking:
                self.check(report, places)
        return report

    def places(self, item: pytest.Item) -> Places:
        """Where ``item`` runs, once its fixtures are set up."""
        values = getattr(item, "funcargs", {})
        tmp_path = values.get("tmp_path")
        factory = getattr(item.config, "_tmp_path_factory", None)
        basetemp = None if factory is None else str(factory.getbasetemp())
        return Places(
            rootdir=str(item.config.rootpath),
            testdir=str(Path(item.path).parent),
            tempdir=self.tempdir,
            tmp_path=None if tmp_path is None else str(tmp_path),
            ephemeral=self.ephemeral,
            basetemp=basetemp,
            home=self.home,
            fixtures=_temporary_fixtures(values, [self.tempdir, *([basetemp] if basetemp else [])]),
        )

    def check(self, report: pytest.TestReport, places: Places) -> None:
        """Fail a test that uses what its baseline entry lacks."""
        entry = self.entries.get(report.nodeid)
        diff = baseline.compare(entry, suggest.needs(denials_of(report), places))
        if diff.unused:
            setattr(report, UNUSED, list(diff.unused))
        if not diff.added:
            return
        where = "is not in" if entry is None else "uses more than"
        text = "\n".join(
            [f"{report.nodeid} {where} the permission baseline {self.session.baseline}:"]
            + [f"+ {line}" for line in diff.added]
            + ["(if intended, record it with --permission-baseline-update)"]
        )
        if report.passed:
            report.outcome = "failed"
            report.longrepr = text
        else:
            report.sections.append(("permission baseline", text))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        places = getattr(report, PLACES, None)
        if places is None or type(report).__name__ in _SUBTEST_REPORTS:
            return  # a subtest's report is made before the test's accesses are all known
        self.audited[report.nodeid] = Audited(
            report.nodeid, report.outcome, tuple(denials_of(report)), Places.from_dict(places)
        )
        unused = getattr(report, UNUSED, None)
        if unused:
            self.unused[report.nodeid] = list(unused)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if hasattr(session.config, "workerinput"):
            return  # an xdist worker: the controller writes
        if self.session.audit_json is not None:
            self.session.audit_json.write_text(
                suggest.audit_json(self.audited.values()), encoding="utf-8"
            )
        if self.session.baseline is not None and self.session.baseline_update:
            self.update(self.session.baseline)

    def update(self, path: Path) -> None:
        """Record what every test that ran used; keep the entries of the others."""
        entries = dict(self.entries)
        for nodeid, audited in self.audited.items():
            found = audited.needs
            granted = suggest.grants(found)
            if self.entries.get(nodeid) != granted:
                self.changed[nodeid] = baseline.compare(self.entries.get(nodeid), found).lines()
            entries[nodeid] = granted
        path.write_text(baseline.dump(entries), encoding="utf-8")

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        write = terminalreporter.write_line
        if self.session.audit:
            terminalreporter.section("permission audit")
            for nodeid, audited in sorted(self.audited.items()):
                found = audited.needs
                write(nodeid)
                write(f"    {suggest.marker(suggest.grants(found))}")
                for note in found.notes:
                    write(f"    # {note}")
                if audited.outcome == "failed":
                    write("    # the test failed: this covers only what ran before it stopped")
            if self.session.audit_json is not None:
                write(f"audit written to {self.session.audit_json}")
        if self.session.baseline is None:
            return
        if self.session.baseline_update:
            terminalreporter.section("permission baseline")
            write(f"recorded {len(self.audited)} test(s) in {self.session.baseline}")
            for nodeid, lines in sorted(self.changed.items()):
                write(f"{nodeid} ({'changed' if nodeid in self.entries else 'new'})")
                for line in lines:
                    write(f"  {line}")
        elif self.unused:
            terminalreporter.section("permission baseline")
            write("no longer used (update the baseline with --permission-baseline-update):")
            for nodeid, lines in sorted(self.unused.items()):
                write(nodeid)
                for line in lines:
                    write(f"  - {line}")


def _load(path: Path) -> dict[str, Grants]:
    """The entries a recording run keeps for the tests it does not run."""
    try:
        return baseline.load(path)
    except ValueError as exc:
        raise pytest.UsageError(f"--permission-baseline: {exc}") from None


def _temporary_fixtures(
    values: Mapping[str, object], folders: list[str]
) -> tuple[tuple[str, str], ...]:
    """The fixtures whose value is a path in a temporary folder: who made what is there."""
    below = tuple(folder.rstrip(os.sep) + os.sep for folder in folders)
    found = []
    for name, value in values.items():
        if name == "tmp_path" or not isinstance(value, (str, os.PathLike)):
            continue
        path = os.fspath(value)
        if isinstance(path, str) and os.path.isabs(path) and path.startswith(below):
            found.append((name, os.path.normpath(path)))
    return tuple(sorted(found))
