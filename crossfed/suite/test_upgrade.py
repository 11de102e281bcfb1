"""Across a webhook upgrade (--upgrade-webhooks-to): workloads started on the first versions
still reach the other cloud after the upgrade, with the env and token layout they were created
with and the token the kubelet keeps refreshing."""

from __future__ import annotations

import pytest

from crossfed.federation import Federation
from crossfed.suite.plans import AWS_ALLOWED, AZURE_ALLOWED

# `local` or `cloud` comes with the environment parameter (crossfed.pytest_plugin).
pytestmark = [pytest.mark.aws, pytest.mark.azure, pytest.mark.upgrade]
KEPT = (AWS_ALLOWED, AZURE_ALLOWED)


def test_workloads_started_before_the_upgrade_still_reach_the_clouds(
        federation: Federation) -> None:
    phase = federation.upgrade_phase  # the test is deselected without an upgrade
    runs = (federation.keep_across_upgrade(KEPT) if phase == "before"
            else federation.check_kept())
    assert [run.plan.name for run in runs] == [plan.name for plan in KEPT]
    for run in runs:
        assert run.result is not None and run.result.report.get("probe"), run.result
