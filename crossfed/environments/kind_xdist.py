"""Under pytest-xdist, what the controller holds for its workers while they share one kind
cluster: the kind issuer (served once, on the port the cluster names) and the deletion of the
cluster one of the workers created, once every worker is done."""

from __future__ import annotations

import logging
from pathlib import Path

from crossfed.cluster.kind import KindCluster
from crossfed.cluster.kind_owner import clear_creator, mark_kept
from crossfed.cluster.tools import Runner, run_command
from crossfed.environments.kind import KindSettings, KindState

log = logging.getLogger("crossfed")


class XdistKindRun:
    """Under pytest-xdist, what the controller holds for its workers: the kind issuer, served
    for the whole run (the workers' own stand-ins cannot all listen on its fixed port), and the
    deletion of the cluster one of them created, once every worker is done."""

    def __init__(self, settings: KindSettings, pki_dir: Path) -> None:
        if not settings.run_token:
            raise ValueError("an xdist kind run needs a run token")
        self.settings = settings
        self.state = KindState.load_or_create(settings.directory)
        self.server, self.ca_bundle = self.state.serve_issuer(pki_dir)
        log.info("crossfed kind: issuer %s served for the xdist workers", self.server.url)

    def worker_input(self) -> dict[str, str]:
        return {"issuer_url": self.server.url, "issuer_ca": str(self.ca_bundle),
                "run_token": str(self.settings.run_token)}

    def finish(self, kind_bin: Path | str | None, runner: Runner = run_command) -> bool:
        """Stop the issuer; delete the cluster if a worker of this run created it (and not
        `keep`). True if a delete was issued."""
        self.server.stop()
        mark = self.settings.directory / "created-by-run"
        if not mark.exists() or mark.read_text().strip() != self.settings.run_token:
            return False
        mark.unlink()
        if kind_bin is None:
            log.warning("crossfed kind: no kind binary to delete cluster %s with",
                        self.settings.name)
            return False
        cluster = KindCluster(self.settings.name, kind_bin, created=True, runner=runner,
                              kubeconfig_path=self.settings.directory / "kubeconfig")
        if cluster.delete(keep=self.settings.keep):
            clear_creator(self.settings.directory)
            return True
        mark_kept(self.settings.directory)
        return False
