"""Entra ID's and Key Vault's eventual consistency, simulated (`crossfed serve
--propagation-delay SECONDS`).

A federated identity credential, a Key Vault access policy and a role assignment written
through ARM are visible to ARM reads at once but take effect only `delay` seconds later; until
then the token endpoint, the vault and ARM's own authorization answer as for a credential,
policy or assignment that is not there (cloud-tier-facts.md section 4: "a token request
'several minutes' after creating the FIC may still fail with AADSTS70021"; RBAC/access changes
"take up to 10 min (ARM caching)"). A managed identity ARM creates is likewise unknown to role
assignments without principalType (400 PrincipalNotFound) until `delay` has passed
(ServicePrincipal.known_at). Each object carries `effective_at`, a time.monotonic() reading: 0.0
(the default) is always in effect.
"""

from __future__ import annotations

import time

clock = time.monotonic


class Propagation:
    """When a write made now takes effect."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = float(delay)

    def effective_at(self) -> float:
        return clock() + self.delay if self.delay > 0 else 0.0


def pending(effective_at: float) -> bool:
    """Written, not yet in effect."""
    return effective_at > 0.0 and clock() < effective_at
