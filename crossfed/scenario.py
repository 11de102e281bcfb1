"""One scenario, as DESIGN.md draws it: apply -> run -> probe result -> verdict -> teardown.

The environment decides only where the workload runs: a local process given what the webhook
would give a pod (`process`), or a real pod on a cluster (`kubeconfig`).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass

from crossfed.aws.provision import AppliedAws, AwsProvisioner
from crossfed.azure.provision import AppliedAzure, AzureProvisioner
from crossfed.cleanup import Teardown
from crossfed.decisions import Decision
from crossfed.environments.kubeconfig import KubeconfigCluster
from crossfed.environments.standins import LocalStandIns
from crossfed.issuer.issuer import Issuer
from crossfed.issuer.learned import LearnedIssuer
from crossfed.issuer.variants import token_for
from crossfed.plan import AZURE_AUDIENCE, STS_AUDIENCE, FederationPlan, IssuerVariant, isolate
from crossfed.redact import scrub_text
from crossfed.report.account import step
from crossfed.verdict import (
    AwsEvidence,
    AzureEvidence,
    VerdictError,
    check_aws,
    check_azure,
    check_template,
)
from crossfed.webhooks.versions import WebhookVersions
from crossfed.workload.kept_pod import KeptPod, next_round, start_kept_pod
from crossfed.workload.process import (
    AwsWorkload,
    AzureWorkload,
    ProbeResult,
    SdkTargets,
    run_probe,
    run_workload,
)

log = logging.getLogger("crossfed")


@dataclass
class ScenarioRun:
    plan: FederationPlan
    applied: AppliedAws | None = None
    applied_azure: AppliedAzure | None = None
    result: ProbeResult | None = None


@dataclass
class KeptRun:
    """A scenario kept across a webhook upgrade: its run, what its workload was given, and its
    pod (None in the process environment)."""

    run: ScenarioRun
    aws: AwsWorkload | None
    azure: AzureWorkload | None
    targets: SdkTargets
    pod: KeptPod | None = None


def _told(unknown: bool, real: str) -> str:
    """What the workload is told: the real id, or a well-formed one nobody registered."""
    return str(uuid.uuid4()) if unknown else real


def workloads(plan: FederationPlan, run: ScenarioRun,
              versions: WebhookVersions | None = None
              ) -> tuple[AwsWorkload | None, AzureWorkload | None]:
    """What the workload is given for the applied objects: a role and bucket; a client id,
    tenant, vault and secret (a made-up client id or tenant where the plan says so); the
    webhooks' contracts at `versions` (None: the defaults)."""
    versions = versions or WebhookVersions()
    aws = AwsWorkload(run.applied.role_arn, run.applied.bucket,
                      webhook=versions.eks_settings()) if run.applied else None
    azure = None
    if run.applied_azure is not None and plan.azure is not None:
        applied = run.applied_azure
        azure = AzureWorkload(_told(plan.azure.unknown_client_id, applied.client_id),
                              _told(plan.azure.unknown_tenant, applied.tenant_id),
                              applied.vault_url, applied.secret_name,
                              contract=versions.azwi_contract())
    return aws, azure


class Scenarios:
    """Runs plans against the local stand-ins, in a process or in pods of `cluster`."""

    def __init__(self, clouds: LocalStandIns, cluster: KubeconfigCluster | None = None,
                 name: str | None = None, versions: WebhookVersions | None = None) -> None:
        self.clouds, self.cluster = clouds, cluster
        self.name = name or ("process" if cluster is None else "kubeconfig")
        self.versions = versions or WebhookVersions()
        if cluster is not None:
            cluster.use_webhook_versions(self.versions)

    def issuer_for(self, variant: IssuerVariant) -> Issuer | LearnedIssuer:
        """The plan's issuer; "primary" is the cluster's own when it signs with its own key."""
        if variant == "primary" and self.cluster is not None and self.cluster.issuer:
            return self.cluster.issuer
        return self.clouds.issuer_for(variant)

    def apply(self, plan: FederationPlan, run: ScenarioRun, teardown: Teardown) -> None:
        issuer = self.issuer_for(plan.issuer)
        if plan.aws is not None:
            aws = self.clouds.aws
            provisioner = AwsProvisioner(aws.session(), self.clouds.run_id,
                                         ca_bundle=aws.ca_bundle, endpoint_url=aws.endpoint_url,
                                         issuer_locations=self.clouds.issuer_locations)
            run.applied = provisioner.apply(plan.aws, plan.name, issuer.url,
                                            plan.trusted_account, plan.audience, teardown)
            log.info("crossfed: %s: role %s", plan.name, run.applied.role_arn)
        if plan.azure is not None:
            provisioner_az = AzureProvisioner(self.clouds.azure.account(), self.clouds.run_id)
            run.applied_azure = provisioner_az.apply(plan.azure, plan.name, issuer.url,
                                                     plan.trusted_account, teardown)
            log.info("crossfed: %s: identity %s, vault %s", plan.name,
                     run.applied_azure.client_id, run.applied_azure.vault_url)

    def run(self, plan: FederationPlan, teardown: Teardown) -> ScenarioRun:
        suffix = f"{self.clouds.run_id}-{hashlib.sha256(plan.name.encode()).hexdigest()[:6]}"
        original_name = plan.name
        plan = isolate(plan, suffix)
        run = ScenarioRun(plan)
        issuer = self.issuer_for(plan.issuer)
        # The API server signs the projected token; other tokens are presented from a file.
        # azure-workload-identity projects only its --audience, so another audience is too.
        cluster_token = (self.cluster is not None and plan.token == "projected"
                         and plan.issuer == "primary"
                         and (plan.azure is None or plan.audience == AZURE_AUDIENCE))
        # Minted before anything is created: a variant the issuer's key is needed for raises
        # SigningKeyUnavailable when the cluster holds that key (a learned issuer).
        token = None if cluster_token else token_for(plan.token, issuer, plan.workload,
                                                     plan.audience)
        with step("apply"):
            self.apply(plan, run, teardown)
        targets = self._targets()
        aws, azure = workloads(plan, run, self.versions)
        template = plan.template()  # a user's own workload in place of the probe
        if self.cluster is not None and self.cluster.watch is not None:
            self.cluster.watch.case = original_name  # the golden's name: stable across runs
        with step("process start and run" if self.cluster is None else "pod start and run"):
            if self.cluster is None:
                assert token is not None
                if template is not None:
                    run.result = run_workload(template, token, targets, aws=aws, azure=azure,
                                              work_root=self.clouds.state_dir / "pods")
                else:
                    run.result = run_probe(token, targets, aws=aws, azure=azure,
                                           work_root=self.clouds.state_dir / "pods")
            else:
                run.result = self.cluster.runner.run(
                    plan.workload.namespace, plan.workload.name, targets, teardown, aws=aws,
                    azure=azure, forged_token=token,
                    aws_audience=plan.audience if plan.audience != STS_AUDIENCE else None,
                    template=template)
        return run

    def keep(self, plan: FederationPlan, teardown: Teardown) -> KeptRun:
        """Apply `plan` and start its workload to keep across a webhook upgrade (`teardown` is
        the session's); the first result is in the returned run. In pods the pod keeps
        running the probe in a loop (crossfed.workload.kept_pod); in the process environment
        the workload keeps the env and token layout of the versions it started on."""
        suffix = f"{self.clouds.run_id}-k{hashlib.sha256(plan.name.encode()).hexdigest()[:5]}"
        plan = isolate(plan, suffix)
        run = ScenarioRun(plan)
        self.apply(plan, run, teardown)
        aws, azure = workloads(plan, run, self.versions)
        kept = KeptRun(run, aws, azure, self._targets())
        if self.cluster is None:
            run.result = self._probe_process(kept)
        else:
            kept.pod, run.result = start_kept_pod(
                self.cluster.runner, plan.workload.namespace, plan.workload.name,
                kept.targets, teardown, aws=aws, azure=azure)
        return kept

    def reprobe(self, kept: KeptRun) -> ScenarioRun:
        """The kept workload asked again, after the upgrade: a new run to judge."""
        run = ScenarioRun(kept.run.plan, kept.run.applied, kept.run.applied_azure)
        if kept.pod is None:
            run.result = self._probe_process(kept)
        else:
            assert self.cluster is not None
            run.result = next_round(self.cluster.runner, kept.pod)
        return run

    def _probe_process(self, kept: KeptRun) -> ProbeResult:
        plan = kept.run.plan  # a fresh token, as the kubelet's refresh gives a pod
        token = token_for(plan.token, self.issuer_for(plan.issuer), plan.workload,
                          plan.audience)
        return run_probe(token, kept.targets, aws=kept.aws, azure=kept.azure,
                         work_root=self.clouds.state_dir / "pods")

    def _targets(self) -> SdkTargets:
        return SdkTargets(self.clouds.aws.endpoint_url, self.clouds.aws.ca_bundle,
                          authority_host=self.clouds.azure.entra.authority_host,
                          skip_challenge_resource_check=True)

    def verdict(self, run: ScenarioRun) -> None:
        assert run.result is not None
        watch = self.cluster.watch if self.cluster is not None else None
        drifted = watch.verdict_lines(run.plan.workload.namespace) if watch else []
        if drifted:
            raise VerdictError(f"plan {run.plan.name!r} ({self.name}): the pod's mutation "
                               f"differs from the contract of {self.versions} (the webhook "
                               "changed behaviour, or crossfed's contract is out of date):\n  "
                               + "\n  ".join(drifted))
        template = run.plan.template()
        if template is not None:  # judged by its own success condition, not the probe's report
            check_template(run.plan.name, template, run.result, self.versions.azwi_contract())
            return
        if "probe" not in run.result.report:
            raise VerdictError(f"plan {run.plan.name!r} ({self.name}): the probe failed (exit "
                               f"{run.result.exit_code}) before reporting:\n"
                               f"{scrub_text(run.result.stderr)}")
        if run.applied is not None:
            evidence = AwsEvidence(run.applied.role_arn, run.applied.role_name,
                                   run.applied.account_id, run.applied.object_key,
                                   self.decisions(run))
            check_aws(run.plan, run.result.report, evidence)
        if run.applied_azure is not None:
            applied = run.applied_azure
            check_azure(run.plan, run.result.report,
                        AzureEvidence(applied.client_id, applied.secret_sha256,
                                      self.decisions(run)))

    def decisions(self, run: ScenarioRun) -> list[Decision]:
        """What the stand-ins decided for the run's role, or its identity and vault."""
        if run.applied is not None:
            return self.clouds.aws.decisions.for_target(run.applied.role_arn)
        if run.applied_azure is None:
            return []
        applied, azure = run.applied_azure, self.clouds.azure
        told = (run.result.env if run.result else {}).get("AZURE_CLIENT_ID", applied.client_id)
        return azure.entra.decisions.for_target(told) + [
            d for d in azure.vaults.decisions.all()
            if d.target.startswith(f"{applied.vault_name}/")]
