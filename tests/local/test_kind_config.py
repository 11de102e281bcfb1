"""The kind config for our issuer and key, KindCluster's kind invocations, the helm releases.

No Docker here: kind invocations go to a recorder (exact argv) or to a fake `kind` executable
run through the real runner; generated files are parsed back and checked.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from crossfed.cluster.kind import (
    NODE_IMAGES,
    KindCluster,
    KindError,
    kind_config,
    render,
)
from crossfed.issuer.keys import SigningKey
from crossfed.webhooks import azure_workload_identity, charts, eks_pod_identity

pytestmark = [pytest.mark.local, pytest.mark.cluster]

ISSUER = "https://172.18.0.1:8443"
JWKS = "https://172.18.0.1:8443/openid/v1/jwks"
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def key_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return SigningKey.generate().write(tmp_path_factory.mktemp("keys"))


def config_for(key_pair: tuple[Path, Path], **kwargs) -> dict:
    private, public = key_pair
    return kind_config("crossfed-abc", private, public, ISSUER, JWKS,
                       [ISSUER, "https://kubernetes.default.svc"], **kwargs)


# --- the generated config -------------------------------------------------------------------

def test_rendered_config_parses_back_with_mounts_and_apiserver_args(key_pair) -> None:
    private, public = key_pair
    parsed = yaml.safe_load(render(config_for(key_pair)))

    assert parsed["kind"] == "Cluster" and parsed["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert parsed["name"] == "crossfed-abc"
    assert parsed["networking"] == {"apiServerAddress": "127.0.0.1"}  # no port: random
    [node] = parsed["nodes"]
    assert node["role"] == "control-plane" and "image" not in node
    assert node["extraMounts"] == [
        {"hostPath": str(public.resolve()), "containerPath": "/etc/kubernetes/pki/sa.pub"},
        {"hostPath": str(private.resolve()), "containerPath": "/etc/kubernetes/pki/sa.key"},
    ]
    for mount in node["extraMounts"]:
        assert os.path.isabs(mount["hostPath"])

    [patch_text] = parsed["kubeadmConfigPatches"]
    patch = yaml.safe_load(patch_text)
    assert "apiVersion" not in patch  # applies to v1beta3 and v1beta4 alike
    assert patch["kind"] == "ClusterConfiguration"
    assert patch["apiServer"] == {"extraArgs": {
        "service-account-issuer": ISSUER,
        "service-account-key-file": "/etc/kubernetes/pki/sa.pub",
        "service-account-signing-key-file": "/etc/kubernetes/pki/sa.key",
        "service-account-jwks-uri": JWKS,
        "api-audiences": f"{ISSUER},https://kubernetes.default.svc",
    }}  # map form, one issuer, and no extraVolumes: /etc/kubernetes/pki is already mounted
    assert patch["controllerManager"] == {
        "extraArgs": {"service-account-private-key-file": "/etc/kubernetes/pki/sa.key"}}


def test_disable_default_cni_goes_under_networking_with_the_api_server_address(key_pair) -> None:
    parsed = yaml.safe_load(render(config_for(key_pair, disable_default_cni=True)))
    assert parsed["networking"] == {"apiServerAddress": "127.0.0.1", "disableDefaultCNI": True}
    assert "disableDefaultCNI: true" in render(config_for(key_pair, disable_default_cni=True))
    custom = config_for(key_pair, disable_default_cni=True, api_server_address="0.0.0.0")
    assert custom["networking"] == {"apiServerAddress": "0.0.0.0", "disableDefaultCNI": True}
    for default in (config_for(key_pair), config_for(key_pair, disable_default_cni=False)):
        assert "disableDefaultCNI" not in yaml.safe_load(render(default))["networking"]
        assert "disableDefaultCNI" not in render(default)


def test_render_writes_patches_as_literal_blocks(key_pair) -> None:
    text = render(config_for(key_pair))
    assert "kubeadmConfigPatches:\n- |\n  kind: ClusterConfiguration\n" in text
    assert text.startswith("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\n")


def test_relative_and_extra_mounts_become_absolute(key_pair, tmp_path, monkeypatch) -> None:
    private, public = key_pair
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ca.pem").write_text("ca")
    for name in ("sa.key", "sa.pub"):
        (tmp_path / name).write_bytes((private if name == "sa.key" else public).read_bytes())
    config = kind_config("c1", "sa.key", "sa.pub", ISSUER, JWKS, [ISSUER],
                         [{"hostPath": "ca.pem", "containerPath": "/crossfed/ca.pem",
                           "readOnly": True}], node_image=NODE_IMAGES["v0.32.0"])
    [node] = yaml.safe_load(render(config))["nodes"]
    assert node["image"] == NODE_IMAGES["v0.32.0"]
    assert [m["hostPath"] for m in node["extraMounts"]] == [
        str(tmp_path / "sa.pub"), str(tmp_path / "sa.key"), str(tmp_path / "ca.pem")]
    assert node["extraMounts"][2] == {"hostPath": str(tmp_path / "ca.pem"),
                                      "containerPath": "/crossfed/ca.pem", "readOnly": True}


def test_keys_outside_the_pki_dir_get_extra_volumes(key_pair) -> None:
    config = config_for(key_pair, key_dir="/etc/crossfed/keys")
    parsed = yaml.safe_load(render(config))
    patch = yaml.safe_load(parsed["kubeadmConfigPatches"][0])
    volume = {"name": "crossfed-sa-keys", "hostPath": "/etc/crossfed/keys",
              "mountPath": "/etc/crossfed/keys", "readOnly": True, "pathType": "Directory"}
    assert patch["apiServer"]["extraVolumes"] == [volume]
    assert patch["controllerManager"]["extraVolumes"] == [volume]
    assert patch["apiServer"]["extraArgs"]["service-account-key-file"] == (
        "/etc/crossfed/keys/sa.pub")
    assert [m["containerPath"] for m in parsed["nodes"][0]["extraMounts"]] == [
        "/etc/crossfed/keys/sa.pub", "/etc/crossfed/keys/sa.key"]


@pytest.mark.parametrize("change, error", [
    (dict(name="Crossfed_1"), "must match"),
    (dict(issuer_url="http://172.18.0.1:8443"), "issuer_url must be an https:// URL"),
    (dict(jwks_uri="http://x/jwks"), "jwks_uri must be an https:// URL"),
    (dict(api_audiences=[]), "api_audiences must be non-empty"),
    (dict(api_audiences=["a,b"]), "without commas"),
    (dict(extra_mounts=[{"hostPath": "/x", "containerPath": "/y", "readonly": True}]),
     r"unknown field\(s\) \['readonly'\]"),
    (dict(extra_mounts=[{"hostPath": "/x"}]), "hostPath and containerPath are required"),
])
def test_invalid_inputs_are_refused_before_kind_sees_them(key_pair, change, error) -> None:
    private, public = key_pair
    args = dict(name="crossfed-abc", signing_key_path=private, signing_public_key_path=public,
                issuer_url=ISSUER, jwks_uri=JWKS, api_audiences=[ISSUER])
    args.update(change)
    with pytest.raises(ValueError, match=error):
        kind_config(**args)


def test_missing_or_mismatched_key_files_are_refused(key_pair, tmp_path) -> None:
    private, public = key_pair
    with pytest.raises(FileNotFoundError, match="write the key pair before creating"):
        kind_config("c", tmp_path / "none.key", public, ISSUER, JWKS, [ISSUER])
    _, other_public = SigningKey.generate().write(tmp_path)
    with pytest.raises(ValueError, match="is not the public key of"):
        kind_config("c", private, other_public, ISSUER, JWKS, [ISSUER])
    garbage = tmp_path / "garbage.key"
    garbage.write_text("not a key")
    with pytest.raises(ValueError):
        kind_config("c", garbage, public, ISSUER, JWKS, [ISSUER])


# --- KindCluster with a recording runner ----------------------------------------------------

class Recorder:
    """Stands in for the runner: records each argv, answers per (subcommand, object)."""

    def __init__(self, answers: dict[tuple[str, str], tuple[int, str, str]] | None = None):
        self.answers, self.calls = answers or {}, []

    def __call__(self, argv, *, timeout=None, **kwargs):
        self.calls.append(list(argv))
        code, out, err = self.answers.get(tuple(argv[1:3]), (0, "", ""))
        return subprocess.CompletedProcess(list(argv), code, out, err)


def test_creates_only_when_kind_does_not_list_the_name(key_pair, tmp_path) -> None:
    config = config_for(key_pair)
    runner = Recorder({("get", "clusters"): (0, "crossfed-other\nkind\n", "")})
    lock = tmp_path / "state" / "kind.lock"
    cluster = KindCluster.create_or_reuse("crossfed-abc", config, "/opt/kind", lock,
                                          runner=runner)
    config_file = tmp_path / "state" / "crossfed-abc.kind.yaml"
    assert runner.calls == [
        ["/opt/kind", "get", "clusters"],
        ["/opt/kind", "create", "cluster", "--name", "crossfed-abc",
         "--config", str(config_file)],
    ]
    assert cluster.created is True
    assert yaml.safe_load(config_file.read_text()) == config

    assert cluster.delete() is True
    assert runner.calls[-1] == ["/opt/kind", "delete", "cluster", "--name", "crossfed-abc"]
    assert cluster.created is False


def test_no_clusters_at_all_means_create(tmp_path) -> None:
    runner = Recorder({("get", "clusters"): (0, "", "No kind clusters found.\n")})
    cluster = KindCluster.create_or_reuse("c1", {"kind": "Cluster"}, "kind",
                                          tmp_path / "kind.lock", runner=runner)
    assert cluster.created
    assert runner.calls[1][:5] == ["kind", "create", "cluster", "--name", "c1"]


def test_an_existing_cluster_is_reused_and_never_deleted_by_default(tmp_path) -> None:
    runner = Recorder({("get", "clusters"): (0, "crossfed-abc\n", "")})
    config_file = tmp_path / "crossfed-abc.kind.yaml"
    cluster = KindCluster.create_or_reuse("crossfed-abc", {"kind": "Cluster"}, "kind",
                                          tmp_path / "kind.lock", runner=runner)
    assert runner.calls == [["kind", "get", "clusters"]]
    assert cluster.created is False and not config_file.exists()
    assert cluster.delete() is False
    assert cluster.delete(only_if_created=True, keep=False) is False
    assert runner.calls == [["kind", "get", "clusters"]]
    assert cluster.delete(only_if_created=False) is True
    assert runner.calls[-1] == ["kind", "delete", "cluster", "--name", "crossfed-abc"]


def test_keep_wins_over_delete_of_a_created_cluster(tmp_path) -> None:
    runner = Recorder()
    cluster = KindCluster.create_or_reuse("c2", {}, "kind", tmp_path / "l", runner=runner)
    assert cluster.delete(keep=True) is False
    assert [c[1] for c in runner.calls] == ["get", "create"]
    assert cluster.created is True


def test_kubeconfig_path_and_wait_are_passed_to_create_and_delete(tmp_path) -> None:
    runner = Recorder()
    kubeconfig = tmp_path / "kubeconfig"
    cluster = KindCluster.create_or_reuse("c3", {}, "kind", tmp_path / "l", runner=runner,
                                          config_path=tmp_path / "cfg.yaml",
                                          kubeconfig_path=kubeconfig, wait="3m")
    assert runner.calls[1] == ["kind", "create", "cluster", "--name", "c3",
                               "--config", str(tmp_path / "cfg.yaml"),
                               "--kubeconfig", str(kubeconfig), "--wait", "3m"]
    cluster.delete()
    assert runner.calls[2] == ["kind", "delete", "cluster", "--name", "c3",
                               "--kubeconfig", str(kubeconfig)]


def test_create_failure_reports_kinds_error_lines(tmp_path) -> None:
    stderr = textwrap.dedent("""\
        Creating cluster "c4" ...
        ERROR: failed to create cluster: failed to get docker info: command "docker info --format '{{json .}}'" failed with error: exit status 1
        Command Output: Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?
        """)  # noqa: E501 (kind's own line)
    runner = Recorder({("create", "cluster"): (1, "", stderr)})
    with pytest.raises(KindError) as caught:
        KindCluster.create_or_reuse("c4", {}, "/usr/bin/kind", tmp_path / "l", runner=runner)
    message = str(caught.value)
    assert message.startswith("kind create cluster --name c4 --config ")
    assert "failed (exit 1): ERROR: failed to create cluster: failed to get docker info" in message
    assert "| Command Output: Cannot connect to the Docker daemon" in message
    assert "\n" not in message


def test_config_naming_another_cluster_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="config names cluster 'a', asked for 'b'"):
        KindCluster.create_or_reuse("b", {"name": "a"}, "kind", tmp_path / "l",
                                    runner=Recorder())


def test_load_image_and_kubeconfig(tmp_path) -> None:
    archive = tmp_path / "probe.tar"
    archive.write_bytes(b"tar")
    runner = Recorder({("get", "kubeconfig"): (0, "apiVersion: v1\nkind: Config\n", "")})
    cluster = KindCluster("c5", "kind", runner=runner)
    cluster.load_image(archive)
    assert runner.calls[-1] == ["kind", "load", "image-archive", str(archive), "--name", "c5"]
    with pytest.raises(FileNotFoundError):
        cluster.load_image(tmp_path / "missing.tar")

    assert cluster.kubeconfig() == "apiVersion: v1\nkind: Config\n"
    assert runner.calls[-1] == ["kind", "get", "kubeconfig", "--name", "c5"]
    cluster.kubeconfig(internal=True)
    assert runner.calls[-1] == ["kind", "get", "kubeconfig", "--name", "c5", "--internal"]
    written = cluster.write_kubeconfig(tmp_path / "kube" / "config")
    assert written.read_text() == "apiVersion: v1\nkind: Config\n"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600


# --- one creator across processes, through the real runner and a fake kind ------------------

FAKE_KIND = '''\
import json, pathlib, sys, time
here = pathlib.Path(sys.argv[0]).resolve().parent
state, calls = here / "clusters.txt", here / "calls.jsonl"
args = sys.argv[1:]
with calls.open("a") as log:
    log.write(json.dumps(args) + "\\n")
names = state.read_text().split() if state.exists() else []
if args[:2] == ["get", "clusters"]:
    print("\\n".join(names)) if names else print("No kind clusters found.", file=sys.stderr)
elif args[:2] == ["create", "cluster"]:
    name = args[args.index("--name") + 1]
    if name in names:
        print(f'ERROR: failed to create cluster: node(s) already exist for a cluster with '
              f'the name "{name}"', file=sys.stderr)
        sys.exit(1)
    time.sleep(0.5)
    state.write_text("\\n".join(names + [name]) + "\\n")
elif args[:2] == ["delete", "cluster"]:
    name = args[args.index("--name") + 1]
    state.write_text("".join(n + "\\n" for n in names if n != name))
'''

WORKER = '''\
import sys
from crossfed.cluster.kind import KindCluster
cluster = KindCluster.create_or_reuse("crossfed-xdist", {"kind": "Cluster"}, sys.argv[1],
                                      sys.argv[2])
print("created" if cluster.created else "reused")
'''


def test_one_creator_across_concurrent_processes(tmp_path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    kind = bin_dir / "kind"
    kind.write_text(f"#!{sys.executable}\n{FAKE_KIND}")
    kind.chmod(0o755)
    lock = tmp_path / "state" / "kind.lock"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(kind), str(lock)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env) for _ in range(3)]
    outcomes = []
    for worker in workers:
        out, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err
        outcomes.append(out.strip())
    assert sorted(outcomes) == ["created", "reused", "reused"]
    calls = [json.loads(line) for line in (bin_dir / "calls.jsonl").read_text().splitlines()]
    creates = [c for c in calls if c[:2] == ["create", "cluster"]]
    assert creates == [["create", "cluster", "--name", "crossfed-xdist",
                        "--config", str(tmp_path / "state" / "crossfed-xdist.kind.yaml")]]
    assert (bin_dir / "clusters.txt").read_text() == "crossfed-xdist\n"

    # the creator deletes; a reuser asked to delete only what it created does not
    reuser = KindCluster("crossfed-xdist", kind, created=False)
    assert reuser.delete() is False
    creator = KindCluster("crossfed-xdist", kind, created=True)
    assert creator.delete() is True
    assert KindCluster.list_clusters(kind) == []


# --- helm releases of the webhooks ----------------------------------------------------------

def values_of(argv: list[str]) -> dict:
    return yaml.safe_load(Path(argv[argv.index("--values") + 1]).read_text())


def test_cert_manager_argv_pinned(tmp_path) -> None:
    argv = charts.cert_manager().install_argv("/usr/local/bin/helm", tmp_path)
    values_file = tmp_path / "cert-manager.values.yaml"
    assert argv == ["/usr/local/bin/helm", "upgrade", "--install", "cert-manager",
                    "cert-manager", "--repo", "https://charts.jetstack.io",
                    "--version", "v1.21.1", "--namespace", "cert-manager",
                    "--create-namespace", "--values", str(values_file),
                    "--wait", "--timeout", "5m0s"]
    assert values_of(argv) == {"crds": {"enabled": True}}


def test_cert_manager_overrides(tmp_path) -> None:
    old = charts.cert_manager("v1.14.0", timeout="10m")
    assert old.values == {"installCRDs": True}  # crds.enabled only exists from v1.15.0
    argv = old.install_argv("helm", tmp_path)
    assert argv[argv.index("--version") + 1] == "v1.14.0"
    assert argv[-2:] == ["--timeout", "10m"]
    with pytest.raises(ValueError, match="start with 'v'"):
        charts.cert_manager("1.21.1")


def test_eks_webhook_argv_pinned_with_the_contract_crossfed_judges(tmp_path) -> None:
    argv = charts.eks_pod_identity_webhook().install_argv("helm", tmp_path)
    assert argv == ["helm", "upgrade", "--install", "amazon-eks-pod-identity-webhook",
                    "amazon-eks-pod-identity-webhook",
                    "--repo", "https://jkroepke.github.io/helm-charts", "--version", "2.6.5",
                    "--namespace", "pod-identity-webhook", "--create-namespace",
                    "--values", str(tmp_path / "amazon-eks-pod-identity-webhook.values.yaml"),
                    "--wait", "--timeout", "5m0s"]
    values = values_of(argv)
    defaults = eks_pod_identity.CHART_DEFAULTS
    assert values == {
        "config": {"defaultAwsRegion": defaults.default_region,
                   "stsRegionalEndpoint": defaults.sts_regional_endpoints,
                   "tokenAudience": "sts.amazonaws.com", "tokenExpiration": 86400,
                   "tokenMountPath": "/var/run/secrets/eks.amazonaws.com/serviceaccount"},
        "mutatingWebhook": {"failurePolicy": "Fail"},
        "pki": {"certManager": {"enabled": True}},
    }
    # the chart already passes --in-cluster=false and fixes admissionReviewVersions [v1beta1]
    assert "extraArgs" not in values["config"] and "in-cluster" not in json.dumps(values)
    stack = charts.eks_webhook_stack()
    assert [r.name for r in stack] == ["cert-manager", "amazon-eks-pod-identity-webhook"]


def test_eks_webhook_overrides(tmp_path) -> None:
    settings = eks_pod_identity.WebhookSettings(default_region=None,
                                                sts_regional_endpoints=False,
                                                token_expiration=3600)
    pki = charts.WebhookPKI("CERT PEM", "KEY PEM", "CA PEM")
    release = charts.eks_pod_identity_webhook(
        "2.6.4", settings=settings, failure_policy="Ignore", namespace="irsa", pki=pki,
        image_tag="v0.6.16", timeout="2m", extra_values={"config": {"tokenAudience": "x"}})
    argv = release.install_argv("helm", tmp_path)
    assert argv[argv.index("--version") + 1] == "2.6.4"
    assert argv[argv.index("--namespace") + 1] == "irsa"
    values = values_of(argv)
    assert values["config"]["defaultAwsRegion"] == ""  # no region env injected
    assert values["config"]["stsRegionalEndpoint"] is False
    assert values["config"]["tokenExpiration"] == 3600
    assert values["config"]["tokenAudience"] == "x"
    assert values["mutatingWebhook"] == {"failurePolicy": "Ignore"}
    assert values["pki"] == {"certManager": {"enabled": False}, "cert": "CERT PEM",
                             "key": "KEY PEM", "caBundle": "CA PEM"}
    assert values["image"] == {"tag": "v0.6.16"}
    values_file = Path(argv[argv.index("--values") + 1])
    assert stat.S_IMODE(values_file.stat().st_mode) == 0o600  # holds the webhook's key
    assert [r.name for r in charts.eks_webhook_stack(pki=pki)] == [
        "amazon-eks-pod-identity-webhook"]
    with pytest.raises(ValueError, match="Fail or Ignore"):
        charts.eks_pod_identity_webhook(failure_policy="fail")


def test_local_chart_archive_replaces_the_repo(tmp_path) -> None:
    archive = tmp_path / "amazon-eks-pod-identity-webhook-2.6.5.tgz"
    argv = charts.eks_pod_identity_webhook(chart_path=archive).install_argv("helm", tmp_path)
    assert argv[3:6] == ["amazon-eks-pod-identity-webhook", str(archive), "--namespace"]
    assert "--repo" not in argv and "--version" not in argv
    with pytest.raises(ValueError, match="expected the archive of"):
        charts.eks_pod_identity_webhook(chart_path=tmp_path / "other-1.0.0.tgz")


def test_azure_webhook_argv_pinned(tmp_path) -> None:
    tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
    argv = charts.azure_workload_identity_webhook(tenant).install_argv("helm", tmp_path)
    assert charts.AZWI_VERSION == azure_workload_identity.DEFAULT_VERSION.removeprefix("v")
    assert argv == ["helm", "upgrade", "--install", "workload-identity-webhook",
                    "workload-identity-webhook",
                    "--repo", "https://azure.github.io/azure-workload-identity/charts",
                    "--version", "1.5.1", "--namespace", "azure-workload-identity-system",
                    "--create-namespace",
                    "--values", str(tmp_path / "workload-identity-webhook.values.yaml"),
                    "--wait", "--timeout", "5m0s"]
    assert values_of(argv) == {"azureTenantID": tenant, "azureEnvironment": "AzurePublicCloud"}


def test_azure_webhook_overrides_and_required_tenant(tmp_path) -> None:
    release = charts.azure_workload_identity_webhook("t", "1.6.0", image_release="v1.6.0",
                                                     timeout="3m")
    argv = release.install_argv("helm", tmp_path)
    assert argv[argv.index("--version") + 1] == "1.6.0"
    assert values_of(argv)["image"] == {"release": "v1.6.0"}  # not image.tag in this chart
    for tenant in ("", "  "):
        with pytest.raises(ValueError, match="azureTenantID is required"):
            charts.azure_workload_identity_webhook(tenant)


def test_authority_host_is_overridden_on_the_container() -> None:
    assert charts.authority_host_env("https://172.18.0.1:9443/") == [
        {"name": "AZURE_AUTHORITY_HOST", "value": "https://172.18.0.1:9443/"}]
    with pytest.raises(ValueError):
        charts.authority_host_env("http://login")


def test_webhook_configuration_problems() -> None:
    good = {"metadata": {"name": "pod-identity-webhook"}, "webhooks": [
        {"name": "pod-identity-webhook.amazonaws.com", "failurePolicy": "Fail",
         "admissionReviewVersions": ["v1beta1"], "clientConfig": {"caBundle": "LS0t"}}]}
    expect = dict(failure_policy="Fail",
                  admission_review_versions=charts.EKS_ADMISSION_REVIEW_VERSIONS)
    assert charts.webhook_configuration_problems(good, **expect) == []
    bad = {"metadata": {"name": "w"}, "webhooks": [
        {"name": "h", "failurePolicy": "Ignore", "admissionReviewVersions": ["v1", "v1beta1"],
         "clientConfig": {}}]}
    assert charts.webhook_configuration_problems(bad, **expect) == [
        "w/h: empty caBundle (CA not injected yet)",
        "w/h: failurePolicy 'Ignore', expected 'Fail'",
        "w/h: admissionReviewVersions ['v1', 'v1beta1'], expected ['v1beta1'] first",
    ]
    assert charts.webhook_configuration_problems({"metadata": {"name": "w"}}) == [
        "w: no webhooks"]
