"""One scenario, as DESIGN.md draws it: apply -> run -> probe result -> verdict -> teardown."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from crossfed.aws.provision import AppliedAws, AwsProvisioner
from crossfed.cleanup import Teardown
from crossfed.environments.standins import LocalStandIns
from crossfed.issuer.variants import token_for
from crossfed.plan import FederationPlan
from crossfed.verdict import AwsEvidence, VerdictError, check_aws
from crossfed.workload.process import ProbeResult, SdkTargets, run_probe

log = logging.getLogger("crossfed")


@dataclass
class ScenarioRun:
    plan: FederationPlan
    applied: AppliedAws | None = None
    result: ProbeResult | None = None


class ProcessScenarios:
    """Runs plans in the `process` environment against the local stand-ins."""

    name = "process"

    def __init__(self, clouds: LocalStandIns) -> None:
        self.clouds = clouds

    def run(self, plan: FederationPlan, teardown: Teardown) -> ScenarioRun:
        run = ScenarioRun(plan)
        issuer = self.clouds.issuer_for(plan.issuer)
        if plan.aws is not None:
            provisioner = AwsProvisioner(self.clouds.aws.session(), self.clouds.run_id,
                                         ca_bundle=self.clouds.aws.ca_bundle,
                                         endpoint_url=self.clouds.aws.endpoint_url)
            run.applied = provisioner.apply(plan.aws, plan.name, issuer.url,
                                            plan.trusted_account, plan.audience, teardown)
            log.info("crossfed: %s: role %s", plan.name, run.applied.role_arn)
        token = token_for(plan.token, issuer, plan.workload, plan.audience)
        targets = SdkTargets(self.clouds.aws.endpoint_url, self.clouds.aws.ca_bundle)
        run.result = run_probe(token, run.applied.role_arn if run.applied else None,
                               run.applied.bucket if run.applied else None, targets)
        return run

    def verdict(self, run: ScenarioRun) -> None:
        assert run.result is not None
        if "probe" not in run.result.report:
            raise VerdictError(f"plan {run.plan.name!r}: the probe failed (exit "
                               f"{run.result.exit_code}) before reporting:\n{run.result.stderr}")
        if run.applied is not None:
            evidence = AwsEvidence(run.applied.role_arn, run.applied.role_name,
                                   run.applied.account_id, run.applied.object_key,
                                   self.clouds.aws.decisions.for_target(run.applied.role_arn))
            check_aws(run.plan, run.result.report, evidence)
