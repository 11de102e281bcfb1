"""The run's test CA and the server certificates of the stand-ins (trustme does the X.509 work)."""

from __future__ import annotations

import hashlib
import ssl
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from crossfed.secret_files import private_dir, write_private

__all__ = ["RunCA", "ServerTLS", "sha1_thumbprint", "write_private"]


def sha1_thumbprint(cert_der: bytes) -> str:
    """IAM's thumbprint: hex SHA-1 of a certificate's DER, lower case, no colons."""
    return hashlib.sha1(cert_der).hexdigest()


class ServerTLS(ssl.SSLContext):
    """A server TLS context that remembers its certificate files (the HTTP server loads them)."""

    chain_path: Path
    key_path: Path


class RunCA:
    """A certificate authority that lives for one run; clients are told to trust its bundle.

    Its private key stays in memory (trustme's); the server keys it issues are written 0600."""

    def __repr__(self) -> str:
        return f"RunCA({self.name!r}, bundle={str(self.bundle_path)!r})"

    def __init__(self, directory: Path, name: str = "crossfed run CA") -> None:
        self.directory = private_dir(directory)  # the stand-ins' server keys go here
        self._ca = trustme.CA(organization_name="crossfed", organization_unit_name=name)
        self.name = name
        slug = name.lower().replace(" ", "-")
        self.bundle_path = self.directory / f"{slug}.pem"
        self._ca.cert_pem.write_to_path(str(self.bundle_path))

    @property
    def cert_der(self) -> bytes:
        cert = x509.load_pem_x509_certificate(self._ca.cert_pem.bytes())
        return cert.public_bytes(Encoding.DER)

    @property
    def thumbprint(self) -> str:
        return sha1_thumbprint(self.cert_der)

    def server_context(self, label: str, *hosts: str) -> ServerTLS:
        """A server TLS context for these host names / IPs.

        The served chain is leaf + this CA, so the last certificate a client sees is the CA,
        as with public issuers whose thumbprint IAM pins.
        """
        cert = self._ca.issue_cert(*hosts)
        chain_path = self.directory / f"{label}.crt"
        key_path = self.directory / f"{label}.key"
        chain = [p.bytes() for p in cert.cert_chain_pems] + [self._ca.cert_pem.bytes()]
        chain_path.write_bytes(b"".join(chain))
        write_private(key_path, cert.private_key_pem.bytes())
        context = ServerTLS(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(chain_path), str(key_path))
        context.chain_path, context.key_path = chain_path, key_path
        return context
