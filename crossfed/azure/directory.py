"""The Entra ID directory the Azure stand-ins share: tenants, service principals (managed
identities and applications) and their federated identity credentials.

ARM writes it (identities, credentials), the Entra token endpoint reads it; one lock guards it.
As in Azure, an identity has a client id (what workloads present) and a separate principal
(object) id (what access policies and the token's `oid` name).
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from typing import Literal

from crossfed.azure.propagation import Propagation

MAX_FEDERATED_CREDENTIALS = 20  # per identity or application (Entra limit)


class DirectoryError(Exception):
    """A rule of the directory was broken; `reason` is machine-readable."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


@dataclass
class FederatedCredential:
    name: str
    issuer: str
    subject: str
    audiences: list[str]
    # when Entra starts matching it (crossfed/azure/propagation.py); 0.0: at once
    effective_at: float = field(default=0.0, compare=False)


@dataclass
class ServicePrincipal:
    tenant_id: str
    display_name: str
    kind: Literal["managed_identity", "application"] = "managed_identity"
    client_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    object_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    client_secrets: list[str] = field(default_factory=list, repr=False)  # never shown
    federated_credentials: dict[str, FederatedCredential] = field(default_factory=dict)
    # when other services (ARM's role assignments) can find it by object id
    # (crossfed/azure/propagation.py); 0.0: at once. ARM sets it for identities it creates.
    known_at: float = field(default=0.0, compare=False)


class Directory:
    def __init__(self, propagation: Propagation | None = None) -> None:
        self.propagation = propagation or Propagation()
        self._tenants: set[str] = set()
        self._principals: dict[tuple[str, str], ServicePrincipal] = {}  # (tenant, client id)
        self._lock = threading.RLock()

    def add_tenant(self, tenant_id: str | None = None) -> str:
        tenant = tenant_id or str(uuid.uuid4())
        with self._lock:
            self._tenants.add(tenant)
        return tenant

    def has_tenant(self, tenant_id: str) -> bool:
        with self._lock:
            return tenant_id in self._tenants

    def add(self, principal: ServicePrincipal) -> ServicePrincipal:
        with self._lock:
            if principal.tenant_id not in self._tenants:
                raise DirectoryError("tenant", f"tenant {principal.tenant_id} does not exist")
            self._principals[(principal.tenant_id, principal.client_id)] = principal
        return principal

    def remove(self, tenant_id: str, client_id: str) -> None:
        with self._lock:
            self._principals.pop((tenant_id, client_id), None)

    def by_client_id(self, tenant_id: str, client_id: str) -> ServicePrincipal | None:
        with self._lock:
            return self._principals.get((tenant_id, client_id))

    def principals(self, tenant_id: str) -> list[ServicePrincipal]:
        with self._lock:
            return [p for p in self._principals.values() if p.tenant_id == tenant_id]

    def by_object_id(self, object_id: str) -> ServicePrincipal | None:
        with self._lock:
            return next((p for p in self._principals.values() if p.object_id == object_id), None)

    def put_federated_credential(self, principal: ServicePrincipal,
                                 credential: FederatedCredential) -> bool:
        """Create or replace by name; returns True when created. Enforces Entra's rules."""
        with self._lock:
            existing = principal.federated_credentials
            if len(credential.audiences) != 1:
                raise DirectoryError("audiences", "A federated identity credential must have "
                                     "exactly one audience")
            for other in existing.values():
                if other.name != credential.name and (other.issuer, other.subject) == (
                        credential.issuer, credential.subject):
                    raise DirectoryError(
                        "duplicate", f"a federated identity credential with issuer "
                        f"'{credential.issuer}' and subject '{credential.subject}' already "
                        f"exists on this identity ('{other.name}')")
            created = credential.name not in existing
            if created and len(existing) >= MAX_FEDERATED_CREDENTIALS:
                raise DirectoryError("limit", f"an identity can have at most "
                                     f"{MAX_FEDERATED_CREDENTIALS} federated identity credentials")
            previous = existing.get(credential.name)
            # A rewrite with the same content changes nothing; a new or changed one propagates.
            credential.effective_at = (previous.effective_at if previous == credential
                                       else self.propagation.effective_at())
            existing[credential.name] = credential
            return created

    def delete_federated_credential(self, principal: ServicePrincipal, name: str) -> bool:
        with self._lock:
            return principal.federated_credentials.pop(name, None) is not None
