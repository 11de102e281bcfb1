"""No full token reaches a report: a failing verdict, the decision feed and the probe's output
show claims, digests and last characters only."""

from __future__ import annotations

import json
import re

import pytest

from crossfed.pytest_plugin import Federation
from crossfed.redact import fingerprint, scrub
from crossfed.suite.plans import AWS_ALLOWED
from crossfed.verdict import VerdictError

pytestmark = [pytest.mark.local, pytest.mark.aws]

JWT = re.compile(r"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]*")


def test_a_failing_verdict_explains_without_the_token(federation: Federation,
                                                      crossfed_clouds) -> None:
    wrong_expectation = AWS_ALLOWED.but(name="hygiene", token="expired")  # expects "allowed"
    with pytest.raises(VerdictError) as caught:
        federation.check(wrong_expectation)
    message = str(caught.value)
    assert "ExpiredTokenException" in message and "expiry" in message
    assert "fingerprint" in message and "system:serviceaccount:" in message
    assert not JWT.search(message)
    feed = json.dumps(crossfed_clouds.aws.decisions.as_json())
    assert "sha256:" in feed and not JWT.search(feed)


def test_probe_output_carries_no_token(federation: Federation) -> None:
    run = federation.run(AWS_ALLOWED.but(name="hygiene-probe", token="alg_none"))
    assert run.result is not None
    assert not JWT.search(json.dumps(run.result.report) + run.result.stderr)


def test_fingerprint_and_scrub_keep_only_digest_and_tail() -> None:
    secret = "eyJhbGciOi.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXZhbHVlLWhlcmU"
    shown = fingerprint(secret)
    assert shown.startswith("sha256:") and shown.endswith(secret[-6:])
    leaked = secret in shown or secret in scrub(f"token={secret}!", secret)
    assert not leaked, "the secret shows in full"  # a boolean: the failure prints no secret
