"""A real single-node Kubernetes 1.20 run from Debian packages: etcd, kube-apiserver,
kube-controller-manager, containerd + runc, kubelet and the CNI plugins, all under one work dir.

Follows shared/reference/microcluster.md. The API server signs service-account tokens with
crossfed's key and issuer; pods set spec.nodeName (no scheduler), use imagePullPolicy Never
(images are imported from docker-archive tars, no registry), and reach host servers at the
bridge's gateway address. There is no kube-proxy and no DNS.

    cluster = up(ClusterSpec(work_dir, binaries, issuer_url, signing_key, signing_public_key,
                             images=(probe_tar,)))
    ...  # kubectl --kubeconfig cluster.kubeconfig ...
    cluster.stop()          # or down(work_dir) from another process, e.g. after a crash

Everything the cluster makes outside its work dir is recorded in <work_dir>/state.json as it
is made, so that `down` can undo it from the files alone: processes (checked by pid and start
time), the bridge and its veths, pod network namespaces (mounted under the work dir:
containerd's netns_mounts_under_state_dir), the iptables chains and rules of the CNI plugins,
the kubelet's cgroup root (its own per cluster: two kubelets sharing /kubepods kill each other's
pods as orphans), the kernel tunables the kubelet and the bridge plugin change, /var/log/pods
entries and CNI result caches. `up` first undoes what a previous run in the same work dir
left, and undoes its own work when it fails.

CLI (root): python -m crossfed.cluster.microcluster up|down|smoke --work-dir DIR ...
The runtime packages come from cluster/install-runtime.sh; the Kubernetes binaries from
cluster/build-kubernetes.sh.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import hashlib
import http.client
import ipaddress
import json
import os
import shlex
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crossfed.secret_files import private_dir, write_private

CACHE_ROOT = Path(os.environ.get("CROSSFED_CACHE", "/var/cache/crossfed"))
BINARIES = ("kube-apiserver", "kubelet", "kube-controller-manager")
HOST_TOOLS = ("etcd", "containerd", "containerd-shim-runc-v2", "ctr", "runc", "iptables", "ip",
              "gcc", "umount")
CNI_BIN = Path("/usr/lib/cni")
CNI_PLUGINS = ("bridge", "host-local", "loopback", "firewall", "portmap")
POD_LOGS = Path("/var/log/pods")
CONTAINER_LOGS = Path("/var/log/containers")
CNI_RESULTS = Path("/var/lib/cni/results")
SHIM_SOCKETS = Path("/run/containerd/s")  # containerd 1.6 puts every shim's socket here
CGROUP_ROOT = Path("/sys/fs/cgroup")
# Host directories the kubelet, containerd and libcni create: removed by down when empty and
# absent before up.
HOST_DIRS = (POD_LOGS, CONTAINER_LOGS, CNI_RESULTS, CNI_RESULTS.parent, SHIM_SOCKETS,
             SHIM_SOCKETS.parent)
# Changed by the kubelet (setupKernelTunables) and the bridge plugin (isGateway): put back by down.
TUNABLES = ("net/ipv4/ip_forward", "vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic",
            "kernel/panic_on_oops", "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes")
PAUSE_REF = "crossfed/pause:local"
NAMESPACE = "k8s.io"
SERVICE_CIDR = "10.96.0.0/24"
PACK_IMAGE = Path(__file__).resolve().parent / "pack_image.py"  # shipped in the package


def default_binaries() -> Path:
    """The newest directory cluster/build-kubernetes.sh filled under the cache."""
    found = sorted(glob.glob(str(CACHE_ROOT / "kubernetes" / "*" / "kube-apiserver")),
                   key=os.path.getmtime)
    return Path(found[-1]).parent if found else CACHE_ROOT / "kubernetes" / "missing"


def default_images() -> tuple[Path, ...]:
    found = sorted(glob.glob(str(CACHE_ROOT / "images" / "probe-*.tar")), key=os.path.getmtime)
    return (Path(found[-1]),) if found else ()


class ClusterError(RuntimeError):
    """The cluster could not be started or a component failed; the message says which and why."""


@dataclass
class ClusterSpec:
    work_dir: Path
    binaries: Path            # dir with kube-apiserver, kubelet, kube-controller-manager, pause.c
    issuer_url: str           # --service-account-issuer (crossfed's issuer)
    signing_key: Path         # --service-account-signing-key-file (PEM RSA private key)
    signing_public_key: Path  # --service-account-key-file
    api_audiences: tuple[str, ...] = ("sts.amazonaws.com", "api://AzureADTokenExchange")
    bridge_cidr: str = "10.77.0.0/24"  # the pod network; its .1 is how pods reach host servers
    images: tuple[Path, ...] = ()      # docker-archive tars to import (containerd ns k8s.io)
    bridge_name: str = "crossfed0"      # also the CNI network's name
    node_name: str = "crossfed-node"
    ready_timeout: float = 180.0


@dataclass
class Cluster:
    kubeconfig: Path
    gateway_ip: str                     # host address as seen from pods
    node_name: str
    work_dir: Path = field(default_factory=Path)
    api_server: str = ""                # https://127.0.0.1:PORT
    ca_cert: Path | None = None         # the cluster CA (API server and kubelet serving certs)
    timings: dict[str, float] = field(default_factory=dict)

    def stop(self) -> None:
        down(self.work_dir)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------
# small helpers

class _Clock:
    def __init__(self, label: str = "crossfed microcluster") -> None:
        self.start = time.monotonic()
        self.label = label

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def say(self, message: str) -> None:
        print(f"{self.label}: [{self.elapsed():6.1f}s] {message}", file=sys.stderr, flush=True)


def _run(argv: Sequence[str], check: bool = True, timeout: float = 120,
         quiet: bool = False) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise ClusterError(f"{shlex.join(argv)} failed ({result.returncode}): "
                           f"{(result.stderr or result.stdout).strip()[-2000:]}")
    return result


def _write(path: Path, text: str, private: bool = False) -> Path:
    """private: key material or credentials, 0600 from creation (crossfed.secret_files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if private:
        return write_private(path, text)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o644)
    return path


def _free_ports(count: int, hosts: Sequence[str]) -> list[int]:
    """Ports free on every address in hosts, distinct; the sockets are held until all are picked."""
    held, ports = [], []
    try:
        while len(ports) < count:
            first = socket.socket()
            first.bind((hosts[0], 0))
            port = first.getsockname()[1]
            held.append(first)
            try:
                for host in hosts[1:]:
                    extra = socket.socket()
                    held.append(extra)
                    extra.bind((host, port))
            except OSError:
                continue
            ports.append(port)
    finally:
        for sock in held:
            sock.close()
    return ports


def _proc_start(pid: int) -> str | None:
    """The start time of a process (clock ticks since boot), None when gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        try:
            os.waitpid(pid, os.WNOHANG)  # our own child: reap it
        except ChildProcessError:
            pass
        return None
    return fields[19]


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _stop_pid(pid: int, start: str | None, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; only while the pid is still that process."""
    if start is None or _proc_start(pid) != start:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if _proc_start(pid) != start:
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    for _ in range(100):
        if _proc_start(pid) != start:
            return
        time.sleep(0.05)


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join("    " + line[:400] for line in text[-lines:])


def _normalize_ref(ref: str) -> str:
    """Docker's short names as containerd stores them: crossfed/probe:local ->
    docker.io/crossfed/probe:local."""
    first = ref.split("/", 1)[0]
    if "/" not in ref:
        return f"docker.io/library/{ref}"
    if "." in first or ":" in first or first == "localhost":
        return ref
    return f"docker.io/{ref}"


def _mounts_under(root: Path) -> list[tuple[str, str]]:
    """(mount point, fs type) of every mount at or below root, deepest first."""
    found = []
    prefix = str(root).rstrip("/") + "/"
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            parts = line.split()
            point = parts[4].encode().decode("unicode_escape")
            fstype = parts[parts.index("-") + 1]
            if point == str(root) or point.startswith(prefix):
                found.append((point, fstype))
    return sorted(found, key=lambda item: item[0].count("/"), reverse=True)


def _cgroup_dirs(name: str) -> list[Path]:
    """<hierarchy>/<name> for every cgroup hierarchy mounted (v1: one per controller set)."""
    dirs = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            parts = line.split()
            fstype = parts[parts.index("-") + 1]
            if fstype in ("cgroup", "cgroup2"):
                dirs.append(Path(parts[4]) / name.strip("/"))
    return dirs


def _make_cgroup_root(name: str) -> None:
    """The kubelet's --cgroup-root: one per cluster, so that two kubelets on one machine do not
    take each other's pod cgroups for orphans and kill them (both would use /kubepods)."""
    for directory in _cgroup_dirs(name):
        directory.mkdir(exist_ok=True)
        for knob in ("cpuset.cpus", "cpuset.mems"):  # v1 cpuset starts empty in a new cgroup
            if (directory / knob).exists() and not (directory / knob).read_text().strip():
                (directory / knob).write_text((directory.parent / knob).read_text())


def _remove_cgroup_root(name: str) -> None:
    """Kill whatever still runs in the cluster's cgroups, then remove them, deepest first."""
    dirs = [d for d in _cgroup_dirs(name) if d.is_dir()]
    for _ in range(50):
        pids = set()
        for directory in dirs:
            for procs in directory.rglob("cgroup.procs"):
                try:
                    pids.update(int(p) for p in procs.read_text().split())
                except (OSError, ValueError):
                    pass
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    for directory in dirs:
        for dirpath, _dirs, _files in sorted(os.walk(directory), key=lambda w: -len(w[0])):
            try:
                os.rmdir(dirpath)
            except OSError:
                pass


def _umount(point: str) -> None:
    if _run(["umount", point], check=False).returncode != 0:
        _run(["umount", "-l", point], check=False)


# ---------------------------------------------------------------------------------------------
# layout and state

class _Layout:
    def __init__(self, work_dir: Path) -> None:
        self.root = Path(work_dir).resolve()
        self.state = self.root / "state.json"
        self.pki = self.root / "pki"
        self.logs = self.root / "logs"
        self.etcd = self.root / "etcd"
        self.kubelet = self.root / "kubelet"
        self.containerd = self.root / "containerd"
        self.containerd_root = self.containerd / "root"
        self.containerd_state = self.containerd / "state"
        self.runc_root = self.containerd / "runc"
        self.socket = self.containerd / "containerd.sock"
        self.netns = self.containerd_state / "io.containerd.grpc.v1.cri" / "netns"
        self.tasks = self.containerd_state / "io.containerd.runtime.v2.task" / NAMESPACE
        self.imported = self.containerd / "imported.json"
        self.cni_conf = self.root / "cni" / "net.d"
        self.cni_ipam = self.root / "cni" / "ipam"
        self.images = self.root / "images"
        self.admin_kubeconfig = self.root / "admin.kubeconfig"

    def load(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.state.read_text())
        except (OSError, ValueError):
            return None

    def save(self, state: dict[str, Any]) -> None:
        tmp = self.state.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
        tmp.replace(self.state)


def _read_tunables() -> dict[str, str]:
    values = {}
    for name in TUNABLES:
        try:
            values[name] = Path("/proc/sys", name).read_text().strip()
        except OSError:
            pass
    return values


def _iptables_chains() -> dict[str, list[str]]:
    chains: dict[str, list[str]] = {}
    for table in ("filter", "nat"):
        result = _run(["iptables", "-w", "-t", table, "-S"], check=False)
        chains[table] = [line.split()[1] for line in result.stdout.splitlines()
                         if line.startswith(("-N ", "-P "))]
    return chains


# ---------------------------------------------------------------------------------------------
# PKI and kubeconfigs

def _make_pki(layout: _Layout, node: str, gateway: str) -> dict[str, Path]:
    import trustme

    private_dir(layout.pki)  # the cluster CA's and the components' keys
    ca = trustme.CA(organization_name="crossfed", organization_unit_name="microcluster CA")
    files: dict[str, Path] = {"ca": layout.pki / "ca.crt", "ca-key": layout.pki / "ca.key"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    _write(files["ca-key"], ca.private_key_pem.bytes().decode(), private=True)
    after = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=30)
    leaves = {
        "apiserver": (("127.0.0.1", "localhost", gateway, "10.96.0.1", "kubernetes",
                       "kubernetes.default", "kubernetes.default.svc"), "kube-apiserver", None),
        "admin": (("crossfed-admin",), "crossfed-admin", "system:masters"),
        "apiserver-kubelet-client": (("kube-apiserver-kubelet-client",),
                                     "kube-apiserver-kubelet-client", "system:masters"),
        "controller-manager": (("kube-controller-manager",), "system:kube-controller-manager",
                               None),
        "kubelet-client": ((node,), f"system:node:{node}", "system:nodes"),
        "kubelet-serving": ((node, gateway, "127.0.0.1"), f"system:node:{node}", "system:nodes"),
    }
    for name, (identities, cn, org) in leaves.items():
        cert = ca.issue_cert(*identities, common_name=cn, organization_name=org or "crossfed",
                             not_after=after)
        files[name] = layout.pki / f"{name}.crt"
        files[f"{name}-key"] = layout.pki / f"{name}.key"
        files[name].write_bytes(b"".join(p.bytes() for p in cert.cert_chain_pems))
        _write(files[f"{name}-key"], cert.private_key_pem.bytes().decode(), private=True)
    return files


def _kubeconfig(path: Path, server: str, ca: Path, cert: Path, key: Path, user: str) -> Path:
    import base64

    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "crossfed",
        "clusters": [{"name": "crossfed", "cluster": {"server": server,
                                                      "certificate-authority-data": b64(ca)}}],
        "users": [{"name": user, "user": {"client-certificate-data": b64(cert),
                                          "client-key-data": b64(key)}}],
        "contexts": [{"name": "crossfed", "context": {"cluster": "crossfed", "user": user}}],
    }
    return _write(path, json.dumps(config, indent=1), private=True)


class _Api:
    """Just enough of the Kubernetes REST API, as the admin (client cert), for readiness checks,
    the smoke pod and clean-up."""

    def __init__(self, port: int, ca: Path, cert: Path, key: Path) -> None:
        self.port = port
        self.context = ssl.create_default_context(cafile=str(ca))
        self.context.load_cert_chain(str(cert), str(key))

    def request(self, method: str, path: str, body: Any = None,
                timeout: float = 10) -> tuple[int, Any]:
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.context,
                                           timeout=timeout)
        try:
            payload = None if body is None else json.dumps(body)
            headers = {"Content-Type": "application/json"} if payload else {}
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            raw = response.read().decode(errors="replace")
        finally:
            conn.close()
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, raw

    def get(self, path: str) -> Any:
        status, body = self.request("GET", path)
        return body if status == 200 else None


# ---------------------------------------------------------------------------------------------
# configuration files

def _containerd_config(layout: _Layout) -> str:
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{layout.containerd_root}"
state = "{layout.containerd_state}"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{layout.socket}"

[ttrpc]
  address = ""

[debug]
  address = ""

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{layout.containerd / 'opt'}"

  [{cri}]
    sandbox_image = "{_normalize_ref(PAUSE_REF)}"
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    disable_apparmor = true
    disable_tcp_service = true
    enable_tls_streaming = false
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    systemd_cgroup = false
    tolerate_missing_hugetlb_controller = true
    disable_hugetlb_controller = true

    [{cri}.cni]
      bin_dir = "{CNI_BIN}"
      conf_dir = "{layout.cni_conf}"
      max_conf_num = 1

    [{cri}.containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"

      [{cri}.containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"

        [{cri}.containerd.runtimes.runc.options]
          SystemdCgroup = false
          Root = "{layout.runc_root}"
"""


def _cni_config(layout: _Layout, spec: ClusterSpec, gateway: str) -> str:
    # containerd adds the loopback plugin itself (go-cni's WithLoNetwork), from bin_dir.
    return json.dumps({
        "cniVersion": "0.4.0",
        "name": spec.bridge_name,
        "plugins": [
            {"type": "bridge", "bridge": spec.bridge_name, "isGateway": True, "ipMasq": True,
             "ipam": {"type": "host-local", "dataDir": str(layout.cni_ipam),
                      "ranges": [[{"subnet": spec.bridge_cidr, "gateway": gateway}]],
                      "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "firewall", "backend": "iptables"},
        ],
    }, indent=1)


def _kubelet_config(layout: _Layout, files: dict[str, Path], gateway: str, port: int,
                    healthz: int, cgroup_root: str) -> str:
    return json.dumps({
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "address": gateway, "port": port, "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1", "healthzPort": healthz,
        "tlsCertFile": str(files["kubelet-serving"]),
        "tlsPrivateKeyFile": str(files["kubelet-serving-key"]),
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(files["ca"])}},
        "authorization": {"mode": "Webhook"},
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": cgroup_root,
        "failSwapOn": False,
        "nodeStatusUpdateFrequency": "1s",
        # The defaults (5 API requests/s, 5 events/s) are shared by the node status above and
        # every pod's token, ConfigMap, status and events: they capped the cluster at about one
        # pod scenario every 2 s, however many pytest-xdist workers ran.
        "kubeAPIQPS": 50, "kubeAPIBurst": 100, "eventRecordQPS": 50, "eventBurst": 100,
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        "makeIPTablesUtilChains": False,
        "oomScoreAdj": 0,  # root lacks CAP_SYS_RESOURCE here: -999 cannot be applied
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                         "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
        "volumePluginDir": str(layout.kubelet / "volume-plugins"),
        "resolvConf": "/etc/resolv.conf",
        "clusterDomain": "cluster.local",
        "rotateCertificates": False, "serverTLSBootstrap": False,
        "enableControllerAttachDetach": True,
    }, indent=1)


# ---------------------------------------------------------------------------------------------
# starting

class _Starter:
    def __init__(self, spec: ClusterSpec, clock: _Clock) -> None:
        self.spec, self.clock = spec, clock
        self.layout = _Layout(spec.work_dir)
        self.state: dict[str, Any] = {}
        self.children: dict[str, subprocess.Popen[bytes]] = {}

    def save(self) -> None:
        self.layout.save(self.state)

    def spawn(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.layout.logs.mkdir(parents=True, exist_ok=True)
        with open(self.layout.logs / f"{name}.log", "ab") as log:
            try:
                proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True,
                                        cwd=self.layout.root, env=env)
            except OSError as exc:
                raise ClusterError(f"cannot start {name} ({argv[0]}): {exc.strerror or exc}"
                                   ) from exc
        self.children[name] = proc
        self.state["processes"][name] = {"pid": proc.pid, "start": _proc_start(proc.pid)}
        self.save()

    def check_alive(self, *names: str) -> None:
        for name in names:
            proc = self.children.get(name)
            if proc is not None and proc.poll() is not None:
                raise ClusterError(f"{name} exited with {proc.returncode}; the end of "
                                   f"{self.layout.logs / (name + '.log')}:\n"
                                   f"{_tail(self.layout.logs / (name + '.log'))}")

    def wait(self, what: str, probe: Any, timeout: float, watch: Sequence[str]) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive(*watch)
            try:
                result = probe()
            except (OSError, ssl.SSLError, http.client.HTTPException, subprocess.SubprocessError):
                result = None
            if result:
                return result
            if time.monotonic() > deadline:
                logs = "\n".join(f"  {n}:\n{_tail(self.layout.logs / (n + '.log'), 12)}"
                                 for n in watch)
                raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}\n{logs}")
            time.sleep(0.1)

    # -- the steps

    def preflight(self) -> None:
        spec = self.spec
        if os.geteuid() != 0:
            raise ClusterError("the microcluster needs root (network namespaces, mounts, "
                               "iptables, cgroups)")
        missing = [tool for tool in HOST_TOOLS if shutil.which(tool) is None]
        missing += [str(CNI_BIN / p) for p in CNI_PLUGINS if not (CNI_BIN / p).exists()]
        if missing:
            raise ClusterError(f"missing {', '.join(missing)}: run cluster/install-runtime.sh")
        absent = [b for b in (*BINARIES, "pause.c") if not (Path(spec.binaries) / b).exists()]
        if absent:
            raise ClusterError(f"{spec.binaries} lacks {', '.join(absent)}: run "
                               f"cluster/build-kubernetes.sh")
        # Checked before anything is made: a binary that cannot run would fail half-way up.
        # (root passes os.access for any mode but still needs an x bit to exec)
        modes = {b: (Path(spec.binaries) / b).stat().st_mode for b in BINARIES}
        unusable = [f"{b} (mode {stat.filemode(mode)})" for b, mode in modes.items()
                    if not mode & 0o111
                    or not os.access(Path(spec.binaries) / b, os.R_OK | os.X_OK)]
        if unusable:
            raise ClusterError(f"{spec.binaries}: {', '.join(unusable)} cannot be run: "
                               "rebuild them with cluster/build-kubernetes.sh (remove the "
                               "directory first) or make them readable and executable")
        for path in (spec.signing_key, spec.signing_public_key, *spec.images):
            if not Path(path).is_file():
                raise ClusterError(f"missing file {path}")
        if len(str(self.layout.socket)) + len(".ttrpc") >= 104:
            raise ClusterError(f"work dir path too long for a unix socket: {self.layout.root}")
        network = ipaddress.ip_network(spec.bridge_cidr)
        addresses = _run(["ip", "-o", "addr", "show"], check=False).stdout.split()
        for word in addresses:
            try:
                if "/" in word and ipaddress.ip_interface(word).network.overlaps(network):
                    raise ClusterError(f"{spec.bridge_cidr} overlaps {word}, an address on "
                                       f"this machine (another cluster? choose another "
                                       f"bridge_cidr)")
            except ValueError:
                pass
        if Path("/sys/class/net", spec.bridge_name).exists():
            raise ClusterError(f"network interface {spec.bridge_name} already exists (another "
                               f"cluster? `down` its work dir, or choose another bridge_name)")

    def prepare(self) -> None:
        spec, layout = self.spec, self.layout
        network = ipaddress.ip_network(spec.bridge_cidr)
        self.gateway = str(network.network_address + 1)
        # Fresh cluster state each time; containerd's image store is kept (see _import_images).
        for stale in (layout.etcd, layout.kubelet, layout.cni_ipam, layout.containerd_state,
                      layout.runc_root):
            shutil.rmtree(stale, ignore_errors=True)
        for directory in (layout.root, layout.pki, layout.logs, layout.etcd, layout.kubelet,
                          layout.containerd, layout.cni_conf, layout.cni_ipam, layout.images):
            directory.mkdir(parents=True, exist_ok=True)
        os.chmod(layout.etcd, 0o700)
        for log in layout.logs.glob("*.log"):
            log.unlink()
        self.state = {
            "phase": "starting", "bridge": spec.bridge_name, "network": spec.bridge_name,
            "cidr": spec.bridge_cidr, "gateway": self.gateway, "node": spec.node_name,
            "tunables": _read_tunables(), "iptables_baseline": _iptables_chains(),
            "processes": {}, "containerd_clean": False,
            "host_dirs_created": [str(d) for d in HOST_DIRS if not d.exists()],
        }
        self.save()

    def network(self) -> None:
        name = self.spec.bridge_name
        prefix = ipaddress.ip_network(self.spec.bridge_cidr).prefixlen
        self.state["bridge_created"] = True
        self.save()
        _run(["ip", "link", "add", name, "type", "bridge"])
        _run(["ip", "addr", "add", f"{self.gateway}/{prefix}", "dev", name])
        _run(["ip", "link", "set", name, "up"])

    def configure(self) -> None:
        spec, layout = self.spec, self.layout
        self.files = _make_pki(layout, spec.node_name, self.gateway)
        etcd_client, etcd_peer, api_port = _free_ports(3, ["127.0.0.1"])
        kubelet_port, kubelet_healthz = _free_ports(2, ["127.0.0.1", self.gateway])
        self.ports = {"etcd": etcd_client, "etcd-peer": etcd_peer, "apiserver": api_port,
                      "kubelet": kubelet_port, "kubelet-healthz": kubelet_healthz}
        self.state["ports"] = self.ports
        self.server = f"https://127.0.0.1:{api_port}"
        f = self.files
        _kubeconfig(layout.admin_kubeconfig, self.server, f["ca"], f["admin"], f["admin-key"],
                    "crossfed-admin")
        _kubeconfig(layout.root / "kubelet.kubeconfig", self.server, f["ca"], f["kubelet-client"],
                    f["kubelet-client-key"], f"system:node:{spec.node_name}")
        _kubeconfig(layout.root / "controller-manager.kubeconfig", self.server, f["ca"],
                    f["controller-manager"], f["controller-manager-key"],
                    "system:kube-controller-manager")
        _write(layout.containerd / "config.toml", _containerd_config(layout))
        for old in layout.cni_conf.iterdir():
            old.unlink()
        _write(layout.cni_conf / f"10-{spec.bridge_name}.conflist",
               _cni_config(layout, spec, self.gateway))
        self.cgroup_root = f"/microcluster-{spec.bridge_name}"
        self.state["cgroup_root"] = self.cgroup_root
        self.save()
        _make_cgroup_root(self.cgroup_root)
        _write(layout.root / "kubelet.json",
               _kubelet_config(layout, f, self.gateway, kubelet_port, kubelet_healthz,
                               self.cgroup_root))
        self.api = _Api(api_port, f["ca"], f["admin"], f["admin-key"])
        self.save()

    def start_etcd(self) -> None:
        client = f"http://127.0.0.1:{self.ports['etcd']}"
        peer = f"http://127.0.0.1:{self.ports['etcd-peer']}"
        self.spawn("etcd", [
            "etcd", "--name", "crossfed", "--data-dir", str(self.layout.etcd),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"crossfed={peer}", "--initial-cluster-state", "new",
            "--unsafe-no-fsync", "--logger", "zap", "--log-level", "warn",
        ])

    def start_containerd(self) -> None:
        self.spawn("containerd", ["containerd", "--config",
                                  str(self.layout.containerd / "config.toml")])

    def etcd_healthy(self) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.ports["etcd"], timeout=2)
        try:
            conn.request("GET", "/health")
            return b'"true"' in conn.getresponse().read()
        finally:
            conn.close()

    def start_apiserver(self) -> None:
        spec, f = self.spec, self.files
        issuer = spec.issuer_url.rstrip("/")
        self.spawn("kube-apiserver", [
            str(Path(spec.binaries) / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{self.ports['etcd']}",
            "--bind-address=127.0.0.1", f"--secure-port={self.ports['apiserver']}",
            "--insecure-port=0", f"--advertise-address={self.gateway}",
            f"--cert-dir={self.layout.pki}",
            f"--tls-cert-file={f['apiserver']}", f"--tls-private-key-file={f['apiserver-key']}",
            f"--client-ca-file={f['ca']}",
            f"--kubelet-certificate-authority={f['ca']}",
            f"--kubelet-client-certificate={f['apiserver-kubelet-client']}",
            f"--kubelet-client-key={f['apiserver-kubelet-client-key']}",
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            f"--service-account-issuer={spec.issuer_url}",
            f"--service-account-jwks-uri={issuer}/openid/v1/jwks",
            f"--service-account-key-file={spec.signing_public_key}",
            f"--service-account-signing-key-file={spec.signing_key}",
            f"--api-audiences={','.join(spec.api_audiences)}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction,MutatingAdmissionWebhook,"
            "ValidatingAdmissionWebhook",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--profiling=false", "--event-ttl=10m",
        ])

    def apiserver_ready(self) -> bool:
        status, body = self.api.request("GET", "/readyz", timeout=3)
        return status == 200

    def containerd_ready(self) -> bool:
        if not self.layout.socket.exists():
            return False
        result = _run(["ctr", "-a", str(self.layout.socket), "plugins", "ls"], check=False,
                      timeout=10)
        if result.returncode != 0:
            return False
        for line in result.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 4 and parts[0] == "io.containerd.grpc.v1" and parts[1] == "cri":
                if parts[-1] != "ok":
                    raise ClusterError(f"containerd's CRI plugin did not load:\n"
                                       f"{_tail(self.layout.logs / 'containerd.log')}")
                return True
        return False

    def build_pause(self) -> Path:
        """pause.c compiled static and packed as a docker-archive with
        crossfed/cluster/pack_image.py; kept in the work dir, rebuilt when pause.c changes."""
        source = Path(self.spec.binaries) / "pause.c"
        digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
        out = self.layout.images / f"pause-{digest}.tar"
        if out.is_file():
            return out
        if not PACK_IMAGE.is_file():
            raise ClusterError(f"{PACK_IMAGE} not found: the crossfed package is incomplete; "
                               "reinstall it")
        rootfs = self.layout.images / "pause-rootfs"
        shutil.rmtree(rootfs, ignore_errors=True)
        rootfs.mkdir(parents=True)
        _run(["gcc", "-static", "-Os", "-s", "-DVERSION=crossfed", "-o", str(rootfs / "pause"),
              str(source)])
        _run([sys.executable, str(PACK_IMAGE), str(rootfs), PAUSE_REF, str(out) + ".tmp",
              "--entrypoint", '["/pause"]'])
        os.replace(str(out) + ".tmp", out)
        shutil.rmtree(rootfs, ignore_errors=True)
        return out

    def import_images(self, tars: Iterable[Path]) -> list[str]:
        """ctr images import, skipped for a tar whose (path, size, mtime) was imported before
        and whose image containerd still has."""
        layout = self.layout
        ctr = ["ctr", "-a", str(layout.socket), "-n", NAMESPACE]
        present = set(_run([*ctr, "images", "ls", "-q"]).stdout.split())
        try:
            done = json.loads(layout.imported.read_text())
        except (OSError, ValueError):
            done = {}
        refs = []
        for tar in tars:
            tar = Path(tar).resolve()
            stat = tar.stat()
            key = [stat.st_size, stat.st_mtime_ns]
            with tarfile.open(tar) as archive:
                member = archive.extractfile("manifest.json")
                assert member is not None
                tags = [t for entry in json.load(member) for t in entry.get("RepoTags") or []]
            wanted = [_normalize_ref(t) for t in tags]
            refs += wanted
            if done.get(str(tar)) == key and all(ref in present for ref in wanted):
                self.clock.say(f"image {', '.join(tags)} already in containerd")
                continue
            began = time.monotonic()
            _run([*ctr, "images", "import", str(tar)], timeout=600)
            done[str(tar)] = key
            layout.imported.write_text(json.dumps(done, indent=1))
            self.clock.say(f"imported {', '.join(tags)} from {tar.name} "
                           f"({time.monotonic() - began:.1f}s)")
        return refs

    def start_kubelet(self) -> None:
        layout = self.layout
        env = dict(os.environ, AWS_EC2_METADATA_DISABLED="true")
        self.spawn("kubelet", [
            str(Path(self.spec.binaries) / "kubelet"),
            f"--config={layout.root / 'kubelet.json'}",
            f"--kubeconfig={layout.root / 'kubelet.kubeconfig'}",
            "--container-runtime=remote",
            f"--container-runtime-endpoint=unix://{layout.socket}",
            f"--image-service-endpoint=unix://{layout.socket}",
            f"--hostname-override={self.spec.node_name}", f"--node-ip={self.gateway}",
            f"--root-dir={layout.kubelet}", f"--cert-dir={layout.kubelet / 'pki'}",
            "--v=1",
        ], env=env)

    def start_controller_manager(self) -> None:
        f, layout = self.files, self.layout
        self.spawn("kube-controller-manager", [
            str(Path(self.spec.binaries) / "kube-controller-manager"),
            f"--kubeconfig={layout.root / 'controller-manager.kubeconfig'}",
            "--bind-address=127.0.0.1", "--port=0", "--secure-port=0",
            f"--service-account-private-key-file={self.spec.signing_key}",
            f"--root-ca-file={f['ca']}",
            f"--cluster-signing-cert-file={f['ca']}", f"--cluster-signing-key-file={f['ca-key']}",
            "--use-service-account-credentials=true",
            "--controllers=*,-cloud-node-lifecycle,-nodeipam",
            "--leader-elect=false",
            f"--flex-volume-plugin-dir={layout.root / 'controller-manager-flex'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
        ])

    def node_ready(self) -> bool:
        node = self.api.get(f"/api/v1/nodes/{self.spec.node_name}")
        if not isinstance(node, dict):
            return False
        return any(c.get("type") == "Ready" and c.get("status") == "True"
                   for c in node.get("status", {}).get("conditions", []))

    def default_service_account_ready(self) -> bool:
        account = self.api.get("/api/v1/namespaces/default/serviceaccounts/default")
        return isinstance(account, dict) and bool(account.get("secrets"))


def up(spec: ClusterSpec) -> Cluster:
    """Start the cluster and wait until its node is Ready and the default service account has
    its token; prints progress with timings to stderr. Undoes everything when it fails."""
    clock = _Clock()
    spec.work_dir = Path(spec.work_dir).resolve()
    layout = _Layout(spec.work_dir)
    if layout.load() is not None:
        clock.say(f"stopping what a previous run left in {layout.root}")
    down(layout.root, quiet=True)
    starter = _Starter(spec, clock)
    starter.preflight()
    timings: dict[str, float] = {}
    try:
        starter.prepare()
        starter.network()
        starter.configure()
        clock.say(f"PKI, configs and bridge {spec.bridge_name} ({starter.gateway}) ready; "
                  f"ports {starter.ports}")
        starter.start_etcd()
        starter.start_containerd()
        pause_tar = starter.build_pause()
        starter.wait("etcd", starter.etcd_healthy, 30, ["etcd"])
        timings["etcd"] = clock.elapsed()
        clock.say("etcd ready")
        starter.start_apiserver()
        starter.wait("containerd", starter.containerd_ready, 30, ["containerd"])
        clock.say("containerd ready")
        starter.import_images([pause_tar])
        starter.start_kubelet()
        starter.import_images(spec.images)
        starter.wait("the API server", starter.apiserver_ready, 90,
                     ["kube-apiserver", "etcd", "kubelet"])
        timings["apiserver"] = clock.elapsed()
        clock.say(f"API server ready at {starter.server}")
        starter.start_controller_manager()
        starter.wait(f"node {spec.node_name} Ready", starter.node_ready, spec.ready_timeout,
                     ["kubelet", "containerd", "kube-apiserver", "kube-controller-manager"])
        timings["node_ready"] = clock.elapsed()
        clock.say(f"node {spec.node_name} Ready")
        starter.wait("the default service account's token", starter.default_service_account_ready,
                     60, ["kube-controller-manager", "kube-apiserver"])
        timings["default_service_account"] = clock.elapsed()
        clock.say("default service account ready")
        starter.state["phase"] = "running"
        starter.save()
    except BaseException as exc:
        clock.say(f"start failed ({type(exc).__name__}); stopping everything")
        try:
            down(layout.root, quiet=True)
        except Exception as cleanup_error:  # report the start failure, not the cleanup's
            clock.say(f"cleanup after the failed start failed too: {cleanup_error}")
        raise
    return Cluster(kubeconfig=layout.admin_kubeconfig, gateway_ip=starter.gateway,
                   node_name=spec.node_name, work_dir=layout.root, api_server=starter.server,
                   ca_cert=starter.files["ca"], timings=timings)


# ---------------------------------------------------------------------------------------------
# stopping

def _process_alive(state: dict[str, Any], name: str) -> bool:
    entry = state.get("processes", {}).get(name)
    return bool(entry) and entry.get("start") is not None and \
        _proc_start(entry["pid"]) == entry["start"]


def _stop_process(state: dict[str, Any], name: str, grace: float = 10.0) -> None:
    entry = state.get("processes", {}).get(name)
    if entry:
        _stop_pid(entry["pid"], entry.get("start"), grace)


def _delete_pods(layout: _Layout, state: dict[str, Any], say: Any) -> None:
    """Delete every pod (grace 0) while the kubelet runs, so that it stops the sandboxes through
    CRI (CNI DEL, netns removed); wait for their network namespaces to go."""
    ports = state.get("ports") or {}
    pki = layout.pki
    if not ports.get("apiserver") or not all(
            _process_alive(state, n) for n in ("kube-apiserver", "kubelet", "containerd")):
        return
    try:
        api = _Api(ports["apiserver"], pki / "ca.crt", pki / "admin.crt", pki / "admin.key")
        pods = api.get("/api/v1/pods") or {}
        items = pods.get("items", []) if isinstance(pods, dict) else []
        for pod in items:
            meta = pod["metadata"]
            api.request("DELETE", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                        {"gracePeriodSeconds": 0})
        if items:
            say(f"deleted {len(items)} pod(s)")
    except (OSError, ssl.SSLError, http.client.HTTPException, ValueError) as exc:
        say(f"could not delete pods through the API: {exc}")
        return
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        sandboxes = list(layout.netns.glob("*")) if layout.netns.is_dir() else []
        if not sandboxes and not _runc_containers(layout):
            return
        time.sleep(0.1)
    say("pod sandboxes still there after 20s; removing them by force")


def _runc_containers(layout: _Layout) -> list[dict[str, Any]]:
    root = layout.runc_root / NAMESPACE
    if not root.is_dir():
        return []
    result = _run(["runc", "--root", str(root), "list", "--format", "json"], check=False)
    try:
        return json.loads(result.stdout) or []
    except ValueError:
        return []


def _clean_containerd(layout: _Layout, state: dict[str, Any], say: Any) -> None:
    """Kill and delete all tasks and containers while containerd runs (the image store stays)."""
    if not _process_alive(state, "containerd"):
        return
    ctr = ["ctr", "-a", str(layout.socket), "-n", NAMESPACE]
    try:
        tasks = _run([*ctr, "tasks", "ls", "-q"], timeout=20).stdout.split()
        for task in tasks:
            _run([*ctr, "tasks", "kill", "-s", "SIGKILL", task], check=False, timeout=20)
        for task in tasks:
            for _ in range(50):
                if _run([*ctr, "tasks", "rm", "-f", task], check=False,
                        timeout=20).returncode == 0:
                    break
                time.sleep(0.1)
        containers = _run([*ctr, "containers", "ls", "-q"], timeout=20).stdout.split()
        for container in containers:
            _run([*ctr, "containers", "rm", container], check=False, timeout=20)
        if tasks or containers:
            say(f"removed {len(tasks)} task(s) and {len(containers)} container(s) from containerd")
        state["containerd_clean"] = True
    except (ClusterError, subprocess.SubprocessError) as exc:
        say(f"could not clean containerd through ctr: {exc}")


def _kill_leftover_containers(layout: _Layout) -> list[str]:
    """Shims of our containerd and containers under our runc root, whatever is left."""
    ids = set()
    address = str(layout.socket)
    for pid in _pids():
        argv = _cmdline(pid)
        if argv and argv[0].endswith("containerd-shim-runc-v2") and address in argv:
            start = _proc_start(pid)
            if start is not None:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if "-id" in argv:
                ids.add(argv[argv.index("-id") + 1])
    root = layout.runc_root / NAMESPACE
    for container in _runc_containers(layout):
        ids.add(container["id"])
        _run(["runc", "--root", str(root), "kill", container["id"], "KILL"], check=False)
    for container in _runc_containers(layout):
        _run(["runc", "--root", str(root), "delete", "-f", container["id"]], check=False)
    if layout.tasks.is_dir():
        ids.update(child.name for child in layout.tasks.iterdir())
    # The shims' sockets: /run/containerd/s/sha256(address/namespace/id)
    for container_id in ids:
        digest = hashlib.sha256(f"{address}/{NAMESPACE}/{container_id}".encode()).hexdigest()
        (SHIM_SOCKETS / digest).unlink(missing_ok=True)
    return sorted(ids)


BUILTIN_CHAINS = frozenset({"INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING"})


def _rule_is_ours(args: list[str], network: ipaddress.IPv4Network | ipaddress.IPv6Network,
                  name: str) -> bool:
    """A CNI plugin rule for one of our pods: an address in our subnet, or the bridge plugin's
    comment naming our network."""
    for flag in ("-s", "-d", "--source", "--destination"):
        if flag in args:
            try:
                value = ipaddress.ip_network(args[args.index(flag) + 1], strict=False)
                if value.version == network.version and value.subnet_of(network):  # type: ignore[arg-type]
                    return True
            except (ValueError, TypeError, IndexError):
                pass
    return "--comment" in args and f'name: "{name}" ' in args[args.index("--comment") + 1] + " "


def _clean_iptables(state: dict[str, Any]) -> int:
    """Remove the CNI plugins' rules for our pods, then the CNI-* chains that were not there
    before up and hold nothing of anybody else's (another cluster's pods keep the shared
    CNI-FORWARD chain, say); returns how many rules and chains went."""
    network = ipaddress.ip_network(state["cidr"])
    name = state.get("network", "")
    baseline = state.get("iptables_baseline", {})
    removed = 0

    def listing(table: str) -> tuple[list[str], list[list[str]]]:
        lines = _run(["iptables", "-w", "-t", table, "-S"], check=False).stdout.splitlines()
        chains = [line.split()[1] for line in lines if line.startswith("-N ")]
        return chains, [shlex.split(line) for line in lines if line.startswith("-A ")]

    def delete(table: str, rule: list[str]) -> int:
        return int(_run(["iptables", "-w", "-t", table, "-D", *rule[1:]],
                        check=False).returncode == 0)

    for table in ("filter", "nat"):
        chains, rules = listing(table)
        for rule in rules:
            if _rule_is_ours(rule, network, name):
                removed += delete(table, rule)
        chains, rules = listing(table)
        removable = {c for c in chains
                     if c.startswith("CNI-") and c not in baseline.get(table, [])}
        changed = True
        while changed:  # a chain stays if it has a rule other than a jump to a removable chain,
            changed = False  # or a chain that stays jumps to it
            for rule in rules:
                chain = rule[1]
                target = rule[rule.index("-j") + 1] if "-j" in rule else ""
                if chain in removable and target not in removable:
                    removable.discard(chain)
                    changed = True
                elif target in removable and chain not in removable and \
                        chain not in BUILTIN_CHAINS:
                    removable.discard(target)
                    changed = True
        for rule in rules:
            target = rule[rule.index("-j") + 1] if "-j" in rule else ""
            if target in removable and rule[1] not in removable:
                removed += delete(table, rule)
        for chain in removable:
            _run(["iptables", "-w", "-t", table, "-F", chain], check=False)
        for chain in removable:
            removed += int(_run(["iptables", "-w", "-t", table, "-X", chain],
                                check=False).returncode == 0)
    return removed


def _clean_network(layout: _Layout, state: dict[str, Any], say: Any) -> None:
    bridge = state.get("bridge")
    # Pod network namespaces are nsfs mounts under containerd's state dir.
    for point, fstype in _mounts_under(layout.root):
        if fstype == "nsfs":
            _umount(point)
    if bridge and Path("/sys/class/net", bridge).exists():
        ports = Path("/sys/class/net", bridge, "brif")
        for veth in (list(ports.iterdir()) if ports.is_dir() else []):
            _run(["ip", "link", "del", veth.name], check=False)
        _run(["ip", "link", "del", bridge], check=False)
    removed = _clean_iptables(state) if state.get("cidr") else 0
    if removed:
        say(f"removed {removed} iptables rule(s)/chain(s) of the CNI plugins")
    network = state.get("network")
    if network and CNI_RESULTS.is_dir():
        for cached in CNI_RESULTS.glob(f"{network}-*"):
            cached.unlink(missing_ok=True)


def _clean_pod_logs(layout: _Layout) -> None:
    pods_dir = layout.kubelet / "pods"
    uids = [p.name for p in pods_dir.iterdir()] if pods_dir.is_dir() else []
    removed = []
    for uid in uids:
        for directory in POD_LOGS.glob(f"*_{uid}"):
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(str(directory))
    if CONTAINER_LOGS.is_dir():
        for link in CONTAINER_LOGS.iterdir():
            if link.is_symlink() and any(os.readlink(link).startswith(d + "/") for d in removed):
                link.unlink(missing_ok=True)


def _kubelet_running() -> bool:
    return any(Path(_cmdline(pid)[0]).name == "kubelet" for pid in _pids() if _cmdline(pid)[0:1])


def _restore_tunables(saved: dict[str, str]) -> None:
    for name, value in saved.items():
        path = Path("/proc/sys", name)
        try:
            if path.read_text().strip() != value:
                path.write_text(value + "\n")
        except OSError:
            pass


def down(work_dir: Path, quiet: bool = False) -> None:
    """Stop the cluster of work_dir from its state file (also after a crash or a failed start)
    and undo everything it made outside its files. Idempotent."""
    clock = _Clock()
    say = (lambda message: None) if quiet else clock.say
    layout = _Layout(work_dir)
    state = layout.load()
    if state is None:
        for point, _ in _mounts_under(layout.root):
            _umount(point)
        return
    _delete_pods(layout, state, say)
    for name in ("kube-controller-manager", "kubelet"):
        _stop_process(state, name)
    _clean_containerd(layout, state, say)
    _stop_process(state, "containerd")
    leftovers = _kill_leftover_containers(layout)
    if leftovers and not state.get("containerd_clean"):
        say(f"killed {len(leftovers)} leftover container(s)")
    for name in ("kube-apiserver", "etcd"):
        _stop_process(state, name)
    _clean_network(layout, state, say)
    for point, _ in _mounts_under(layout.root):
        _umount(point)
    _clean_pod_logs(layout)
    if state.get("cgroup_root"):
        _remove_cgroup_root(state["cgroup_root"])
    if not _kubelet_running():  # the tunables are the machine's: not while another kubelet runs
        _restore_tunables(state.get("tunables", {}))
    for directory in state.get("host_dirs_created", []):
        try:
            os.rmdir(directory)
        except OSError:
            pass
    if not state.get("containerd_clean") and state.get("processes", {}).get("containerd"):
        # containerd died with containers in its metadata: start the next run from a clean
        # store (the images are imported again).
        shutil.rmtree(layout.containerd_root, ignore_errors=True)
        layout.imported.unlink(missing_ok=True)
    shutil.rmtree(layout.containerd_state, ignore_errors=True)
    shutil.rmtree(layout.runc_root, ignore_errors=True)
    layout.state.unlink(missing_ok=True)
    say(f"stopped ({clock.elapsed():.1f}s)")


# ---------------------------------------------------------------------------------------------
# smoke test and CLI

SMOKE_POD = "crossfed-smoke"


def _smoke_pod(node: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": SMOKE_POD, "namespace": "default"},
        "spec": {
            "nodeName": node, "restartPolicy": "Never",
            "containers": [{
                "name": "probe", "image": "crossfed/probe:local", "imagePullPolicy": "Never",
                "command": ["/opt/probe/bin/python", "-c",
                            'print(open("/var/run/secrets/tokens/t").read()[:20])'],
                "volumeMounts": [{"name": "token", "mountPath": "/var/run/secrets/tokens"}],
            }],
            "volumes": [{"name": "token", "projected": {"sources": [{"serviceAccountToken": {
                "audience": "sts.amazonaws.com", "path": "t", "expirationSeconds": 3600}}]}}],
        },
    }


def _leftovers(layout: _Layout, bridge: str, cidr: str) -> list[str]:
    network = ipaddress.ip_network(cidr)
    found = []
    root = str(layout.root)
    ancestors, pid = set(), os.getpid()
    while pid > 1:
        ancestors.add(pid)
        stat = Path(f"/proc/{pid}/stat").read_text()
        pid = int(stat[stat.rindex(")") + 2:].split()[1])
    for pid in _pids():
        argv = _cmdline(pid)
        if pid not in ancestors and any(root in arg for arg in argv) and \
                _proc_start(pid) is not None:
            found.append(f"process {pid}: {' '.join(argv)[:120]}")
    if Path("/sys/class/net", bridge).exists():
        found.append(f"bridge {bridge}")
    found += [f"mount {point}" for point, _ in _mounts_under(layout.root)]
    netns = _run(["ip", "netns", "list"], check=False).stdout.split()
    found += [f"netns {n}" for n in netns if n.startswith("cni-")]
    for table in ("filter", "nat"):
        rules = _run(["iptables", "-w", "-t", table, "-S"], check=False).stdout
        found += [f"iptables {table}: {line}" for line in rules.splitlines()
                  if line.startswith("-A ") and _rule_is_ours(shlex.split(line), network,
                                                                bridge)]
    return found


def smoke(work_dir: Path, binaries: Path, images: Sequence[Path]) -> dict[str, float]:
    """Up with a throwaway key, a pod that prints the start of its projected token, down."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    clock = _Clock("crossfed microcluster smoke")
    work_dir = Path(work_dir).resolve()
    keys = private_dir(work_dir / "smoke-keys")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write(keys / "sa.key", key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode(), private=True)
    _write(keys / "sa.pub", key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode())
    spec = ClusterSpec(work_dir=work_dir, binaries=binaries, issuer_url="https://127.0.0.1:1",
                       signing_key=keys / "sa.key", signing_public_key=keys / "sa.pub",
                       images=tuple(images))
    timings: dict[str, float] = {}
    cluster = up(spec)
    timings["nothing -> node Ready"] = cluster.timings["node_ready"]
    timings["nothing -> default service account"] = cluster.timings["default_service_account"]
    try:
        state = _Layout(work_dir).load() or {}
        pki = _Layout(work_dir).pki
        api = _Api(state["ports"]["apiserver"], pki / "ca.crt", pki / "admin.crt",
                   pki / "admin.key")
        began = time.monotonic()
        status, body = api.request("POST", "/api/v1/namespaces/default/pods",
                                   _smoke_pod(cluster.node_name))
        if status != 201:
            raise ClusterError(f"pod create: HTTP {status}: {body}")
        running = None
        deadline = began + 120
        phase = None
        while time.monotonic() < deadline:
            pod = api.get(f"/api/v1/namespaces/default/pods/{SMOKE_POD}") or {}
            phase = pod.get("status", {}).get("phase")
            if running is None and phase in ("Running", "Succeeded"):
                running = time.monotonic() - began
                clock.say(f"pod {phase} {running:.2f}s after create")
            if phase in ("Succeeded", "Failed"):
                break
            time.sleep(0.05)
        timings["pod create -> Running"] = running if running is not None else float("nan")
        timings["pod create -> Succeeded"] = time.monotonic() - began
        if phase != "Succeeded":
            raise ClusterError(f"pod ended as {phase}: {json.dumps(pod.get('status'))[:2000]}")
        status, log = api.request("GET", f"/api/v1/namespaces/default/pods/{SMOKE_POD}/log")
        if status != 200 or not str(log).startswith("eyJ"):
            raise ClusterError(f"pod log is not a JWT prefix: HTTP {status}: {str(log)[:300]!r}")
        clock.say(f"pod log (through the kubelet): {str(log).strip()!r} - a JWT prefix")
        began = time.monotonic()
        api.request("DELETE", f"/api/v1/namespaces/default/pods/{SMOKE_POD}",
                    {"gracePeriodSeconds": 0})
        while api.get(f"/api/v1/namespaces/default/pods/{SMOKE_POD}") is not None:
            time.sleep(0.05)
        timings["pod delete (grace 0)"] = time.monotonic() - began
    finally:
        began = time.monotonic()
        cluster.stop()
        timings["stop"] = time.monotonic() - began
    left = _leftovers(_Layout(work_dir), spec.bridge_name, spec.bridge_cidr)
    if left:
        raise ClusterError("left after stop:\n  " + "\n  ".join(left))
    clock.say("nothing left: no processes, bridge, veth, netns, mounts or CNI iptables rules")
    for name, seconds in timings.items():
        clock.say(f"timing: {name}: {seconds:.2f}s")
    return timings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crossfed.cluster.microcluster",
                                     description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("up", "down", "smoke"):
        command = sub.add_parser(name)
        command.add_argument("--work-dir", type=Path, required=True)
        if name == "down":
            continue
        command.add_argument("--binaries", type=Path, default=None,
                             help="dir with kube-apiserver, kubelet, kube-controller-manager, "
                                  "pause.c (default: newest under the cache)")
        command.add_argument("--image", type=Path, action="append", default=None,
                             help="docker-archive tar to import (repeatable; smoke default: "
                                  "the cached probe image)")
        if name == "up":
            command.add_argument("--issuer-url", required=True)
            command.add_argument("--signing-key", type=Path, required=True)
            command.add_argument("--signing-public-key", type=Path, required=True)
            command.add_argument("--api-audience", action="append", default=None)
            command.add_argument("--bridge-cidr", default="10.77.0.0/24")
            command.add_argument("--bridge-name", default="crossfed0")
            command.add_argument("--node-name", default="crossfed-node")
    args = parser.parse_args(argv)
    try:
        if args.command == "down":
            down(args.work_dir)
            return 0
        binaries = args.binaries or default_binaries()
        if args.command == "smoke":
            images = tuple(args.image) if args.image else default_images()
            if not images:
                raise ClusterError("no probe image: run cluster/build-probe-image.sh")
            smoke(args.work_dir, binaries, images)
            return 0
        spec = ClusterSpec(
            work_dir=args.work_dir, binaries=binaries, issuer_url=args.issuer_url,
            signing_key=args.signing_key.resolve(),
            signing_public_key=args.signing_public_key.resolve(),
            api_audiences=tuple(args.api_audience or ClusterSpec.api_audiences),
            bridge_cidr=args.bridge_cidr, images=tuple(p.resolve() for p in args.image or ()),
            bridge_name=args.bridge_name, node_name=args.node_name)
        cluster = up(spec)
        print(json.dumps({"kubeconfig": str(cluster.kubeconfig), "gateway_ip": cluster.gateway_ip,
                          "node_name": cluster.node_name, "api_server": cluster.api_server,
                          "work_dir": str(cluster.work_dir)}))
        return 0
    except ClusterError as exc:
        print(f"crossfed microcluster: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
