"""The EKS pod identity webhook's IRSA contract against the behaviours its own handler fixtures
pin down (aws/amazon-eks-pod-identity-webhook pkg/handler/testdata/*.pod.yaml, one case per
fixture), patch order and Go's serialisation included. Inputs and expected patches are built
here; each case names the fixture whose behaviour it covers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from crossfed.webhooks import eks_pod_identity as eks
from crossfed.webhooks.reference_mutator import MutatorSettings, apply_patch, eks_patch, pod_patch

pytestmark = [pytest.mark.local]
ROLE = "arn:aws:iam::111122223333:role/s3-reader"
CN_ROLE = "arn:aws-cn:iam::111122223333:role/s3-reader"
MOUNT = "/var/run/secrets/eks.amazonaws.com/serviceaccount"
TOKEN = f"{MOUNT}/token"
WINDOWS_TOKEN = "C:\\var\\run\\secrets\\eks.amazonaws.com\\serviceaccount\\token"
# v0.5.2 is the last tag before the minimum moved and the libraries learnt sidecars
BEFORE, CURRENT = "v0.5.2", "v0.6.17"


def env(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"name": n, "value": v} for n, v in pairs]


def identity(role: str = ROLE, token: str = TOKEN) -> list[dict[str, str]]:
    return env(("AWS_ROLE_ARN", role), ("AWS_WEB_IDENTITY_TOKEN_FILE", token))


def region(name: str) -> list[dict[str, str]]:
    return env(("AWS_DEFAULT_REGION", name), ("AWS_REGION", name))


STS = env(("AWS_STS_REGIONAL_ENDPOINTS", "regional"))
TOKEN_MOUNT = {"name": "aws-iam-token", "readOnly": True, "mountPath": MOUNT}


def volume(expiration: int = 86400, audience: str = "sts.amazonaws.com") -> dict[str, Any]:
    return {"name": "aws-iam-token", "projected": {"sources": [{"serviceAccountToken": {
        "audience": audience, "expirationSeconds": expiration, "path": "token"}}]}}


def container(name: str = "app", env_: list[dict[str, str]] | None = None,
              mounts: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    """A container in Go's field order: name, image, env, resources, volumeMounts, the rest."""
    out: dict[str, Any] = {"name": name, "image": "amazonlinux"}
    if env_ is not None:
        out["env"] = env_
    out["resources"] = {}
    if mounts is not None:
        out["volumeMounts"] = mounts
    return {**out, **extra}


def raw_pod(containers: list[dict[str, Any]] | None = None, **spec: Any) -> dict[str, Any]:
    bare = [{"image": "amazonlinux", "name": "app"}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "app"},
            "spec": {"containers": containers or bare, "serviceAccountName": "default", **spec}}


def add_volumes(*volumes: dict[str, Any]) -> dict[str, Any]:
    return {"op": "add", "path": "/spec/volumes", "value": list(volumes)}


def add_containers(*containers: dict[str, Any], init: bool = False) -> dict[str, Any]:
    return {"op": "add", "path": "/spec/initContainers" if init else "/spec/containers",
            "value": list(containers)}


def sa(role: str = ROLE, **annotations: str) -> dict[str, str]:
    return {"eks.amazonaws.com/role-arn": role, "eks.amazonaws.com/audience": "sts.amazonaws.com",
            **{f"eks.amazonaws.com/{k.replace('_', '-')}": v for k, v in annotations.items()}}


def handler(version: str = CURRENT, *, region_flag: str | None = None, sts_flag: bool = False,
            expiration: int = 86400, **more: Any) -> eks.WebhookSettings:
    """The handler as the fixtures' testing annotations configure it (no region, no STS)."""
    return eks.WebhookSettings(default_region=region_flag, sts_regional_endpoints=sts_flag,
                               token_expiration=expiration, version=version, **more)


def compact(patch: list[dict[str, Any]] | None) -> str:
    """The patch as Go's json.Marshal writes it (key order included)."""
    return json.dumps(patch, separators=(",", ":"), ensure_ascii=False)


# (fixture, pod, service account annotations, handler, expected patch); versions: every tag
CASES: list[tuple[str, dict[str, Any], dict[str, str], dict[str, Any], list[Any] | None]] = [
    ("rawPodWithoutVolumes", raw_pod(), sa(), {},
     [add_volumes(volume()), add_containers(container(env_=identity(), mounts=[TOKEN_MOUNT]))]),
    ("windowsPodWithoutVolumes", raw_pod(nodeSelector={"kubernetes.io/os": "windows"}), sa(), {},
     [add_volumes(volume()),
      add_containers(container(env_=identity(token=WINDOWS_TOKEN), mounts=[TOKEN_MOUNT]))]),
    ("betaWindowsPodWithoutVolumes",
     raw_pod(nodeSelector={"beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "windows"}),
     sa(), {},
     [add_volumes(volume()),
      add_containers(container(env_=identity(token=WINDOWS_TOKEN), mounts=[TOKEN_MOUNT]))]),
    ("rawPodWithVolumes", raw_pod(volumes=[{"name": "my-volume"}]), sa(), {},
     [{"op": "add", "path": "/spec/volumes/0", "value": volume()},  # inserted first
      add_containers(container(env_=identity(), mounts=[TOKEN_MOUNT]))]),
    ("rawPodNeedsRegion", raw_pod(), sa(), {"region_flag": "seattle"},
     [add_volumes(volume()),
      add_containers(container(env_=region("seattle") + identity(), mounts=[TOKEN_MOUNT]))]),
    ("rawPodNeedsSTS", raw_pod(), sa(CN_ROLE), {"region_flag": "cn-north-1", "sts_flag": True},
     [add_volumes(volume()), add_containers(container(
         env_=STS + region("cn-north-1") + identity(CN_ROLE), mounts=[TOKEN_MOUNT]))]),
    ("rawPodNoSTSAnnotationOverride", raw_pod(), sa(sts_regional_endpoints="false"),
     {"region_flag": "us-east-1", "sts_flag": True},
     [add_volumes(volume()), add_containers(container(
         env_=region("us-east-1") + identity(), mounts=[TOKEN_MOUNT]))]),
    ("rawPodRegionPresent", raw_pod([{"env": env(("AWS_REGION", "paris")),
                                      "image": "amazonlinux", "name": "app"}]), sa(), {},
     [add_volumes(volume()), add_containers(container(
         env_=env(("AWS_REGION", "paris")) + identity(), mounts=[TOKEN_MOUNT]))]),
    ("rawPodHasSTS", raw_pod([{"env": env(("AWS_REGION", "cn-northwest-1")) + STS,
                               "image": "amazonlinux", "name": "app"}]),
     sa(CN_ROLE), {"region_flag": "cn-north-1", "sts_flag": True},
     [add_volumes(volume()), add_containers(container(
         env_=env(("AWS_REGION", "cn-northwest-1")) + STS + identity(CN_ROLE),
         mounts=[TOKEN_MOUNT]))]),
    # the early return: every group present, so no env and no mount either
    ("rawPodHasAll", raw_pod([{"env": env(("AWS_REGION", "cn-northwest-1")) + STS + env(
        ("AWS_ROLE_ARN", CN_ROLE)), "image": "amazonlinux", "name": "app"}]),
     sa(CN_ROLE), {"region_flag": "cn-north-1", "sts_flag": True, "expiration": 3600},
     [add_volumes(volume(3600)), add_containers(container(
         env_=env(("AWS_REGION", "cn-northwest-1")) + STS + env(("AWS_ROLE_ARN", CN_ROLE))))]),
    ("rawPodHasTokenExpiration",
     {**raw_pod([{"env": env(("AWS_REGION", "cn-northwest-1")) + STS, "image": "amazonlinux",
                  "name": "app"}]),
      "metadata": {"name": "app", "annotations": {"eks.amazonaws.com/token-expiration": "3600"}}},
     sa(CN_ROLE), {"region_flag": "cn-north-1", "sts_flag": True},
     [add_volumes(volume(3600)), add_containers(container(
         env_=env(("AWS_REGION", "cn-northwest-1")) + STS + identity(CN_ROLE),
         mounts=[TOKEN_MOUNT]))]),
    ("rawPodSkip",
     {**raw_pod([{"image": "amazonlinux", "name": "sidecar"},
                 {"image": "amazonlinux", "name": "app",
                  "env": env(("AWS_ROLE_ARN", "already-defined"))}]),
      "metadata": {"name": "app", "annotations": {"eks.amazonaws.com/skip-containers": "sidecar"}}},
     sa(), {"region_flag": "us-west-2"},
     [add_volumes(volume()), add_containers(
         container("sidecar"),
         container(env_=env(("AWS_ROLE_ARN", "already-defined")) + region("us-west-2"),
                   mounts=[TOKEN_MOUNT]))]),
    ("rawPodWithInitContainer",
     raw_pod(initContainers=[{"image": "amazonlinux", "name": "initcontainer"}]), sa(),
     {"region_flag": "seattle"},
     [add_volumes(volume()),
      add_containers(container(env_=region("seattle") + identity(), mounts=[TOKEN_MOUNT])),
      add_containers(container("initcontainer", env_=region("seattle") + identity(),
                               mounts=[TOKEN_MOUNT]), init=True)]),
    ("initPodNeedsRegion", raw_pod(initContainers=[{"image": "amazonlinux", "name": "app"}]),
     sa(), {"region_flag": "seattle"},
     [add_volumes(volume()),
      add_containers(container(env_=region("seattle") + identity(), mounts=[TOKEN_MOUNT])),
      add_containers(container(env_=region("seattle") + identity(), mounts=[TOKEN_MOUNT]),
                     init=True)]),
    ("rawPodWithGRPC", raw_pod([{"image": "amazonlinux", "name": "app",
                                 "readinessProbe": {"grpc": {"port": 5000}}}]),
     sa(), {"region_flag": "seattle"},
     [add_volumes(volume()), add_containers(container(
         env_=region("seattle") + identity(), mounts=[TOKEN_MOUNT],
         readinessProbe={"grpc": {"port": 5000, "service": None}}))]),
    ("rawPodWithsecCompProfile",
     raw_pod([{"image": "amazonlinux", "name": "app",
               "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}}]),
     sa(), {"region_flag": "seattle"},
     [add_volumes(volume()), add_containers(container(
         env_=region("seattle") + identity(), mounts=[TOKEN_MOUNT],
         securityContext={"seccompProfile": {"type": "RuntimeDefault"}}))]),
    ("rawPodNoBaseArn", raw_pod(volumes=[{"name": "my-volume"}]), sa("s3-reader"),
     {"compose_role_arn_base": "arn:aws:iam::111122223333:role/"},
     [{"op": "add", "path": "/spec/volumes/0", "value": volume()},
      add_containers(container(env_=identity(), mounts=[TOKEN_MOUNT]))]),
    # reinvocation: the volume is the webhook's own, so only the containers are (re)written
    ("rawPodHasTokenVolume",
     raw_pod([{"image": "amazonlinux", "name": "app", "env": identity(),
               "volumeMounts": [TOKEN_MOUNT]}, {"image": "amazonlinux", "name": "sidecar"}],
             volumes=[volume()]), sa(), {},
     [add_containers(container(env_=identity(), mounts=[TOKEN_MOUNT]),
                     container("sidecar", env_=identity(), mounts=[TOKEN_MOUNT]))]),
]

VERSIONED: list[tuple[str, dict[str, Any], dict[str, str], dict[str, Any], list[Any] | None]] = [
    # the fixture at its tag (before v0.5.3) raises "0" to 3600; from v0.5.3 the minimum is 600
    *[("rawPodMinTokenExpiration",
       {**raw_pod([{"env": env(("AWS_REGION", "cn-northwest-1")) + STS, "image": "amazonlinux",
                    "name": "app"}]),
        "metadata": {"name": "app", "annotations": {"eks.amazonaws.com/token-expiration": "0"}}},
       sa(CN_ROLE), {"version": version, "region_flag": "cn-north-1", "sts_flag": True},
       [add_volumes(volume(minimum)), add_containers(container(
           env_=env(("AWS_REGION", "cn-northwest-1")) + STS + identity(CN_ROLE),
           mounts=[TOKEN_MOUNT]))])
      for version, minimum in ((BEFORE, 3600), (CURRENT, 600))],
    # a foreign volume of the reserved name: master leaves the pod alone (patch null) ...
    ("rawPodHasForeignTokenVolume",
     raw_pod(volumes=[volume(3600, audience="vault")]), sa(), {"version": eks.MASTER}, None),
    # ... every tag up to v0.6.17 skips the volume op only and mounts it anyway (handler code)
    ("rawPodHasForeignTokenVolume",
     raw_pod(volumes=[volume(3600, audience="vault")]), sa(), {"version": CURRENT},
     [add_containers(container(env_=identity(), mounts=[TOKEN_MOUNT]))]),
    # Go drops the unknown mount key and writes the empty mountPath; the hostPath volume stays
    ("rawPodHasVolumeMount",
     raw_pod([{"image": "amazonlinux", "name": "app",
               "volumeMounts": [{"name": "aws-iam-token", "path": "/path/to/token"}]}],
             volumes=[{"name": "aws-iam-token", "hostPath": {"path": "/path/to/token"}}]),
     sa(), {"version": CURRENT},
     [add_containers(container(env_=identity(), mounts=[{"name": "aws-iam-token",
                                                         "mountPath": ""}]))]),
    # master's findTokenVolume: that hostPath volume is not its token, so no mutation
    ("rawPodHasVolumeMount",
     raw_pod([{"image": "amazonlinux", "name": "app",
               "volumeMounts": [{"name": "aws-iam-token", "path": "/path/to/token"}]}],
             volumes=[{"name": "aws-iam-token", "hostPath": {"path": "/path/to/token"}}]),
     sa(), {"version": eks.MASTER}, None),
]


@pytest.mark.parametrize("version", [BEFORE, CURRENT, eks.MASTER])
@pytest.mark.parametrize(("fixture", "pod", "annotations", "flags", "expected"), CASES,
                         ids=[c[0] for c in CASES])
def test_fixture_patch(fixture: str, pod: dict[str, Any], annotations: dict[str, str],
                       flags: dict[str, Any], expected: list[Any], version: str) -> None:
    patch = eks_patch(pod, annotations, handler(version, **flags))
    assert compact(patch) == compact(expected)


@pytest.mark.parametrize(("fixture", "pod", "annotations", "flags", "expected"), VERSIONED,
                         ids=[f"{c[0]}-{c[3]['version']}" for c in VERSIONED])
def test_fixture_patch_by_version(fixture: str, pod: dict[str, Any],
                                  annotations: dict[str, str], flags: dict[str, Any],
                                  expected: list[Any] | None) -> None:
    assert compact(eks_patch(pod, annotations, handler(**flags))) == compact(expected)


@pytest.mark.parametrize(("version", "kept"), [(BEFORE, False), ("v0.5.3", True),
                                               (CURRENT, True)])
def test_sidecar_init_container_keeps_restart_policy_from_v0_5_3(version: str,
                                                                 kept: bool) -> None:
    """Before v0.5.3 the webhook's Container type has no restartPolicy: re-serialising the
    init containers turns a native sidecar into a plain init container."""
    pod = raw_pod(initContainers=[{"name": "proxy", "image": "x", "restartPolicy": "Always"}])
    patch = eks_patch(pod, sa(), handler(version)) or []
    [init] = apply_patch(pod, patch)["spec"]["initContainers"]
    assert ("restartPolicy" in init) is kept
    assert init["env"] == identity()  # mutated like any other init container


def test_not_mutated_without_role_or_with_the_skip_label() -> None:
    assert eks_patch(raw_pod(), {}, handler()) is None
    labelled = {**raw_pod(), "metadata": {
        "name": "app", "labels": {"eks.amazonaws.com/skip-pod-identity-webhook": "x"}}}
    assert eks_patch(labelled, sa(), handler()) is None


def test_annotation_prefix_and_mount_path_flags() -> None:
    settings = handler(annotation_prefix="irsa", token_mount_path="/tokens", token_audience="a")
    patch = eks_patch(raw_pod(), {"irsa/role-arn": ROLE}, settings)
    assert compact(patch) == compact([
        add_volumes(volume(audience="a")),
        add_containers(container(env_=identity(token="/tokens/token"), mounts=[
            {"name": "aws-iam-token", "readOnly": True, "mountPath": "/tokens"}]))])


def test_reference_mutator_emits_the_webhooks_patch_with_the_charts_flags() -> None:
    """Through pod_patch with the chart's defaults (region us-east-1, regional STS)."""
    patches, denial = pod_patch(raw_pod(), "ns", lambda ns, name: sa(), MutatorSettings())
    assert denial is None
    assert compact(patches) == compact([add_volumes(volume()), add_containers(container(
        env_=STS + region("us-east-1") + identity(), mounts=[TOKEN_MOUNT]))])
