"""Which tiers a run really exercised: the environments whose scenarios ran (and those that
only skipped), the clouds they met (crossfed's stand-ins in the run, an endpoint such as
`crossfed serve`, or the real clouds) and what mutated the pods at which webhook versions.

Said in the closing summary (and the run report), so a green run cannot pass for more than
it was: a landing whose cluster did not come up shows no pod environment as run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def ran_and_skipped(outcomes: Mapping[str, Sequence[tuple[str, str]]]
                    ) -> tuple[list[str], list[str]]:
    """(environments with a scenario that ran, environments whose scenarios all skipped)."""
    ran = [env for env, done in outcomes.items() if any(o != "skipped" for _, o in done)]
    return ran, [env for env in outcomes if env not in ran]


def cloud_endpoints(getoption: Callable[[str], Any]) -> dict[str, str]:
    """What the cloud tier's SDKs reach, per cloud: an endpoint given, else the real one."""
    aws = os.environ.get("AWS_ENDPOINT_URL_STS") or os.environ.get("AWS_ENDPOINT_URL")
    arm = getoption("--azure-arm-endpoint")
    return {"aws": f"AWS at {aws} (not the real cloud)" if aws else "real AWS",
            "azure": f"Azure at {arm} (not the real cloud)" if arm else "real Azure"}


def tier_lines(outcomes: Mapping[str, Sequence[tuple[str, str]]],
               getoption: Callable[[str], Any]) -> list[str]:
    from crossfed.upgrade_flow import chosen_versions, split

    ran, skipped = ran_and_skipped(outcomes)
    if not ran and not skipped:
        return []
    bases = {split(env)[0] for env in ran}

    def where(env: str) -> str:
        return "processes" if split(env)[0].endswith("process") else "pods"

    lines = ["tiers: environments run: "
             + (", ".join(f"{env} ({where(env)})" for env in ran) or "none")
             + (f"; only skipped: {', '.join(skipped)}" if skipped else "")]
    clouds = []
    if bases & {"process", "kubeconfig", "kind"}:
        clouds.append("crossfed's stand-ins, started by this run")
    if bases & {"cloud-process", "cloud-cluster"}:
        endpoints = cloud_endpoints(getoption)
        chosen = getoption("--cloud") or []
        clouds += [endpoints[cloud] for cloud in dict.fromkeys(chosen)]
    lines.append(f"tiers: clouds: {', '.join(clouds) or 'none'}")
    first, upgrade = chosen_versions(getoption)
    versions = f"{first}" + (f" upgraded to {upgrade}" if upgrade else "")
    pods = sorted(bases & {"kubeconfig", "kind", "cloud-cluster"})
    if pods:
        webhooks = getoption("--crossfed-webhooks")
        what = {base: webhooks or ("real" if base in ("kind", "cloud-cluster") else "reference")
                for base in pods}
        names = {"reference": "reference mutator", "real": "real webhooks"}
        said = ", ".join(f"{base}: {names[kind]}" for base, kind in what.items())
        lines.append(f"tiers: webhooks: {said}; versions {versions}")
    else:
        lines.append(f"tiers: webhooks: none (no pods); contracts {versions}")
    return lines
