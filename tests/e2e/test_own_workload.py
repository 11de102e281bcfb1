"""The user's own workload across an azure-workload-identity upgrade (issue 13, point 4).

A workload template (tests/e2e/data/hard-coded-token-path.yaml) runs in place of crossfed's
probe: a script that reads its token from v1.5.x's hard-coded path, as the workload of
prometheus/prometheus#18972 did. With the v1.5.1 contract it reads the Key Vault secret; with
v1.6.0's, which mounts the token elsewhere, it fails, and the diagnosis names the moved path
and the variable to read instead.

The webhook version is set per test through the lowest-level API taking a Contract
(AzureWorkload(contract=...)), in the process environment: the federation's cloud side is
applied by the environment as for any plan, then the template runs with that contract's env
and token file. Pods get the same template (PodRunner.run_pod(template=...)), but the version
a cluster's webhook serves is the cluster's, so this test runs in the process environment only.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from crossfed.federation import Federation
from crossfed.issuer.variants import token_for
from crossfed.plan import isolate
from crossfed.scenario import ScenarioRun, workloads
from crossfed.suite.plans import AZURE_ALLOWED
from crossfed.verdict import VerdictError, check_template
from crossfed.webhooks.azure_workload_identity import CONTRACTS
from crossfed.workload.process import ProbeResult, SdkTargets, run_workload
from crossfed.workload.template import WorkloadTemplate

pytestmark = [pytest.mark.azure]
TEMPLATE = Path(__file__).parent / "data" / "hard-coded-token-path.yaml"


def _run_own_workload(federation: Federation, version: str
                      ) -> tuple[ScenarioRun, WorkloadTemplate, ProbeResult, str]:
    """The positive Azure plan's cloud side, then the template with `version`'s contract."""
    if federation.environment_name != "process":
        pytest.skip("the webhook version is chosen per test only in the process environment "
                    "(run with --crossfed-env process)")
    scenarios = federation.environment
    clouds = scenarios.clouds
    label = version.replace(".", "-")  # Azure and Kubernetes names take no dots
    plan = isolate(AZURE_ALLOWED.but(name=f"own-workload-{label}"), f"{clouds.run_id}-{label}")
    run = ScenarioRun(plan)
    scenarios.apply(plan, run, federation.teardown)
    token = token_for("projected", scenarios.issuer_for("primary"), plan.workload,
                      plan.audience)
    _, azure = workloads(plan, run)
    assert azure is not None
    azure = dataclasses.replace(azure, contract=CONTRACTS[version])
    targets = SdkTargets(clouds.aws.endpoint_url, clouds.aws.ca_bundle,
                         authority_host=clouds.azure.entra.authority_host,
                         skip_challenge_resource_check=True)
    template = WorkloadTemplate.from_file(TEMPLATE)
    result = run_workload(template, token, targets, azure=azure,
                          work_root=clouds.state_dir / "pods")
    return run, template, result, token


def test_hard_coded_token_path_reads_the_secret_on_v1_5_1(federation: Federation) -> None:
    run, template, result, _ = _run_own_workload(federation, "v1.5.1")
    check_template(run.plan.name, template, result, CONTRACTS["v1.5.1"])
    assert run.applied_azure is not None
    assert result.report == {"ok": True, "sha256": run.applied_azure.secret_sha256}
    # the webhook's variable named the file the workload hard-codes
    assert result.env["AZURE_FEDERATED_TOKEN_FILE"] == (
        "/var/run/secrets/azure/tokens/azure-identity-token")


def test_hard_coded_token_path_fails_on_v1_6_0_with_the_moved_path(
        federation: Federation) -> None:
    run, template, result, token = _run_own_workload(federation, "v1.6.0")
    with pytest.raises(VerdictError) as failed:
        check_template(run.plan.name, template, result, CONTRACTS["v1.6.0"])
    message = str(failed.value)
    assert ("token file /var/run/secrets/azure/tokens/azure-identity-token does not exist: "
            "azure-workload-identity v1.6.0 mounts the token at "
            "/var/run/secrets/azure/wi/token/azure-identity-token; read the path from "
            "AZURE_FEDERATED_TOKEN_FILE instead of hard-coding it") in message
    assert result.exit_code == 1 and result.report["ok"] is False
    assert token not in message and token[-40:] not in message
    # Entra never saw a token: the workload failed before the exchange.
    told = result.env["AZURE_CLIENT_ID"]
    assert federation.environment.clouds.azure.entra.decisions.for_target(told) == []


HARD_CODED = "/var/run/secrets/azure/tokens/azure-identity-token"


def test_the_same_workload_across_a_webhook_upgrade(federation: Federation) -> None:
    """Through `federation.check`, on the session's webhook versions (with
    --upgrade-webhooks-to azwi=v1.6.0 it runs before and after the upgrade): it passes where
    the contract still mounts the token at the hard-coded path, and fails with the diagnosis
    where it moved."""
    plan = AZURE_ALLOWED.but(name="own-workload", workload_template=str(TEMPLATE))
    contract = federation.webhook_versions.azwi_contract()
    if contract.token_path == HARD_CODED:
        run = federation.check(plan)
        assert run.result is not None and run.result.report.get("ok") is True
        return
    with pytest.raises(VerdictError) as failed:
        federation.check(plan)
    assert (f"token file {HARD_CODED} does not exist: azure-workload-identity "
            f"{contract.version} mounts the token at {contract.token_path}; read the path from "
            "AZURE_FEDERATED_TOKEN_FILE instead of hard-coding it") in str(failed.value)
