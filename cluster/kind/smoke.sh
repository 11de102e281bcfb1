#!/usr/bin/env bash
# End to end, with timings: dockerd (docker.sh), the kind binary, the Kubernetes build, the
# images, then `kind create cluster` from the local node image with the default CNI disabled, a
# pod that runs to completion and reads a projected service-account token (iss and kid shown;
# with CROSSFED_KIND_CROSSFED_CONFIG=1 the config is crossfed's kind_config() and they must be
# crossfed's issuer and key id), `kind delete cluster`,
# `docker.sh down`, and the host's iptables compared with what `up` found.
# Usage: cluster/kind/smoke.sh [STATE_DIR]   (default: a new temporary directory)
#   CROSSFED_KIND_KEEP=1 keeps the cluster and dockerd; CROSSFED_KIND_LOAD=TAR also times
#   `kind load image-archive TAR`.
set -euo pipefail
# shellcheck source=lib.sh
. "$(cd "$(dirname "$0")" && pwd)/lib.sh"
kind_need_root
STATE="${1:-$(mktemp -d /var/tmp/crossfed-kind-smoke.XXXXXX)}"
mkdir -p "$STATE"; STATE="$(cd "$STATE" && pwd)"
NAME="${CROSSFED_KIND_NAME:-crossfed-smoke}"
t() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(t)" 'BEGIN { printf "%.1f", b - a }'; }
FIG="$STATE/figures.txt"; : >"$FIG"
fig() { echo "$1: $2 s" | tee -a "$FIG" >&2; }

s=$(t); bash "$KIND_HERE/docker.sh" up "$STATE/docker" >/dev/null; fig "docker.sh up" "$(since "$s")"
down() {
  if [ -n "${CROSSFED_KIND_KEEP:-}" ]; then kind_log "kept: cluster $NAME, dockerd of $STATE/docker"; return; fi
  local s; s=$(t)
  if [ -n "${KIND:-}" ]; then
    "$KIND" delete cluster --name "$NAME" >&2 || true
    fig "kind delete cluster" "$(since "$s")"
  fi
  s=$(t); bash "$KIND_HERE/docker.sh" down "$STATE/docker" || true; fig "docker.sh down" "$(since "$s")"
  # the microcluster of a CI run on the same machine adds and removes "CNI-" rules meanwhile
  CROSSFED_KIND_CHECK_IGNORE="${CROSSFED_KIND_CHECK_IGNORE-CNI-}" bash "$KIND_HERE/docker.sh" check "$STATE/docker"
}
trap down EXIT
# shellcheck disable=SC1091
. "$STATE/docker/env"
s=$(t); KIND="$(bash "$KIND_HERE/kind-binary.sh")"; fig "kind-binary.sh" "$(since "$s")"
# build-images.sh runs build-kubernetes-extra.sh itself, with the debootstraps alongside
s=$(t); IMAGE="$(bash "$KIND_HERE/build-images.sh" "$STATE/docker")"; fig "build-images.sh (with the Kubernetes build)" "$(since "$s")"
BIN="$(bash "$KIND_HERE/build-kubernetes-extra.sh")"

EXPECT=""
if [ -n "${CROSSFED_KIND_CROSSFED_CONFIG:-}" ]; then
  # crossfed's own kind_config(): a fresh key pair mounted, the API server signing with it under
  # a crossfed issuer URL; plus disableDefaultCNI, which kind_config() does not set yet.
  EXPECT="$(cd "$KIND_HERE/../.." && python3 - "$STATE" "$NAME" "$IMAGE" <<'PY'
import sys
from pathlib import Path

from crossfed.cluster.kind import kind_config, render
from crossfed.issuer.keys import SigningKey

state, name, image = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
key = SigningKey.generate()
private, public = key.write(state / "issuer")
issuer = "https://127.0.0.1:8443/crossfed-smoke"
config = kind_config(name, private, public, issuer, issuer + "/openid/v1/jwks", [issuer],
                     node_image=image)
config["networking"]["disableDefaultCNI"] = True
(state / "kind.yaml").write_text(render(config))
print(issuer, key.kid)
PY
)"
  kind_log "crossfed kind_config(): expecting iss and kid $EXPECT"
else
  cat >"$STATE/kind.yaml" <<YAML
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
networking:
  disableDefaultCNI: true
nodes:
- role: control-plane
YAML
fi
export KUBECONFIG="$STATE/kubeconfig"
"$KIND" delete cluster --name "$NAME" >/dev/null 2>&1 || true
s=$(t)
"$KIND" create cluster --name "$NAME" --image "$IMAGE" --config "$STATE/kind.yaml" --retain >&2 \
  || { "$KIND" export logs --name "$NAME" "$STATE/logs" >&2 || true; kind_die "kind create cluster failed (logs in $STATE/logs)"; }
fig "kind create cluster" "$(since "$s")"
K=("$BIN/kubectl" --kubeconfig "$KUBECONFIG")
s=$(t)
"${K[@]}" wait --for=condition=Ready node --all --timeout=180s >&2
fig "node Ready after create" "$(since "$s")"
for _ in $(seq 120); do "${K[@]}" get serviceaccount default >/dev/null 2>&1 && break; sleep 1; done
POD_IMAGE="$(docker exec "$NAME-control-plane" ctr -n k8s.io images ls -q | grep '/etcd:' | head -1)"
s=$(t)
"${K[@]}" apply -f - >&2 <<YAML
apiVersion: v1
kind: Pod
metadata: {name: smoke}
spec:
  restartPolicy: Never
  containers:
  - name: smoke
    image: $POD_IMAGE
    imagePullPolicy: Never
    command: ["sh", "-c", "echo pod-ip \$(hostname -i); echo token \$(cat /var/run/crossfed/token); echo ok"]
    volumeMounts: [{name: projected, mountPath: /var/run/crossfed}]
  volumes:
  - name: projected
    projected:
      sources: [{serviceAccountToken: {path: token, expirationSeconds: 3600}}]
YAML
for _ in $(seq 180); do
  phase="$("${K[@]}" get pod smoke -o jsonpath='{.status.phase}' 2>/dev/null || true)"
  case "$phase" in Succeeded|Failed) break ;; esac
  sleep 1
done
fig "pod created -> $phase" "$(since "$s")"
"${K[@]}" logs smoke >"$STATE/pod.log" 2>&1 || true
grep -v '^token ' "$STATE/pod.log" >&2 || true
# the token's header kid and payload iss (no signature check here: that is the verifiers' job)
CLAIMS="$(awk '/^token / { print $2 }' "$STATE/pod.log" | python3 -c '
import base64, json, sys
parts = sys.stdin.read().strip().split(".")
dec = [json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4))) for p in parts[:2]]
print(dec[1].get("iss"), dec[0].get("kid"))')"
kind_log "pod token: iss and kid $CLAIMS"
if [ -n "$EXPECT" ]; then
  [ "$CLAIMS" = "$EXPECT" ] || kind_die "token iss/kid $CLAIMS, expected $EXPECT"
  fig "token signed with crossfed's key and issuer (kind_config)" 0
fi
"${K[@]}" get pods -A -o wide >&2 || true
[ "$phase" = Succeeded ] || kind_die "the pod ended $phase"
if [ -n "${CROSSFED_KIND_LOAD:-}" ]; then
  s=$(t); "$KIND" load image-archive --name "$NAME" "$CROSSFED_KIND_LOAD" >&2; fig "kind load image-archive" "$(since "$s")"
fi
kind_log "figures:"; cat "$FIG" >&2
