"""Webhook versions of the upgrade flow: parsing, what each version's contract shows, the
contract diff, and the flow's ordering and summary (crossfed.upgrade_flow)."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest

from crossfed.upgrade_flow import (
    before_after_table,
    chosen_versions,
    order_items,
    phase_names,
    split,
    summary_lines,
    versions_for,
)
from crossfed.webhooks.versions import VersionError, WebhookVersions, contract_diff

pytestmark = [pytest.mark.local]
OLD = WebhookVersions("v0.5.2", "v1.5.1")
NEW = WebhookVersions("v0.6.17", "v1.6.0")


def test_parse_names_each_webhook_and_keeps_the_others_version():
    assert WebhookVersions.parse("eks=v0.5.2,azwi=v1.6.0") == WebhookVersions("v0.5.2", "v1.6.0")
    assert WebhookVersions.parse("azwi=v1.6.0") == WebhookVersions(azwi="v1.6.0")
    assert WebhookVersions.parse("eks=master", base=OLD) == WebhookVersions("master", "v1.5.1")
    assert WebhookVersions.parse("") == WebhookVersions()
    assert str(OLD) == "eks=v0.5.2,azwi=v1.5.1"


@pytest.mark.parametrize("text, words", [
    ("eks=v0.7.0", "v0.2.0 to v0.6.17 and master"),
    ("eks=0.5.2", "give the tag"),
    ("eks=v0.1.9", "v0.2.0 to v0.6.17"),
    ("azwi=v1.4.0", "v1.5.0, v1.5.1, v1.6.0"),
    ("istio=1.0", "WEBHOOK one of eks, azwi"),
    ("eks", "WEBHOOK=VERSION"),
    ("eks=", "WEBHOOK=VERSION"),
])
def test_versions_crossfed_does_not_model_are_refused_with_what_it_does(text, words):
    with pytest.raises(VersionError, match=words.replace(".", r"\.")):
        WebhookVersions.parse(text)


def test_the_versions_give_the_contracts_the_mutator_and_process_use():
    assert OLD.eks_settings().version == "v0.5.2" and OLD.eks_settings().min_expiration == 3600
    assert NEW.eks_settings().min_expiration == 600
    assert OLD.azwi_contract().token_path == "/var/run/secrets/azure/tokens/azure-identity-token"
    assert NEW.azwi_contract().token_path == (
        "/var/run/secrets/azure/wi/token/azure-identity-token")


def test_the_contract_diff_names_what_moves_and_what_stays():
    lines = contract_diff(OLD, NEW)
    assert "eks v0.5.2 -> v0.6.17: expiration minimum: 3600 -> 600" in lines
    assert ("eks v0.5.2 -> v0.6.17: sidecar init containers (restartPolicy Always): "
            "restartPolicy dropped -> kept") in lines
    assert ("azwi v1.5.1 -> v1.6.0: token path: /var/run/secrets/azure/tokens/"
            "azure-identity-token -> /var/run/secrets/azure/wi/token/azure-identity-token"
            ) in lines
    assert ("azwi v1.5.1 -> v1.6.0: env values: AZURE_FEDERATED_TOKEN_FILE /var/run/secrets/"
            "azure/tokens/azure-identity-token -> /var/run/secrets/azure/wi/token/"
            "azure-identity-token") in lines
    assert "azwi v1.5.1 -> v1.6.0: mount path: /var/run/secrets/azure/tokens -> " \
           "/var/run/secrets/azure/wi" in lines
    assert "azwi v1.5.1 -> v1.6.0: same-named volume or mount: kept -> replaced" in lines
    unchanged = [line for line in lines if "unchanged:" in line]
    assert len(unchanged) == 2 and "env names" in unchanged[1] and "audience" in unchanged[1]
    assert not any("audience:" in line for line in lines)  # the audience does not change


def test_a_webhook_whose_version_stays_has_no_diff():
    lines = contract_diff(OLD, WebhookVersions("v0.5.2", "v1.6.0"))
    assert lines[0] == "eks: v0.5.2 kept, contract unchanged"
    assert all(line.startswith("azwi") for line in lines[1:])
    assert contract_diff(NEW, NEW) == ["eks: v0.6.17 kept, contract unchanged",
                                       "azwi: v1.6.0 kept, contract unchanged"]


def options(**given):
    values = {"--webhook-versions": None, "--upgrade-webhooks-to": None, **given}
    return values.get


def test_chosen_versions_and_phases():
    assert chosen_versions(options()) == (WebhookVersions(), None)
    first, upgrade = chosen_versions(options(**{"--webhook-versions": "eks=v0.5.2",
                                                "--upgrade-webhooks-to": "azwi=v1.6.0"}))
    assert first == WebhookVersions(eks="v0.5.2")
    assert upgrade == WebhookVersions("v0.5.2", "v1.6.0")  # eks stays where it was
    assert versions_for("before", first, upgrade) == first
    assert versions_for("after", first, upgrade) == upgrade
    assert versions_for(None, first, None) == first
    assert phase_names("kind", True) == ["kind@before", "kind@after"]
    assert phase_names("kind", False) == ["kind"]
    assert split("kubeconfig@after") == ("kubeconfig", "after") and split("process") == (
        "process", None)
    with pytest.raises(pytest.UsageError, match="the same versions"):
        chosen_versions(options(**{"--upgrade-webhooks-to": "eks=v0.6.17"}))
    with pytest.raises(pytest.UsageError, match="crossfed: azwi=v9"):
        chosen_versions(options(**{"--upgrade-webhooks-to": "azwi=v9"}))


def item(name, env, kept=False):
    return SimpleNamespace(name=name, callspec=SimpleNamespace(params={
        "crossfed_env_name": env}), get_closest_marker=lambda mark: kept or None)


def test_each_environment_runs_all_its_before_scenarios_then_all_after():
    items = [item("kept", "process@before", kept=True), item("kept", "process@after", kept=True),
             item("a", "process@before"), item("a", "process@after"),
             item("b", "process@before"), item("b", "process@after"),
             item("a", "kubeconfig@before"), item("a", "kubeconfig@after"),
             SimpleNamespace(name="plain", callspec=None)]
    order_items(items)  # type: ignore[arg-type]
    assert [(i.name, getattr(i.callspec, "params", {}).get("crossfed_env_name"))
            for i in items] == [
        ("plain", None), ("a", "process@before"), ("b", "process@before"),
        ("kept", "process@before"), ("kept", "process@after"),  # around the upgrade
        ("a", "process@after"), ("b", "process@after"), ("a", "kubeconfig@before"),
        ("a", "kubeconfig@after")]


def test_the_summary_prints_the_diff_once_and_only_with_an_upgrade():
    assert summary_lines(OLD, None) == []
    lines = summary_lines(OLD, NEW)
    assert lines[0] == ("webhook upgrade eks=v0.5.2,azwi=v1.5.1 -> eks=v0.6.17,azwi=v1.6.0, "
                        "contract diff:")
    assert lines[1:] == [f"  {line}" for line in contract_diff(OLD, NEW)]


def test_the_table_shows_each_scenario_before_and_after_and_marks_the_changed():
    outcomes = {"kind@before": [("allowed", "passed"), ("own-workload", "passed")],
                "kind@after": [("allowed", "passed"), ("own-workload", "failed")],
                "process": [("allowed", "passed")]}
    lines = before_after_table(outcomes)
    assert lines[0] == "kind: scenario by scenario, before -> after the upgrade (1 changed):"
    assert lines[1].split() == ["allowed", "passed", "->", "passed"]
    assert lines[2].split() == ["own-workload", "passed", "->", "failed", "<-", "changed"]
    assert len(lines) == 3  # process ran once: no table
    assert before_after_table({"process": [("allowed", "passed")]}) == []
    lines = before_after_table({"kind@before": [("kept", "passed")], "kind@after": []})
    assert lines[1].split() == ["kept", "passed", "->", "not", "run", "<-", "changed"]


def test_a_session_runs_the_scenarios_before_and_after_the_upgrade(tmp_path):
    """Two positive scenarios in the process environment on azwi v1.5.1 then v1.6.0: the token
    lies where each contract puts it; the summary counts each phase and prints the diff."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--pyargs",
         "crossfed.suite", "--crossfed-env", "process", "-k",
         "test_workload_reads_the_secret or test_workload_assumes_role_and_lists_bucket",
         "--webhook-versions", "eks=v0.5.2,azwi=v1.5.1",
         "--upgrade-webhooks-to", "eks=v0.6.17,azwi=v1.6.0"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    out = done.stdout
    assert done.returncode == 0, out[-3000:]
    assert "crossfed: process@before: 2 of 2 scenarios passed in processes" in out
    assert "crossfed: process@after: 2 of 2 scenarios passed in processes" in out
    assert out.count("contract diff:") == 1
    assert "azwi v1.5.1 -> v1.6.0: token path:" in out
    assert ("crossfed: process: scenario by scenario, before -> after the upgrade (0 changed):"
            in out)
    ids = [line for line in out.splitlines() if "PASSED" in line or "::" in line]
    assert not ids or all("@" in line for line in ids)


def test_bad_versions_are_a_usage_error(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--pyargs",
         "crossfed.suite", "--crossfed-env", "process", "--upgrade-webhooks-to", "azwi=v2.0.0"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 4, done.stdout + done.stderr
    assert "azwi=v2.0.0: crossfed models azure-workload-identity v1.5.0, v1.5.1, v1.6.0" in (
        done.stderr)
