"""The webhook upgrade flow, pytest side: `--webhook-versions eks=V1,azwi=V2` chooses the
versions the scenarios run on, `--upgrade-webhooks-to eks=V3,azwi=V4` makes every local
environment run every scenario twice, before and after an upgrade in place.

With an upgrade, each local environment parameter `E` becomes `E@before` and `E@after`; the
tests are ordered so that an environment runs all its scenarios on the first versions, then is
upgraded (on a cluster served by the reference mutator, the mutator switches contract; see
KubeconfigCluster.use_webhook_versions), then runs them all again on new pods. The closing
summary counts each phase apart and prints the contract diff of the two versions once.

Tests marked `upgrade` (crossfed/suite/test_upgrade.py) keep workloads across the upgrade:
they run last before it and first after it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from crossfed.webhooks.versions import VersionError, WebhookVersions, contract_diff

PHASES = ("before", "after")
SEPARATOR = "@"


def chosen_versions(getoption: Callable[[str], Any]) -> tuple[WebhookVersions,
                                                                     WebhookVersions | None]:
    """(the first versions, the versions to upgrade to or None); UsageError on a bad value."""
    try:
        first = WebhookVersions.parse(getoption("--webhook-versions") or "")
        target = getoption("--upgrade-webhooks-to")
        upgrade = WebhookVersions.parse(target, base=first) if target else None
    except VersionError as exc:
        raise pytest.UsageError(f"crossfed: {exc}") from None
    if upgrade is not None and upgrade == first:
        raise pytest.UsageError(f"--upgrade-webhooks-to {target}: the same versions as "
                                f"--webhook-versions ({first}); name a version to upgrade to")
    return first, upgrade


def configuration_problem(getoption: Callable[[str], Any], xdist_workers: int) -> str | None:
    """Why these options cannot run, asked when pytest starts (before any cluster is made).

    - A version no chart ships, where crossfed installs the real charts: kind (real webhooks
      by default) or --crossfed-webhooks real, and the cloud tier's clusters with
      --install-webhooks. The process environment and the reference mutator model every
      version the contracts know and need no chart.
    - --upgrade-webhooks-to with real webhooks crossfed did not install (a --crossfed-kubeconfig
      cluster's, or the cloud tier's without --install-webhooks): it does not upgrade them.
    - The real charts' upgrade on kind under xdist: it is cluster-wide, so one worker's upgrade
      would change the webhooks under another worker's `before` scenarios.
    """
    from crossfed.cloud.options import CloudSettings

    first, upgrade = chosen_versions(getoption)
    webhooks = getoption("--crossfed-webhooks")
    environments = list(getoption("--crossfed-env") or [])
    real_kind = webhooks != "reference" and "kind" in environments
    cloud = CloudSettings.from_options(getoption)
    cloud_real = bool(cloud.clouds and (cloud.aks_context or cloud.eks_context)
                      and not cloud.reference_mutator)
    if webhooks == "real" or real_kind or (cloud_real and cloud.install_webhooks):
        problem = _chart_problem(first, upgrade)
        if problem:
            return problem
    if upgrade is None:
        return None
    if webhooks == "real" and "kubeconfig" in environments:
        return ("--upgrade-webhooks-to with --crossfed-webhooks real on --crossfed-kubeconfig: "
                "crossfed did not install that cluster's webhooks and does not upgrade them; "
                "upgrade them yourself and run once per version, or use the kind environment "
                "(crossfed installs and upgrades the charts), or --crossfed-webhooks reference")
    if cloud_real and not cloud.install_webhooks:
        return ("--upgrade-webhooks-to on the cloud tier's clusters needs --install-webhooks "
                "(crossfed installs the first versions' charts and upgrades them) or "
                "--crossfed-webhooks reference; it does not upgrade webhooks it did not install")
    if (webhooks == "real" or real_kind) and xdist_workers > 1:
        return (f"--upgrade-webhooks-to with the real webhooks on kind under {xdist_workers} "
                "xdist workers: the helm upgrade is cluster-wide and would change the webhooks "
                "under another worker's `before` scenarios; drop -n (or use -n 0)")
    return None


def _chart_problem(*versions: WebhookVersions | None) -> str | None:
    from crossfed.webhooks.charts import ChartVersionError, azwi_chart_version, eks_chart_version

    for each in versions:
        try:
            if each is not None:
                eks_chart_version(each.eks), azwi_chart_version(each.azwi)
        except ChartVersionError as exc:
            return (f"crossfed: {exc}. The real webhooks are installed from their charts: "
                    "name a version a chart ships, or run with --crossfed-webhooks reference "
                    "(the reference mutator models it)")
    return None


def phase_names(environment: str, upgrading: bool) -> list[str]:
    return [f"{environment}{SEPARATOR}{phase}" for phase in PHASES] if upgrading else [
        environment]


def split(name: str) -> tuple[str, str | None]:
    """`kubeconfig@after` -> ("kubeconfig", "after"); `process` -> ("process", None)."""
    environment, sep, phase = name.partition(SEPARATOR)
    return environment, (phase if sep else None)


def versions_for(phase: str | None, first: WebhookVersions,
                 upgrade: WebhookVersions | None) -> WebhookVersions:
    return upgrade if phase == "after" and upgrade is not None else first


def order_items(items: list[pytest.Item]) -> None:
    """Per environment, every `before` scenario ahead of every `after` one (stable otherwise):
    the upgrade happens once per environment, between the two."""
    environments: list[str] = []
    for item in items:
        name = _env_param(item)
        if name is not None and split(name)[0] not in environments:
            environments.append(split(name)[0])

    def key(indexed: tuple[int, pytest.Item]) -> tuple[int, int, int, int]:
        index, item = indexed
        name = _env_param(item)
        if name is None or split(name)[1] is None:
            return (0, 0, 0, index)
        environment, phase = split(name)
        # The tests keeping workloads across the upgrade: last before it, first after it.
        kept = item.get_closest_marker("upgrade") is not None
        edge = (1 if kept else 0) if phase == "before" else (0 if kept else 1)
        return (1 + environments.index(environment), PHASES.index(phase or "before"), edge,
                index)

    items[:] = [item for _, item in sorted(enumerate(items), key=key)]


def _env_param(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("crossfed_env_name") if callspec is not None else None


def summary_lines(first: WebhookVersions, upgrade: WebhookVersions | None) -> list[str]:
    if upgrade is None:
        return []
    return [f"webhook upgrade {first} -> {upgrade}, contract diff:",
            *(f"  {line}" for line in contract_diff(first, upgrade))]


def before_after_table(outcomes: dict[str, list[tuple[str, str]]]) -> list[str]:
    """Per upgraded environment, each scenario's outcome before and after the upgrade, the
    ones that changed marked; [] when no environment ran both phases."""
    lines: list[str] = []
    bases = dict.fromkeys(split(name)[0] for name in outcomes if split(name)[1])
    for base in bases:
        before = dict(outcomes.get(f"{base}{SEPARATOR}before", []))
        after = dict(outcomes.get(f"{base}{SEPARATOR}after", []))
        names = list(dict.fromkeys([*before, *after]))
        if not names:
            continue
        width = max(len(name) for name in names)
        changed = [name for name in names if before.get(name) != after.get(name)]
        lines.append(f"{base}: scenario by scenario, before -> after the upgrade"
                     f" ({len(changed)} changed):")
        for name in names:
            mark = "  <- changed" if name in changed else ""
            lines.append(f"  {name:<{width}}  {before.get(name, 'not run'):>8} -> "
                         f"{after.get(name, 'not run')}{mark}")
    return lines
