"""`crossfed doctor azure`: why a service account's token would (not) get a managed identity's
Entra token, and with --vault-url/--secret whether that identity may read the secret, from what
ARM holds and what the issuer serves, with the Entra stand-in's own assertion checks.

What ARM holds (the identity, its federated credentials) is put into a crossfed Directory and
checked with crossfed.azure.entra.assertion's functions, so each line names the check Entra's
decision would name (client, issuer, audience, subject, keys, kid, signature, lifetime) and
shows the AADSTS answer Entra would give. Access policies are judged with Key Vault's own
AccessPolicy.allows.

Read-only: every request of the management clients passes a pipeline policy that refuses any
method but GET before it is sent. Azure is reached only the standard way: DefaultAzureCredential
(AZURE_TENANT_ID/AZURE_CLIENT_ID/AZURE_CLIENT_SECRET, AZURE_AUTHORITY_HOST, ...),
--azure-subscription or AZURE_SUBSCRIPTION_ID, a non-public cloud from --azure-arm-endpoint's
/metadata/endpoints document, the CA from REQUESTS_CA_BUNDLE (as connection_verify). With
--kubeconfig the one write is to the cluster: a TokenRequest, whose token is never printed.

CHOICES (Azure does not document them, or the doctor cannot see Entra's side):
- the issuer's certificate is judged against REQUESTS_CA_BUNDLE, else the system roots,
  standing in for the public roots Entra trusts;
- instance discovery is switched off when the authority host is none of azure-identity's
  known clouds (as azure-identity advises for Azure Stack and private clouds);
- --client-id is looked up in every resource group of the subscription (GET resourcegroups,
  then each group's identities): ARM's subscription-wide identity list is not used;
- the vault of --vault-url is the one whose properties.vaultUri equals it (case and trailing
  slash aside), found the same way; the secret itself is not read (that would be data-plane
  access, not a configuration read); with enableRbacAuthorization the principal's role
  assignments covering the vault are read instead of its access policies (check
  role_assignment, crossfed/doctor/azure_rbac.py).
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from typing import Any

from crossfed.azure.directory import Directory, FederatedCredential, ServicePrincipal
from crossfed.azure.entra import assertion as entra
from crossfed.azure.entra import errors
from crossfed.azure.keyvault.model import AccessPolicy
from crossfed.doctor.report import Check, UsageError, fail, ok, one_line, skip
from crossfed.doctor.workload_token import workload_token
from crossfed.issuer.tokens import ServiceAccountRef
from crossfed.oidc.fetch import KeyCache

METADATA_API_VERSION = "2022-09-01"
GROUPS_API_VERSION = "2021-04-01"
PUBLIC_AUTHORITY = "https://login.microsoftonline.com/"
PUBLIC_ARM = "https://management.azure.com/"
PUBLIC_AUDIENCE = "https://management.core.windows.net/"
EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"


class WriteRefused(RuntimeError):
    pass


def _read_only_policy() -> Any:
    from azure.core.pipeline.policies import SansIOHTTPPolicy

    class ReadOnlyPolicy(SansIOHTTPPolicy):  # type: ignore[type-arg]
        """Anything but GET is refused before it is sent."""

        def on_request(self, request: Any) -> None:
            method = request.http_request.method.upper()
            if method != "GET":
                raise WriteRefused(f"crossfed doctor is read-only; it refused {method} "
                                   f"{request.http_request.url.split('?')[0]}")

    return ReadOnlyPolicy()


@dataclass(frozen=True)
class Cloud:
    authority_host: str
    arm_endpoint: str
    management_audience: str
    keyvault_dns: str

    @property
    def scope(self) -> str:
        return self.management_audience.rstrip("/") + "/.default"


def cloud_from(arm_endpoint: str | None, ca: str | None) -> Cloud:
    """The public cloud, or what --azure-arm-endpoint's metadata document names."""
    if not arm_endpoint:
        host = os.environ.get("AZURE_AUTHORITY_HOST") or PUBLIC_AUTHORITY
        return Cloud(host if "://" in host else f"https://{host}", PUBLIC_ARM, PUBLIC_AUDIENCE,
                     "vault.azure.net")
    import requests

    url = f"{arm_endpoint.rstrip('/')}/metadata/endpoints?api-version={METADATA_API_VERSION}"
    try:
        answer = requests.get(url, verify=ca or True, timeout=15)
        answer.raise_for_status()
        document = answer.json()
        auth = document["authentication"]
        return Cloud(auth["loginEndpoint"], document.get("resourceManager") or arm_endpoint,
                     auth["audiences"][0], document.get("suffixes", {}).get("keyVaultDns", ""))
    except (requests.RequestException, ValueError, KeyError, IndexError, TypeError) as exc:
        raise UsageError(f"cannot read the cloud's endpoints from {url}: {one_line(str(exc))}; "
                         "check --azure-arm-endpoint and REQUESTS_CA_BUNDLE") from exc


def _known_authority(host: str) -> bool:
    from azure.identity import AzureAuthorityHosts

    known = (AzureAuthorityHosts.AZURE_PUBLIC_CLOUD, AzureAuthorityHosts.AZURE_CHINA,
             AzureAuthorityHosts.AZURE_GOVERNMENT)
    bare = host.split("://")[-1].strip("/").lower()
    return bare in known


@dataclass
class Arm:
    """Read-only management clients over DefaultAzureCredential."""

    msi: Any
    keyvault: Any
    subscription: str

    def _read(self, what: str, call: Any) -> Any:
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ResourceNotFoundError,
            ServiceRequestError,
        )
        from azure.identity import CredentialUnavailableError

        try:
            return call()
        except ResourceNotFoundError:
            return None
        except (CredentialUnavailableError, ClientAuthenticationError) as exc:
            raise UsageError("DefaultAzureCredential found no usable credential "
                             f"({one_line(str(exc))[:300]}); set AZURE_TENANT_ID, "
                             "AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (or az login)") from exc
        except HttpResponseError as exc:
            code = getattr(exc.error, "code", None) or exc.status_code
            raise UsageError(f"ARM refused to read {what} ({code}: "
                             f"{one_line(str(exc.message or exc))[:300]}); give the doctor's "
                             "principal Reader on the subscription") from exc
        except ServiceRequestError as exc:
            raise UsageError(f"cannot reach ARM reading {what}: {one_line(str(exc))[:300]}; "
                             "check --azure-arm-endpoint and REQUESTS_CA_BUNDLE") from exc

    def groups(self) -> list[str]:
        from azure.core.rest import HttpRequest

        def call() -> list[str]:
            url = (f"/subscriptions/{self.subscription}/resourcegroups"
                   f"?api-version={GROUPS_API_VERSION}")
            names: list[str] = []
            while url:
                answer = self.keyvault.send_request(HttpRequest("GET", url))
                answer.raise_for_status()
                body = answer.json()
                names += [g["name"] for g in body.get("value", [])]
                url = body.get("nextLink") or ""
            return names

        return self._read("the resource groups", call) or []

    def identity(self, group: str, name: str) -> Any:
        return self._read(f"identity {group}/{name}",
                          lambda: self.msi.user_assigned_identities.get(group, name))

    def identities(self, group: str) -> list[Any]:
        return self._read(f"the identities of {group}", lambda: list(
            self.msi.user_assigned_identities.list_by_resource_group(group))) or []

    def credentials(self, group: str, name: str) -> list[Any]:
        return self._read(f"the federated credentials of {group}/{name}", lambda: list(
            self.msi.federated_identity_credentials.list(group, name))) or []

    def vaults(self, group: str) -> list[Any]:
        return self._read(f"the vaults of {group}", lambda: list(
            self.keyvault.vaults.list_by_resource_group(group))) or []


def arm_clients(cloud: Cloud, subscription: str, ca: str | None) -> Arm:
    from azure.identity import DefaultAzureCredential
    from azure.mgmt.keyvault import KeyVaultManagementClient
    from azure.mgmt.msi import ManagedServiceIdentityClient

    verify: dict[str, Any] = {"connection_verify": ca} if ca else {}
    credential = DefaultAzureCredential(
        authority=cloud.authority_host, **verify,
        **({} if _known_authority(cloud.authority_host) else
           {"disable_instance_discovery": True}))
    common = {"base_url": cloud.arm_endpoint, "credential_scopes": [cloud.scope],
              "per_call_policies": [_read_only_policy()], **verify}
    return Arm(ManagedServiceIdentityClient(credential, subscription, **common),
               KeyVaultManagementClient(credential, subscription, **common), subscription)


# --- the identity -------------------------------------------------------------------------


@dataclass
class Found:
    group: str
    name: str
    principal: ServicePrincipal


def _principal(identity: Any, tenant: str) -> ServicePrincipal:
    return ServicePrincipal(tenant_id=str(identity.tenant_id or tenant),
                            display_name=str(identity.name), client_id=str(identity.client_id),
                            object_id=str(identity.principal_id))


def _group_of(resource_id: str) -> str:
    parts = resource_id.split("/")
    lowered = [p.lower() for p in parts]
    return parts[lowered.index("resourcegroups") + 1] if "resourcegroups" in lowered else ""


def load_identity(arm: Arm, directory: Directory, tenant: str, identity: str | None,
                  client_id: str | None) -> Found | None:
    """Put what ARM holds into the directory; the identity asked for, or None."""
    directory.add_tenant(tenant)
    found: Found | None = None
    if identity:
        group, name = identity.split("/", 1)
        got = arm.identity(group, name)
        if got is not None:
            found = Found(group, name, _principal(got, tenant))
    else:
        for group in arm.groups():
            for got in arm.identities(group):
                principal = _principal(got, tenant)
                directory.add_tenant(principal.tenant_id)
                directory.add(principal)
                if principal.client_id.lower() == str(client_id).lower() and found is None:
                    found = Found(_group_of(str(got.id)) or group, str(got.name), principal)
    if found is None:
        return None
    for fic in arm.credentials(found.group, found.name):
        found.principal.federated_credentials[str(fic.name)] = FederatedCredential(
            str(fic.name), str(fic.issuer), str(fic.subject), list(fic.audiences or []))
    directory.add_tenant(found.principal.tenant_id)
    directory.add(found.principal)
    return found


# --- the checks ---------------------------------------------------------------------------


def _fingerprint(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:12]


def _failed(exc: errors.EntraError, fix: str, summary: str | None = None) -> Check:
    lines = (exc.detail or exc.message).splitlines()
    head = summary or one_line(lines[0])
    rest = lines if summary else lines[1:]
    return fail(exc.check, head, fix,
                [*rest, f"Entra would answer {exc.aadsts}: {one_line(exc.message)[:300]}"])


def _differences(credential: FederatedCredential, claims: dict[str, Any]) -> list[str]:
    auds = entra.audiences(claims)
    found = []
    if credential.issuer != claims["iss"]:
        found.append(f"issuer '{credential.issuer}' vs the token's '{claims['iss']}'")
    if not any(a in auds for a in credential.audiences):
        found.append(f"audiences {credential.audiences} vs the token's {auds}")
    if credential.subject != claims["sub"]:
        found.append(f"subject '{credential.subject}' vs the token's '{claims['sub']}'")
    return found


def _nearest(principal: ServicePrincipal, claims: dict[str, Any]) -> str:
    credentials = list(principal.federated_credentials.values())
    if not credentials:
        return "the identity has no federated credentials"
    best = min(credentials, key=lambda c: len(_differences(c, claims)))
    return f"nearest is credential '{best.name}': {'; '.join(_differences(best, claims))}"


def _fic_fix(found: Found, claims: dict[str, Any], account: ServiceAccountRef) -> str:
    return (f"az identity federated-credential create --resource-group {found.group} "
            f"--identity-name {found.name} --name {account.name} --issuer {claims['iss']} "
            f"--subject {account.subject} --audiences {EXCHANGE_AUDIENCE} (or update the "
            "nearest credential's field to the token's)")


def credential_checks(found: Found, claims: dict[str, Any],
                      account: ServiceAccountRef) -> list[Check]:
    principal = found.principal
    try:
        credential = entra.match_credential(principal, claims)
    except errors.EntraError as exc:
        order = ["issuer", "audience", "subject"]
        at = order.index(exc.check) if exc.check in order else 0
        checks = [ok(name, f"a credential has the token's {name}") for name in order[:at]]
        fix = (f"request the token with audience {EXCHANGE_AUDIENCE} (the credential's), or "
               f"set the credential's audience to {entra.audiences(claims)[0]}"
               if exc.check == "audience" else _fic_fix(found, claims, account))
        summary = (f"no federated credential of {found.group}/{found.name} matches the token's "
                   f"iss/aud/sub exactly; {_nearest(principal, claims)}")
        checks.append(_failed(exc, fix, summary))
        checks += [skip(name, f"needs a credential with the token's {exc.check}")
                   for name in order[at + 1:]]
        return checks
    return [ok("issuer", f"credential '{credential.name}' has issuer {credential.issuer}"),
            ok("audience", f"credential '{credential.name}' has audience "
               f"{credential.audiences}"),
            ok("subject", f"credential '{credential.name}' has subject {credential.subject}")]


def key_checks(token: str, header: dict[str, Any], claims: dict[str, Any],
               trusted_roots: str | None) -> list[Check]:
    issuer, kid = str(claims["iss"]), header.get("kid")
    cache = KeyCache()
    try:
        entra.fetch_issuer_keys(cache, issuer, trusted_roots, refresh=False)
        entries = entra.signing_keys(cache, issuer, trusted_roots,
                                     str(kid) if kid is not None else None)
    except errors.EntraError as exc:
        if exc.check == "keys":
            return [_failed(exc, f"make {issuer.rstrip('/')}/.well-known/openid-configuration "
                            "and its jwks_uri answer over public HTTPS"),
                    skip("kid", "needs the issuer's keys"),
                    skip("signature", "needs the issuer's keys")]
        return [ok("keys", f"fetched the JWKS of {issuer}"),
                _failed(exc, "use a token of the cluster whose issuer this is, or publish the "
                        "cluster's current signing key in the issuer's JWKS "
                        "(kube-apiserver --service-account-key-file)"),
                skip("signature", "needs a published key with the token's kid")]
    checks = [ok("keys", f"fetched the JWKS of {issuer}"),
              ok("kid", f"{kid!r} is published by the issuer")]
    try:
        entra.check_signature(token, str(header["alg"]), entries)
        checks.append(ok("signature", f"verified with kid {kid!r}"))
    except errors.EntraError as exc:
        checks.append(_failed(exc, "use a token signed by the cluster's own key (check the API "
                              "server's --service-account-signing-key-file)"))
    return checks


def lifetime_check(claims: dict[str, Any], now: float) -> Check:
    try:
        entra.check_lifetime_limit(claims)
        entra.check_time_window(claims, now)
    except errors.EntraError as exc:
        fix = ("use a fresh token: the kubelet refreshes projected tokens, so a copied or "
               "stale token file was read" if exc.check == "lifetime" else
               "request tokens of at most 24 h (service-account-token-expiration) with iat")
        return _failed(exc, fix)
    return ok("lifetime", f"expires in {int(claims['exp'] - now)} s "
              f"(skew {entra.CLOCK_SKEW} s)")


def vault_checks(arm: Arm, vault_url: str, secret: str, found: Found | None,
                 tenant: str) -> list[Check]:
    wanted = vault_url.rstrip("/").lower()
    for group in arm.groups():
        for vault in arm.vaults(group):
            uri = str(getattr(vault.properties, "vault_uri", "") or "")
            if uri.rstrip("/").lower() == wanted:
                return [ok("vault", f"{group}/{vault.name} ({uri})"),
                        _access(arm, vault, group, secret, found, tenant)]
    return [fail("vault", f"no vault of subscription {arm.subscription} has vaultUri "
                 f"{vault_url}", "fix --vault-url (az keyvault show -n NAME --query "
                 "properties.vaultUri)"),
            skip("access_policy", "needs the vault")]


def _access(arm: Arm, vault: Any, group: str, secret: str, found: Found | None,
            tenant: str) -> Check:
    props = vault.properties
    if found is None:
        return skip("access_policy", "needs the identity")
    principal = found.principal
    if getattr(props, "enable_rbac_authorization", False):
        from crossfed.doctor.azure_rbac import rbac_access_check

        return rbac_access_check(arm, vault, group, secret, principal.object_id)
    policies = [AccessPolicy(str(p.tenant_id), str(p.object_id),
                             [str(getattr(s, "value", s)) for s in (p.permissions.secrets or [])],
                             str(p.application_id) if p.application_id else None)
                for p in (props.access_policies or [])]
    vault_tenant = str(props.tenant_id or tenant)
    if any(p.allows(vault_tenant, principal.object_id, "get") for p in policies):
        return ok("access_policy", f"a policy of vault {vault.name} grants secrets get to "
                  f"principal id {principal.object_id} (secret '{secret}' itself is not read)")
    mine = [p for p in policies if p.object_id.lower() == principal.object_id.lower()]
    by_client = [p for p in policies if p.object_id.lower() == principal.client_id.lower()]
    why = (f"the policy for principal id {principal.object_id} grants secrets "
           f"{mine[0].secret_permissions}, not get" if mine else
           f"a policy names the client id {principal.client_id}; policies need the principal "
           f"(object) id {principal.object_id}" if by_client else
           f"no access policy of vault {vault.name} names principal id {principal.object_id}")
    return fail("access_policy", f"{why}, so reading secret '{secret}' gets 403 Forbidden "
                "(AccessDenied)", f"az keyvault set-policy --name {vault.name} "
                f"--resource-group {group} --object-id {principal.object_id} "
                "--secret-permissions get",
                [f"policies name object ids {[p.object_id for p in policies]}"])


def diagnose(token: str, account: ServiceAccountRef, arm: Arm, identity: str | None,
             client_id: str | None, tenant: str, trusted_roots: str | None,
             vault: tuple[str, str] | None = None, now: float | None = None) -> list[Check]:
    now = time.time() if now is None else now
    checks: list[Check] = []
    try:
        header, claims = entra.read_assertion(token)
    except errors.EntraError as exc:
        return [_failed(exc, "give the service account's projected token (an RS256 JWT with "
                        "iss, sub, aud, exp and iat)")]
    checks.append(ok("claims", f"iss {claims['iss']}, sub {claims['sub']}, aud "
                     f"{entra.audiences(claims)}, kid {header.get('kid')!r}, token "
                     f"{_fingerprint(token)}"))
    directory = Directory()
    found = load_identity(arm, directory, tenant, identity, client_id)
    if found is None and identity:
        group, name = identity.split("/", 1)
        checks.append(fail("client", f"no user-assigned identity {name} in resource group "
                           f"{group} of subscription {arm.subscription}",
                           f"az identity create --resource-group {group} --name {name}, or "
                           "fix --identity"))
    elif found is None:
        try:
            entra.find_principal(directory, tenant, str(client_id))
        except errors.EntraError as exc:
            checks.append(_failed(exc, "set AZURE_CLIENT_ID / the service account's "
                                  "azure.workload.identity/client-id annotation to the "
                                  "identity's clientId (az identity show --query clientId)"))
    else:
        p = found.principal
        checks.append(ok("client", f"identity {found.group}/{found.name}: client id "
                         f"{p.client_id}, principal id {p.object_id}, "
                         f"{len(p.federated_credentials)} federated credential(s)"))
    if found is None:
        checks += [skip(n, "needs the identity") for n in ("issuer", "audience", "subject")]
    else:
        checks += credential_checks(found, claims, account)
    checks += key_checks(token, header, claims, trusted_roots)
    checks.append(lifetime_check(claims, now))
    if vault is not None:
        checks += vault_checks(arm, vault[0], vault[1], found, tenant)
    return checks


def run(args: Any) -> list[Check]:
    try:
        account = ServiceAccountRef.parse(args.service_account)
    except ValueError as exc:
        raise UsageError(f"--service-account: {exc} (e.g. default/my-app)") from exc
    if bool(args.identity) == bool(args.client_id):
        raise UsageError("give exactly one of --identity RG/NAME or --client-id ID")
    if args.identity and (args.identity.count("/") != 1 or "" in args.identity.split("/")):
        raise UsageError(f"--identity {args.identity!r} is not RESOURCE_GROUP/NAME")
    if bool(args.kubeconfig) == bool(args.token_file):
        raise UsageError("give exactly one of --kubeconfig K [--context C] (a TokenRequest "
                         "for the service account) or --token-file F")
    if bool(args.vault_url) != bool(args.secret):
        raise UsageError("give --vault-url and --secret together (or neither)")
    subscription = args.azure_subscription or os.environ.get("AZURE_SUBSCRIPTION_ID")
    if not subscription:
        raise UsageError("no subscription: give --azure-subscription or set "
                         "AZURE_SUBSCRIPTION_ID")
    token = workload_token(args, account).strip()
    ca = os.environ.get("REQUESTS_CA_BUNDLE") or None
    cloud = cloud_from(args.azure_arm_endpoint, ca)
    arm = arm_clients(cloud, subscription, ca)
    tenant = os.environ.get("AZURE_TENANT_ID") or ""
    vault = (args.vault_url, args.secret) if args.vault_url else None
    checks = diagnose(token, account, arm, args.identity, args.client_id, tenant, ca, vault)
    from crossfed.doctor.access import secret_check, tenant_check

    told = getattr(args, "workload_tenant_id", None)
    if told and tenant:
        checks.insert(1, tenant_check(told, tenant))
    if vault is not None:
        checks.append(secret_check(_secret_client(cloud, vault[0], ca), vault[1]))
    return checks


def _secret_client(cloud: Cloud, vault_url: str, ca: str | None) -> Any:
    """Key Vault's data plane, asked only for secret names (GET), as the doctor's principal."""
    from urllib.parse import urlsplit

    from azure.identity import DefaultAzureCredential
    from azure.keyvault.secrets import SecretClient

    verify: dict[str, Any] = {"connection_verify": ca} if ca else {}
    credential = DefaultAzureCredential(
        authority=cloud.authority_host, **verify,
        **({} if _known_authority(cloud.authority_host) else
           {"disable_instance_discovery": True}))
    host = urlsplit(vault_url).hostname or ""
    # CHOICE: the challenge check only where the vault is under the cloud's Key Vault suffix.
    suffix = cloud.keyvault_dns.lstrip(".")
    return SecretClient(vault_url, credential, per_call_policies=[_read_only_policy()],
                        verify_challenge_resource=bool(suffix) and host.endswith("." + suffix),
                        **verify)
