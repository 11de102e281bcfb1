#!/usr/bin/env bash
# Images for a single-node kind cluster without a registry, loaded into the dockerd of
# cluster/kind/docker.sh:
#   - control-plane images tagged exactly as `kubeadm config images list --kubernetes-version
#     <v>` names them (kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy from
#     cluster/kind/build-kubernetes-extra.sh on one Debian base layer with iptables, conntrack,
#     ipset, kmod, ebtables and Debian's etcd; pause from pause.c built static). CoreDNS has no
#     Debian package: not built (its pods stay ImagePullBackOff).
#   - the node image: Debian minbase with systemd, containerd, runc and the CNI plugins; kubeadm,
#     kubelet, kubectl; crossfed's own entrypoint (cluster/kind/node/crossfed-entrypoint); a
#     containerd config with restrict_oom_score_adj and, when docker.sh registered the runc
#     wrapper, cluster/kind/crossfed-runc as runc's BinaryName; a static bridge/host-local/portmap
#     CNI conflist (use it with networking.disableDefaultCNI: true; the image's label
#     io.crossfed.kind.default-cni=none tells crossfed's kind environment so); /kind/version; the
#     control-plane images pre-imported into its containerd (k8s.io namespace, not unpacked).
# Every root filesystem is scrubbed of the archive host names debootstrap writes.
# Cached by a hash of the inputs: $KIND_CACHE/images-<hash>/ (tars) and the tag
# crossfed/kind-node:<k8s version>-<hash> in dockerd's (cached) data root.
# Usage: cluster/kind/build-images.sh DOCKER_STATE_DIR   (prints the node image's name)
set -euo pipefail
# shellcheck source=lib.sh
. "$(cd "$(dirname "$0")" && pwd)/lib.sh"
DSTATE="$(cd "${1:?the STATE_DIR given to docker.sh up}" && pwd)"
kind_need_root
[ -s "$DSTATE/env" ] || kind_die "no $DSTATE/env: run cluster/kind/docker.sh up $DSTATE first"
# shellcheck disable=SC1091
. "$DSTATE/env"
docker version >/dev/null 2>&1 || kind_die "dockerd of $DSTATE does not answer"

SUITE=bookworm
CP_PKGS="iptables,conntrack,ipset,kmod,ebtables,etcd-server,ca-certificates"
NODE_PKGS="systemd,systemd-sysv,dbus,conntrack,iptables,nftables,iproute2,ethtool,util-linux,mount,kmod,libseccomp2,pigz,bash,ca-certificates,curl,jq,procps,containerd,runc,containernetworking-plugins,socat,ebtables"
MASK="getty.target console-getty.service apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer
  e2scrub_all.timer e2scrub_reap.service fstrim.timer systemd-udevd.service systemd-modules-load.service
  systemd-remount-fs.service sys-kernel-debug.mount sys-kernel-tracing.mount sys-kernel-config.mount
  sys-fs-fuse-connections.mount systemd-firstboot.service systemd-networkd.service"

total=$(date +%s)
WORK="$(mktemp -d /var/tmp/crossfed-kind-images.XXXXXX)"
CTRD_PID=""; cp_job=""; node_job=""
cleanup() {
  if [ -n "$CTRD_PID" ]; then kill "$CTRD_PID" 2>/dev/null || true; wait "$CTRD_PID" 2>/dev/null || true; fi
  # a debootstrap still running fills its cache: let it finish rather than leave it half done
  local j
  for j in "$cp_job" "$node_job"; do [ -z "$j" ] || wait "$j" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
# Root filesystems (cached, scrubbed) fetched in the background while the binaries build.
kind_debootstrap "$SUITE" "$CP_PKGS" >"$WORK/cp.path" &
cp_job=$!
kind_debootstrap "$SUITE" "$NODE_PKGS" >"$WORK/node.path" &
node_job=$!

BIN="$(bash "$KIND_HERE/build-kubernetes-extra.sh")"
K8S="$("$BIN/kubeadm" version -o short 2>/dev/null || true)"
if ! [[ "$K8S" =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
  # a build without version stamping: take it from the source package (1.20.5+really1.20.2-...)
  K8S="v$(basename "$BIN" | sed -E 's/^kubernetes-//; s/.*really//; s/-.*//')"
fi
[ "$("docker" info --format '{{.DefaultRuntime}}')" = crossfed-runc ] && WRAP=1 || WRAP=0

KEY="$( {
  echo "$SUITE $CP_PKGS $NODE_PKGS $MASK wrap=$WRAP $K8S"
  cat "$0" "$KIND_HERE/lib.sh" "$KIND_HERE/pack_images.py" "$KIND_HERE/crossfed-runc" "$KIND_HERE"/node/*
  for b in kubeadm kubelet kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do
    stat -c "%n %s %Y" "$BIN/$b"
  done
} | sha256sum | cut -c1-12)"
NODE_REF="crossfed/kind-node:$K8S-$KEY"
OUT="$KIND_CACHE/images-$KEY"

if docker image inspect "$NODE_REF" >/dev/null 2>&1; then
  kind_log "cached in dockerd: $NODE_REF"; echo "$NODE_REF"; exit 0
fi
if [ -s "$OUT/node.tar" ]; then
  kind_log "loading the cached $OUT/node.tar"
  docker load -q -i "$OUT/node.tar" >&2
  [ ! -s "$OUT/control-plane.tar" ] || docker load -q -i "$OUT/control-plane.tar" >&2
  echo "$NODE_REF"; exit 0
fi

mkdir -p "$OUT"

# --- root filesystems (started above) -------------------------------------------------------
wait "$cp_job" || kind_die "control-plane root filesystem failed"
wait "$node_job" || kind_die "node root filesystem failed"
cp_job=""; node_job=""
CP_ROOT="$(cat "$WORK/cp.path")"; NODE_BASE="$(cat "$WORK/node.path")"

# --- control-plane images -----------------------------------------------------------------
step=$(date +%s)
"$BIN/kubeadm" config images list --kubernetes-version "$K8S" >"$WORK/images.txt"
spec="$WORK/cp-spec.json"
python3 - "$WORK" "$CP_ROOT" "$BIN" "$WORK/images.txt" "$spec" <<'PY'
import json
import shutil
import subprocess
import sys
from pathlib import Path

work, base, binaries, listing, spec_path = map(Path, sys.argv[1:])
layers = {"base": str(base)}
images = []
for ref in listing.read_text().split():
    name = ref.rsplit("/", 1)[-1].split(":", 1)[0]
    if name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy"):
        layer = work / f"l-{name}"
        (layer / "usr/local/bin").mkdir(parents=True)
        shutil.copy2(binaries / name, layer / "usr/local/bin" / name)
        layers[name] = str(layer)
        images.append({"ref": ref, "layers": ["base", name], "entrypoint": [f"/usr/local/bin/{name}"]})
    elif name == "etcd":  # Debian's etcd 3.4 (/usr/bin/etcd) is in the base layer
        images.append({"ref": ref, "layers": ["base"], "entrypoint": ["/usr/bin/etcd"]})
    elif name == "pause":
        layer = work / "l-pause"
        layer.mkdir()
        subprocess.run(["gcc", "-static", "-Os", "-s", "-DVERSION=crossfed", "-o",
                        str(layer / "pause"), str(binaries / "pause.c")], check=True)
        layers["pause"] = str(layer)
        images.append({"ref": ref, "layers": ["pause"], "entrypoint": ["/pause"]})
    else:
        print(f"crossfed kind/build-images: no local build for {ref} (skipped)", file=sys.stderr)
spec_path.write_text(json.dumps({"layers": layers, "images": images}))
PY
python3 "$KIND_HERE/pack_images.py" "$spec" "$OUT/control-plane.tar" >"$OUT/control-plane.txt"
docker load -q -i "$OUT/control-plane.tar" >&2
kind_log "control-plane images in $(( $(date +%s) - step )) s: $(cut -d' ' -f1 "$OUT/control-plane.txt" | tr '\n' ' ')"

# --- node root filesystem -----------------------------------------------------------------
step=$(date +%s)
NODE="$WORK/node"
cp -a "$NODE_BASE" "$NODE"
rm -f "$NODE/.crossfed-done"
install -m 0755 "$BIN/kubeadm" "$BIN/kubelet" "$BIN/kubectl" "$NODE/usr/bin/"
install -m 0755 "$KIND_HERE/node/crossfed-entrypoint" "$NODE/usr/local/bin/crossfed-entrypoint"
install -m 0755 "$KIND_HERE/crossfed-runc" "$NODE/usr/local/bin/crossfed-runc"
mkdir -p "$NODE/kind" "$NODE/etc/containerd" "$NODE/etc/cni/net.d" "$NODE/opt/cni" \
  "$NODE/etc/systemd/system/kubelet.service.d" "$NODE/etc/systemd/system/multi-user.target.wants"
echo "$K8S" >"$NODE/kind/version"
install -m 0644 "$KIND_HERE/node/kubelet.service" "$NODE/etc/systemd/system/kubelet.service"
install -m 0644 "$KIND_HERE/node/10-kubeadm.conf" "$NODE/etc/systemd/system/kubelet.service.d/10-kubeadm.conf"
ln -sf /etc/systemd/system/kubelet.service "$NODE/etc/systemd/system/multi-user.target.wants/kubelet.service"
[ -e "$NODE/etc/systemd/system/multi-user.target.wants/containerd.service" ] \
  || ln -sf /lib/systemd/system/containerd.service "$NODE/etc/systemd/system/multi-user.target.wants/containerd.service"
ln -sf /lib/systemd/system/multi-user.target "$NODE/etc/systemd/system/default.target"
for unit in $MASK; do ln -sf /dev/null "$NODE/etc/systemd/system/$unit"; done
install -m 0644 "$KIND_HERE/node/10-crossfed-bridge.conflist" "$NODE/etc/cni/net.d/10-crossfed-bridge.conflist"
ln -sfn /usr/lib/cni "$NODE/opt/cni/bin"
: >"$NODE/etc/machine-id"
rm -f "$NODE/var/lib/dbus/machine-id"
PAUSE_REF="$(awk '$1 ~ /\/pause:/ { print $1 }' "$OUT/control-plane.txt")"
{
  echo "# crossfed's kind node (cluster/kind/build-images.sh)"
  echo "version = 2"
  echo '[plugins."io.containerd.grpc.v1.cri"]'
  echo "  sandbox_image = \"$PAUSE_REF\""
  echo "  # runc cannot lower oom_score_adj without CAP_SYS_RESOURCE"
  echo "  restrict_oom_score_adj = true"
  echo '  [plugins."io.containerd.grpc.v1.cri".containerd]'
  echo '    snapshotter = "overlayfs"'
  echo '    default_runtime_name = "runc"'
  echo '    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]'
  echo '      runtime_type = "io.containerd.runc.v2"'
  echo '      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]'
  echo '        SystemdCgroup = false'
  if [ "$WRAP" = 1 ]; then
    echo '        # the machine lacks CAP_SYS_RESOURCE: privileged pods need the wrapper too'
    echo '        BinaryName = "/usr/local/bin/crossfed-runc"'
  fi
  echo '  [plugins."io.containerd.grpc.v1.cri".cni]'
  echo '    bin_dir = "/usr/lib/cni"'
  echo '    conf_dir = "/etc/cni/net.d"'
} >"$NODE/etc/containerd/config.toml"

# Pre-import the control-plane images into the node's containerd store with a temporary host
# containerd (the same Debian containerd version as the node's) rooted in the node tree.
mkdir -p "$WORK/ctrd-state"
cat >"$WORK/ctrd.toml" <<EOF
version = 2
root = "$NODE/var/lib/containerd"
state = "$WORK/ctrd-state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.opt"]
[grpc]
  address = "$WORK/ctrd.sock"
[ttrpc]
  address = "$WORK/ctrd.sock.ttrpc"
EOF
containerd --config "$WORK/ctrd.toml" >"$WORK/ctrd.log" 2>&1 &
CTRD_PID=$!
for _ in $(seq 100); do [ -S "$WORK/ctrd.sock" ] && break; sleep 0.1; done
[ -S "$WORK/ctrd.sock" ] || { cat "$WORK/ctrd.log" >&2; kind_die "temporary containerd did not start"; }
ctr --address "$WORK/ctrd.sock" -n k8s.io images import --no-unpack --digests \
  "$OUT/control-plane.tar" >&2
ctr --address "$WORK/ctrd.sock" -n k8s.io images ls -q >&2
kill "$CTRD_PID"; wait "$CTRD_PID" 2>/dev/null || true; CTRD_PID=""
rm -rf "$NODE"/var/lib/containerd/tmpmounts "$NODE"/var/lib/containerd/io.containerd.runtime.*
kind_scrub "$NODE" || kind_die "the node tree still names an archive host"

cat >"$WORK/node-spec.json" <<EOF
{"layers": {"node": "$NODE"},
 "images": [{"ref": "$NODE_REF", "layers": ["node"],
             "entrypoint": ["/usr/local/bin/crossfed-entrypoint"],
             "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "container=docker"],
             "stop_signal": "SIGRTMIN+3",
             "labels": {"io.crossfed.kind.default-cni": "none"}}]}
EOF
python3 "$KIND_HERE/pack_images.py" "$WORK/node-spec.json" "$OUT/node.tar" >"$OUT/node.txt"
docker load -q -i "$OUT/node.tar" >&2
kind_log "node image $NODE_REF in $(( $(date +%s) - step )) s ($(du -h "$OUT/node.tar" | cut -f1)); all $(( $(date +%s) - total )) s"
echo "$NODE_REF"
