"""Runs of the cloud tier killed with SIGKILL at random points (during apply, run and
teardown) leave crossfed-tagged objects behind; `crossfed sweep --aws --azure` removes every
one of them and leaves alone the untagged decoys a user created beforehand."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from crossfed.cloud.tags import RUN_ID
from fixtures.cloud_env import use_env
from fixtures.serve import CLI
from tests.cloud import tier

pytestmark = [pytest.mark.serve]
RUNS = 10
# What to wait for in the tier's log before the kill (then a random pause of up to the
# second number): apply under way, the workload running, the teardown under way.
PHASES = [("crossfed cloud: run ", 1.5), ("crossfed cloud: aws-allowed: role", 0.8),
          ("crossfed cloud: aws-allowed: settled", 0.3),
          ("crossfed cloud: aws-allowed: settled", 2.0),  # the Azure scenario's apply
          ("crossfed cloud: azure-allowed: identity", 0.8),
          ("crossfed cloud: azure-allowed: settled", 0.3)]
DECOY_POLICY = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "s3:ListAllMyBuckets", "Resource": "*"}]})
TRUST = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
     "Action": "sts:AssumeRole"}]})


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory):
    served = tier.start(tmp_path_factory.mktemp("serve"), 1.0, None)
    yield served
    served.stop()


class Clouds:
    """The two clouds as a user's SDK code sees them (this process's env set to serve's)."""

    def __init__(self, serve: tier.Serve) -> None:
        import boto3
        from azure.identity import ClientSecretCredential
        from azure.mgmt.keyvault import KeyVaultManagementClient
        from azure.mgmt.msi import ManagedServiceIdentityClient
        from azure.mgmt.resource.resources import ResourceManagementClient

        session = boto3.Session()
        self.iam, self.s3 = session.client("iam"), session.client("s3")
        az = serve.info["azure"]
        credential = ClientSecretCredential(az["tenant_id"], az["admin_client_id"],
                                            az["admin_client_secret"],
                                            authority=az["authority_host"],
                                            disable_instance_discovery=True)
        common: dict[str, Any] = {"base_url": az["arm_endpoint"]}
        sub = az["subscription_id"]
        self.groups = ResourceManagementClient(credential, sub, **common)
        self.msi = ManagedServiceIdentityClient(credential, sub, **common)
        self.vaults = KeyVaultManagementClient(credential, sub, **common)
        self.tenant = az["tenant_id"]

    def make_decoys(self) -> dict[str, str]:
        self.iam.create_role(RoleName="user-decoy", Path="/crossfed/",
                             AssumeRolePolicyDocument=TRUST)
        arn = self.iam.create_policy(PolicyName="user-decoy", Path="/crossfed/",
                                     PolicyDocument=DECOY_POLICY)["Policy"]["Arn"]
        self.s3.create_bucket(Bucket="crossfed-user-decoy")
        self.s3.put_object(Bucket="crossfed-user-decoy", Key="keep.txt", Body=b"mine")
        provider = self.iam.create_open_id_connect_provider(
            Url="https://decoy.example/issuer", ClientIDList=["sts.amazonaws.com"],
            ThumbprintList=["a" * 40])["OpenIDConnectProviderArn"]
        self.groups.resource_groups.create_or_update("user-decoys", {"location": "westeurope"})
        self.msi.user_assigned_identities.create_or_update("user-decoys", "user-decoy",
                                                           {"location": "westeurope"})
        self.vaults.vaults.begin_create_or_update("user-decoys", "userdecoyvault", {
            "location": "westeurope", "properties": {
                "tenantId": self.tenant, "sku": {"family": "A", "name": "standard"},
                "accessPolicies": []}}).result()
        return {"policy": arn, "provider": provider}

    def decoys_intact(self, arns: dict[str, str]) -> list[str]:
        missing = []
        checks = [
            ("role", lambda: self.iam.get_role(RoleName="user-decoy")),
            ("policy", lambda: self.iam.get_policy(PolicyArn=arns["policy"])),
            ("bucket object", lambda: self.s3.head_object(Bucket="crossfed-user-decoy",
                                                         Key="keep.txt")),
            ("provider", lambda: self.iam.get_open_id_connect_provider(
                OpenIDConnectProviderArn=arns["provider"])),
            ("group", lambda: self.groups.resource_groups.get("user-decoys")),
            ("identity", lambda: self.msi.user_assigned_identities.get("user-decoys",
                                                                       "user-decoy")),
            ("vault", lambda: self.vaults.vaults.get("user-decoys", "userdecoyvault")),
        ]
        for name, check in checks:
            try:
                check()
            except Exception as exc:  # any failure: the decoy is gone or damaged
                missing.append(f"{name}: {exc}")
        return missing

    def crossfed_objects(self) -> list[str]:
        """Everything that carries crossfed's run-id tag, in either cloud."""
        left = []
        for role in self.iam.list_roles()["Roles"]:
            tags = self.iam.list_role_tags(RoleName=role["RoleName"])["Tags"]
            left += [f"role {role['Arn']}" for t in tags if t["Key"] == RUN_ID]
        for policy in self.iam.list_policies(Scope="Local")["Policies"]:
            tags = self.iam.list_policy_tags(PolicyArn=policy["Arn"])["Tags"]
            left += [f"policy {policy['Arn']}" for t in tags if t["Key"] == RUN_ID]
        for entry in self.iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]:
            tags = self.iam.list_open_id_connect_provider_tags(
                OpenIDConnectProviderArn=entry["Arn"])["Tags"]
            left += [f"provider {entry['Arn']}" for t in tags if t["Key"] == RUN_ID]
        for bucket in self.s3.list_buckets()["Buckets"]:
            try:
                tags = self.s3.get_bucket_tagging(Bucket=bucket["Name"])["TagSet"]
            except Exception:  # NoSuchTagSet: untagged
                tags = []
            left += [f"bucket {bucket['Name']}" for t in tags if t["Key"] == RUN_ID]
        for group in self.groups.resource_groups.list():
            if RUN_ID in (group.tags or {}):
                left.append(f"resource group {group.name}")
            for identity in self.msi.user_assigned_identities.list_by_resource_group(
                    group.name):
                if RUN_ID in (identity.tags or {}):
                    left.append(f"identity {identity.id}")
            for vault in self.vaults.vaults.list_by_resource_group(group.name):
                if RUN_ID in (vault.tags or {}):
                    left.append(f"vault {vault.id}")
        for deleted in self.vaults.vaults.list_deleted():
            if RUN_ID in (deleted.properties.tags or {}):
                left.append(f"soft-deleted vault {deleted.name}")
        return left


def _kill_when(process: subprocess.Popen[str], marker: str, pause: float,
               seen: list[str], hit: list[bool]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        seen.append(line)
        if marker in line:
            hit.append(True)
            time.sleep(pause)
            break
    process.send_signal(signal.SIGKILL)


def test_killed_runs_are_swept_and_decoys_survive(serve, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    env = tier.environment(serve, None)
    use_env(monkeypatch, {k: v for k, v in env.items() if k.startswith(("AWS_", "AZURE_",
                                                                         "REQUESTS_"))})
    clouds = Clouds(serve)
    decoys = clouds.make_decoys()
    chosen = random.Random(os.environ.get("CROSSFED_KILL_SEED", "11"))
    killed = []
    for run in range(RUNS):
        marker, most = PHASES[run % len(PHASES)]
        args = tier.tier_args(serve, None, ("aws", "azure"), "-k",
                              "cloud-process and (allowed or reads or assumes)",
                              "--crossfed-run-id", f"kill{run:02d}", "-o", "log_cli=true",
                              "--log-cli-level=INFO", "--cloud-propagation-timeout", "60")
        process = subprocess.Popen(args, env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        seen: list[str] = []
        hit: list[bool] = []
        killer = threading.Thread(target=_kill_when, daemon=True,
                                  args=(process, marker, chosen.uniform(0, most), seen, hit))
        killer.start()
        killer.join(timeout=300)
        process.kill()
        process.wait(timeout=30)
        killed.append((run, marker, process.returncode))
        assert hit and process.returncode == -signal.SIGKILL, (
            f"run {run} was not killed at its point ({marker!r}):\n{''.join(seen)[-3000:]}")
    left_before = clouds.crossfed_objects()
    assert left_before, "no killed run left anything behind: the kill points missed"
    done = subprocess.run([*CLI, "sweep", "--aws", "--azure", "--older-than", "0",
                           "--azure-arm-endpoint", serve.info["azure"]["arm_endpoint"]],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert clouds.crossfed_objects() == [], done.stdout[-3000:]
    assert clouds.decoys_intact(decoys) == []
    tier.REPORTED.append(f"kill-and-sweep: {len(killed)} runs killed, {len(left_before)} "
                         f"crossfed-tagged objects left behind, 0 after crossfed sweep")


def test_ctrl_c_tears_everything_down(serve, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Interrupted (SIGINT, as Ctrl-C) while a scenario waits for propagation: the teardown
    still runs, in reverse order, and leaves no crossfed-tagged object, with no sweep."""
    env = tier.environment(serve, None)
    use_env(monkeypatch, {k: v for k, v in env.items() if k.startswith(("AWS_", "AZURE_",
                                                                         "REQUESTS_"))})
    clouds = Clouds(serve)
    before = clouds.crossfed_objects()
    args = tier.tier_args(serve, None, ("aws", "azure"), "-k",
                          "cloud-process and (assumes or reads)", "--crossfed-run-id",
                          "ctrlc", "-o", "log_cli=true", "--log-cli-level=INFO")
    process = subprocess.Popen(args, env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        if "crossfed cloud: aws-allowed: role" in line:
            process.send_signal(signal.SIGINT)
            break
    rest, _ = process.communicate(timeout=300)
    output = "".join(seen) + rest
    assert process.returncode not in (0, -signal.SIGKILL), output[-3000:]
    assert "KeyboardInterrupt" in output, output[-3000:]
    assert [o for o in clouds.crossfed_objects() if o not in before] == [], output[-3000:]
