"""Service-account signing keys, with the key id kube-apiserver derives from the public key."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from crossfed.redact import fingerprint
from crossfed.secret_files import private_dir, write_private


def kube_key_id(public_key: rsa.RSAPublicKey) -> str:
    """kube-apiserver's kid: unpadded base64url of SHA-256 over the PKIX DER public key."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


@dataclass(frozen=True)
class SigningKey:
    private_key: rsa.RSAPrivateKey = field(repr=False)

    def __repr__(self) -> str:  # the kid and a digest of the public key: nothing private
        return f"SigningKey(kid={self.kid!r}, public={fingerprint(self.public_pem(), tail=0)})"

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=2048))

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"{path}: expected an RSA private key, found {type(key).__name__}")
        return cls(key)

    @property
    def kid(self) -> str:
        return kube_key_id(self.private_key.public_key())

    def private_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )

    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def write(self, directory: Path, stem: str = "sa-signer") -> tuple[Path, Path]:
        """Write `stem.key` (0600) and `stem.pub`, the files an API server's flags point at."""
        directory = private_dir(directory)
        private_path, public_path = directory / f"{stem}.key", directory / f"{stem}.pub"
        write_private(private_path, self.private_pem())
        public_path.write_bytes(self.public_pem())
        return private_path, public_path

    def public_jwk(self) -> dict[str, Any]:
        jwk = json.loads(RSAAlgorithm.to_jwk(self.private_key.public_key()))
        # kube-apiserver publishes use/kty/kid/alg/n/e only: PyJWT's key_ops is dropped, as
        # RFC 7517 says use and key_ops should not appear together.
        return {"use": "sig", "kty": jwk["kty"], "kid": self.kid, "alg": "RS256",
                "n": jwk["n"], "e": jwk["e"]}
