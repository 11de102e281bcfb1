"""A test file as a platform team writes it in its own repository, with crossfed installed:
its own service account, one plan that must work and one that must be refused.
(tests/local/test_package.py copies it into a folder outside this repository and runs it.)"""

import pytest

from crossfed import AwsTarget, Federation, FederationPlan, ServiceAccountRef

pytestmark = [pytest.mark.local, pytest.mark.aws]

EXPORTER = ServiceAccountRef("payments", "ledger-exporter")

# Our exporter reads the ledger bucket through its IAM role.
LEDGER_EXPORT = FederationPlan(
    name="ledger-export", workload=EXPORTER,
    aws=AwsTarget(bucket="ledger", object_key="ledger.csv",
                  permissions=("s3:GetObject", "s3:ListBucket")))

# Another service account of the namespace must not get the exporter's role.
INTRUDER = LEDGER_EXPORT.but(
    name="ledger-intruder", workload=ServiceAccountRef("payments", "debug-shell"),
    trusted=EXPORTER).denied("AccessDenied", "trust_policy")


def test_exporter_lists_the_ledger(federation: Federation) -> None:
    run = federation.check(LEDGER_EXPORT)
    assert run.result is not None
    assert "ledger.csv" in run.result.aws("boto3")["list_bucket"]["keys"]


def test_another_service_account_is_refused(federation: Federation) -> None:
    federation.check(INTRUDER)
