"""Applies the AWS side of a plan with boto3: code that runs unchanged against real AWS.

Creates bucket + object, the IAM OIDC provider (unless one exists for the issuer), a permission
policy, the role with its trust policy, and the attachment; every create registers its undo
in the given Teardown at once, so a failure half-way leaves nothing behind.

What it creates is marked as crossfed's (crossfed/cloud/tags.py): every object carries the
given tags (default: crossfed-run-id only; the cloud tier passes CloudTags(...).aws(), with
created-at and delete-after), roles and policies live under the IAM path /crossfed/, so that
`crossfed sweep --aws` finds what a killed run left.

Names are valid and unique per run and plan: S3 bucket names are global across all accounts
(3-63 characters: lower-case letters, digits, hyphens; a letter or digit at both ends; no
"xn--"/"sthree-" prefix, no "-s3alias"/"--ol-s3" suffix), IAM role names at most 64 and policy
names at most 128 characters of [A-Za-z0-9+=,.@_-]. Each is "crossfed-<run>-<plan, readable,
cut to fit>-<digest>", the digest covering run, plan and (for buckets) account and region.

An OIDC provider is one per issuer URL per account, maybe shared with other runs or with
objects that are not crossfed's: an existing one is reused (the plan's client ids added if
missing, and only those removed again at tear-down), never deleted; one created here is tagged
and deleted at tear-down. A creation race (EntityAlreadyExists: another run created it in
between) falls back to reuse.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from crossfed.aws import deletion
from crossfed.aws.trust_policy_templates import irsa_trust_policy, provider_key, render_template
from crossfed.cleanup import Teardown
from crossfed.cloud.tags import IAM_PATH, RUN_ID
from crossfed.issuer.tokens import ServiceAccountRef
from crossfed.oidc.fetch import top_thumbprint
from crossfed.plan import AwsTarget

log = logging.getLogger("crossfed.aws")
TEST_OBJECT_BODY = b"crossfed probe object\n"


@dataclass(frozen=True)
class AppliedAws:
    role_arn: str
    role_name: str
    bucket: str
    object_key: str
    provider_arn: str
    account_id: str
    provider_created: bool = False  # False: an existing provider was reused (never deleted)
    trust_policy: dict[str, Any] | None = None  # the role's trust policy, as created


ROLE_NAME_LIMIT, POLICY_NAME_LIMIT = 64, 128
BUCKET_MIN, BUCKET_LIMIT = 3, 63
IAM_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9+=,.@_-]+")
BUCKET_NOT_ALLOWED = re.compile(r"[^a-z0-9-]+")
DIGEST = 8


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:DIGEST]


def _fit(prefix: str, readable: str, digest: str, limit: int) -> str:
    room = limit - len(prefix) - len(digest) - 1
    readable = readable[:max(room, 0)].strip("-.")
    return f"{prefix}{readable}-{digest}" if readable else f"{prefix}{digest}"


def resource_name(run_id: str, plan_name: str, limit: int = ROLE_NAME_LIMIT) -> str:
    """An IAM role or policy name: `crossfed-<run>-<plan>-<digest>` within limit characters of
    IAM's set; the digest (of run and plan) keeps names unique when the readable part is cut
    or had characters replaced."""
    run = IAM_NOT_ALLOWED.sub("-", run_id).strip("-")[:16] or "run"
    readable = IAM_NOT_ALLOWED.sub("-", plan_name)
    return _fit(f"crossfed-{run}-", readable, _digest(run_id, plan_name), limit)


def bucket_name(run_id: str, plan_name: str, account_id: str = "", region: str = "") -> str:
    """A valid, globally unique S3 bucket name: `crossfed-<run>-<plan>-<digest>` in lower-case
    letters, digits and hyphens (the digest also covers account and region: bucket names are
    shared by every account of the partition)."""
    run = BUCKET_NOT_ALLOWED.sub("-", run_id.lower()).strip("-")[:12] or "run"
    readable = re.sub(r"-{2,}", "-", BUCKET_NOT_ALLOWED.sub("-", plan_name.lower()))
    name = _fit(f"crossfed-{run}-", readable,
                _digest(run_id, plan_name, account_id, region), BUCKET_LIMIT)
    assert valid_bucket_name(name), name
    return name


def valid_bucket_name(name: str) -> bool:
    """S3's general-purpose bucket naming rules (those a name of crossfed's could break)."""
    return (BUCKET_MIN <= len(name) <= BUCKET_LIMIT
            and re.fullmatch(r"[a-z0-9][a-z0-9.-]*[a-z0-9]", name) is not None
            and ".." not in name and not name.startswith(("xn--", "sthree-"))
            and not name.endswith(("-s3alias", "--ol-s3", ".mrap", "--x-s3"))
            and re.fullmatch(r"\d+\.\d+\.\d+\.\d+", name) is None)


class AwsProvisioner:
    def __init__(self, session: boto3.Session, run_id: str, ca_bundle: str | None = None,
                 endpoint_url: str | None = None,
                 issuer_locations: Mapping[str, str] | None = None,
                 tags: list[dict[str, str]] | None = None) -> None:
        """tags: put on every object created (IAM's/S3's [{"Key", "Value"}] shape); default
        [{"Key": "crossfed-run-id", "Value": run_id}]. The cloud tier passes
        crossfed.cloud.tags.CloudTags(...).aws()."""
        # issuer URL -> where its documents are served (a learned cluster issuer's mirror):
        # the thumbprint is read off the host that actually serves them.
        self.issuer_locations = dict(issuer_locations or {})
        kwargs: dict[str, Any] = {}
        if endpoint_url:
            kwargs["endpoint_url"] = endpoint_url
        if ca_bundle:
            kwargs["verify"] = ca_bundle
        self.iam = session.client("iam", **kwargs)
        self.s3 = session.client("s3", **kwargs)
        self.sts = session.client("sts", **kwargs)
        self.region = session.region_name or "us-east-1"
        self.run_id = run_id
        self.tags = [dict(t) for t in tags] if tags else [{"Key": RUN_ID, "Value": run_id}]
        if not any(t.get("Key") == RUN_ID for t in self.tags):
            raise ValueError(f"tags must carry {RUN_ID}: without it `crossfed sweep` could "
                             "never find what this run creates")

    def apply(self, target: AwsTarget, plan_name: str, issuer_url: str,
              trusted: ServiceAccountRef, audience: str, teardown: Teardown) -> AppliedAws:
        account_id = self.sts.get_caller_identity()["Account"]
        bucket = self._bucket(bucket_name(self.run_id, f"{plan_name}-{target.bucket}",
                                          account_id, self.region),
                              target.object_key, teardown)
        provider_arn, created = self._provider(issuer_url, account_id, target, teardown)
        role_name = resource_name(self.run_id, plan_name, ROLE_NAME_LIMIT)
        policy_name = resource_name(self.run_id, plan_name, POLICY_NAME_LIMIT)
        policy_arn = self._permission_policy(policy_name, bucket, target.permissions, teardown)
        if target.trust_policy:
            trust = render_template(Path(target.trust_policy), provider_arn, issuer_url,
                                    trusted.subject, audience)
        else:
            trust = irsa_trust_policy(provider_arn, issuer_url, trusted.subject, audience)
        role_arn = self._role(role_name, trust, policy_arn, teardown)
        return AppliedAws(role_arn, role_name, bucket, target.object_key, provider_arn,
                          account_id, provider_created=created, trust_policy=trust)

    def _bucket(self, bucket: str, key: str, teardown: Teardown) -> str:
        config = ({} if self.region == "us-east-1"
                  else {"CreateBucketConfiguration": {"LocationConstraint": self.region}})
        self.s3.create_bucket(Bucket=bucket, **config)
        teardown.add(f"bucket {bucket}", lambda: deletion.delete_bucket(self.s3, bucket))
        self.s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": self.tags})
        self.s3.put_object(Bucket=bucket, Key=key, Body=TEST_OBJECT_BODY)
        return bucket

    def _existing_provider(self, arn: str) -> dict[str, Any] | None:
        try:
            return dict(self.iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn))
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "NoSuchEntity":
                raise
            return None

    def _provider(self, issuer_url: str, account_id: str, target: AwsTarget,
                  teardown: Teardown) -> tuple[str, bool]:
        """(provider ARN, whether this run created it)."""
        arn = f"arn:aws:iam::{account_id}:oidc-provider/{provider_key(issuer_url)}"
        if not target.register_provider:
            return arn, False  # the trust policy still names it, as a typo'd setup would
        existing = self._existing_provider(arn)
        if existing is None:
            thumbprint = target.thumbprint or top_thumbprint(
                self.issuer_locations.get(issuer_url, issuer_url))
            try:
                created = self.iam.create_open_id_connect_provider(
                    Url=issuer_url, ClientIDList=list(target.provider_client_ids),
                    ThumbprintList=[thumbprint], Tags=self.tags,
                )["OpenIDConnectProviderArn"]
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "EntityAlreadyExists":
                    raise
                # Another run created it between our read and our create: reuse it.
                log.info("crossfed: OIDC provider %s appeared meanwhile; reusing it", arn)
                existing = self._existing_provider(arn)
                if existing is None:
                    raise
            else:
                teardown.add(f"OIDC provider {created}",
                             lambda: deletion.delete_provider(self.iam, created))
                return created, True
        self._reuse_provider(arn, existing, target, teardown)
        return arn, False

    def _reuse_provider(self, arn: str, existing: Mapping[str, Any], target: AwsTarget,
                        teardown: Teardown) -> None:
        """One provider per issuer and account: reuse it and leave it for its creator; add the
        plan's client ids it lacks, and remove at tear-down only those added here."""
        present = set(existing.get("ClientIDList", []))
        for client_id in target.provider_client_ids:
            if client_id in present:
                continue
            self.iam.add_client_id_to_open_id_connect_provider(
                OpenIDConnectProviderArn=arn, ClientID=client_id)
            present.add(client_id)
            teardown.add(f"client id {client_id} of OIDC provider {arn}",
                         lambda client_id=client_id: self._remove_client_id(arn, client_id))

    def _remove_client_id(self, arn: str, client_id: str) -> None:
        try:
            self.iam.remove_client_id_from_open_id_connect_provider(
                OpenIDConnectProviderArn=arn, ClientID=client_id)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "NoSuchEntity":  # its owner deleted it
                raise

    def _permission_policy(self, name: str, bucket: str, actions: tuple[str, ...],
                           teardown: Teardown) -> str:
        statements = []
        if "s3:ListBucket" in actions:
            statements.append({"Effect": "Allow", "Action": "s3:ListBucket",
                               "Resource": f"arn:aws:s3:::{bucket}"})
        object_actions = [a for a in actions if a != "s3:ListBucket"]
        if object_actions:
            statements.append({"Effect": "Allow", "Action": object_actions,
                               "Resource": f"arn:aws:s3:::{bucket}/*"})
        document = {"Version": "2012-10-17", "Statement": statements}
        arn = self.iam.create_policy(PolicyName=name, PolicyDocument=json.dumps(document),
                                     Path=IAM_PATH, Tags=self.tags)["Policy"]["Arn"]
        teardown.add(f"policy {arn}", lambda: deletion.delete_policy(self.iam, arn))
        return arn

    def _role(self, name: str, trust: dict[str, Any], policy_arn: str,
              teardown: Teardown) -> str:
        role = self.iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust),
                                    Path=IAM_PATH, Tags=self.tags,
                                    MaxSessionDuration=3600)["Role"]
        # inline policies, attached policies, instance profiles, then the role
        teardown.add(f"role {name}", lambda: deletion.delete_role(self.iam, name))
        self.iam.attach_role_policy(RoleName=name, PolicyArn=policy_arn)
        teardown.add(f"attachment {name}", lambda: self.iam.detach_role_policy(
            RoleName=name, PolicyArn=policy_arn))
        return role["Arn"]
