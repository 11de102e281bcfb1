"""The AWS stand-in: moto (IAM, S3, STS) on one HTTPS endpoint, IAM access control on,
with the verifying STS answering AssumeRoleWithWebIdentity in front of it.

moto keeps its state in process-wide backends, so every stand-in in one process shares one
account: the first to start resets it and creates the administrator, later ones reuse both, and
the last to stop lets the next start afresh. (A second environment's stand-ins in the same run,
such as the foreign-issuer cluster's, must not wipe the first's roles.)
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import boto3
import requests
from moto.core import DEFAULT_ACCOUNT_ID
from moto.iam.models import iam_backends
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.sts.models import sts_backends

from crossfed.aws import moto_iam
from crossfed.aws.web_identity import (
    Grant,
    ProviderRecord,
    RoleRecord,
    WebIdentityRequest,
    WebIdentityVerifier,
    account_of,
)
from crossfed.aws.wire import VerifyingSTS
from crossfed.decisions import DecisionLog
from crossfed.https_server import LOOPBACK, HTTPSServer
from crossfed.oidc.fetch import KeyCache
from crossfed.pki import RunCA

PARTITION = "aws"


@dataclass
class _SharedBackend:
    live: int = 0
    admin: AdminCredentials | None = None


_BACKEND = _SharedBackend()
_BOOTSTRAP_REQUESTS = 10  # creating the administrator takes three
_UNLIMITED = 2**62


class MotoIam:
    """IamDirectory over moto's in-process IAM backend."""

    def provider_for_issuer(self, account_id: str, issuer: str) -> ProviderRecord | None:
        if not account_id or not issuer.startswith("https://"):
            return None
        wanted = issuer[len("https://"):]
        for provider in iam_backends[account_id][PARTITION].open_id_providers.values():
            if provider.url == wanted:
                return ProviderRecord(provider.arn, provider.url, tuple(provider.client_id_list),
                                      tuple(provider.thumbprint_list))
        return None

    def role(self, role_arn: str) -> RoleRecord | None:
        account_id = account_of(role_arn)
        if not account_id:
            return None
        for role in iam_backends[account_id][PARTITION].get_roles():
            if role.arn == role_arn:
                return RoleRecord(role.arn, role.name, role.assume_role_policy_document,
                                  int(role.max_session_duration or 3600))
        return None


def mint_with_moto(region: str) -> Any:
    def mint(grant: Grant, request: WebIdentityRequest) -> Any:
        backend = sts_backends[account_of(grant.role.arn)][PARTITION]
        return backend.assume_role_with_web_identity(
            region_name=region, role_session_name=request.session_name,
            role_arn=grant.role.arn, policy=request.policy, duration=grant.duration_seconds,
            external_id=None,
        )
    return mint


def explain_denial(access_key_id: str) -> tuple[str, str] | None:
    """For a web-identity session's key: its role and the actions its policies allow."""
    for backend in sts_backends.values():
        for partition_backend in backend.values():
            assumed = partition_backend.get_assumed_role_from_access_key(access_key_id)
            if assumed is None:
                continue
            account = iam_backends[account_of(assumed.role_arn)][PARTITION]
            allowed: list[str] = []
            for role in account.get_roles():
                if role.arn != assumed.role_arn:
                    continue
                documents = [next(v.document for v in p.versions if v.is_default)
                             for p in role.managed_policies.values()]
                documents += list(role.policies.values())
                for document in documents:
                    parsed = json.loads(document) if isinstance(document, str) else document
                    statements = parsed.get("Statement", [])
                    for statement in statements if isinstance(statements, list) else [statements]:
                        allowed.append(f"{statement.get('Effect')} {statement.get('Action')} on "
                                       f"{statement.get('Resource')}")
            return assumed.role_arn, (f"the session {assumed.arn} was refused by its role's "
                                      f"permission policies, which say: {allowed or 'nothing'}")
    return None


@dataclass(frozen=True)
class AdminCredentials:
    access_key_id: str
    secret_access_key: str


class AwsStandIn:
    def __init__(self, ca: RunCA, trusted_roots: str | None, region: str = "us-east-1",
                 host: str = LOOPBACK, verify: bool = True, port: int = 0) -> None:
        self.region, self.account_id = region, DEFAULT_ACCOUNT_ID
        moto_iam.apply()  # IAM's OIDC-provider rules that moto lacks
        self.ca_bundle = str(ca.bundle_path)
        self.decisions = DecisionLog()
        self.keys = KeyCache()
        moto_app = DomainDispatcherApplication(create_backend_app)
        app: Any = moto_app
        if verify:
            verifier = WebIdentityVerifier(MotoIam(), self.keys, trusted_roots)
            app = VerifyingSTS(moto_app, verifier, mint_with_moto(region), self.decisions,
                              explain_denial)
        self._server = HTTPSServer(ca.server_context("aws", host, "localhost"), host=host,
                                   port=port)
        self._server.app = app
        self.admin: AdminCredentials | None = None

    @property
    def endpoint_url(self) -> str:
        return self._server.url

    def start(self, enforce_iam: bool = True) -> AwsStandIn:
        self._server.start()
        backend = _BACKEND
        if backend.live == 0:
            requests.post(f"{self.endpoint_url}/moto-api/reset", verify=self.ca_bundle,
                          timeout=10)
            # An earlier stand-in in this process may have left enforcement on (moto keeps it
            # across resets): lift it while the administrator is created, or for good.
            self._allow_unsigned_requests(_BOOTSTRAP_REQUESTS if enforce_iam else _UNLIMITED)
            backend.admin = self._create_admin()
            if enforce_iam:
                self._allow_unsigned_requests(0)
        backend.live += 1
        self.admin = backend.admin
        return self

    def _allow_unsigned_requests(self, count: int) -> None:
        """moto's switch: the next `count` requests skip IAM access control, then it is on."""
        requests.post(f"{self.endpoint_url}/moto-api/reset-auth", data=str(count),
                      verify=self.ca_bundle, timeout=10).raise_for_status()

    def _create_admin(self) -> AdminCredentials:
        """An IAM user allowed everything: what a user would give the harness in the cloud."""
        iam = boto3.client("iam", endpoint_url=self.endpoint_url, region_name=self.region,
                           verify=self.ca_bundle, aws_access_key_id="bootstrap",
                           aws_secret_access_key="bootstrap")
        name = f"crossfed-admin-{uuid.uuid4().hex[:8]}"
        iam.create_user(UserName=name)
        iam.put_user_policy(UserName=name, PolicyName="administrator", PolicyDocument=json.dumps(
            {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return AdminCredentials(key["AccessKeyId"], key["SecretAccessKey"])

    def session(self) -> boto3.Session:
        """A boto3 session of the administrator, pointed at the stand-in."""
        assert self.admin is not None, "start() the stand-in first"
        return boto3.Session(aws_access_key_id=self.admin.access_key_id,
                             aws_secret_access_key=self.admin.secret_access_key,
                             region_name=self.region)

    def client_kwargs(self) -> dict[str, Any]:
        return {"endpoint_url": self.endpoint_url, "verify": self.ca_bundle}

    def stop(self) -> None:
        if self.admin is not None:
            backend = _BACKEND
            backend.live -= 1
            if backend.live == 0:
                backend.admin = None
            self.admin = None
        self._server.stop()
