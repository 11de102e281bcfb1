"""The AWS stand-in's own process: moto (IAM, S3, STS) behind the verifying STS, on one HTTPS
listener; the parent talks to it only through a pipe (crossfed/aws/standin.py).

Why a child process and not moto in the test process: moto keeps its state in process-wide
backends and settings (`iam_backends`, `settings.INITIAL_NO_AUTH_ACTION_COUNT`), and crossfed
patches moto's IAM classes (crossfed/aws/moto_iam.py). In-process, a user's own `@mock_aws`
test in the same pytest run would see crossfed's roles and users and crossfed's IAM rules, and
its reset would wipe crossfed's account under a running scenario. Here every one of those lives
in this process only; the test process never imports moto for crossfed. A process per stand-in
also gives each stand-in its own account (the foreign-issuer cluster's stand-ins no longer
share roles with the main run's). Throughput is unchanged or better: requests already crossed
a socket, and the server no longer shares a GIL with the SDK clients driving it.

The public listener answers only what the real endpoints answer: IAM, STS and S3 API
requests, and EKS's DescribeCluster (GET /clusters/{name}) for the cluster records of
crossfed/aws/eks.py. moto's extras (`/moto-api/*`: state dump with every secret access key, reset,
reset-auth, dashboard; `/favicon.ico`; the EC2 instance-metadata paths) and every other moto
service answer 404 in AWS's shape (S3's NoSuchBucket for a path-style bucket, since that is
what such a path means to S3). The administrator is created here directly in moto's IAM
backend, and IAM enforcement is set here, so nothing needs moto's admin routes.

The control channel is a socket pair inherited by the child (never on the network). The
child exits when the parent closes it, exits, or is killed (EOF on the pipe, or the parent
pid changes: checked twice a second), so no stand-in outlives its harness.
"""

from __future__ import annotations

import json
import logging
import os
import re
import ssl
import sys
import threading
import time
import uuid
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from moto import settings
from moto.core import DEFAULT_ACCOUNT_ID
from moto.core.authorization import ActionAuthenticatorMixin
from moto.eks.models import eks_backends
from moto.iam.models import iam_backends
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.s3.models import s3_backends
from moto.sts.models import sts_backends

from crossfed.aws import eks, moto_eks, moto_iam, moto_propagation, moto_session_policies
from crossfed.aws.web_identity import (
    Grant,
    ProviderRecord,
    RoleRecord,
    WebIdentityRequest,
    WebIdentityVerifier,
    account_of,
)
from crossfed.aws.wire import VerifyingSTS
from crossfed.decisions import DecisionLog
from crossfed.https_server import HTTPSServer
from crossfed.oidc.fetch import KeyCache
from crossfed.pki import ServerTLS

PARTITION = "aws"
SERVED_BACKENDS = frozenset({"iam", "sts", "s3", "eks"})  # what the stand-in stands in for
# EKS: DescribeCluster only (the cluster records); EKS's other routes answer 404.
EKS_DESCRIBE = re.compile(r"^/clusters/[^/]+$")
# Paths moto's dispatcher routes to its own extras whatever the request says.
MOTO_EXTRA_PREFIXES = ("/moto-api", "/favicon.ico", "/latest/meta-data/", "/latest/api/")
PARENT_CHECK_SECONDS = 0.5
BACKEND_CACHE_SIZE = 512
log = logging.getLogger("crossfed.aws")


class MotoIam:
    """IamDirectory over moto's IAM backend (of this process)."""

    def provider_for_issuer(self, account_id: str, issuer: str) -> ProviderRecord | None:
        if not account_id or not issuer.startswith("https://"):
            return None
        wanted = issuer[len("https://"):]
        for provider in iam_backends[account_id][PARTITION].open_id_providers.values():
            if provider.url == wanted and moto_propagation.provider_in_effect(provider):
                return ProviderRecord(provider.arn, provider.url, tuple(provider.client_id_list),
                                      tuple(provider.thumbprint_list))
        return None

    def role(self, role_arn: str) -> RoleRecord | None:
        account_id = account_of(role_arn)
        if not account_id:
            return None
        for role in iam_backends[account_id][PARTITION].get_roles():
            if role.arn == role_arn and moto_propagation.role_in_effect(role):
                return RoleRecord(role.arn, role.name, role.assume_role_policy_document,
                                  int(role.max_session_duration or 3600))
        return None


def mint_with_moto(region: str) -> Any:
    def mint(grant: Grant, request: WebIdentityRequest) -> Any:
        backend = sts_backends[account_of(grant.role.arn)][PARTITION]
        assumed = backend.assume_role_with_web_identity(
            region_name=region, role_session_name=request.session_name,
            role_arn=grant.role.arn, policy=request.policy, duration=grant.duration_seconds,
            external_id=None,
        )
        moto_session_policies.remember(assumed, request.policy_arns)  # moto drops them
        return assumed
    return mint


def explain_denial(access_key_id: str) -> tuple[str, str] | None:
    """For a web-identity session's key: its role and the actions its policies allow."""
    for backend in sts_backends.values():
        for partition_backend in backend.values():
            assumed = partition_backend.get_assumed_role_from_access_key(access_key_id)
            if assumed is None:
                continue
            account = iam_backends[account_of(assumed.role_arn)][PARTITION]
            allowed: list[str] = []
            for role in account.get_roles():
                if role.arn != assumed.role_arn:
                    continue
                documents = [next(v.document for v in p.versions if v.is_default)
                             for p in role.managed_policies.values()]
                documents += list(role.policies.values())
                for document in documents:
                    parsed = json.loads(document) if isinstance(document, str) else document
                    statements = parsed.get("Statement", [])
                    for statement in statements if isinstance(statements, list) else [statements]:
                        allowed.append(f"{statement.get('Effect')} {statement.get('Action')} on "
                                       f"{statement.get('Resource')}")
            detail = (f"the session {assumed.arn} was refused by its role's permission "
                      f"policies, which say: {allowed or 'nothing'}")
            inline = assumed.policy
            arns = getattr(assumed, "crossfed_policy_arns", ())
            if inline is not None or arns:
                detail += (", or by its session policies (the session may do only what both "
                           f"allow): Policy {inline or 'none'}, PolicyArns {list(arns)}")
            return assumed.role_arn, detail
    return None


def _s3_error(start_response: Any, status: str, code: str, message: str,
              bucket: str | None = None) -> Any:
    request_id = str(uuid.uuid4())
    named = f"<BucketName>{escape(bucket)}</BucketName>" if bucket else ""
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{escape(message)}</Message>{named}"
            f"<RequestId>{request_id}</RequestId></Error>")
    start_response(status, [("Content-Type", "application/xml"),
                            ("x-amz-request-id", request_id)])
    return [body.encode()]


def _no_such_bucket(start_response: Any, bucket: str) -> Any:
    return _s3_error(start_response, "404 Not Found", "NoSuchBucket",
                     "The specified bucket does not exist", bucket)


def _not_found(environ: dict[str, Any], start_response: Any, service: str | None) -> Any:
    segments = [s for s in environ.get("PATH_INFO", "/").split("/") if s]
    if service in (None, "moto_api", "instance_metadata", "s3") and segments:
        # What S3 answers for a path-style request to a bucket that does not exist.
        return _no_such_bucket(start_response, segments[0])
    # UNDOC: the Query APIs' error shape, for a service this endpoint is not.
    request_id = str(uuid.uuid4())
    body = ("<ErrorResponse><Error><Type>Sender</Type><Code>NotFound</Code>"
            "<Message>This endpoint serves IAM, STS, S3 and EKS DescribeCluster only, not "
            f"{escape(str(service))}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>")
    start_response("404 Not Found", [("Content-Type", "application/xml"),
                                     ("x-amz-request-id", request_id)])
    return [body.encode()]


def _eks_not_found(start_response: Any) -> Any:
    """An EKS route other than DescribeCluster.
    CHOICE: EKS does not document what an unknown route answers; this is its REST-JSON error
    shape (x-amzn-ErrorType, {"message": ...}) with 404, as a path EKS does not have."""
    request_id = str(uuid.uuid4())
    body = json.dumps({"message": "This endpoint serves EKS DescribeCluster only"})
    start_response("404 Not Found", [("Content-Type", "application/json"),
                                     ("x-amzn-ErrorType", "NotFoundException"),
                                     ("x-amzn-RequestId", request_id)])
    return [body.encode()]


class ApiOnlyDispatcher(DomainDispatcherApplication):
    """moto's dispatcher, answering only the services the stand-in stands in for."""

    def __init__(self) -> None:
        super().__init__(create_backend_app)
        self._backends: dict[str | None, Any] = {}

    def get_backend_for_host(self, host: str | None) -> Any:
        """moto's, remembered per host: it tries some 400 URL patterns in turn (0.7 ms)."""
        try:
            return self._backends[host]
        except KeyError:
            backend = super().get_backend_for_host(host)
        if len(self._backends) < BACKEND_CACHE_SIZE:  # hosts a client chooses: bounded
            self._backends[host] = backend
        return backend

    def backend_of(self, environ: dict[str, Any]) -> str | None:
        """The backend moto would hand this request to (its get_application, without
        building the app)."""
        path = environ.get("PATH_INFO", "")
        if isinstance(path, bytes):
            path = path.decode("utf-8")
        if path.startswith(MOTO_EXTRA_PREFIXES):
            return "moto_api"
        try:
            with self.lock:
                host = self.infer_service_region_host(environ, path)
                if host is None:
                    host = "s3.us-east-1.amazonaws.com"  # moto's default, as S3 has it
                backend = self.get_backend_for_host(host)
        except (KeyError, IndexError, ValueError, AttributeError):
            return None
        return str(backend) if backend else None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        backend = self.backend_of(environ)
        if backend not in SERVED_BACKENDS:
            return _not_found(environ, start_response, backend)
        if backend == "eks" and not (environ.get("REQUEST_METHOD") == "GET"
                                     and EKS_DESCRIBE.match(environ.get("PATH_INFO", ""))):
            return _eks_not_found(start_response)
        if backend == "s3" and not _signed(environ):
            return _anonymous_s3(environ, start_response)
        return super().__call__(environ, start_response)


def _signed(environ: dict[str, Any]) -> bool:
    query = environ.get("QUERY_STRING", "")
    return ("HTTP_AUTHORIZATION" in environ or "X-Amz-Signature=" in query
            or "Signature=" in query)


def _anonymous_s3(environ: dict[str, Any], start_response: Any) -> Any:
    """An unsigned S3 request (moto answers it with a 500 under IAM enforcement): what S3
    answers anonymous callers of an account without public buckets."""
    segments = [s for s in environ.get("PATH_INFO", "/").split("/") if s]
    if segments and segments[0] not in s3_backends[DEFAULT_ACCOUNT_ID][PARTITION].buckets:
        return _no_such_bucket(start_response, segments[0])
    return _s3_error(start_response, "403 Forbidden", "AccessDenied", "Access Denied")


def _server_tls(chain_path: str, key_path: str) -> ServerTLS:
    context = ServerTLS(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(chain_path, key_path)
    context.chain_path, context.key_path = Path(chain_path), Path(key_path)
    return context


def set_enforcement(enforce_iam: bool) -> None:
    """moto's switch (what /moto-api/reset-auth sets): IAM access control on or off."""
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0 if enforce_iam else float("inf")
    ActionAuthenticatorMixin.request_count = 0


def create_admin(region: str) -> tuple[str, str]:
    """An IAM user allowed everything: what a user would give the harness in the cloud."""
    iam = iam_backends[DEFAULT_ACCOUNT_ID][PARTITION]
    name = f"crossfed-admin-{uuid.uuid4().hex[:8]}"
    iam.create_user(region_name=region, user_name=name)
    iam.put_user_policy(name, "administrator", json.dumps(
        {"Version": "2012-10-17",
         "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    key = iam.create_access_key(name)
    return key.access_key_id, key.secret_access_key


class Child:
    def __init__(self, config: dict[str, Any]) -> None:
        moto_iam.apply()  # IAM's OIDC-provider rules that moto lacks: in this process only
        moto_session_policies.apply()  # session policies limit the session, as in AWS
        moto_eks.apply()  # DescribeCluster's signature check and EKS's error shape
        # IAM's eventual consistency: new roles, providers, policies take effect after a delay
        moto_propagation.apply(config.get("propagation_delay", 0.0))
        self.region = config["region"]
        self.decisions = DecisionLog()
        self.keys = KeyCache()
        moto_iam.locate = self.locate  # where a provider's thumbprint is fetched from
        app: Any = ApiOnlyDispatcher()
        if config["verify"]:
            verifier = WebIdentityVerifier(MotoIam(), self.keys, config["trusted_roots"])
            app = VerifyingSTS(app, verifier, mint_with_moto(self.region), self.decisions,
                               explain_denial)
        self.server = HTTPSServer(_server_tls(config["chain_path"], config["key_path"]),
                                  host=config["host"], port=config["port"])
        self.server.app = app
        self.started = False

    def locate(self, url: str) -> str:
        """Where a Url's documents are served: a learned issuer's mirror, else the Url."""
        with self.keys._lock:
            return self.keys.locations.get(url, url)

    def handle(self, command: str, *args: Any) -> Any:
        if command == "start":
            (enforce_iam,) = args
            set_enforcement(enforce_iam)
            admin = create_admin(self.region)
            if not self.started:
                self.server.start()
                self.started = True
            return admin
        if command == "decisions":
            return self.decisions.as_json()
        if command == "add_eks_cluster":
            name, issuer_url = args
            return eks.add_cluster(eks_backends[DEFAULT_ACCOUNT_ID][self.region],
                                   DEFAULT_ACCOUNT_ID, self.region, name, issuer_url)
        if command == "register_location":
            self.keys.register_location(*args)
            return None
        if command == "forget_location":
            with self.keys._lock:
                return self.keys.locations.pop(args[0], None)
        if command == "locations":
            return dict(self.keys.locations)
        if command == "fetch_count":
            return self.keys.fetch_count
        if command == "clear_keys":
            self.keys.clear()
            return None
        raise ValueError(f"unknown command {command!r}")


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_SECONDS)
    os._exit(0)  # the parent is gone (killed): so is its stand-in


def main(fd: int, parent: int) -> None:
    threading.Thread(target=_watch_parent, args=(parent,), name="parent-watch",
                     daemon=True).start()
    conn = Connection(fd)
    config = conn.recv()
    from crossfed.log_redaction import install

    install()  # moto's and the stand-in's records redacted where they are made, at any level
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="crossfed aws stand-in: %(levelname)s %(name)s: %(message)s")
    access = logging.getLogger("crossfed.http.access")
    access.setLevel(config.get("access_log", logging.WARNING))  # as the parent has it
    try:
        child = Child(config)
    except Exception as exc:  # e.g. the port is taken: the parent raises it
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ok", {"port": child.server.port, "account_id": DEFAULT_ACCOUNT_ID,
                      "feed_path": child.decisions.feed_path}))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            break  # the parent closed the pipe or died
        if message[0] == "stop":
            break
        try:
            conn.send(("ok", child.handle(*message)))
        except Exception as exc:
            log.exception("AWS stand-in command %s failed", message[0])
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
    if child.started:
        child.server.stop()
    try:
        conn.send(("ok", None))
    except OSError:
        pass


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
