"""`crossfed serve` (issuer + stand-ins, for hand use), `crossfed token` (mint from it) and
`crossfed sweep` (delete what an interrupted run left in a cluster, or on this machine)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from crossfed.cli_errors import CliError
from crossfed.cli_sweep import sweep
from crossfed.secret_files import pid_alive

STATE_FILE = "state.json"
# ARM's resource group names and AKS's cluster names (ManagedClusters PUT's rules)
AKS_GROUP = re.compile(r"^[-\w.()]{0,89}[-\w()]$")
AKS_NAME = re.compile(r"^[A-Za-z0-9](?:[-_A-Za-z0-9]{0,61}[A-Za-z0-9])?$")
KEY_DIR = "issuer"




def _state_dir(path: str) -> Path:
    state_dir = Path(path).expanduser().resolve()
    if state_dir.exists() and not state_dir.is_dir():
        raise CliError(f"--state-dir {path} exists and is not a directory; pick another path")
    return state_dir


def _port(text: str) -> int:
    """argparse type: a TCP port, 0 for a free one."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: give 0-65535 "
                                         "(0 picks a free one)")
    return port


def _seconds(text: str) -> float:
    """argparse type: a delay in seconds, 0 or more."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 86400:  # NaN fails too
        raise argparse.ArgumentTypeError(f"{text!r} is not a delay: give 0-86400 seconds")
    return seconds


def _read_state(state_path: Path) -> dict[str, Any] | None:
    try:
        state = json.loads(state_path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise CliError(f"{state_path} is unreadable ({exc}); stop any crossfed serve on this "
                       "state dir, delete the file and start `crossfed serve` again") from exc
    return state if isinstance(state, dict) else None


def azure_info(clouds: Any) -> dict[str, Any]:
    azure = clouds.azure
    return {
        "authority_host": azure.entra.authority_host,
        "tenant_id": azure.tenant_id,
        "subscription_id": azure.subscription_id,
        "resource_group": "crossfed",
        "arm_endpoint": azure.arm.endpoint,
        "management_scope": "https://management.azure.com/.default",
        # Each vault gets its own loopback listener: its URL is the vault's
        # properties.vault_uri, https://127.0.0.1:PORT/ (no DNS suffix locally).
        "keyvault_dns_suffix": None,
        "vault_url_form": "https://127.0.0.1:<port>/ per vault, read properties.vault_uri",
        "admin_client_id": azure.admin.client_id,
        "admin_client_secret": azure.admin_secret,
        "decisions_url": azure.entra.decisions_url,  # its path carries a per-run secret
    }


def _cluster_record(text: str, option: str, grouped: bool) -> tuple[str, str, str]:
    """`NAME=ISSUER_URL` (EKS) or `RG/NAME=ISSUER_URL` (AKS): (group or "", name, issuer)."""
    form = "RG/NAME=ISSUER_URL" if grouped else "NAME=ISSUER_URL"
    where, sep, issuer_url = text.partition("=")
    group, name = where.split("/", 1) if grouped and "/" in where else ("", where)
    if (not sep or not name or (grouped and not group) or "/" in name
            or not issuer_url.startswith("https://") or len(issuer_url) <= len("https://")
            or any(c.isspace() for c in text)):
        raise CliError(f"{option} {text!r} is not {form} with an https:// issuer "
                       f"(e.g. {option} "
                       + ("my-rg/my-aks=https://westeurope.oic.prod-aks.azure.com/TENANT/ID/"
                          if grouped else
                          "my-eks=https://oidc.eks.us-east-1.amazonaws.com/id/0123ABCD")
                       + ")")
    return group, name, issuer_url


def _trusted_ca(text: str) -> Path:
    """A --trust-ca bundle: a readable file holding at least one PEM certificate."""
    from cryptography import x509

    path = Path(text).expanduser()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CliError(f"--trust-ca {text}: cannot read it ({exc.strerror or exc}); give a "
                       "readable PEM file of the CA(s) that sign the issuer's certificate") \
            from exc
    try:
        x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise CliError(f"--trust-ca {text}: no PEM certificate in it; give the CA bundle "
                       "(-----BEGIN CERTIFICATE----- ...) that signs the issuer's "
                       "certificate") from exc
    return path.resolve()


def _serve_records(args: argparse.Namespace) -> tuple[list[tuple[str, str, str]],
                                                       list[tuple[str, str, str]]]:
    """--eks-cluster and --aks-cluster, checked before anything starts."""
    from crossfed.aws.eks import check_record

    eks = [_cluster_record(v, "--eks-cluster", grouped=False) for v in args.eks_cluster]
    for _, name, issuer_url in eks:
        try:
            check_record(name, issuer_url)
        except ValueError as exc:
            raise CliError(f"--eks-cluster: {exc}") from exc
    aks = [_cluster_record(v, "--aks-cluster", grouped=True) for v in args.aks_cluster]
    for group, name, _ in aks:
        if not AKS_GROUP.fullmatch(group):
            raise CliError(f"--aks-cluster: resource group {group!r} is not valid: up to 90 "
                           "letters, digits, '_', '-', '.', '(' or ')', not ending in '.'")
        if not AKS_NAME.fullmatch(name):
            raise CliError(f"--aks-cluster: cluster name {name!r} is not valid: 1-63 letters, "
                           "digits, '-' or '_', a letter or digit at both ends")
    return eks, aks


def _add_records(clouds: Any, eks: list[tuple[str, str, str]],
                 aks: list[tuple[str, str, str]]) -> tuple[list[dict[str, Any]],
                                                          list[dict[str, Any]]]:
    """Put the cluster records into the stand-ins: EKS in the AWS stand-in's region, AKS in
    the ARM stand-in (ManagedClusters GET answers their oidcIssuerProfile.issuerURL)."""
    eks_info = [clouds.aws.add_eks_cluster(name, issuer_url) for _, name, issuer_url in eks]
    aks_info: list[dict[str, Any]] = []
    for group, name, issuer_url in aks:
        clouds.azure.arm.add_managed_cluster(group, name, issuer_url)
        aks_info.append({"resource_group": group, "name": name, "issuer": issuer_url})
    return eks_info, aks_info


def serve(args: argparse.Namespace) -> int:
    from crossfed.environments.standins import LocalStandIns
    from crossfed.issuer.keys import SigningKey
    from crossfed.listen import check_listen_host
    from crossfed.log_redaction import install
    from crossfed.secret_files import private_dir, write_private

    install()  # every record of the stand-ins and their libraries, redacted where it is made

    try:
        check_listen_host(args.host)
    except ValueError as exc:
        raise CliError(f"--host: {exc}") from exc
    trust_cas = [_trusted_ca(text) for text in args.trust_ca]
    eks_records, aks_records = _serve_records(args)
    # One stderr line per request (method, path, status: see crossfed.https_server).
    logging.getLogger("crossfed.http.access").setLevel(logging.INFO)
    state_dir = _state_dir(args.state_dir)
    try:
        private_dir(state_dir)  # a new state dir is 0700: it holds keys and secrets
    except OSError as exc:
        raise CliError(f"cannot create --state-dir {args.state_dir}: {exc}; "
                       "pick a writable directory") from exc
    # A second serve would overwrite the running one's CA bundle and state.json.
    running = _read_state(state_dir / STATE_FILE)
    if running is not None and pid_alive(running.get("pid")):
        raise CliError(f"crossfed serve is already running on --state-dir {args.state_dir} "
                       f"(pid {running['pid']}); stop it or pick another --state-dir")
    key_path = state_dir / KEY_DIR / "sa-signer.key"
    # Reuse the key of an earlier serve in this state dir: a cluster set up with it keeps working.
    try:
        key = SigningKey.load(key_path) if key_path.exists() else SigningKey.generate()
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot load the signing key {key_path}: {exc}; restore it, or delete "
                       "it to start with a new key") from exc
    key.write(state_dir / KEY_DIR)
    try:
        clouds = LocalStandIns.start(state_dir, args.run_id, region=args.region, key=key,
                                     issuer_port=args.issuer_port, aws_port=args.aws_port,
                                     host=args.host, propagation_delay=args.propagation_delay,
                                     trust_cas=trust_cas)
    except OSError as exc:
        raise CliError(f"could not start the stand-ins: {exc}; free the port or pass another "
                       "--issuer-port/--aws-port (0 picks a free one)") from exc
    try:
        eks_info, aks_info = _add_records(clouds, eks_records, aks_records)
    except BaseException:
        clouds.stop()
        raise
    assert clouds.aws.admin is not None
    info: dict[str, Any] = {
        "issuer": clouds.issuer.url,
        "jwks_uri": clouds.issuer.issuer.jwks_uri,
        "ca_bundle": str(clouds.ca.bundle_path),
        "state_dir": str(state_dir),
        "signing_key": str(key_path),
        "signing_public_key": str(key_path.with_suffix(".pub")),
        "run_id": clouds.run_id,
        "propagation_delay": args.propagation_delay,
        "aws": {
            "endpoint_url": clouds.aws.endpoint_url,
            "region": clouds.aws.region,
            "account_id": clouds.aws.account_id,
            "access_key_id": clouds.aws.admin.access_key_id,
            "secret_access_key": clouds.aws.admin.secret_access_key,
            "decisions_url": clouds.aws.decisions_url,  # its path carries a per-run secret
            "eks_clusters": eks_info,
        },
        "azure": {**azure_info(clouds), "aks_clusters": aks_info},
        "host": args.host,
        "trusted_cas": [str(path) for path in trust_cas],
    }
    state_path = state_dir / STATE_FILE
    write_private(state_path, json.dumps({**info, "pid": os.getpid()}, indent=2))  # secrets
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    print(json.dumps(info), flush=True)
    logging.getLogger("crossfed").info("crossfed serve: running; stop with Ctrl-C or SIGTERM")
    try:
        stop.wait()
    finally:
        clouds.stop()
        state_path.unlink(missing_ok=True)
        print("crossfed serve: stopped", file=sys.stderr, flush=True)
    return 0


def _wait_for_signal() -> None:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()


def issuer_only(args: argparse.Namespace) -> int:
    """Serve just the issuer (discovery + JWKS) with the state dir's key, e.g. for a cluster
    whose API server names it, so that several pytest workers can share it."""
    from crossfed.issuer.keys import SigningKey
    from crossfed.issuer.server import IssuerServer
    from crossfed.pki import RunCA

    state_dir = _state_dir(args.state_dir)
    key_path = state_dir / KEY_DIR / "sa-signer.key"
    if not key_path.exists():
        raise CliError(f"no signing key at {key_path}; run `crossfed serve --state-dir "
                       f"{args.state_dir}` once, or put the cluster's key there")
    try:
        key = SigningKey.load(key_path)
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot load the signing key {key_path}: {exc}") from exc
    ca = RunCA(state_dir / "issuer-pki", name="crossfed issuer CA")
    try:
        server = IssuerServer(ca, "issuer", key=key, port=args.port).start()
    except OSError as exc:
        raise CliError(f"cannot listen on 127.0.0.1:{args.port}: {exc}; free the port or "
                       "pass another --port") from exc
    print(json.dumps({"issuer": server.url, "jwks_uri": server.issuer.jwks_uri,
                      "ca_bundle": str(ca.bundle_path)}), flush=True)
    try:
        _wait_for_signal()
    finally:
        server.stop()
    return 0


def token(args: argparse.Namespace) -> int:
    from crossfed.issuer.issuer import Issuer
    from crossfed.issuer.keys import SigningKey
    from crossfed.issuer.tokens import ServiceAccountRef

    state_path = _state_dir(args.state_dir) / STATE_FILE
    state = _read_state(state_path)
    if state is None:
        raise CliError(f"no crossfed serve state in {args.state_dir} ({STATE_FILE} missing); "
                       f"start `crossfed serve --state-dir {args.state_dir}` first")
    if not pid_alive(state.get("pid")):  # left behind by a serve that was killed
        raise CliError(f"the crossfed serve that wrote {state_path} (pid {state.get('pid')}) "
                       f"is no longer running; start `crossfed serve --state-dir "
                       f"{args.state_dir}` again")
    try:
        account = ServiceAccountRef.parse(args.service_account)
    except ValueError as exc:
        raise CliError(f"--service-account: {exc} (e.g. default/my-app)") from exc
    if args.expires_in <= 0:
        raise CliError(f"--expires-in must be a positive number of seconds, got {args.expires_in}")
    if not args.audience:
        raise CliError("--audience must not be empty (e.g. sts.amazonaws.com)")
    issuer = Issuer(state["issuer"], SigningKey.load(Path(state["signing_key"])))
    print(issuer.mint(account, [args.audience], args.expires_in))
    return 0


def doctor_aws(args: argparse.Namespace) -> int:
    from crossfed.doctor import aws
    from crossfed.doctor.report import UsageError, print_report

    logging.getLogger("botocore").setLevel(logging.WARNING)  # "Found credentials in ..."
    try:
        checks = aws.run(args)
    except UsageError as exc:
        raise CliError(str(exc)) from exc
    return print_report(checks, sys.stdout)


def doctor_azure(args: argparse.Namespace) -> int:
    from crossfed.doctor import azure
    from crossfed.doctor.report import UsageError, print_report

    for name in ("azure", "msal"):  # the SDKs' request logs and credential-chain notes
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        checks = azure.run(args)
    except UsageError as exc:
        raise CliError(str(exc)) from exc
    return print_report(checks, sys.stdout)


def _token_source(parser: argparse.ArgumentParser, audience: str) -> None:
    """The doctors' workload token: a file, or a TokenRequest (crossfed.doctor.workload_token)."""
    parser.add_argument("--service-account", required=True, metavar="NS/NAME")
    parser.add_argument("--kubeconfig", help="get the token by a TokenRequest in this cluster")
    parser.add_argument("--context", help="with --kubeconfig: its context")
    parser.add_argument("--token-file", help="the token the pod presents (instead of a cluster)")
    parser.add_argument("--audience", default=audience,
                        help=f"with --kubeconfig: the token's audience (default {audience})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crossfed", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("test", help="run crossfed's scenario suite; every further argument "
                        "goes to pytest (crossfed test -m local)")
    run = commands.add_parser("serve", help="start the issuer and the cloud stand-ins")
    run.add_argument("--state-dir", required=True, help="where keys, CA and state.json go")
    run.add_argument("--region", default="us-east-1")
    run.add_argument("--run-id", default=None)
    run.add_argument("--issuer-port", type=_port, default=0, help="0: a free port")
    run.add_argument("--aws-port", type=_port, default=0, help="0: a free port")
    run.add_argument("--host", default="127.0.0.1", metavar="ADDR",
                     help="where the cloud stand-ins listen: loopback (default 127.0.0.1) or "
                     "the address of a bridge on this host (e.g. kind's br-<id>, docker0) so "
                     "a cluster's pods reach them; the issuer stays on loopback")
    run.add_argument("--trust-ca", action="append", default=[], metavar="FILE",
                     help="a CA bundle (PEM) the stand-ins also trust when they fetch an "
                     "issuer's discovery and JWKS (STS and Entra), standing in for the "
                     "public web PKI a cloud trusts; repeatable")
    run.add_argument("--eks-cluster", action="append", default=[], metavar="NAME=ISSUER_URL",
                     help="an EKS cluster record: `aws eks describe-cluster --name NAME` "
                     "answers identity.oidc.issuer = ISSUER_URL exactly; repeatable")
    run.add_argument("--aks-cluster", action="append", default=[],
                     metavar="RG/NAME=ISSUER_URL",
                     help="an AKS cluster record in the ARM stand-in: managedClusters GET "
                     "answers oidcIssuerProfile.issuerURL = ISSUER_URL; repeatable")
    run.add_argument("--propagation-delay", type=_seconds, default=0.0, metavar="SECONDS",
                     help="a new IAM role, OIDC provider or role policy, federated identity "
                     "credential, Key Vault access policy or role assignment takes effect only "
                     "after this delay, answering meanwhile as the cloud does during "
                     "propagation (default 0: at once)")
    run.set_defaults(func=serve)
    only = commands.add_parser("issuer", help="serve only the issuer of a state dir's key")
    only.add_argument("--state-dir", required=True)
    only.add_argument("--port", type=_port, default=0, help="0: a free port")
    only.set_defaults(func=issuer_only)
    mint = commands.add_parser("token", help="print a service-account token from the issuer")
    mint.add_argument("--state-dir", required=True)
    mint.add_argument("--service-account", required=True, metavar="NS/NAME")
    mint.add_argument("--audience", required=True)
    mint.add_argument("--expires-in", type=int, default=3600, metavar="SECONDS")
    mint.set_defaults(func=token)
    clean = commands.add_parser("sweep", help="delete the namespaces and webhook "
                                "configurations an interrupted run left in a cluster, its "
                                "local state (keys, tokens, credentials), and/or its objects "
                                "in AWS / Azure (found by crossfed's tags)")
    clean.add_argument("--kubeconfig", default=os.environ.get("CROSSFED_KUBECONFIG"),
                       help="the cluster's kubeconfig [env CROSSFED_KUBECONFIG]")
    clean.add_argument("--local-state", action="store_true",
                       help="remove the run directories of runs no longer alive (under "
                            "$CROSSFED_RUNS_DIR, $XDG_RUNTIME_DIR/crossfed/runs or "
                            "~/.cache/crossfed/runs); a live run's is never touched")
    clean.add_argument("--kind", action="store_true",
                       help="delete the kind clusters whose creating crossfed run is gone "
                            "(killed), as their creator records say; kept ones "
                            "(--crossfed-keep-cluster), live runs' and others' are left")
    clean.add_argument("--kind-bin", default=None, help="with --kind: the kind binary "
                       "(default: kind on PATH)")
    clean.add_argument("--kind-state-root", default=None, metavar="DIR",
                       help="with --kind: where the clusters' state directories are "
                            "(default ~/.cache/crossfed/tools/kind)")
    clean.add_argument("--aws", action="store_true",
                       help="the AWS account's roles and policies under /crossfed/, OIDC "
                            "providers and buckets tagged crossfed-run-id (boto3's default "
                            "chain: AWS_PROFILE, AWS_DEFAULT_REGION or AWS_REGION, "
                            "AWS_ENDPOINT_URL, AWS_CA_BUNDLE)")
    clean.add_argument("--aws-region", default=None, help="with --aws: the region to use")
    clean.add_argument("--azure", action="store_true",
                       help="the subscription's resource groups, identities and vaults tagged "
                            "crossfed-run-id, and its soft-deleted vaults of crossfed's "
                            "(DefaultAzureCredential, REQUESTS_CA_BUNDLE)")
    clean.add_argument("--azure-subscription", default=None,
                       help="with --azure [env AZURE_SUBSCRIPTION_ID]")
    clean.add_argument("--azure-arm-endpoint", metavar="URL", default=None,
                       help="with --azure: a non-public cloud's ARM (its /metadata/endpoints "
                            "names the authority and audiences)")
    clean.add_argument("--run-id", default=None,
                       help="sweep this run's objects only, whatever their age")
    clean.add_argument("--older-than", default=None, metavar="AGE",
                       help="without --run-id: only objects older than this, so a run in "
                            "progress is spared; a number with a unit (90m, 6h), or a bare "
                            "number: MINUTES for --kubeconfig/--local-state (default 60), "
                            "HOURS for --aws/--azure (judged by the crossfed-created-at tag; "
                            "--aws/--azure need --run-id or --older-than); 0 sweeps every run")
    clean.add_argument("--dry-run", action="store_true", help="list, delete nothing")
    clean.epilog = ("A bare --older-than number means minutes for --kubeconfig/--local-state "
                    "and hours for --aws/--azure; give a unit (90m, 6h) to be explicit.")
    clean.set_defaults(func=sweep)
    doctor = commands.add_parser("doctor", help="read-only diagnosis of a federation from "
                                 "what the cloud holds").add_subparsers(dest="cloud",
                                                                        required=True)
    aws = doctor.add_parser("aws", help="would this service account's token get the role? "
                            "(boto3's default chain; AWS_ENDPOINT_URL, AWS_CA_BUNDLE)")
    aws.add_argument("--role-arn", required=True)
    aws.add_argument("--bucket", help="also check the role may list this S3 bucket "
                     "(s3:ListBucket in its policies)")
    _token_source(aws, "sts.amazonaws.com")
    aws.set_defaults(func=doctor_aws)
    azure = doctor.add_parser("azure", help="would this service account's token get the "
                              "identity's Entra token (and the secret)? (DefaultAzureCredential; "
                              "REQUESTS_CA_BUNDLE)")
    which = azure.add_mutually_exclusive_group(required=True)
    which.add_argument("--identity", metavar="RG/NAME", help="the user-assigned identity")
    which.add_argument("--client-id", help="the identity's client id (AZURE_CLIENT_ID)")
    _token_source(azure, "api://AzureADTokenExchange")
    azure.add_argument("--vault-url", help="with --secret: check the identity may read it")
    azure.add_argument("--secret", help="with --vault-url: the secret's name (its existence "
                       "is checked by listing the vault's secret names, if the doctor's "
                       "principal may)")
    azure.add_argument("--workload-tenant-id", metavar="TENANT",
                       help="the tenant the workload is told (its azure.workload.identity/"
                       "tenant-id annotation or the webhook's); checked against the "
                       "identity's")
    azure.add_argument("--azure-subscription", help="[env AZURE_SUBSCRIPTION_ID]")
    azure.add_argument("--azure-arm-endpoint", metavar="URL", help="a non-public cloud's ARM: "
                       "its /metadata/endpoints names the authority and audiences")
    azure.set_defaults(func=doctor_azure)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["test"]:  # everything after it is pytest's, so argparse does not see it
        from crossfed.suite.__main__ import run_suite

        return run_suite(argv[1:])
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CliError as exc:
        print(f"crossfed {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
