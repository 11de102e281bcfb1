"""The README's "Nightly against real clouds" section against the code it documents.

- Its IAM policy (the ```json block of the section) allows every IAM, S3, STS and EKS operation
  the cloud tier, its diagnosis and `crossfed sweep --aws` call, and lists no action beyond
  those: operations are found by scanning the sources for botocore operation names in snake
  case (`client.create_role(`, and the names handed to `get_paginator("...")` or helpers such
  as `_pages(iam, "list_roles", ...)` / `_call(iam, "get_role", ...)`), mapped to API operation
  names through botocore's service models and `botocore.xform_name`, then to IAM actions.
- It documents every option crossfed/cloud/options.py registers, each in a table row.

No network: service models are read from botocore's bundled data.
"""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path
from typing import Any

import botocore
import botocore.session
import pytest

from crossfed.cloud.options import add_cloud_options

pytestmark = [pytest.mark.local]

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SECTION = "## Nightly against real clouds"
SERVICES = ("iam", "s3", "sts", "eks")
SCANNED = [ROOT / "crossfed/aws/provision.py", ROOT / "crossfed/aws/deletion.py",
           ROOT / "crossfed/doctor/aws.py", ROOT / "crossfed/doctor/access.py",
           *sorted((ROOT / "crossfed/cloud").glob("*.py"))]

# Operations whose IAM action is not `<service>:<Operation>`, or that need more than one.
ACTIONS_FOR = {
    ("s3", "ListObjectsV2"): {"s3:ListBucket"},
    ("s3", "ListObjectVersions"): {"s3:ListBucketVersions"},
    ("s3", "ListBuckets"): {"s3:ListAllMyBuckets"},
    # DeleteObjects is authorized per key: DeleteObject, and DeleteObjectVersion for the
    # version ids crossfed/aws/deletion.py sends.
    ("s3", "DeleteObjects"): {"s3:DeleteObject", "s3:DeleteObjectVersion"},
    ("s3", "HeadBucket"): {"s3:ListBucket"},
    ("s3", "HeadObject"): {"s3:GetObject"},
    # Tags= at creation (crossfed always passes them) is authorized as the Tag* action too.
    ("iam", "CreateRole"): {"iam:CreateRole", "iam:TagRole"},
    ("iam", "CreatePolicy"): {"iam:CreatePolicy", "iam:TagPolicy"},
    ("iam", "CreateOpenIDConnectProvider"): {"iam:CreateOpenIDConnectProvider",
                                             "iam:TagOpenIDConnectProvider"},
}
# Called, but authorized by something other than the caller's identity policy: the role's
# trust policy decides AssumeRoleWithWebIdentity (an unsigned call).
NO_PERMISSION_NEEDED = {"sts:AssumeRoleWithWebIdentity"}

CALLED = re.compile(r"\.([a-z][a-z0-9_]*)\s*\(")
NAMED = re.compile(r"""["']([a-z][a-z0-9_]*)["']""")
FLAG_ROW = re.compile(r"^\|\s*`(--[a-z0-9-]+)", re.M)


def _section() -> str:
    text = README.read_text(encoding="utf-8")
    assert SECTION in text, f"README.md has no {SECTION!r} section"
    body = text.split(SECTION, 1)[1]
    following = re.search(r"^## ", body, re.M)
    return body[:following.start()] if following else body


def _policy(section: str) -> dict[str, Any]:
    for block in re.findall(r"```json\n(.*?)```", section, re.S):
        document = json.loads(block)
        if isinstance(document, dict) and "Statement" in document:
            return document
    raise AssertionError(f"no IAM policy (```json block with a Statement) in {SECTION!r}")


def _operations_by_method() -> dict[str, set[tuple[str, str]]]:
    """snake_case method name -> {(service, Operation)} over the four services' models."""
    session = botocore.session.get_session()
    found: dict[str, set[tuple[str, str]]] = {}
    for service in SERVICES:
        for operation in session.get_service_model(service).operation_names:
            found.setdefault(botocore.xform_name(operation), set()).add((service, operation))
    return found


def called_operations() -> dict[tuple[str, str], set[str]]:
    """(service, Operation) -> the scanned files that call it."""
    by_method = _operations_by_method()
    called: dict[tuple[str, str], set[str]] = {}
    for path in SCANNED:
        source = path.read_text(encoding="utf-8")
        names = {m.group(1) for m in CALLED.finditer(source)}
        names |= {m.group(1) for m in NAMED.finditer(source)}
        for name in names:
            for operation in by_method.get(name, ()):
                called.setdefault(operation, set()).add(str(path.relative_to(ROOT)))
    return called


def required_actions() -> dict[str, set[str]]:
    """IAM action -> the operations (service:Operation) that need it."""
    needed: dict[str, set[str]] = {}
    for service, operation in called_operations():
        for action in ACTIONS_FOR.get((service, operation), {f"{service}:{operation}"}):
            if action not in NO_PERMISSION_NEEDED:
                needed.setdefault(action, set()).add(f"{service}:{operation}")
    return needed


def _listed(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else [str(v) for v in value or []]


def _matches(patterns: list[str], action: str) -> bool:
    return any(fnmatch.fnmatchcase(action.lower(), p.lower()) for p in patterns)


def _statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    statements = policy["Statement"]
    return [statements] if isinstance(statements, dict) else list(statements)


def test_the_scan_finds_the_cloud_tiers_calls() -> None:
    """A scan that found nothing would pass any policy: check it sees known calls."""
    called = called_operations()
    for operation in [("iam", "CreateRole"), ("iam", "ListOpenIDConnectProviderTags"),
                      ("iam", "ListRolePolicies"), ("s3", "ListObjectVersions"),
                      ("s3", "GetBucketTagging"), ("sts", "GetCallerIdentity"),
                      ("eks", "DescribeCluster")]:
        assert operation in called, f"the scan missed {operation}"


def test_readme_policy_allows_every_operation_the_cloud_tier_calls() -> None:
    policy = _policy(_section())
    assert policy.get("Version") == "2012-10-17"
    statements = _statements(policy)
    assert all("NotAction" not in s for s in statements), "NotAction grants too much"
    allows = [p for s in statements if s.get("Effect") == "Allow" for p in _listed(s["Action"])]
    denies = [p for s in statements if s.get("Effect") == "Deny" for p in _listed(s["Action"])]
    needed = required_actions()
    missing = sorted(f"{action} (for {', '.join(sorted(ops))})"
                     for action, ops in needed.items()
                     if not _matches(allows, action) or _matches(denies, action))
    assert not missing, ("the README's IAM policy does not allow: " + "; ".join(missing))


def test_readme_policy_lists_exactly_the_needed_actions() -> None:
    """Least privilege: no wildcard actions, and none the code does not need."""
    statements = _statements(_policy(_section()))
    listed = {a for s in statements if s.get("Effect") == "Allow" for a in _listed(s["Action"])}
    wildcards = sorted(a for a in listed if "*" in a or "?" in a)
    assert not wildcards, f"wildcard actions in the README's IAM policy: {wildcards}"
    needed = {a.lower() for a in required_actions()}
    extra = sorted(a for a in listed if a.lower() not in needed)
    assert not extra, f"actions no scanned code needs in the README's IAM policy: {extra}"


def test_readme_documents_every_cloud_option() -> None:
    registered: list[str] = []
    add_cloud_options(lambda name, **_: registered.append(name))
    assert registered, "crossfed/cloud/options.py registered no option"
    rows = set(FLAG_ROW.findall(_section()))
    missing = [name for name in registered if name not in rows]
    assert not missing, (f"options of crossfed/cloud/options.py without a README table row: "
                         f"{missing}")
