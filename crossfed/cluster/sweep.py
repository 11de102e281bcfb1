"""Sweeping what an interrupted run left in a cluster.

A run labels everything it creates in a cluster with its run id (`crossfed-run-id`): one
namespace per scenario (its service account, ConfigMap, Secret and pod go with it) and, with the
reference mutator, a MutatingWebhookConfiguration. A killed run never reaches its teardown, so
`crossfed sweep` finds those objects by label and deletes them: one run's (`--run-id`), or every
run's that is older than `--older-than` minutes, so that a run still in progress is left alone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from kubernetes import client
from kubernetes.client.rest import ApiException

from crossfed.workload.pod import RUN_LABEL


@dataclass(frozen=True)
class Leftover:
    kind: str  # "namespace" or "mutatingwebhookconfiguration"
    name: str
    run_id: str
    created: dt.datetime

    def describe(self, now: dt.datetime) -> str:
        minutes = (now - self.created).total_seconds() / 60
        return f"{self.kind}/{self.name} (run {self.run_id}, {minutes:.0f} min old)"


def find_leftovers(api_client: client.ApiClient, run_id: str | None = None,
                   older_than: dt.timedelta = dt.timedelta(0),
                   now: dt.datetime | None = None) -> list[Leftover]:
    """crossfed's labelled objects: those of `run_id`, or of any run, created before
    now - older_than."""
    now = now or dt.datetime.now(dt.timezone.utc)
    selector = f"{RUN_LABEL}={run_id}" if run_id else RUN_LABEL
    core = client.CoreV1Api(api_client)
    admission = client.AdmissionregistrationV1Api(api_client)
    found = [*_labelled("namespace", core.list_namespace(label_selector=selector).items),
             *_labelled("mutatingwebhookconfiguration",
                        admission.list_mutating_webhook_configuration(
                            label_selector=selector).items)]
    return [leftover for leftover in found if now - leftover.created >= older_than]


def _labelled(kind: str, items: list) -> Iterator[Leftover]:
    for item in items:
        meta = item.metadata
        if meta.deletion_timestamp is not None:  # already being deleted (a namespace draining)
            continue
        yield Leftover(kind, meta.name, (meta.labels or {}).get(RUN_LABEL, ""),
                       meta.creation_timestamp)


def delete_leftovers(api_client: client.ApiClient, leftovers: list[Leftover],
                     report: Callable[[str], None] = print) -> list[str]:
    """Delete each leftover (webhook configurations first, so no pod creation meets a dead
    mutator); returns the failures, one line each. Already gone counts as deleted."""
    core = client.CoreV1Api(api_client)
    admission = client.AdmissionregistrationV1Api(api_client)
    deleters = {"mutatingwebhookconfiguration": admission.delete_mutating_webhook_configuration,
                "namespace": core.delete_namespace}
    failures: list[str] = []
    now = dt.datetime.now(dt.timezone.utc)
    for leftover in sorted(leftovers, key=lambda item: item.kind != "mutatingwebhookconfiguration"):
        try:
            deleters[leftover.kind](leftover.name)
        except ApiException as exc:
            if exc.status != 404:
                failures.append(f"{leftover.kind}/{leftover.name}: {exc.status} {exc.reason}")
                continue
        report(f"deleted {leftover.describe(now)}")
    return failures
