"""crossfed's pytest options: their names under one heading, the old spellings that clashed
with other plugins, and whether the user asked for crossfed at all (`engaged`).

Split from crossfed/pytest_plugin.py, which imports these hooks so that pytest finds them on
the plugin module.
"""

from __future__ import annotations

import os
import re
from typing import Any

import pytest

MARKERS = {
    "local": "runs on this machine with the stand-ins (no cloud account needed)",
    "cloud": "runs against real cloud accounts (enable with --cloud aws / --cloud azure)",
    "aws": "exercises the AWS direction (IRSA-style web identity)",
    "azure": "exercises the Azure direction (workload identity federation)",
    "cluster": "needs a Kubernetes cluster (kind or --crossfed-kubeconfig)",
    "upgrade": "runs only with --upgrade-webhooks-to (deselected otherwise)",
}
KIND_NAME = re.compile(r"^[a-z0-9.-]+$")  # kind's rule (crossfed.cluster.kind.NAME_PATTERN)
TOOL_HELP = "path of the {tool} binary (default: PATH, else the pinned release in the cache)"
# Old spellings that clashed with pytest-kind / pytest-kind-ng (--keep-cluster, --kubeconfig,
# --kind-bin), renamed with their siblings. Each still works for one release, with a
# deprecation warning, when no other installed plugin defines it.
RENAMED = {
    "--keep-cluster": "--crossfed-keep-cluster",
    "--kind-bin": "--crossfed-kind-bin",
    "--kubectl-bin": "--crossfed-kubectl-bin",
    "--helm-bin": "--crossfed-helm-bin",
}
# Accepted with no warning where no other plugin defines it: the cloud tier's documented flag.
ALIASES = {"--kubeconfig": "--crossfed-kubeconfig"}
ENV_VARS = ("CROSSFED_KUBECONFIG", "CROSSFED_ISSUER_KEY", "CROSSFED_ISSUER_PORT",
            "CROSSFED_ISSUER_URL", "CROSSFED_ISSUER_CA", "CROSSFED_STANDIN_HOST",
            "CROSSFED_NODE", "CROSSFED_PROBE_IMAGE", "CROSSFED_KIND_NODE_IMAGE",
            "CROSSFED_KIND_DISABLE_DEFAULT_CNI", "CROSSFED_PROBE_IMAGE_ARCHIVE",
            "CROSSFED_REPORT")
TRUE_WORDS = ("1", "true", "yes", "on")
DEPRECATIONS = pytest.StashKey["list[str]"]()
_OPTION_DESTS: list[tuple[str, Any]] = []  # (dest, default) of every crossfed option


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("crossfed", "crossfed: cross-cloud workload identity federation")

    def add(name: str, **kwargs: Any) -> None:
        group.addoption(name, **kwargs)
        _OPTION_DESTS.append((name.lstrip("-").replace("-", "_"), kwargs.get("default")))

    add("--crossfed-env", action="append", choices=("process", "kind", "kubeconfig"),
        default=None,
        help="environments to run scenarios in (repeatable; default: process, plus kind when "
             "Docker and kind are usable and no --crossfed-issuer-* is given, plus kubeconfig "
             "when --crossfed-kubeconfig is given)")
    add("--crossfed-run-id", default=None,
        help="run id carried by every created name/tag (default: random)")
    # absolute from the start: the process workloads run in a working directory of their own
    add("--crossfed-state-dir", default=None, type=os.path.abspath,
        help="where keys, CA and certificates of the run are written "
             "(default: a pytest temporary directory)")
    add("--crossfed-report", default=_env("CROSSFED_REPORT"), metavar="PATH",
        help="write the run report: one self-contained HTML page with each scenario's chain, "
             "steps and diagnosis (JUnit gets the same as testcase properties with "
             "--junitxml) [env CROSSFED_REPORT]")
    add("--crossfed-kubeconfig", default=_env("CROSSFED_KUBECONFIG"),
        help="run the scenarios in pods of this cluster too (also spelt --kubeconfig where no "
             "other plugin defines that) [env CROSSFED_KUBECONFIG]")
    add("--crossfed-issuer-key", default=_env("CROSSFED_ISSUER_KEY"),
        help="RSA private key (PEM) the issuer signs with [env CROSSFED_ISSUER_KEY]")
    add("--crossfed-issuer-port", type=int, default=int(_env("CROSSFED_ISSUER_PORT") or 0),
        help="issuer port on 127.0.0.1 (0: free) [env CROSSFED_ISSUER_PORT]")
    add("--crossfed-issuer-url", default=_env("CROSSFED_ISSUER_URL"),
        help="use an issuer another process serves with --crossfed-issuer-key "
             "(shared by xdist workers) [env CROSSFED_ISSUER_URL]")
    add("--crossfed-issuer-ca", default=_env("CROSSFED_ISSUER_CA"),
        help="CA bundle of --crossfed-issuer-url [env CROSSFED_ISSUER_CA]")
    add("--crossfed-standin-host", default=_env("CROSSFED_STANDIN_HOST"),
        help="address the cloud stand-ins listen on: loopback, or the address of a bridge of "
             "this host that pods reach it at (default 127.0.0.1) [env CROSSFED_STANDIN_HOST]")
    add("--crossfed-node", default=_env("CROSSFED_NODE"),
        help="node to place pods on when the cluster has no scheduler [env CROSSFED_NODE]")
    add("--crossfed-probe-image", default=_env("CROSSFED_PROBE_IMAGE") or "crossfed/probe:local",
        help="probe image present on the node [env CROSSFED_PROBE_IMAGE]")
    add("--crossfed-webhooks", choices=("real", "reference"), default=None,
        help="what mutates the pods: the real webhook charts (kind: installed with helm; "
             "kubeconfig: the cluster's own) or crossfed's reference mutator "
             "(default: real on kind, reference on kubeconfig)")
    add("--webhook-versions", default=None, metavar="eks=V,azwi=V",
        help="webhook versions the scenarios run on (the reference mutator's contracts and "
             "the process environment's), e.g. eks=v0.5.2,azwi=v1.5.1 (default: eks=v0.6.17,"
             "azwi=v1.5.1)")
    add("--upgrade-webhooks-to", default=None, metavar="eks=V,azwi=V",
        help="run every local scenario before and after an upgrade in place to these "
             "versions (environments become E@before and E@after); prints the contract diff")
    add("--check-drift", action="store_true", default=False,
        help="fail a pod scenario whose pod's mutation (created against submitted) differs "
             "from what the reference mutator computes at --webhook-versions")
    add("--record-mutations", default=None, metavar="DIR",
        help="write each scenario pod's mutation as a golden file, per webhook versions")
    add("--compare-mutations", default=None, metavar="DIR",
        help="fail a pod scenario whose mutation differs from DIR's golden (an earlier "
             "run's --record-mutations)")
    add("--plant-webhook-versions", default=None, metavar="eks=V,azwi=V",
        help="the reference mutator serves these versions while --check-drift expects "
             "--webhook-versions: proves the drift check catches a changed webhook")
    add("--kind-cluster-name", default="crossfed",
        help="kind cluster to create or reuse (default: crossfed); its key and issuer port are "
             "kept in ~/.cache/crossfed/tools/kind/<name>")
    add("--crossfed-keep-cluster", action="store_true", default=False,
        help="do not delete the kind cluster at the end, even if this run created it "
             "(was --keep-cluster)")
    add("--kind-node-image", default=_env("CROSSFED_KIND_NODE_IMAGE"),
        help="node image for a cluster the kind environment creates: a local one (e.g. from "
             "cluster/kind/build-images.sh, no registry needed); default: the kind release's "
             "pinned kindest/node [env CROSSFED_KIND_NODE_IMAGE]")
    add("--kind-disable-default-cni", action="store_true",
        default=(_env("CROSSFED_KIND_DISABLE_DEFAULT_CNI") or "").lower() in TRUE_WORDS,
        help="create the kind cluster with networking.disableDefaultCNI (automatic when the "
             "node image's label io.crossfed.kind.default-cni says none) "
             "[env CROSSFED_KIND_DISABLE_DEFAULT_CNI]")
    add("--crossfed-probe-image-archive", default=_env("CROSSFED_PROBE_IMAGE_ARCHIVE"),
        help="docker-archive tar of the probe image to kind load instead of building "
             "probe.Dockerfile (cluster/build-probe-image.sh makes one without a registry) "
             "[env CROSSFED_PROBE_IMAGE_ARCHIVE]")
    add("--crossfed-probe-dockerfile", default=None,
        help="Dockerfile of the probe image the kind environment builds (default: the one "
             "shipped in the package; its build context is the probe's sources)")
    for tool in ("kind", "kubectl", "helm"):
        add(f"--crossfed-{tool}-bin", default=None,
            help=TOOL_HELP.format(tool=tool) + f" (was --{tool}-bin)")
    from crossfed.cloud.options import add_cloud_options

    add_cloud_options(add)


def _registered_option_names(parser: pytest.Parser) -> set[str]:
    """Every option string the loaded plugins registered (pytest has no public way to ask)."""
    names: set[str] = set()
    groups = [getattr(parser, "_anonymous", None), *getattr(parser, "_groups", [])]
    for group in groups:
        for option in getattr(group, "options", []):
            names.update(option.names())
    return names


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser,
                                  args: list[str]) -> None:
    """Rewrite old spellings of crossfed's options to the new ones, unless another plugin
    owns that spelling (pytest-kind's --keep-cluster means its own cluster, not crossfed's)."""
    taken = _registered_option_names(parser)
    warnings: list[str] = []
    for index, arg in enumerate(args):
        if arg == "--":
            break
        name, equals, value = arg.partition("=")
        new = RENAMED.get(name) or ALIASES.get(name)
        if new is None or name in taken:
            continue
        args[index] = new + equals + value
        if name in RENAMED:
            warnings.append(f"{name} is deprecated, use {new} (the old spelling clashes with "
                            "pytest-kind's and goes in the next release)")
    early_config.stash[DEPRECATIONS] = warnings


def engaged(config: pytest.Config) -> bool:
    """Did the user ask for crossfed before collection: an option or CROSSFED_* variable, or a
    crossfed marker in `-m`? (A test using the `federation` fixture engages it too; see USED.)"""
    if any(config.getoption(dest) not in (default, None, False)
           for dest, default in _OPTION_DESTS):
        return True
    if any(os.environ.get(name) for name in ENV_VARS):
        return True
    markexpr = config.getoption("markexpr", "") or ""
    return any(re.search(rf"\b{marker}\b", markexpr) for marker in MARKERS)
