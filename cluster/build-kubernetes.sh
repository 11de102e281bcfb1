#!/usr/bin/env bash
# Builds kube-apiserver, kubelet and kube-controller-manager from Debian's source package of
# Kubernetes with Debian's Go, once, into a cache outside the repo keyed by version and fix.
# Usage: cluster/build-kubernetes.sh [CACHE_DIR]   (prints the directory holding the binaries)
set -euo pipefail

CACHE_ROOT="${1:-${CROSSFED_CACHE:-/var/cache/crossfed}}"
FIX="reflect2-1.0.2"  # vendored modern-go/reflect2 1.0.1 crashes under Go >= 1.18
WHAT="cmd/kube-apiserver cmd/kubelet cmd/kube-controller-manager"
log() { echo "crossfed build-kubernetes: $*" >&2; }

if [ "$(id -u)" != 0 ]; then
  log "needs root (apt-get); run it with sudo"; exit 2
fi

export DEBIAN_FRONTEND=noninteractive
# deb-src entries derived from the machine's own Debian entries: no archive host is named here.
if ! grep -rqs "^Types: deb-src" /etc/apt/sources.list.d/; then
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -e "$f" ] || continue
    sed 's/^Types: deb$/Types: deb-src/' "$f" > "/etc/apt/sources.list.d/crossfed-src-$(basename "$f")"
  done
  apt-get update -qq
fi

VERSION="$(apt-cache showsrc kubernetes 2>/dev/null | awk '/^Version:/ {print $2; exit}')"
[ -n "$VERSION" ] || { log "no source package 'kubernetes' found (is deb-src set up?)"; exit 1; }
OUT="$CACHE_ROOT/kubernetes/$VERSION-$FIX"
if [ -x "$OUT/kube-apiserver" ] && [ -x "$OUT/kubelet" ] && [ -x "$OUT/kube-controller-manager" ]; then
  log "cached: $OUT"; echo "$OUT"; exit 0
fi

log "installing the build tools"
apt-get install -y -qq dpkg-dev golang-go rsync gcc libc6-dev \
  golang-github-modern-go-reflect2-dev >/dev/null

WORK="$(mktemp -d /var/tmp/crossfed-kube-build.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
log "fetching the source package kubernetes $VERSION"
apt-get source -qq --download-only kubernetes >/dev/null
dpkg-source -x --no-check ./*.dsc src >/dev/null
TREE="$WORK/src"

log "replacing vendored reflect2 with Debian's 1.0.2 ($FIX)"
rm -f "$TREE"/vendor/github.com/modern-go/reflect2/*.go
cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.go "$TREE/vendor/github.com/modern-go/reflect2/"

# Debian's rules build from a GOPATH with k8s.io/kubernetes linked to the tree.
export GOPATH="$WORK/gopath" GOCACHE="$CACHE_ROOT/go-build-cache" CGO_ENABLED=0 GOFLAGS=-mod=vendor
mkdir -p "$GOPATH/src/k8s.io"
ln -s "$TREE" "$GOPATH/src/k8s.io/kubernetes"
cd "$GOPATH/src/k8s.io/kubernetes"
log "building $WHAT (about 8-10 minutes cold on 2 cores)"
start=$(date +%s)
make WHAT="$WHAT" >"$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log" >&2; exit 1; }
log "built in $(( $(date +%s) - start )) s"

mkdir -p "$OUT.tmp"
for bin in kube-apiserver kubelet kube-controller-manager; do
  install -m 0755 "_output/local/bin/linux/amd64/$bin" "$OUT.tmp/$bin" 2>/dev/null \
    || install -m 0755 "$(find _output -type f -name "$bin" | head -1)" "$OUT.tmp/$bin"
done
cp build/pause/linux/pause.c "$OUT.tmp/pause.c" 2>/dev/null || true
rm -rf "$OUT"; mv "$OUT.tmp" "$OUT"
log "cached: $OUT"
echo "$OUT"
