"""Workload templates (crossfed/workload/template.py): a user's own workload in place of the
probe. Parsing and the errors that name the field and the fix; the pod crossfed builds around
the template's container; the process environment's env, paths and files; the success
conditions; and the diagnosis of a token read from where azure-workload-identity no longer
puts it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from kubernetes import client

from crossfed.verdict import (
    VerdictError,
    check_template,
    moved_token_diagnosis,
    template_problems,
)
from crossfed.webhooks.azure_workload_identity import CONTRACTS
from crossfed.workload.pod import RUN_LABEL, PodRunner, PodSettings, missing_in_pod
from crossfed.workload.process import (
    AzureWorkload,
    ProbeResult,
    SdkTargets,
    named_paths,
    run_workload,
)
from crossfed.workload.template import TemplateError, WorkloadTemplate, expand

pytestmark = [pytest.mark.local]
E2E_TEMPLATE = Path(__file__).parents[1] / "e2e" / "data" / "hard-coded-token-path.yaml"
V151, V160 = CONTRACTS["v1.5.1"], CONTRACTS["v1.6.0"]
LEGACY = "/var/run/secrets/azure/tokens/azure-identity-token"
MOVED = "/var/run/secrets/azure/wi/token/azure-identity-token"
AZURE = AzureWorkload("11111111-2222-3333-4444-555555555555",
                      "66666666-7777-8888-9999-000000000000", "https://vault.example/", "s1")
# a JWT-shaped token: what scrubbing must recognise
TOKEN = ("eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6YTpiIn0."
         "c2lnbmF0dXJlLW9mLXRoZS10b2tlbi10aGF0LW11c3Qtbm90LWJlLXNob3du")


def template(**fields: object) -> WorkloadTemplate:
    data: dict[str, object] = {"image": "app:1", "command": ["python3", "/opt/app/main.py"]}
    data.update(fields)
    return WorkloadTemplate.from_dict({k: v for k, v in data.items() if v is not None},
                                      "t.yaml")


# -- parsing and validation ------------------------------------------------------------------

def test_the_shipped_template_parses() -> None:
    parsed = WorkloadTemplate.from_file(E2E_TEMPLATE)
    assert parsed.name == "read-secret" and parsed.image == "crossfed/probe:local"
    assert parsed.command == ("/opt/probe/bin/python", "/opt/workload/read_secret.py")
    assert dict(parsed.env)["VAULT_URL"] == "$(CROSSFED_AZURE_VAULT_URL)"
    (volume,) = parsed.volumes
    assert volume.mount_path == "/opt/workload"
    assert volume.config_map == "crossfed-workload-workload"
    assert dict(volume.files)["read_secret.py"].startswith('"""A user\'s workload')
    assert parsed.success.exit_code == 0 and parsed.success.json_line == {"ok": True}


def test_env_as_a_kubernetes_list_and_the_default_success() -> None:
    parsed = template(env=[{"name": "A", "value": "1"}, {"name": "B"}])
    assert parsed.env == (("A", "1"), ("B", ""))
    assert parsed.success.exit_code == 0 and parsed.success.json_line is None


@pytest.mark.parametrize(("fields", "field", "fix"), [
    ({"image": None}, "image", "name the container image"),
    ({"command": "python3 main.py"}, "command", "write it as a list, e.g. command: [python3"),
    ({"command": []}, "command", "e.g. command: [python3, /opt/app/main.py]"),
    ({"comand": ["x"]}, "comand", "use one of name, image"),
    ({"name": "My_App"}, "name", "DNS label"),
    ({"imagePullPolicy": "Sometimes"}, "imagePullPolicy", "Always, IfNotPresent, Never"),
    ({"env": {"FLAG": True}}, "env.FLAG", 'quote it, e.g. "true"'),
    ({"env": [{"name": "A", "valueFrom": {}}]}, "env[0]", "valueFrom is not supported"),
    ({"env": {"1X": "v"}}, "env.1X", "not starting with a digit"),
    ({"volumes": {"name": "x"}}, "volumes", "write each entry as '- ...'"),
    ({"volumes": [{"name": "a", "mountPath": "/var/run/secrets", "emptyDir": {}}]},
     "volumes[0].mountPath", "mount the volume elsewhere"),
    ({"volumes": [{"name": "a", "mountPath": "opt/app", "emptyDir": {}}]},
     "volumes[0].mountPath", "e.g. /opt/app"),
    ({"volumes": [{"name": "a", "mountPath": "/opt/a", "emptyDir": {}, "files": {}}]},
     "volumes[0]", "exactly one of files and emptyDir"),
    ({"volumes": [{"name": "a", "mountPath": "/opt/a", "files": {"m.py": "absent.py"}}]},
     "volumes[0].files.m.py", "relative to the template's folder"),
    ({"volumes": [{"name": "a", "mountPath": "/opt/a", "emptyDir": {}},
                  {"name": "a", "mountPath": "/opt/b", "emptyDir": {}}]},
     "volumes", "name each volume once"),
    ({"success": {"exitCode": 300}}, "success.exitCode", "integer from 0 to 255"),
    ({"success": {"exitCode": True}}, "success.exitCode", "integer from 0 to 255"),
    ({"success": {"jsonLine": {}}}, "success.jsonLine", "e.g. {ok: true}"),
    ({"success": {"stdout": "ok"}}, "success.stdout", "use exitCode and/or jsonLine"),
])
def test_errors_name_the_field_and_the_fix(fields: dict[str, object], field: str,
                                           fix: str) -> None:
    with pytest.raises(TemplateError) as failed:
        template(**fields)
    assert failed.value.field == field
    assert str(failed.value).startswith(f"workload template t.yaml: field '{field}': ")
    assert fix in str(failed.value)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match=r"field '\(file\)': cannot be read"):
        WorkloadTemplate.from_file(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("image: [unclosed\n")
    with pytest.raises(TemplateError, match=r"is not YAML \(line 2, column 1: expected ',' or "
                       r"']', but got '<stream end>'\); fix the YAML syntax there$"):
        WorkloadTemplate.from_file(bad)
    bad.write_text("- a list\n")
    with pytest.raises(TemplateError, match=r"field '\(top level\)': is not a mapping"):
        WorkloadTemplate.from_file(bad)


# -- the pod ---------------------------------------------------------------------------------

def _pod(tmp_path: Path, with_template: WorkloadTemplate | None) -> client.V1Pod:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    runner = PodRunner(None, "run42", ca, PodSettings())  # type: ignore[arg-type]
    targets = SdkTargets(authority_host="https://entra.test:8443",
                         skip_challenge_resource_check=True)
    return runner.build_pod("kv-reader", targets, azure=AZURE, template=with_template)


def test_the_template_container_replaces_the_probe_and_crossfed_keeps_the_pod(
        tmp_path: Path) -> None:
    probe, own = _pod(tmp_path, None), _pod(tmp_path, WorkloadTemplate.from_file(E2E_TEMPLATE))
    assert [c.name for c in probe.spec.containers] == ["probe"]
    (container,) = own.spec.containers
    assert container.name == "read-secret" and container.image == "crossfed/probe:local"
    assert container.command == ["/opt/probe/bin/python", "/opt/workload/read_secret.py"]
    assert container.image_pull_policy == "Never"  # the settings', the template names none
    for pod in (probe, own):  # what stays crossfed's
        assert pod.spec.service_account_name == "kv-reader"
        assert pod.metadata.labels == {RUN_LABEL: "run42", "azure.workload.identity/use": "true"}
        assert pod.spec.restart_policy == "Never"
        assert pod.spec.automount_service_account_token is False
    names = [e.name for e in container.env]
    env = {e.name: e.value for e in container.env}
    assert env["AWS_CA_BUNDLE"] == "/etc/crossfed/ca.pem"
    assert env["AZURE_AUTHORITY_HOST"] == "https://entra.test:8443/"
    assert env["CROSSFED_AZURE_VAULT_URL"] == "https://vault.example/"
    assert env["CROSSFED_AZURE_SKIP_CHALLENGE_RESOURCE_CHECK"] == "true"
    # Kubernetes expands $(X) only from variables defined before: the targets come first.
    assert names.index("CROSSFED_AZURE_VAULT_URL") < names.index("VAULT_URL")
    assert env["VAULT_URL"] == "$(CROSSFED_AZURE_VAULT_URL)"
    # the webhook adds the token variables itself; crossfed names none in the pod it submits
    assert "AZURE_FEDERATED_TOKEN_FILE" not in env
    volumes = {v.name: v for v in own.spec.volumes}
    assert volumes["workload"].config_map.name == "crossfed-workload-workload"
    assert volumes["crossfed-ca"].config_map.name == "crossfed-ca"
    assert [(m.name, m.mount_path, m.read_only) for m in container.volume_mounts] == [
        ("crossfed-ca", "/etc/crossfed", True), ("workload", "/opt/workload", True)]


def test_the_template_may_override_crossfed_env_and_pull_policy(tmp_path: Path) -> None:
    own = _pod(tmp_path, template(env={"AZURE_AUTHORITY_HOST": "https://mine/"},
                                  imagePullPolicy="IfNotPresent",
                                  volumes=[{"name": "s", "mountPath": "/s", "emptyDir": {}}]))
    (container,) = own.spec.containers
    assert {e.name: e.value for e in container.env}["AZURE_AUTHORITY_HOST"] == "https://mine/"
    assert container.image_pull_policy == "IfNotPresent"
    assert own.spec.volumes[-1].empty_dir is not None
    assert container.volume_mounts[-1].read_only is False


def test_missing_paths_in_a_pod_are_judged_from_its_mounts() -> None:
    pod = client.V1Pod(spec=client.V1PodSpec(containers=[client.V1Container(
        name="w", env=[client.V1EnvVar(name="AZURE_FEDERATED_TOKEN_FILE", value=MOVED)],
        volume_mounts=[client.V1VolumeMount(name="t", mount_path="/var/run/secrets/azure/wi"),
                       client.V1VolumeMount(name="c", mount_path="/var/run/secrets/mine")])]))
    logs = (f"open {LEGACY}: no such file or directory\nread {MOVED}\n"
            "loaded /var/run/secrets/mine/ca.pem\n"
            "open /var/run/secrets/azure/wi/azure-identity-token: no such file")
    assert missing_in_pod(logs, pod) == (LEGACY, "/var/run/secrets/azure/wi/azure-identity-token")


# -- the process environment -----------------------------------------------------------------

def test_process_command_maps_paths_the_template_names_and_sets_the_root(tmp_path: Path) -> None:
    own = template(command=["python3", "/opt/app/main.py"],
                   args=["--token", LEGACY, "--config", "/etc/app.conf", "$(VAULT)"],
                   env={"VAULT": "$(CROSSFED_AZURE_VAULT_URL)", "TOKEN": LEGACY,
                        "LITERAL": "$$(CROSSFED_AZURE_VAULT_URL)", "UNKNOWN": "$(NOPE)"},
                   volumes=[{"name": "app", "mountPath": "/opt/app", "emptyDir": {}}])
    argv, env = own.process_command({"CROSSFED_AZURE_VAULT_URL": "https://v/"}, tmp_path)
    assert argv == [sys.executable, f"{tmp_path}/opt/app/main.py", "--token",
                    f"{tmp_path}{LEGACY}", "--config", "/etc/app.conf", "https://v/"]
    assert env["CROSSFED_ROOT"] == str(tmp_path)
    assert env["TOKEN"] == f"{tmp_path}{LEGACY}"
    assert env["LITERAL"] == "$(CROSSFED_AZURE_VAULT_URL)"
    assert env["UNKNOWN"] == "$(NOPE)"


def test_expand_is_kubernetes_expansion() -> None:
    assert expand("$(A)-$(B)-$$(A)", {"A": "1"}) == "1-$(B)-$(A)"


def test_run_workload_gives_the_contract_token_and_maps_the_hard_coded_path(
        tmp_path: Path) -> None:
    """No stand-ins: a one-line workload reads the path it is given and reports what it read."""
    script = ("import json,os,sys; p=sys.argv[1]; "
              "print(json.dumps({'read': len(open(p).read()), "
              "'env': os.environ['AZURE_FEDERATED_TOKEN_FILE'].endswith(sys.argv[2])}))")
    own = template(command=["python3", "-c", script, LEGACY, "azure-identity-token"],
                   success={"jsonLine": {"read": len(TOKEN), "env": True}})
    passed = run_workload(own, TOKEN, SdkTargets(), azure=AZURE, work_root=tmp_path / "pods")
    assert passed.exit_code == 0 and template_problems(own, passed, V151) == []
    assert passed.env["AZURE_FEDERATED_TOKEN_FILE"] == LEGACY  # the pod's view, root removed
    assert passed.env["CROSSFED_AZURE_VAULT_URL"] == "https://vault.example/"

    failed = run_workload(own, TOKEN, SdkTargets(), azure=AzureWorkload(
        AZURE.client_id, AZURE.tenant_id, AZURE.vault_url, AZURE.secret, contract=V160),
        work_root=tmp_path / "pods")
    assert failed.exit_code == 1 and failed.missing_paths == (LEGACY,)
    assert failed.env["AZURE_FEDERATED_TOKEN_FILE"] == MOVED
    problems = template_problems(own, failed, V160)
    assert problems[-1] == (
        f"diagnosis: token file {LEGACY} does not exist: azure-workload-identity v1.6.0 mounts "
        f"the token at {MOVED}; read the path from AZURE_FEDERATED_TOKEN_FILE instead of "
        "hard-coding it")
    assert list((tmp_path / "pods").iterdir()) == []  # the private root is gone


def test_a_command_not_on_this_host_is_exit_127(tmp_path: Path) -> None:
    own = template(command=["/no/such/binary"])
    result = run_workload(own, TOKEN, SdkTargets(), azure=AZURE, work_root=tmp_path)
    assert result.exit_code == 127 and "/no/such/binary" in result.stderr
    assert template_problems(own, result) == ["exit code 127, expected 0"]


# -- success conditions ----------------------------------------------------------------------

def _result(code: int, stdout: str = "", missing: tuple[str, ...] = (),
            token_file: str | None = None) -> ProbeResult:
    env = {"AZURE_FEDERATED_TOKEN_FILE": token_file} if token_file else {}
    return ProbeResult({}, code, "", env, stdout=stdout, missing_paths=missing)


def test_exit_code_condition() -> None:
    own = template()
    assert template_problems(own, _result(0)) == []
    assert template_problems(own, _result(3)) == ["exit code 3, expected 0"]
    assert template_problems(template(success={"exitCode": 3}), _result(3)) == []


def test_json_line_condition_is_a_nested_subset_of_some_line() -> None:
    own = template(success={"jsonLine": {"ok": True, "secret": {"version": "v1"}}})
    good = "starting\n" + json.dumps({"ok": True, "secret": {"version": "v1", "n": 2}}) + "\n"
    assert template_problems(own, _result(1, good)) == []  # exit code not part of it
    for stdout in ['{"ok": true, "secret": {"version": "v2"}}', '{"ok": "true"}', "{not json",
                   '["ok"]', ""]:
        assert template_problems(own, _result(0, stdout)) == [
            'no JSON line on stdout holds {"ok": true, "secret": {"version": "v1"}}']


def test_both_conditions_must_hold() -> None:
    own = template(success={"exitCode": 0, "jsonLine": {"ok": True}})
    assert len(template_problems(own, _result(1, '{"ok": false}'))) == 2
    assert own.success.describe() == 'exit code 0 and a JSON line on stdout with {"ok": true}'


# -- the diagnosis ---------------------------------------------------------------------------

def test_diagnosis_names_the_moved_path_and_the_variable() -> None:
    assert moved_token_diagnosis((LEGACY,), V160) == (
        f"token file {LEGACY} does not exist: azure-workload-identity v1.6.0 mounts the token "
        f"at {MOVED}; read the path from AZURE_FEDERATED_TOKEN_FILE instead of hard-coding it")


def test_diagnosis_without_a_named_path_falls_back_to_the_v1_5_path() -> None:
    assert moved_token_diagnosis((), V160) == (
        f"if the workload reads the token from v1.5.x's {LEGACY}: that file does not exist, "
        f"azure-workload-identity v1.6.0 mounts the token at {MOVED}; read the path from "
        "AZURE_FEDERATED_TOKEN_FILE instead of hard-coding it")


def test_no_diagnosis_where_the_token_is_where_the_workload_looks() -> None:
    assert moved_token_diagnosis((), V151) is None
    assert moved_token_diagnosis((MOVED,), V160) is None  # it read the right file
    assert moved_token_diagnosis(("/var/run/secrets/mine/ca.pem",), V160) is None
    # the pod's real token path wins over the contract's (a webhook that drifted)
    assert f"mounts the token at {LEGACY}" in moved_token_diagnosis(
        (MOVED,), V160, token_path=LEGACY)


def test_a_passing_run_gets_no_diagnosis_and_a_failing_one_shows_no_token() -> None:
    own = template()
    assert template_problems(own, _result(0, missing=(LEGACY,)), V160) == []
    leaked = _result(1, f"token was {TOKEN}\n", missing=(LEGACY,), token_file=MOVED)
    with pytest.raises(VerdictError) as failed:
        check_template("mine", own, leaked, V160)
    message = str(failed.value)
    assert f"token file {LEGACY} does not exist" in message
    assert "plan 'mine': workload t.yaml did not meet its success condition (exit code 0)" in (
        message)
    assert TOKEN not in message and TOKEN.split(".")[2] not in message


def test_named_paths_take_the_process_root_out() -> None:
    root = "/state/pods/crossfed-pod-x"
    output = (f"No such file or directory: '{root}{LEGACY}'\nopen {MOVED}: denied\n"
              f"/elsewhere{LEGACY} ignored, {LEGACY}. again")
    assert named_paths(output, root) == (LEGACY, MOVED)
