#!/usr/bin/env bash
# The CI cluster: a real single-node Kubernetes built from Debian's source package, whose API
# server signs service-account tokens with a key crossfed's issuer serves.
#   cluster/ci-cluster.sh up   STATE_DIR   -> writes STATE_DIR/env (CROSSFED_* for pytest)
#   cluster/ci-cluster.sh down STATE_DIR
# Builds are cached outside the repo (CROSSFED_CACHE, default /var/cache/crossfed).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ACTION="${1:?up or down}"; STATE="${2:?state dir}"
BRIDGE="${CROSSFED_BRIDGE:-crossfedci0}"; CIDR="${CROSSFED_BRIDGE_CIDR:-10.78.0.0/24}"
log() { echo "crossfed ci-cluster: $*" >&2; }

case "$ACTION" in
down)
  python3 -m crossfed.cluster.microcluster down --work-dir "$STATE/cluster" || true
  if [ -s "$STATE/issuer.pid" ]; then kill "$(cat "$STATE/issuer.pid")" 2>/dev/null || true; fi
  exit 0 ;;
up) ;;
*) log "unknown action $ACTION (up or down)"; exit 2 ;;
esac

start=$(date +%s)
bash "$HERE/install-runtime.sh" >&2
# CROSSFED_KUBE_BINARIES / CROSSFED_PROBE_IMAGE_ARCHIVE (as written to STATE/env) name
# binaries and an image built before, instead of the cached builds.
BIN="${CROSSFED_KUBE_BINARIES:-$(bash "$HERE/build-kubernetes.sh")}"
IMAGE="${CROSSFED_PROBE_IMAGE_ARCHIVE:-$(bash "$HERE/build-probe-image.sh")}"
log "binaries and image ready after $(( $(date +%s) - start )) s"

mkdir -p "$STATE"
python3 - "$STATE/issuer" <<'PY'
import sys
from pathlib import Path
from crossfed.issuer.keys import SigningKey
SigningKey.generate().write(Path(sys.argv[1]))
PY
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
# The issuer the API server names, served for the whole run by its own process, so that every
# pytest worker's stand-ins can fetch its keys (workers only mint with the key).
python3 -m crossfed.cli issuer --state-dir "$STATE" --port "$PORT" \
  > "$STATE/issuer.json" 2> "$STATE/issuer.log" < /dev/null &
echo $! > "$STATE/issuer.pid"
for _ in $(seq 100); do [ -s "$STATE/issuer.json" ] && break; sleep 0.1; done
[ -s "$STATE/issuer.json" ] || { log "the issuer did not start"; exit 1; }
up_start=$(date +%s)
log "starting the cluster (bridge $BRIDGE) ..."
python3 -m crossfed.cluster.microcluster up --work-dir "$STATE/cluster" --binaries "$BIN" \
  --image "$IMAGE" --issuer-url "https://127.0.0.1:$PORT" \
  --signing-key "$STATE/issuer/sa-signer.key" --signing-public-key "$STATE/issuer/sa-signer.pub" \
  --bridge-name "$BRIDGE" --bridge-cidr "$CIDR" > "$STATE/cluster.json"
log "cluster up in $(( $(date +%s) - up_start )) s"
python3 - "$STATE" "$BIN" "$IMAGE" <<'PY'
import json, sys
from pathlib import Path
state = Path(sys.argv[1])
cluster = json.loads((state / "cluster.json").read_text())
issuer = json.loads((state / "issuer.json").read_text())
env = {"CROSSFED_KUBECONFIG": cluster["kubeconfig"],
       "CROSSFED_ISSUER_KEY": str(state / "issuer" / "sa-signer.key"),
       "CROSSFED_ISSUER_URL": issuer["issuer"], "CROSSFED_ISSUER_CA": issuer["ca_bundle"],
       "CROSSFED_STANDIN_HOST": cluster["gateway_ip"],
       "CROSSFED_NODE": cluster["node_name"], "CROSSFED_PROBE_IMAGE": "crossfed/probe:local",
       # for the foreign-issuer test, which starts a second cluster with a key of its own
       "CROSSFED_KUBE_BINARIES": sys.argv[2], "CROSSFED_PROBE_IMAGE_ARCHIVE": sys.argv[3]}
(state / "env").write_text("".join(f"export {k}={v}\n" for k, v in env.items()))
PY
cat "$STATE/env" >&2
