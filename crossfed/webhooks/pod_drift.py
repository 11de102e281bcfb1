"""Contract drift per pod: each scenario pod's actual mutation (the pod the API server created
against the pod crossfed submitted) checked against what the reference mutator computes for the
same pod, service account, flags and webhook versions (`--check-drift`); recorded as goldens
(`--record-mutations DIR`) and checked against an earlier run's (`--compare-mutations DIR`).

A difference fails the scenario with the drift lines: either the webhook changed behaviour, or
crossfed's contract is out of date. With the reference mutator serving the cluster, the check
only finds drift when the mutator serves other versions than the oracle expects
(`--plant-webhook-versions`), which is how the check itself is proven.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from crossfed.webhooks import goldens
from crossfed.webhooks.drift import Mutation, actual_mutation, drift, expected_mutation
from crossfed.webhooks.reference_mutator import Denied, MutatorSettings
from crossfed.webhooks.versions import WebhookVersions

log = logging.getLogger("crossfed")
GOLDEN_WEBHOOK = "pods"  # both webhooks' mutation of a pod in one golden


def golden_version(versions: WebhookVersions) -> str:
    return f"eks-{versions.eks}_azwi-{versions.azwi}"


@dataclass
class MutationWatch:
    """Called by the pod runner with each pod it created; keeps each namespace's problems."""

    core: client.CoreV1Api
    oracle: Callable[[], tuple[WebhookVersions, MutatorSettings]]
    check: bool = True
    record_dir: Path | None = None
    compare_dir: Path | None = None
    case: str = "pod"  # the scenario's plan name, set before its pod is created
    problems: dict[str, list[str]] = field(default_factory=dict)

    def __call__(self, namespace: str, submitted: dict[str, Any],
                 created: dict[str, Any]) -> None:
        versions, settings = self.oracle()
        actual = actual_mutation(submitted, created)
        account = self._account(namespace, submitted)
        lines: list[str] = []
        if self.check:
            lines += self._drift(submitted, account, actual, settings)
        version = golden_version(versions)
        stable = run_independent(actual, account)
        if self.record_dir is not None:
            path = goldens.record(self.record_dir, GOLDEN_WEBHOOK, version, self.case, stable)
            log.info("crossfed: mutation of %s recorded in %s", self.case, path)
        if self.compare_dir is not None:
            lines += goldens.compare(self.compare_dir, GOLDEN_WEBHOOK, version, self.case,
                                     stable)
        self.problems[namespace] = lines

    def _account(self, namespace: str, submitted: dict[str, Any]) -> dict[str, Any] | None:
        name = (submitted.get("spec") or {}).get("serviceAccountName") or "default"
        try:
            return self.core.api_client.sanitize_for_serialization(
                self.core.read_namespaced_service_account(name, namespace))
        except ApiException as exc:
            if exc.status != 404:
                raise
            return None

    def _drift(self, submitted: dict[str, Any], account: dict[str, Any] | None, actual: Any,
               settings: MutatorSettings) -> list[str]:
        try:
            expected = expected_mutation(submitted, account, settings)
        except Denied as exc:
            return [f"the contract denies this pod ({exc}), but the webhook let it be created"]
        return drift(actual, expected)

    def verdict_lines(self, namespace: str) -> list[str]:
        return self.problems.get(namespace, [])


# What differs between two runs of the same scenario: the ids of the objects each run created,
# which reach the pod through its service account's annotations. Goldens hold placeholders.
RUN_VALUES = {"eks.amazonaws.com/role-arn": "$(ROLE_ARN)",
              "azure.workload.identity/client-id": "$(AZURE_CLIENT_ID)",
              "azure.workload.identity/tenant-id": "$(AZURE_TENANT_ID)"}


def run_independent(mutation: Mutation, account: dict[str, Any] | None) -> Mutation:
    """The mutation with this run's ids replaced by placeholders, to compare across runs."""
    annotations = ((account or {}).get("metadata") or {}).get("annotations") or {}
    text = json.dumps(mutation.to_dict())
    for key, placeholder in RUN_VALUES.items():
        value = annotations.get(key)
        if value:
            text = text.replace(json.dumps(value)[1:-1], placeholder)
    return Mutation.from_dict(json.loads(text))


def oracle_settings(base: MutatorSettings, versions: WebhookVersions) -> MutatorSettings:
    """The reference mutator's settings (tenant, authority host, flags) at `versions`."""
    return replace(base, eks=versions.eks_settings(base.eks), azure=versions.azwi_contract())


def watch_from_options(getoption: Callable[[str], Any], core: client.CoreV1Api
                       ) -> tuple[MutationWatch | None, WebhookVersions | None]:
    """The watch the drift options ask for (None: none asked), and the planted versions."""
    record, compare = getoption("--record-mutations"), getoption("--compare-mutations")
    planted_text = getoption("--plant-webhook-versions")
    check = bool(getoption("--check-drift") or planted_text)
    if not (check or record or compare):
        return None, None
    watch = MutationWatch(core, lambda: (WebhookVersions(), MutatorSettings()), check=check,
                          record_dir=Path(record) if record else None,
                          compare_dir=Path(compare) if compare else None)
    planted = WebhookVersions.parse(planted_text) if planted_text else None
    return watch, planted
