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

import pytest

from crossfed.webhooks.versions import VersionError, WebhookVersions, contract_diff

PHASES = ("before", "after")
SEPARATOR = "@"


def chosen_versions(getoption: Callable[[str], str | None]) -> tuple[WebhookVersions,
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
