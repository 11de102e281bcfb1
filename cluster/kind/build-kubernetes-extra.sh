#!/usr/bin/env bash
# Extends the Kubernetes build of cluster/build-kubernetes.sh (kube-apiserver, kubelet,
# kube-controller-manager from Debian's source package, reflect2 fix) with kubeadm,
# kube-scheduler, kube-proxy and kubectl, built the same way from the same source package and
# with the same Go build cache. All seven binaries (the first three hard-linked from that
# script's cache) land in $KIND_CACHE/kubernetes-<version>-<fix>/, reused when present.
# Usage: cluster/kind/build-kubernetes-extra.sh   (prints the directory)
#   CROSSFED_FETCH_ONLY=1: only fetch and fix the source tree (no build).
set -euo pipefail
# shellcheck source=lib.sh
. "$(cd "$(dirname "$0")" && pwd)/lib.sh"
CACHE_ROOT="${CROSSFED_CACHE:-/var/cache/crossfed}"
FIX="reflect2-1.0.2"  # the same fix as cluster/build-kubernetes.sh
EXTRA="kubeadm kube-scheduler kube-proxy kubectl"
kind_need_root

BASE="$(bash "$KIND_HERE/../build-kubernetes.sh" "$CACHE_ROOT")"
VERSION="$(basename "$BASE")"; VERSION="${VERSION%-"$FIX"}"
OUT="$KIND_CACHE/kubernetes-$VERSION-$FIX"
done_ok() {
  local b
  for b in kube-apiserver kubelet kube-controller-manager $EXTRA; do [ -x "$OUT/$b" ] || return 1; done
}
if done_ok; then kind_log "cached: $OUT"; echo "$OUT"; exit 0; fi

export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq dpkg-dev golang-go rsync gcc libc6-dev golang-github-modern-go-reflect2-dev >/dev/null

# The extracted, fixed source tree is kept beside the binaries for later builds.
TREE="$KIND_CACHE/src/kubernetes-$VERSION-$FIX"
if [ ! -e "$TREE/.crossfed-fixed" ]; then
  kind_log "fetching the source package kubernetes $VERSION"
  rm -rf "$TREE" "$TREE.dl"; mkdir -p "$TREE.dl"
  (cd "$TREE.dl" && apt-get source -qq --download-only "kubernetes=$VERSION" >/dev/null \
    && dpkg-source -x --no-check ./*.dsc src >/dev/null)
  mv "$TREE.dl/src" "$TREE"; rm -rf "$TREE.dl"
  rm -f "$TREE"/vendor/github.com/modern-go/reflect2/*.go
  cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.go "$TREE/vendor/github.com/modern-go/reflect2/"
  touch "$TREE/.crossfed-fixed"
fi
if [ -n "${CROSSFED_FETCH_ONLY:-}" ]; then kind_log "source tree ready: $TREE"; exit 0; fi

WORK="$(mktemp -d /var/tmp/crossfed-kube-extra.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
export GOPATH="$WORK/gopath" GOCACHE="$CACHE_ROOT/go-build-cache" CGO_ENABLED=0 GOFLAGS=-mod=vendor
mkdir -p "$GOPATH/src/k8s.io"
ln -s "$TREE" "$GOPATH/src/k8s.io/kubernetes"
cd "$GOPATH/src/k8s.io/kubernetes"
WHAT=""; for b in $EXTRA; do WHAT="$WHAT cmd/$b"; done
kind_log "building$WHAT (about 3-8 minutes cold on 2 cores)"
start=$(date +%s)
make WHAT="${WHAT# }" >"$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log" >&2; exit 1; }
kind_log "built in $(( $(date +%s) - start )) s"

rm -rf "$OUT.tmp"; mkdir -p "$OUT.tmp"
for b in $EXTRA; do
  src="_output/local/bin/linux/amd64/$b"
  [ -x "$src" ] || src="$(find _output -type f -name "$b" | head -1)"
  install -m 0755 "$src" "$OUT.tmp/$b"
done
for b in kube-apiserver kubelet kube-controller-manager pause.c; do
  [ -e "$BASE/$b" ] || continue
  ln "$BASE/$b" "$OUT.tmp/$b" 2>/dev/null || cp -p "$BASE/$b" "$OUT.tmp/$b"
done
for b in $EXTRA kube-apiserver kubelet; do
  case "$b" in
    kubectl) v="$("$OUT.tmp/$b" version --client --short 2>/dev/null || true)" ;;
    kubeadm) v="$("$OUT.tmp/$b" version -o short 2>/dev/null || true)" ;;
    *) v="$("$OUT.tmp/$b" --version 2>/dev/null || true)" ;;
  esac
  kind_log "$b: $v"
done
rm -rf "$OUT"; mv "$OUT.tmp" "$OUT"
kind_log "cached: $OUT"
echo "$OUT"
