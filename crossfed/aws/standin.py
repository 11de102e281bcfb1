"""The AWS stand-in as the harness sees it: a facade over moto (IAM, S3, STS) and the verifying
STS, which run in a child process of their own (crossfed/aws/child.py says why: moto's
process-wide state and crossfed's patches of moto stay out of the test process, so a user's own
`mock_aws` tests in the same run see stock moto, and crossfed's account survives their resets).

The facade keeps the interface callers had when moto ran in-process: endpoint_url, region,
account_id, ca_bundle, admin, session(), client_kwargs(), decisions (for_target/all/as_json)
and keys (register_location, locations, fetch_count, clear). Those calls go over a pipe, not
the network. Each stand-in is its own account: a second environment's stand-ins in one run
(the foreign-issuer cluster's) no longer share, or wipe, the first's roles.

The decision feed is served on the endpoint at `decisions_url` only (a per-run secret path,
see crossfed/decisions.py); moto's `/moto-api/` and every other route AWS does not have
answer 404.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from multiprocessing import Pipe
from pathlib import Path
from typing import Any

import boto3

import crossfed
from crossfed.decisions import Decision
from crossfed.https_server import LOOPBACK
from crossfed.listen import check_listen_host
from crossfed.pki import RunCA

CHILD_START_TIMEOUT = 60.0
CHILD_STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class AdminCredentials:
    access_key_id: str
    secret_access_key: str

    def __repr__(self) -> str:  # the secret's last 4 characters at most
        return (f"AdminCredentials(access_key_id={self.access_key_id!r}, "
                f"secret_access_key='…{self.secret_access_key[-4:]}')")


class StandInGone(RuntimeError):
    """The stand-in's process did not answer (it exited or was killed)."""


class _Control:
    """Request/answer over the child's pipe, one at a time."""

    def __init__(self, conn: Any, process: subprocess.Popen[bytes]) -> None:
        self.conn, self.process = conn, process
        self.lock = threading.Lock()

    def call(self, *message: Any, timeout: float = CHILD_START_TIMEOUT) -> Any:
        with self.lock:
            try:
                self.conn.send(message)
                if not self.conn.poll(timeout):
                    raise StandInGone(f"the AWS stand-in (pid {self.process.pid}) did not "
                                      f"answer {message[0]!r} within {timeout:g} s")
                status, value = self.conn.recv()
            except (EOFError, OSError) as exc:
                raise StandInGone(f"the AWS stand-in (pid {self.process.pid}) is gone "
                                  f"(exit status {self.process.poll()}): {exc}") from exc
        if status != "ok":
            raise RuntimeError(f"AWS stand-in: {message[0]}: {value}")
        return value


class RemoteDecisionLog:
    """The child's DecisionLog, read over the pipe (the DecisionLog interface readers use)."""

    def __init__(self, control: _Control) -> None:
        self._control = control

    def as_json(self) -> list[dict[str, Any]]:
        return list(self._control.call("decisions"))

    def all(self) -> list[Decision]:
        return [Decision(**item) for item in self.as_json()]

    def for_target(self, target: str) -> list[Decision]:
        return [d for d in self.all() if d.target == target]


class _RemoteLocations(MutableMapping[str, str]):
    def __init__(self, control: _Control) -> None:
        self._control = control

    def _all(self) -> dict[str, str]:
        return dict(self._control.call("locations"))

    def __getitem__(self, issuer_url: str) -> str:
        return self._all()[issuer_url]

    def __setitem__(self, issuer_url: str, documents_url: str) -> None:
        self._control.call("register_location", issuer_url, documents_url)

    def __delitem__(self, issuer_url: str) -> None:
        if self._control.call("forget_location", issuer_url) is None:
            raise KeyError(issuer_url)

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


class RemoteKeyCache:
    """The child's KeyCache (the verifier's JWKS cache), as far as the harness steers it."""

    def __init__(self, control: _Control) -> None:
        self._control = control
        self.locations = _RemoteLocations(control)

    def register_location(self, issuer_url: str, documents_url: str) -> None:
        self._control.call("register_location", issuer_url, documents_url)

    @property
    def fetch_count(self) -> int:
        return int(self._control.call("fetch_count"))

    def clear(self) -> None:
        self._control.call("clear_keys")


class AwsStandIn:
    """Spawns (and binds) the stand-in's process at construction; start() serves."""

    def __init__(self, ca: RunCA, trusted_roots: str | None, region: str = "us-east-1",
                 host: str = LOOPBACK, verify: bool = True, port: int = 0,
                 propagation_delay: float = 0.0) -> None:
        """propagation_delay: seconds before a new role, OIDC provider or role policy takes
        effect (crossfed/aws/moto_propagation.py); 0: at once."""
        check_listen_host(host)
        self.region = region
        self.ca_bundle = str(ca.bundle_path)
        tls = ca.server_context("aws", host, "localhost")
        parent_end, child_end = Pipe()
        fd = child_end.fileno()
        env = dict(os.environ)
        root = str(Path(crossfed.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), root) if p)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "crossfed.aws.child", str(fd), str(os.getpid())],
            pass_fds=(fd,), stdin=subprocess.DEVNULL, stdout=2, env=env)
        child_end.close()
        self._control = _Control(parent_end, self._process)
        self._stopped = False
        try:
            self._control.conn.send({
                "chain_path": str(tls.chain_path), "key_path": str(tls.key_path), "host": host,
                "port": port, "region": region, "trusted_roots": trusted_roots,
                "verify": verify, "propagation_delay": float(propagation_delay),
                "access_log": logging.getLogger("crossfed.http.access").getEffectiveLevel()})
            if not parent_end.poll(CHILD_START_TIMEOUT):
                raise StandInGone("the AWS stand-in's process did not start within "
                                  f"{CHILD_START_TIMEOUT:g} s")
            status, value = parent_end.recv()
        except BaseException:
            self._kill()
            raise
        if status != "ok":
            self._kill()
            raise OSError(f"AWS stand-in on {host}:{port}: {value}")
        self.host, self.port = host, int(value["port"])
        self.account_id = str(value["account_id"])
        self._feed_path = str(value["feed_path"])
        self.decisions = RemoteDecisionLog(self._control)
        self.keys = RemoteKeyCache(self._control)
        self.admin: AdminCredentials | None = None

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def endpoint_url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def decisions_url(self) -> str:
        """The decision feed (JSON), for the harness only: the path carries a per-run secret."""
        return self.endpoint_url + self._feed_path

    def start(self, enforce_iam: bool = True) -> AwsStandIn:
        access_key_id, secret_access_key = self._control.call("start", enforce_iam)
        self.admin = AdminCredentials(access_key_id, secret_access_key)
        return self

    def add_eks_cluster(self, name: str, issuer_url: str) -> dict[str, str]:
        """An EKS cluster record in the stand-in's region: `eks describe-cluster --name NAME`
        answers it with identity.oidc.issuer exactly as given (crossfed/aws/eks.py). Returns
        {name, arn, issuer}. ValueError for a name EKS would refuse or a non-https issuer."""
        from crossfed.aws.eks import check_record

        check_record(name, issuer_url)
        return dict(self._control.call("add_eks_cluster", name, issuer_url))

    def session(self) -> boto3.Session:
        """A boto3 session of the administrator, pointed at the stand-in."""
        assert self.admin is not None, "start() the stand-in first"
        return boto3.Session(aws_access_key_id=self.admin.access_key_id,
                             aws_secret_access_key=self.admin.secret_access_key,
                             region_name=self.region)

    def client_kwargs(self) -> dict[str, Any]:
        return {"endpoint_url": self.endpoint_url, "verify": self.ca_bundle}

    def _kill(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        self._control.conn.close()

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.admin = None
        try:
            self._control.call("stop", timeout=CHILD_STOP_TIMEOUT)
            self._process.wait(timeout=CHILD_STOP_TIMEOUT)
        except (StandInGone, RuntimeError, subprocess.TimeoutExpired):
            pass
        self._kill()
