"""IAM's eventual consistency, simulated (`crossfed serve --propagation-delay SECONDS`).

"Changes that you make [to IAM] are not always immediately visible [...] you must verify that
the changes have been propagated before production workflows depend on them" (IAM User Guide,
troubleshoot_general.html#troubleshoot_general_eventual-consistency; cloud-tier-facts.md
section 3). With a delay, a role, an OIDC provider, a managed-policy attachment
(AttachRolePolicy) and an inline role policy (PutRolePolicy) take effect only `delay` seconds
after they were written, in this process (the AWS stand-in's child) only:

- the verifying STS (MotoIam in crossfed/aws/child.py) treats a younger role or provider as
  absent, so AssumeRoleWithWebIdentity answers what it answers for a missing one: a provider
  too new -> InvalidIdentityToken "No OpenIDConnect provider found in your account for <iss>";
  a role too new -> AccessDenied "Not authorized to perform sts:AssumeRoleWithWebIdentity".
  CHOICE: AWS does not document the codes seen during propagation (facts file section 3:
  "exact error codes seen right after creation: UNCONFIRMED"; its design note retries exactly
  AccessDenied / InvalidIdentityToken); these are the codes of the same objects missing.
- moto's access control leaves out younger attachments and inline policies when it judges a
  session's request, so S3 (and IAM/STS) answer AccessDenied, as for a policy not attached.
- reads (GetRole, ListAttachedRolePolicies, GetOpenIDConnectProvider, ...) see every object at
  once, as IAM's reads do in the facts file's retry pattern (create, then read back, then wait).

CHOICE: a PutRolePolicy that replaces an existing inline policy of the same name counts as new
(the role has no inline policy of that name until the delay has passed), not as the old
document staying in force; AWS does not say which version a reader sees meanwhile.
With delay 0 (the default) nothing is patched and every object takes effect at once.
"""

from __future__ import annotations

import time
from typing import Any

from moto.iam.access_control import AssumedRoleAccessKey
from moto.iam.models import IAMBackend

delay = 0.0
clock = time.monotonic
_ROLE_BORN = "_crossfed_written_at"
_ATTACHED = "_crossfed_attached_at"  # policy ARN -> when attached
_INLINE = "_crossfed_inline_at"  # inline policy name -> when put


def young(written_at: float | None) -> bool:
    """Written less than `delay` seconds ago (never recorded: old, it took effect)."""
    return written_at is not None and clock() - written_at < delay


def role_in_effect(role: Any) -> bool:
    return not young(getattr(role, _ROLE_BORN, None))


def provider_in_effect(provider: Any) -> bool:
    return not young(getattr(provider, _ROLE_BORN, None))


def _create_role(original: Any) -> Any:
    def create_role(self: IAMBackend, *args: Any, **kwargs: Any) -> Any:
        role = original(self, *args, **kwargs)
        setattr(role, _ROLE_BORN, clock())
        return role
    return create_role


def _create_provider(original: Any) -> Any:
    def create_open_id_connect_provider(self: IAMBackend, *args: Any, **kwargs: Any) -> Any:
        provider = original(self, *args, **kwargs)
        setattr(provider, _ROLE_BORN, clock())
        return provider
    return create_open_id_connect_provider


def _attach(original: Any) -> Any:
    def attach_role_policy(self: IAMBackend, policy_arn: str, role_name: str) -> None:
        role = self.get_role(role_name)
        already = policy_arn in role.managed_policies
        original(self, policy_arn, role_name)
        stamps = role.__dict__.setdefault(_ATTACHED, {})
        if not already:  # attaching again changes nothing
            stamps[policy_arn] = clock()
    return attach_role_policy


def _put_inline(original: Any) -> Any:
    def put_role_policy(self: IAMBackend, role_name: str, policy_name: str,
                        policy_json: str) -> None:
        original(self, role_name, policy_name, policy_json)
        self.get_role(role_name).__dict__.setdefault(_INLINE, {})[policy_name] = clock()
    return put_role_policy


def _collect(self: AssumedRoleAccessKey) -> list[Any]:
    """moto's AssumedRoleAccessKey.collect_policies without what has not propagated yet."""
    role = self.backend.get_role(self._owner_role_name)
    inline, attached = role.__dict__.get(_INLINE, {}), role.__dict__.get(_ATTACHED, {})
    policies: list[Any] = []
    for name in self.backend.list_role_policies(self._owner_role_name):
        if not young(inline.get(name)):
            _, document = self.backend.get_role_policy(self._owner_role_name, name)
            policies.append(document)
    listed, _ = self.backend.list_attached_role_policies(self._owner_role_name)
    policies += [p for p in listed if not young(attached.get(p.arn))]
    return policies


def apply(seconds: float) -> None:
    """Patch moto's IAM once for a delay of `seconds` (0: patch nothing)."""
    global delay
    delay = float(seconds)
    if delay <= 0 or getattr(IAMBackend, "_crossfed_propagation", False):
        return
    IAMBackend.create_role = _create_role(IAMBackend.create_role)  # type: ignore[method-assign]
    IAMBackend.create_open_id_connect_provider = _create_provider(  # type: ignore[method-assign]
        IAMBackend.create_open_id_connect_provider)
    IAMBackend.attach_role_policy = _attach(  # type: ignore[method-assign]
        IAMBackend.attach_role_policy)
    IAMBackend.put_role_policy = _put_inline(  # type: ignore[method-assign]
        IAMBackend.put_role_policy)
    AssumedRoleAccessKey.collect_policies = _collect  # type: ignore[method-assign]
    IAMBackend._crossfed_propagation = True  # type: ignore[attr-defined]
