"""The run report (issue 14): each scenario's account, the chain it met, JUnit properties and
the self-contained HTML page, rendered by a real browser (Debian's chromium, headless)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import pytest

from crossfed.report.account import Link, ScenarioAccount, Step
from crossfed.report.chain import chain_for
from crossfed.report.html import render
from tests.local import browser

pytestmark = [pytest.mark.local]
ROOT = Path(__file__).resolve().parents[2]
ALLOWED = {"aws": {"boto3": {"caller_identity": {"ok": True, "arn": "arn:x"},
                             "list_bucket": {"ok": True, "keys": ["k"]}}}}
DENIED_AT_EXCHANGE = {"aws": {"boto3": {
    "caller_identity": {"ok": False, "error_code": "InvalidIdentityToken"},
    "list_bucket": {"ok": False, "error_code": "InvalidIdentityToken"}}}}
AUDIENCE = SimpleNamespace(check="audience", code="InvalidIdentityToken",
                           detail="token aud is not among the provider's client IDs\nmore")


def outcomes(links: list[Link]) -> list[str]:
    return [link.outcome for link in links]


def test_an_allowed_chain_holds_at_every_link():
    links, check, fix = chain_for("aws", ALLOWED, [], passed=True)
    assert [link.name for link in links] == ["issuer", "token claims", "STS exchange",
                                             "identity", "S3 resource"]
    assert outcomes(links) == ["passed"] * 5 and (check, fix) == ("", "")


def test_an_expected_denial_marks_its_link_denied_and_the_rest_not_reached():
    links, check, fix = chain_for("aws", DENIED_AT_EXCHANGE, [AUDIENCE], passed=True)
    assert outcomes(links) == ["passed", "denied", "not reached", "not reached", "not reached"]
    assert links[1].check == "audience" and (check, fix) == ("", "")


def test_a_failing_link_carries_the_check_and_the_fix():
    links, check, fix = chain_for("aws", DENIED_AT_EXCHANGE, [AUDIENCE], passed=False)
    assert outcomes(links)[1] == "failed" and check == "audience"
    assert fix == "token aud is not among the provider's client IDs\\nmore".replace("\\n", "\n")


@pytest.mark.parametrize("denial, link", [("keys", 0), ("trust_policy", 2), ("expiry", 1)])
def test_each_check_belongs_to_its_link(denial, link):
    decision = SimpleNamespace(check=denial, code="X", detail="why")
    links, _, _ = chain_for("aws", DENIED_AT_EXCHANGE, [decision], passed=False)
    assert [i for i, one in enumerate(links) if one.outcome == "failed"] == [link]


def test_a_denial_that_never_came_fails_the_link_that_should_have_refused():
    links, check, fix = chain_for("azure", {"azure": {"workload": {
        "token": {"ok": True}, "secret": {"ok": True}}}}, [], passed=False,
        expected_check="issuer", failure="plan 'x' (AADSTS700211 expected): token ok")
    assert outcomes(links)[0] == "failed" and check == "issuer"
    assert "AADSTS700211 expected" in fix


def test_a_resource_refusal_fails_the_resource_link():
    report = {"aws": {"cli": {"caller_identity": {"ok": True},
                              "list_bucket": {"ok": False, "error_code": "AccessDenied"}}}}
    links, check, _ = chain_for("aws", report, [], passed=False, failure="listing expected")
    assert outcomes(links) == ["passed"] * 4 + ["failed"] and check == "AccessDenied"


def account(name: str, env: str, outcome: str, **fields: object) -> ScenarioAccount:
    return ScenarioAccount(f"tests/x.py::{name}[{env}]", env, outcome=outcome, direction="aws",
                           steps=[Step("apply", 0.0, 0.5, "passed")], **fields)


def test_the_page_is_self_contained_and_escapes_what_it_shows():
    page = render([account("test_a", "process", "passed"),
                   account("test_b", "process", "failed", failed_check="audience",
                           fix="<script>alert(1)</script>",
                           chain=[Link("issuer", "failed", "keys", "x")])], ["crossfed: ok"])
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # no fetch
    assert "<svg" in page and 'id="cell-aws-test-b-process"' in page


def test_an_account_survives_json():
    one = account("test_a", "kind", "failed", chain=[Link("issuer", "failed", "keys", "fix")])
    again = ScenarioAccount.from_json(one.to_json())
    assert again == one


class Cells(HTMLParser):
    """The text of each element with an id, as the browser's DOM has it."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str | None] = []
        self.text: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        if tag in ("br", "meta", "img", "input"):  # void elements: no end tag
            return
        self.stack.append(dict(attrs).get("id"))

    def handle_startendtag(self, tag, attrs):
        pass  # <rect/>, <line/>: nothing opens

    def handle_endtag(self, tag):
        if self.stack:
            self.stack.pop()

    def handle_data(self, data):
        for name in filter(None, self.stack):
            self.text[name] = self.text.get(name, "") + data


SCENARIOS = '''
import pytest
from crossfed.plan import Expectation
from crossfed.suite.plans import AWS_ALLOWED, AWS_DENIED

pytestmark = [pytest.mark.aws]
AUDIENCE = next(p for p in AWS_DENIED if p.expect.failed_check == "audience")


def test_allowed(federation):
    federation.check(AWS_ALLOWED)


def test_denied_as_expected(federation):
    federation.check(AUDIENCE)


def test_expects_allowed_but_the_audience_is_wrong(federation):
    federation.check(AUDIENCE.but(expect=Expectation()))
'''


def test_the_browser_shows_the_failing_check_and_its_fix_in_its_cell(tmp_path: Path):
    if browser.chromium() is None:
        pytest.skip("chromium not found: apt-get install chromium (the report's browser test)")
    (tmp_path / "test_scenarios.py").write_text(SCENARIOS)
    report, junit = tmp_path / "report.html", tmp_path / "junit.xml"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "test_scenarios.py",
         "--crossfed-env", "process", "--crossfed-report", str(report), "--junitxml",
         str(junit)], cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={k: v for k, v in os.environ.items() if not k.startswith("CROSSFED_")})
    assert done.returncode == 1, done.stdout[-3000:]  # the one failing scenario
    assert f"crossfed: run report: {report}" in done.stdout
    # JUnit: the account as properties of each testcase
    cases = {case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
             for case in ET.parse(junit).iter("testcase")}
    failing = cases["test_expects_allowed_but_the_audience_is_wrong[process]"]
    assert failing["crossfed.environment"] == "process"
    assert failing["crossfed.failed_check"] == "audience"
    assert "client IDs" in failing["crossfed.fix"]
    assert float(failing["crossfed.step.apply.seconds"]) > 0
    assert json.loads(failing["crossfed.account"])["chain"][1]["outcome"] == "failed"
    assert cases["test_allowed[process]"]["crossfed.outcome"] == "passed"
    # the page as chromium rendered it
    cells = Cells()
    cells.feed(browser.rendered_dom(report, tmp_path / "profile"))
    cell = cells.text["cell-aws-test-expects-allowed-but-the-audience-is-wrong-process"]
    assert "failed" in cell and "check: audience" in cell
    assert "fix: token aud" in cell and "client IDs" in cell
    passed = cells.text["cell-aws-test-allowed-process"]
    assert "passed" in passed and "check:" not in passed
    assert "denied at check audience" in cells.text[
        "scenario-test-scenarios-py-test-denied-as-expected-process"]
    artifacts = Path(os.environ.get("CROSSFED_ARTIFACTS", tmp_path / "artifacts"))
    shot = browser.screenshot(report, artifacts / "browser-test-report.png", tmp_path / "profile")
    assert shot.stat().st_size > 10_000


def _described(failure: str, report: dict) -> ScenarioAccount:
    from crossfed.report.describe import describe
    from crossfed.scenario import ScenarioRun
    from crossfed.suite.plans import AZURE_ALLOWED
    from crossfed.workload.process import ProbeResult

    run = ScenarioRun(AZURE_ALLOWED, result=ProbeResult(report, 1, "", {
        "AZURE_FEDERATED_TOKEN_FILE": "/var/run/secrets/azure/tokens/azure-identity-token"}))
    account = ScenarioAccount("t.py::test_x[process]", "process")
    describe(account, SimpleNamespace(name="process", versions="azwi=v1.6.0"), run,
             passed=False, failure=failure)
    return account


def test_a_drifted_mutation_is_the_failed_check_and_its_step_fails():
    held = {"azure": {"workload": {"token": {"ok": True}, "secret": {"ok": True}}}}
    account = _described(
        "plan 'azure-allowed' (kubeconfig): the pod's mutation differs from the contract of "
        "eks=v0.6.17,azwi=v1.6.0 (the webhook changed behaviour, or crossfed's contract is "
        "out of date):\n  container probe: env AZURE_FEDERATED_TOKEN_FILE: webhook set \"a\", "
        "contract expects \"b\"", held)
    assert account.failed_check == "contract drift (the pod's mutation)"
    assert account.fix.startswith("container probe: env AZURE_FEDERATED_TOKEN_FILE")
    assert outcomes(account.chain) == ["passed"] * 5  # the chain held on what the pod got
    mutation = next(s for s in account.steps if s.name == "mutation received")
    assert mutation.outcome == "failed" and "AZURE_FEDERATED_TOKEN_FILE" in mutation.detail


def test_a_workload_that_missed_its_success_condition_names_the_diagnosis():
    account = _described(
        "plan 'our-app': workload x.yaml did not meet its success condition (exit code 0):\n"
        "  exit code 1, expected 0\n  diagnosis: token file /var/run/secrets/azure/tokens/"
        "azure-identity-token does not exist: read AZURE_FEDERATED_TOKEN_FILE", {"ok": False})
    assert account.failed_check == "workload success condition"
    assert account.fix.startswith("diagnosis: token file") and "AZURE_FEDERATED" in account.fix
