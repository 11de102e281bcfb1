"""Webhook versions for the upgrade flow: `--webhook-versions eks=V1,azwi=V2` and
`--upgrade-webhooks-to eks=V3,azwi=V4`, what each version's contract looks like, and the
contract diff between two versions that the upgrade report prints once.

The versions the reference mutator models (its docstrings say what changed where):
- amazon-eks-pod-identity-webhook (`eks`): tags v0.2.0 to v0.6.17, and `master`. Behaviour
  changes at v0.5.3 (minimum expiration 3600 -> 600, sidecar init containers keep their
  restartPolicy) and at master (a foreign aws-iam-token volume is left alone).
- azure-workload-identity (`azwi`): v1.5.0, v1.5.1 (one layout) and v1.6.0 (moved mount).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from crossfed.webhooks import azure_workload_identity as azwi_contracts
from crossfed.webhooks import eks_pod_identity as eks_contracts

WEBHOOKS = ("eks", "azwi")
EKS_TAG = re.compile(r"^v0\.(\d+)\.(\d+)$")
EKS_NEWEST_TAG = (0, 6, 17)
EKS_OLDEST_TAG = (0, 2, 0)
SAMPLE_ROLE = "arn:aws:iam::111122223333:role/example"  # for the env values the diff shows
SAMPLE_POD = {"name": "app"}


class VersionError(ValueError):
    """A --webhook-versions / --upgrade-webhooks-to value crossfed cannot model."""


@dataclass(frozen=True)
class WebhookVersions:
    eks: str = eks_contracts.DEFAULT_VERSION
    azwi: str = azwi_contracts.DEFAULT_VERSION

    def __str__(self) -> str:
        return f"eks={self.eks},azwi={self.azwi}"

    @classmethod
    def parse(cls, text: str, base: WebhookVersions | None = None) -> WebhookVersions:
        """`eks=v0.5.2,azwi=v1.5.1`; a webhook not named keeps `base`'s version."""
        chosen = dict(vars(base or cls()))
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            webhook, sep, version = item.partition("=")
            webhook, version = webhook.strip(), version.strip()
            if not sep or webhook not in WEBHOOKS or not version:
                raise VersionError(f"{item!r}: write WEBHOOK=VERSION with WEBHOOK one of "
                                   f"{', '.join(WEBHOOKS)}, e.g. eks=v0.5.2,azwi=v1.5.1")
            chosen[webhook] = check_version(webhook, version)
        return cls(**chosen)

    def eks_settings(self, base: eks_contracts.WebhookSettings = eks_contracts.CHART_DEFAULTS
                     ) -> eks_contracts.WebhookSettings:
        return replace(base, version=self.eks)

    def azwi_contract(self) -> azwi_contracts.Contract:
        return azwi_contracts.CONTRACTS[self.azwi]


def check_version(webhook: str, version: str) -> str:
    if webhook == "azwi":
        if version not in azwi_contracts.CONTRACTS:
            raise VersionError(f"azwi={version}: crossfed models azure-workload-identity "
                               f"{', '.join(sorted(azwi_contracts.CONTRACTS))}")
        return version
    match = EKS_TAG.match(version)
    if version != eks_contracts.MASTER and (
            not match or not EKS_OLDEST_TAG <= (0, *map(int, match.groups())) <= EKS_NEWEST_TAG):
        raise VersionError(f"eks={version}: crossfed models amazon-eks-pod-identity-webhook "
                           "v0.2.0 to v0.6.17 and master (give the tag, e.g. v0.5.2)")
    return version


def eks_facts(version: str, base: eks_contracts.WebhookSettings = eks_contracts.CHART_DEFAULTS
              ) -> dict[str, Any]:
    """What a pod sees of the EKS webhook's contract at `version`, aspect by aspect."""
    settings = replace(base, version=version)
    env = eks_contracts.injected_env(SAMPLE_ROLE, settings)
    return {
        "env names": list(env),
        "env values": env,
        "token path": env["AWS_WEB_IDENTITY_TOKEN_FILE"],
        "volume name": eks_contracts.VOLUME_NAME,
        "mount path": settings.token_mount_path,
        "audience": settings.token_audience,
        "expiration default": settings.token_expiration,
        "expiration minimum": settings.min_expiration,
        "sidecar init containers (restartPolicy Always)":
            "kept" if settings.keeps_restart_policy else "restartPolicy dropped",
        "a foreign aws-iam-token volume":
            "pod left alone" if settings.checks_foreign_token_volume else "mutated",
    }


def azwi_facts(version: str) -> dict[str, Any]:
    """What a pod sees of azure-workload-identity's contract at `version`."""
    contract = azwi_contracts.CONTRACTS[version]
    env = azwi_contracts.injected_env("<client-id>", "<tenant-id>", contract.token_path)
    return {
        "env names": list(env),
        "env values": env,
        "token path": contract.token_path,
        "volume name": contract.volume_name(SAMPLE_POD) if contract.hashed_volume_name
        else azwi_contracts.LEGACY_VOLUME,
        "volume name rule": "azure-workload-identity-reserved-<sha256 of the pod name>"
        if contract.hashed_volume_name else "azure-identity-token",
        "mount path": contract.mount_path,
        "projection path": contract.projection_path,
        "same-named volume or mount": "replaced" if contract.replaces_existing else "kept",
        "audience": azwi_contracts.DEFAULT_AUDIENCE,
        "expiration default": contract.default_expiration,
        "expiration bounds": "3600..86400",
        "proxy init image": contract.proxy_image("proxy-init"),
        "proxy sidecar image": contract.proxy_image("proxy"),
    }


def contract_diff(before: WebhookVersions, after: WebhookVersions) -> list[str]:
    """One line per aspect that changes between the two versions, then one line listing what
    stays; nothing for a webhook whose version does not change."""
    lines = []
    for webhook, facts in (("eks", eks_facts), ("azwi", azwi_facts)):
        old, new = getattr(before, webhook), getattr(after, webhook)
        if old == new:
            lines.append(f"{webhook}: {old} kept, contract unchanged")
            continue
        was, now = facts(old), facts(new)
        changed = [k for k in was if was[k] != now[k]]
        for key in changed:
            if isinstance(was[key], dict):
                for name in dict.fromkeys([*was[key], *now[key]]):
                    if was[key].get(name) != now[key].get(name):
                        lines.append(f"{webhook} {old} -> {new}: {key}: {name} "
                                     f"{was[key].get(name, '(absent)')} -> "
                                     f"{now[key].get(name, '(absent)')}")
            else:
                lines.append(f"{webhook} {old} -> {new}: {key}: {was[key]} -> {now[key]}")
        same = [k for k in was if k not in changed]
        lines.append(f"{webhook} {old} -> {new}: unchanged: {', '.join(same) or 'nothing'}")
    return lines
