"""EKS cluster records in the AWS stand-in: what `eks describe-cluster` answers for a cluster
whose issuer crossfed stands in for, or an existing cluster's issuer given to `crossfed serve
--eks-cluster NAME=ISSUER_URL`.

A record is a moto EKS Cluster put straight into moto's EKS backend of the stand-in's region
(moto's create_cluster would invent the issuer, endpoint and CA), so DescribeCluster is answered
by moto's own EKS handler: SigV4-authenticated and, with IAM enforcement on, authorized
(`eks:DescribeCluster`) like the other services, in the EKS API's Cluster shape, and an unknown
name is moto's ResourceNotFoundException (404, x-amzn-ErrorType, "No cluster found for name:
X."), as EKS answers. Only DescribeCluster is served (crossfed/aws/child.py): EKS's other
routes answer 404.

The issuer is kept byte for byte as given: EKS issuers have no trailing slash, but a record of
some other issuer keeps whatever it was given, since STS and Entra compare issuer strings
exactly.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import secrets
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# EKS's CreateCluster name rule (EKS API reference, CreateCluster: 1-100 characters,
# ^[0-9A-Za-z][A-Za-z0-9\-_]*).
CLUSTER_NAME = re.compile(r"^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$")
# CHOICE: the version and platform version a record reports (a supported EKS version when
# this was written); the record stands for an existing cluster whose version crossfed does
# not know.
KUBERNETES_VERSION = "1.33"
PLATFORM_VERSION = "eks.9"
SERVICE_CIDR = "172.20.0.0/16"


def check_record(name: str, issuer_url: str) -> None:
    """ValueError (the reason and the fix) unless name and issuer make an EKS record."""
    if not CLUSTER_NAME.fullmatch(name):
        raise ValueError(f"EKS cluster name {name!r} is not valid: 1-100 letters, digits, "
                         "'-' or '_', starting with a letter or digit")
    if not issuer_url.startswith("https://") or len(issuer_url) <= len("https://"):
        raise ValueError(f"EKS cluster {name}: issuer {issuer_url!r} is not an https:// URL "
                         "(e.g. https://oidc.eks.us-east-1.amazonaws.com/id/<32 hex>)")


def _cluster_ca_pem(name: str) -> bytes:
    """A CA certificate of the cluster's own (EKS answers the API server's CA, base64 PEM).
    CHOICE: a fresh self-signed CA per record, CN "kubernetes" as EKS's are; nothing is ever
    signed with it: the record stands for a cluster, it serves nothing."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def add_cluster(backend: Any, account_id: str, region: str, name: str,
                issuer_url: str) -> dict[str, Any]:
    """Put (or replace) a cluster record in moto's EKS backend; returns its summary."""
    from moto.eks.models import Cluster

    check_record(name, issuer_url)
    # CHOICE: the cluster role, VPC config and network config are plausible placeholders (the
    # record has no VPC); only name, arn, status and identity.oidc.issuer carry meaning.
    account_role = f"arn:aws:iam::{account_id}:role/crossfed-eks-cluster-role"
    cluster = Cluster(
        name=name, role_arn=account_role, account_id=account_id, region_name=region,
        aws_partition="aws", version=KUBERNETES_VERSION,
        kubernetes_network_config={"serviceIpv4Cidr": SERVICE_CIDR, "ipFamily": "ipv4"},
        resources_vpc_config={"subnetIds": [], "securityGroupIds": [],
                              "endpointPublicAccess": True, "endpointPrivateAccess": False,
                              "publicAccessCidrs": ["0.0.0.0/0"]},
        tags={})
    cluster.identity = {"oidc": {"issuer": issuer_url}}  # exactly as given
    # CHOICE: EKS's endpoint form, https://<32 hex upper>.<3 chars>.<region>.eks.amazonaws.com,
    # naming no server (the record has none)
    cluster.endpoint = (f"https://{secrets.token_hex(16).upper()}.gr7.{region}"
                        ".eks.amazonaws.com")
    cluster.certificate_authority = {
        "data": base64.b64encode(_cluster_ca_pem(name)).decode("ascii")}
    cluster.platformVersion = PLATFORM_VERSION
    backend.clusters[name] = cluster
    return {"name": name, "arn": cluster.arn, "issuer": issuer_url}
