"""The run's test CA and the server certificates of the stand-ins (trustme does the X.509 work)."""

from __future__ import annotations

import hashlib
import os
import ssl
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding


def write_private(path: Path, data: bytes) -> None:
    """Write key material readable by the owner only (0600), also when the file already exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)


def sha1_thumbprint(cert_der: bytes) -> str:
    """IAM's thumbprint: hex SHA-1 of a certificate's DER, lower case, no colons."""
    return hashlib.sha1(cert_der).hexdigest()


class ServerTLS(ssl.SSLContext):
    """A server TLS context that remembers its certificate files (the HTTP server loads them)."""

    chain_path: Path
    key_path: Path


class RunCA:
    """A certificate authority that lives for one run; clients are told to trust its bundle."""

    def __init__(self, directory: Path, name: str = "crossfed run CA") -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
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
