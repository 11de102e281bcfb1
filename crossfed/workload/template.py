"""A user's own workload in place of crossfed's probe: a pod template read from a YAML file.

The federation, namespace, service account, labels and webhooks stay crossfed's; only the
container is the user's. A template says what runs and how to tell it worked:

    image: registry.example/my-app:1.4      # the container image (pods)
    command: [python3, /opt/app/main.py]    # required, the container's command
    args: [--once]                          # optional
    env:                                    # optional: a mapping, or [{name, value}, ...]
      VAULT_URL: $(CROSSFED_AZURE_VAULT_URL)
    volumes:                                # optional
      - name: app
        mountPath: /opt/app
        files: {main.py: main.py}           # file in the volume: file beside the template
      - name: scratch
        mountPath: /tmp/scratch
        emptyDir: {}
    success:                                # optional, default {exitCode: 0}; both may be set
      exitCode: 0
      jsonLine: {ok: true}                  # a JSON object on stdout holding these keys/values

`$(NAME)` in env values, command and args expands as Kubernetes expands it, from the variables
defined before (crossfed's CROSSFED_* targets below, the webhook's, the template's earlier
ones); an unknown name is left as written. crossfed tells the workload its targets, which carry
the run id, in CROSSFED_AWS_BUCKET, CROSSFED_AZURE_VAULT_URL, CROSSFED_AZURE_SECRET and, against
loopback stand-ins whose vault URL cannot match Key Vault's challenge resource,
CROSSFED_AZURE_SKIP_CHALLENGE_RESOURCE_CHECK=true.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TEMPLATE_FIELDS = ("name", "image", "imagePullPolicy", "command", "args", "env", "volumes",
                   "success")
VOLUME_FIELDS = ("name", "mountPath", "files", "emptyDir")
SUCCESS_FIELDS = ("exitCode", "jsonLine")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
DEFAULT_CONTAINER = "workload"
# Where the webhooks mount tokens. The process environment has no /var/run: a workload there
# reads these paths under its private root instead (see process_path).
SECRETS_PREFIX = "/var/run/secrets/"
# In the process environment, the directory standing for the pod's "/": a workload that builds
# an absolute path itself (a hard-coded token path, as prometheus/prometheus#18972's did) reads
# os.environ.get("CROSSFED_ROOT", "") + path, which is the plain path in a pod. Paths the
# template itself names (command, args, env values) under /var/run/secrets/ or a volume's
# mountPath are rewritten for it, so an unmodified application taking paths as flags or env
# is tested as it is.
ROOT_ENV = "CROSSFED_ROOT"
# The interpreter names a template's command may start with that, in the process environment
# (which has no image), run as the harness's own Python: the one with the SDKs installed.
PYTHONS = ("python", "python3", "/usr/bin/python3", "/usr/local/bin/python3",
           "/opt/probe/bin/python")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class TemplateError(ValueError):
    """A template that cannot run: the message names the file, the field and the fix."""

    def __init__(self, source: str, path: str, problem: str, fix: str) -> None:
        super().__init__(f"workload template {source}: field '{path}': {problem}; {fix}")
        self.field = path


@dataclass(frozen=True)
class Volume:
    name: str
    mount_path: str
    files: tuple[tuple[str, str], ...] = ()  # (name in the volume, its text)
    empty_dir: bool = False

    @property
    def config_map(self) -> str:
        return f"crossfed-workload-{self.name}"[:63].rstrip("-")


@dataclass(frozen=True)
class Success:
    exit_code: int | None = 0
    json_line: Mapping[str, Any] | None = None

    def describe(self) -> str:
        parts = [f"exit code {self.exit_code}"] if self.exit_code is not None else []
        if self.json_line is not None:
            parts.append(f"a JSON line on stdout with {json.dumps(self.json_line)}")
        return " and ".join(parts)

    def problems(self, exit_code: int, stdout: str) -> list[str]:
        """What keeps the run from meeting the condition (empty: met)."""
        found: list[str] = []
        if self.exit_code is not None and exit_code != self.exit_code:
            found.append(f"exit code {exit_code}, expected {self.exit_code}")
        if self.json_line is not None and not any(
                _holds(line, self.json_line) for line in json_lines(stdout)):
            found.append(f"no JSON line on stdout holds {json.dumps(self.json_line)}")
        return found


@dataclass(frozen=True)
class WorkloadTemplate:
    source: str  # the file it came from, for messages
    image: str
    command: tuple[str, ...]
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    volumes: tuple[Volume, ...] = ()
    success: Success = field(default_factory=Success)
    name: str = DEFAULT_CONTAINER
    pull_policy: str | None = None  # None: the pod settings' policy

    @classmethod
    def from_file(cls, path: str | Path) -> WorkloadTemplate:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise TemplateError(str(path), "(file)", f"cannot be read ({exc.strerror})",
                                "give the path of a YAML workload template") from exc
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
            problem = getattr(exc, "problem", None) or type(exc).__name__
            raise TemplateError(str(path), "(file)", f"is not YAML ({where}{problem})",
                                "fix the YAML syntax there") from exc
        return cls.from_dict(data, str(path), path.parent)

    @classmethod
    def from_dict(cls, data: Any, source: str = "<template>",
                  base: Path | None = None) -> WorkloadTemplate:
        """base: where the volumes' files are read from (the template's folder)."""
        check = _Checker(source)
        if not isinstance(data, dict):
            check.fail("(top level)", "is not a mapping",
                       "write image, command and the other fields as a YAML mapping")
        unknown = sorted(set(data) - set(TEMPLATE_FIELDS))
        if unknown:
            check.fail(unknown[0], "is not a template field",
                       f"use one of {', '.join(TEMPLATE_FIELDS)}")
        image = data.get("image")
        if not isinstance(image, str) or not image.strip():
            check.fail("image", "is missing or empty",
                       "name the container image, e.g. image: registry.example/app:1.0")
        name = data.get("name", DEFAULT_CONTAINER)
        if not isinstance(name, str) or not _DNS_LABEL.fullmatch(name):
            check.fail("name", f"{name!r} is not a container name",
                       "use lowercase letters, digits and '-' (a DNS label)")
        pull = data.get("imagePullPolicy")
        if pull is not None and pull not in PULL_POLICIES:
            check.fail("imagePullPolicy", f"{pull!r} is not a pull policy",
                       f"use one of {', '.join(PULL_POLICIES)}")
        command = check.strings("command", data.get("command"), required=True)
        args = check.strings("args", data.get("args", []))
        volumes = tuple(check.volume(i, v, base) for i, v in
                        enumerate(check.listed("volumes", data.get("volumes", []))))
        names = [v.name for v in volumes]
        for duplicate in {n for n in names if names.count(n) > 1}:
            check.fail("volumes", f"name {duplicate!r} is used twice", "name each volume once")
        return cls(source, image.strip(), command, args, check.env(data.get("env", {})),
                   volumes, check.success(data.get("success", {"exitCode": 0})), name, pull)

    # -- the process environment --------------------------------------------------------------

    def mapped_prefixes(self) -> tuple[str, ...]:
        return (SECRETS_PREFIX, *(v.mount_path.rstrip("/") + "/" for v in self.volumes))

    def process_path(self, value: str, root: Path) -> str:
        """A path the template names, as the process sees it: under root when the pod would
        find it in a mounted volume (the token's, or one of the template's)."""
        if any(value.startswith(p) or value + "/" == p for p in self.mapped_prefixes()):
            return str(root / value.lstrip("/"))
        return value

    def place_files(self, root: Path) -> None:
        """The template's volumes under root, where the pod would mount them."""
        for volume in self.volumes:
            directory = root / volume.mount_path.lstrip("/")
            directory.mkdir(parents=True, exist_ok=True)
            for name, text in volume.files:
                (directory / name).write_text(text)

    def process_command(self, env: dict[str, str], root: Path) -> tuple[list[str], dict[str, str]]:
        """The argv and the full environment of the process: `env` (what the pod would get
        from crossfed and the webhook) plus CROSSFED_ROOT and the template's own variables,
        expanded and path-mapped as the docstrings above say."""
        env = {**env, ROOT_ENV: str(root)}
        for name, value in self.env:
            env[name] = self.process_path(expand(value, env), root)
        argv = [self.process_path(expand(part, env), root)
                for part in (*self.command, *self.args)]
        if argv[0] in PYTHONS:
            argv[0] = sys.executable
        return argv, env


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: defined names replaced, $$(VAR) kept literal, others left."""
    def replace(match: re.Match[str]) -> str:
        start = match.start()
        if start > 0 and value[start - 1] == "$":
            return match.group(0)
        return env.get(match.group(1), match.group(0))

    return _REFERENCE.sub(replace, value).replace("$$(", "$(")


def json_lines(stdout: str) -> list[dict[str, Any]]:
    found = []
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                parsed = json.loads(line)
            except ValueError:
                continue
            if isinstance(parsed, dict):
                found.append(parsed)
    return found


def _holds(actual: Any, expected: Any) -> bool:
    """Whether `actual` has every key/value of `expected`, nested mappings compared the same."""
    if isinstance(expected, Mapping):
        return isinstance(actual, Mapping) and all(
            k in actual and _holds(actual[k], v) for k, v in expected.items())
    return actual == expected


class _Checker:
    """The validation of one template; each failure names the field and the fix."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, problem: str, fix: str) -> None:
        raise TemplateError(self.source, path, problem, fix)

    def strings(self, path: str, value: Any, required: bool = False) -> tuple[str, ...]:
        if isinstance(value, str):
            first = (value.split() or ["x"])[0]
            self.fail(path, "is a string, not a list",
                      f"write it as a list, e.g. {path}: [{first}, ...]")
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or (
                required and not value):
            self.fail(path, "must be a non-empty list of strings" if required
                      else "must be a list of strings",
                      f"e.g. {path}: [python3, /opt/app/main.py]")
        return tuple(value)

    def listed(self, path: str, value: Any) -> list[Any]:
        if not isinstance(value, list):
            self.fail(path, "must be a list", f"write each entry as '- ...' under {path}")
        return value

    def env(self, value: Any) -> tuple[tuple[str, str], ...]:
        if isinstance(value, dict):
            pairs = list(value.items())
        elif isinstance(value, list):
            pairs = []
            for i, item in enumerate(value):
                if not isinstance(item, dict) or set(item) - {"name", "value"} or (
                        "name" not in item):
                    self.fail(f"env[{i}]", "is not {name, value}",
                              "write - {name: NAME, value: VALUE} (valueFrom is not supported: "
                              "give the value)")
                pairs.append((item["name"], item.get("value", "")))
        else:
            self.fail("env", "must be a mapping or a list of {name, value}",
                      "e.g. env: {VAULT_URL: $(CROSSFED_AZURE_VAULT_URL)}")
        result = []
        for name, item in pairs:
            if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
                self.fail(f"env.{name}", "is not a variable name",
                          "use letters, digits, '_', '-' and '.', not starting with a digit")
            if isinstance(item, bool) or not isinstance(item, (str, int, float)):
                self.fail(f"env.{name}", f"value {item!r} is not a string",
                          "quote it, e.g. \"true\" (Kubernetes takes strings only)")
            result.append((name, str(item)))
        return tuple(result)

    def volume(self, index: int, value: Any, base: Path | None) -> Volume:
        path = f"volumes[{index}]"
        if not isinstance(value, dict):
            self.fail(path, "is not a mapping", "give name, mountPath and files or emptyDir")
        unknown = sorted(set(value) - set(VOLUME_FIELDS))
        if unknown:
            self.fail(f"{path}.{unknown[0]}", "is not a volume field",
                      f"use one of {', '.join(VOLUME_FIELDS)}")
        name, mount = value.get("name"), value.get("mountPath")
        if not isinstance(name, str) or not _DNS_LABEL.fullmatch(name):
            self.fail(f"{path}.name", f"{name!r} is not a volume name",
                      "use lowercase letters, digits and '-' (a DNS label)")
        if not isinstance(mount, str) or not mount.startswith("/") or mount.rstrip("/") == "":
            self.fail(f"{path}.mountPath", f"{mount!r} is not an absolute directory",
                      "give the directory the container sees, e.g. /opt/app")
        if mount.rstrip("/") + "/" == SECRETS_PREFIX or SECRETS_PREFIX.startswith(
                mount.rstrip("/") + "/"):
            self.fail(f"{path}.mountPath", f"{mount} would hide the webhooks' token mounts",
                      "mount the volume elsewhere, e.g. /opt/app")
        if ("files" in value) == ("emptyDir" in value):
            self.fail(path, "needs exactly one of files and emptyDir",
                      "ship files (files: {main.py: main.py}) or ask for emptyDir: {}")
        if "emptyDir" in value:
            return Volume(name, mount.rstrip("/"), empty_dir=True)
        files = value["files"]
        if not isinstance(files, dict) or not files:
            self.fail(f"{path}.files", "must be a non-empty mapping",
                      "map each file's name in the volume to a file beside the template")
        shipped = []
        for key, local in files.items():
            if not isinstance(key, str) or "/" in key or key in ("", ".", ".."):
                self.fail(f"{path}.files.{key}", "is not a file name",
                          "use a plain name (a ConfigMap key), no '/'")
            if not isinstance(local, str):
                self.fail(f"{path}.files.{key}", "must name a file",
                          "give a path relative to the template")
            file = (base or Path.cwd()) / local
            try:
                shipped.append((key, file.read_text()))
            except OSError as exc:
                self.fail(f"{path}.files.{key}", f"{file} cannot be read ({exc.strerror})",
                          "give a path relative to the template's folder")
        return Volume(name, mount.rstrip("/"), tuple(shipped))

    def success(self, value: Any) -> Success:
        if not isinstance(value, dict) or not value:
            self.fail("success", "must be a mapping with exitCode and/or jsonLine",
                      "e.g. success: {exitCode: 0} or success: {jsonLine: {ok: true}}")
        unknown = sorted(set(value) - set(SUCCESS_FIELDS))
        if unknown:
            self.fail(f"success.{unknown[0]}", "is not a success condition",
                      f"use {' and/or '.join(SUCCESS_FIELDS)}")
        code = value.get("exitCode")
        if code is not None and (isinstance(code, bool) or not isinstance(code, int)
                                 or not 0 <= code <= 255):
            self.fail("success.exitCode", f"{code!r} is not an exit code",
                      "give an integer from 0 to 255")
        line = value.get("jsonLine")
        if line is not None and (not isinstance(line, dict) or not line):
            self.fail("success.jsonLine", "must be a non-empty mapping",
                      "give the keys and values the line must hold, e.g. {ok: true}")
        return Success(code, line)


def target_env(aws_bucket: str | None = None, vault_url: str | None = None,
               secret: str | None = None, skip_challenge_check: bool = False) -> dict[str, str]:
    """What crossfed tells a template's workload about the targets it made for the run."""
    env = {"CROSSFED_AWS_BUCKET": aws_bucket, "CROSSFED_AZURE_VAULT_URL": vault_url,
           "CROSSFED_AZURE_SECRET": secret}
    found = {k: v for k, v in env.items() if v}
    if skip_challenge_check and vault_url:
        found["CROSSFED_AZURE_SKIP_CHALLENGE_RESOURCE_CHECK"] = "true"
    return found
