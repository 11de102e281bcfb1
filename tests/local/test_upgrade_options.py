"""Options of the upgrade flow refused before anything starts (crossfed.upgrade_flow
.configuration_problem), and the refusal as pytest gives it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from crossfed.upgrade_flow import configuration_problem

pytestmark = [pytest.mark.local]
UP = {"--webhook-versions": "eks=v0.5.2,azwi=v1.5.1",
      "--upgrade-webhooks-to": "eks=v0.6.17,azwi=v1.6.0"}


def _options(**given: object):
    options = {k.replace("_", "-"): v for k, v in given.items()}

    def getoption(name: str) -> object:
        return options.get(name.lstrip("-"), options.get(name))

    return getoption


def problem(extra: dict[str, object], workers: int = 0) -> str | None:
    return configuration_problem(_options(**{**UP, **extra}), workers)


def test_the_reference_mutator_and_processes_take_any_modelled_version():
    assert problem({"--crossfed-env": ["process", "kubeconfig"]}) is None
    assert problem({"--crossfed-env": ["kind"], "--crossfed-webhooks": "reference",
                    "--webhook-versions": "eks=v0.5.4"}) is None


@pytest.mark.parametrize("extra", [
    {"--crossfed-env": ["kind"]},  # kind installs the real charts by default
    {"--crossfed-webhooks": "real"},
    {"--cloud": ["aws"], "--aks-context": "aks", "--install-webhooks": True},
])
def test_a_version_no_chart_ships_is_refused_where_crossfed_installs_charts(extra):
    found = problem({**extra, "--webhook-versions": "eks=v0.5.4,azwi=v1.5.1"})
    assert found is not None and "eks=v0.5.4: no amazon-eks-pod-identity-webhook chart" in found
    assert "--crossfed-webhooks reference" in found


def test_the_upgrade_target_is_checked_too():
    found = problem({"--crossfed-env": ["kind"], "--upgrade-webhooks-to": "eks=v0.5.3"})
    assert found is not None and "eks=v0.5.3" in found


def test_kind_with_the_real_charts_upgrades_under_one_process_only():
    assert problem({"--crossfed-env": ["kind"]}) is None
    found = problem({"--crossfed-env": ["kind"]}, workers=2)
    assert found is not None and "2 xdist workers" in found and "drop -n" in found
    assert problem({"--crossfed-env": ["kind"], "--crossfed-webhooks": "reference"},
                   workers=2) is None


def test_real_webhooks_crossfed_did_not_install_are_not_upgraded():
    found = problem({"--crossfed-env": ["kubeconfig"], "--crossfed-webhooks": "real"})
    assert found is not None and "does not upgrade them" in found
    found = problem({"--cloud": ["azure"], "--eks-context": "eks"})
    assert found is not None and "--install-webhooks" in found
    assert problem({"--cloud": ["azure"], "--eks-context": "eks",
                    "--install-webhooks": True}) is None
    assert problem({"--cloud": ["azure"], "--eks-context": "eks",
                    "--crossfed-webhooks": "reference"}) is None
    # without the upgrade, the user's own webhooks are just used
    assert configuration_problem(_options(**{"--cloud": ["azure"], "--eks-context": "eks"}),
                                 0) is None


def test_pytest_refuses_them_with_a_usage_error(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--pyargs",
         "crossfed.suite", "--crossfed-env", "kind", "--webhook-versions", "eks=v0.5.4",
         "--upgrade-webhooks-to", "eks=v0.6.17"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={k: v for k, v in os.environ.items() if not k.startswith("CROSSFED_")})
    assert done.returncode == 4, done.stdout + done.stderr
    assert "eks=v0.5.4: no amazon-eks-pod-identity-webhook chart" in done.stderr


def test_the_summary_says_which_tiers_ran():
    from crossfed.tiers import tier_lines

    outcomes = {"process": [("allowed", "passed")], "kubeconfig": [("allowed", "failed")],
                "kind": [("allowed", "skipped")]}
    lines = tier_lines(outcomes, _options())
    assert lines[0] == ("tiers: environments run: process (processes), kubeconfig (pods); "
                        "only skipped: kind")
    assert lines[1] == "tiers: clouds: crossfed's stand-ins, started by this run"
    assert lines[2] == ("tiers: webhooks: kubeconfig: reference mutator; versions "
                        "eks=v0.6.17,azwi=v1.5.1")
    only_processes = tier_lines({"process": [("allowed", "passed")]}, _options(**UP))
    assert only_processes[2] == ("tiers: webhooks: none (no pods); contracts "
                                 "eks=v0.5.2,azwi=v1.5.1 upgraded to eks=v0.6.17,azwi=v1.6.0")
    assert tier_lines({}, _options()) == []


def test_the_cloud_tier_names_its_endpoints(monkeypatch):
    from crossfed.tiers import tier_lines

    monkeypatch.delenv("AWS_ENDPOINT_URL_STS", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "https://127.0.0.1:4566")
    outcomes = {"cloud-cluster": [("allowed", "passed")]}
    lines = tier_lines(outcomes, _options(**{"--cloud": ["aws", "azure"]}))
    assert lines[1] == ("tiers: clouds: AWS at https://127.0.0.1:4566 (not the real cloud), "
                        "real Azure")
    assert lines[2].startswith("tiers: webhooks: cloud-cluster: real webhooks;")
