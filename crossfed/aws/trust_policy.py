"""Evaluate an IAM role trust policy for sts:AssumeRoleWithWebIdentity, as AWS does.

Plain functions over plain data: the verifying STS calls this after the token is verified,
because moto never evaluates trust policies for web identity (facts file, section 6).

Semantics follow the IAM User Guide (condition operators, multivalued keys, evaluation
logic; facts file section 3). Choices where AWS documents nothing, or where this stand-in
deliberately does less, are marked CHOICE in comments:

- Only `<provider>:aud`, `:sub`, `:amr` and `:azp` are in the request context (no `aws:*`
  global keys, no `:oaud`), so conditions on anything else see a missing key.
- Only the string operators and `Null` are implemented; any other operator (Bool, Numeric*,
  Arn*, a misspelling) makes its condition false. Operator names are matched as AWS spells
  them (case-sensitive); condition key names are case-insensitive, as documented.
- Policy variables (`${...}`) are not expanded; they compare literally.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import unquote

WEB_IDENTITY_ACTION = "sts:AssumeRoleWithWebIdentity"
# Claims AWS copies into the request context for a generic OIDC provider (UG condition keys).
CONTEXT_CLAIMS = ("aud", "sub", "amr", "azp")
SA_PREFIX = "system:serviceaccount:"
SET_PREFIXES = ("ForAnyValue:", "ForAllValues:")


def _as_strings(value: Any) -> list[str]:
    """Claim or policy values as the strings IAM compares (JSON booleans as true/false)."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [s for item in value for s in _as_strings(item)]
    if isinstance(value, bool):
        return ["true" if value else "false"]
    return [str(value)]


@dataclass(frozen=True)
class WebIdentityContext:
    provider_arn: str
    provider_key: str
    claims: Mapping[str, Any]
    action: str = WEB_IDENTITY_ACTION

    def context_keys(self) -> dict[str, list[str]]:
        """Request-context keys (lower-cased, since key names are case-insensitive)."""
        prefix = self.provider_key.lower()
        keys: dict[str, list[str]] = {}
        for claim in CONTEXT_CLAIMS:
            values = _as_strings(self.claims.get(claim))
            # CHOICE: an empty list (e.g. "amr": []) counts as absent, which is what
            # ForAllValues/ForAnyValue treat alike anyway ("missing or empty").
            if values:
                keys[f"{prefix}:{claim}"] = values
        return keys


@dataclass(frozen=True)
class ConditionFailure:
    operator: str
    key: str
    expected: list[str]
    actual: list[str] | None
    hint: str | None


@dataclass(frozen=True)
class TrustDecision:
    allowed: bool
    reason: str
    explicit_deny: bool
    # Failed conditions of Allow statements whose principal and action matched; empty when
    # allowed (nothing to diagnose) and when no such statement exists.
    failures: list[ConditionFailure]

    def explain(self) -> str:
        lines = [("ALLOWED: " if self.allowed else "DENIED: ") + self.reason]
        for failure in self.failures:
            actual = "absent from the request" if failure.actual is None else failure.actual
            lines.append(f"  condition {failure.operator} on {failure.key!r} is false:")
            lines.append(f"    expected: {failure.expected}")
            lines.append(f"    actual:   {actual}")
            if failure.hint:
                lines.append(f"    hint: {failure.hint}")
        return "\n".join(lines)


# --- matching primitives -----------------------------------------------------------------


@lru_cache(maxsize=512)
def _glob(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    # Only * and ? are special in IAM; everything else (., +, [, ...) is literal.
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(body, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _like(actual: str, pattern: str, ignore_case: bool = False) -> bool:
    return _glob(pattern, ignore_case).fullmatch(actual) is not None


Matcher = Callable[[str, str], bool]  # (request value, policy value) -> match

# base operator -> (negated, matcher); the negated ones match when NO policy value matches.
_STRING_OPERATORS: dict[str, tuple[bool, Matcher]] = {
    "StringEquals": (False, lambda a, e: a == e),
    "StringNotEquals": (True, lambda a, e: a == e),
    "StringEqualsIgnoreCase": (False, lambda a, e: a.casefold() == e.casefold()),
    "StringNotEqualsIgnoreCase": (True, lambda a, e: a.casefold() == e.casefold()),
    "StringLike": (False, lambda a, e: _like(a, e)),
    "StringNotLike": (True, lambda a, e: _like(a, e)),
}


@dataclass(frozen=True)
class _Operator:
    written: str
    set_op: str | None  # "ForAnyValue" / "ForAllValues"
    base: str
    if_exists: bool

    @property
    def known(self) -> bool:
        if self.base == "Null":  # Null takes neither IfExists nor a set prefix
            return not self.if_exists and self.set_op is None
        return self.base in _STRING_OPERATORS

    @property
    def negated(self) -> bool:
        return self.base in _STRING_OPERATORS and _STRING_OPERATORS[self.base][0]


def _parse_operator(written: str) -> _Operator:
    set_op, rest = None, written
    for prefix in SET_PREFIXES:
        if written.startswith(prefix):
            set_op, rest = prefix[:-1], written[len(prefix) :]
    if_exists = rest.endswith("IfExists")
    base = rest[: -len("IfExists")] if if_exists else rest
    return _Operator(written, set_op, base, if_exists)


def _null_holds(expected: list[str], actual: list[str] | None) -> bool:
    # "true" = the key must be absent, "false" = it must be present; several values OR.
    present = actual is not None
    wanted = {"true": False, "false": True}
    return any(wanted.get(e.lower()) is present for e in expected)


def _condition_holds(op: _Operator, expected: list[str], actual: list[str] | None) -> bool:
    if not op.known:
        return False  # CHOICE: unknown/unsupported operator never holds (fails closed)
    if op.base == "Null":
        return _null_holds(expected, actual)
    negated, match = _STRING_OPERATORS[op.base]
    if actual is None:
        if op.set_op == "ForAllValues":
            return True  # documented: true when the key is missing or empty
        if op.if_exists:
            return True
        if op.set_op == "ForAnyValue":
            return False  # documented: false when the key is missing
        return negated  # missing key: non-negated false, negated true

    def hit(value: str) -> bool:
        return any(match(value, e) for e in expected)

    if op.set_op == "ForAnyValue":
        return any(hit(v) != negated for v in actual)
    if op.set_op == "ForAllValues":
        return all(hit(v) != negated for v in actual)
    # CHOICE: no set prefix but several request values (a list `aud`, `amr`): AWS says to use
    # a set operator and documents nothing else, so a plain operator is treated as
    # any-match, and its negation as "no request value matches any policy value".
    any_hit = any(hit(v) for v in actual)
    return not any_hit if negated else any_hit


# --- diagnosis hints ---------------------------------------------------------------------


def _split_sa(subject: str) -> tuple[str, str] | None:
    if not subject.startswith(SA_PREFIX):
        return None
    namespace, sep, name = subject[len(SA_PREFIX) :].partition(":")
    return (namespace, name) if sep else None


def _sa_hints(op: _Operator, expected: list[str], actual: list[str]) -> list[str]:
    """Say whether a subject mismatch is in the namespace or in the service-account name."""
    if op.base not in ("StringEquals", "StringLike", "StringEqualsIgnoreCase"):
        return []
    hints: list[str] = []
    for want in expected:
        for have in actual:
            w, h = _split_sa(want), _split_sa(have)
            if w is None or h is None:
                continue
            if op.base == "StringLike":
                same = [_like(h[i], w[i]) for i in (0, 1)]
            elif op.base == "StringEqualsIgnoreCase":
                same = [h[i].casefold() == w[i].casefold() for i in (0, 1)]
            else:
                same = [h[i] == w[i] for i in (0, 1)]
            if same == [True, False]:
                hints.append(
                    f"namespace matches but the service-account name differs: "
                    f"policy expects {w[1]!r}, token has {h[1]!r}"
                )
            elif same == [False, True]:
                hints.append(
                    f"service-account name matches but the namespace differs: "
                    f"policy expects {w[0]!r}, token has {h[0]!r}"
                )
    return hints


def _hint(
    op: _Operator,
    key: str,
    expected: list[str],
    actual: list[str] | None,
    context: WebIdentityContext,
) -> str | None:
    hints: list[str] = []
    pk = context.provider_key
    provider, sep, claim = key.rpartition(":")
    claim_l = claim.lower()

    if not op.known:
        hints.append(
            f"operator {op.written!r} is unknown or not supported here, so it is evaluated "
            "as false (supported: String*, their IfExists forms, ForAnyValue:/ForAllValues:, "
            "Null)"
        )
    if not sep:
        hints.append(f"{key!r} has no provider prefix; keys look like {pk}:sub")
    elif provider.lower() in ("aws", "sts"):
        if actual is None:
            hints.append(
                f"{key!r} is not in this stand-in's web-identity request context; only "
                f"{pk}:aud, :sub, :amr and :azp are"
            )
    elif provider.lower() != pk.lower():
        hints.append(
            f"the key names provider {provider!r} but the token came from {pk!r} (a policy "
            f"written for another issuer?); did you mean {pk}:{claim}?"
        )
    elif claim_l not in CONTEXT_CLAIMS and actual is None:
        hints.append(
            f"AWS does not put the {claim!r} claim in the request context (only aud, sub, "
            "amr, azp; oaud for Google), so the key is always missing"
        )
    elif actual is None:
        hints.append(f"the token has no {claim!r} claim")

    audiences = _as_strings(context.claims.get("aud"))
    subjects = _as_strings(context.claims.get("sub"))
    if claim_l == "sub":
        for value in expected:
            if value in audiences or value == "sts.amazonaws.com" or value.startswith("api://"):
                hints.append(
                    f"{value!r} is an audience value put under the :sub key; did you mean {pk}:aud?"
                )
                break
        if actual is not None and not op.negated:
            hints.extend(_sa_hints(op, expected, actual))
    elif claim_l == "aud":
        for value in expected:
            if value.startswith(SA_PREFIX) or value in subjects:
                hints.append(
                    f"{value!r} is a subject value put under the :aud key; did you mean {pk}:sub?"
                )
                break

    if op.base in ("StringEquals", "StringNotEquals") and any("*" in e for e in expected):
        hints.append(f"{op.base} compares literally, '*' is no wildcard there; use StringLike")
    if op.base == "StringEquals" and actual is not None:
        folded = {a.casefold() for a in actual}
        if any(e.casefold() in folded for e in expected):
            hints.append("the values differ only in case; StringEquals is case-sensitive")
    if op.set_op == "ForAnyValue" and actual is None and not op.if_exists:
        hints.append("ForAnyValue is false when the key is missing from the request")
    return "; ".join(hints) or None


# --- statements --------------------------------------------------------------------------


def _names_principal(principal: Any, arn: str) -> bool:
    if principal == "*":
        return True
    if not isinstance(principal, Mapping):
        return False
    for kind, values in principal.items():
        names = _as_strings(values)
        if kind == "AWS" and "*" in names:
            return True  # {"AWS": "*"} is everyone, federated users included
        if kind == "Federated" and arn in names:
            return True
    return False  # "Service"/"AWS" principals never name a web-identity caller


def _principal_matches(statement: Mapping[str, Any], arn: str) -> bool:
    if "Principal" in statement:
        return _names_principal(statement["Principal"], arn)
    if "NotPrincipal" in statement:
        return not _names_principal(statement["NotPrincipal"], arn)
    return False  # a trust-policy statement without a principal applies to nobody


def _action_matches(statement: Mapping[str, Any], action: str) -> bool:
    # Action names are case-insensitive in IAM; * and ? are wildcards.
    if "Action" in statement:
        return any(_like(action, a, ignore_case=True) for a in _as_strings(statement["Action"]))
    if "NotAction" in statement:
        patterns = _as_strings(statement["NotAction"])
        return not any(_like(action, a, ignore_case=True) for a in patterns)
    return False


def _condition_failures(condition: Any, context: WebIdentityContext) -> list[ConditionFailure]:
    """All false (operator, key) pairs of a Condition block; empty means the block holds."""
    if condition is None:
        return []
    if not isinstance(condition, Mapping):
        return [ConditionFailure("Condition", "", [], None, "Condition is not a JSON object")]
    request = context.context_keys()
    failures: list[ConditionFailure] = []
    for written, keys in condition.items():
        op = _parse_operator(str(written))
        if not isinstance(keys, Mapping):
            failures.append(
                ConditionFailure(op.written, "", [], None, "operator value is not an object")
            )
            continue
        for key, raw in keys.items():
            expected = _as_strings(raw)
            actual = request.get(str(key).lower())  # key names are case-insensitive
            if not _condition_holds(op, expected, actual):
                hint = _hint(op, str(key), expected, actual, context)
                failures.append(ConditionFailure(op.written, str(key), expected, actual, hint))
    return failures


@dataclass(frozen=True)
class _Outcome:
    label: str
    effect: str
    principal: bool
    action: bool
    failures: list[ConditionFailure]

    @property
    def applies(self) -> bool:
        return self.principal and self.action and not self.failures


def _label(index: int, statement: Mapping[str, Any]) -> str:
    sid = statement.get("Sid")
    return f"statement {index}" + (f" (Sid {sid!r})" if sid else "")


def _load_statements(policy: Mapping[str, Any] | str | bytes) -> list[Mapping[str, Any]]:
    if isinstance(policy, bytes):
        policy = policy.decode("utf-8")
    if isinstance(policy, str):
        try:
            policy = json.loads(policy)
        except json.JSONDecodeError:
            # IAM's GetRole hands the document back URL-encoded; accept that form too.
            if "%" not in policy:
                raise
            policy = json.loads(unquote(policy))
    if not isinstance(policy, Mapping) or "Statement" not in policy:
        raise ValueError("trust policy has no Statement")
    statements = policy["Statement"]
    if isinstance(statements, Mapping):
        statements = [statements]
    if not isinstance(statements, list):
        raise ValueError("trust policy Statement is neither an object nor a list")
    return [s for s in statements if isinstance(s, Mapping)]


def _principals_named(outcomes: Iterable[tuple[_Outcome, Mapping[str, Any]]]) -> list[str]:
    named: list[str] = []
    for _, statement in outcomes:
        principal = statement.get("Principal", statement.get("NotPrincipal"))
        if isinstance(principal, Mapping):
            for kind, values in principal.items():
                named += [f"{kind} {v}" for v in _as_strings(values)]
        elif principal is not None:
            named += _as_strings(principal)
    return named


def evaluate_trust_policy(
    policy: Mapping[str, Any] | str, context: WebIdentityContext
) -> TrustDecision:
    """Decide whether the trust policy lets this web identity assume the role."""
    try:
        statements = _load_statements(policy)
    except (ValueError, TypeError) as exc:  # JSONDecodeError is a ValueError
        # Real IAM refuses such a document at CreateRole; moto does not, so deny here.
        return TrustDecision(False, f"The trust policy is malformed: {exc}.", False, [])

    evaluated: list[tuple[_Outcome, Mapping[str, Any]]] = []
    for index, statement in enumerate(statements, start=1):
        principal = _principal_matches(statement, context.provider_arn)
        action = _action_matches(statement, context.action)
        # Conditions only matter (and are only diagnosed) once principal and action match.
        failures = (
            _condition_failures(statement.get("Condition"), context) if principal and action else []
        )
        outcome = _Outcome(
            _label(index, statement), str(statement.get("Effect")), principal, action, failures
        )
        evaluated.append((outcome, statement))

    for outcome, _ in evaluated:
        if outcome.effect == "Deny" and outcome.applies:
            reason = (
                f"Explicitly denied by {outcome.label}, whose principal, action and conditions "
                "all match; an explicit Deny wins over any Allow."
            )
            return TrustDecision(False, reason, True, [])

    allows = [(o, s) for o, s in evaluated if o.effect == "Allow"]
    for outcome, _ in allows:
        if outcome.applies:
            return TrustDecision(True, f"Allowed by {outcome.label}.", False, [])

    arn, action = context.provider_arn, context.action
    by_principal = [(o, s) for o, s in allows if o.principal]
    by_action = [(o, s) for o, s in by_principal if o.action]
    if not allows:
        reason = "No statement allowed: the trust policy has no Allow statement."
    elif not by_principal:
        names = ", ".join(_principals_named(allows)) or "no principal"
        reason = (
            f"No statement allowed: principal mismatch, no Allow statement names {arn} "
            f"(they name: {names})."
        )
    elif not by_action:
        actions = sorted(
            {a for _, s in by_principal for a in _as_strings(s.get("Action", s.get("NotAction")))}
        )
        reason = (
            f"No statement allowed: action mismatch, no Allow statement for {arn} covers "
            f"{action} (they list: {', '.join(actions) or 'no action'})."
        )
    else:
        parts = [
            f"{o.label} ({', '.join(f'{f.operator} {f.key}' for f in o.failures)})"
            for o, _ in by_action
        ]
        reason = (
            f"No statement allowed: conditions, every Allow statement for {arn} and {action} "
            f"has a false condition: {'; '.join(parts)}."
        )
    failures = [f for o, _ in by_action for f in o.failures]
    return TrustDecision(False, reason, False, failures)
