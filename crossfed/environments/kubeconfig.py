"""The `kubeconfig` environment: any existing cluster, the reference mutator registered as its
webhook (or its own webhooks), and the probe image available on its node.

If the API server signs service-account tokens with crossfed's issuer key, tokens of any
variant can be minted; if it signs with a key of its own, its issuer is learned through the API
server and mirrored for the stand-ins, and the variants that need its private key are skipped."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from crossfed.cleanup import Teardown
from crossfed.https_server import HTTPSServer
from crossfed.issuer.issuer import Issuer
from crossfed.issuer.learned import LearnedIssuer, LearnError, learn_from_api_server
from crossfed.pki import RunCA
from crossfed.webhooks.pod_drift import MutationWatch, oracle_settings
from crossfed.webhooks.reference_mutator import MutatorApp, MutatorSettings, webhook_configuration
from crossfed.webhooks.versions import WebhookVersions
from crossfed.workload.pod import RUN_LABEL, PodRunner, PodSettings

if TYPE_CHECKING:
    from crossfed.environments.standins import LocalStandIns

log = logging.getLogger("crossfed")


@dataclass(frozen=True)
class KubeconfigOptions:
    kubeconfig: str
    pods: PodSettings
    mutator_host: str = "127.0.0.1"  # where the API server reaches the mutator
    # False: the cluster's own (real) webhooks mutate the pods; no reference mutator is served.
    reference_mutator: bool = True
    context: str | None = None  # None: the kubeconfig's current context
    # What the pods' SDKs trust: the run's CA (the stand-ins), or None (the clouds' own
    # endpoints, trusted by the image's system roots), or another bundle (AWS_CA_BUNDLE).
    workload_ca: Path | None | str = "run"


class KubeconfigCluster:
    """Attaches to the cluster, learns its issuer, starts and registers the reference mutator;
    stop() undoes it.

    `own_issuer`: the issuer crossfed signs with. A cluster that names another issuer (its own
    key) is learned through its API server and handed to `mirror`, which makes the stand-ins
    trust it; `self.issuer` is then that LearnedIssuer, else None.
    """

    def __init__(self, options: KubeconfigOptions, ca: RunCA, run_id: str,
                 mutator: MutatorSettings, own_issuer: Issuer | None = None,
                 mirror: Callable[[LearnedIssuer], object] | None = None) -> None:
        self.options, self.run_id = options, run_id
        api_client = config.new_client_from_config(config_file=options.kubeconfig,
                                                   context=options.context)
        self.api_client = api_client
        self.core = client.CoreV1Api(api_client)
        self.admission = client.AdmissionregistrationV1Api(api_client)
        self._teardown = Teardown()
        self.issuer: LearnedIssuer | None = None
        if own_issuer is not None:
            self.issuer = self._learn_issuer(api_client, own_issuer)
            if self.issuer is not None and mirror is not None:
                mirror(self.issuer)
        self.mutator = MutatorApp(self._annotations, mutator)
        self.base_mutator = mutator  # tenant, authority host and flags; versions vary
        self.webhook_versions = WebhookVersions()
        self.planted: WebhookVersions | None = None
        self.watch: MutationWatch | None = None
        if options.reference_mutator:
            self._register_mutator(ca, run_id)
        workload_ca = (Path(ca.bundle_path) if options.workload_ca == "run"
                       else Path(options.workload_ca) if options.workload_ca else None)
        self.runner = PodRunner(self.core, run_id, workload_ca, options.pods)

    @classmethod
    def for_clouds(cls, options: KubeconfigOptions, clouds: LocalStandIns) -> KubeconfigCluster:
        """Attached to the run's stand-ins: their CA, Entra tenant and issuer."""
        azure = clouds.azure
        settings = MutatorSettings(azure_tenant_id=azure.tenant_id,
                                   azure_authority_host=azure.entra.authority_host + "/")
        return cls(options, clouds.ca, clouds.run_id, settings,
                   own_issuer=clouds.issuer.issuer, mirror=clouds.mirror_issuer)

    def use_webhook_versions(self, versions: WebhookVersions) -> None:
        """The versions in force: what the drift check expects, and what the reference mutator
        applies (the upgrade flow on a cluster without the real webhooks switches it here);
        pods created from now on get that version's mutation. With `planted` versions the
        reference mutator serves those instead, while the oracle still expects `versions`."""
        self.webhook_versions = versions
        if not self.options.reference_mutator:
            return  # the cluster's own webhooks: their versions are what is installed
        served = self.planted or versions
        settings = self.mutator.settings
        if (settings.eks.version, settings.azure.version) != (served.eks, served.azwi):
            log.info("crossfed: reference mutator now applies %s", served)
        self.mutator.settings = oracle_settings(settings, served)

    def watch_mutations(self, watch: MutationWatch, planted: WebhookVersions | None = None
                        ) -> None:
        """Check (and/or record, compare) each pod's mutation; see crossfed.webhooks.pod_drift."""
        self.watch, self.planted = watch, planted
        watch.oracle = lambda: (self.webhook_versions,
                                oracle_settings(self.base_mutator, self.webhook_versions))
        self.runner.observe = watch
        self.use_webhook_versions(self.webhook_versions)

    def _learn_issuer(self, api_client: client.ApiClient,
                      own: Issuer) -> LearnedIssuer | None:
        learned = learn_from_api_server(api_client)
        if learned.url != own.url:
            log.info("crossfed: cluster issuer %s is not crossfed's (%s): using the keys its "
                     "API server publishes (kids %s)", learned.url, own.url,
                     [k.get("kid") for k in learned.published_jwks["keys"]])
            return learned
        kids = [k.get("kid") for k in learned.published_jwks["keys"]]
        if own.kid not in kids:
            raise LearnError(
                f"the cluster names crossfed's issuer {own.url} but publishes keys {kids}, "
                f"not crossfed's key {own.kid}: start its API server with "
                "--service-account-signing-key-file set to the key crossfed signs with "
                "(--crossfed-issuer-key), or let it use an issuer URL of its own")
        return None

    def _register_mutator(self, ca: RunCA, run_id: str) -> None:
        options = self.options
        server = HTTPSServer(ca.server_context("mutator", options.mutator_host),
                             host=options.mutator_host).start(self.mutator)
        self._teardown.add("reference mutator", server.stop)
        name = f"crossfed-{run_id}"
        if options.context:  # one per attached context: the cloud tier attaches two
            name = f"{name}-{hashlib.sha256(options.context.encode()).hexdigest()[:6]}"
        body = webhook_configuration(name, f"{server.url}/mutate", ca.bundle_path.read_bytes(),
                                     (RUN_LABEL, run_id))
        self.admission.create_mutating_webhook_configuration(body)
        self._teardown.add(f"webhook configuration {name}",
                           lambda: self.admission.delete_mutating_webhook_configuration(name))
        log.info("crossfed: reference mutator %s registered as %s", server.url, name)

    def _annotations(self, namespace: str, name: str) -> dict[str, str] | None:
        try:
            account = self.core.read_namespaced_service_account(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return dict(account.metadata.annotations or {})

    def stop(self) -> list[str]:
        return self._teardown.run()
