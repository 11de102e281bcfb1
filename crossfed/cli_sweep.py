"""`crossfed sweep`: delete what interrupted runs left, in a cluster (--kubeconfig), in the
clouds (--aws/--azure, by run id or age), of kind (--kind) and on this machine (--local-state).

Split from crossfed/cli.py, which builds the parser and dispatches here.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from crossfed.cli_errors import CliError
from crossfed.progress import progress


def _older_than(args: argparse.Namespace, bare_unit: str) -> Any:
    """--older-than as a timedelta: `90m`, `6h`, or a bare number in bare_unit."""
    from crossfed.cloud.sweep import parse_age

    text = args.older_than if args.older_than is not None else "60m"
    try:
        return parse_age(str(text), bare_unit)
    except ValueError as exc:
        raise CliError(f"--older-than must be 0 or more minutes or hours: {exc}") from exc


def sweep(args: argparse.Namespace) -> int:
    clouds = args.aws or args.azure
    if not (args.kubeconfig or args.local_state or clouds or args.kind):
        raise CliError("say what to sweep: --kubeconfig K (a cluster's leftovers; env "
                       "CROSSFED_KUBECONFIG), --local-state (this machine's run dirs), --kind "
                       "(kind clusters of killed runs), --aws and/or --azure (a cloud "
                       "account's objects)")
    # A bare number is minutes for the cluster and local state (as before), hours for clouds.
    if args.kubeconfig or args.local_state:
        args.older_than_minutes = _older_than(args, "m").total_seconds() / 60
    if clouds:
        if not args.run_id and args.older_than is None:
            raise CliError("--aws/--azure need --run-id ID (one run's objects, whatever their "
                           "age) or --older-than HOURS (every run's, judged by their "
                           "crossfed-created-at tag; e.g. 6h)")
        cloud_age = None if args.run_id else _older_than(args, "h")
    status = _sweep_local(args) if args.local_state else 0
    if args.kind:
        status = max(status, _sweep_kind(args))
    if args.kubeconfig:
        status = max(status, _sweep_cluster(args))
    if args.aws:
        status = max(status, _sweep_aws(args, cloud_age))
    if args.azure:
        status = max(status, _sweep_azure(args, cloud_age))
    return status


def _sweep_aws(args: argparse.Namespace, older_than: Any) -> int:
    from crossfed.cloud import sweep_aws
    from crossfed.cloud.sweep import Selector, SweepUsageError

    logging.getLogger("botocore").setLevel(logging.WARNING)  # "Found credentials in ..."
    try:
        iam, s3 = sweep_aws.clients(args.aws_region)
        with progress("sweep AWS", eager=False) as sweeping:
            failures = sweep_aws.sweep(iam, s3, Selector(args.run_id, older_than),
                                       args.dry_run, _Starting(sweeping.started), sys.stderr)
    except SweepUsageError as exc:
        raise CliError(f"--aws: {exc}") from exc
    return 1 if failures else 0


def _sweep_azure(args: argparse.Namespace, older_than: Any) -> int:
    from crossfed.cloud import sweep_azure
    from crossfed.cloud.sweep import Selector, SweepUsageError

    for name in ("azure", "msal"):  # the SDKs' request logs and credential-chain notes
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        az = sweep_azure.clients(args.azure_subscription, args.azure_arm_endpoint)
        with progress("sweep Azure", eager=False) as sweeping:
            failures = sweep_azure.sweep(az, Selector(args.run_id, older_than), args.dry_run,
                                         _Starting(sweeping.started), sys.stderr)
    except SweepUsageError as exc:
        raise CliError(f"--azure: {exc}") from exc
    return 1 if failures else 0


class _Starting:
    """Standard output that starts the sweep's progress line at its first line: a sweep
    refused before it lists anything (missing credentials) stays a one-line usage error."""

    def __init__(self, started: Any) -> None:
        self.started = started

    def write(self, text: str) -> int:
        self.started()
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def _sweep_kind(args: argparse.Namespace) -> int:
    """kind clusters whose creating run is gone (crossfed.cluster.kind_owner)."""
    from crossfed.cluster.kind import KindError
    from crossfed.cluster.kind_owner import delete_kind_leftovers, find_kind_leftovers
    from crossfed.cluster.tools import ToolMissing, default_cache_dir, find_tool

    try:
        kind_bin = find_tool("kind", args.kind_bin, download=False)
    except ToolMissing as exc:
        raise CliError(f"--kind: {exc}") from exc
    root = Path(args.kind_state_root) if args.kind_state_root else default_cache_dir() / "kind"
    try:
        leftovers, spared = find_kind_leftovers(root, kind_bin)
    except KindError as exc:
        raise CliError(f"--kind: {exc}; is Docker running (DOCKER_HOST)?") from exc
    for line in spared:
        print(f"crossfed sweep: kind: leaving {line}")
    try:  # to remove the node containers a killed `kind create` left behind kind's back
        docker_bin = find_tool("docker", None, download=False)
    except ToolMissing:
        docker_bin = None
    return _delete_or_list("no kind cluster to delete", [x.describe() for x in leftovers],
                           args.dry_run,
                           lambda: delete_kind_leftovers(leftovers, kind_bin,
                                                         docker_bin=docker_bin))


def _delete_or_list(nothing: str, described: list[str], dry_run: bool,
                    delete: Any) -> int:
    """The sweep's common tail: say there is nothing, list what would go, or delete (the
    deleter reports each deletion and returns the failures, one line each)."""
    if not described:
        print(f"crossfed sweep: {nothing}")
        return 0
    if dry_run:
        for line in described:
            print(f"would delete {line}")
        return 0
    with progress(f"sweep: deleting {len(described)} object(s)"):
        failures = delete()
    for failure in failures:
        print(f"crossfed sweep: could not delete {failure}", file=sys.stderr)
    return 1 if failures else 0


def _sweep_local(args: argparse.Namespace) -> int:
    """Run directories (keys, tokens, credentials) of runs whose process is gone."""
    import time

    from crossfed.local_sweep import delete_local_leftovers, find_local_leftovers

    leftovers = find_local_leftovers(args.run_id,
                                     0 if args.run_id else args.older_than_minutes)
    now = time.time()
    if not leftovers:
        print("crossfed sweep: no local state to delete")
        return 0
    for leftover in leftovers:
        print(f"{'would delete' if args.dry_run else 'deleting'} {leftover.describe(now)}")
    if args.dry_run:
        return 0
    failures = delete_local_leftovers(leftovers)
    for failure in failures:
        print(f"crossfed sweep: could not delete {failure}", file=sys.stderr)
    return 1 if failures else 0


def _sweep_cluster(args: argparse.Namespace) -> int:
    import datetime as dt

    from kubernetes import config
    from kubernetes.client.rest import ApiException
    from kubernetes.config.config_exception import ConfigException
    from urllib3.exceptions import HTTPError
    from yaml import YAMLError

    from crossfed.cluster.sweep import delete_leftovers, find_leftovers

    try:
        api_client = config.new_client_from_config(config_file=args.kubeconfig)
    except (ConfigException, OSError, YAMLError) as exc:
        raise CliError(f"cannot load --kubeconfig {args.kubeconfig}: {exc}; give the "
                       "kubeconfig of the cluster the run used") from exc
    # A named run is swept whatever its age; "all runs" spares those younger than --older-than.
    older_than = dt.timedelta(minutes=0 if args.run_id else args.older_than_minutes)
    try:
        leftovers = find_leftovers(api_client, args.run_id, older_than)
    except (ApiException, HTTPError, OSError) as exc:
        raise CliError(f"cannot list crossfed's objects through the API server: {exc}; "
                       "check that the cluster is up and --kubeconfig points at it") from exc
    now = dt.datetime.now(dt.timezone.utc)
    return _delete_or_list("nothing to delete", [x.describe(now) for x in leftovers],
                           args.dry_run, lambda: delete_leftovers(api_client, leftovers))
