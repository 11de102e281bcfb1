"""Session policies, enforced: moto 5.2.5 keeps AssumeRoleWithWebIdentity's `Policy` and ignores
`PolicyArns`, and its access control evaluates only the role's policies (facts file, section 6).

"The resulting session's permissions are the intersection of the role's identity-based policy
and the session policies. [...] You cannot use session policies to grant more permissions than
those allowed by the identity-based policy of the role that is being assumed." (IAM User Guide,
id_credentials_temp_control-access_assumerole). So a request made with a session's key is
allowed only if the role's policies allow it (moto's evaluation, unchanged) and the session
policies allow it too; an explicit Deny in either refuses it (policy evaluation logic).

CHOICE: the inline `Policy` and the managed policies of `PolicyArns` are one set of session
policies (AWS speaks of "the session policies" without saying how they combine): an Allow in
any of them counts, a Deny in any of them refuses.

This patches moto's `IAMRequestBase.check_action_permitted`, the one place its access control
decides for IAM, STS and S3 requests, in the AWS stand-in's process only. A session without
session policies is judged as before. `sts:GetCallerIdentity` stays always allowed, as AWS
documents it ("No permissions are required to perform this operation").

CHOICE: a PolicyArns entry that names no managed policy in the role's account (moto does not
load AWS's managed policies) grants nothing: the session keeps only what the other session
policies allow. The policy is read when a request is judged (its default version then), as
moto reads the role's own policies.
"""

from __future__ import annotations

from typing import Any

from moto.iam.access_control import (
    AssumedRoleAccessKey,
    IAMPolicy,
    IAMRequestBase,
    PermissionResult,
)
from moto.iam.models import iam_backends
from moto.sts.models import sts_backends

ALWAYS_ALLOWED = "sts:GetCallerIdentity"  # moto's exception, and AWS's


def remember(assumed: Any, policy_arns: tuple[str, ...]) -> None:
    """Keep a minted session's PolicyArns with it (moto keeps only the inline Policy)."""
    assumed.crossfed_policy_arns = tuple(policy_arns)


def _session(key: AssumedRoleAccessKey) -> Any:
    for assumed in sts_backends[key.account_id][key.partition].assumed_roles:
        if assumed.access_key_id == key._access_key_id:
            return assumed
    return None


def session_policies(assumed: Any) -> list[Any] | None:
    """The session's policies as moto's IAMPolicy takes them; None if it has none."""
    inline = getattr(assumed, "policy", None)
    arns = getattr(assumed, "crossfed_policy_arns", ())
    if inline is None and not arns:
        return None
    documents: list[Any] = [inline] if inline is not None else []
    managed = iam_backends[assumed.account_id][assumed.partition].managed_policies
    documents += [managed[arn] for arn in arns if arn in managed]
    return documents


def session_decision(assumed: Any, action: str, resource: str) -> PermissionResult | None:
    """What the session policies say about one action on one resource; None: no session
    policies (the role's policies alone decide)."""
    documents = session_policies(assumed)
    if documents is None:
        return None
    permitted = False
    for document in documents:
        result = IAMPolicy(document).is_action_permitted(action, resource)
        if result == PermissionResult.DENIED:
            return result
        permitted = permitted or result == PermissionResult.PERMITTED
    return PermissionResult.PERMITTED if permitted else PermissionResult.NEUTRAL


def _check(original: Any) -> Any:
    def check_action_permitted(self: IAMRequestBase, resource: str) -> None:
        original(self, resource)  # the role's (or user's) policies: raises if they refuse
        key = self._access_key
        if self._action == ALWAYS_ALLOWED or not isinstance(key, AssumedRoleAccessKey):
            return
        assumed = _session(key)
        decision = None if assumed is None else session_decision(assumed, self._action,
                                                                 resource)
        if decision is not None and decision != PermissionResult.PERMITTED:
            self._raise_access_denied()
    return check_action_permitted


def apply() -> None:
    """Patch moto's access control once; later calls do nothing."""
    if getattr(IAMRequestBase, "_crossfed_session_policies", False):
        return
    IAMRequestBase.check_action_permitted = _check(  # type: ignore[method-assign]
        IAMRequestBase.check_action_permitted)
    IAMRequestBase._crossfed_session_policies = True  # type: ignore[attr-defined]
