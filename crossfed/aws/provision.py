"""Applies the AWS side of a plan with boto3: code that runs unchanged against real AWS.

Creates bucket + object, the IAM OIDC provider (unless one exists for the issuer), a permission
policy, the role with its trust policy, and the attachment; every create registers its undo
in the given Teardown at once, so a failure half-way leaves nothing behind.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from crossfed.aws.trust_policy_templates import irsa_trust_policy, provider_key, render_template
from crossfed.cleanup import Teardown
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


def resource_name(run_id: str, plan_name: str, limit: int) -> str:
    """`crossfed-<run>-<plan>`, lower case, cut to the service's length limit."""
    name = f"crossfed-{run_id}-{plan_name}".lower().replace("_", "-")
    return name[:limit].rstrip("-")


class AwsProvisioner:
    def __init__(self, session: boto3.Session, run_id: str, ca_bundle: str | None = None,
                 endpoint_url: str | None = None,
                 issuer_locations: Mapping[str, str] | None = None) -> None:
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
        self.tags = [{"Key": "crossfed-run-id", "Value": run_id}]

    def apply(self, target: AwsTarget, plan_name: str, issuer_url: str,
              trusted: ServiceAccountRef, audience: str, teardown: Teardown) -> AppliedAws:
        account_id = self.sts.get_caller_identity()["Account"]
        bucket = self._bucket(resource_name(self.run_id, f"{plan_name}-{target.bucket}", 63),
                              target.object_key, teardown)
        provider_arn = self._provider(issuer_url, account_id, target, teardown)
        name = resource_name(self.run_id, plan_name, 64)
        policy_arn = self._permission_policy(name, bucket, target.permissions, teardown)
        if target.trust_policy:
            trust = render_template(Path(target.trust_policy), provider_arn, issuer_url,
                                    trusted.subject, audience)
        else:
            trust = irsa_trust_policy(provider_arn, issuer_url, trusted.subject, audience)
        role_arn = self._role(name, trust, policy_arn, teardown)
        return AppliedAws(role_arn, name, bucket, target.object_key, provider_arn, account_id)

    def _bucket(self, bucket: str, key: str, teardown: Teardown) -> str:
        config = ({} if self.region == "us-east-1"
                  else {"CreateBucketConfiguration": {"LocationConstraint": self.region}})
        self.s3.create_bucket(Bucket=bucket, **config)
        teardown.add(f"bucket {bucket}", lambda: self._delete_bucket(bucket))
        self.s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": self.tags})
        self.s3.put_object(Bucket=bucket, Key=key, Body=TEST_OBJECT_BODY)
        return bucket

    def _delete_bucket(self, bucket: str) -> None:
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                self.s3.delete_object(Bucket=bucket, Key=item["Key"])
        self.s3.delete_bucket(Bucket=bucket)

    def _provider(self, issuer_url: str, account_id: str, target: AwsTarget,
                  teardown: Teardown) -> str:
        arn = f"arn:aws:iam::{account_id}:oidc-provider/{provider_key(issuer_url)}"
        if not target.register_provider:
            return arn  # the trust policy still names it, as a typo'd setup would
        try:
            existing = self.iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "NoSuchEntity":
                raise
            existing = None
        if existing is not None:
            # One provider per issuer and account: reuse it and leave it for its creator.
            for client_id in target.provider_client_ids:
                if client_id not in existing.get("ClientIDList", []):
                    self.iam.add_client_id_to_open_id_connect_provider(
                        OpenIDConnectProviderArn=arn, ClientID=client_id)
            return arn
        thumbprint = target.thumbprint or top_thumbprint(
            self.issuer_locations.get(issuer_url, issuer_url))
        created = self.iam.create_open_id_connect_provider(
            Url=issuer_url, ClientIDList=list(target.provider_client_ids),
            ThumbprintList=[thumbprint], Tags=self.tags,
        )["OpenIDConnectProviderArn"]
        teardown.add(f"OIDC provider {created}", lambda: self.iam.delete_open_id_connect_provider(
            OpenIDConnectProviderArn=created))
        return created

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
                                     Tags=self.tags)["Policy"]["Arn"]
        teardown.add(f"policy {arn}", lambda: self.iam.delete_policy(PolicyArn=arn))
        return arn

    def _role(self, name: str, trust: dict[str, Any], policy_arn: str,
              teardown: Teardown) -> str:
        role = self.iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust),
                                    Tags=self.tags, MaxSessionDuration=3600)["Role"]
        teardown.add(f"role {name}", lambda: self.iam.delete_role(RoleName=name))
        self.iam.attach_role_policy(RoleName=name, PolicyArn=policy_arn)
        teardown.add(f"attachment {name}", lambda: self.iam.detach_role_policy(
            RoleName=name, PolicyArn=policy_arn))
        return role["Arn"]
