"""The kind environment's webhook upgrade in place (issue 13, point 2): `helm upgrade` of the
real charts from the versions attach() installed to the versions `--upgrade-webhooks-to`
names, then the same MutatingWebhookConfiguration check as after the install.

What is installed is read from the marks in the state dir's cluster.json (kept per node, so a
recreated cluster starts with none):
- `releases`: release name -> fingerprint (chart, version, values without the tenant id) of
  what helm last installed or upgraded successfully, written after each release;
- `webhooks`: the fingerprint of the whole set once it is complete ("partial" while an install
  or upgrade is under way or failed half-way; any value means the real webhooks are there);
- `webhook_versions`: `eks=V,azwi=V` once complete, None while partial.
A release whose fingerprint is already marked is not run again: only the releases whose
version (or values) change are upgraded, cert-manager stays as it is, and a second worker or
a re-run after a failure picks up where the last one stopped.

Every helm call goes through the environment's `runner`, as the install's do.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from crossfed.progress import progress
from crossfed.webhooks import charts
from crossfed.webhooks.versions import VersionError, WebhookVersions

if TYPE_CHECKING:
    from crossfed.environments.kind import KindEnvironment

log = logging.getLogger("crossfed")

PARTIAL = "partial"
# Added to install_argv's for an upgrade. --reset-values: the release gets the new chart's
# defaults plus crossfed's values file, nothing of the last release's values. crossfed
# writes the complete values it wants every time, so there is nothing to carry over, while
# --reuse-values would merge the old release's values into the new chart (an `image.tag` the
# old release pinned, or a key the newer jkroepke chart's values.schema.json rejects: from
# 2.6.0 it forbids unknown top-level keys) and would drop defaults the new chart adds. Helm
# already resets when a values file is given; the flag says so and does not depend on it.
UPGRADE_FLAGS = ("--reset-values",)


def releases_fingerprint(releases: Sequence[charts.HelmRelease]) -> str:
    # Without the tenant id: it differs every run, and crossfed's service accounts carry
    # their own tenant-id annotation, which the webhook prefers to its configured one.
    described = [(r.name, r.version, r.chart_path,
                  {k: v for k, v in r.values.items() if k != "azureTenantID"})
                 for r in releases]
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]


def release_marks(releases: Sequence[charts.HelmRelease]) -> dict[str, str]:
    return {release.name: releases_fingerprint([release]) for release in releases}


def releases_to_install(releases: Sequence[charts.HelmRelease], marks: Mapping[str, Any],
                        fingerprint: str | None = None) -> list[charts.HelmRelease]:
    """The releases, in order, whose fingerprint the marks do not record as installed.

    Marks written before per-release marks existed only hold the whole set's fingerprint:
    when it is `fingerprint` (the set asked for), every release counts as installed."""
    installed = marks.get("releases")
    if installed is None:
        if fingerprint is not None and marks.get("webhooks") == fingerprint:
            return []
        installed = {}
    return [r for r in releases if installed.get(r.name) != releases_fingerprint([r])]


def installed_versions(marks: Mapping[str, Any]) -> WebhookVersions | None:
    recorded = marks.get("webhook_versions")
    if not recorded:
        return None
    try:
        return WebhookVersions.parse(recorded)
    except VersionError:  # written by a crossfed that modelled other versions
        return None


def mark_progress(env: KindEnvironment, node: str, release: charts.HelmRelease) -> None:
    """One release done: recorded, and the set marked partial until all are."""
    done = {**(env._marks(node).get("releases") or {}), **release_marks([release])}
    env._mark(node, releases=done, webhooks=PARTIAL, webhook_versions=None)


def upgrade_argv(release: charts.HelmRelease, env: KindEnvironment) -> list[str]:
    assert env.tools.helm is not None
    return [*release.install_argv(env.tools.helm, env.directory / "helm"), *UPGRADE_FLAGS,
            "--kubeconfig", str(env.kubeconfig)]


def upgrade_webhooks(env: KindEnvironment, azure_tenant_id: str,
                     versions: WebhookVersions) -> list[charts.HelmRelease]:
    """`helm upgrade --install ... --reset-values --wait` of each release whose version
    changes, in install order, then the webhook check; returns the releases upgraded.

    With the reference mutator nothing is installed or upgraded (the mutator switches
    contract, KubeconfigCluster.use_webhook_versions): returns []. charts.ChartVersionError
    (before any helm call) when no chart ships a version; KindSetupError with helm's words
    when an upgrade fails (the releases upgraded before it stay marked)."""
    if env.kubeconfig is None:
        raise RuntimeError("KindEnvironment.upgrade_webhooks() before start()")
    if env.settings.webhooks != "real":
        log.info("crossfed kind: reference mutator, no helm upgrade to %s: the mutator "
                 "switches contract instead", versions)
        return []
    releases = charts.webhook_releases(azure_tenant_id, versions)
    with env._setup_lock():  # one worker upgrades; the others then find it marked
        node = env._node_id()
        changed = releases_to_install(releases, env._marks(node))
        if changed and env.tools.helm is None:
            raise RuntimeError("crossfed kind: the real webhooks need helm; find it with "
                               "find_tools(helm=True) or pass --helm-bin")
        before = installed_versions(env._marks(node))
        for release in changed:
            log.info("crossfed kind: helm upgrade %s to %s (waits for its pods)",
                     release.name, release.version)
            with progress(f"kind: helm upgrade {release.name} to {release.version}"):
                env._run(upgrade_argv(release, env),
                         f"helm upgrade of {release.name} to {release.version}", timeout=900)
            mark_progress(env, node, release)
        env._mark(node, webhooks=releases_fingerprint(releases),
                  releases=release_marks(releases), webhook_versions=str(versions))
        env._wait_for_webhooks()
    if changed:
        log.info("crossfed kind: webhooks upgraded from %s to %s (%s)", before or "?",
                 versions, ", ".join(f"{r.name} {r.version}" for r in changed))
    else:
        log.info("crossfed kind: webhooks already at %s, nothing upgraded", versions)
    return changed
