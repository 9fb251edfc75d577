"""The ``permission denials`` section of the terminal summary.

Built from the call reports as they are logged, so that under pytest-xdist
the controller, which sees every worker's reports, prints one summary.
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_permission.errors import Denial
from pytest_permission.isolation import denials_of


class DenialSummary:
    def __init__(self) -> None:
        self.found: dict[str, list[Denial]] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        denials = denials_of(report)
        if denials:
            self.found.setdefault(report.nodeid, []).extend(denials)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.found:
            return
        terminalreporter.section("permission denials")
        for nodeid, denials in self.found.items():
            terminalreporter.write_line(nodeid)
            for denial in denials:
                terminalreporter.write_line(f"  {denial.line()}")
