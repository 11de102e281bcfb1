"""The cloud tier's environments: the existing scenarios, with the clouds as a parameter.

`cloud-process`: the workload is a local process whose token crossfed's issuer signs (skipped
against a cloud that cannot reach this machine). `cloud-cluster`: pods of --aks-context (AWS
direction) or --eks-context (Azure direction), mutated by the cluster's webhooks, presenting
the token its API server projects.

Each scenario: apply (the provisioners of the local tier, with tags, TTL and the IAM path) ->
wait out propagation (the harness polls with the workload's token every ≤2 s; a refusal counts
only when what the cloud holds explains it) -> run the workload -> judge it the same way ->
teardown in reverse order (the fixture's).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from crossfed.cleanup import Teardown
from crossfed.cloud import attempt, diagnosis
from crossfed.cloud.accounts import AwsCloud, AzureCloud, CloudSetupError
from crossfed.cloud.clusters import CloudCluster, attach
from crossfed.cloud.issuers import CloudIssuers
from crossfed.cloud.judging import Judgement, judge, succeeded_steps
from crossfed.cloud.options import CloudSettings
from crossfed.cloud.records import cross_check
from crossfed.cloud.tags import CloudTags
from crossfed.issuer.keys import SigningKey
from crossfed.issuer.learned import SigningKeyUnavailable
from crossfed.issuer.variants import token_for
from crossfed.plan import AZURE_AUDIENCE, STS_AUDIENCE, FederationPlan, isolate
from crossfed.redact import scrub_text
from crossfed.scenario import ScenarioRun, workloads
from crossfed.verdict import (
    VerdictError,
    aws_outcome_problems,
    azure_outcome_problems,
    expectation,
)
from crossfed.webhooks.versions import WebhookVersions
from crossfed.workload.process import AwsWorkload, AzureWorkload, ProbeResult, SdkTargets, run_probe

log = logging.getLogger("crossfed.cloud")
MAX_POLL = 2.0  # seconds between polls at most: the wait ends within 2 s of the change
DIAGNOSE_EVERY = 30.0  # the same refusal is diagnosed again after this many seconds
STEP_KINDS = {  # what a step's first success shows has propagated
    "assume": "IAM role + OIDC provider (STS)",
    "list": "IAM policy attachment (S3)",
    "token": "Entra federated credential",
    "secret": "Key Vault access",
}
# kind -> measured waits (s), for the closing summary (crossfed.pytest_plugin)
PROPAGATION: dict[str, list[float]] = {}


def record_wait(kind: str, seconds: float) -> None:
    PROPAGATION.setdefault(kind, []).append(round(seconds, 1))


def propagation_summary() -> list[str]:
    lines = []
    for kind, waits in sorted(PROPAGATION.items()):
        ordered = sorted(waits)
        median = ordered[len(ordered) // 2]
        lines.append(f"{kind}: {len(waits)} wait(s), median {median:.1f} s, max "
                     f"{ordered[-1]:.1f} s")
    return lines


def _direction(plan: FederationPlan) -> str:
    if plan.aws is not None and plan.azure is not None:
        raise ValueError(f"plan {plan.name!r} targets both clouds; the cloud tier runs one "
                         "direction a scenario")
    return "aws" if plan.aws is not None else "azure"


@dataclass
class CloudTier:
    """What a session holds: settings, tags, issuers, the accounts and the attached clusters."""

    settings: CloudSettings
    run_id: str
    state_dir: Path
    tags: CloudTags
    issuers: CloudIssuers
    aws: AwsCloud | None = None
    azure: AzureCloud | None = None
    clusters: dict[str, CloudCluster] = field(default_factory=dict)
    teardown: Teardown = field(default_factory=Teardown)
    problems: dict[str, str] = field(default_factory=dict)  # cloud -> why it cannot run
    # The webhook versions the attached clusters' pods get (--webhook-versions; after
    # upgrade_webhooks(), the versions upgraded to).
    webhook_versions: WebhookVersions = field(default_factory=WebhookVersions)
    _iam: Any = field(default=None, repr=False)
    _arm: Any = field(default=None, repr=False)

    @classmethod
    def start(cls, settings: CloudSettings, run_id: str, state_dir: Path,
              key: SigningKey | None = None, external_issuer: str | None = None,
              webhook_versions: WebhookVersions | None = None) -> CloudTier:
        # The SDKs' request logs, and azure-identity's warning on each refused exchange while
        # a credential propagates, would bury the tier's own lines.
        for name in ("azure", "msal"):
            logging.getLogger(name).setLevel(logging.ERROR)
        issuers = CloudIssuers.start(state_dir, key, external_issuer)
        tier = cls(settings, run_id, state_dir, CloudTags.new(run_id, settings.ttl_hours),
                   issuers, webhook_versions=webhook_versions or WebhookVersions())
        tier.teardown.add("issuers", issuers.stop)
        log.info("crossfed cloud: run %s, objects tagged crossfed-run-id=%s, "
                 "crossfed-delete-after=%s", run_id, run_id, tier.tags.delete_after)
        for cloud in settings.clouds:
            try:
                tier._connect(cloud)
            except CloudSetupError as exc:
                tier.problems[cloud] = str(exc)
                log.warning("crossfed cloud: %s: %s", cloud, exc)
        return tier

    def _connect(self, cloud: str) -> None:
        if cloud == "aws":
            self.aws = AwsCloud.connect(self.settings)
            return
        self.azure = AzureCloud.connect(self.settings, self.run_id)
        from crossfed.azure.provision import AzureProvisioner

        provisioner = AzureProvisioner(self.azure.account(), self.run_id,
                                       tags=self.tags.as_dict())
        provisioner.ensure_resource_group(self.teardown)

    def read_only_iam(self) -> Any:
        """IAM for the diagnosis, made once a session (its reads only)."""
        if self._iam is None:
            assert self.aws is not None
            self._iam = diagnosis.read_only_iam(self.aws.session, self.aws.region)
        return self._iam

    def read_only_arm(self) -> Any:
        """ARM for the diagnosis (the doctor's GET-only clients), made once a session."""
        if self._arm is None:
            from crossfed.doctor.azure import arm_clients

            assert self.azure is not None
            self._arm = arm_clients(self.azure.cloud, self.azure.subscription,
                                    self.azure.ca_bundle)
        return self._arm

    def cloud_problem(self, cloud: str) -> str | None:
        return self.problems.get(cloud)

    def cluster_for(self, cloud: str) -> CloudCluster:
        context = self.settings.context_for(cloud)
        assert context is not None
        key = context
        if key in self.problems:
            raise CloudSetupError(self.problems[key])
        if key not in self.clusters:
            try:
                wanted = self._clouds_served_by(context)
                cluster = attach(self.settings, context, wanted, self.issuers, self.run_id,
                                 workload_ca(),
                                 tenant_id=self.azure.tenant_id if self.azure else "",
                                 authority_host=self._authority_for_pods(),
                                 versions=self.webhook_versions)
                self.teardown.add(f"cluster attachment {context}", cluster.stop)
                for each in dict.fromkeys((*wanted, cloud)):  # both, when one context serves
                    cross_check(self, each, cluster)
            except CloudSetupError as exc:
                self.problems[key] = str(exc)
                raise
            self.clusters[key] = cluster
        return self.clusters[key]

    def _clouds_served_by(self, context: str) -> tuple[str, ...]:
        """The clouds whose scenarios run on `context` (both, when one context serves them)."""
        return tuple(c for c in self.settings.clouds if self.settings.context_for(c) == context)

    def upgrade_webhooks(self, versions: WebhookVersions) -> None:
        """The upgrade flow's step between cloud-cluster@before and @after: every attached
        cluster upgraded in place (clusters.upgrade_webhooks), and those attached later get
        `versions`. A failed upgrade fails the @after scenarios with its error."""
        from crossfed.cloud.clusters import upgrade_webhooks
        from crossfed.progress import progress

        if versions == self.webhook_versions:
            return
        tenant = self.azure.tenant_id if self.azure else ""
        with progress(f"cloud: webhook upgrade {self.webhook_versions} -> {versions}"):
            for context, cluster in self.clusters.items():
                wanted = self._clouds_served_by(context)
                upgraded = upgrade_webhooks(cluster, wanted, self.settings, tenant, versions)
                if self.settings.reference_mutator:
                    done = f"the reference mutator now applies {versions}"
                else:
                    done = f"upgraded {', '.join(upgraded) or 'nothing (same charts)'}"
                log.info("crossfed cloud: context %s: %s", context, done)
        self.webhook_versions = versions

    def _authority_for_pods(self) -> str | None:
        if self.azure is None:
            return None
        from crossfed.doctor.azure import _known_authority

        host = self.azure.cloud.authority_host
        return None if _known_authority(host) else host

    def stop(self) -> list[str]:
        return self.teardown.run()


def workload_ca() -> str | None:
    """The CA the workload trusts: the harness's own SDK setting (AWS_CA_BUNDLE, else
    REQUESTS_CA_BUNDLE); None against the public clouds (system roots)."""
    return os.environ.get("AWS_CA_BUNDLE") or os.environ.get("REQUESTS_CA_BUNDLE") or None


@dataclass
class CloudRun(ScenarioRun):
    judgement: Judgement | None = None
    waited: float = 0.0
    environment: str = ""


class CloudScenarios:
    """The `cloud-process` or `cloud-cluster` environment over a session's CloudTier."""

    def __init__(self, tier: CloudTier, where: str, versions: WebhookVersions | None = None,
                 phase: str | None = None) -> None:
        """`where`: "process" or "cluster". With the upgrade flow, `phase` ("before"/"after")
        names the environment cloud-cluster@phase and `versions` are that phase's: the
        @after environment upgrades the tier's clusters to them first."""
        self.tier, self.where = tier, where
        self.name = f"cloud-{where}" + (f"@{phase}" if phase else "")
        self.versions = versions or tier.webhook_versions
        if where == "cluster" and self.versions != tier.webhook_versions:
            tier.upgrade_webhooks(self.versions)

    # --- run ------------------------------------------------------------------------------

    def run(self, plan: FederationPlan, teardown: Teardown) -> CloudRun:
        cloud = _direction(plan)
        reason = self.tier.settings.skip_reason(cloud, self.where)
        if reason:
            pytest.skip(reason)
        problem = self.tier.cloud_problem(cloud)
        if problem:
            raise CloudSetupError(f"{cloud}: {problem}")
        suffix = f"{self.tier.run_id}-{hashlib.sha256(plan.name.encode()).hexdigest()[:6]}"
        plan = isolate(plan, suffix)
        cluster = self.tier.cluster_for(cloud) if self.where == "cluster" else None
        reaches = (self.tier.aws if cloud == "aws" else self.tier.azure).reaches_this_machine
        cluster_token = (cluster is not None and plan.token == "projected"
                         and plan.issuer == "primary"
                         and (plan.azure is None or plan.audience == AZURE_AUDIENCE))
        if plan.issuer == "primary" and cluster is not None:
            issuer: Any = cluster.signing
        else:
            issuer = self.tier.issuers.issuer_for(plan.issuer)
            if not reaches:
                pytest.skip(f"the token comes from crossfed's issuer {issuer.url} on this "
                            f"machine, which the {cloud} cloud cannot reach; it runs against "
                            "`crossfed serve` (or in pods of a cluster with a public issuer)")
        try:  # a learned issuer: the variants that need the cluster's key raise
            token = None if cluster_token else token_for(plan.token, issuer, plan.workload,
                                                         plan.audience)
        except SigningKeyUnavailable as exc:
            pytest.skip(str(exc))
        if cloud == "aws" and plan.aws is not None and not plan.aws.register_provider:
            self._skip_if_provider_exists(issuer.url)
        run = CloudRun(plan, environment=self.name)
        applied_at = time.monotonic()
        if cloud == "aws":
            self._apply_aws(plan, issuer.url, run, teardown)
        else:
            self._apply_azure(plan, issuer.url, run, teardown)
        runner = self._workload(plan, run, cluster, token, cluster_token, teardown)
        self._wait(plan, run, runner, applied_at, time.monotonic())
        return run

    def _skip_if_provider_exists(self, issuer_url: str) -> None:
        from crossfed.aws.trust_policy_templates import provider_key

        assert self.tier.aws is not None
        iam = self.tier.read_only_iam()
        wanted = provider_key(issuer_url)
        for entry in iam.list_open_id_connect_providers().get("OpenIDConnectProviderList", []):
            if entry["Arn"].split("oidc-provider/", 1)[-1] == wanted:
                pytest.skip(f"an IAM OIDC provider for {issuer_url} exists in the account "
                            f"({entry['Arn']}), so a token of that issuer cannot meet none; "
                            "crossfed never deletes a provider it did not create")

    def _apply_aws(self, plan: FederationPlan, issuer_url: str, run: CloudRun,
                   teardown: Teardown) -> None:
        from crossfed.aws.provision import AwsProvisioner

        aws = self.tier.aws
        assert aws is not None and plan.aws is not None
        provisioner = AwsProvisioner(aws.session, self.tier.run_id, tags=self.tier.tags.aws())
        run.applied = provisioner.apply(plan.aws, plan.name, issuer_url, plan.trusted_account,
                                        plan.audience, teardown)
        log.info("crossfed cloud: %s: role %s, bucket %s", plan.name, run.applied.role_arn,
                 run.applied.bucket)

    def _apply_azure(self, plan: FederationPlan, issuer_url: str, run: CloudRun,
                     teardown: Teardown) -> None:
        from crossfed.azure.provision import AzureProvisioner

        azure = self.tier.azure
        assert azure is not None and plan.azure is not None
        provisioner = AzureProvisioner(azure.account(), self.tier.run_id,
                                       tags=self.tier.tags.as_dict(),
                                       propagation_timeout=self.tier.settings.propagation_timeout)
        run.applied_azure = provisioner.apply(plan.azure, plan.name, issuer_url,
                                              plan.trusted_account, teardown)
        for kind, seconds in (getattr(run.applied_azure, "propagation", None) or {}).items():
            record_wait(kind, seconds)
        log.info("crossfed cloud: %s: identity %s, vault %s", plan.name,
                 run.applied_azure.client_id, run.applied_azure.vault_url)

    # --- the workload -----------------------------------------------------------------------

    def _workload(self, plan: FederationPlan, run: CloudRun, cluster: CloudCluster | None,
                  token: str | None, cluster_token: bool, teardown: Teardown) -> _Workload:
        targets = self._targets(run)
        aws, azure = workloads(plan, run, self.versions)
        workload = _Workload(self, plan, run, targets, aws, azure,
                             attempt.WorkloadToken(token) if token else None, cluster)
        if cluster is not None:
            cluster.kube.runner.prepare(
                plan.workload.namespace, plan.workload.name, teardown, aws=aws, azure=azure,
                forged_token=token,
                aws_audience=plan.audience if plan.audience != STS_AUDIENCE else None)
            if cluster_token:  # what the pod will present: the same claims, by TokenRequest
                from crossfed.doctor.workload_token import token_from_cluster

                audience = plan.audience if plan.aws is not None else AZURE_AUDIENCE
                lifetime = int(min(86400, self.tier.settings.propagation_timeout + 900))
                workload.held = attempt.WorkloadToken(token_from_cluster(
                    str(self.tier.settings.kubeconfig), cluster.context, plan.workload,
                    audience, seconds=lifetime))
                workload.projected = True
        return workload

    def _targets(self, run: CloudRun) -> SdkTargets:
        azure = self.tier.azure
        authority = None
        verify = True
        if azure is not None and run.applied_azure is not None:
            authority = self.tier._authority_for_pods()
            verify = azure.verify_challenge(run.applied_azure.vault_url)
        endpoint = self.tier.aws.workload_endpoint() if self.tier.aws else None
        services = tuple(sorted((k, v) for k, v in os.environ.items()
                                if k.startswith("AWS_ENDPOINT_URL_") and v))
        return SdkTargets(endpoint, workload_ca(), authority_host=authority,
                          skip_challenge_resource_check=not verify,
                          aws_service_endpoints=services)

    # --- propagation ------------------------------------------------------------------------

    def _wait(self, plan: FederationPlan, run: CloudRun, workload: _Workload,
              applied_at: float, ready_at: float) -> None:
        """Waits are measured from the start of the apply (what a user waits for after
        creating the objects); the timeout counts from its end (what the cloud is given)."""
        from crossfed.progress import progress

        with progress(f"cloud: {plan.name}: waiting for {_direction(plan)}'s changes to "
                      "propagate", eager=False) as waiting:
            self._poll(plan, run, workload, applied_at, ready_at, waiting.started)

    def _poll(self, plan: FederationPlan, run: CloudRun, workload: _Workload,
              applied_at: float, ready_at: float, on_wait: Callable[[], None]) -> None:
        timeout = self.tier.settings.propagation_timeout
        deadline = ready_at + timeout
        delay, polls, last_note = 0.25, 0, applied_at
        first_success: dict[str, float] = {}
        while True:
            polls += 1
            quick = workload.exchange()
            now = time.monotonic()
            for step in succeeded_steps(quick):
                first_success.setdefault(step, now - applied_at)
            verdict = workload.judge(quick, quick=True)
            if verdict.settled:
                result = workload.run(polls)
                run.result = result
                run.judgement = workload.judge(result.report, quick=False)
                if run.judgement.settled or time.monotonic() > deadline:
                    break
            elif time.monotonic() > deadline:
                run.result = workload.run(polls)
                run.judgement = workload.judge(run.result.report, quick=False)
                break
            if time.monotonic() - last_note >= 10:
                last_note = time.monotonic()
                log.info("crossfed cloud: %s: waiting for %s to propagate (%.0f s of %.0f s): "
                         "%s", plan.name, _direction(plan), last_note - applied_at, timeout,
                         verdict.why)
            on_wait()  # not settled yet: a propagation wait, said once
            time.sleep(delay)
            delay = min(MAX_POLL, delay * 2)
        run.waited = time.monotonic() - applied_at
        for step, seconds in first_success.items():
            record_wait(STEP_KINDS[step], seconds)
        log.info("crossfed cloud: %s: settled after %.1f s (%d poll(s)): %s", plan.name,
                 run.waited, polls, run.judgement.why if run.judgement else "?")

    def verdict(self, run: ScenarioRun) -> None:
        assert isinstance(run, CloudRun) and run.result is not None
        judgement = run.judgement
        if "probe" not in run.result.report:
            raise VerdictError(f"plan {run.plan.name!r} ({self.name}): the probe failed (exit "
                               f"{run.result.exit_code}) before reporting:\n"
                               f"{scrub_text(run.result.stderr)}")
        if judgement is not None and judgement.passed and judgement.settled:
            return
        assert judgement is not None
        head = (f"plan {run.plan.name!r} ({expectation(run.plan)} expected, {self.name}): "
                + ("" if judgement.settled else
                   f"still unexplained after waiting {run.waited:.0f} s "
                   "(--cloud-propagation-timeout): ") + judgement.why)
        raise VerdictError(head + "\n  " + "\n  ".join(judgement.problems)
                           + "\ncloud diagnosis (from what the cloud holds):\n"
                           + scrub_text(diagnosis.render(judgement.checks) or "  (none)"))


@dataclass
class _Workload:
    """One scenario's workload and how to poll, run and judge it."""

    env: CloudScenarios
    plan: FederationPlan
    scenario: CloudRun
    targets: SdkTargets
    aws: AwsWorkload | None
    azure: AzureWorkload | None
    held: attempt.WorkloadToken | None  # never in a repr: a live credential
    cluster: CloudCluster | None
    projected: bool = False
    # (refusal signature, when) -> the diagnosis then: read again only when the refusal
    # changes or every DIAGNOSE_EVERY s, so polls stay ≤2 s apart against a real cloud
    _cached: tuple[Any, float, list[Any]] | None = field(default=None, repr=False)

    @property
    def token(self) -> str | None:
        return self.held.value if self.held is not None else None

    @property
    def tier(self) -> CloudTier:
        return self.env.tier

    def exchange(self) -> dict[str, Any]:
        assert self.held is not None
        if self.aws is not None:
            aws = self.tier.aws
            assert aws is not None
            return attempt.aws_exchange(aws.session, aws.region, self.aws.role_arn,
                                        self.aws.bucket, self.held)
        assert self.azure is not None and self.tier.azure is not None
        from crossfed.doctor.azure import _known_authority

        cloud = self.tier.azure.cloud
        return attempt.azure_exchange(
            self.azure.tenant_id, self.azure.client_id, self.azure.vault_url, self.azure.secret,
            self.held, cloud.authority_host, self.tier.azure.ca_bundle,
            not self.targets.skip_challenge_resource_check,
            _known_authority(cloud.authority_host))

    def run(self, attempt_number: int) -> ProbeResult:
        plan = self.plan
        if self.cluster is None:
            assert self.token is not None
            return run_probe(self.token, self.targets, aws=self.aws, azure=self.azure,
                             work_root=self.tier.state_dir / "pods")
        return self.cluster.kube.runner.run_pod(
            plan.workload.namespace, plan.workload.name, self.targets, aws=self.aws,
            azure=self.azure, forged_token=None if self.projected else self.token,
            pod_name=f"probe-{attempt_number}")

    def judge(self, report: dict[str, Any], quick: bool) -> Judgement:
        plan = self.plan
        rbac = False
        if self.aws is not None:
            applied = self.scenario.applied
            clients = ("boto3",) if quick else ("boto3", "cli")
            problems = aws_outcome_problems(plan, report, applied.role_name,
                                            applied.account_id, applied.object_key, clients)
        else:
            applied_az = self.scenario.applied_azure
            rbac = bool(getattr(applied_az, "rbac", False))
            credentials = ("workload",) if quick else ("workload", "default")
            problems = azure_outcome_problems(plan, report, applied_az.secret_sha256,
                                              credentials)
        return judge(plan, report, problems, lambda: self.cached_diagnosis(report), rbac,
                     lagging=self.lagging())

    def lagging(self) -> set[str]:
        """Checks of objects the tier itself just created: their reads can lag the creation
        (IAM and ARM are eventually consistent too), so "not found" is propagation."""
        if self.aws is not None and self.plan.aws is not None:
            return {"role", "provider"} if self.plan.aws.register_provider else {"role"}
        if self.plan.azure is not None and not self.plan.azure.unknown_client_id:
            return {"client", "vault"}
        return set()

    def cached_diagnosis(self, report: dict[str, Any]) -> list[Any]:
        from crossfed.cloud.judging import refusals

        # the workload's own report carries its token's claims (judged as `presented`)
        signature = (sorted((step, sorted(codes)) for step, codes in refusals(report).items()),
                     repr(report.get("tokens")))
        now = time.monotonic()
        if (self._cached is not None and self._cached[0] == signature
                and now - self._cached[1] < DIAGNOSE_EVERY):
            return self._cached[2]
        try:
            checks = self.diagnose(report)
        except Exception as exc:  # a read that failed explains nothing; say what, scrubbed
            from crossfed.doctor.report import skip

            checks = [skip("diagnosis", f"could not read the cloud's configuration: "
                           f"{type(exc).__name__}: {scrub_text(str(exc))[:300]}")]
        self._cached = (signature, now, checks)
        return checks

    def diagnose(self, report: dict[str, Any]) -> list[Any]:
        assert self.token is not None
        from crossfed.jwt_view import MalformedJwt, parse

        try:
            used = parse(self.token).claims
        except MalformedJwt:
            used = {}
        if self.aws is not None:
            aws = self.tier.aws
            assert aws is not None
            applied = self.scenario.applied
            iam = self.tier.read_only_iam()
            checks = diagnosis.diagnose_aws(iam, applied.role_arn, applied.role_name,
                                            self.plan.workload, self.token,
                                            os.environ.get("AWS_CA_BUNDLE") or None,
                                            applied.bucket)
            return diagnosis.presented(report, "AWS_WEB_IDENTITY_TOKEN_FILE", used) + checks
        azure = self.tier.azure
        assert azure is not None and self.azure is not None
        applied_az = self.scenario.applied_azure
        arm = self.tier.read_only_arm()
        told_known = self.azure.client_id == applied_az.client_id
        identity = f"{azure.resource_group}/{applied_az.identity_name}" if told_known else None
        checks = diagnosis.diagnose_azure(
            arm, self.token, self.plan.workload, identity, self.azure.client_id,
            self.azure.tenant_id, azure.tenant_id, azure.ca_bundle, applied_az.vault_url,
            applied_az.secret_name, self._secret_client(applied_az.vault_url))
        return diagnosis.presented(report, "AZURE_FEDERATED_TOKEN_FILE", used) + checks

    def _secret_client(self, vault_url: str) -> Any:
        from azure.keyvault.secrets import SecretClient

        azure = self.tier.azure
        assert azure is not None
        verify: dict[str, Any] = {"connection_verify": azure.ca_bundle} if azure.ca_bundle else {}
        return SecretClient(vault_url, azure.credential,
                            verify_challenge_resource=azure.verify_challenge(vault_url), **verify)
