"""The cloud accounts the tier provisions in, found the standard way: boto3's default chain
(with --aws-profile/--aws-region), DefaultAzureCredential (with --azure-subscription and, for a
non-public cloud, --azure-arm-endpoint's metadata). Endpoints and CA are the SDKs' own
environment, so the same code reaches AWS/Azure, LocalStack or `crossfed serve`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from crossfed.cloud.options import CloudSettings
from crossfed.listen import check_listen_host

log = logging.getLogger("crossfed.cloud")


class CloudSetupError(RuntimeError):
    """The tier cannot start: one line naming what is wrong and the fix."""


def on_this_machine(url: str) -> bool:
    """Is the endpoint served from this host (loopback or one of its bridges)?

    CHOICE: a cloud reached at such an address (`crossfed serve`, LocalStack) can fetch an
    issuer that listens on this machine's loopback; a cloud reached by a public name cannot,
    so scenarios whose tokens come from crossfed's own issuer are skipped against it."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        check_listen_host(host)
    except ValueError:
        return False
    return True


@dataclass
class AwsCloud:
    session: Any  # boto3.Session
    region: str
    account_id: str
    caller_arn: str
    sts_endpoint: str

    @classmethod
    def connect(cls, settings: CloudSettings) -> AwsCloud:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            session = boto3.Session(profile_name=settings.aws_profile,
                                    region_name=settings.aws_region)
        except BotoCoreError as exc:
            raise CloudSetupError(f"cannot set up boto3: {exc}; fix --aws-profile / "
                                  "AWS_PROFILE or ~/.aws/config") from exc
        region = session.region_name or "us-east-1"
        sts = session.client("sts", region_name=region)
        try:
            identity = sts.get_caller_identity()
        except NoCredentialsError as exc:
            raise CloudSetupError("no AWS credentials in boto3's default chain; set "
                                  "--aws-profile / AWS_PROFILE, AWS_ACCESS_KEY_ID and "
                                  "AWS_SECRET_ACCESS_KEY, or run where a role is available "
                                  "(CI: aws-actions/configure-aws-credentials)") from exc
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise CloudSetupError(f"AWS refused the harness's credentials ({error.get('Code')}:"
                                  f" {error.get('Message')}); refresh them") from exc
        except BotoCoreError as exc:
            raise CloudSetupError(f"cannot reach AWS STS at {sts.meta.endpoint_url}: {exc}; "
                                  "check AWS_ENDPOINT_URL and AWS_CA_BUNDLE") from exc
        log.info("crossfed cloud: AWS account %s as %s (region %s, STS %s)",
                 identity["Account"], identity["Arn"], region, sts.meta.endpoint_url)
        return cls(session, region, identity["Account"], identity["Arn"],
                   sts.meta.endpoint_url)

    def client(self, service: str) -> Any:
        return self.session.client(service, region_name=self.region)

    @property
    def reaches_this_machine(self) -> bool:
        return on_this_machine(self.sts_endpoint)

    def workload_endpoint(self) -> str | None:
        """What the workload is pointed at: the harness's own AWS_ENDPOINT_URL, if any (the
        SDKs' standard variable; unset against real AWS)."""
        return os.environ.get("AWS_ENDPOINT_URL") or None


@dataclass
class AzureCloud:
    credential: Any
    cloud: Any  # crossfed.doctor.azure.Cloud
    subscription: str
    tenant_id: str
    location: str
    resource_group: str
    resource_group_given: bool
    ca_bundle: str | None
    keyvault_authorization: str

    @classmethod
    def connect(cls, settings: CloudSettings, run_id: str) -> AzureCloud:
        from azure.core.exceptions import ClientAuthenticationError
        from azure.identity import CredentialUnavailableError, DefaultAzureCredential

        from crossfed.doctor.azure import _known_authority, cloud_from
        from crossfed.doctor.report import UsageError
        from crossfed.jwt_view import MalformedJwt, parse

        if not settings.azure_subscription:
            raise CloudSetupError("no Azure subscription: give --azure-subscription or set "
                                  "AZURE_SUBSCRIPTION_ID")
        ca = os.environ.get("REQUESTS_CA_BUNDLE") or None
        try:
            cloud = cloud_from(settings.azure_arm_endpoint, ca)
        except UsageError as exc:
            raise CloudSetupError(str(exc)) from exc
        verify: dict[str, Any] = {"connection_verify": ca} if ca else {}
        credential = DefaultAzureCredential(
            authority=cloud.authority_host, **verify,
            **({} if _known_authority(cloud.authority_host)
               else {"disable_instance_discovery": True}))
        try:
            token = credential.get_token(cloud.scope).token
        except (CredentialUnavailableError, ClientAuthenticationError) as exc:
            first = " ".join(str(exc).split())[:300]
            raise CloudSetupError(f"DefaultAzureCredential found no usable credential ({first});"
                                  " set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET"
                                  " (CI: azure/login with OIDC), or az login") from exc
        try:
            tid = str(parse(token).claims.get("tid") or "")
        except MalformedJwt:
            tid = ""
        tenant = os.environ.get("AZURE_TENANT_ID") or tid
        if not tenant:
            raise CloudSetupError("cannot tell the Azure tenant: set AZURE_TENANT_ID")
        group = settings.azure_resource_group or f"crossfed-{run_id}"
        log.info("crossfed cloud: Azure subscription %s, tenant %s, ARM %s, resource group %s "
                 "(%s)", settings.azure_subscription, tenant, cloud.arm_endpoint, group,
                 "given, kept" if settings.azure_resource_group else "created for this run")
        return cls(credential, cloud, settings.azure_subscription, tenant,
                   settings.azure_location, group, bool(settings.azure_resource_group), ca,
                   settings.keyvault_authorization)

    @property
    def reaches_this_machine(self) -> bool:
        return on_this_machine(self.cloud.arm_endpoint)

    def verify_challenge(self, vault_url: str) -> bool:
        """Key Vault's challenge names https://<keyVaultDns>: a vault URL outside that suffix
        (the stand-in's per-vault listeners on this machine) cannot match it.

        CHOICE: the check is switched off only for such vault URLs; real vaults keep it."""
        host = urlsplit(vault_url).hostname or ""
        suffix = (self.cloud.keyvault_dns or "").lstrip(".")
        return bool(suffix) and host.endswith("." + suffix)

    def account(self) -> Any:
        from crossfed.azure.provision import AzureAccount

        return AzureAccount(self.credential, self.tenant_id, self.subscription,
                            self.resource_group, self.location,
                            arm_endpoint=self.cloud.arm_endpoint, ca_bundle=self.ca_bundle,
                            skip_challenge_resource_check=self.reaches_this_machine,
                            keyvault_authorization=self.keyvault_authorization)
