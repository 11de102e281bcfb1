"""Contract drift, per pod: what the cluster's webhooks did to a pod against what crossfed's
reference mutator says they should do (issue 13, point 3).

A Mutation is what changed between the pod crossfed submitted and the pod the API server
returned, restricted to what the two webhooks (amazon-eks-pod-identity-webhook's IRSA path and
azure-workload-identity's webhook) touch: per container env, volumeMounts, a few container
fields, added containers, volumes, annotations and labels. The view is an allow-list, so what
the API server itself writes elsewhere (terminationMessagePath/Policy, imagePullPolicy,
resources, dnsPolicy, schedulerName, securityContext {}, tolerations, priority,
enableServiceLinks, nodeName, status, uid, resourceVersion, creationTimestamp...) never enters
it; what the API server adds inside the viewed fields is named in IGNORED and DEFAULTS below.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from crossfed.webhooks.reference_mutator import Denied, MutatorSettings, apply_patch, pod_patch

Entry = dict[str, Any]
SECTIONS = ("initContainers", "containers")
# Container fields besides env and volumeMounts the webhooks set: the azwi proxy's image, args
# and port, and restartPolicy (native sidecars; EKS before v0.5.3 drops it when re-serialising).
CONTAINER_FIELDS = ("image", "command", "args", "ports", "restartPolicy")


@dataclass(frozen=True)
class Ignored:
    """What others than the webhooks add inside the viewed fields, left out of a mutation:
    the ServiceAccount admission plugin's token volume and its mount in every container
    (kube-api-access-* since 1.22, the secret default-token-* before), and annotations that
    admission plugins or controllers of some distributions write on every pod."""

    volume_prefixes: tuple[str, ...] = ("kube-api-access-", "default-token-")
    annotation_prefixes: tuple[str, ...] = (
        "kubectl.kubernetes.io/", "kubernetes.io/psp", "openshift.io/", "cni.projectcalico.org/")
    label_prefixes: tuple[str, ...] = ()


IGNORED = Ignored()
# The API server's defaults inside viewed objects, filled in on both sides so that a submitted
# object without them and the returned one with them compare equal.
DEFAULTS: dict[str, dict[str, Any]] = {
    "port": {"protocol": "TCP"},
    "fieldRef": {"apiVersion": "v1"},
    "resourceFieldRef": {"divisor": "0"},
    "serviceAccountToken": {"expirationSeconds": 3600},
}


@dataclass(frozen=True)
class ContainerMutation:
    """One container's change. Values are as they are after the webhooks; None: removed."""

    added: bool = False
    removed: bool = False
    fields: dict[str, Any] = field(default_factory=dict)  # CONTAINER_FIELDS changed
    env: tuple[Entry, ...] = ()  # variables added or changed, in the container's order
    env_removed: tuple[str, ...] = ()
    env_order: tuple[str, ...] | None = None  # every name after, when the env changed
    mounts: dict[str, Entry] = field(default_factory=dict)  # name -> mountPath, readOnly
    mounts_removed: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out = {"added": self.added, "removed": self.removed, "fields": self.fields,
               "env": list(self.env), "env_removed": list(self.env_removed),
               "env_order": None if self.env_order is None else list(self.env_order),
               "mounts": self.mounts, "mounts_removed": list(self.mounts_removed)}
        return {k: v for k, v in out.items() if v not in (False, None, [], {})}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ContainerMutation:
        order = data.get("env_order")
        return cls(added=bool(data.get("added")), removed=bool(data.get("removed")),
                   fields=dict(data.get("fields") or {}), env=tuple(data.get("env") or ()),
                   env_removed=tuple(data.get("env_removed") or ()),
                   env_order=None if order is None else tuple(order),
                   mounts=dict(data.get("mounts") or {}),
                   mounts_removed=tuple(data.get("mounts_removed") or ()))


@dataclass(frozen=True)
class Mutation:
    """What the webhooks changed in a pod. Containers keyed "<section>/<name>"."""

    containers: dict[str, ContainerMutation] = field(default_factory=dict)
    volumes: dict[str, Entry] = field(default_factory=dict)  # added or replaced: summary
    volumes_removed: tuple[str, ...] = ()
    annotations: dict[str, str | None] = field(default_factory=dict)
    labels: dict[str, str | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"containers": {k: c.to_dict() for k, c in self.containers.items()},
                "volumes": self.volumes, "volumes_removed": list(self.volumes_removed),
                "annotations": self.annotations, "labels": self.labels}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Mutation:
        return cls(containers={k: ContainerMutation.from_dict(c)
                               for k, c in (data.get("containers") or {}).items()},
                   volumes=dict(data.get("volumes") or {}),
                   volumes_removed=tuple(data.get("volumes_removed") or ()),
                   annotations=dict(data.get("annotations") or {}),
                   labels=dict(data.get("labels") or {}))


# --- the webhook-relevant view of a pod ---

def _ignored(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name.startswith(p) for p in prefixes)


def _defaulted(kind: str, obj: Mapping[str, Any]) -> dict[str, Any]:
    return {**DEFAULTS.get(kind, {}), **obj}


def _env_entry(entry: Mapping[str, Any]) -> Entry:
    out: Entry = {"name": entry.get("name")}
    if entry.get("value"):  # Go's omitempty: "" and absent are the same variable
        out["value"] = entry["value"]
    if entry.get("valueFrom"):
        out["valueFrom"] = {kind: _defaulted(kind, ref)
                            for kind, ref in entry["valueFrom"].items()}
    return out


def _mount(mount: Mapping[str, Any]) -> Entry:
    return {"mountPath": mount.get("mountPath", ""), "readOnly": bool(mount.get("readOnly"))}


def _container_view(container: Mapping[str, Any], ignored: Ignored) -> dict[str, Any]:
    fields = {k: container[k] for k in CONTAINER_FIELDS if container.get(k) is not None}
    if "ports" in fields:
        fields["ports"] = [_defaulted("port", p) for p in fields["ports"]]
    mounts = {m.get("name"): _mount(m) for m in container.get("volumeMounts") or []
              if not _ignored(m.get("name") or "", ignored.volume_prefixes)}
    return {"fields": fields, "env": [_env_entry(e) for e in container.get("env") or []],
            "mounts": mounts}


def volume_summary(volume: Mapping[str, Any]) -> Entry:
    """A volume as the webhooks define it: for projected volumes each serviceAccountToken's
    audience, expirationSeconds and path (flat keys); other sources and volumes by type only."""
    if "projected" not in volume:
        return {"type": next((k for k in sorted(volume) if k != "name"), "emptyDir")}
    sources = (volume.get("projected") or {}).get("sources") or []
    out: Entry = {"type": "projected"}
    for index, source in enumerate(sources):
        prefix = f"sources[{index}]." if len(sources) > 1 else ""
        token = source.get("serviceAccountToken")
        if token is None:
            out[f"{prefix}source"] = next(iter(sorted(source)), "")
            continue
        token = _defaulted("serviceAccountToken", token)
        for key in ("audience", "expirationSeconds", "path"):
            if key in token:
                out[f"{prefix}serviceAccountToken.{key}"] = token[key]
    return out


def pod_view(pod: Mapping[str, Any], ignored: Ignored = IGNORED) -> dict[str, Any]:
    metadata, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    containers = {f"{section}/{c.get('name')}": _container_view(c, ignored)
                  for section in SECTIONS for c in spec.get(section) or []}
    volumes = {v.get("name"): volume_summary(v) for v in spec.get("volumes") or []
               if not _ignored(v.get("name") or "", ignored.volume_prefixes)}
    return {"containers": containers, "volumes": volumes,
            "annotations": {k: v for k, v in (metadata.get("annotations") or {}).items()
                            if not _ignored(k, ignored.annotation_prefixes)},
            "labels": {k: v for k, v in (metadata.get("labels") or {}).items()
                       if not _ignored(k, ignored.label_prefixes)}}


# --- the mutation: the view after against the view before ---

_MISSING = object()

def _changed(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """Keys added or changed (their value after) and removed (None)."""
    out = {k: v for k, v in after.items() if before.get(k, _MISSING) != v}
    return {**out, **{k: None for k in before if k not in after}}


def _container_mutation(before: dict[str, Any] | None, after: dict[str, Any] | None
                        ) -> ContainerMutation:
    if after is None:
        return ContainerMutation(removed=True)
    base = before or {"fields": {}, "env": [], "mounts": {}}
    old_env = {e["name"]: e for e in base["env"]}
    new_names = [e["name"] for e in after["env"]]
    mounts = _changed(base["mounts"], after["mounts"])
    env_changed = base["env"] != after["env"]
    return ContainerMutation(
        added=before is None, fields=_changed(base["fields"], after["fields"]),
        env=tuple(e for e in after["env"] if old_env.get(e["name"]) != e),
        env_removed=tuple(n for n in old_env if n not in new_names),
        env_order=tuple(new_names) if env_changed else None,
        mounts={k: v for k, v in mounts.items() if v is not None},
        mounts_removed=tuple(k for k, v in mounts.items() if v is None))


def actual_mutation(submitted_pod: Mapping[str, Any], created_pod: Mapping[str, Any],
                    ignored: Ignored = IGNORED) -> Mutation:
    """What the webhooks changed: the created pod against the pod crossfed submitted."""
    before, after = pod_view(submitted_pod, ignored), pod_view(created_pod, ignored)
    containers = {}
    for key in [*after["containers"], *(k for k in before["containers"]
                                        if k not in after["containers"])]:
        change = _container_mutation(before["containers"].get(key), after["containers"].get(key))
        if change != ContainerMutation():
            containers[key] = change
    volumes = _changed(before["volumes"], after["volumes"])
    return Mutation(containers=containers,
                    volumes={k: v for k, v in volumes.items() if v is not None},
                    volumes_removed=tuple(k for k, v in volumes.items() if v is None),
                    annotations=_changed(before["annotations"], after["annotations"]),
                    labels=_changed(before["labels"], after["labels"]))


def _sa_annotations(service_account: Mapping[str, Any]) -> tuple[str | None, dict[str, str]]:
    """(name, annotations) of a ServiceAccount object, or of a bare annotations mapping."""
    if "metadata" not in service_account:
        return None, dict(service_account)
    metadata = service_account["metadata"] or {}
    return metadata.get("name"), dict(metadata.get("annotations") or {})


def expected_mutation(submitted_pod: Mapping[str, Any],
                      service_account: Mapping[str, Any] | None,
                      settings: MutatorSettings) -> Mutation:
    """The reference mutator's mutation of the submitted pod for this ServiceAccount (object or
    its annotations; None: missing) and settings. Raises Denied where the contract denies it."""
    pod = json.loads(json.dumps(submitted_pod))
    sa_name, annotations = (None, {}) if service_account is None else _sa_annotations(
        service_account)

    def lookup(namespace: str, name: str) -> dict[str, str] | None:
        if service_account is None or (sa_name is not None and sa_name != name):
            return None
        return annotations

    namespace = (pod.get("metadata") or {}).get("namespace") or ""
    patch, denial = pod_patch(pod, namespace, lookup, settings)
    if denial:
        raise Denied(denial)
    return actual_mutation(pod, apply_patch(pod, patch))


# --- drift: human-readable difference lines ---

def _json(value: Any) -> str:
    return "removed" if value is None else json.dumps(value, sort_keys=True)


def describe_env(entry: Mapping[str, Any]) -> str:
    """A variable's value, or for valueFrom the reference only (never a secret's value)."""
    if "valueFrom" not in entry:
        return _json(entry.get("value", ""))
    refs = []
    for kind, ref in entry["valueFrom"].items():
        where = ref.get("fieldPath") or ref.get("resource") or "/".join(
            str(ref.get(k, "")) for k in ("name", "key"))
        refs.append(f"valueFrom {kind} {where}")
    return ", ".join(refs)


def _describe_mount(mount: Mapping[str, Any]) -> str:
    return f"{mount['mountPath']}" + (" (readOnly)" if mount.get("readOnly") else "")


def _describe_flat(entry: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={_json(v)}" for k, v in entry.items())


@dataclass(frozen=True)
class _Labels:
    actual: str
    expected: str


def _pairs(where: str, actual: Mapping[str, Any], expected: Mapping[str, Any],
           labels: _Labels, describe: Callable[[Any], str]) -> list[str]:
    lines = []
    for key in [*expected, *(k for k in actual if k not in expected)]:
        a, e = actual.get(key, _MISSING), expected.get(key, _MISSING)
        if a == e:
            continue
        if e is _MISSING:
            lines.append(f"{where} {key}: only in the {labels.actual}'s mutation: {describe(a)}")
        elif a is _MISSING:
            lines.append(f"{where} {key}: only in the {labels.expected}'s mutation: "
                         f"{describe(e)}")
        else:
            lines.append(f"{where} {key}: {labels.actual} set {describe(a)}, "
                         f"{labels.expected} expects {describe(e)}")
    return lines


def _volume_lines(name: str, a: Entry | None, e: Entry | None, labels: _Labels) -> list[str]:
    if a is not None and e is not None:
        return _pairs(f"volume {name}:", a, e, labels, _json)
    return _pairs("volume", {name: a} if a else {}, {name: e} if e else {}, labels,
                  _describe_flat)


def _removed_lines(where: str, actual: tuple[str, ...], expected: tuple[str, ...],
                   labels: _Labels) -> list[str]:
    return _pairs(where, {n: "removed" for n in actual}, {n: "removed" for n in expected},
                  labels, str)


def _container_lines(where: str, a: ContainerMutation, e: ContainerMutation,
                     labels: _Labels) -> list[str]:
    lines = _pairs(where + ":", {"added": a.added, "removed": a.removed},
                   {"added": e.added, "removed": e.removed}, labels, _json)
    lines += _pairs(where + ":", a.fields, e.fields, labels, _json)
    lines += _pairs(f"{where}: env", {v["name"]: v for v in a.env},
                    {v["name"]: v for v in e.env}, labels, describe_env)
    lines += _removed_lines(f"{where}: env removed", a.env_removed, e.env_removed, labels)
    if (a.env_order is not None and e.env_order is not None and a.env_order != e.env_order
            and sorted(a.env_order) == sorted(e.env_order)):
        lines.append(f"{where}: env order: {labels.actual} has {', '.join(a.env_order)}; "
                     f"{labels.expected} expects {', '.join(e.env_order)}")
    lines += _pairs(f"{where}: volumeMount", a.mounts, e.mounts, labels, _describe_mount)
    return lines + _removed_lines(f"{where}: volumeMount removed", a.mounts_removed,
                                  e.mounts_removed, labels)


def _where(key: str) -> str:
    section, name = key.split("/", 1)
    return f"{'init container' if section == 'initContainers' else 'container'} {name}"


def drift(actual: Mutation, expected: Mutation, *, actual_label: str = "webhook",
          expected_label: str = "contract") -> list[str]:
    """The differences between the webhook's mutation and the contract's; [] = no drift."""
    labels = _Labels(actual_label, expected_label)
    lines = []
    for key in [*expected.containers, *(k for k in actual.containers
                                        if k not in expected.containers)]:
        a, e = actual.containers.get(key), expected.containers.get(key)
        if (a is None or e is None) and (a or e or ContainerMutation()).added:
            # a container only one side adds: one line, its fields as the detail
            side = labels.actual if e is None else labels.expected
            detail = _describe_flat((a or e or ContainerMutation()).fields)
            lines.append(f"{_where(key)}: only in the {side}'s mutation: added, {detail}")
        else:
            lines += _container_lines(_where(key), a or ContainerMutation(),
                                      e or ContainerMutation(), labels)
    for name in [*expected.volumes, *(k for k in actual.volumes if k not in expected.volumes)]:
        lines += _volume_lines(name, actual.volumes.get(name), expected.volumes.get(name),
                               labels)
    lines += _removed_lines("volume removed", actual.volumes_removed, expected.volumes_removed,
                            labels)
    lines += _pairs("annotation", actual.annotations, expected.annotations, labels, _json)
    return lines + _pairs("label", actual.labels, expected.labels, labels, _json)
