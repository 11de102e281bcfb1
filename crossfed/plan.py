"""A federation plan: which service account should reach which target, and what must happen.

Plans are data. A negative scenario is the positive plan with one thing changed (`but`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from crossfed.issuer.tokens import ServiceAccountRef

if TYPE_CHECKING:
    from crossfed.workload.template import WorkloadTemplate

STS_AUDIENCE = "sts.amazonaws.com"

# How the workload's token is made. "projected" is what the kubelet gives a pod; the others
# are forgeries or faults a verifier must refuse.
TokenVariant = Literal["projected", "expired", "foreign_key", "forged_kid", "alg_none", "hs256"]
# Which issuer stands behind the token: the environment's own, one whose host is down, or one
# whose certificate chains to a CA nobody trusts.
IssuerVariant = Literal["primary", "unreachable", "untrusted_ca"]


@dataclass(frozen=True)
class AwsTarget:
    bucket: str = "probe"
    object_key: str = "test-file.txt"
    permissions: tuple[str, ...] = ("s3:GetObject", "s3:ListBucket")
    provider_client_ids: tuple[str, ...] = (STS_AUDIENCE,)
    register_provider: bool = True
    # None: computed from the chain the issuer serves, as a careful user does.
    thumbprint: str | None = None
    # Path of a trust-policy template (see trust_policy_templates); None: the correct IRSA one.
    trust_policy: str | None = None


AZURE_AUDIENCE = "api://AzureADTokenExchange"


@dataclass(frozen=True)
class AzureTarget:
    secret: str = "probe-secret"
    secret_permissions: tuple[str, ...] = ("get",)
    # None: the token's issuer (correct). Else the issuer written into the federated credential.
    credential_issuer: str | None = None
    credential_audience: str = AZURE_AUDIENCE
    create_secret: bool = True
    # The workload is told a well-formed client id / tenant id that nobody registered.
    unknown_client_id: bool = False
    unknown_tenant: bool = False


@dataclass(frozen=True)
class Expectation:
    allowed: bool = True
    error_code: str | None = None
    # where a denial shows: AWS "assume" or "list"; Azure "token" or "secret"
    step: Literal["assume", "list", "token", "secret"] = "assume"
    failed_check: str | None = None  # the check the stand-in's diagnosis must name


@dataclass(frozen=True)
class FederationPlan:
    name: str
    workload: ServiceAccountRef
    audience: str = STS_AUDIENCE
    trusted: ServiceAccountRef | None = None  # whom the role trusts; default: the workload
    aws: AwsTarget | None = field(default_factory=AwsTarget)
    azure: AzureTarget | None = None
    token: TokenVariant = "projected"
    issuer: IssuerVariant = "primary"
    expect: Expectation = field(default_factory=Expectation)
    # A workload template's YAML file (crossfed/workload/template.py) to run instead of the
    # probe: a team's own application, judged by the template's success condition.
    workload_template: str | None = None

    @property
    def trusted_account(self) -> ServiceAccountRef:
        return self.trusted or self.workload

    def but(self, **changes: Any) -> FederationPlan:
        return dataclasses.replace(self, **changes)

    def template(self) -> WorkloadTemplate | None:
        """The plan's workload template, read and validated (TemplateError names the field)."""
        if self.workload_template is None:
            return None
        from crossfed.workload.template import WorkloadTemplate

        return WorkloadTemplate.from_file(self.workload_template)

    def denied(self, code: str, check: str,
               step: Literal["assume", "list", "token", "secret"] = "assume") -> FederationPlan:
        return self.but(expect=Expectation(False, code, step, check))


def isolate(plan: FederationPlan, suffix: str) -> FederationPlan:
    """The plan with its service accounts in namespaces of their own (names carry the run id),
    so scenarios can run side by side on one cluster and an interrupted run can be swept."""

    def moved(account: ServiceAccountRef | None) -> ServiceAccountRef | None:
        if account is None:
            return None
        return ServiceAccountRef(f"{account.namespace}-{suffix}"[:63].rstrip("-"), account.name)

    return plan.but(workload=moved(plan.workload), trusted=moved(plan.trusted))
