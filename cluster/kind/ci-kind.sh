#!/usr/bin/env bash
# The kind environment's tools without a registry, for CI and for an air-gapped machine:
#   cluster/kind/ci-kind.sh up   STATE_DIR  -> dockerd (docker.sh), kind (kind-binary.sh), the
#                                             node image (build-images.sh); writes STATE_DIR/env
#                                             (DOCKER_HOST, PATH with docker, kind and kubectl,
#                                             CROSSFED_KIND_NODE_IMAGE) for pytest
#   cluster/kind/ci-kind.sh down STATE_DIR  -> deletes any kind cluster left on that dockerd,
#                                             docker.sh down, then docker.sh check: exit 1 when
#                                             the host's iptables or ip_forward changed
# Everything is cached by version under $KIND_CACHE (lib.sh); a warm `up` takes seconds.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ACTION="${1:?up or down}"; STATE="${2:?state dir}"
mkdir -p "$STATE"; STATE="$(cd "$STATE" && pwd)"
log() { echo "crossfed kind/ci-kind: $*" >&2; }

case "$ACTION" in
up)
  start=$(date +%s)
  [ "$(id -u)" = 0 ] || { log "needs root (dockerd, debootstrap); run it with sudo"; exit 2; }
  # What the scripts call on the host besides docker.io (docker.sh installs that): the gcc of
  # the capability probe and pause.c, debootstrap, jq, iptables-save for `check`.
  missing=""
  for p in gcc libc6-dev debootstrap jq iptables iproute2; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
  done
  if [ -n "$missing" ]; then
    log "apt-get install$missing"
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
  fi
  # The probe image the kind sessions load (cluster/build-probe-image.sh; cached): built beside
  # the Kubernetes builds, which hold the CPU while it mostly waits on the archive. A build that
  # failed here is tried again, with its error, by the session that needs it.
  bash "$HERE/../build-probe-image.sh" >"$STATE/probe-image.out" 2>"$STATE/probe-image.log" &
  probe_job=$!
  trap 'wait "$probe_job" 2>/dev/null || true' EXIT  # a cache half written helps no one
  bash "$HERE/docker.sh" up "$STATE/docker" >/dev/null
  # shellcheck disable=SC1091
  . "$STATE/docker/env"
  kind_bin="$(bash "$HERE/kind-binary.sh" "${CROSSFED_KIND_SUITE:-trixie}")"
  image="$(bash "$HERE/build-images.sh" "$STATE/docker")"
  # kubectl of the same Kubernetes build as the node (build-images.sh ran the extra build).
  kubectl_bin="$(bash "$HERE/build-kubernetes-extra.sh" 2>/dev/null)/kubectl"
  [ -x "$kubectl_bin" ] || { log "no kubectl at $kubectl_bin"; exit 1; }
  if wait "$probe_job"; then
    log "probe image: $(tail -1 "$STATE/probe-image.out")"
  else
    log "probe image not built here (the kind session tries again): $(tail -2 "$STATE/probe-image.log" | tr '\n' ' ')"
  fi
  trap - EXIT
  mkdir -p "$STATE/bin"
  ln -sf "$kind_bin" "$STATE/bin/kind"; ln -sf "$kubectl_bin" "$STATE/bin/kubectl"
  {
    cat "$STATE/docker/env"
    echo "export PATH=$STATE/bin:\$PATH"
    echo "export CROSSFED_KIND_NODE_IMAGE=$image"
  } >"$STATE/env"
  log "ready in $(( $(date +%s) - start )) s: $(cat "$STATE/env" | tr '\n' ';')"
  ;;
down)
  if [ -s "$STATE/env" ]; then
    # shellcheck disable=SC1091
    ( . "$STATE/env"
      for name in $(kind get clusters 2>/dev/null); do
        log "deleting kind cluster $name, left on this dockerd"
        kind delete cluster --name "$name" >&2 || true
      done ) || true
  fi
  bash "$HERE/docker.sh" down "$STATE/docker" >&2
  bash "$HERE/docker.sh" check "$STATE/docker"
  ;;
*) log "usage: ci-kind.sh up|down STATE_DIR"; exit 2 ;;
esac
