"""`crossfed doctor azure` as a user runs it: a subprocess with only the SDKs' standard
environment (EnvironmentCredential's variables, AZURE_SUBSCRIPTION_ID, REQUESTS_CA_BUNDLE) and
--azure-arm-endpoint, against a `crossfed serve` running as its own process, on objects
provisioned with azure-mgmt-msi / azure-mgmt-keyvault as the README's by-hand example does.

Every run is checked read-only: ARM's identities, their federated credentials and the vaults
(with their access policies) are the same before and after.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.identity import ClientSecretCredential
from azure.mgmt.keyvault import KeyVaultManagementClient
from azure.mgmt.msi import ManagedServiceIdentityClient

from crossfed.issuer.issuer import Issuer
from crossfed.issuer.keys import SigningKey
from crossfed.issuer.tokens import ServiceAccountRef, sign
from crossfed.suite.plans import SEED_AKS_SA
from fixtures.doctor import FakeApiServer, Outcome, usage_error
from fixtures.serve import CLI, Serve, mint_token, start_serve

pytestmark = [pytest.mark.local, pytest.mark.azure]

PROBE = ServiceAccountRef("crossfed-probe", "kv-reader")
AUDIENCE = "api://AzureADTokenExchange"
OTHER_ISSUER = "https://oidc.prod-aks.azure.com/7d3ed8a4-5e3b-4c8e-9d84-crossfed/"
LOCATION = "westeurope"


@dataclass
class World:
    serve: Serve
    home: Path
    tokens: Path
    group: str
    vault_url: str
    no_policy_vault_url: str
    rbac_vault_url: str

    @property
    def info(self) -> dict[str, Any]:
        return self.serve.info

    @property
    def az(self) -> dict[str, Any]:
        return self.info["azure"]

    def env(self, **extra: str) -> dict[str, str]:
        """Only the SDKs' standard variables (and a HOME with no ~/.azure in it)."""
        env = {"PATH": os.environ["PATH"], "HOME": str(self.home),
               "AZURE_TENANT_ID": self.az["tenant_id"],
               "AZURE_CLIENT_ID": self.az["admin_client_id"],
               "AZURE_CLIENT_SECRET": self.az["admin_client_secret"],
               "AZURE_SUBSCRIPTION_ID": self.az["subscription_id"],
               "REQUESTS_CA_BUNDLE": self.info["ca_bundle"]}
        env.update(extra)
        return {k: v for k, v in env.items() if v}

    def clients(self) -> tuple[Any, Any]:
        admin = ClientSecretCredential(
            self.az["tenant_id"], self.az["admin_client_id"], self.az["admin_client_secret"],
            authority=self.az["authority_host"], connection_verify=self.info["ca_bundle"],
            disable_instance_discovery=True)
        arm = {"base_url": self.az["arm_endpoint"], "connection_verify": self.info["ca_bundle"]}
        return (ManagedServiceIdentityClient(admin, self.az["subscription_id"], **arm),
                KeyVaultManagementClient(admin, self.az["subscription_id"], **arm))

    def token_file(self, name: str, token: str) -> Path:
        path = self.tokens / name
        path.write_text(token)
        path.chmod(0o600)
        return path

    def mint(self, account: ServiceAccountRef = PROBE, audience: str = AUDIENCE) -> Path:
        """Through `crossfed token`, as a user would."""
        token = mint_token(self.info["state_dir"], f"{account.namespace}/{account.name}",
                           audience)
        return self.token_file(f"{account.name}-{audience.replace('/', '_')}", token)

    def issuer(self, key: SigningKey | None = None) -> Issuer:
        return Issuer(self.info["issuer"], key or SigningKey.load(Path(self.info["signing_key"])))


def arm_state(world: World) -> dict[str, Any]:
    """Everything a write by the doctor could change, read back whole."""
    msi, keyvault = world.clients()
    state: dict[str, Any] = {"identities": {}, "vaults": {}}
    for identity in msi.user_assigned_identities.list_by_resource_group(world.group):
        fics = [f.as_dict() for f in msi.federated_identity_credentials.list(
            world.group, identity.name)]
        state["identities"][identity.name] = {"identity": identity.as_dict(), "fics": fics}
    for vault in keyvault.vaults.list_by_resource_group(world.group):
        state["vaults"][vault.name] = vault.as_dict()
    return json.loads(json.dumps(state, default=str, sort_keys=True))


def _identity(msi: Any, group: str, name: str, subject: str, issuer: str) -> Any:
    identity = msi.user_assigned_identities.create_or_update(group, name, {"location": LOCATION})
    msi.federated_identity_credentials.create_or_update(group, name, "k8s", {
        "issuer": issuer, "subject": subject, "audiences": [AUDIENCE]})
    return identity


def _vault(keyvault: Any, world: World, name: str, object_ids: list[str],
           rbac: bool = False) -> str:
    tenant = world.az["tenant_id"]
    vault = keyvault.vaults.begin_create_or_update(world.group, name, {
        "location": LOCATION, "properties": {
            "tenantId": tenant, "sku": {"family": "A", "name": "standard"},
            "enableRbacAuthorization": rbac,
            "accessPolicies": [{"tenantId": tenant, "objectId": oid,
                                "permissions": {"secrets": ["get"]}} for oid in object_ids]}}
    ).result()
    return str(vault.properties.vault_uri)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    serve = start_serve(tmp_path_factory.mktemp("doctor-azure-serve"))
    try:
        home, tokens = tmp_path_factory.mktemp("home"), tmp_path_factory.mktemp("tokens")
        tokens.chmod(0o700)
        group = serve.info["azure"]["resource_group"]
        stub = World(serve, home, tokens, group, "", "", "")
        msi, keyvault = stub.clients()
        issuer = serve.info["issuer"]
        app = _identity(msi, group, "app", PROBE.subject, issuer)
        _identity(msi, group, "seed", SEED_AKS_SA.subject, issuer)  # the seed's EKS section
        _identity(msi, group, "elsewhere", PROBE.subject, OTHER_ISSUER)
        vault_url = _vault(keyvault, stub, "doctor-kv", [app.principal_id])
        bare_url = _vault(keyvault, stub, "doctor-bare", [])
        rbac_url = _vault(keyvault, stub, "doctor-rbac", [], rbac=True)
        yield World(serve, home, tokens, group, vault_url, bare_url, rbac_url)
    finally:
        serve.stop()


def doctor(world: World, *args: str, env: dict[str, str] | None = None) -> Outcome:
    """Run the command; ARM must hold exactly what it held before."""
    before = arm_state(world)
    done = subprocess.run([*CLI, "doctor", "azure", *args], capture_output=True, text=True,
                          env=env or world.env(), timeout=120)
    changed = arm_state(world) != before
    assert not changed, "crossfed doctor changed ARM's state"
    return Outcome(done.returncode, done.stdout, done.stderr)


def diagnose(world: World, token: Path, *target: str, vault: str | None = None,
             account: ServiceAccountRef = PROBE) -> Outcome:
    which = list(target) or ["--identity", f"{world.group}/app"]
    kv = ["--vault-url", vault or world.vault_url, "--secret", "greeting"]
    return doctor(world, *which, "--service-account", f"{account.namespace}/{account.name}",
                  "--token-file", str(token), "--azure-arm-endpoint", world.az["arm_endpoint"],
                  *kv)


def test_the_positive_plan_is_all_ok(world: World) -> None:
    token = world.mint()
    run = diagnose(world, token)
    assert run.code == 0, run.stdout + run.stderr
    lines = [line for line in run.stdout.splitlines() if not line.startswith(" ")]
    # This vault lets the doctor's principal read nothing, so whether the secret exists is
    # not known (a skip, never a FAIL); every other check is ok.
    assert run.line("not_found").startswith("skip not_found: ") and "may not list" in \
        run.line("not_found"), run.stdout
    assert lines and all(line.startswith("ok   ") for line in lines
                         if not line.startswith("skip not_found")), run.stdout
    for check in ("claims", "client", "issuer", "audience", "subject", "keys", "kid",
                  "signature", "lifetime", "vault", "access_policy"):
        assert run.line(check).startswith(f"ok   {check}: ")
    leaked = token.read_text() in run.stdout + run.stderr
    assert not leaked, "the doctor printed the token"
    assert world.az["admin_client_secret"] not in run.stdout + run.stderr


def test_the_same_identity_found_by_its_client_id(world: World) -> None:
    msi, _ = world.clients()
    client_id = msi.user_assigned_identities.get(world.group, "app").client_id
    run = diagnose(world, world.mint(), "--client-id", client_id)
    assert run.code == 0, run.stdout + run.stderr
    assert f"identity {world.group}/app" in run.line("client")


def test_the_seeds_credential_names_the_stale_subject(world: World) -> None:
    run = diagnose(world, world.mint(), "--identity", f"{world.group}/seed")
    assert (run.code, run.failed()) == (1, ["subject", "access_policy"]), run.stdout
    line = run.line("subject")
    assert f"subject '{SEED_AKS_SA.subject}' vs the token's '{PROBE.subject}'" in line
    assert "credential 'k8s'" in line and "AADSTS70021" in run.stdout


def test_a_credential_for_another_issuer_fails_the_issuer(world: World) -> None:
    run = diagnose(world, world.mint(), "--identity", f"{world.group}/elsewhere")
    assert run.failed()[:1] == ["issuer"] and run.code == 1, run.stdout
    assert OTHER_ISSUER in run.line("issuer") and "AADSTS700211" in run.stdout
    assert run.line("subject").startswith("skip ")


def test_a_wrong_audience_fails_the_audience(world: World) -> None:
    run = diagnose(world, world.mint(audience="api://not-the-exchange"))
    assert (run.code, run.failed()) == (1, ["audience"]), run.stdout
    assert "api://not-the-exchange" in run.line("audience")


def test_an_expired_token_fails_the_lifetime(world: World) -> None:
    issuer = world.issuer()
    claims = issuer.claims_for(PROBE, [AUDIENCE])
    now = int(time.time())
    claims.update(iat=now - 4000, nbf=now - 4000, exp=now - 400)  # past the 300 s skew
    run = diagnose(world, world.token_file("expired", sign(claims, issuer.key)))
    assert (run.code, run.failed()) == (1, ["lifetime"]), run.stdout
    assert "AADSTS700024" in run.stdout


def test_a_token_signed_by_another_key_fails_the_kid(world: World) -> None:
    token = world.issuer(key=SigningKey.generate()).mint(PROBE, [AUDIENCE])
    run = diagnose(world, world.token_file("foreign", token))
    assert (run.code, run.failed()) == (1, ["kid"]), run.stdout
    assert "does not publish" in run.line("kid")


def test_a_known_kid_with_a_bad_signature_fails_the_signature(world: World) -> None:
    real = world.mint().read_text()
    forged = world.issuer(key=SigningKey.generate()).mint(PROBE, [AUDIENCE])
    token = ".".join([*real.split(".")[:2], forged.split(".")[2]])
    run = diagnose(world, world.token_file("forged", token))
    assert (run.code, run.failed()) == (1, ["signature"]), run.stdout


def test_no_access_policy_for_the_identity_fails_the_access_policy(world: World) -> None:
    run = diagnose(world, world.mint(), vault=world.no_policy_vault_url)
    assert (run.code, run.failed()) == (1, ["access_policy"]), run.stdout
    assert "az keyvault set-policy --name doctor-bare" in run.line("access_policy")


def test_an_rbac_vault_is_judged_by_role_assignments(world: World) -> None:
    """The identity holds no role on the RBAC vault: the role_assignment check fails with the
    az role assignment create that fixes it (its access policies do not count)."""
    run = diagnose(world, world.mint(), vault=world.rbac_vault_url)
    assert run.code == 1 and run.failed() == ["role_assignment"], run.stdout
    line = run.line("role_assignment")
    assert "az role assignment create" in line and "Key Vault Secrets User" in line, line


def test_with_a_kubeconfig_the_claims_come_from_a_token_request(world: World,
                                                                  tmp_path: Path) -> None:
    api = FakeApiServer(world.issuer(), {PROBE})
    try:
        config = str(api.kubeconfig(tmp_path / "kubeconfig"))
        run = doctor(world, "--identity", f"{world.group}/app", "--service-account",
                     f"{PROBE.namespace}/{PROBE.name}", "--kubeconfig", config, "--context",
                     "fake", "--azure-arm-endpoint", world.az["arm_endpoint"])
        assert run.code == 0 and run.failed() == [], run.stdout + run.stderr
        assert api.requests[-1]["spec"]["audiences"] == [AUDIENCE]
        leaked = api.requests[-1]["token"] in run.stdout + run.stderr
        assert not leaked, "the doctor printed the TokenRequest's token"
    finally:
        api.server.shutdown()


def test_an_unknown_client_id_fails_the_client(world: World) -> None:
    run = diagnose(world, world.mint(), "--client-id", "00000000-0000-4000-8000-000000000001")
    assert run.code == 1 and run.failed()[:1] == ["client"], run.stdout
    assert "AADSTS700016" in run.stdout


def test_usage_errors_exit_2_with_one_line(world: World, tmp_path: Path) -> None:
    token = str(world.mint())
    arm = ["--azure-arm-endpoint", world.az["arm_endpoint"]]
    base = ["--identity", f"{world.group}/app", "--service-account", "crossfed-probe/kv-reader",
            *arm]
    usage_error(doctor(world, *base), "--kubeconfig", "--token-file")
    usage_error(doctor(world, *base, "--token-file", str(tmp_path / "absent")), "cannot read")
    usage_error(doctor(world, *base, "--token-file", token, "--secret", "s"), "--vault-url")
    no_subscription = world.env(AZURE_SUBSCRIPTION_ID="")
    usage_error(doctor(world, *base, "--token-file", token, env=no_subscription),
                "AZURE_SUBSCRIPTION_ID")
    usage_error(doctor(world, "--identity", "app", "--service-account", "crossfed-probe/kv-reader",
                  "--token-file", token, *arm), "RESOURCE_GROUP/NAME")
    usage_error(doctor(world, "--identity", f"{world.group}/app", "--service-account",
                  "crossfed-probe/other", "--token-file", token, *arm), "not --service-account")
    no_secret = world.env(AZURE_CLIENT_SECRET="wrong-secret")
    usage_error(doctor(world, *base, "--token-file", token, env=no_secret),
                "DefaultAzureCredential")


def test_the_doctor_refuses_any_arm_write(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from crossfed.doctor.azure import WriteRefused, arm_clients, cloud_from

    ca = world.info["ca_bundle"]
    for key, value in world.env().items():
        monkeypatch.setenv(key, value)
    arm = arm_clients(cloud_from(world.az["arm_endpoint"], ca), world.az["subscription_id"], ca)
    with pytest.raises(WriteRefused, match="PUT"):
        arm.msi.user_assigned_identities.create_or_update(world.group, "doctor-never",
                                                          {"location": LOCATION})
    msi, _ = world.clients()
    names = [i.name for i in msi.user_assigned_identities.list_by_resource_group(world.group)]
    if "doctor-never" in names:  # the guard let it through: leave the module's ARM as it was
        msi.user_assigned_identities.delete(world.group, "doctor-never")
    assert "doctor-never" not in names
