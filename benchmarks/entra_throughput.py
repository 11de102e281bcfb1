"""Token exchanges per second through the Entra stand-in (federated assertion -> access token,
the assertion's issuer keys cached as Entra caches them) and Key Vault secret reads per second.

Usage: python benchmarks/entra_throughput.py [--requests N] [--clients C]
Target: at least 500 exchanges/s on the 2-core development machine.
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import requests

from crossfed.azure.directory import Directory, FederatedCredential, ServicePrincipal
from crossfed.azure.entra.access_tokens import AccessTokenSigner
from crossfed.azure.entra.server import EntraStandIn
from crossfed.azure.keyvault.model import AccessPolicy, Vault
from crossfed.azure.keyvault.server import KeyVaultFleet
from crossfed.issuer.server import IssuerServer
from crossfed.issuer.tokens import ServiceAccountRef
from crossfed.pki import RunCA

AUDIENCE = "api://AzureADTokenExchange"


@dataclass(frozen=True)
class Call:
    """One request, picklable so that client processes can repeat it."""

    method: str
    url: str
    ca_bundle: str
    form: dict[str, str] | None = None
    headers: dict[str, str] | None = None


def _client(call: Call, count: int) -> None:
    session = requests.Session()
    for _ in range(count):
        response = session.request(call.method, call.url, data=call.form, headers=call.headers,
                                   verify=call.ca_bundle, timeout=10)
        assert response.status_code == 200, response.text[:200]


def rate(call: Call, total: int, clients: int) -> float:
    """Calls per second from `clients` client processes: the clients' own Python work must not
    share the stand-in's interpreter lock, or the figure measures the clients."""
    per_client = total // clients
    _client(call, 1)  # warm: the issuer's keys are fetched once, then cached
    context = multiprocessing.get_context("fork")
    start = time.perf_counter()
    with ProcessPoolExecutor(clients, mp_context=context) as pool:
        list(pool.map(_client, [call] * clients, [per_client] * clients))
    return per_client * clients / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ca = RunCA(Path(tmp))
        issuer = IssuerServer(ca).start()
        directory, signer = Directory(), AccessTokenSigner()
        tenant = directory.add_tenant()
        account = ServiceAccountRef("bench", "reader")
        identity = directory.add(ServicePrincipal(tenant, "bench"))
        directory.put_federated_credential(identity, FederatedCredential(
            "bench", issuer.url, account.subject, [AUDIENCE]))
        entra = EntraStandIn(ca, directory, signer, trusted_roots=str(ca.bundle_path)).start()
        assertion = issuer.issuer.mint(account, [AUDIENCE])
        url = f"{entra.authority_host}/{tenant}/oauth2/v2.0/token"
        form = {"grant_type": "client_credentials", "client_id": identity.client_id,
                "scope": "https://vault.azure.net/.default", "client_assertion": assertion,
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}

        exchanges = rate(Call("POST", url, str(ca.bundle_path), form=form), args.requests,
                         args.clients)
        print(f"token exchanges: {exchanges:8.1f}/s ({args.requests} with {args.clients} "
              f"clients; target >= 500)")
        granted = [d for d in entra.decisions.all() if d.allowed]
        assert len(granted) >= args.requests, "the stand-in did not record every exchange"
        read_vault_secrets(ca, signer, tenant, identity, entra.authority_host, args)
        entra.stop()
        issuer.stop()


def read_vault_secrets(ca: RunCA, signer: AccessTokenSigner, tenant: str,
                       identity: ServicePrincipal, authority_host: str,
                       args: argparse.Namespace) -> None:
    fleet = KeyVaultFleet(ca, signer, authority_host)
    vault = Vault("bench", tenant, access_policies=[
        AccessPolicy(tenant, identity.object_id, ["get"])])
    vault.set_secret("bench-secret", "not-a-real-secret-value")
    uri = fleet.open_vault(vault)
    token = signer.issue(identity, "https://vault.azure.net").token
    headers = {"Authorization": f"Bearer {token}"}

    read = Call("GET", f"{uri}secrets/bench-secret/?api-version=7.6", str(ca.bundle_path),
                headers=headers)
    reads = rate(read, args.requests, args.clients)
    print(f"key vault reads: {reads:8.1f}/s ({args.requests} with {args.clients} clients)")
    fleet.stop()


if __name__ == "__main__":
    main()
