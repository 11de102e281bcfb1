"""Client authentication at Entra's token endpoint, as plain functions over data: a federated
client assertion (workload identity federation) and, for administrators, a client secret.

The assertion is checked in this order; the first failure is the answer:

1. the tenant exists (AADSTS90002);
2. the client id names a service principal in that tenant (AADSTS700016);
3. the assertion is a JWT signed with RS256 (AADSTS50027), not issued by Entra itself
   (AADSTS700222);
4. it has `iat`, and exp - iat <= 25 h, Entra's 1.01:00:00 (AADSTS70023);
5. a federated credential of the principal has exactly its `iss` (AADSTS700211), then one of
   those has its audience among the assertion's `aud` (AADSTS700212), then one of those has
   exactly its `sub` (AADSTS70021, or AADSTS7002138 when it matches only ignoring case); all
   comparisons are exact and case-sensitive;
6. the issuer's discovery document and JWKS are fetched over HTTPS trusting public roots only,
   with no thumbprints (AADSTS90061 on any failure);
7. the header's kid is in the JWKS, after one refetch (AADSTS7000272);
8. a published key verifies the signature (AADSTS50027);
9. the time window holds: exp, and nbf when present, with CLOCK_SKEW either way (AADSTS700024).

Choices where Entra documents nothing (UNDOC), each tested in tests/local/test_entra.py:
- algorithms: RS256 only. Microsoft documents only RS256 as supported ("others may work");
  accepting more would let the stand-in pass a setup Entra may refuse. `none`, HS* and other
  asymmetric algorithms all get AADSTS50027 with check "algorithm".
- a missing iss, sub, aud or exp, or a non-integer date claim, is AADSTS50027 ("claims").
- lifetime limit: exp - iat <= 90 000 s passes (the field message says "less than or equal").
- multi-valued `aud`: a credential matches when its one audience is any of the values; error
  messages show the values joined with ", ".
- a subject mismatch is AADSTS70021 (the brief's choice; newer Entra may answer 700213); a
  subject equal to a credential's only ignoring case is AADSTS7002138 with Entra's message, as
  field reports since Entra's 2024 case-sensitive matching show (status 401 assumed).
- clock skew: 300 s on exp and nbf. `iat` in the future is not refused on its own.
- a token without `kid` is checked against every published key (like the AWS verifier).
- a kid missing from the cached JWKS triggers one refetch (key rotation), then fails.
- valid-from in the AADSTS700024 message is nbf, or the Unix epoch when there is no nbf (as
  field reports of that message show); times there are ISO 8601 with seven fraction digits.
- a client secret is accepted only for a principal that lists it; a managed identity has none.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from crossfed import jwt_view
from crossfed.azure.directory import Directory, FederatedCredential, ServicePrincipal
from crossfed.azure.entra import errors
from crossfed.azure.propagation import pending
from crossfed.oidc.fetch import FetchFailure, KeyCache, TrustSettings

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ALGORITHMS = ("RS256",)
MAX_LIFETIME = 25 * 3600  # Entra's 1.01:00:00
CLOCK_SKEW = 300
SA_PREFIX = "system:serviceaccount:"
# Entra's own token issuers (v1 and v2): their tokens are no federated assertion (700222)
ENTRA_ISSUER_PREFIXES = ("https://sts.windows.net/", "https://login.microsoftonline.com/")


@dataclass(frozen=True)
class AssertionGrant:
    principal: ServicePrincipal
    credential: FederatedCredential
    claims: dict[str, Any]


def _who(principal: ServicePrincipal) -> str:
    return (f"{principal.kind.replace('_', ' ')} '{principal.display_name}' "
            f"(client id {principal.client_id})")


# --- tenant and client ------------------------------------------------------------------


def find_tenant(directory: Directory, tenant: str) -> None:
    if not directory.has_tenant(tenant):
        raise errors.TenantNotFound(
            errors.TENANT_NOT_FOUND.format(tenant=tenant), check="tenant",
            detail=f"no tenant '{tenant}' in this directory: check AZURE_TENANT_ID (the "
            "webhook's azureTenantID, or the service account's "
            "azure.workload.identity/tenant-id annotation)",
        )


def find_principal(directory: Directory, tenant: str, client_id: str) -> ServicePrincipal:
    find_tenant(directory, tenant)
    principal = directory.by_client_id(tenant, client_id)
    if principal is not None:
        return principal
    raise errors.ApplicationNotFound(
        errors.APPLICATION_NOT_FOUND.format(client_id=client_id, tenant=tenant),
        check="client", detail=_unknown_client_detail(directory, tenant, client_id),
    )


def _unknown_client_detail(directory: Directory, tenant: str, client_id: str) -> str:
    by_object = directory.by_object_id(client_id)
    if by_object is not None:  # the most common mix-up: principalId where clientId belongs
        return (f"'{client_id}' is the object (principal) id of {_who(by_object)}: workloads "
                f"must present its client id {by_object.client_id}; the principal id is for "
                "role assignments and access policies")
    return (f"no managed identity or application in tenant '{tenant}' has client id "
            f"'{client_id}': check AZURE_CLIENT_ID (the service account's "
            "azure.workload.identity/client-id annotation) and that the identity still exists")


def verify_client_secret(directory: Directory, tenant: str, client_id: str,
                         secret: str) -> ServicePrincipal:
    principal = find_principal(directory, tenant, client_id)
    # compare_digest over every secret: no early exit that would time the match
    matches = [hmac.compare_digest(secret.encode(), known.encode())
               for known in principal.client_secrets]
    if any(matches):
        return principal
    if principal.kind == "managed_identity":
        why = (f"{_who(principal)} is a managed identity: it has no client secrets; a workload "
               "signs in with a federated assertion instead")
    else:
        why = (f"{_who(principal)} has {len(principal.client_secrets)} client secret(s) and "
               "the one sent is none of them (expired, rotated, or the secret's id was sent "
               "instead of its value)")
    raise errors.InvalidClientSecret(errors.INVALID_SECRET.format(client_id=client_id),
                                     check="client_secret", detail=why)


# --- the assertion's shape ----------------------------------------------------------------


def read_assertion(assertion: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims before any verification, with the shape checks made first."""
    try:
        view = jwt_view.parse(assertion)
        header, claims = view.header, view.claims
    except jwt_view.MalformedJwt as exc:
        raise errors.InvalidJwt(
            errors.MALFORMED_JWT, check="malformed",
            detail=f"the client assertion is not a JWT ({exc}); is AZURE_FEDERATED_TOKEN_FILE "
            "the projected service-account token?",
        ) from exc
    alg = str(header.get("alg"))
    if alg not in ALGORITHMS:
        raise errors.InvalidJwt(
            errors.MALFORMED_JWT, check="algorithm",
            detail=f"the assertion's alg is {alg!r}; Entra supports RS256 for federated "
            "assertions, so unsigned (none) and shared-secret (HS*) tokens are refused",
        )
    _check_claim_shapes(claims)
    return header, claims


def _check_claim_shapes(claims: dict[str, Any]) -> None:
    for claim in ("iss", "sub", "aud", "exp"):
        if not claims.get(claim):
            raise errors.InvalidJwt(errors.MALFORMED_JWT, check="claims",
                                    detail=f"the assertion has no {claim!r} claim")
    for claim in ("exp", "nbf", "iat"):
        if claim in claims and not isinstance(claims[claim], int):
            raise errors.InvalidJwt(
                errors.MALFORMED_JWT, check="claims",
                detail=f"{claim} is {claims[claim]!r}; JWT dates must be integer seconds")


def check_not_entra_issued(claims: dict[str, Any]) -> None:
    issuer = str(claims["iss"])
    if issuer.lower().startswith(ENTRA_ISSUER_PREFIXES):
        raise errors.EntraIssuedAssertion(
            errors.ENTRA_ISSUED, check="issuer",
            detail=f"the assertion was issued by Entra ID ({issuer}); workload identity "
            "federation takes tokens of an external identity provider, such as the cluster's "
            "projected service-account token, not Entra access tokens")


def check_lifetime_limit(claims: dict[str, Any]) -> None:
    if "iat" not in claims:
        raise errors.AssertionLifetimeTooLong(
            errors.MISSING_IAT, check="issued_at",
            detail="the assertion has no iat claim; Entra measures the token's lifetime from "
            "it and refuses tokens without one",
        )
    lifetime = claims["exp"] - claims["iat"]
    if lifetime > MAX_LIFETIME:
        raise errors.AssertionLifetimeTooLong(
            errors.LIFETIME_TOO_LONG.format(iat=claims["iat"], exp=claims["exp"]),
            check="max_lifetime",
            detail=f"the assertion lives {lifetime} s ({lifetime / 3600:.1f} h), more than "
            f"Entra's {MAX_LIFETIME} s (25 h): lower the projected token's expirationSeconds "
            "(azure.workload.identity/service-account-token-expiration, at most 86400)",
        )


def audiences(claims: dict[str, Any]) -> list[str]:
    aud = claims.get("aud")
    return [aud] if isinstance(aud, str) else [str(a) for a in aud or []]


# --- federated credential match -----------------------------------------------------------


def match_credential(principal: ServicePrincipal, claims: dict[str, Any]) -> FederatedCredential:
    credentials = list(principal.federated_credentials.values())
    issuer, subject, auds = str(claims["iss"]), str(claims["sub"]), audiences(claims)
    shown_aud = ", ".join(auds)
    by_issuer = [c for c in credentials if c.issuer == issuer]
    if not by_issuer:
        raise errors.NoRecordForIssuer(
            errors.NO_ISSUER_RECORD.format(issuer=issuer), check="issuer",
            detail=_issuer_detail(principal, credentials, issuer))
    by_audience = [c for c in by_issuer if any(a in auds for a in c.audiences)]
    if not by_audience:
        raise errors.NoRecordForAudience(
            errors.NO_AUDIENCE_RECORD.format(audience=shown_aud), check="audience",
            detail=f"the assertion's aud is {auds}; {_who(principal)} has credentials for "
            f"issuer '{issuer}' with audiences "
            f"{sorted({a for c in by_issuer for a in c.audiences})}: the token must be "
            "requested with the credential's audience (normally api://AzureADTokenExchange)")
    for credential in by_audience:
        if credential.subject == subject:
            if pending(credential.effective_at):
                # Facts file section 4: "a token request 'several minutes' after creating the
                # FIC may still fail with AADSTS70021" - the no-matching-record answer.
                raise errors.NoMatchingRecord(
                    errors.NO_MATCHING_RECORD.format(issuer=issuer, subject=subject,
                                                     audience=shown_aud),
                    check="propagation",
                    detail=f"the federated credential '{credential.name}' of "
                    f"{_who(principal)} matches, but it was written too recently to have "
                    "propagated (crossfed serve --propagation-delay); retry")
            return credential
    if any(c.subject.lower() == subject.lower() for c in by_audience):
        raise errors.SubjectMatchesOnlyIgnoringCase(
            errors.SUBJECT_CASE_ONLY.format(subject=subject), check="subject",
            detail=_subject_detail(principal, by_audience, subject))
    raise errors.NoMatchingRecord(
        errors.NO_MATCHING_RECORD.format(issuer=issuer, subject=subject, audience=shown_aud),
        check="subject", detail=_subject_detail(principal, by_audience, subject))


def _issuer_detail(principal: ServicePrincipal, credentials: list[FederatedCredential],
                   issuer: str) -> str:
    if not credentials:
        return (f"{_who(principal)} has no federated identity credentials at all; create one "
                f"for issuer '{issuer}' (az identity federated-credential create)")
    registered = sorted({c.issuer for c in credentials})
    lines = [f"the assertion's iss is '{issuer}'; {_who(principal)} has credentials for "
             f"issuers {registered} (compared exactly, trailing slash included)"]
    for known in registered:
        hint = _near_miss(known, issuer)
        if hint:
            lines.append(f"'{known}' {hint}")
    return "\n".join(lines)


def _near_miss(registered: str, presented: str) -> str:
    """Why two issuer URLs that look alike are not equal, or '' when they do not look alike."""
    if presented != presented.strip():
        return "matches only once whitespace is trimmed from the assertion's iss"
    if registered.rstrip("/") == presented.rstrip("/"):
        return "differs from the assertion's iss only in the trailing slash"
    if registered.lower() == presented.lower():
        return "differs from the assertion's iss only in letter case"
    return ""


def _sa_parts(subject: str) -> tuple[str, str] | None:
    if not subject.startswith(SA_PREFIX):
        return None
    namespace, sep, name = subject[len(SA_PREFIX):].partition(":")
    return (namespace, name) if sep else None


def subject_difference(registered: str, presented: str) -> str:
    """How a credential's subject differs from the assertion's, in Kubernetes terms."""
    if registered.lower() == presented.lower():
        return "differs only in letter case (Entra compares subjects case-sensitively)"
    mine, theirs = _sa_parts(registered), _sa_parts(presented)
    if mine is None or theirs is None:
        return f"is '{registered}', the assertion's is '{presented}'"
    parts = []
    if mine[0] != theirs[0]:
        parts.append(f"namespace '{mine[0]}' vs the assertion's '{theirs[0]}'")
    else:
        parts.append(f"same namespace '{mine[0]}'")
    if mine[1] != theirs[1]:
        parts.append(f"service account '{mine[1]}' vs the assertion's '{theirs[1]}'")
    else:
        parts.append(f"same service account '{mine[1]}'")
    return ", ".join(parts)


def _subject_detail(principal: ServicePrincipal, candidates: list[FederatedCredential],
                    subject: str) -> str:
    lines = [f"the assertion's sub is '{subject}'; {_who(principal)} has "
             f"{len(principal.federated_credentials)} federated credential(s), of which these "
             "match its issuer and audience:"]
    for credential in candidates:
        lines.append(f"- '{credential.name}': subject '{credential.subject}': "
                     f"{subject_difference(credential.subject, subject)}")
    lines.append("the pod runs as a service account no credential names: fix the credential's "
                 "subject (system:serviceaccount:NAMESPACE:NAME) or the pod's serviceAccountName")
    return "\n".join(lines)


# --- keys and signature -------------------------------------------------------------------


def fetch_issuer_keys(keys: KeyCache, issuer: str, trusted_roots: str | None,
                      refresh: bool) -> dict[str, Any]:
    # Entra trusts public roots only: no thumbprint fallback like IAM's
    trust = TrustSettings(ca_bundle=trusted_roots, thumbprints=())
    try:
        return keys.get(issuer, trust, refresh=refresh).jwks
    except FetchFailure as failure:
        raise errors.OidcEndpointFailed(
            errors.OIDC_ENDPOINT_FAILED, check="keys",
            detail=f"fetching {failure.url} failed ({failure.kind}): {failure.detail}. Entra "
            f"reads {issuer.rstrip('/')}/.well-known/openid-configuration and its jwks_uri "
            "from the internet and trusts publicly trusted certificates only: the issuer must "
            "be reachable over public HTTPS",
        ) from failure


def candidate_keys(jwks: dict[str, Any], kid: str | None) -> list[dict[str, Any]]:
    entries = [k for k in jwks.get("keys", []) if isinstance(k, dict)]
    return entries if kid is None else [k for k in entries if k.get("kid") == kid]


def signing_keys(keys: KeyCache, issuer: str, trusted_roots: str | None,
                 kid: str | None) -> list[dict[str, Any]]:
    jwks = fetch_issuer_keys(keys, issuer, trusted_roots, refresh=False)
    entries = candidate_keys(jwks, kid)
    if not entries:  # a rotated key: look once more before refusing
        jwks = fetch_issuer_keys(keys, issuer, trusted_roots, refresh=True)
        entries = candidate_keys(jwks, kid)
    if entries:
        return entries
    published = [k.get("kid") for k in jwks.get("keys", []) if isinstance(k, dict)]
    raise errors.SigningKeyNotFound(
        errors.KEY_NOT_FOUND.format(kid=kid, issuer=issuer), check="kid",
        detail=f"the issuer publishes kids {published} but the assertion names {kid!r}: it "
        "was signed by a key the issuer does not publish (another cluster's, or a key "
        "rotated out of the JWKS)",
    )


def check_signature(assertion: str, alg: str, entries: list[dict[str, Any]]) -> None:
    view = jwt_view.parse(assertion)
    if any(jwt_view.signature_valid(view, alg, entry) for entry in entries):
        return
    raise errors.InvalidJwt(
        errors.BAD_SIGNATURE, check="signature",
        detail="the assertion names a published kid, but that key does not verify its "
        "signature: it was signed by another key claiming the issuer's kid (forged, or the "
        "wrong signing key configured on the API server)",
    )


# --- time window --------------------------------------------------------------------------


def entra_time(epoch: float) -> str:
    """'2024-10-02T22:05:03.6755165Z': the seven fraction digits of .NET's round-trip format."""
    moment = datetime.fromtimestamp(epoch, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0Z"


def check_time_window(claims: dict[str, Any], now: float, skew: int = CLOCK_SKEW) -> None:
    exp, nbf = claims["exp"], claims.get("nbf")
    message = errors.OUTSIDE_TIME_RANGE.format(now=entra_time(now), nbf=entra_time(nbf or 0),
                                               exp=entra_time(exp))
    if now > exp + skew:
        raise errors.AssertionOutsideTimeRange(
            message, check="lifetime",
            detail=f"the assertion expired {int(now - exp)} s ago (allowed skew {skew} s): the "
            "kubelet refreshes projected tokens, so a stale copy was sent (a token file "
            "copied once, or read from the wrong path)",
        )
    if nbf is not None and now + skew < nbf:
        raise errors.AssertionOutsideTimeRange(
            message, check="lifetime",
            detail=f"the assertion is valid only from {int(nbf - now)} s from now (allowed skew "
            f"{skew} s): the issuer's clock is ahead of ours",
        )


# --- all checks -----------------------------------------------------------------------------


def check_assertion(directory: Directory, keys: KeyCache, trusted_roots: str | None,
                    tenant: str, client_id: str, assertion: str, now: float,
                    skew: int = CLOCK_SKEW) -> AssertionGrant:
    """Every check in the module docstring's order; raises the EntraError Entra answers with."""
    principal = find_principal(directory, tenant, client_id)
    header, claims = read_assertion(assertion)
    check_not_entra_issued(claims)
    check_lifetime_limit(claims)
    credential = match_credential(principal, claims)
    kid = header.get("kid")
    entries = signing_keys(keys, str(claims["iss"]), trusted_roots,
                           str(kid) if kid is not None else None)
    check_signature(assertion, str(header["alg"]), entries)
    check_time_window(claims, now, skew)
    return AssertionGrant(principal, credential, claims)


def verify_assertion(directory: Directory, keys: KeyCache, trusted_roots: str | None,
                     tenant: str, client_id: str, assertion: str, now: float | None = None,
                     skew: int = CLOCK_SKEW) -> ServicePrincipal:
    """The principal the assertion authenticates (check_assertion without the details)."""
    current = time.time() if now is None else now
    return check_assertion(directory, keys, trusted_roots, tenant, client_id, assertion,
                           current, skew).principal


class AssertionVerifier:
    """verify_assertion bound to a directory, a key cache and a clock (the server's view)."""

    def __init__(self, directory: Directory, keys: KeyCache, trusted_roots: str | None,
                 clock: Callable[[], float] = time.time, skew: int = CLOCK_SKEW) -> None:
        self.directory, self.keys, self.trusted_roots = directory, keys, trusted_roots
        self.clock, self.skew = clock, skew

    def verify(self, tenant: str, client_id: str, assertion: str) -> ServicePrincipal:
        return self.verify_grant(tenant, client_id, assertion).principal

    def verify_grant(self, tenant: str, client_id: str, assertion: str) -> AssertionGrant:
        return check_assertion(self.directory, self.keys, self.trusted_roots, tenant,
                               client_id, assertion, self.clock(), self.skew)
