"""crossfed: prove cross-cloud OIDC workload identity federation end to end.

What a test in a user's repository needs is importable from here:

    from crossfed import AwsTarget, Federation, FederationPlan, ServiceAccountRef
    from crossfed.suite import AWS_ALLOWED, AWS_DENIED   # the standard scenario matrix

Names are resolved on first use (PEP 562), so that installing crossfed, whose pytest plugin is
imported by every pytest run in the environment, costs nothing until a test uses it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "FederationPlan": "crossfed.plan",
    "AwsTarget": "crossfed.plan",
    "AzureTarget": "crossfed.plan",
    "Expectation": "crossfed.plan",
    "STS_AUDIENCE": "crossfed.plan",
    "AZURE_AUDIENCE": "crossfed.plan",
    "ServiceAccountRef": "crossfed.issuer.tokens",
    "Federation": "crossfed.federation",
    "ScenarioRun": "crossfed.scenario",
    "VerdictError": "crossfed.verdict",
}
__all__ = ["AZURE_AUDIENCE", "STS_AUDIENCE", "AwsTarget", "AzureTarget", "Expectation",
           "Federation", "FederationPlan", "ScenarioRun", "ServiceAccountRef", "VerdictError",
           "suite"]

if TYPE_CHECKING:
    from crossfed import suite
    from crossfed.federation import Federation
    from crossfed.issuer.tokens import ServiceAccountRef
    from crossfed.plan import (
        AZURE_AUDIENCE,
        STS_AUDIENCE,
        AwsTarget,
        AzureTarget,
        Expectation,
        FederationPlan,
    )
    from crossfed.scenario import ScenarioRun
    from crossfed.verdict import VerdictError


def __getattr__(name: str) -> Any:
    if name == "suite":
        return importlib.import_module("crossfed.suite")
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'crossfed' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
