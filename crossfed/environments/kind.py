"""The `kind` environment: a kind cluster whose API server signs service-account tokens with
crossfed's issuer key, the probe image loaded into it and the webhooks installed, attached as a
KubeconfigCluster.

Set-up is split around the stand-ins, which must listen on the cluster bridge's address and
trust the issuer the cluster names:

    start(pki_dir)            state (key, issuer port), issuer, cluster, kubeconfig, bridge, image
    ... the run starts its stand-ins with `state.key`, `issuer` and on `bridge` ...
    attach(tenant, connect)   webhooks (real charts with helm, or none for the reference
                              mutator), then the KubeconfigCluster `connect` builds
    upgrade_webhooks(tenant, versions)
                              `helm upgrade` in place of the releases whose version changes
                              (kind_upgrade.py); nothing with the reference mutator
    stop()                    what start() and attach() created, in reverse order

The state that must outlive a run lives in `KindSettings.directory` (default
~/.cache/crossfed/tools/kind/<name>): the signing key pair and the issuer port the cluster was
created with, so that a reused cluster still names crossfed's issuer URL and key. Set-up runs
under a file lock: one pytest-xdist worker creates the cluster and installs what it needs, the
others then find it done. A failure mid-way tears down what was created; stop() deletes the
cluster only if this run created it, and never with `keep`.

Every external command (kind, docker, helm, kubectl) goes through `runner`, so the
orchestration is tested with a recorder that answers as those tools do.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from filelock import FileLock

from crossfed.cleanup import Teardown
from crossfed.cluster.kind import KindCluster, kind_config, network_gateway
from crossfed.cluster.kind_owner import clear_creator, mark_kept, write_creator
from crossfed.cluster.tools import Runner, Tools, default_cache_dir, run_command
from crossfed.environments.kind_probe import (  # noqa: F401 (DEFAULT_DOCKERFILE: a setting)
    DEFAULT_DOCKERFILE,
    ProbeImage,
    ProbeImageError,
    probe_context,
)
from crossfed.environments.kind_upgrade import (
    installed_versions,
    mark_progress,
    release_marks,
    releases_fingerprint,
    releases_to_install,
)
from crossfed.environments.kubeconfig import KubeconfigOptions
from crossfed.https_server import LOOPBACK
from crossfed.issuer.issuer import JWKS_PATH
from crossfed.issuer.keys import SigningKey
from crossfed.issuer.server import DISCOVERY_PATH, IssuerServer
from crossfed.pki import RunCA
from crossfed.plan import AZURE_AUDIENCE, STS_AUDIENCE
from crossfed.progress import progress
from crossfed.webhooks import charts
from crossfed.webhooks.versions import WebhookVersions
from crossfed.workload.pod import PodSettings

log = logging.getLogger("crossfed")
T = TypeVar("T")

WEBHOOK_MODES = ("real", "reference")
WAIT_FOR_CONTROL_PLANE = "3m"
# What each real webhook's MutatingWebhookConfiguration must look like once installed, found
# by the namespace of the service it calls (see charts.webhook_configuration_problems).
EXPECTED_WEBHOOKS: tuple[tuple[str, dict[str, Any]], ...] = (
    (charts.EKS_WEBHOOK_NAMESPACE, {"failure_policy": "Fail",
                                    "admission_review_versions":
                                        charts.EKS_ADMISSION_REVIEW_VERSIONS}),
    (charts.AZWI_NAMESPACE, {"failure_policy": "Fail"}),
)


class KindSetupError(RuntimeError):
    """A step of the kind environment failed; the message says which and what to do."""


# kind's node providers other than docker (KIND_EXPERIMENTAL_PROVIDER; an unknown value is
# ignored by kind with a warning). The environment inspects nodes, the node network and the
# probe image with docker, so it only works with kind's docker provider.
OTHER_PROVIDERS = frozenset({"podman", "nerdctl", "finch", "nerdctl.lima"})


def provider_problem(environ: Mapping[str, str] | None = None) -> str | None:
    """None when kind will use its docker provider; else why this environment cannot run."""
    environ = os.environ if environ is None else environ
    provider = environ.get("KIND_EXPERIMENTAL_PROVIDER", "").strip()
    if provider in OTHER_PROVIDERS:
        return (f"KIND_EXPERIMENTAL_PROVIDER={provider} makes kind put its nodes in "
                f"{provider} containers, but the kind environment inspects them and loads the "
                "probe image with docker: unset it (or set it to docker)")
    return None


def default_state_dir(name: str) -> Path:
    return default_cache_dir() / "kind" / name


@dataclass(frozen=True)
class KindSettings:
    name: str = "crossfed"
    state_dir: Path | None = None  # None: default_state_dir(name)
    webhooks: str = "real"  # "real": the charts, with helm; "reference": crossfed's mutator
    keep: bool = False  # never delete the cluster, also not one this run created
    probe_image: str = "crossfed/probe:local"
    dockerfile: Path = DEFAULT_DOCKERFILE
    # None: a context holding only the probe's sources, as crossfed/probe/*.py (probe_context)
    build_context: Path | None = None
    node_image: str | None = None  # None: the kind release's own pinned default
    # None: disabled when the node image says it has no default CNI (NO_DEFAULT_CNI_LABEL)
    disable_default_cni: bool | None = None
    # A docker-archive tar of the probe image, loaded as it is instead of building one
    probe_archive: Path | None = None
    # pytest-xdist: the controller's run, which deletes the cluster once every worker is done
    run_token: str | None = None
    webhook_checks: int = 40  # polls (3 s apart) for the caBundle to be injected
    # The webhook versions attach() installs (--webhook-versions); None: the charts' pins
    # (charts.EKS_WEBHOOK_VERSION, charts.AZWI_VERSION), i.e. WebhookVersions()'s defaults
    webhook_versions: WebhookVersions | None = None

    def __post_init__(self) -> None:
        if self.webhooks not in WEBHOOK_MODES:
            raise ValueError(f"webhooks must be one of {WEBHOOK_MODES}, got {self.webhooks!r}")

    @property
    def directory(self) -> Path:
        return Path(self.state_dir) if self.state_dir else default_state_dir(self.name)


# Set by cluster/kind/build-images.sh on its node image, which has no kindnet but a static
# bridge CNI config of its own: kind must then not apply its default CNI manifest.
NO_DEFAULT_CNI_LABEL = "io.crossfed.kind.default-cni"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class KindState:
    """What a kind cluster was created with and must keep: the key pair and the issuer port.

    The layout is `crossfed issuer --state-dir`'s (issuer/sa-signer.key), so that command can
    serve the same issuer by hand.
    """

    directory: Path
    key: SigningKey
    key_path: Path
    public_key_path: Path
    issuer_port: int

    @property
    def issuer_url(self) -> str:
        return f"https://{LOOPBACK}:{self.issuer_port}"

    @classmethod
    def load_or_create(cls, directory: Path) -> KindState:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        key_dir = directory / "issuer"
        key_path, public_path = key_dir / "sa-signer.key", key_dir / "sa-signer.pub"
        settings = directory / "state.json"
        with FileLock(str(directory / "state.lock")):
            if key_path.exists():  # never rewritten: the cluster's bind mount pins the inode
                key = SigningKey.load(key_path)
            else:
                key = SigningKey.generate()
                key.write(key_dir)
                public_path.chmod(0o600)  # owner-only like its directory; root in the node reads it
            if settings.exists():
                port = int(json.loads(settings.read_text())["issuer_port"])
            else:
                port = _free_port()
                settings.write_text(json.dumps({"issuer_port": port}) + "\n")
        return cls(directory, key, key_path, public_path, port)

    def serve_issuer(self, pki_dir: Path) -> tuple[IssuerServer, Path]:
        """Serve discovery + JWKS on the fixed port; returns the server and its CA bundle."""
        ca = RunCA(Path(pki_dir), name="crossfed kind issuer CA")
        try:
            server = IssuerServer(ca, "issuer", key=self.key, port=self.issuer_port).start()
        except OSError as exc:
            raise KindSetupError(
                f"cannot serve the kind issuer on {LOOPBACK}:{self.issuer_port} "
                f"({exc.strerror or exc}): the cluster names this URL, fixed in "
                f"{self.directory / 'state.json'}; is another crossfed run using it? Free the "
                "port, or delete the cluster and that directory") from exc
        return server, ca.bundle_path


class KindEnvironment:
    """Creates or reuses the kind cluster and prepares it; see the module docstring."""

    def __init__(self, settings: KindSettings, tools: Tools, *, runner: Runner = run_command,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings, self.tools, self.runner, self.sleep = settings, tools, runner, sleep
        self.directory = settings.directory
        self.state: KindState | None = None
        self.issuer: tuple[str, Path] | None = None  # (URL, CA bundle) the stand-ins trust
        self.cluster: KindCluster | None = None
        self.kubeconfig: Path | None = None
        self.bridge: str | None = None  # where pods reach the host: stand-ins and mutator
        self._teardown = Teardown()
        self._failed = False

    # --- the two phases -------------------------------------------------------------------

    def start(self, pki_dir: Path,
              shared_issuer: tuple[str, Path] | None = None) -> KindEnvironment:
        """State, issuer (unless `shared_issuer` serves it), cluster, kubeconfig, bridge, image."""
        problem = provider_problem()
        if problem:  # before anything is created
            raise KindSetupError(f"crossfed kind: {problem}")
        with self._undo_on_failure():
            self.state = KindState.load_or_create(self.directory)
            self.issuer = self._issuer(pki_dir, shared_issuer)
            with self._setup_lock():
                self.cluster = self._create_or_reuse()
                self.kubeconfig = self.cluster.write_kubeconfig(self.directory / "kubeconfig")
                self._check_cluster_issuer()
                self.bridge = network_gateway(self.tools.docker, runner=self.runner)
                log.info("crossfed kind: pods reach the host at %s", self.bridge)
                self._load_probe_image()
        return self

    def attach(self, azure_tenant_id: str, connect: Callable[[KubeconfigOptions], T], *,
               webhook_versions: WebhookVersions | None = None) -> T:
        """Install the webhooks (real) or make sure none are (reference), then connect.

        `webhook_versions` (else the setting's, else the charts' pins) chooses the chart
        versions installed; charts.ChartVersionError when no chart ships one of them."""
        if self.kubeconfig is None or self.bridge is None:
            raise RuntimeError("KindEnvironment.attach() before start()")
        versions = webhook_versions or self.settings.webhook_versions
        with self._undo_on_failure():
            with self._setup_lock():
                if self.settings.webhooks == "real":
                    self._install_webhooks(azure_tenant_id, versions)
                else:
                    self._refuse_real_webhooks()
            options = KubeconfigOptions(
                str(self.kubeconfig), PodSettings(image=self.settings.probe_image),
                mutator_host=self.bridge,
                reference_mutator=self.settings.webhooks == "reference")
            return connect(options)

    def upgrade_webhooks(self, azure_tenant_id: str,
                         versions: WebhookVersions) -> list[charts.HelmRelease]:
        """Upgrade the real webhooks in place to `versions` (see kind_upgrade.upgrade_webhooks);
        returns the releases upgraded, none with the reference mutator."""
        from crossfed.environments.kind_upgrade import upgrade_webhooks

        return upgrade_webhooks(self, azure_tenant_id, versions)

    def installed_webhook_versions(self) -> WebhookVersions | None:
        """The versions the cluster.json mark says are installed (None: none recorded)."""
        return installed_versions(self._marks(self._node_id()))

    def stop(self) -> list[str]:
        return self._teardown.run()

    # --- steps ----------------------------------------------------------------------------

    @contextmanager
    def _undo_on_failure(self) -> Iterator[None]:
        try:
            yield
        except BaseException:  # also Ctrl-C: nothing half-made is left behind
            self._failed = True
            failures = self._teardown.run()
            if failures:
                log.warning("crossfed kind: tear-down after the failure left: %s", failures)
            raise

    @contextmanager
    def _setup_lock(self) -> Iterator[None]:
        # Held across create, image load and helm: two workers must not run helm at once.
        with FileLock(str(self.directory / "setup.lock"), timeout=1800):
            yield

    def _issuer(self, pki_dir: Path, shared: tuple[str, Path] | None) -> tuple[str, Path]:
        assert self.state is not None
        if shared is not None:
            if shared[0] != self.state.issuer_url:
                raise KindSetupError(f"the shared issuer is {shared[0]}, but the cluster's "
                                     f"state names {self.state.issuer_url}")
            return shared
        server, bundle = self.state.serve_issuer(pki_dir)
        self._teardown.add("kind issuer", server.stop)
        log.info("crossfed kind: issuer %s (key and port kept in %s)", server.url,
                 self.directory)
        return server.url, bundle

    def _create_or_reuse(self) -> KindCluster:
        state, name = self.state, self.settings.name
        assert state is not None
        config = kind_config(name, state.key_path, state.public_key_path, state.issuer_url,
                             state.issuer_url + JWKS_PATH,
                             [state.issuer_url, STS_AUDIENCE, AZURE_AUDIENCE],
                             node_image=self.settings.node_image,
                             disable_default_cni=self._disable_default_cni())
        log.info("crossfed kind: creating cluster %s, or reusing it (creating takes a minute "
                 "or two)", name)
        # Under xdist the controller deletes the cluster: it is an owner too (for the sweep).
        holder = os.getppid() if self.settings.run_token else None
        try:
            cluster = KindCluster.create_or_reuse(
                name, config, self.tools.kind, self.directory / "kind.lock",
                config_path=self.directory / "kind-config.yaml", runner=self.runner,
                kubeconfig_path=self.directory / "kubeconfig", wait=WAIT_FOR_CONTROL_PLANE,
                on_create=lambda: write_creator(self.directory, name, holder))
        except BaseException:
            # kind removes the nodes of a create that failed; a Ctrl-C mid-create is undone
            # by the sweep, which needs the record, so only a clean failure clears it.
            if not any(c == name for c in self._listed()):
                clear_creator(self.directory)
            raise
        if cluster.created:
            self._teardown.add(f"kind cluster {name}", lambda: self._release(cluster))
            if self.settings.run_token:
                (self.directory / "created-by-run").write_text(self.settings.run_token)
            log.info("crossfed kind: created cluster %s", name)
        else:
            log.info("crossfed kind: reusing cluster %s (not deleted at the end)", name)
        return cluster

    def _listed(self) -> list[str]:
        try:
            return KindCluster.list_clusters(self.tools.kind, self.runner)
        except Exception:  # noqa: BLE001 (kind itself failing: keep the record for the sweep)
            return [self.settings.name]

    def _disable_default_cni(self) -> bool:
        """The setting, else what the node image's label says (kind's own images have none)."""
        if self.settings.disable_default_cni is not None:
            return self.settings.disable_default_cni
        image = self.settings.node_image
        if not image:
            return False
        result = self.runner([str(self.tools.docker), "image", "inspect", "--format",
                              "{{json .Config.Labels}}", image], timeout=60)
        if result.returncode != 0:  # not here yet: kind pulls it where a registry answers
            log.warning("crossfed kind: node image %s is not in docker's image store, so its "
                        "labels cannot be read; kind will pull it (build or load a local one "
                        "first where no registry answers, e.g. cluster/kind/build-images.sh; "
                        "--kind-disable-default-cni if it has no default CNI)", image)
            return False
        labels = json.loads(result.stdout or "null") or {}
        if labels.get(NO_DEFAULT_CNI_LABEL) == "none":
            log.info("crossfed kind: node image %s has no default CNI (label %s=none): "
                     "creating the cluster with disableDefaultCNI", image, NO_DEFAULT_CNI_LABEL)
            return True
        return False

    def _release(self, cluster: KindCluster) -> None:
        """Tear-down of a cluster this run created: deleted unless kept or xdist's to delete."""
        if self.settings.run_token and not self._failed and not self.settings.keep:
            log.info("crossfed kind: cluster %s is deleted by the xdist controller once every "
                     "worker is done", cluster.name)
            return
        if cluster.delete(only_if_created=True, keep=self.settings.keep):
            clear_creator(self.directory)
            log.info("crossfed kind: deleted cluster %s", cluster.name)
        else:
            mark_kept(self.directory)
            log.info("crossfed kind: kept cluster %s; `kind delete cluster --name %s` removes "
                     "it", cluster.name, cluster.name)

    def _check_cluster_issuer(self) -> None:
        """A reused cluster must name our issuer and publish our key (else it is not ours)."""
        assert self.state is not None
        discovery = self._kubectl_json("get", "--raw", DISCOVERY_PATH)
        kids = [k.get("kid") for k in self._kubectl_json("get", "--raw", JWKS_PATH)["keys"]]
        if discovery.get("issuer") != self.state.issuer_url or self.state.key.kid not in kids:
            name = self.settings.name
            raise KindSetupError(
                f"kind cluster {name} names issuer {discovery.get('issuer')} with keys {kids}, "
                f"not crossfed's {self.state.issuer_url} with key {self.state.key.kid}: it was "
                f"not created from {self.directory}. Delete it (kind delete cluster --name "
                f"{name}) or pass another --kind-cluster-name")

    def _load_probe_image(self) -> None:
        settings = self.settings
        probe = ProbeImage(settings.probe_image, settings.dockerfile, settings.build_context,
                           settings.probe_archive, self.tools.docker, self._run, self.runner)
        try:
            source = probe.source()
        except ProbeImageError as exc:
            raise KindSetupError(f"crossfed kind: {exc}") from exc
        node = self._node_id()
        if self._marks(node).get("image") == source.mark:
            log.info("crossfed kind: probe image %s already loaded", settings.probe_image)
            return
        assert self.cluster is not None
        log.info("crossfed kind: loading probe image %s into the cluster", settings.probe_image)
        with progress(f"kind: loading probe image {settings.probe_image}"):
            if source.archive is not None:
                self.cluster.load_image(source.archive)
            else:
                archive = self.directory / "probe-image.tar"
                self._run([str(self.tools.docker), "save", "--output", str(archive),
                           settings.probe_image], "docker save of the probe image", timeout=600)
                try:
                    self.cluster.load_image(archive)
                finally:
                    archive.unlink(missing_ok=True)
        self._mark(node, image=source.mark)

    def _node_id(self) -> str:
        """The control-plane container's id: a recreated cluster has another, so marks reset."""
        node = f"{self.settings.name}-control-plane"
        return self._run([str(self.tools.docker), "inspect", "--format", "{{.Id}}", node],
                         f"docker inspect {node}").stdout.strip()

    def _install_webhooks(self, azure_tenant_id: str,
                          versions: WebhookVersions | None = None) -> None:
        releases = charts.webhook_releases(azure_tenant_id, versions or WebhookVersions())
        node, fingerprint = self._node_id(), releases_fingerprint(releases)
        missing = releases_to_install(releases, self._marks(node), fingerprint)
        if not missing:
            log.info("crossfed kind: webhooks already installed")
        else:
            if self.tools.helm is None:
                raise RuntimeError("crossfed kind: the real webhooks need helm; find it with "
                                   "find_tools(helm=True) or pass --helm-bin")
            for release in missing:  # in order: cert-manager before the EKS webhook
                log.info("crossfed kind: helm upgrade --install %s %s (waits for its pods)",
                         release.name, release.version)
                argv = release.install_argv(self.tools.helm, self.directory / "helm")
                with progress(f"kind: helm install {release.name} {release.version}"):
                    self._run([*argv, "--kubeconfig", str(self.kubeconfig)],
                              f"helm install of {release.name} {release.version}", timeout=900)
                mark_progress(self, node, release)
        self._mark(node, webhooks=fingerprint, releases=release_marks(releases),
                   webhook_versions=str(versions or WebhookVersions()))
        self._wait_for_webhooks()

    def _refuse_real_webhooks(self) -> None:
        if self._marks(self._node_id()).get("webhooks"):
            name = self.settings.name
            raise KindSetupError(
                f"kind cluster {name} has the real webhooks installed (by an earlier run); "
                "with the reference mutator both would mutate the pods. Run with "
                "--crossfed-webhooks real, pass another --kind-cluster-name, or delete it "
                f"(kind delete cluster --name {name})")

    def _wait_for_webhooks(self) -> None:
        """Both configurations present, failurePolicy Fail, caBundle injected (it comes after
        the install, from cert-manager's cainjector or the azwi manager)."""
        problems: list[str] = []
        for attempt in range(self.settings.webhook_checks):
            if attempt:
                self.sleep(3)
            problems = webhook_problems(self._kubectl_json(
                "get", "mutatingwebhookconfigurations", "--output", "json").get("items", []))
            if not problems:
                log.info("crossfed kind: webhooks ready")
                return
        raise KindSetupError("the webhooks' MutatingWebhookConfigurations are not right: "
                             + "; ".join(problems))

    # --- helpers --------------------------------------------------------------------------

    def _run(self, argv: Sequence[str], what: str,
             timeout: float = 300) -> subprocess.CompletedProcess[str]:
        result = self.runner(list(argv), timeout=timeout)
        if result.returncode != 0:
            lines = [line for line in (result.stderr or "").splitlines() if line.strip()]
            raise KindSetupError(f"{what} failed (exit {result.returncode}): "
                                 + (" | ".join(lines[-3:]) or "no output"))
        return result

    def _kubectl_json(self, *args: str) -> dict[str, Any]:
        argv = [str(self.tools.kubectl), *args, "--kubeconfig", str(self.kubeconfig)]
        return json.loads(self._run(argv, "kubectl " + " ".join(args)).stdout)

    def _marks(self, node: str) -> dict[str, Any]:
        """What this state dir already did to the cluster whose node is `node`."""
        path = self.directory / "cluster.json"
        marks = json.loads(path.read_text()) if path.exists() else {}
        return marks if marks.get("node") == node else {}

    def _mark(self, node: str, **done: Any) -> None:
        path = self.directory / "cluster.json"
        path.write_text(json.dumps({**self._marks(node), **done, "node": node}) + "\n")


def webhook_problems(configurations: Sequence[Mapping[str, Any]]) -> list[str]:
    """What is missing or wrong among the installed MutatingWebhookConfigurations."""
    problems = []
    for namespace, expected in EXPECTED_WEBHOOKS:
        found = [c for c in configurations if any(
            ((hook.get("clientConfig") or {}).get("service") or {}).get("namespace") == namespace
            for hook in c.get("webhooks") or [])]
        if not found:
            problems.append(f"no MutatingWebhookConfiguration calls a service in {namespace}")
        for configuration in found:
            problems += charts.webhook_configuration_problems(configuration, **expected)
    return problems
