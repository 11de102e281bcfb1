"""A user's workload as prometheus/prometheus#18972 reported it: it reads its federated token
from azure-workload-identity v1.5.x's fixed path instead of AZURE_FEDERATED_TOKEN_FILE,
exchanges it at Entra ID and reads one Key Vault secret. It prints one JSON line (the
secret's SHA-256, never its value) and exits 0 on success, 1 otherwise.

Only two things are crossfed's: CROSSFED_ROOT, which stands for "/" when crossfed runs this as
a local process instead of a pod (unset in a pod, so the path is the plain one), and the
CROSSFED_* variables the template maps to VAULT_URL / SECRET_NAME.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

# The bug under test: a hard-coded token path.
TOKEN_PATH = "/var/run/secrets/azure/tokens/azure-identity-token"


def read_token() -> str:
    with open(os.environ.get("CROSSFED_ROOT", "") + TOKEN_PATH) as handle:
        return handle.read().strip()


def main() -> int:
    from azure.identity import ClientAssertionCredential
    from azure.keyvault.secrets import SecretClient

    try:
        credential = ClientAssertionCredential(
            os.environ["AZURE_TENANT_ID"], os.environ["AZURE_CLIENT_ID"], read_token,
            authority=os.environ.get("AZURE_AUTHORITY_HOST"))
        client = SecretClient(os.environ["VAULT_URL"], credential,
                              verify_challenge_resource=os.environ.get(
                                  "SKIP_CHALLENGE_RESOURCE_CHECK") != "true")
        value = client.get_secret(os.environ["SECRET_NAME"]).value or ""
    except Exception as exc:  # reported as the line; the harness judges it
        print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}))
        return 1
    print(json.dumps({"ok": True, "sha256": hashlib.sha256(value.encode()).hexdigest()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
