"""Turns a probe report into a verdict, and a wrong outcome into a diagnosis.

The diagnosis comes from the stand-ins' decision logs (what was checked and why it failed),
so a red test says why without anyone re-running it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crossfed.decisions import Decision
from crossfed.plan import FederationPlan
from crossfed.redact import scrub_text
from crossfed.webhooks.azure_workload_identity import TOKEN_FILE as AZWI_TOKEN_FILE
from crossfed.webhooks.azure_workload_identity import Contract
from crossfed.workload.process import ProbeResult
from crossfed.workload.template import WorkloadTemplate

AWS_CLIENTS = ("boto3", "cli")


def explain(decisions: list[Decision], when_none: str) -> str:
    return "\n".join(d.explain() for d in decisions) if decisions else when_none


@dataclass
class AwsEvidence:
    role_arn: str
    role_name: str
    account_id: str
    object_key: str
    decisions: list[Decision]

    def diagnosis(self) -> str:
        return explain(self.decisions, "the verifying STS recorded no decision for this role")


class VerdictError(AssertionError):
    pass


def _show(step: dict[str, Any]) -> str:
    """One probe step as a report shows it, scrubbed: the probe's report is the pod's output
    (its logs or termination message), which may quote a token or credential."""
    if step.get("ok"):
        return scrub_text("ok " + str({k: v for k, v in step.items() if k != "ok"}))
    return scrub_text(f"{step.get('error_code')} in {step.get('operation') or '?'}: "
                      f"{step.get('message')}")


def aws_outcome_problems(plan: FederationPlan, report: dict[str, Any], role_name: str,
                         account_id: str, object_key: str,
                         clients: tuple[str, ...] = AWS_CLIENTS) -> list[str]:
    """What differs between each AWS client's outcome and the plan's expectation (empty: as
    expected). The diagnosis is the caller's: decision logs locally, the cloud's state else."""
    problems: list[str] = []
    expected_arn_prefix = f"arn:aws:sts::{account_id}:assumed-role/{role_name}/"
    reported = report.get("aws", {})
    for client in clients:
        result = reported.get(client)
        if result is None:
            problems.append(f"{client}: the probe reported nothing")
            continue
        identity, listing = result.get("caller_identity", {}), result.get("list_bucket", {})
        expect = plan.expect
        if expect.allowed or expect.step == "list":
            if not identity.get("ok") or not str(identity.get("arn", "")).startswith(
                    expected_arn_prefix):
                problems.append(f"{client}: get-caller-identity expected "
                                f"{expected_arn_prefix}*, got {_show(identity)}")
        elif identity.get("ok") or identity.get("error_code") != expect.error_code:
            problems.append(f"{client}: get-caller-identity expected {expect.error_code}, "
                            f"got {_show(identity)}")
        if expect.allowed:
            if not listing.get("ok") or object_key not in listing.get("keys", []):
                problems.append(f"{client}: listing expected {object_key}, "
                                f"got {_show(listing)}")
        elif expect.step == "list" and (listing.get("ok")
                                        or listing.get("error_code") != expect.error_code):
            problems.append(f"{client}: listing expected {expect.error_code}, "
                            f"got {_show(listing)}")
    return problems


def expectation(plan: FederationPlan) -> str:
    return "allowed" if plan.expect.allowed else str(plan.expect.error_code)


def check_aws(plan: FederationPlan, report: dict[str, Any], evidence: AwsEvidence) -> None:
    """Raise VerdictError unless every AWS client saw exactly the plan's expected outcome."""
    problems = aws_outcome_problems(plan, report, evidence.role_name, evidence.account_id,
                                    evidence.object_key)
    if not plan.expect.allowed and plan.expect.failed_check:
        checks = {d.check for d in evidence.decisions if not d.allowed}
        if plan.expect.failed_check not in checks:
            problems.append(f"diagnosis: expected the stand-in to name check "
                            f"'{plan.expect.failed_check}', it named {sorted(checks) or 'none'}")
    if problems:
        raise VerdictError(
            f"plan {plan.name!r} ({expectation(plan)} expected):\n  " + "\n  ".join(problems)
            + "\nstand-in diagnosis:\n" + evidence.diagnosis()
        )


AZURE_CREDENTIALS = ("workload", "default")


@dataclass
class AzureEvidence:
    client_id: str
    secret_sha256: str
    decisions: list[Decision]

    def diagnosis(self) -> str:
        return explain(self.decisions, "the Azure stand-ins recorded no decision for this "
                       "identity or vault")


def azure_outcome_problems(plan: FederationPlan, report: dict[str, Any], secret_sha256: str,
                           credentials: tuple[str, ...] | None = None) -> list[str]:
    """What differs between each credential's outcome and the plan's expectation."""
    problems: list[str] = []
    expect = plan.expect
    for kind in credentials or AZURE_CREDENTIALS:
        result = report.get("azure", {}).get(kind)
        if result is None:
            problems.append(f"{kind}: the probe reported nothing")
            continue
        token, secret = result.get("token", {}), result.get("secret", {})
        if expect.allowed or expect.step == "secret":
            if not token.get("ok"):
                problems.append(f"{kind}: token expected, got {_show(token)}")
        elif token.get("ok") or token.get("error_code") != expect.error_code:
            problems.append(f"{kind}: token expected {expect.error_code}, got {_show(token)}")
        if expect.allowed:
            if not secret.get("ok") or secret.get("sha256") != secret_sha256:
                problems.append(f"{kind}: secret with digest {secret_sha256[:12]}… "
                                f"expected, got {_show(secret)}")
        elif expect.step == "secret" and (secret.get("ok")
                                          or secret.get("error_code") != expect.error_code):
            problems.append(f"{kind}: secret read expected {expect.error_code}, "
                            f"got {_show(secret)}")
    return problems


def check_azure(plan: FederationPlan, report: dict[str, Any], evidence: AzureEvidence) -> None:
    """Raise VerdictError unless each credential saw exactly the plan's expected outcome."""
    expect = plan.expect
    problems = azure_outcome_problems(plan, report, evidence.secret_sha256)
    if not expect.allowed and expect.failed_check:
        checks = {d.check for d in evidence.decisions if not d.allowed}
        if expect.failed_check not in checks:
            problems.append(f"diagnosis: expected the stand-ins to name check "
                            f"'{expect.failed_check}', they named {sorted(checks) or 'none'}")
    if problems:
        raise VerdictError(
            f"plan {plan.name!r} ({expectation(plan)} expected):\n  " + "\n  ".join(problems)
            + "\nstand-in diagnosis:\n" + evidence.diagnosis()
        )


# -- a user's workload template in place of the probe -----------------------------------------

LEGACY_AZURE_TOKEN_PATH = "/var/run/secrets/azure/tokens/azure-identity-token"  # azwi v1.5.x


def moved_token_diagnosis(missing_paths: tuple[str, ...], contract: Contract,
                          token_path: str | None = None) -> str | None:
    """Why an Azure workload failed when its token is not where it looked: the file it tried
    (or, when its output names none, azwi v1.5.x's fixed path) does not exist while the
    contract's does. token_path: where the pod's token really is (AZURE_FEDERATED_TOKEN_FILE
    as the pod received it); default the contract's. None: nothing points at a moved token."""
    actual = token_path or contract.token_path
    tried = [p for p in missing_paths if p != actual
             and (p.startswith("/var/run/secrets/azure/") or p.endswith(f"/{AZWI_TOKEN_FILE}"))]
    fix = (f"azure-workload-identity {contract.version} mounts the token at {actual}; read the "
           f"path from {contract.token_env} instead of hard-coding it")
    if tried:
        return f"token file {tried[0]} does not exist: {fix}"
    if not missing_paths and actual != LEGACY_AZURE_TOKEN_PATH:
        return (f"if the workload reads the token from v1.5.x's {LEGACY_AZURE_TOKEN_PATH}: "
                f"that file does not exist, {fix}")
    return None


def template_problems(template: WorkloadTemplate, result: ProbeResult,
                      contract: Contract | None = None) -> list[str]:
    """What keeps a template's run from its success condition, and the diagnosis (empty:
    passed). contract: the Azure webhook contract the run had, for the moved-token check."""
    problems = template.success.problems(result.exit_code, result.stdout)
    if problems and contract is not None:
        diagnosis = moved_token_diagnosis(result.missing_paths, contract,
                                          result.env.get(contract.token_env))
        if diagnosis:
            problems.append("diagnosis: " + diagnosis)
    return problems


def check_template(name: str, template: WorkloadTemplate, result: ProbeResult,
                   contract: Contract | None = None) -> None:
    """Raise VerdictError unless the workload met its success condition; the message carries
    the diagnosis and the output's tails, scrubbed (the workload may print its token)."""
    problems = template_problems(template, result, contract)
    if problems:
        raise VerdictError(
            f"plan {name!r}: workload {template.source} did not meet its success condition "
            f"({template.success.describe()}):\n  " + "\n  ".join(problems)
            + "\nstdout (tail):\n" + scrub_text(result.stdout[-1500:])
            + "\nstderr (tail):\n" + scrub_text(result.stderr[-1500:]))
