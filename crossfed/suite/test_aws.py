"""The AWS direction end to end: a workload's token -> verifying STS -> role -> S3."""

from __future__ import annotations

import pytest

from crossfed.federation import Federation
from crossfed.suite.plans import AWS_ALLOWED, AWS_DENIED

# `local` or `cloud` comes with the environment parameter (crossfed.pytest_plugin).
pytestmark = [pytest.mark.aws]


def test_workload_assumes_role_and_lists_bucket(federation: Federation) -> None:
    run = federation.check(AWS_ALLOWED)
    assert run.applied is not None and run.result is not None
    for client in ("boto3", "cli"):
        identity = run.result.aws(client)["caller_identity"]
        assert identity["arn"].startswith(
            f"arn:aws:sts::{run.applied.account_id}:assumed-role/{run.applied.role_name}/")
        assert "test-file.txt" in run.result.aws(client)["list_bucket"]["keys"]


@pytest.mark.parametrize("plan", AWS_DENIED, ids=lambda plan: plan.name)
def test_workload_is_refused_for_the_reason_aws_gives(federation: Federation, plan) -> None:
    federation.check(plan)
