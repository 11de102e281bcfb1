"""The Azure direction end to end: a workload's token -> Entra ID federated credential ->
access token -> Key Vault secret."""

from __future__ import annotations

import pytest

from crossfed.federation import Federation
from crossfed.plan import FederationPlan
from crossfed.suite.plans import AZURE_ALLOWED, AZURE_DENIED

# `local` or `cloud` comes with the environment parameter (crossfed.pytest_plugin).
pytestmark = [pytest.mark.azure]


def test_workload_reads_the_secret(federation: Federation) -> None:
    run = federation.check(AZURE_ALLOWED)
    assert run.applied_azure is not None and run.result is not None
    for credential in ("workload", "default"):
        secret = run.result.azure(credential)["secret"]
        assert secret["sha256"] == run.applied_azure.secret_sha256


@pytest.mark.parametrize("plan", AZURE_DENIED, ids=lambda plan: plan.name)
def test_workload_is_refused_for_the_reason_azure_gives(federation: Federation,
                                                        plan: FederationPlan) -> None:
    federation.check(plan)
