"""`crossfed sweep --aws`: find what crossfed left in an AWS account, by its tags, and delete it
in the order IAM and S3 need.

Found (cloud-tier facts, section 7: the tagging API does not cover IAM roles):
- roles: ListRoles(PathPrefix=/crossfed/) + ListRoleTags;
- managed policies: ListPolicies(Scope=Local, PathPrefix=/crossfed/) + ListPolicyTags;
- OIDC providers: ListOpenIDConnectProviders + ListOpenIDConnectProviderTags; only a provider
  crossfed created carries the run-id tag (a reused one is never tagged), so only those go;
- buckets: ListBuckets + GetBucketTagging.
Deleted in that order: a role's inline policies and attachments first (then the managed
policies are free), a policy's non-default versions first, a bucket's objects, versions and
delete markers first (crossfed/aws/deletion.py). Never an object without crossfed-run-id.

AWS is reached through boto3's default chain only (AWS_PROFILE, AWS_ACCESS_KEY_ID..., the web
identity or container credentials), with the SDK's own AWS_DEFAULT_REGION (else AWS_REGION),
AWS_ENDPOINT_URL and AWS_CA_BUNDLE; --aws-region overrides the region.

CHOICE: a provider crossfed created in one run may be reused by a later run still in progress;
sweeping the first run deletes it all the same (it is that run's object), and the later run
fails its STS exchange with InvalidIdentityToken. Sweep by age, or by the run id of a run that
is over, to avoid it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any, TextIO

from crossfed.aws import deletion
from crossfed.cloud.sweep import Leftover, Selector, SweepUsageError, delete_all, one_line
from crossfed.cloud.tags import IAM_PATH, from_aws

log = logging.getLogger("crossfed.sweep")
DEFAULT_REGION = "us-east-1"  # IAM is global; S3's ListBuckets answers every region's buckets


def clients(region: str | None) -> tuple[Any, Any]:
    import boto3
    from botocore.exceptions import BotoCoreError, ProfileNotFound

    try:
        session = boto3.Session(region_name=region) if region else boto3.Session()
    except (ProfileNotFound, BotoCoreError) as exc:
        raise SweepUsageError(f"cannot load the AWS configuration: {one_line(str(exc))}; "
                              "check AWS_PROFILE and ~/.aws/config") from exc
    if session.get_credentials() is None:
        raise SweepUsageError("no AWS credentials found by boto3's default chain; set "
                              "AWS_PROFILE (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                              "or run where a role's credentials are provided)")
    # boto3 reads AWS_DEFAULT_REGION; AWS_REGION is the other SDKs' and CLI v2's name
    region = session.region_name or os.environ.get("AWS_REGION") or DEFAULT_REGION
    return session.client("iam", region_name=region), session.client("s3", region_name=region)


def _listing(what: str, call: Callable[[], Any]) -> Any:
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    try:
        return call()
    except NoCredentialsError as exc:
        raise SweepUsageError("no AWS credentials found by boto3's default chain; set "
                              "AWS_PROFILE (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)") \
            from exc
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise SweepUsageError(f"AWS refused to list {what} ({error.get('Code')}: "
                              f"{one_line(str(error.get('Message')))}); the sweeping "
                              "principal needs iam:List*, iam:Get*, s3:ListAllMyBuckets and "
                              "s3:GetBucketTagging, plus the delete permissions") from exc
    except BotoCoreError as exc:
        raise SweepUsageError(f"cannot reach AWS listing {what}: {one_line(str(exc))}; check "
                              "AWS_ENDPOINT_URL, AWS_CA_BUNDLE and the network") from exc


def _pages(client: Any, operation: str, key: str, **kwargs: Any) -> list[Any]:
    found: list[Any] = []
    for page in client.get_paginator(operation).paginate(**kwargs):
        found += page.get(key, [])
    return found


def _tags(what: str, call: Callable[[], Any]) -> dict[str, str] | None:
    """An object's tags, or None if they cannot be read (then it is not judged crossfed's)."""
    from botocore.exceptions import ClientError

    try:
        return from_aws(call())
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code in ("NoSuchTagSet", "NoSuchEntity", "NoSuchBucket"):
            return {}
        log.warning("crossfed sweep: cannot read the tags of %s (%s); leaving it", what, code)
        return None


def find(iam: Any, s3: Any, selector: Selector) -> list[Leftover]:
    """crossfed's objects the selector takes, in the order they must be deleted."""
    leftovers: list[Leftover] = []
    roles = _listing("IAM roles", lambda: _pages(iam, "list_roles", "Roles",
                                                 PathPrefix=IAM_PATH))
    for role in roles:
        name = role["RoleName"]
        tags = _tags(f"role {name}", lambda name=name: _pages(
            iam, "list_role_tags", "Tags", RoleName=name))
        if selector.selects(tags):
            leftovers.append(Leftover("role", f"{role.get('Path', IAM_PATH)}{name}", tags or {},
                                      lambda name=name: deletion.delete_role(iam, name)))
    policies = _listing("IAM policies", lambda: _pages(
        iam, "list_policies", "Policies", Scope="Local", PathPrefix=IAM_PATH))
    for policy in policies:
        arn = policy["Arn"]
        tags = _tags(f"policy {arn}", lambda arn=arn: _pages(
            iam, "list_policy_tags", "Tags", PolicyArn=arn))
        if selector.selects(tags):
            leftovers.append(Leftover("policy", f"{policy.get('Path', IAM_PATH)}"
                                      f"{policy['PolicyName']}", tags or {},
                                      lambda arn=arn: deletion.delete_policy(iam, arn)))
    providers = _listing("IAM OIDC providers", lambda: iam.list_open_id_connect_providers()
                         .get("OpenIDConnectProviderList", []))
    for provider in providers:
        arn = provider["Arn"]
        tags = _tags(f"OIDC provider {arn}", lambda arn=arn: _pages(
            iam, "list_open_id_connect_provider_tags", "Tags", OpenIDConnectProviderArn=arn))
        if selector.selects(tags):
            leftovers.append(Leftover("OIDC provider", arn.split(":oidc-provider/", 1)[-1],
                                      tags or {},
                                      lambda arn=arn: deletion.delete_provider(iam, arn)))
    buckets = _listing("S3 buckets", lambda: _pages(s3, "list_buckets", "Buckets"))
    for bucket in buckets:
        name = bucket["Name"]
        tags = _tags(f"bucket {name}", lambda name=name: s3.get_bucket_tagging(
            Bucket=name).get("TagSet", []))
        if selector.selects(tags):
            leftovers.append(Leftover("bucket", name, tags or {},
                                      lambda name=name: deletion.delete_bucket(s3, name)))
    return leftovers


def sweep(iam: Any, s3: Any, selector: Selector, dry_run: bool, out: TextIO,
          err: TextIO) -> int:
    """Find and delete (or list); returns how many could not be deleted."""
    leftovers = find(iam, s3, selector)
    if not leftovers:
        print("crossfed sweep: aws: nothing to delete", file=out)
        return 0
    return delete_all("aws", leftovers, dry_run, out, err)
