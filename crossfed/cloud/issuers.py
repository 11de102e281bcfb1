"""The issuers behind the cloud tier's tokens: the primary one (crossfed's own, or the one
--crossfed-issuer-url names, e.g. the cluster's), one whose port is closed and one behind a CA
nobody trusts, for the negative scenarios. The clouds fetch them as they fetch any issuer."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

from crossfed.cleanup import Teardown
from crossfed.https_server import LOOPBACK
from crossfed.issuer.issuer import Issuer
from crossfed.issuer.keys import SigningKey
from crossfed.issuer.server import IssuerServer
from crossfed.pki import RunCA
from crossfed.plan import IssuerVariant


@dataclass
class CloudIssuers:
    ca: RunCA  # the run's own CA: crossfed's issuer and the reference mutator
    primary: Issuer
    unreachable: Issuer
    untrusted: Issuer
    _teardown: Teardown

    @classmethod
    def start(cls, state_dir: Path, key: SigningKey | None = None,
              external_url: str | None = None) -> CloudIssuers:
        """external_url: an issuer another process serves with `key` (its CA is the caller's
        concern: the cloud must trust it, as a real cloud trusts a public CA)."""
        teardown = Teardown()
        try:
            ca = RunCA(state_dir / "pki")
            if external_url:
                if key is None:
                    raise ValueError("--crossfed-issuer-url needs --crossfed-issuer-key: the "
                                     "tier mints that issuer's tokens")
                primary = Issuer(external_url, key)
            else:
                server = IssuerServer(ca, "issuer", key=key).start()
                teardown.add("issuer", server.stop)
                primary = server.issuer
            # Bound, never listening: refused, and no later server can get the port by chance.
            hole = socket.socket()
            hole.bind((LOOPBACK, 0))
            teardown.add("closed port", hole.close)
            unreachable = Issuer(f"https://{LOOPBACK}:{hole.getsockname()[1]}",
                                 SigningKey.generate())
            rogue = IssuerServer(RunCA(state_dir / "pki-untrusted", name="untrusted CA"),
                                 "issuer-untrusted").start()
            teardown.add("untrusted issuer", rogue.stop)
        except BaseException:
            teardown.run()
            raise
        return cls(ca, primary, unreachable, rogue.issuer, teardown)

    def issuer_for(self, variant: IssuerVariant) -> Issuer:
        return {"primary": self.primary, "unreachable": self.unreachable,
                "untrusted_ca": self.untrusted}[variant]

    def stop(self) -> list[str]:
        return self._teardown.run()
