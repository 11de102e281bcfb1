"""Deleting IAM roles, managed policies, OIDC providers and S3 buckets in the order each service
needs, with boto3: the provisioner's tear-down and `crossfed sweep --aws` share these.

- role: DeleteRole refuses (DeleteConflict) while the role has inline policies, attached managed
  policies or instance profiles: delete the inline ones, detach the managed ones, remove it from
  its instance profiles, then delete it (IAM API DeleteRole).
- managed policy: DeletePolicy refuses while it is attached or has versions besides the default:
  detach it from every role, user and group (ListEntitiesForPolicy), delete the non-default
  versions, then delete it (IAM API DeletePolicy).
- bucket: DeleteBucket refuses (BucketNotEmpty) while it holds objects, object versions or
  delete markers: delete them all (ListObjectVersions covers every one of them, also in a bucket
  that never had versioning), then delete it.

An object already gone counts as deleted (another sweep, or its owner, got there first).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

GONE = frozenset({"NoSuchEntity", "NoSuchBucket", "404", "NotFound"})
DELETE_BATCH = 1000  # DeleteObjects takes at most 1000 keys
EMPTYING_PASSES = 20  # then DeleteBucket says why the bucket is still not empty


def _gone(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in GONE


def _pages(client: Any, operation: str, key: str, **kwargs: Any) -> list[Any]:
    found: list[Any] = []
    for page in client.get_paginator(operation).paginate(**kwargs):
        found += page.get(key, [])
    return found


def delete_role(iam: Any, name: str) -> bool:
    """Inline policies, attached policies, instance profiles, then the role; False if it was
    already gone."""
    try:
        for policy in _pages(iam, "list_role_policies", "PolicyNames", RoleName=name):
            iam.delete_role_policy(RoleName=name, PolicyName=policy)
        for attached in _pages(iam, "list_attached_role_policies", "AttachedPolicies",
                               RoleName=name):
            iam.detach_role_policy(RoleName=name, PolicyArn=attached["PolicyArn"])
        for profile in _pages(iam, "list_instance_profiles_for_role", "InstanceProfiles",
                              RoleName=name):
            iam.remove_role_from_instance_profile(
                InstanceProfileName=profile["InstanceProfileName"], RoleName=name)
        iam.delete_role(RoleName=name)
    except ClientError as exc:
        if _gone(exc):
            return False
        raise
    return True


def delete_policy(iam: Any, arn: str) -> bool:
    """Detached everywhere, non-default versions, then the policy; False if already gone."""
    try:
        for page in iam.get_paginator("list_entities_for_policy").paginate(PolicyArn=arn):
            for role in page.get("PolicyRoles", []):
                iam.detach_role_policy(RoleName=role["RoleName"], PolicyArn=arn)
            for user in page.get("PolicyUsers", []):
                iam.detach_user_policy(UserName=user["UserName"], PolicyArn=arn)
            for group in page.get("PolicyGroups", []):
                iam.detach_group_policy(GroupName=group["GroupName"], PolicyArn=arn)
        for version in _pages(iam, "list_policy_versions", "Versions", PolicyArn=arn):
            if not version.get("IsDefaultVersion"):
                iam.delete_policy_version(PolicyArn=arn, VersionId=version["VersionId"])
        iam.delete_policy(PolicyArn=arn)
    except ClientError as exc:
        if _gone(exc):
            return False
        raise
    return True


def delete_provider(iam: Any, arn: str) -> bool:
    try:
        iam.delete_open_id_connect_provider(OpenIDConnectProviderArn=arn)
    except ClientError as exc:
        if _gone(exc):
            return False
        raise
    return True


def delete_bucket(s3: Any, bucket: str) -> bool:
    """Every object version and delete marker, then the bucket; False if already gone."""
    try:
        for _ in range(EMPTYING_PASSES):
            batch: list[dict[str, str]] = []
            for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
                for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
                    batch.append({"Key": item["Key"], "VersionId": item["VersionId"]})
            if not batch:
                # A bucket listed without versions may still hold plain objects (S3
                # stand-ins without version listings): delete those too.
                batch = [{"Key": item["Key"]}
                         for item in _pages(s3, "list_objects_v2", "Contents", Bucket=bucket)]
            if not batch:
                break
            for start in range(0, len(batch), DELETE_BATCH):
                answer = s3.delete_objects(Bucket=bucket, Delete={
                    "Objects": batch[start:start + DELETE_BATCH], "Quiet": True})
                errors = answer.get("Errors") or []
                if errors:
                    first = errors[0]
                    raise RuntimeError(f"bucket {bucket}: could not delete {len(errors)} "
                                       f"object(s), e.g. {first.get('Key')}: "
                                       f"{first.get('Code')} {first.get('Message')}")
        s3.delete_bucket(Bucket=bucket)
    except ClientError as exc:
        if _gone(exc):
            return False
        raise
    return True
