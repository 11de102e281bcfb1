"""crossfed's scenario suite, shipped in the package: the plans (`crossfed.suite.plans`, also
importable from here) and the scenario tests (`test_aws`, `test_azure`).

Run it from any folder after `pip install crossfed`:

    crossfed test -m local                       # same as the next line
    python -m pytest --pyargs crossfed.suite -m local

The scenarios use the `federation` fixture of crossfed's pytest plugin, so every crossfed
option (`--crossfed-env`, `--crossfed-kubeconfig`, ...) applies.
"""

from crossfed.suite.plans import (
    AWS_ALLOWED,
    AWS_DENIED,
    AZURE_ALLOWED,
    AZURE_DENIED,
    KV_SA,
    PROBE_SA,
    SEED_AKS_SA,
    SEED_TRUST_POLICY,
)

__all__ = ["AWS_ALLOWED", "AWS_DENIED", "AZURE_ALLOWED", "AZURE_DENIED", "KV_SA", "PROBE_SA",
           "SEED_AKS_SA", "SEED_TRUST_POLICY"]
