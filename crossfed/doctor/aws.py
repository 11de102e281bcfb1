"""`crossfed doctor aws`: why a service account's token would (not) get a role's credentials,
from what IAM holds and what the issuer serves, with the verifying STS's own checks.

Read-only: IAM is asked only the Get/List calls in READ_ONLY_IAM (any other operation is
refused before it is sent, by a botocore hook). AWS is reached only the standard way:
boto3's default credential chain, endpoints and CA from the SDK's own environment
(AWS_ENDPOINT_URL[_IAM], AWS_CA_BUNDLE, AWS_PROFILE). With --kubeconfig the one write is to
the cluster: a TokenRequest for the service account, whose token is never printed.

CHOICES (AWS does not document them, or the doctor cannot see AWS's side):
- the issuer's certificate is judged against AWS_CA_BUNDLE, else the system roots, standing
  in for AWS's own root library; the thumbprints are the fallback, as STS uses them;
- the region: boto3's (AWS_DEFAULT_REGION, profile), else AWS_REGION, else us-east-1; IAM is
  global, so it only picks the endpoint's partition;
- with no provider for the issuer, the trust policy is still evaluated, against the ARN IAM
  would give a provider for that issuer, so both mistakes are named in one run.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from crossfed.aws import errors
from crossfed.aws import web_identity as sts
from crossfed.aws.trust_policy import WEB_IDENTITY_ACTION, WebIdentityContext, evaluate_trust_policy
from crossfed.aws.trust_policy_templates import provider_key
from crossfed.doctor.report import Check, UsageError, fail, ok, one_line, skip
from crossfed.doctor.workload_token import workload_token
from crossfed.issuer.tokens import ServiceAccountRef
from crossfed.oidc.fetch import FetchFailure, KeyCache, TrustSettings, served_chain_thumbprints

READ_ONLY_IAM = frozenset({
    "GetRole", "ListOpenIDConnectProviders", "GetOpenIDConnectProvider",
    "ListAttachedRolePolicies", "GetPolicy", "GetPolicyVersion", "ListRolePolicies",
    "GetRolePolicy"})


class WriteRefused(RuntimeError):
    pass


def _refuse_writes(model: Any, **_: Any) -> None:
    if model.name not in READ_ONLY_IAM:
        raise WriteRefused(f"crossfed doctor is read-only; it refused to call iam:{model.name}")


def iam_client() -> Any:
    """IAM through boto3's default chain; UsageError when no credentials are found."""
    import boto3
    from botocore.exceptions import BotoCoreError

    try:
        session = boto3.Session()
        credentials = session.get_credentials()
    except BotoCoreError as exc:  # e.g. AWS_PROFILE names no profile
        raise UsageError(f"cannot set up boto3: {exc}; fix AWS_PROFILE or ~/.aws/config") from exc
    if credentials is None:
        raise UsageError("no AWS credentials in boto3's default chain; set AWS_PROFILE or "
                         "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or run where a role is "
                         "available)")
    region = session.region_name or os.environ.get("AWS_REGION") or "us-east-1"
    client = session.client("iam", region_name=region)
    client.meta.events.register("before-parameter-build.iam", _refuse_writes)
    return client


def _call(iam: Any, operation: str, **params: Any) -> dict[str, Any] | None:
    """One read; None for NoSuchEntity, UsageError when IAM cannot be read at all."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    try:
        return getattr(iam, operation)(**params)
    except NoCredentialsError as exc:
        raise UsageError("no AWS credentials in boto3's default chain; set AWS_PROFILE or "
                         "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY") from exc
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "NoSuchEntity":
            return None
        action = "".join(part.title() for part in operation.split("_"))
        raise UsageError(f"IAM refused iam:{action} ({code}: "
                         f"{exc.response.get('Error', {}).get('Message', '')}); give the "
                         f"doctor's identity iam:{action} (see README, crossfed doctor)") from exc
    except BotoCoreError as exc:
        raise UsageError(f"cannot reach IAM: {exc}; check AWS_ENDPOINT_URL / "
                         "AWS_ENDPOINT_URL_IAM and AWS_CA_BUNDLE") from exc


def _document(value: Any) -> Any:
    """A policy document as IAM returns it: boto3 decodes it; raw answers are URL-encoded."""
    return json.loads(unquote(value)) if isinstance(value, str) else value


@dataclass
class BotoIamDirectory:
    """The verifier's IamDirectory over IAM's read API."""

    iam: Any
    provider_urls: list[str] = field(default_factory=list)  # every URL seen, for the fix

    def provider_for_issuer(self, account_id: str, issuer: str) -> sts.ProviderRecord | None:
        listed = _call(self.iam, "list_open_id_connect_providers") or {}
        wanted = provider_key(issuer)
        for entry in listed.get("OpenIDConnectProviderList", []):
            arn = entry["Arn"]
            if account_id and arn.split(":")[4] != account_id:
                continue
            got = _call(self.iam, "get_open_id_connect_provider",
                        OpenIDConnectProviderArn=arn)
            if got is None:
                continue
            url = provider_key(got.get("Url", ""))  # IAM answers it without the scheme
            self.provider_urls.append(url)
            if url == wanted:
                return sts.ProviderRecord(arn, url, tuple(got.get("ClientIDList", [])),
                                          tuple(got.get("ThumbprintList", [])))
        return None

    def role(self, role_arn: str) -> sts.RoleRecord | None:
        got = _call(self.iam, "get_role", RoleName=role_arn.rsplit("/", 1)[-1])
        if got is None or got["Role"]["Arn"] != role_arn:
            return None
        role = got["Role"]
        return sts.RoleRecord(role["Arn"], role["RoleName"],
                              _document(role["AssumeRolePolicyDocument"]),
                              int(role.get("MaxSessionDuration") or 3600))

    def permissions(self, role_name: str) -> list[str]:
        names: list[str] = []
        attached = _call(self.iam, "list_attached_role_policies", RoleName=role_name) or {}
        for policy in attached.get("AttachedPolicies", []):
            meta = _call(self.iam, "get_policy", PolicyArn=policy["PolicyArn"]) or {}
            version = meta.get("Policy", {}).get("DefaultVersionId")
            doc = _call(self.iam, "get_policy_version", PolicyArn=policy["PolicyArn"],
                        VersionId=version) if version else None
            actions = _actions(_document(doc["PolicyVersion"]["Document"])) if doc else []
            names.append(f"{policy['PolicyName']} ({', '.join(actions) or 'no Allow'})")
        inline = _call(self.iam, "list_role_policies", RoleName=role_name) or {}
        for name in inline.get("PolicyNames", []):
            doc = _call(self.iam, "get_role_policy", RoleName=role_name, PolicyName=name)
            actions = _actions(_document(doc["PolicyDocument"])) if doc else []
            names.append(f"{name} inline ({', '.join(actions) or 'no Allow'})")
        return names


def _actions(document: Any) -> list[str]:
    statements = document.get("Statement", []) if isinstance(document, dict) else []
    statements = [statements] if isinstance(statements, dict) else statements
    found: list[str] = []
    for statement in statements:
        if isinstance(statement, dict) and statement.get("Effect") == "Allow":
            action = statement.get("Action", [])
            found += [action] if isinstance(action, str) else [str(a) for a in action]
    return sorted(set(found))


# --- the checks ---------------------------------------------------------------------------


def _failed(exc: errors.StsError, fix: str) -> Check:
    lines = (exc.detail or exc.message).splitlines()
    return fail(exc.check, one_line(lines[0]), fix,
                [*lines[1:], f"STS would answer {exc.code}: {exc.message}"])


def _fingerprint(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:12]


def _trust_fix(role: sts.RoleRecord, provider: sts.ProviderRecord, claims: dict[str, Any],
               subject: str, audience: str) -> str:
    """The evaluator's own hint when it has one, else the condition the policy needs."""
    policy = _document(role.trust_policy)
    for action in (WEB_IDENTITY_ACTION, "sts:TagSession", "sts:SetSourceIdentity"):
        decision = evaluate_trust_policy(policy, WebIdentityContext(
            provider.arn, provider.url, claims, action))
        hints = [f.hint for f in decision.failures if f.hint]
        if not decision.allowed and hints:
            return "; ".join(hints)
        if not decision.allowed:
            break
    return (f"let role {role.name}'s trust policy allow Federated {provider.arn} with "
            f"StringEquals {provider.url}:sub = {subject} and {provider.url}:aud = {audience} "
            f"(aws iam update-assume-role-policy --role-name {role.name} --policy-document ...)")


def diagnose(role_arn: str, account: ServiceAccountRef, token: str,
             directory: BotoIamDirectory, trust_roots: str | None,
             now: float | None = None) -> list[Check]:
    """Every check the verifying STS makes, in its order, as far as each can be made."""
    now = time.time() if now is None else now
    checks: list[Check] = []
    try:
        view = sts.read_token(token)
    except errors.StsError as exc:
        return [_failed(exc, "give the service account's projected token, a JWT signed with "
                        "RS256/RS384/RS512 or ES256/ES384/ES512 with iss, sub, aud and exp")]
    header, claims = view.header, view.claims
    issuer, auds = claims["iss"], sts.audiences(claims)
    checks.append(ok("claims", f"iss {issuer}, sub {claims['sub']}, aud {auds}, kid "
                     f"{header.get('kid')!r}, token {_fingerprint(token)}"))
    checks.append(ok("algorithm", str(header["alg"])))
    key = provider_key(issuer)
    try:
        provider: sts.ProviderRecord | None = sts.find_provider(directory, role_arn, issuer)
    except errors.StsError as exc:
        provider = None
        known = directory.provider_urls or ["none"]
        checks.append(_failed(exc, f"create an IAM OIDC provider whose URL is exactly {issuer} "
                              f"(aws iam create-open-id-connect-provider --url {issuer} "
                              f"--client-id-list {auds[0]}), or make the API server's "
                              f"--service-account-issuer that of an existing provider "
                              f"(IAM holds: {', '.join(known)})"))
    if provider is None:
        for name in ("audience", "keys", "thumbprint", "signature"):
            checks.append(skip(name, "needs the provider"))
    else:
        checks.append(ok("provider", f"{provider.arn} (client ids {list(provider.client_ids)}, "
                         f"thumbprints {list(provider.thumbprints)})"))
        checks += _audience_keys_signature(view, provider, trust_roots)
    try:
        sts.check_lifetime(claims, now)
        checks.append(ok("expiry", f"expires in {int(claims['exp'] - now)} s "
                         f"(skew {sts.CLOCK_SKEW} s)"))
    except errors.StsError as exc:
        fix = ("use a fresh token: the kubelet refreshes projected tokens, so a copied or "
               "stale token file was read" if exc.check == "expiry"
               else "synchronise the clocks of the cluster and this machine (NTP)")
        checks.append(_failed(exc, fix))
    role = directory.role(role_arn)
    if role is None:
        checks.append(fail("role", f"role {role_arn} does not exist (or is not readable as "
                           "this account's)", "create the role, or fix --role-arn"))
        checks.append(skip("trust_policy", "needs the role"))
        return checks
    permissions = directory.permissions(role.name)
    checks.append(ok("role", f"{role.arn}; permissions: "
                     f"{'; '.join(permissions) or 'none (the session may do nothing)'}"))
    judged = provider or sts.ProviderRecord(
        f"arn:aws:iam::{sts.account_of(role_arn)}:oidc-provider/{key}", key, (), ())
    actions = (WEB_IDENTITY_ACTION,)
    try:
        if sts.session_tags(claims):
            actions += ("sts:TagSession",)
        if sts.source_identity(claims) is not None:
            actions += ("sts:SetSourceIdentity",)
        sts.check_trust(role, judged, claims, actions)
        how = "" if provider else f" (for {judged.arn}, the ARN IAM would give the provider)"
        checks.append(ok("trust_policy", f"allows {claims['sub']} with aud {auds}{how}"))
    except errors.StsError as exc:
        if exc.check == "trust_policy":
            fix = _trust_fix(role, judged, claims, account.subject, auds[0])
        else:
            fix = "fix the token's session-tag / source-identity claim"
        checks.append(_failed(exc, fix))
    return checks


def _audience_keys_signature(view: Any, provider: sts.ProviderRecord,
                             trust_roots: str | None) -> list[Check]:
    claims, header = view.claims, view.header
    issuer, auds = claims["iss"], sts.audiences(claims)
    checks: list[Check] = []
    try:
        audience = sts.match_audience(provider, claims)
        checks.append(ok("audience", f"{audience} is a client id of the provider"))
    except errors.StsError as exc:
        checks.append(_failed(exc, f"register the audience on the provider (aws iam "
                              f"add-client-id-to-open-id-connect-provider "
                              f"--open-id-connect-provider-arn {provider.arn} --client-id "
                              f"{auds[0]}), or request tokens for one of "
                              f"{list(provider.client_ids)} (--audience, the webhook's "
                              "token audience)"))
    served = _served_tops(issuer)
    cache = KeyCache()
    try:
        jwks = sts.fetch_keys(cache, issuer, provider, trust_roots, refresh=False)
    except errors.StsError as exc:
        top = served[-1] if served else "?"
        fix = (f"add the thumbprint {top} of the top certificate the issuer serves to the "
               f"provider (aws iam update-open-id-connect-provider-thumbprint "
               f"--open-id-connect-provider-arn {provider.arn} --thumbprint-list {top}), or "
               "serve the issuer from a certificate of a trusted CA"
               if exc.check == "thumbprint" else
               f"make {issuer}/.well-known/openid-configuration and its jwks_uri answer 200 "
               "over HTTPS within 5 s, from the internet")
        checks.append(_failed(exc, fix))
        checks.append(skip("signature", "needs the issuer's keys"))
        if exc.check == "keys":
            checks.append(skip("thumbprint", "needs the issuer's certificate"))
        return checks
    fetched = cache.get(issuer, TrustSettings(trust_roots, provider.thumbprints))  # cached
    checks.append(ok("keys", f"{len(jwks.get('keys', []))} key(s) from {fetched.jwks_uri}"))
    listed = [t for t in served if TrustSettings(None, provider.thumbprints).lists(t)]
    if fetched.via == "thumbprint":
        checks.append(ok("thumbprint", f"served top certificate {served[-1] if served else '?'}"
                         " is listed on the provider (the chain is not from a trusted CA)"))
    else:
        note = "listed" if listed else "not listed, which matters only without a trusted CA"
        checks.append(ok("thumbprint", "not needed: the issuer's certificate chains to a "
                         f"trusted root (AWS_CA_BUNDLE or system roots); served top "
                         f"{served[-1] if served else '?'} is {note}"))
    kid = header.get("kid")
    entries = sts.candidate_keys(jwks, kid)
    try:
        if not entries:  # as WebIdentityVerifier.verify words it
            raise errors.InvalidIdentityToken(
                errors.NO_MATCHING_KEY.format(kid=kid), check="signature",
                detail=f"the issuer publishes kids {[k.get('kid') for k in jwks['keys']]} but "
                f"the token names {kid!r}: it was signed by a key the issuer does not publish")
        sts.check_signature(view, header["alg"], entries)
        checks.append(ok("signature", f"verified with kid {kid!r}"))
    except errors.StsError as exc:
        checks.append(_failed(exc, "use a token of the cluster whose issuer this is, or "
                              "publish the cluster's current signing key in the issuer's JWKS "
                              "(kube-apiserver --service-account-key-file)"))
    return checks


def _served_tops(issuer: str) -> list[str]:
    try:
        return served_chain_thumbprints(issuer)
    except FetchFailure:
        return []


def run(args: Any) -> list[Check]:
    try:
        account = ServiceAccountRef.parse(args.service_account)
    except ValueError as exc:
        raise UsageError(f"--service-account: {exc} (e.g. default/my-app)") from exc
    if not args.role_arn.startswith("arn:") or ":role/" not in args.role_arn:
        raise UsageError(f"--role-arn {args.role_arn!r} is not an IAM role ARN "
                         "(arn:aws:iam::ACCOUNT:role/NAME)")
    if bool(args.kubeconfig) == bool(args.token_file):
        raise UsageError("give exactly one of --kubeconfig K [--context C] (a TokenRequest "
                         "for the service account) or --token-file F")
    token = workload_token(args, account)
    directory = BotoIamDirectory(iam_client())
    checks = diagnose(args.role_arn, account, token, directory,
                      os.environ.get("AWS_CA_BUNDLE") or None)
    if getattr(args, "bucket", None):
        from crossfed.doctor.access import permission_check

        checks.append(permission_check(directory.iam, args.role_arn.rsplit("/", 1)[-1],
                                       args.bucket))
    return checks
