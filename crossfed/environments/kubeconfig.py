"""The `kubeconfig` environment: any existing cluster whose API server signs service-account
tokens with crossfed's issuer key, the reference mutator registered as its webhook, and the
probe image available on its node."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from crossfed.cleanup import Teardown
from crossfed.https_server import HTTPSServer
from crossfed.pki import RunCA
from crossfed.webhooks.reference_mutator import MutatorApp, MutatorSettings, webhook_configuration
from crossfed.workload.pod import RUN_LABEL, PodRunner, PodSettings

log = logging.getLogger("crossfed")


@dataclass(frozen=True)
class KubeconfigOptions:
    kubeconfig: str
    pods: PodSettings
    mutator_host: str = "127.0.0.1"  # where the API server reaches the mutator


class KubeconfigCluster:
    """Attaches to the cluster, starts and registers the reference mutator; stop() undoes it."""

    def __init__(self, options: KubeconfigOptions, ca: RunCA, run_id: str,
                 mutator: MutatorSettings) -> None:
        self.options, self.run_id = options, run_id
        api_client = config.new_client_from_config(config_file=options.kubeconfig)
        self.core = client.CoreV1Api(api_client)
        self.admission = client.AdmissionregistrationV1Api(api_client)
        self._teardown = Teardown()
        self.mutator = MutatorApp(self._annotations, mutator)
        server = HTTPSServer(ca.server_context("mutator", options.mutator_host),
                             host=options.mutator_host).start(self.mutator)
        self._teardown.add("reference mutator", server.stop)
        name = f"crossfed-{run_id}"
        body = webhook_configuration(name, f"{server.url}/mutate", ca.bundle_path.read_bytes(),
                                     (RUN_LABEL, run_id))
        self.admission.create_mutating_webhook_configuration(body)
        self._teardown.add(f"webhook configuration {name}",
                           lambda: self.admission.delete_mutating_webhook_configuration(name))
        log.info("crossfed: reference mutator %s registered as %s", server.url, name)
        self.runner = PodRunner(self.core, run_id, Path(ca.bundle_path), options.pods)

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
