"""A kind cluster whose API server signs service-account tokens with crossfed's key and issuer.

The config follows shared/reference/kind-and-charts-facts.md §1:
- the key pair is bind-mounted to kubeadm's default paths /etc/kubernetes/pki/sa.key and
  sa.pub (both: kubeadm reuses an existing sa.key and then does not regenerate sa.pub), which
  are already inside the API server's and controller manager's k8s-certs volume, so no
  extraVolumes are needed there; a key directory elsewhere gets apiServer/controllerManager
  extraVolumes;
- one kubeadmConfigPatch WITHOUT apiVersion in the map form of extraArgs, which every kind
  release applies (a patch naming kubeadm.k8s.io/v1beta3 is silently skipped by kind >= 0.32
  on Kubernetes >= 1.36, which generates v1beta4);
- exactly one --service-account-issuer (ours): it replaces kubeadm's default;
- absolute hostPaths, key files that exist and parse before `kind create` (single-file bind
  mounts pin the inode; a key that does not parse aborts kubeadm init);
- no apiServerPort (a random free port) and apiServerAddress 127.0.0.1.

Every kind invocation goes through one runner (crossfed.cluster.tools.run_command by default).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from filelock import FileLock

from crossfed.cluster.tools import Runner, run_command
from crossfed.secret_files import write_private

log = logging.getLogger("crossfed.cluster")

API_VERSION = "kind.x-k8s.io/v1alpha4"
PKI_DIR = "/etc/kubernetes/pki"
NAME_PATTERN = re.compile(r"^[a-z0-9.-]+$")
MOUNT_FIELDS = frozenset({"containerPath", "hostPath", "readOnly", "selinuxRelabel",
                          "propagation"})
PROPAGATIONS = frozenset({"None", "HostToContainer", "Bidirectional"})
# Default node image of each kind release (its pkg/apis/config/defaults/image.go); kind uses it
# when the config names no image, so the config only names one when asked to.
NODE_IMAGES = {
    "v0.31.0": "kindest/node:v1.35.0@sha256:"
               "452d707d4862f52530247495d180205e029056831160e22870e37e3f6c1ac31f",
    "v0.32.0": "kindest/node:v1.36.1@sha256:"
               "3489c7674813ba5d8b1a9977baea8a6e553784dab7b84759d1014dbd78f7ebd5",
}
KIND_NODE_REPOSITORIES = ("kindest/node", "docker.io/kindest/node")
# The docker network kind puts its nodes on; KIND_EXPERIMENTAL_DOCKER_NETWORK replaces it.
DEFAULT_NETWORK = "kind"
NETWORK_VARIABLE = "KIND_EXPERIMENTAL_DOCKER_NETWORK"


class KindError(RuntimeError):
    """A kind command failed; the message carries kind's `ERROR:` and `Command Output:` lines."""

    def __init__(self, argv: Sequence[str], result: subprocess.CompletedProcess[str]) -> None:
        self.argv, self.result = list(argv), result
        lines = [line.strip() for line in (result.stderr or "").splitlines() if line.strip()]
        wanted = [line for line in lines if line.startswith(("ERROR:", "Command Output:"))]
        detail = " | ".join(wanted or lines[-2:]) or "no output"
        command = " ".join(["kind", *self.argv[1:]])
        super().__init__(f"{command} failed (exit {result.returncode}): {detail}")


def check_key_pair(private_path: Path, public_path: Path) -> None:
    """The two PEM files exist, parse, and belong together (kubeadm aborts on a bad key)."""
    for path in (private_path, public_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: signing key file missing; write the key pair "
                                    "before creating the cluster")
    private = serialization.load_pem_private_key(private_path.read_bytes(), password=None)
    public = serialization.load_pem_public_key(public_path.read_bytes())
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if private.public_key().public_bytes(der, spki) != public.public_bytes(der, spki):
        raise ValueError(f"{public_path} is not the public key of {private_path}")


def _mount(spec: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(spec) - MOUNT_FIELDS
    if unknown:  # kind decodes strictly: fail here with the field name, not in kind
        raise ValueError(f"extraMounts: unknown field(s) {sorted(unknown)}; "
                         f"kind accepts {sorted(MOUNT_FIELDS)}")
    if "hostPath" not in spec or "containerPath" not in spec:
        raise ValueError(f"extraMounts: hostPath and containerPath are required: {dict(spec)}")
    if spec.get("propagation", "None") not in PROPAGATIONS:
        raise ValueError(f"extraMounts: propagation must be one of {sorted(PROPAGATIONS)}")
    mount = dict(spec)
    mount["hostPath"] = str(Path(spec["hostPath"]).expanduser().resolve())
    return mount


def _check_node_image(image: str) -> None:
    """A published kindest/node image must name its digest: its tags are rebuilt per kind
    release (v1.33.1 differs between v0.28 and v0.29), so a bare tag is not the image the
    kind release was tested with. Local images under another name are left alone."""
    name = image.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    repository = f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]
    if repository in KIND_NODE_REPOSITORIES and "@sha256:" not in image:
        known = ", ".join(f"{release}: {ref}" for release, ref in NODE_IMAGES.items())
        raise ValueError(f"node image {image!r} must be pinned by digest "
                         f"(kindest/node:vX.Y.Z@sha256:...), e.g. {known}")


def kind_config(name: str, signing_key_path: Path | str, signing_public_key_path: Path | str,
                issuer_url: str, jwks_uri: str, api_audiences: Sequence[str],
                extra_mounts: Sequence[Mapping[str, Any]] = (), *,
                node_image: str | None = None, key_dir: str = PKI_DIR,
                api_server_address: str = "127.0.0.1",
                disable_default_cni: bool = False) -> dict[str, Any]:
    """A v1alpha4 Cluster config: our key pair mounted and kube-apiserver pointed at it.

    `api_audiences` becomes --api-audiences (comma-joined): the audiences the API server itself
    accepts; kube-apiserver's own default is the issuer, so include `issuer_url` unless you
    mean otherwise. `node_image` None lets kind use its release's digest-pinned default.
    `disable_default_cni`: for a node image without kindnet (crossfed's local build brings a
    static bridge config instead), so kind does not apply a CNI manifest it cannot run.
    """
    if not NAME_PATTERN.match(name):
        raise ValueError(f"kind cluster name {name!r} must match {NAME_PATTERN.pattern}")
    for label, url in (("issuer_url", issuer_url), ("jwks_uri", jwks_uri)):
        if not url.startswith("https://"):
            raise ValueError(f"{label} must be an https:// URL, got {url!r}")
    audiences = [a for a in api_audiences if a]
    if not audiences or any("," in a for a in audiences):
        raise ValueError(f"api_audiences must be non-empty values without commas: {audiences}")
    if not PurePosixPath(key_dir).is_absolute():
        raise ValueError(f"key_dir must be an absolute path in the node, got {key_dir!r}")
    if node_image:
        _check_node_image(node_image)

    private = Path(signing_key_path).expanduser().resolve()
    public = Path(signing_public_key_path).expanduser().resolve()
    check_key_pair(private, public)
    key_file, pub_file = f"{key_dir}/sa.key", f"{key_dir}/sa.pub"

    patch: dict[str, Any] = {
        "kind": "ClusterConfiguration",
        "apiServer": {"extraArgs": {
            "service-account-issuer": issuer_url,
            "service-account-key-file": pub_file,
            "service-account-signing-key-file": key_file,
            "service-account-jwks-uri": jwks_uri,
            "api-audiences": ",".join(audiences),
        }},
        "controllerManager": {"extraArgs": {"service-account-private-key-file": key_file}},
    }
    if key_dir.rstrip("/") != PKI_DIR:  # outside the k8s-certs volume: mount the directory
        volume = {"name": "crossfed-sa-keys", "hostPath": key_dir, "mountPath": key_dir,
                  "readOnly": True, "pathType": "Directory"}
        patch["apiServer"]["extraVolumes"] = [volume]
        patch["controllerManager"]["extraVolumes"] = [dict(volume)]

    node: dict[str, Any] = {"role": "control-plane"}
    if node_image:
        node["image"] = node_image
    node["extraMounts"] = [
        {"hostPath": str(public), "containerPath": pub_file},
        {"hostPath": str(private), "containerPath": key_file},
        *(_mount(m) for m in extra_mounts),
    ]
    return {
        "kind": "Cluster",
        "apiVersion": API_VERSION,
        "name": name,
        "networking": {"apiServerAddress": api_server_address,
                       **({"disableDefaultCNI": True} if disable_default_cni else {})},
        "nodes": [node],
        "kubeadmConfigPatches": [yaml.safe_dump(patch, sort_keys=False)],
    }


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render(config: Mapping[str, Any]) -> str:
    """YAML for `kind create cluster --config`; patches as literal blocks, key order kept."""
    return yaml.dump(dict(config), Dumper=_Dumper, sort_keys=False, default_flow_style=False)


class KindCluster:
    """One kind cluster, created by us or reused; deletes only what it created."""

    def __init__(self, name: str, kind_bin: Path | str, *, created: bool = False,
                 runner: Runner = run_command, kubeconfig_path: Path | None = None) -> None:
        self.name, self.kind_bin, self.created = name, str(kind_bin), created
        self.runner, self.kubeconfig_path = runner, kubeconfig_path

    def __repr__(self) -> str:
        return f"KindCluster({self.name!r}, created={self.created})"

    @staticmethod
    def list_clusters(kind_bin: Path | str, runner: Runner = run_command) -> list[str]:
        argv = [str(kind_bin), "get", "clusters"]
        result = runner(argv, timeout=120)
        if result.returncode != 0:
            raise KindError(argv, result)
        # None: "No kind clusters found." goes to stderr with exit 0.
        return [line.strip() for line in (result.stdout or "").splitlines() if line.strip()]

    @classmethod
    def create_or_reuse(cls, name: str, config: Mapping[str, Any], kind_bin: Path | str,
                        lock_path: Path | str, *, config_path: Path | None = None,
                        runner: Runner = run_command, kubeconfig_path: Path | None = None,
                        wait: str | None = None, create_timeout: float = 900,
                        on_create: Callable[[], None] | None = None) -> KindCluster:
        """Reuse cluster `name` if kind lists it, else create it; one creator across processes.

        The config is written to `config_path` (default: next to the lock) only when creating.
        `kubeconfig_path` keeps kind away from $KUBECONFIG/~/.kube/config; `wait` is kind's
        --wait (e.g. "3m"; kind's default is not to wait for the control plane). `on_create`
        runs, under the lock, right before `kind create` (to record who creates it).
        """
        if not NAME_PATTERN.match(name):
            raise ValueError(f"kind cluster name {name!r} must match {NAME_PATTERN.pattern}")
        if config.get("name", name) != name:  # --name would silently win over it
            raise ValueError(f"config names cluster {config['name']!r}, asked for {name!r}")
        lock_path = Path(lock_path)
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        config_path = Path(config_path) if config_path else lock_path.with_name(
            f"{name}.kind.yaml")
        cluster = cls(name, kind_bin, runner=runner, kubeconfig_path=kubeconfig_path)
        with FileLock(str(lock_path), timeout=create_timeout + 120):
            if name in cls.list_clusters(kind_bin, runner):
                log.info("kind: reusing existing cluster %s", name)
                return cluster
            config_path.parent.mkdir(parents=True, exist_ok=True)
            config_path.write_text(render(config))
            argv = [str(kind_bin), "create", "cluster", "--name", name,
                    "--config", str(config_path)]
            argv += cluster._kubeconfig_args()
            if wait:
                argv += ["--wait", wait]
            log.info("kind: creating cluster %s from %s", name, config_path)
            if on_create is not None:
                on_create()
            from crossfed.progress import progress

            with progress(f"kind: creating cluster {name}"):
                result = runner(argv, timeout=create_timeout)
            if result.returncode != 0:
                raise KindError(argv, result)
            cluster.created = True
        return cluster

    def _kubeconfig_args(self) -> list[str]:
        return ["--kubeconfig", str(self.kubeconfig_path)] if self.kubeconfig_path else []

    def _run(self, argv: list[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
        result = self.runner(argv, timeout=timeout)
        if result.returncode != 0:
            raise KindError(argv, result)
        return result

    def delete(self, only_if_created: bool = True, keep: bool = False) -> bool:
        """Delete the cluster (kind's delete is idempotent); True if a delete was issued."""
        if keep:
            log.info("kind: keeping cluster %s (asked to keep it)", self.name)
            return False
        if only_if_created and not self.created:
            log.info("kind: leaving cluster %s, which this run did not create", self.name)
            return False
        self._run([self.kind_bin, "delete", "cluster", "--name", self.name,
                   *self._kubeconfig_args()])
        self.created = False
        return True

    def load_image(self, archive_path: Path | str) -> None:
        """`kind load image-archive` a docker-archive tar into the cluster's nodes."""
        archive = Path(archive_path).expanduser().resolve()
        if not archive.is_file():
            raise FileNotFoundError(f"{archive}: image archive missing")
        self._run([self.kind_bin, "load", "image-archive", str(archive), "--name", self.name],
                  timeout=600)

    def kubeconfig(self, internal: bool = False) -> str:
        """The cluster's kubeconfig text (context kind-<name>); `internal`: node-network URL."""
        argv = [self.kind_bin, "get", "kubeconfig", "--name", self.name]
        if internal:
            argv.append("--internal")
        return self._run(argv, timeout=120).stdout

    def write_kubeconfig(self, path: Path | str, internal: bool = False) -> Path:
        """Write the kubeconfig (it holds a client key: owner-only) and return its path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_private(path, self.kubeconfig(internal).encode())
        return path


def bridge_gateway(ipam_config: Sequence[Mapping[str, Any]] | None) -> str:
    """The IPv4 gateway in a docker network's IPAM config (a list of IPv4 and IPv6 entries).

    Pods reach the host at this address. `Gateway` may be absent: then the subnet's first host.
    """
    for entry in ipam_config or []:
        subnet = entry.get("Subnet") or ""
        if not subnet or ":" in subnet:  # the IPv6 entry
            continue
        gateway = (entry.get("Gateway") or "").split("/")[0]
        return gateway or str(next(ipaddress.ip_network(subnet, strict=False).hosts()))
    raise ValueError(f"no IPv4 subnet in the network's IPAM config: {ipam_config}")


def kind_network(environ: Mapping[str, str] | None = None) -> str:
    """The docker network kind puts its nodes on: `kind`, or KIND_EXPERIMENTAL_DOCKER_NETWORK
    (kind, run with this environment, uses or creates that network instead)."""
    environ = os.environ if environ is None else environ
    return environ.get(NETWORK_VARIABLE, "").strip() or DEFAULT_NETWORK


def network_gateway(docker_bin: Path | str, network: str | None = None,
                    runner: Runner = run_command) -> str:
    """`docker network inspect` the network kind puts its nodes on; its IPv4 gateway.

    `network` None: the one kind uses (see `kind_network`)."""
    network = network or kind_network()
    argv = [str(docker_bin), "network", "inspect", network, "--format", "{{json .IPAM.Config}}"]
    result = runner(argv, timeout=60)
    if result.returncode != 0:
        detail = (result.stderr or "").strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"docker network inspect {network} failed "
                           f"(exit {result.returncode}): {detail[0]}")
    return bridge_gateway(json.loads(result.stdout or "null"))
