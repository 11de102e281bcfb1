"""The local clouds of a run: its CA, issuers, AWS and Azure stand-ins, started and stopped
together."""

from __future__ import annotations

import logging
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from crossfed.aws.standin import AwsStandIn
from crossfed.cleanup import Teardown
from crossfed.environments.azure_standins import AzureStandIns
from crossfed.https_server import LOOPBACK
from crossfed.issuer.issuer import Issuer
from crossfed.issuer.keys import SigningKey
from crossfed.issuer.learned import IssuerMirror, LearnedIssuer
from crossfed.issuer.server import IssuerServer
from crossfed.listen import check_listen_host
from crossfed.pki import RunCA
from crossfed.plan import IssuerVariant

log = logging.getLogger("crossfed")


def new_run_id() -> str:
    return secrets.token_hex(3)


@dataclass
class ExternalIssuer:
    """An issuer served by another process; this run only mints with its key."""

    issuer: Issuer

    @property
    def url(self) -> str:
        return self.issuer.url


@dataclass
class LocalStandIns:
    run_id: str
    state_dir: Path
    ca: RunCA
    issuer: IssuerServer | ExternalIssuer
    aws: AwsStandIn
    # Issuers for the negative scenarios: one whose host is down, one behind an untrusted CA.
    unreachable_issuer: Issuer
    untrusted_issuer: IssuerServer
    azure: AzureStandIns
    _teardown: Teardown
    # issuer URL -> where its documents are served from the host (learned cluster issuers)
    issuer_locations: dict[str, str] = field(default_factory=dict)

    @classmethod
    def start(cls, state_dir: Path, run_id: str | None = None, region: str = "us-east-1",
              key: SigningKey | None = None, issuer_port: int = 0,
              aws_port: int = 0, host: str = LOOPBACK,
              external_issuer: tuple[str, Path] | None = None,
              propagation_delay: float = 0.0,
              trust_cas: Sequence[Path] = ()) -> LocalStandIns:
        """host: where the cloud stand-ins listen (a cluster's bridge address, for pods);
        the issuers stay on loopback, since only the stand-ins fetch from them.
        external_issuer: (URL, CA bundle) of an issuer already serving `key` (a cluster's,
        shared by pytest-xdist workers); the stand-ins then trust its CA too.
        propagation_delay: seconds before a new IAM role, OIDC provider or role policy, a new
        federated identity credential, Key Vault access policy or role assignment takes
        effect (reads see them at once), as the clouds' eventual consistency; 0: at once.
        trust_cas: extra CA bundles (PEM) the stand-ins trust when they fetch an issuer's
        discovery and JWKS (STS and Entra), standing in for the public web PKI a real cloud
        trusts; the run's CA is always trusted.
        Raises ValueError unless host is loopback or a bridge address of this host."""
        check_listen_host(host)
        state_dir = Path(state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        teardown = Teardown()
        try:
            ca = RunCA(state_dir / "pki")
            trusted = str(ca.bundle_path)
            extra = [Path(bundle) for bundle in trust_cas]
            issuer: IssuerServer | ExternalIssuer
            if external_issuer is not None:
                if key is None:
                    raise ValueError("an external issuer needs its signing key to mint tokens")
                issuer = ExternalIssuer(Issuer(external_issuer[0], key))
                extra.insert(0, Path(external_issuer[1]))
            if extra:
                roots = ca.directory / "trusted-roots.pem"
                roots.write_bytes(ca.bundle_path.read_bytes() + b"".join(
                    b"\n" + bundle.read_bytes() for bundle in extra))
                trusted = str(roots)
            if external_issuer is None:
                issuer = IssuerServer(ca, "issuer", key=key, port=issuer_port).start()
                teardown.add("issuer", issuer.stop)
            log.info("crossfed: issuer %s", issuer.url)
            # Bound but never listening: connections are refused, and no later server of the
            # run can be given this port by chance.
            hole = socket.socket()
            hole.bind((LOOPBACK, 0))
            teardown.add("closed port", hole.close)
            dead = Issuer(f"https://{LOOPBACK}:{hole.getsockname()[1]}", SigningKey.generate())
            rogue_ca = RunCA(state_dir / "pki-untrusted", name="untrusted CA")
            untrusted = IssuerServer(rogue_ca, "issuer-untrusted").start()
            teardown.add("untrusted issuer", untrusted.stop)
            aws = AwsStandIn(ca, trusted_roots=trusted, region=region,
                             port=aws_port, host=host,
                             propagation_delay=propagation_delay).start()
            teardown.add("aws stand-in", aws.stop)
            log.info("crossfed: AWS stand-in %s", aws.endpoint_url)
            azure = AzureStandIns.start(ca, teardown, host=host, trusted_roots=trusted,
                                        propagation_delay=propagation_delay)
            log.info("crossfed: Entra ID stand-in %s, ARM stand-in %s",
                     azure.entra.authority_host, azure.arm.endpoint)
        except BaseException:
            teardown.run()
            raise
        return cls(run_id or new_run_id(), state_dir, ca, issuer, aws, dead, untrusted, azure,
                   teardown)

    def mirror_issuer(self, learned: LearnedIssuer) -> IssuerMirror:
        """Serve a cluster's learned issuer documents from loopback and tell both stand-ins
        (STS and Entra) to fetch them there; stopped with the stand-ins."""
        mirror = IssuerMirror(self.ca, learned).start()
        self._teardown.add(f"issuer mirror of {learned.url}", mirror.stop)
        self.issuer_locations[learned.url] = mirror.url
        for cache in (self.aws.keys, self.azure.entra.keys):
            cache.register_location(learned.url, mirror.url)
        log.info("crossfed: issuer %s learned through the API server, mirrored at %s",
                 learned.url, mirror.url)
        return mirror

    def issuer_for(self, variant: IssuerVariant) -> Issuer:
        return {"primary": self.issuer.issuer, "unreachable": self.unreachable_issuer,
                "untrusted_ca": self.untrusted_issuer.issuer}[variant]

    def stop(self) -> None:
        self._teardown.run()
