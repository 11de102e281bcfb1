"""A cluster that signs with a key of its own: its issuer, learned and mirrored, is verified by
the real stand-ins through the real SDKs (the probe), both directions.

The cluster here is only its documents and key (the e2e foreign-issuer test uses a real API
server); what is proven is that STS and Entra fetch the mirrored keys, still insist on the
token's exact issuer, and refuse what the cluster did not sign.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from crossfed.aws.provision import AwsProvisioner
from crossfed.azure.provision import AzureProvisioner
from crossfed.cleanup import Teardown
from crossfed.environments.standins import LocalStandIns
from crossfed.issuer.issuer import Issuer
from crossfed.issuer.keys import SigningKey
from crossfed.issuer.learned import LearnedIssuer, SigningKeyUnavailable
from crossfed.issuer.tokens import ServiceAccountRef
from crossfed.issuer.variants import token_for
from crossfed.plan import AZURE_AUDIENCE, STS_AUDIENCE, AwsTarget, AzureTarget, FederationPlan
from crossfed.verdict import AwsEvidence, AzureEvidence, check_aws, check_azure
from crossfed.workload.process import AwsWorkload, AzureWorkload, SdkTargets, run_probe

pytestmark = [pytest.mark.local]
IN_CLUSTER_ISSUER = "https://kubernetes.default.svc.cluster.local"
ACCOUNT = ServiceAccountRef("learned-ns", "reader")


@pytest.fixture(scope="module")
def clouds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStandIns]:
    clouds = LocalStandIns.start(tmp_path_factory.mktemp("learned"))
    yield clouds
    clouds.stop()


@pytest.fixture(scope="module")
def cluster_key() -> SigningKey:
    return SigningKey.generate()  # the cluster's: crossfed's run never sees it


def learned_from(key: SigningKey) -> LearnedIssuer:
    """What kube-apiserver publishes for --service-account-issuer=IN_CLUSTER_ISSUER."""
    published = Issuer(IN_CLUSTER_ISSUER, key)
    return LearnedIssuer(IN_CLUSTER_ISSUER, published.discovery_document(), published.jwks())


@pytest.fixture(scope="module")
def mirrored(clouds: LocalStandIns, cluster_key: SigningKey) -> LearnedIssuer:
    learned = learned_from(cluster_key)
    clouds.mirror_issuer(learned)
    return learned


def _targets(clouds: LocalStandIns) -> SdkTargets:
    return SdkTargets(clouds.aws.endpoint_url, clouds.aws.ca_bundle,
                      authority_host=clouds.azure.entra.authority_host,
                      skip_challenge_resource_check=True)


def _provisioner(clouds: LocalStandIns,
                 locations: dict[str, str] | None = None) -> AwsProvisioner:
    return AwsProvisioner(clouds.aws.session(), clouds.run_id, ca_bundle=clouds.aws.ca_bundle,
                          endpoint_url=clouds.aws.endpoint_url,
                          issuer_locations=clouds.issuer_locations if locations is None
                          else locations)


def _check_aws(clouds: LocalStandIns, teardown: Teardown, plan: FederationPlan, token: str,
               issuer_url: str = IN_CLUSTER_ISSUER,
               locations: dict[str, str] | None = None) -> None:
    applied = _provisioner(clouds, locations).apply(
        AwsTarget(), plan.name, issuer_url, ACCOUNT, STS_AUDIENCE, teardown)
    result = run_probe(token, _targets(clouds),
                       aws=AwsWorkload(applied.role_arn, applied.bucket))
    assert "probe" in result.report, result.stderr[-3000:]
    check_aws(plan, result.report, AwsEvidence(
        applied.role_arn, applied.role_name, applied.account_id, applied.object_key,
        clouds.aws.decisions.for_target(applied.role_arn)))


def test_cluster_signed_token_reaches_both_clouds(clouds: LocalStandIns,
                                                  mirrored: LearnedIssuer,
                                                  cluster_key: SigningKey,
                                                  teardown: Teardown) -> None:
    cluster = Issuer(IN_CLUSTER_ISSUER, cluster_key)  # the cluster signing, as its API server
    _check_aws(clouds, teardown, FederationPlan("learned-aws", ACCOUNT),
               cluster.mint(ACCOUNT, [STS_AUDIENCE]))
    applied = AzureProvisioner(clouds.azure.account(), clouds.run_id).apply(
        AzureTarget(), "learned-azure", IN_CLUSTER_ISSUER, ACCOUNT, teardown)
    result = run_probe(cluster.mint(ACCOUNT, [AZURE_AUDIENCE]), _targets(clouds),
                       azure=AzureWorkload(applied.client_id, applied.tenant_id,
                                           applied.vault_url, applied.secret_name))
    decisions = clouds.azure.entra.decisions.for_target(applied.client_id)
    check_azure(FederationPlan("learned-azure", ACCOUNT, audience=AZURE_AUDIENCE, aws=None,
                               azure=AzureTarget()), result.report,
                AzureEvidence(applied.client_id, applied.secret_sha256, decisions))
    assert decisions and decisions[-1].token.get("iss") == IN_CLUSTER_ISSUER


def test_forgery_under_learned_kid_is_refused(clouds: LocalStandIns, mirrored: LearnedIssuer,
                                              teardown: Teardown) -> None:
    plan = FederationPlan("learned-forged", ACCOUNT).denied("InvalidIdentityToken", "signature")
    _check_aws(clouds, teardown, plan, token_for("forged_kid", mirrored, ACCOUNT, STS_AUDIENCE))


def test_variants_needing_the_cluster_key_say_so(mirrored: LearnedIssuer) -> None:
    for variant in ("projected", "expired"):
        with pytest.raises(SigningKeyUnavailable, match="only its cluster holds"):
            token_for(variant, mirrored, ACCOUNT, STS_AUDIENCE)


def test_mirror_does_not_stand_in_for_another_issuer(clouds: LocalStandIns,
                                                     mirrored: LearnedIssuer,
                                                     cluster_key: SigningKey,
                                                     teardown: Teardown) -> None:
    """A token naming a different issuer URL is not verified against the mirrored keys, even
    when it is signed by the cluster's key: the discovery document must name it exactly."""
    other = IN_CLUSTER_ISSUER + "/"
    mirror = clouds.issuer_locations[IN_CLUSTER_ISSUER]
    clouds.aws.keys.register_location(other, mirror)
    teardown.add("location of " + other, lambda: clouds.aws.keys.locations.pop(other, None))
    plan = FederationPlan("learned-other", ACCOUNT).denied("InvalidIdentityToken", "keys")
    _check_aws(clouds, teardown, plan, Issuer(other, cluster_key).mint(ACCOUNT, [STS_AUDIENCE]),
               issuer_url=other, locations={other: mirror})


def test_an_unreachable_api_server_is_one_line_with_the_fix() -> None:
    """A kubeconfig pointing at a cluster that is down: the reason and what to check, not
    urllib3's retry traceback."""
    import socket

    from kubernetes import client

    from crossfed.issuer.learned import LearnError, learn_from_api_server

    with socket.socket() as hole:  # bound, never listening: connections are refused
        hole.bind(("127.0.0.1", 0))
        configuration = client.Configuration()
        configuration.host = f"https://127.0.0.1:{hole.getsockname()[1]}"
        configuration.retries = 0
        with pytest.raises(LearnError) as caught:
            learn_from_api_server(client.ApiClient(configuration))
    message = str(caught.value)
    assert message.startswith(f"cannot reach the cluster's API server {configuration.host} "
                              "for /.well-known/openid-configuration")
    assert "check that the cluster is up" in message and "\n" not in message
