#!/usr/bin/env bash
# End to end, with timings: dockerd (docker.sh), the kind binary, the Kubernetes build, the
# images, then `kind create cluster` from the local node image with the default CNI disabled, a
# pod that runs to completion and reads its projected token, `kind delete cluster`,
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

cat >"$STATE/kind.yaml" <<YAML
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
networking:
  disableDefaultCNI: true
nodes:
- role: control-plane
YAML
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
    command: ["sh", "-c", "echo pod-ip \$(hostname -i); head -c 40 /var/run/secrets/kubernetes.io/serviceaccount/token; echo; echo ok"]
YAML
for _ in $(seq 180); do
  phase="$("${K[@]}" get pod smoke -o jsonpath='{.status.phase}' 2>/dev/null || true)"
  case "$phase" in Succeeded|Failed) break ;; esac
  sleep 1
done
fig "pod created -> $phase" "$(since "$s")"
"${K[@]}" logs smoke >&2 || true
"${K[@]}" get pods -A -o wide >&2 || true
[ "$phase" = Succeeded ] || kind_die "the pod ended $phase"
if [ -n "${CROSSFED_KIND_LOAD:-}" ]; then
  s=$(t); "$KIND" load image-archive --name "$NAME" "$CROSSFED_KIND_LOAD" >&2; fig "kind load image-archive" "$(since "$s")"
fi
kind_log "figures:"; cat "$FIG" >&2
