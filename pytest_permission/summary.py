"""The ``permission denials`` section of the terminal summary.

Built from the call reports as they are logged, so that under pytest-xdist
the controller, which sees every worker's reports, prints one summary.

Under ``-q`` the section lists only the tests that failed: the denials a
passing test met were expected (``raises_access_denied``, ``pytest.raises``)
or swallowed, and a swallowed one already has its ``SwallowedDenialWarning``
in the warnings summary.
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_permission.errors import Denial
from pytest_permission.isolation import denials_of


class DenialSummary:
    def __init__(self) -> None:
        self.found: dict[str, list[Denial]] = {}
        self.failed: set[str] = set()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        denials = denials_of(report)
        if denials:
            self.found.setdefault(report.nodeid, []).extend(denials)
            if report.failed:
                self.failed.add(report.nodeid)

    def pytest_terminal_summary(self, terminalreporter: Any, config: pytest.Config) -> None:
        quiet = config.option.verbose < 0
        shown = {n: d for n, d in self.found.items() if not quiet or n in self.failed}
        if not shown:
            return
        terminalreporter.section("permission denials")
        for nodeid, denials in shown.items():
            terminalreporter.write_line(nodeid)
            for denial in denials:
                terminalreporter.write_line(f"  {denial.line()}")
