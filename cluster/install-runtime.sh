#!/usr/bin/env bash
# Installs what crossfed's single-node cluster (crossfed/cluster/microcluster.py) runs on, from
# Debian's archive only: etcd, containerd, runc, the CNI plugins, iptables, iproute2, and gcc for
# the static pause binary. Idempotent: packages already present are not fetched again.
# Debian starts containerd and etcd as system services on install; the microcluster runs its own
# instances under its work dir, so those services are kept from starting (policy-rc.d during the
# install) and stopped and disabled if they run anyway.
# Usage: sudo cluster/install-runtime.sh
set -euo pipefail
log() { echo "crossfed install-runtime: $*" >&2; }
[ "$(id -u)" = 0 ] || { log "needs root (apt-get); run it with sudo"; exit 2; }

PKGS="etcd-server containerd runc containernetworking-plugins iptables iproute2 gcc libc6-dev procps util-linux"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done

if [ -n "$missing" ]; then
  log "installing:$missing"
  # Keep the packages' services from starting while installing (restore whatever was there).
  POLICY=/usr/sbin/policy-rc.d
  saved=""
  if [ -e "$POLICY" ]; then saved="$(mktemp)"; cp -p "$POLICY" "$saved"; fi
  restore() {
    if [ -n "$saved" ]; then cp -p "$saved" "$POLICY"; rm -f "$saved"; else rm -f "$POLICY"; fi
  }
  trap restore EXIT
  printf '#!/bin/sh\nexit 101\n' >"$POLICY"; chmod 755 "$POLICY"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
  restore; trap - EXIT
else
  log "all present:$PKGS"
fi

# Stop and disable the system services, so they hold no ports, sockets or data dirs of ours.
for svc in containerd etcd; do
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    systemctl stop "$svc" >/dev/null 2>&1 || true
    systemctl disable "$svc" >/dev/null 2>&1 || true
  fi
  # Not `/etc/init.d/$svc stop`: its start-stop-daemon --exec stops every etcd/containerd on
  # the host, a running microcluster's too. The system instances are stopped below instead.
  if [ -x "/etc/init.d/$svc" ] && command -v update-rc.d >/dev/null; then
    update-rc.d "$svc" disable >/dev/null 2>&1 || true
  fi
done
# A daemon started without an init system (no systemd here): the system instances run with the
# default config paths; ours always get --config / --data-dir under a work dir.
for pid in $(pgrep -x containerd || true); do
  if ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- '--config'; then kill "$pid" || true; fi
done
for pid in $(pgrep -x etcd || true); do
  if ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- '--data-dir'; then kill "$pid" || true; fi
done

for bin in etcd containerd containerd-shim-runc-v2 ctr runc iptables ip gcc; do
  command -v "$bin" >/dev/null || { log "missing after install: $bin"; exit 1; }
done
for plugin in bridge host-local loopback firewall portmap; do
  [ -x "/usr/lib/cni/$plugin" ] || { log "missing CNI plugin /usr/lib/cni/$plugin"; exit 1; }
done
log "ready: etcd $(etcd --version 2>/dev/null | head -1 | awk '{print $3}'), containerd $(containerd --version | awk '{print $3}'), runc $(runc --version | head -1 | awk '{print $3}')"
