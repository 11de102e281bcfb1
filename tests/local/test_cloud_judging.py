"""When a cloud's refusal counts (crossfed/cloud/judging.py), as plain data: only when a
failed check of what the cloud holds predicts the very code seen at that step."""

from __future__ import annotations

from crossfed.cloud.judging import judge
from crossfed.doctor.report import fail, ok
from crossfed.suite.plans import AWS_ALLOWED, AWS_DENIED

TRUST = next(p for p in AWS_DENIED if p.name == "other-service-account")
NO_LIST = next(p for p in AWS_DENIED if p.name == "no-list-permission")


def _report(identity: dict, listing: dict | None = None) -> dict:
    listing = listing or {"ok": False, "error_code": "NoCredentials"}
    return {"aws": {"boto3": {"caller_identity": identity, "list_bucket": listing}}}


def _refused(code: str) -> dict:
    return {"ok": False, "error_code": code, "operation": "AssumeRoleWithWebIdentity"}


TRUST_FAIL = fail("trust_policy", "no statement allows", "fix it",
                  ["STS would answer AccessDenied: Not authorized"])


def test_a_refusal_explained_with_its_code_counts() -> None:
    verdict = judge(TRUST, _report(_refused("AccessDenied")), [], lambda: [TRUST_FAIL])
    assert verdict.settled and verdict.passed, verdict


def test_the_same_check_with_another_code_is_propagation() -> None:
    # the provider not propagated yet: InvalidIdentityToken, where the policy says AccessDenied
    verdict = judge(TRUST, _report(_refused("InvalidIdentityToken")), ["code differs"],
                    lambda: [TRUST_FAIL])
    assert not verdict.settled and "propagating" in verdict.why


def test_a_refusal_nothing_explains_is_propagation_for_a_positive() -> None:
    verdict = judge(AWS_ALLOWED, _report(_refused("AccessDenied")), ["refused"],
                    lambda: [ok("trust_policy", "allows")])
    assert not verdict.settled


def test_an_object_just_created_but_not_found_is_a_lagging_read() -> None:
    missing = fail("provider", "no provider", "create it",
                   ["STS would answer InvalidIdentityToken: No OpenIDConnect provider"])
    report = _report(_refused("InvalidIdentityToken"))
    assert not judge(AWS_ALLOWED, report, ["x"], lambda: [missing], lagging={"provider"}).settled
    assert judge(AWS_ALLOWED, report, ["x"], lambda: [missing]).settled  # not ours: counts


def test_a_check_of_a_later_step_does_not_explain_an_earlier_refusal() -> None:
    no_list = fail("permissions", "no ListBucket", "add it")
    verdict = judge(NO_LIST, _report(_refused("AccessDenied")), ["assume refused"],
                    lambda: [no_list])
    assert not verdict.settled


def test_the_expected_check_must_be_the_one_that_explains() -> None:
    expired = fail("expiry", "expired", "refresh",
                   ["STS would answer AccessDenied: pretend"])
    verdict = judge(TRUST, _report(_refused("AccessDenied")), [], lambda: [expired])
    assert verdict.settled and not verdict.passed
    assert "trust_policy" in verdict.problems[0]


def test_other_claims_presented_explain_any_refusal() -> None:
    presented = fail("presented", "the workload presented aud x", "check the webhook")
    verdict = judge(AWS_ALLOWED, _report(_refused("InvalidIdentityToken")), ["refused"],
                    lambda: [presented])
    assert verdict.settled and not verdict.passed


def test_allowed_needs_no_diagnosis() -> None:
    report = _report({"ok": True, "arn": "x"}, {"ok": True, "keys": ["test-file.txt"]})
    verdict = judge(AWS_ALLOWED, report, [], lambda: (_ for _ in ()).throw(AssertionError))
    assert verdict.settled and verdict.passed
