"""A user's own moto and crossfed's AWS stand-in in one pytest run leave each other alone.

The run is real: a fresh pytest process (crossfed's plugin auto-loaded through its entry point)
collects a user's `@mock_aws` tests before, between and after crossfed's scenarios. The user's
mock must see stock moto (none of crossfed's users, roles or providers; none of crossfed's IAM
rules, e.g. an http:// OIDC provider URL is accepted as stock moto accepts it), and crossfed's
scenarios must pass after the user's mock_aws reset moto, with crossfed's rules still on in
the stand-in.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.local, pytest.mark.aws]

USER_TESTS = '''
import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.iam.models import IAMBackend

from crossfed.suite.plans import AWS_ALLOWED


def _sees_stock_moto(own_user):
    iam = boto3.client("iam", region_name="us-east-1", aws_access_key_id="testing",
                       aws_secret_access_key="testing")
    users = [u["UserName"] for u in iam.list_users()["Users"]]
    assert users == [], f"the user's mock_aws sees users it did not create: {users}"
    assert iam.list_roles()["Roles"] == [], "the user's mock_aws sees roles"
    providers = iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]
    assert providers == [], f"the user's mock_aws sees OIDC providers: {providers}"
    # crossfed's moto_iam rules (https only, 40-character thumbprints) are not applied here
    assert not getattr(IAMBackend, "_crossfed_oidc_rules", False), "crossfed patched moto"
    iam.create_open_id_connect_provider(Url="http://user.example", ThumbprintList=["0" * 40],
                                        ClientIDList=["user-client"])
    iam.create_user(UserName=own_user)
    s3 = boto3.client("s3", region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    assert s3.list_buckets()["Buckets"] == [], "the user's mock_aws sees buckets"


@mock_aws
def test_1_user_mock_before_crossfed():
    _sees_stock_moto("user-before")


def test_2_crossfed_scenario(federation):
    federation.check(AWS_ALLOWED)


@mock_aws
def test_3_user_mock_while_crossfed_runs(crossfed_clouds):
    _sees_stock_moto("user-between")


def test_4_crossfed_after_the_user_reset_moto(federation, crossfed_clouds):
    federation.check(AWS_ALLOWED.but(name="after-user-mock"))
    aws = crossfed_clouds.aws
    iam = aws.session().client("iam", **aws.client_kwargs())
    with pytest.raises(ClientError) as refused:  # crossfed's IAM rules still on, there
        iam.create_open_id_connect_provider(Url="http://crossfed.example",
                                            ThumbprintList=["a" * 40])
    assert refused.value.response["Error"]["Code"] == "ValidationError"
    users = [u["UserName"] for u in iam.list_users()["Users"]]
    assert not any(u.startswith("user-") for u in users), f"crossfed sees {users}"


@mock_aws
def test_5_user_mock_after_crossfed():
    _sees_stock_moto("user-after")
'''


def test_users_mock_aws_and_crossfed_leave_each_other_alone(tmp_path: Path) -> None:
    (tmp_path / "test_user_moto.py").write_text(USER_TESTS)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "CROSSFED_"))}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly", "-q",
         "-o", "addopts=", "test_user_moto.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    output, code = run.stdout + run.stderr, run.returncode
    summary = re.search(r"(\d+) passed", output)
    passed = summary.group(1) if summary else "0"
    assert code == 0 and passed == "5", f"the inner run (exit {code}):\n{output[-6000:]}"
