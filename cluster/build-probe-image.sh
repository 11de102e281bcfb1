#!/usr/bin/env bash
# Builds the probe image without a registry: a Debian root filesystem (debootstrap), the probe's
# SDKs from PyPI installed with the image's own pip, the probe package copied in, packed as a
# docker-archive tar. Cached outside the repo, keyed by the probe's sources and requirements.
# Usage: cluster/build-probe-image.sh [CACHE_DIR]   (prints the path of the image tar)
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"; REPO="$(dirname "$HERE")"
CACHE_ROOT="${1:-${CROSSFED_CACHE:-/var/cache/crossfed}}"
REQS="boto3==1.44.8 awscli==1.46.3 azure-identity==1.27.0 azure-keyvault-secrets==4.12.0"
REF="crossfed/probe:local"
log() { echo "crossfed build-probe-image: $*" >&2; }

KEY="$( (cat "$REPO"/crossfed/probe/*.py; echo "$REQS") | sha256sum | cut -c1-16)"
OUT="$CACHE_ROOT/images/probe-$KEY.tar"
if [ -s "$OUT" ]; then log "cached: $OUT"; echo "$OUT"; exit 0; fi
[ "$(id -u)" = 0 ] || { log "needs root (debootstrap, chroot); run it with sudo"; exit 2; }
# One build at a time per cache: sessions side by side (CI's kind sessions, xdist workers) would
# otherwise debootstrap into the same directory, and one would remove what the other writes.
mkdir -p "$CACHE_ROOT/images"
exec 9>"$CACHE_ROOT/images/.build.lock"
if ! flock -n 9; then
  log "another build of the probe image is under way (lock $CACHE_ROOT/images/.build.lock); waiting for it"
  flock 9
fi
if [ -s "$OUT" ]; then log "built by the other build: $OUT"; echo "$OUT"; exit 0; fi
command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null

BASE="$CACHE_ROOT/rootfs/bookworm-python"
if [ ! -x "$BASE/usr/bin/python3" ]; then
  log "debootstrap of a minimal Debian with Python (about 2 minutes)"
  rm -rf "$BASE.tmp"; mkdir -p "$(dirname "$BASE")"
  # No mirror argument: debootstrap's default is the Debian archive (no host named here).
  debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    bookworm "$BASE.tmp" >/dev/null
  rm -rf "$BASE.tmp"/var/cache/apt/archives/*.deb "$BASE.tmp"/usr/share/doc "$BASE.tmp"/usr/share/man
  mv "$BASE.tmp" "$BASE"
fi

WORK="$(mktemp -d /var/tmp/crossfed-probe-image.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
cp -a "$BASE" "$WORK/rootfs"
ROOT="$WORK/rootfs"
log "downloading the probe's SDKs with the host's pip (its index settings and CA apply)"
PYVER="$(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin chroot "$ROOT" python3 -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')"
python3 -m pip download --quiet --dest "$WORK/wheels" --only-binary=:all: \
  --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 --platform any \
  --python-version "$PYVER" --implementation cp $REQS
mkdir -p "$ROOT/tmp/wheels"; cp "$WORK"/wheels/* "$ROOT/tmp/wheels/"
log "installing them into the image, offline"
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin chroot "$ROOT" python3 -m venv /opt/probe
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin chroot "$ROOT" /opt/probe/bin/pip install --quiet --no-index --find-links /tmp/wheels $REQS
rm -rf "$ROOT/tmp/wheels"
mkdir -p "$ROOT/opt/probe/app/crossfed/probe"
touch "$ROOT/opt/probe/app/crossfed/__init__.py"
cp "$REPO"/crossfed/probe/*.py "$ROOT/opt/probe/app/crossfed/probe/"
mkdir -p "$(dirname "$OUT")"
python3 "$REPO/crossfed/cluster/pack_image.py" "$ROOT" "$REF" "$OUT.tmp" --workdir /opt/probe/app \
  --entrypoint '["/opt/probe/bin/python", "-m", "crossfed.probe"]' >/dev/null
mv "$OUT.tmp" "$OUT"
log "image $REF: $OUT ($(du -h "$OUT" | cut -f1))"
echo "$OUT"
