#!/usr/bin/env bash
# A Docker engine for kind without systemd or a registry: Debian's docker.io, dockerd started by
# hand in the background, leaving the host's iptables and ip_forward alone.
#   cluster/kind/docker.sh up   STATE_DIR   -> writes STATE_DIR/env (DOCKER_HOST, PATH with a
#                                              `docker` client matching the daemon); prints it
#   cluster/kind/docker.sh down STATE_DIR   -> stops dockerd, removes its containers, networks,
#                                              bridges, mounts and STATE_DIR's files
#   cluster/kind/docker.sh check STATE_DIR  -> exit 0 when the host's iptables and ip_forward
#                                              are as they were at `up`
# The data root (images) is cached under $KIND_CACHE/docker-<version>/data-root and reused.
# Where the machine's capability bounding set lacks CAP_SYS_RESOURCE (or a privileged run of a
# tiny local image fails with "unable to apply caps"), cluster/kind/crossfed-runc is registered
# as dockerd's default runtime; `docker info` then names it (build-images.sh reads that).
set -euo pipefail
# shellcheck source=lib.sh
. "$(cd "$(dirname "$0")" && pwd)/lib.sh"
ACTION="${1:?up, down or check}"; STATE="${2:?state dir}"
mkdir -p "$STATE"; STATE="$(cd "$STATE" && pwd)"
SOCK="$STATE/docker.sock"; PIDFILE="$STATE/dockerd.pid"; EXEC_ROOT="$STATE/exec"
export DOCKER_HOST="unix://$SOCK"
DOCKER=/usr/bin/docker  # the docker.io client (the machine may have another, newer one on PATH)

running() { [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

host_net_state() {  # what `down` must leave as `up` found it
  local t
  for t in iptables-save ip6tables-save; do
    echo "== $t"
    { "$t" 2>&1 || true; } | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//g' || true
  done
  echo "ip_forward=$(cat /proc/sys/net/ipv4/ip_forward)"
}

links() { ip -o link show | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' | sort; }

install_docker() {
  if command -v dockerd >/dev/null && [ -x "$DOCKER" ] && command -v jq >/dev/null; then return 0; fi
  kind_log "installing Debian's docker.io"
  local policy=/usr/sbin/policy-rc.d saved=""
  if [ -e "$policy" ]; then saved="$(mktemp)"; cp -p "$policy" "$saved"; fi
  printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 755 "$policy"
  export DEBIAN_FRONTEND=noninteractive
  local rc=0
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends docker.io jq >/dev/null; } || rc=$?
  if [ -n "$saved" ]; then cp -p "$saved" "$policy"; rm -f "$saved"; else rm -f "$policy"; fi
  [ "$rc" = 0 ] || kind_die "apt-get install docker.io failed"
  # A system dockerd must not run with the default paths (the package may try to start one).
  if [ -x /etc/init.d/docker ]; then /etc/init.d/docker stop >/dev/null 2>&1 || true; fi
}

start_dockerd() {  # [RUNTIME_WRAPPER]
  local extra=()
  if [ -n "${1:-}" ]; then
    install -m 0755 "$KIND_HERE/crossfed-runc" "$STATE/bin/crossfed-runc"
    extra=(--add-runtime "crossfed-runc=$STATE/bin/crossfed-runc" --default-runtime crossfed-runc)
  fi
  rm -f "$SOCK"
  # --bridge=none: no docker0; kind makes its own network. No iptables, forwarding or masquerade.
  # No registry either: pulls (a `docker build` FROM an image not here) go to a closed loopback
  # port and fail at once instead of leaving the machine. CROSSFED_KIND_DOCKER_PROXY: a real one.
  local proxy="${CROSSFED_KIND_DOCKER_PROXY:-http://127.0.0.1:9}"
  HTTP_PROXY="$proxy" HTTPS_PROXY="$proxy" NO_PROXY="" nohup dockerd --data-root "$DATA_ROOT" --exec-root "$EXEC_ROOT" --pidfile "$PIDFILE" \
    --host "unix://$SOCK" --bridge=none --iptables=false --ip-forward=false \
    --ip-masq=false --userland-proxy=true --storage-driver=overlay2 "${extra[@]}" \
    >>"$STATE/dockerd.log" 2>&1 </dev/null &
  local i
  for i in $(seq 150); do
    if "$DOCKER" version >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  tail -20 "$STATE/dockerd.log" >&2
  kind_die "dockerd did not answer on $SOCK"
}

stop_dockerd() {
  running || return 0
  local pid; pid="$(cat "$PIDFILE")"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$PIDFILE"
}

# A tiny static image (a program that exits 0) for the privileged-run probe.
captest_image() {
  "$DOCKER" image inspect crossfed/kind-captest:1 >/dev/null 2>&1 && return 0
  local tmp; tmp="$(mktemp -d)"
  mkdir -p "$tmp/root"
  printf 'int main(void) { return 0; }\n' >"$tmp/true.c"
  gcc -static -Os -o "$tmp/root/true" "$tmp/true.c"
  printf '{"layers": {"l": "%s"}, "images": [{"ref": "crossfed/kind-captest:1", "layers": ["l"], "entrypoint": ["/true"]}]}' \
    "$tmp/root" >"$tmp/spec.json"
  python3 "$KIND_HERE/pack_images.py" "$tmp/spec.json" "$tmp/img.tar" >/dev/null
  "$DOCKER" load -q -i "$tmp/img.tar" >/dev/null
  rm -rf "$tmp"
}

privileged_run_fails() {
  local out
  if out="$("$DOCKER" run --rm --privileged --network none crossfed/kind-captest:1 2>&1)"; then
    return 1
  fi
  echo "$out" >"$STATE/captest.out"
  grep -q "unable to apply caps" <<<"$out" && return 0
  kind_log "privileged probe failed otherwise: $out"; return 2
}

write_env() {
  mkdir -p "$STATE/bin"
  ln -sf "$DOCKER" "$STATE/bin/docker"
  printf 'export DOCKER_HOST=%s\nexport PATH=%s:$PATH\n' "unix://$SOCK" "$STATE/bin" >"$STATE/env"
  echo "$STATE/env"
}

case "$ACTION" in
up)
  kind_need_root
  install_docker
  VERSION="$(dpkg-query -W -f='${Version}' docker.io 2>/dev/null | sed 's/[+~].*//')"
  DATA_ROOT="$KIND_CACHE/docker-${VERSION:-unknown}/data-root"
  echo "$DATA_ROOT" >"$STATE/data-root"
  if running; then kind_log "dockerd already running (pid $(cat "$PIDFILE"))"; write_env; exit 0; fi
  for pid in $(pgrep -x dockerd || true); do
    if tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "--data-root $DATA_ROOT "; then
      kind_die "another dockerd (pid $pid) uses $DATA_ROOT; stop it or share its STATE_DIR"
    fi
  done
  mkdir -p "$DATA_ROOT" "$EXEC_ROOT" "$STATE/bin"
  host_net_state >"$STATE/hostnet.before"
  # kind bind-mounts /lib/modules; dockerd creates a missing source directory, `down` removes it
  [ -e /lib/modules ] && rm -f "$STATE/no-lib-modules" || touch "$STATE/no-lib-modules"
  # dockerd also writes /etc/docker/key.json and a "docker" parent cgroup per hierarchy
  [ -e /etc/docker/key.json ] && rm -f "$STATE/no-key-json" || touch "$STATE/no-key-json"
  ls -d /sys/fs/cgroup/*/docker /sys/fs/cgroup/docker 2>/dev/null >"$STATE/cgroups.before" || true
  links >"$STATE/links.before"
  start=$(date +%s)
  wrapper=""
  # CROSSFED_KIND_CAP_PROBE_ONLY=1 skips the CapBnd reading and relies on the privileged probe.
  if [ -z "${CROSSFED_KIND_CAP_PROBE_ONLY:-}" ] && kind_capbnd_lacks_sys_resource; then
    wrapper=1; reason="CapBnd $(awk '/^CapBnd:/ { print $2 }' /proc/self/status) lacks CAP_SYS_RESOURCE"
    start_dockerd 1
  else
    start_dockerd
    captest_image
    if privileged_run_fails; then
      wrapper=1; reason="docker run --privileged failed: unable to apply caps"
      stop_dockerd; start_dockerd 1
    fi
  fi
  if [ -n "$wrapper" ]; then
    kind_log "capability workaround on ($reason): default runtime crossfed-runc"
    echo crossfed-runc >"$STATE/runtime"
  else
    kind_log "capability workaround not needed"
    echo runc >"$STATE/runtime"
  fi
  captest_image
  rc=0; privileged_run_fails || rc=$?
  [ "$rc" = 1 ] || kind_die "docker run --privileged still fails: $(cat "$STATE/captest.out" 2>/dev/null)"
  kind_log "dockerd $("$DOCKER" version --format '{{.Server.Version}}') up in $(( $(date +%s) - start )) s (pid $(cat "$PIDFILE"), data root $DATA_ROOT)"
  write_env
  ;;
down)
  if running; then
    ids="$("$DOCKER" ps -aq 2>/dev/null || true)"
    # shellcheck disable=SC2086
    [ -z "$ids" ] || "$DOCKER" rm -f -v $ids >/dev/null 2>&1 || true
    "$DOCKER" network prune -f >/dev/null 2>&1 || true
    "$DOCKER" volume prune -f >/dev/null 2>&1 || true
    stop_dockerd
  fi
  # Interfaces dockerd made (bridges of its networks, stray veths) that `up` did not find.
  if [ -e "$STATE/links.before" ]; then
    for l in $(comm -13 "$STATE/links.before" <(links)); do
      case "$l" in br-*|docker*|veth*) ip link delete "$l" 2>/dev/null || true ;; esac
    done
  fi
  # Mounts left under the exec root or the data root (netns files, overlay mounts).
  DATA_ROOT="$(cat "$STATE/data-root" 2>/dev/null || true)"
  for prefix in "$EXEC_ROOT" ${DATA_ROOT:+"$DATA_ROOT"}; do
    awk -v p="$prefix" 'index($2, p) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
      umount -l "$m" 2>/dev/null || true
    done
  done
  # containerd-shims of ours that outlived dockerd
  for pid in $(pgrep -f "containerd-shim" || true); do
    if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$EXEC_ROOT"; then kill "$pid" 2>/dev/null || true; fi
  done
  if [ -e "$STATE/cgroups.before" ]; then
    for d in /sys/fs/cgroup/*/docker /sys/fs/cgroup/docker; do
      [ -d "$d" ] || continue
      grep -qxF "$d" "$STATE/cgroups.before" || rmdir "$d" 2>/dev/null || true
    done
    rm -f "$STATE/cgroups.before"
  fi
  if [ -e "$STATE/no-key-json" ]; then rm -f /etc/docker/key.json "$STATE/no-key-json"; fi
  if [ -e "$STATE/no-lib-modules" ]; then rmdir /lib/modules 2>/dev/null || true; rm -f "$STATE/no-lib-modules"; fi
  # hostnet.before (for `check`) and dockerd.log stay; the data root is the cache, kept.
  rm -rf "$EXEC_ROOT" "$SOCK" "$STATE/bin" "$STATE/env" "$STATE/runtime" "$STATE/captest.out" \
    "$STATE/data-root"
  kind_log "down"
  ;;
check)
  [ -e "$STATE/hostnet.before" ] || kind_die "no record from up in $STATE"
  # CROSSFED_KIND_CHECK_IGNORE=REGEX leaves out lines that others change meanwhile (e.g. the
  # microcluster's "CNI-" chains on a shared machine); the default compares everything.
  ign="${CROSSFED_KIND_CHECK_IGNORE:-^\$^}"
  if diff <(grep -Ev -- "$ign" "$STATE/hostnet.before") <(host_net_state | grep -Ev -- "$ign") >&2; then
    kind_log "host iptables and ip_forward unchanged${CROSSFED_KIND_CHECK_IGNORE:+ (ignoring /$CROSSFED_KIND_CHECK_IGNORE/)}"
  else
    kind_die "host iptables or ip_forward changed since up (diff above)"
  fi
  # Nothing of this dockerd left running or linked (after `down`).
  left=""
  if running; then left="$left dockerd(pid $(cat "$PIDFILE"))"; fi
  for pid in $(pgrep -f "dockerd|containerd-shim" || true); do
    if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$EXEC_ROOT"; then left="$left pid-$pid"; fi
  done
  if [ -e "$STATE/links.before" ]; then
    for l in $(comm -13 "$STATE/links.before" <(links)); do
      case "$l" in br-*|docker*) left="$left link-$l" ;; esac
    done
  fi
  if awk -v p="$EXEC_ROOT" 'index($2, p) == 1 { f = 1 } END { exit !f }' /proc/mounts; then
    left="$left mounts-under-$EXEC_ROOT"
  fi
  [ -z "$left" ] || kind_die "left after down:$left"
  kind_log "no dockerd, shim, bridge or mount of this dockerd left"
  ;;
*) kind_die "unknown action $ACTION (up, down or check)" ;;
esac
