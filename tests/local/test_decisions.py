"""The per-scenario issuer check of tests/e2e/test_foreign_issuer_cluster.py, which needs a
cluster to run: here on decision logs built by hand, as they accumulate over a module."""

from __future__ import annotations

import pytest

from crossfed.decisions import Decision, scenario_saw_issuer

pytestmark = [pytest.mark.local]
CLUSTER = "https://kubernetes.default.svc.cluster.local"
OTHER = "https://127.0.0.1:8443"


def _decision(target: str, issuer: str) -> Decision:
    return Decision("r", "AssumeRoleWithWebIdentity", target, {"iss": issuer}, allowed=True)


def test_a_later_scenario_is_judged_on_its_own_decisions() -> None:
    # The first scenario's token named the cluster's issuer; the second's did not.
    log = [_decision("role-1", CLUSTER), _decision("role-2", OTHER)]
    assert any(d.token.get("iss") == CLUSTER for d in log)  # the old check: true regardless
    assert scenario_saw_issuer(log, CLUSTER, {"role-1"}, start=0)
    assert not scenario_saw_issuer(log, CLUSTER, {"role-2"}, start=1)


def test_only_decisions_since_the_scenario_began_count() -> None:
    # The same target reused by a later scenario: what it saw before it began does not count.
    log = [_decision("role-1", CLUSTER), _decision("role-1", OTHER)]
    assert not scenario_saw_issuer(log, CLUSTER, {"role-1"}, start=1)
    assert scenario_saw_issuer([*log, _decision("role-1", CLUSTER)], CLUSTER, {"role-1"}, 1)


def test_decisions_about_other_targets_do_not_count() -> None:
    log = [_decision("role-1", OTHER), _decision("client-9", CLUSTER)]
    assert not scenario_saw_issuer(log, CLUSTER, {"role-1"})
    assert scenario_saw_issuer(log, CLUSTER, {"role-1", "client-9"})
    assert not scenario_saw_issuer([], CLUSTER, {"role-1"})
