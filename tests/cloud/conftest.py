"""Lines the cloud-tier tests want in the CI log (the tier's own summary: scenarios passed
per environment and the measured propagation waits), printed at the end of the run."""

from __future__ import annotations

import pytest

from tests.cloud.tier import REPORTED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in REPORTED:
        terminalreporter.write_line(line)
