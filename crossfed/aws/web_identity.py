"""AssumeRoleWithWebIdentity's checks, in the order STS makes them, as plain functions over data.

Choices where AWS documents nothing (UNDOC), written down here and tested in tests/local:
- clock skew: 60 s on `exp` and `nbf` (prior art: floci's verifier);
- `iat` is not checked beyond being an integer when present;
- a token without `kid` is checked against every key of the JWKS;
- a `kid` missing from the cached JWKS triggers one refetch (key rotation), then fails;
- an issuer whose certificate chains to no trusted root and whose provider lists no
  thumbprint fails with the thumbprint message, since that is the check that then fails.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from crossfed import jwt_view
from crossfed.aws import errors
from crossfed.aws.trust_policy import WebIdentityContext, evaluate_trust_policy
from crossfed.oidc.fetch import FetchFailure, KeyCache, TrustSettings

ASYMMETRIC = {"RS256", "RS384", "RS512", "ES256", "ES384", "ES512"}
SESSION_NAME = re.compile(r"^[\w+=,.@-]{2,64}$")
CLOCK_SKEW = 60
MIN_DURATION = 900


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
    token: str
    duration_seconds: int | None = None


@dataclass(frozen=True)
class Grant:
    role: RoleRecord
    provider: ProviderRecord
    claims: dict[str, Any]
    audience: str
    duration_seconds: int


def account_of(role_arn: str) -> str:
    parts = role_arn.split(":")
    return parts[4] if len(parts) >= 6 and parts[2] == "iam" else ""


def _when(epoch: float) -> str:
    """STS writes the times of these messages as epoch seconds (seen in public error reports)."""
    return str(int(epoch))


def check_parameters(request: WebIdentityRequest) -> None:
    if not SESSION_NAME.match(request.session_name):
        raise errors.ValidationError(
            f"1 validation error detected: Value '{request.session_name}' at 'roleSessionName' "
            "failed to satisfy "
            "constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*",
            check="parameters",
            detail="RoleSessionName must be 2-64 characters of letters, digits and +=,.@-",
        )
    if request.duration_seconds is not None and request.duration_seconds < MIN_DURATION:
        raise errors.ValidationError(
            f"1 validation error detected: Value '{request.duration_seconds}' at "
            "'durationSeconds' failed to satisfy constraint: Member must have value greater "
            "than or equal to 900",
            check="parameters",
        )


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
    for claim in ("exp", "nbf", "iat"):
        if claim in claims and not isinstance(claims[claim], int):
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


def check_trust(role: RoleRecord, provider: ProviderRecord, claims: dict[str, Any]) -> None:
    context = WebIdentityContext(provider_arn=provider.arn, provider_key=provider.url,
                                 claims=claims)
    policy = role.trust_policy
    if isinstance(policy, str):
        policy = json.loads(policy)
    decision = evaluate_trust_policy(policy, context)
    if not decision.allowed:
        raise errors.AccessDenied(errors.NOT_AUTHORIZED, check="trust_policy",
                                  detail=decision.explain())


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
        check_trust(role, provider, claims)
        duration = request.duration_seconds or 3600
        if duration > role.max_session_duration:
            raise errors.ValidationError(errors.DURATION_TOO_LONG, check="parameters",
                                         detail=f"{duration} > {role.max_session_duration}")
        return Grant(role, provider, claims, audience, duration)
