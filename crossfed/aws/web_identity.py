"""AssumeRoleWithWebIdentity's checks, in the order STS makes them, as plain functions over data.

Choices where AWS documents nothing (UNDOC), written down here and tested in tests/local:
- clock skew: 60 s on `exp` and `nbf` (prior art: floci's verifier);
- `iat` is not checked beyond being an integer when present;
- a token without `kid` is checked against every key of the JWKS;
- a `kid` missing from the cached JWKS triggers one refetch (key rotation), then fails;
- an issuer whose certificate chains to no trusted root and whose provider lists no
  thumbprint fails with the thumbprint message, since that is the check that then fails;
- a ProviderId (meant for OAuth tokens of Amazon or Facebook only) is refused with
  InvalidIdentityToken, as are non-string iss/sub/aud and malformed session-tag or
  source-identity claims;
- PackedPolicySize counts the plaintext of session policies, policy ARNs and tags against
  2,048 characters (AWS's packing is unpublished); it is returned only when one was passed.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from crossfed import jwt_view
from crossfed.aws import errors
from crossfed.aws.trust_policy import (
    WEB_IDENTITY_ACTION,
    WebIdentityContext,
    evaluate_trust_policy,
)
from crossfed.oidc.fetch import FetchFailure, KeyCache, TrustSettings

ASYMMETRIC = {"RS256", "RS384", "RS512", "ES256", "ES384", "ES512"}
CLOCK_SKEW = 60
TAGS_CLAIM = "https://aws.amazon.com/tags"
SOURCE_IDENTITY_CLAIM = "https://aws.amazon.com/source_identity"
SOURCE_IDENTITY = re.compile(r"^[\w+=,.@-]{2,64}$", re.ASCII)
MAX_SESSION_TAGS = 50
ACTION_REASONS = {"sts:TagSession": "session tags",
                  "sts:SetSourceIdentity": "a source identity"}
MIN_DURATION = 900
MAX_DURATION = 43200


@dataclass(frozen=True)
class ProviderRecord:
    arn: str
    url: str  # as IAM stores it: without the scheme
    client_ids: tuple[str, ...]
    thumbprints: tuple[str, ...]


@dataclass(frozen=True)
class RoleRecord:
    arn: str
    name: str
    trust_policy: Any
    max_session_duration: int


class IamDirectory(Protocol):
    """Read access to the account's IAM objects (moto's backend in the stand-in)."""

    def provider_for_issuer(self, account_id: str, issuer: str) -> ProviderRecord | None: ...

    def role(self, role_arn: str) -> RoleRecord | None: ...


@dataclass(frozen=True)
class WebIdentityRequest:
    role_arn: str
    session_name: str
    token: str = dataclasses.field(repr=False)  # never in a repr or a traceback
    duration_seconds: int | None = None
    provider_id: str | None = None
    policy: str | None = None
    policy_arns: tuple[str, ...] = ()


@dataclass(frozen=True)
class Grant:
    role: RoleRecord
    provider: ProviderRecord
    claims: dict[str, Any]
    audience: str
    duration_seconds: int
    source_identity: str | None = None
    # percentage of the packed-size limit; None when no session policy or tag was passed
    packed_policy_size: int | None = None


def account_of(role_arn: str) -> str:
    parts = role_arn.split(":")
    return parts[4] if len(parts) >= 6 and parts[2] == "iam" else ""


def _when(epoch: float) -> str:
    """STS writes the times of these messages as epoch seconds (seen in public error reports)."""
    return str(int(epoch))


# The request model's constraints (botocore sts service-2.json), checked as STS's front end
# does: every violation listed, in model order, before anything else is looked at.
_PRINTABLE = "\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff"
_CONSTRAINTS: tuple[tuple[str, str, int, int, str | None, bool], ...] = (
    # (form field, member as AWS names it, min length, max length, pattern, sensitive)
    ("RoleArn", "roleArn", 20, 2048, f"[{_PRINTABLE}]+", False),
    ("RoleSessionName", "roleSessionName", 2, 64, r"[\w+=,.@-]*", False),
    ("WebIdentityToken", "webIdentityToken", 4, 20000, None, True),
    ("ProviderId", "providerId", 4, 2048, None, False),
    ("Policy", "policy", 1, 2048, "[\t\n\r\x20-\xff]+", False),
)
_INTEGERS = (("DurationSeconds", "durationSeconds", MIN_DURATION, MAX_DURATION),
             ("MinimumSessionTokenSize", "minimumSessionTokenSize", 0, 4096))
_PATTERN_TEXT = {"RoleArn": "[\\u0009\\u000A\\u000D\\u0020-\\u007E\\u0085\\u00A0-\\uD7FF"
                            "\\uE000-\\uFFFD\\u10000-\\u10FFFF]+",
                 "Policy": "[\\u0009\\u000A\\u000D\\u0020-\\u00FF]+"}  # as AWS prints them
REQUIRED = ("RoleArn", "RoleSessionName", "WebIdentityToken")
MAX_POLICY_ARNS = 10
PACKED_LIMIT = 2048  # UNDOC packing: we count plaintext characters against the 2,048 limit
ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/(?:[\w+=,.@-]+/)*[\w+=,.@-]{1,64}",
                      re.ASCII)


def _violation(member: str, value: object, constraint: str, sensitive: bool = False) -> str:
    # Sensitive members are not echoed ("Value at ..."), as AWS's front ends do for secrets.
    shown = "Value null" if value is None else "Value" if sensitive else f"Value '{value}'"
    return f"{shown} at '{member}' failed to satisfy constraint: {constraint}"


def constraint_violations(fields: Mapping[str, str], policy_arns: Sequence[str]) -> list[str]:
    found: list[str] = []
    for field, member, low, high, pattern, sensitive in _CONSTRAINTS:
        value = fields.get(field)
        if value is None:
            if field in REQUIRED:
                found.append(_violation(member, None, "Member must not be null"))
            continue
        if len(value) > high:
            found.append(_violation(member, value, "Member must have length less than or "
                                    f"equal to {high}", sensitive))
        if len(value) < low:
            found.append(_violation(member, value, "Member must have length greater than or "
                                    f"equal to {low}", sensitive))
        # re.ASCII: AWS's patterns are Java's, whose \w is ASCII only
        if pattern and not re.fullmatch(pattern, value, re.ASCII):
            found.append(_violation(member, value, "Member must satisfy regular expression "
                                    f"pattern: {_PATTERN_TEXT.get(field, pattern)}", sensitive))
    if len(policy_arns) > MAX_POLICY_ARNS:
        found.append(_violation("policyArns", list(policy_arns), "Member must have length "
                                f"less than or equal to {MAX_POLICY_ARNS}"))
    for index, arn in enumerate(policy_arns, start=1):
        if not 20 <= len(arn) <= 2048:
            found.append(_violation(f"policyArns.{index}.member.arn", arn, "Member must have "
                                    "length between 20 and 2048"))
    for field, member, low, high in _INTEGERS:
        raw = fields.get(field)
        if raw is None:
            continue
        try:
            number = int(raw)
        except ValueError:
            found.append(_violation(member, raw, "Member must be an integer"))
            continue
        if number < low:
            found.append(_violation(member, raw, "Member must have value greater than or "
                                    f"equal to {low}"))
        if number > high:
            found.append(_violation(member, raw, "Member must have value less than or equal "
                                    f"to {high}"))
    return found


def parse_request(fields: Mapping[str, str], policy_arns: Sequence[str] = ()) -> WebIdentityRequest:
    """The form's parameters checked against the model; ValidationError lists every fault."""
    found = constraint_violations(fields, policy_arns)
    if found:
        plural = "error" if len(found) == 1 else "errors"
        raise errors.ValidationError(
            f"{len(found)} validation {plural} detected: " + "; ".join(found),
            check="parameters", detail="the request breaks the API's parameter constraints")
    duration = fields.get("DurationSeconds")
    return WebIdentityRequest(
        role_arn=fields["RoleArn"], session_name=fields["RoleSessionName"],
        token=fields["WebIdentityToken"],
        duration_seconds=int(duration) if duration is not None else None,
        provider_id=fields.get("ProviderId"), policy=fields.get("Policy"),
        policy_arns=tuple(policy_arns))


def check_parameters(request: WebIdentityRequest) -> None:
    """What holds once the form parsed (parse_request checked lengths, patterns and ranges):
    ARN shape, no ProviderId, the session policies."""
    if not ROLE_ARN.fullmatch(request.role_arn):
        raise errors.ValidationError(
            errors.INVALID_ARN, check="parameters",
            detail=f"{request.role_arn!r} is not an IAM role ARN "
            "(arn:aws:iam::ACCOUNT:role/NAME); an OIDC provider's ARN is a common mix-up")
    if request.provider_id is not None:
        # UNDOC what STS answers; documented only that OIDC tokens must not come with it.
        raise errors.InvalidIdentityToken(
            errors.PROVIDER_ID_WITH_OIDC, check="parameters",
            detail=f"ProviderId {request.provider_id!r} was sent with the token")
    if request.policy is not None:
        try:
            document = json.loads(request.policy)
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise errors.MalformedPolicyDocument(
                errors.INVALID_POLICY_JSON, check="session_policy",
                detail="the Policy parameter is not a JSON policy document")


def packed_policy_size(request: WebIdentityRequest, tags: Mapping[str, str]) -> int | None:
    """Percentage of the packed limit used by session policies and tags (UNDOC: plaintext)."""
    if request.policy is None and not request.policy_arns and not tags:
        return None
    plain = len(request.policy or "") + sum(len(a) for a in request.policy_arns)
    plain += sum(len(k) + len(v) for k, v in tags.items())
    percent = -(-100 * plain // PACKED_LIMIT)
    if percent > 100:
        raise errors.PackedPolicyTooLarge(
            errors.PACKED_TOO_LARGE.format(percent=percent), check="session_policy",
            detail=f"{plain} characters of session policies and tags; the limit is "
            f"{PACKED_LIMIT}")
    return percent


def read_token(token: str) -> jwt_view.JwtView:
    """Header and claims before any verification, with the shape checks STS makes first."""
    try:
        view = jwt_view.parse(token)
    except jwt_view.MalformedJwt as exc:
        raise errors.InvalidIdentityToken(
            errors.MALFORMED.format(why=exc), check="malformed",
            detail="the token file does not hold a JWT; is AWS_WEB_IDENTITY_TOKEN_FILE right?",
        ) from exc
    header, claims = view.header, view.claims
    alg = str(header.get("alg"))
    if alg not in ASYMMETRIC:
        raise errors.InvalidIdentityToken(
            errors.BAD_ALGORITHM.format(alg=alg), check="algorithm",
            detail=f"token header alg is {alg!r}; STS accepts only asymmetric signatures, "
            "so 'none' and HMAC tokens are refused before any key is fetched",
        )
    for claim in ("iss", "aud", "sub"):
        if not claims.get(claim):
            raise errors.InvalidIdentityToken(
                errors.MISSING_CLAIM.format(claim=claim), check="claims",
                detail=f"the token has no {claim!r} claim",
            )
    aud = claims["aud"]
    for claim, ok in (("iss", isinstance(claims["iss"], str)),
                      ("sub", isinstance(claims["sub"], str)),
                      ("aud", isinstance(aud, str) or (isinstance(aud, list)
                                                        and all(isinstance(a, str) for a in aud)))):
        if not ok:  # UNDOC message; a non-string here must not reach the provider lookup
            raise errors.InvalidIdentityToken(
                errors.BAD_CLAIM_TYPE.format(claim=claim), check="claims",
                detail=f"{claim} is {claims[claim]!r}; it must be a string"
                + (" or a list of strings" if claim == "aud" else ""))
    for claim in ("exp", "nbf", "iat"):
        # bool is an int to Python, not to a JSON schema: true is no timestamp
        if claim in claims and (not isinstance(claims[claim], int)
                                or isinstance(claims[claim], bool)):
            raise errors.InvalidIdentityToken(
                f"Token claim {claim} must be an integer", check="claims",
                detail=f"{claim} is {claims[claim]!r}; JWT timestamps here must be integers",
            )
    if "exp" not in claims:
        raise errors.InvalidIdentityToken(
            errors.MISSING_CLAIM.format(claim="exp"), check="claims", detail="no exp claim"
        )
    return view


def audiences(claims: dict[str, Any]) -> list[str]:
    aud = claims.get("aud")
    return [aud] if isinstance(aud, str) else [str(a) for a in aud or []]


def find_provider(directory: IamDirectory, role_arn: str, issuer: str) -> ProviderRecord:
    provider = directory.provider_for_issuer(account_of(role_arn), issuer)
    if provider is None:
        raise errors.InvalidIdentityToken(
            errors.NO_PROVIDER.format(issuer=issuer), check="provider",
            detail=f"no IAM OIDC provider in account {account_of(role_arn) or '?'} has the URL "
            f"{issuer!r} (compared exactly, trailing slash included); create one for the "
            "cluster's issuer, or check the API server's --service-account-issuer",
        )
    return provider


def match_audience(provider: ProviderRecord, claims: dict[str, Any]) -> str:
    for aud in audiences(claims):
        if aud in provider.client_ids:
            return aud
    raise errors.InvalidIdentityToken(
        errors.WRONG_AUDIENCE, check="audience",
        detail=f"token aud {audiences(claims)} is not among the provider's client IDs "
        f"{list(provider.client_ids)}; the pod's token audience (webhook --token-audience or "
        "the service account's audience annotation) must be registered on the provider",
    )


def fetch_keys(
    keys: KeyCache, issuer: str, provider: ProviderRecord, trust_roots: str | None, refresh: bool
) -> dict[str, Any]:
    trust = TrustSettings(ca_bundle=trust_roots, thumbprints=provider.thumbprints)
    try:
        return keys.get(issuer, trust, refresh=refresh).jwks
    except FetchFailure as failure:
        if failure.kind in ("thumbprint_mismatch", "untrusted"):
            raise errors.InvalidIdentityToken(
                errors.THUMBPRINT, check="thumbprint",
                detail=f"{failure.url}: {failure.detail}; the certificate does not chain to a "
                f"trusted root and the provider's thumbprints {list(provider.thumbprints)} do "
                "not match the top certificate the issuer serves",
            ) from failure
        raise errors.InvalidIdentityToken(
            errors.NO_KEYS, check="keys",
            detail=f"fetching {failure.url} failed ({failure.kind}): {failure.detail}",
        ) from failure


def candidate_keys(jwks: dict[str, Any], kid: str | None) -> list[dict[str, Any]]:
    entries = [k for k in jwks.get("keys", []) if isinstance(k, dict)]
    return entries if kid is None else [k for k in entries if k.get("kid") == kid]


def check_signature(view: jwt_view.JwtView, alg: str,
                    key_entries: list[dict[str, Any]]) -> None:
    if any(jwt_view.signature_valid(view, alg, entry) for entry in key_entries):
        return
    raise errors.InvalidIdentityToken(
        errors.BAD_SIGNATURE, check="signature",
        detail="no key published by the issuer verifies this token's signature: it was signed "
        "by another key (a foreign or rotated-out signing key, or another cluster's)",
    )


def check_lifetime(claims: dict[str, Any], now: float, skew: int = CLOCK_SKEW) -> None:
    if now > claims["exp"] + skew:
        raise errors.ExpiredToken(
            errors.EXPIRED.format(now=_when(now), exp=_when(claims["exp"])), check="expiry",
            detail=f"the token expired {int(now - claims['exp'])} s ago (allowed skew {skew} s); "
            "the kubelet refreshes projected tokens, so a stale copy was sent",
        )
    if "nbf" in claims and now + skew < claims["nbf"]:
        raise errors.InvalidIdentityToken(
            errors.NOT_YET_VALID.format(nbf=_when(claims["nbf"]), now=_when(now)),
            check="not_before", detail="the token's nbf lies in the future: clocks disagree",
        )


def session_tags(claims: dict[str, Any]) -> dict[str, str]:
    """Session tags from the token's `https://aws.amazon.com/tags` claim, checked for size."""
    if TAGS_CLAIM not in claims:
        return {}
    claim = claims[TAGS_CLAIM]
    principal = claim.get("principal_tags") if isinstance(claim, dict) else None
    if not isinstance(principal, dict):
        raise errors.InvalidIdentityToken(
            errors.BAD_SESSION_TAGS.format(why="no principal_tags object"), check="session_tags")
    tags: dict[str, str] = {}
    for key, values in principal.items():
        # AWS's format: each tag's value is a list holding one string
        value = values[0] if isinstance(values, list) and len(values) == 1 else values
        if not isinstance(value, str):
            raise errors.InvalidIdentityToken(
                errors.BAD_SESSION_TAGS.format(why=f"tag {key!r} has no single string value"),
                check="session_tags")
        tags[str(key)] = value
    # UNDOC which code AWS answers for these limits (documented: 50 tags, 128 / 256 chars)
    if len(tags) > MAX_SESSION_TAGS:
        raise errors.InvalidIdentityToken(
            errors.BAD_SESSION_TAGS.format(why=f"{len(tags)} tags, at most {MAX_SESSION_TAGS}"),
            check="session_tags")
    for key, value in tags.items():
        if not 1 <= len(key) <= 128 or len(value) > 256:
            raise errors.InvalidIdentityToken(
                errors.BAD_SESSION_TAGS.format(
                    why=f"tag {key[:20]!r}: keys are 1-128 characters, values up to 256"),
                check="session_tags")
    return tags


def source_identity(claims: dict[str, Any]) -> str | None:
    if SOURCE_IDENTITY_CLAIM not in claims:
        return None
    value = claims[SOURCE_IDENTITY_CLAIM]
    if not isinstance(value, str) or not SOURCE_IDENTITY.match(value):
        raise errors.InvalidIdentityToken(
            errors.BAD_SOURCE_IDENTITY, check="source_identity",
            detail="the source identity must be 2-64 characters of letters, digits and +=,.@-")
    return value


def check_trust(role: RoleRecord, provider: ProviderRecord, claims: dict[str, Any],
                actions: tuple[str, ...] = (WEB_IDENTITY_ACTION,)) -> None:
    """Every action must be allowed: passing session tags or a source identity needs
    sts:TagSession / sts:SetSourceIdentity in the trust policy too (IAM User Guide)."""
    policy = role.trust_policy
    if isinstance(policy, str):
        policy = json.loads(policy)
    for action in actions:
        context = WebIdentityContext(provider_arn=provider.arn, provider_key=provider.url,
                                     claims=claims, action=action)
        decision = evaluate_trust_policy(policy, context)
        if not decision.allowed:
            why = "" if action == WEB_IDENTITY_ACTION else (
                f"the token carries {ACTION_REASONS[action]}, so the trust policy must also "
                f"allow {action}:\n")
            raise errors.AccessDenied(errors.NOT_AUTHORIZED, check="trust_policy",
                                      detail=why + decision.explain())


class WebIdentityVerifier:
    """Runs every check; returns a Grant or raises the StsError AWS would answer with."""

    def __init__(self, directory: IamDirectory, keys: KeyCache, trust_roots: str | None,
                 clock: Callable[[], float] = time.time, skew: int = CLOCK_SKEW) -> None:
        self.directory, self.keys, self.trust_roots = directory, keys, trust_roots
        self.clock, self.skew = clock, skew

    def verify(self, request: WebIdentityRequest) -> Grant:
        check_parameters(request)
        view = read_token(request.token)
        header, claims = view.header, view.claims
        provider = find_provider(self.directory, request.role_arn, claims["iss"])
        audience = match_audience(provider, claims)
        jwks = fetch_keys(self.keys, claims["iss"], provider, self.trust_roots, refresh=False)
        kid = header.get("kid")
        if kid is not None and not candidate_keys(jwks, kid):
            jwks = fetch_keys(self.keys, claims["iss"], provider, self.trust_roots, refresh=True)
        entries = candidate_keys(jwks, kid)
        if not entries:
            raise errors.InvalidIdentityToken(
                errors.NO_MATCHING_KEY.format(kid=kid), check="signature",
                detail=f"the issuer publishes kids {[k.get('kid') for k in jwks.get('keys', [])]}"
                f" but the token names {kid!r}: it was signed by a key the issuer does not "
                "publish (a foreign key, or another cluster's)",
            )
        check_signature(view, header["alg"], entries)
        check_lifetime(claims, self.clock(), self.skew)
        role = self.directory.role(request.role_arn)
        if role is None:
            raise errors.AccessDenied(errors.NOT_AUTHORIZED, check="role",
                                      detail=f"role {request.role_arn} does not exist")
        tags, identity = session_tags(claims), source_identity(claims)
        actions = (WEB_IDENTITY_ACTION,) + (("sts:TagSession",) if tags else ()) + (
            ("sts:SetSourceIdentity",) if identity is not None else ())
        check_trust(role, provider, claims, actions)
        duration = request.duration_seconds or 3600
        if duration > role.max_session_duration:
            raise errors.ValidationError(errors.DURATION_TOO_LONG, check="parameters",
                                         detail=f"{duration} > {role.max_session_duration}")
        return Grant(role, provider, claims, audience, duration, identity,
                     packed_policy_size(request, tags))
