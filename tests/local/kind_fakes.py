"""Fakes of kind, docker, helm and kubectl for the kind environment's tests.

`FakeTools` answers as those tools would (output shapes from
shared/reference/kind-and-charts-facts.md), keeps the state they would keep (clusters, images,
releases) and records every argv. It is used two ways:
- in process, as the KindEnvironment's `runner` (tests/local/test_kind_environment.py);
- as executables on PATH (`install_executables`), for runs of the real plugin in another
  process or virtualenv: each call loads the state from a JSON file, answers, and saves it.
It proves the orchestration and the files it hands the tools, not that the tools behave so.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from crossfed.issuer.keys import kube_key_id
from crossfed.webhooks import charts

IPAM = [{"Subnet": "fc00:f853:ccd:e793::/64", "Gateway": "fc00:f853:ccd:e793::1"},
        {"Subnet": "172.18.0.0/16", "Gateway": "172.18.0.1"}]
KUBECONFIG = """apiVersion: v1
kind: Config
clusters:
- cluster: {{server: "https://127.0.0.1:40123"}}
  name: kind-{name}
contexts:
- context: {{cluster: kind-{name}, user: kind-{name}}}
  name: kind-{name}
current-context: kind-{name}
"""


def _flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


class FakeTools:
    """Answers as kind, docker, helm and kubectl would, keeping their state; records argv."""

    def __init__(self, *, create_delay: float = 0.0, helm_failures: dict[str, str] | None = None,
                 polls_without_ca: int = 0, build_fails: bool = False,
                 ipam: list[dict[str, str]] | None = None) -> None:
        self.ipam = IPAM if ipam is None else ipam
        self.clusters: dict[str, dict[str, Any]] = {}
        self.images: dict[str, tuple[str, str]] = {}  # tag -> (id, sources label)
        self.calls: list[list[str]] = []
        self.contexts: list[list[str]] = []  # files of each docker build's context
        self.created: list[dict[str, Any]] = []  # the config of each cluster created
        self.create_delay, self.build_fails = create_delay, build_fails
        self.helm_failures = helm_failures or {}
        self.polls_without_ca = polls_without_ca
        self._lock = threading.Lock()
        self._serial = itertools.count(1)

    def __call__(self, argv, *, timeout=None, **kwargs) -> subprocess.CompletedProcess[str]:
        argv = [str(a) for a in argv]
        with self._lock:
            self.calls.append(argv)
        code, out, err = getattr(self, "_" + Path(argv[0]).name)(argv[1:])
        return subprocess.CompletedProcess(argv, code, out, err)

    def of(self, tool: str) -> list[list[str]]:
        return [call[1:] for call in self.calls if Path(call[0]).name == tool]

    def _cluster_of(self, kubeconfig: str) -> dict[str, Any]:
        context = yaml.safe_load(Path(kubeconfig).read_text())["current-context"]
        return self.clusters[context.removeprefix("kind-")]

    def _kind(self, args: list[str]) -> tuple[int, str, str]:
        if args[:2] == ["get", "clusters"]:
            names = sorted(self.clusters)
            return 0, "".join(f"{n}\n" for n in names), "" if names else (
                "No kind clusters found.\n")
        name = _flag(args, "--name")
        if args[:2] == ["create", "cluster"]:
            time.sleep(self.create_delay)  # a real create takes a while: room for a race
            with self._lock:
                if name in self.clusters:
                    return 1, "", ("ERROR: failed to create cluster: node(s) already exist for "
                                   f'a cluster with the name "{name}"\n')
                config = yaml.safe_load(Path(_flag(args, "--config")).read_text())
                self.created.append(config)
                self.clusters[name] = {"config": config, "node": f"node{next(self._serial)}",
                                       "releases": {}, "loaded": []}
            return 0, "", f'Creating cluster "{name}" ...\n'
        if args[:2] == ["delete", "cluster"]:
            self.clusters.pop(name, None)
            return 0, "", f'Deleting cluster "{name}" ...\n'
        if args[:2] == ["get", "kubeconfig"]:
            return 0, KUBECONFIG.format(name=name), ""
        if args[:2] == ["load", "image-archive"]:
            self.clusters[name]["loaded"].append(Path(args[2]).read_text())
            return 0, "", ""
        raise AssertionError(f"unexpected kind {args}")

    def _docker(self, args: list[str]) -> tuple[int, str, str]:
        if args[:2] == ["network", "inspect"]:
            return 0, json.dumps(self.ipam) + "\n", ""
        if args[:2] == ["image", "inspect"]:
            if args[-1] not in self.images:
                return 1, "[]\n", f"Error response from daemon: No such image: {args[-1]}\n"
            return 0, " ".join(self.images[args[-1]]) + "\n", ""
        if args[0] == "build":
            assert Path(_flag(args, "--file")).is_file() and Path(args[-1]).is_dir()
            context = Path(args[-1])
            self.contexts.append(sorted(str(f.relative_to(context))
                                        for f in context.rglob("*") if f.is_file()))
            if self.build_fails:
                return 1, "", "ERROR: failed to solve: process \"pip install\" exit code: 1\n"
            label = _flag(args, "--label").partition("=")[2]
            self.images[_flag(args, "--tag")] = (f"sha256:{next(self._serial):064x}", label)
            return 0, "", ""
        if args[0] == "save":
            Path(_flag(args, "--output")).write_text(self.images[args[-1]][0])
            return 0, "", ""
        if args[0] == "inspect":
            cluster = self.clusters.get(args[-1].removesuffix("-control-plane"))
            if cluster is None:
                return 1, "[]\n", f"Error: No such object: {args[-1]}\n"
            return 0, cluster["node"] + "\n", ""
        raise AssertionError(f"unexpected docker {args}")

    def _helm(self, args: list[str]) -> tuple[int, str, str]:
        assert args[:2] == ["upgrade", "--install"]
        name = args[2]
        if name in self.helm_failures:
            return 1, "", f"Error: UPGRADE FAILED: {self.helm_failures[name]}\n"
        values = yaml.safe_load(Path(_flag(args, "--values")).read_text())
        cluster = self._cluster_of(_flag(args, "--kubeconfig"))
        cluster["releases"][name] = (_flag(args, "--namespace"), values)
        # the chart version each release runs (what `helm list` would show), for the upgrade
        cluster.setdefault("charts", {})[name] = (
            _flag(args, "--version") if "--version" in args else args[3])  # or the archive
        return 0, f'Release "{name}" has been upgraded. Happy Helming!\n', ""

    def _kubectl(self, args: list[str]) -> tuple[int, str, str]:
        cluster = self._cluster_of(_flag(args, "--kubeconfig"))
        if args[:2] == ["get", "--raw"]:  # the API server's issuer documents
            patch = yaml.safe_load(cluster["config"]["kubeadmConfigPatches"][0])
            flags = patch["apiServer"]["extraArgs"]
            if args[2] == "/.well-known/openid-configuration":
                return 0, json.dumps({"issuer": flags["service-account-issuer"],
                                      "jwks_uri": flags["service-account-jwks-uri"]}), ""
            [public] = [m["hostPath"] for m in cluster["config"]["nodes"][0]["extraMounts"]
                        if m["containerPath"].endswith("sa.pub")]
            kid = kube_key_id(load_pem_public_key(Path(public).read_bytes()))
            return 0, json.dumps({"keys": [{"kid": kid, "kty": "RSA"}]}), ""
        if args[:2] == ["get", "mutatingwebhookconfigurations"]:
            self.polls_without_ca -= 1
            injected = self.polls_without_ca < 0
            items = []
            for name, (namespace, values) in cluster["releases"].items():
                if namespace == charts.EKS_WEBHOOK_NAMESPACE:
                    items.append(_webhook_config(name, namespace, values["mutatingWebhook"][
                        "failurePolicy"], ["v1beta1"], injected))
                elif namespace == charts.AZWI_NAMESPACE:
                    items.append(_webhook_config("azure-wi-webhook-mutating-webhook-configuration",
                                                 namespace, "Fail", ["v1", "v1beta1"], True))
                else:
                    items.append(_webhook_config("cert-manager-webhook", namespace, "Fail",
                                                 ["v1"], True))
            return 0, json.dumps({"apiVersion": "v1", "kind": "List", "items": items}), ""
        raise AssertionError(f"unexpected kubectl {args}")


def _webhook_config(name: str, namespace: str, policy: str, versions: list[str],
                    injected: bool) -> dict[str, Any]:
    client = {"service": {"name": name, "namespace": namespace, "path": "/mutate"},
              "caBundle": "LS0tLS1CRUdJTi..." if injected else ""}
    return {"metadata": {"name": name}, "webhooks": [
        {"name": f"{name}.example", "clientConfig": client, "failurePolicy": policy,
         "admissionReviewVersions": versions}]}


STATE_FIELDS = ("clusters", "images", "calls", "contexts", "created")


def install_executables(bin_dir: Path, state_file: Path, ipam: list[dict[str, str]]) -> None:
    """kind, docker, kubectl and helm in `bin_dir`, each a FakeTools call sharing `state_file`;
    `docker info` answers a server version, `docker network inspect` the given IPAM."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    state_file.write_text(json.dumps({"ipam": ipam}))
    for tool in ("kind", "docker", "kubectl", "helm"):
        path = bin_dir / tool
        path.write_text(f"#!/bin/sh\nexec {sys.executable} {Path(__file__).resolve()} "
                        f"{state_file} {tool} \"$@\"\n")
        path.chmod(0o755)


def main(argv: list[str]) -> int:
    state_file, tool, args = Path(argv[0]), argv[1], argv[2:]
    saved = json.loads(state_file.read_text())
    fake = FakeTools(ipam=saved.get("ipam"))
    for name in STATE_FIELDS:
        if name in saved:
            setattr(fake, name, saved[name])
    fake.images = {tag: tuple(value) for tag, value in fake.images.items()}
    if tool == "docker" and args[:1] == ["info"]:
        fake.calls.append([tool, *args])
        code, out, err = 0, "28.2.2\n", ""
    elif tool == "kind" and args[:1] == ["version"]:
        code, out, err = 0, "kind v0.32.0 go1.25 linux/amd64\n", ""
    else:
        result = fake([tool, *args])
        code, out, err = result.returncode, result.stdout, result.stderr
    state_file.write_text(json.dumps({"ipam": fake.ipam,
                                      **{name: getattr(fake, name) for name in STATE_FIELDS}}))
    sys.stdout.write(out)
    sys.stderr.write(err)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
