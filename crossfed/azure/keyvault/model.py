"""Key Vault's state: vaults with access policies (or Azure RBAC) and versioned secrets.

ARM creates vaults here (control plane); the data-plane server reads and writes secrets.
Locally each vault gets its own HTTPS listener, so its URL is https://127.0.0.1:PORT/ (a vault
is told apart by host in Azure; loopback names like kv.vault.localhost do not resolve
everywhere, a port per vault always does).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from crossfed.azure.propagation import pending

SECRET_PERMISSIONS = ("get", "list", "set", "delete", "backup", "restore", "recover", "purge")


@dataclass
class AccessPolicy:
    tenant_id: str
    object_id: str
    secret_permissions: list[str] = field(default_factory=list)
    application_id: str | None = None
    # Until effective_at (crossfed/azure/propagation.py) the vault still enforces
    # `in_force`, what the entry granted before its last write (nothing, for a new entry).
    effective_at: float = 0.0
    in_force: list[str] = field(default_factory=list)

    def granted_now(self) -> list[str]:
        return self.in_force if pending(self.effective_at) else self.secret_permissions

    def rewritten(self, permissions: list[str], effective_at: float) -> None:
        """New permissions, taking effect at effective_at; the old ones hold until then."""
        if [p.lower() for p in permissions] == [p.lower() for p in self.secret_permissions]:
            return
        self.in_force = list(self.granted_now())
        self.secret_permissions, self.effective_at = list(permissions), effective_at

    def allows(self, tenant_id: str, object_id: str, permission: str,
               application_id: str | None = None) -> bool:
        """Whether this entry grants `permission` to the caller a token names.

        Ids are GUIDs, so they compare case-insensitively (ARM keeps whatever case it was given,
        tokens carry lower case). A compound-identity entry (applicationId set) grants only when
        that application is the caller.
        """
        granted = {p.lower() for p in self.granted_now()}
        return (_same_id(self.tenant_id, tenant_id) and _same_id(self.object_id, object_id)
                and (not self.application_id or _same_id(self.application_id, application_id))
                and (permission.lower() in granted or "all" in granted))


def _same_id(expected: str, given: str | None) -> bool:
    return bool(given) and expected.lower() == (given or "").lower()


@dataclass(frozen=True)
class RbacVerdict:
    """Azure RBAC's answer for one data action: allowed, and why (for the decision log)."""

    allowed: bool
    why: str


# (object id, data action, scope) -> verdict; ARM's role assignments decide (ResourceManager.
# vault_decider). A vault without one (built without ARM) has no assignments: all denied.
RbacDecider = Callable[[str, str, str], RbacVerdict]


@dataclass
class SecretVersion:
    value: str = field(repr=False)
    version: str = field(default_factory=lambda: uuid.uuid4().hex)
    content_type: str | None = None
    tags: dict[str, str] | None = None
    created: int = field(default_factory=lambda: int(time.time()))
    enabled: bool = True
    # attributes.nbf / attributes.exp (epoch seconds): kept and echoed, not enforced
    not_before: int | None = None
    expires: int | None = None


@dataclass
class Vault:
    name: str
    tenant_id: str
    location: str = "westeurope"
    access_policies: list[AccessPolicy] = field(default_factory=list)
    enable_rbac_authorization: bool = False
    uri: str = ""  # set when the data plane gives the vault its listener
    resource_id: str = ""  # ARM id (/subscriptions/.../vaults/{name}); "" without ARM
    rbac: RbacDecider | None = field(default=None, repr=False, compare=False)
    secrets: dict[str, list[SecretVersion]] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def allowed(self, tenant_id: str, object_id: str, permission: str,
                application_id: str | None = None) -> bool:
        with self.lock:
            return any(p.allows(tenant_id, object_id, permission, application_id)
                       for p in self.access_policies)

    def set_secret(self, name: str, value: str, content_type: str | None = None,
                   tags: dict[str, str] | None = None) -> SecretVersion:
        version = SecretVersion(value, content_type=content_type, tags=tags)
        with self.lock:
            self.secrets.setdefault(name, []).append(version)
        return version

    def get_secret(self, name: str, version: str | None = None) -> SecretVersion | None:
        with self.lock:
            versions = self.secrets.get(name, [])
            if not version:
                return versions[-1] if versions else None
            return next((v for v in versions if v.version == version), None)
