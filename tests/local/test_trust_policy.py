"""Trust-policy evaluation for sts:AssumeRoleWithWebIdentity, against IAM's documented rules."""

from __future__ import annotations

import json
from typing import Any

import pytest

from crossfed.aws.trust_policy import (
    ConditionFailure,
    WebIdentityContext,
    evaluate_trust_policy,
)

pytestmark = [pytest.mark.local, pytest.mark.aws]

KEY = "127.0.0.1:8443"
ARN = f"arn:aws:iam::123456789012:oidc-provider/{KEY}"
SUB = "system:serviceaccount:team-a:app"


def ctx(**claims: Any) -> WebIdentityContext:
    base: dict[str, Any] = {"sub": SUB, "aud": ["sts.amazonaws.com"]}
    base.update(claims)
    return WebIdentityContext(ARN, KEY, {k: v for k, v in base.items() if v is not None})


def policy(condition: dict[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"Federated": ARN},
        "Action": "sts:AssumeRoleWithWebIdentity",
    }
    if condition is not None:
        statement["Condition"] = condition
    statement.update(overrides)
    return {"Version": "2012-10-17", "Statement": [statement]}


def irsa(sub: str = SUB) -> dict[str, Any]:
    return policy({"StringEquals": {f"{KEY}:sub": sub, f"{KEY}:aud": "sts.amazonaws.com"}})


def test_context_keys_only_known_claims_lowercased() -> None:
    context = WebIdentityContext(
        ARN,
        "OIDC.Example.com/id/ABC",
        {"sub": "s", "aud": "a", "amr": ["pwd", "mfa"], "scope": "x", "email": "e"},
    )
    assert context.context_keys() == {
        "oidc.example.com/id/abc:aud": ["a"],
        "oidc.example.com/id/abc:sub": ["s"],
        "oidc.example.com/id/abc:amr": ["pwd", "mfa"],
    }


def test_irsa_pattern_allows() -> None:
    decision = evaluate_trust_policy(irsa(), ctx())
    assert decision.allowed is True
    assert decision.explicit_deny is False
    assert decision.failures == []
    assert decision.reason == "Allowed by statement 1."
    assert decision.explain().startswith("ALLOWED:")


def test_wrong_sub_denies_with_failure_on_sub() -> None:
    decision = evaluate_trust_policy(irsa(), ctx(sub="system:serviceaccount:team-a:other"))
    assert decision.allowed is False
    assert decision.explicit_deny is False
    assert len(decision.failures) == 1
    failure = decision.failures[0]
    assert (failure.operator, failure.key) == ("StringEquals", f"{KEY}:sub")
    assert failure.expected == [SUB]
    assert failure.actual == ["system:serviceaccount:team-a:other"]
    assert failure.hint is not None
    assert "service-account name differs" in failure.hint
    assert "'app'" in failure.hint and "'other'" in failure.hint
    assert "conditions" in decision.reason


def test_wrong_namespace_is_named() -> None:
    decision = evaluate_trust_policy(irsa(), ctx(sub="system:serviceaccount:team-b:app"))
    hint = decision.failures[0].hint or ""
    assert "namespace differs" in hint
    assert "'team-a'" in hint and "'team-b'" in hint


def test_classic_mistake_audience_under_sub() -> None:
    decision = evaluate_trust_policy(irsa(sub="sts.amazonaws.com"), ctx())
    assert decision.allowed is False
    [failure] = decision.failures
    assert failure.key == f"{KEY}:sub"
    assert failure.expected == ["sts.amazonaws.com"]
    assert failure.actual == [SUB]
    assert failure.hint is not None
    assert f"did you mean {KEY}:aud?" in failure.hint
    text = decision.explain()
    assert text.startswith("DENIED:")
    assert f"{KEY}:sub" in text and "sts.amazonaws.com" in text and "hint:" in text


def test_subject_under_aud_gets_symmetric_hint() -> None:
    doc = policy({"StringEquals": {f"{KEY}:aud": SUB}})
    [failure] = evaluate_trust_policy(doc, ctx()).failures
    assert failure.hint is not None and f"did you mean {KEY}:sub?" in failure.hint


def test_key_for_another_provider_is_hinted() -> None:
    other = "oidc.eks.us-east-1.amazonaws.com/id/ABC"
    doc = policy({"StringEquals": {f"{other}:sub": SUB}})
    decision = evaluate_trust_policy(doc, ctx())
    [failure] = decision.failures
    assert failure.actual is None
    assert failure.hint is not None and repr(other) in failure.hint
    assert "another issuer" in failure.hint


@pytest.mark.parametrize(
    ("sub", "allowed"),
    [
        ("system:serviceaccount:team-a:app", True),
        ("system:serviceaccount:team-a:x", True),
        ("system:serviceaccount:team-b:app", False),
        ("system:serviceaccount:team-a", False),  # anchored: pattern needs a ':' after ns
    ],
)
def test_string_like_wildcard(sub: str, allowed: bool) -> None:
    doc = policy({"StringLike": {f"{KEY}:sub": "system:serviceaccount:team-a:*"}})
    assert evaluate_trust_policy(doc, ctx(sub=sub)).allowed is allowed


def test_string_like_is_case_sensitive_and_escapes_regex() -> None:
    doc = policy({"StringLike": {f"{KEY}:sub": "system:serviceaccount:team.a:?pp"}})
    assert evaluate_trust_policy(doc, ctx(sub="system:serviceaccount:team.a:app")).allowed
    # '.' is literal, not "any character"
    assert not evaluate_trust_policy(doc, ctx(sub="system:serviceaccount:teamXa:app")).allowed
    assert not evaluate_trust_policy(doc, ctx(sub="system:serviceaccount:TEAM.A:app")).allowed


def test_string_not_equals_must_match_none() -> None:
    doc = policy(
        {
            "StringLike": {f"{KEY}:sub": "system:serviceaccount:*"},
            "StringNotEquals": {f"{KEY}:sub": ["system:serviceaccount:kube-system:x", SUB]},
        }
    )
    decision = evaluate_trust_policy(doc, ctx())
    assert decision.allowed is False
    [failure] = decision.failures
    assert failure.operator == "StringNotEquals"
    assert evaluate_trust_policy(doc, ctx(sub="system:serviceaccount:team-a:ok")).allowed


def test_negated_operator_true_when_key_missing() -> None:
    doc = policy({"StringNotEquals": {f"{KEY}:azp": "bad-client"}})
    assert evaluate_trust_policy(doc, ctx()).allowed is True


def test_if_exists_on_missing_key() -> None:
    doc = policy({"StringEqualsIfExists": {f"{KEY}:azp": "client-1"}})
    assert evaluate_trust_policy(doc, ctx()).allowed is True
    assert evaluate_trust_policy(doc, ctx(azp="client-1")).allowed is True
    decision = evaluate_trust_policy(doc, ctx(azp="client-2"))
    assert decision.allowed is False
    assert decision.failures[0].actual == ["client-2"]
    # Without IfExists the missing key makes the condition false.
    plain = policy({"StringEquals": {f"{KEY}:azp": "client-1"}})
    decision = evaluate_trust_policy(plain, ctx())
    assert decision.allowed is False
    assert decision.failures[0].actual is None


@pytest.mark.parametrize("true_value", [True, "true", "True"])
def test_null_true_means_key_absent(true_value: Any) -> None:
    doc = policy({"Null": {f"{KEY}:azp": true_value}})
    assert evaluate_trust_policy(doc, ctx()).allowed is True
    decision = evaluate_trust_policy(doc, ctx(azp="c"))
    assert decision.allowed is False
    assert decision.failures[0].operator == "Null"
    assert decision.failures[0].actual == ["c"]


@pytest.mark.parametrize("false_value", [False, "false"])
def test_null_false_means_key_present(false_value: Any) -> None:
    doc = policy({"Null": {f"{KEY}:amr": false_value}})
    assert evaluate_trust_policy(doc, ctx(amr=["pwd"])).allowed is True
    assert evaluate_trust_policy(doc, ctx()).allowed is False


AMR = f"{KEY}:amr"


def test_for_any_value_on_amr() -> None:
    doc = policy({"ForAnyValue:StringEquals": {AMR: ["mfa", "hwk"]}})
    assert evaluate_trust_policy(doc, ctx(amr=["pwd", "mfa"])).allowed is True
    assert evaluate_trust_policy(doc, ctx(amr=["pwd"])).allowed is False
    decision = evaluate_trust_policy(doc, ctx())  # key missing: ForAnyValue is false
    assert decision.allowed is False
    assert decision.failures[0].actual is None
    assert "ForAnyValue is false when the key is missing" in (decision.failures[0].hint or "")


def test_for_all_values_on_amr() -> None:
    doc = policy({"ForAllValues:StringLike": {AMR: ["pwd", "mf?"]}})
    assert evaluate_trust_policy(doc, ctx(amr=["pwd", "mfa"])).allowed is True
    decision = evaluate_trust_policy(doc, ctx(amr=["pwd", "sms"]))
    assert decision.allowed is False
    assert decision.failures[0].operator == "ForAllValues:StringLike"
    assert decision.failures[0].actual == ["pwd", "sms"]


def test_for_all_values_with_missing_key_is_true() -> None:
    doc = policy({"ForAllValues:StringEquals": {AMR: "mfa"}})
    assert evaluate_trust_policy(doc, ctx()).allowed is True
    assert evaluate_trust_policy(doc, ctx(amr=[])).allowed is True


def test_list_aud_without_set_operator_is_any_match() -> None:
    doc = irsa()
    assert evaluate_trust_policy(doc, ctx(aud=["other", "sts.amazonaws.com"])).allowed
    assert evaluate_trust_policy(doc, ctx(aud="sts.amazonaws.com")).allowed
    assert not evaluate_trust_policy(doc, ctx(aud=["other"])).allowed


def test_explicit_deny_wins() -> None:
    doc = irsa()
    doc["Statement"].append(
        {
            "Sid": "NoTeamA",
            "Effect": "Deny",
            "Principal": {"Federated": ARN},
            "Action": "sts:*",
            "Condition": {"StringLike": {f"{KEY}:sub": "system:serviceaccount:team-a:*"}},
        }
    )
    decision = evaluate_trust_policy(doc, ctx())
    assert decision.allowed is False
    assert decision.explicit_deny is True
    assert "statement 2 (Sid 'NoTeamA')" in decision.reason
    # The Deny's condition does not hold for another namespace, so the Allow applies.
    other = ctx(sub="system:serviceaccount:team-b:app")
    doc["Statement"][0]["Condition"]["StringEquals"][f"{KEY}:sub"] = other.claims["sub"]
    assert evaluate_trust_policy(doc, other).allowed is True


def test_principal_of_another_provider_denies() -> None:
    other_arn = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
    doc = policy(Principal={"Federated": other_arn})
    decision = evaluate_trust_policy(doc, ctx())
    assert decision.allowed is False
    assert decision.explicit_deny is False
    assert decision.failures == []
    assert "principal mismatch" in decision.reason
    assert ARN in decision.reason and other_arn in decision.reason


@pytest.mark.parametrize(
    "principal",
    [{"Service": "ec2.amazonaws.com"}, {"AWS": "arn:aws:iam::123456789012:root"}],
)
def test_service_or_aws_principal_does_not_match_federated(principal: dict[str, str]) -> None:
    decision = evaluate_trust_policy(policy(Principal=principal), ctx())
    assert decision.allowed is False
    assert "principal mismatch" in decision.reason


@pytest.mark.parametrize("principal", ["*", {"AWS": "*"}, {"Federated": ["x", ARN]}])
def test_wildcard_and_list_principals_match(principal: Any) -> None:
    assert evaluate_trust_policy(policy(Principal=principal), ctx()).allowed is True


def test_not_principal() -> None:
    doc = policy()
    del doc["Statement"][0]["Principal"]
    doc["Statement"][0]["NotPrincipal"] = {"Federated": "arn:aws:iam::1:oidc-provider/x"}
    assert evaluate_trust_policy(doc, ctx()).allowed is True
    doc["Statement"][0]["NotPrincipal"] = {"Federated": ARN}
    assert evaluate_trust_policy(doc, ctx()).allowed is False


def test_action_assume_role_only_denies() -> None:
    decision = evaluate_trust_policy(policy(Action="sts:AssumeRole"), ctx())
    assert decision.allowed is False
    assert "action mismatch" in decision.reason
    assert "sts:AssumeRole)" in decision.reason


@pytest.mark.parametrize(
    "action", ["sts:*", "*", "STS:assumerolewithwebidentity", ["sts:TagSession", "sts:Assume*"]]
)
def test_action_wildcards_and_case(action: Any) -> None:
    assert evaluate_trust_policy(policy(Action=action), ctx()).allowed is True


def test_not_action() -> None:
    doc = policy()
    del doc["Statement"][0]["Action"]
    doc["Statement"][0]["NotAction"] = "sts:AssumeRole"
    assert evaluate_trust_policy(doc, ctx()).allowed is True
    doc["Statement"][0]["NotAction"] = "sts:AssumeRoleWith*"
    assert evaluate_trust_policy(doc, ctx()).allowed is False


def test_condition_key_names_case_insensitive_values_not() -> None:
    doc = policy({"StringEquals": {f"{KEY}:SUB": SUB, f"{KEY}:Aud": "sts.amazonaws.com"}})
    assert evaluate_trust_policy(doc, ctx()).allowed is True
    doc = policy({"StringEquals": {f"{KEY}:sub": SUB.upper()}})
    decision = evaluate_trust_policy(doc, ctx())
    assert decision.allowed is False
    assert "differ only in case" in (decision.failures[0].hint or "")
    doc = policy({"StringEqualsIgnoreCase": {f"{KEY}:sub": SUB.upper()}})
    assert evaluate_trust_policy(doc, ctx()).allowed is True


def test_policy_as_json_string_and_single_statement_object() -> None:
    text = json.dumps({"Version": "2012-10-17", "Statement": irsa()["Statement"][0]})
    assert evaluate_trust_policy(text, ctx()).allowed is True
    assert evaluate_trust_policy(text, ctx(sub="system:serviceaccount:x:y")).allowed is False


def test_url_encoded_policy_string() -> None:
    from urllib.parse import quote

    assert evaluate_trust_policy(quote(json.dumps(irsa())), ctx()).allowed is True


def test_malformed_policy_denies() -> None:
    decision = evaluate_trust_policy("{not json", ctx())
    assert decision.allowed is False
    assert decision.reason.startswith("The trust policy is malformed")


def test_unknown_operator_is_false() -> None:
    doc = policy({"StringEqualz": {f"{KEY}:sub": SUB}})
    decision = evaluate_trust_policy(doc, ctx())
    assert decision.allowed is False
    assert "unknown or not supported" in (decision.failures[0].hint or "")


def test_unsupported_claim_key_is_missing() -> None:
    doc = policy({"StringEquals": {f"{KEY}:scope": "read"}})
    decision = evaluate_trust_policy(doc, ctx(scope="read"))
    assert decision.allowed is False
    assert decision.failures[0].actual is None
    assert "does not put the 'scope' claim" in (decision.failures[0].hint or "")


def test_string_equals_with_star_is_literal() -> None:
    doc = policy({"StringEquals": {f"{KEY}:sub": "system:serviceaccount:team-a:*"}})
    decision = evaluate_trust_policy(doc, ctx())
    assert decision.allowed is False
    assert "use StringLike" in (decision.failures[0].hint or "")


def test_all_failing_keys_reported_and_explained() -> None:
    doc = policy({"StringEquals": {f"{KEY}:sub": "system:serviceaccount:a:b", f"{KEY}:aud": "x"}})
    decision = evaluate_trust_policy(doc, ctx())
    assert [f.key for f in decision.failures] == [f"{KEY}:sub", f"{KEY}:aud"]
    assert isinstance(decision.failures[1], ConditionFailure)
    text = decision.explain()
    assert text.count("is false:") == 2
    assert "expected: ['x']" in text and "actual:   ['sts.amazonaws.com']" in text


def test_no_allow_statement() -> None:
    doc = policy(Effect="Deny")
    decision = evaluate_trust_policy(doc, ctx())
    assert decision.allowed is False
    assert decision.explicit_deny is True
