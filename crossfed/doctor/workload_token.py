"""The token a workload presents, for the doctors: from a file, or a TokenRequest for the
service account; checked to be that service account's before any check runs."""

from __future__ import annotations

import argparse

from crossfed import jwt_view
from crossfed.doctor.report import UsageError
from crossfed.issuer.tokens import ServiceAccountRef

TOKEN_SECONDS = 600  # the TokenRequest's lifetime (the API server's minimum)

def token_from_file(path: str) -> str:
    try:
        return open(path, encoding="utf-8").read()  # noqa: SIM115 - read whole, as botocore
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read --token-file {path}: {exc}; give the service account's "
                         "token file (the one AWS_WEB_IDENTITY_TOKEN_FILE names)") from exc


def token_from_cluster(kubeconfig: str, context: str | None, account: ServiceAccountRef,
                       audience: str, seconds: int = TOKEN_SECONDS) -> str:
    """A TokenRequest for the service account with the audience (kubectl create token)."""
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException
    from kubernetes.config.config_exception import ConfigException
    from urllib3.exceptions import HTTPError
    from yaml import YAMLError

    try:
        api = config.new_client_from_config(config_file=kubeconfig, context=context)
    except (ConfigException, OSError, YAMLError) as exc:
        raise UsageError(f"cannot load --kubeconfig {kubeconfig}: {exc}; give a readable "
                         "kubeconfig (and --context)") from exc
    body = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(
        audiences=[audience], expiration_seconds=seconds))
    try:
        answer = client.CoreV1Api(api).create_namespaced_service_account_token(
            account.name, account.namespace, body)
    except ApiException as exc:
        raise UsageError(f"TokenRequest for {account.namespace}/{account.name} failed: "
                         f"HTTP {exc.status} {exc.reason}; check that the service account "
                         "exists and that you may create serviceaccounts/token") from exc
    except (HTTPError, OSError) as exc:
        raise UsageError(f"cannot reach the API server of --kubeconfig {kubeconfig}: {exc}; "
                         "check that the cluster is up") from exc
    return str(answer.status.token)


def workload_token(args: argparse.Namespace, account: ServiceAccountRef) -> str:
    """--token-file or --kubeconfig [--context] [--audience]; a token of another service account
    is a usage error (a malformed one is left to the checks, which name it)."""
    if args.token_file:
        token = token_from_file(args.token_file)
    else:
        token = token_from_cluster(args.kubeconfig, args.context, account, args.audience)
    try:
        sub = jwt_view.parse(token.strip()).claims.get("sub")
    except jwt_view.MalformedJwt:
        sub = None
    if sub is not None and sub != account.subject:
        raise UsageError(f"the token is for {sub!r}, not --service-account "
                         f"{account.namespace}/{account.name}; give that service account's "
                         "token, or name the token's service account")
    return token
