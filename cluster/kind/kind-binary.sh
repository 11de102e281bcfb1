#!/usr/bin/env bash
# The kind binary from Debian's `kind` package (trixie by default, or sid), without installing
# it system-wide: an apt run with its own temporary source list, index and cache (built from the
# machine's existing Debian mirror URL and keyring; nothing under /etc/apt is touched), then
# `apt-get download kind`, the .deb checked against the SHA256 of the signed Packages index,
# unpacked, and the binary cached under $KIND_CACHE/kind-<version>/kind.
# Usage: cluster/kind/kind-binary.sh [SUITE]   (prints the binary's path)
#   SUITE: trixie (default, or $CROSSFED_KIND_SUITE) or sid. A cached binary for the suite is
#   reused without contacting the archive; CROSSFED_KIND_REFRESH=1 looks again.
set -euo pipefail
# shellcheck source=lib.sh
. "$(cd "$(dirname "$0")" && pwd)/lib.sh"
SUITE="${1:-${CROSSFED_KIND_SUITE:-trixie}}"
LINK="$KIND_CACHE/kind-$SUITE"

if [ -z "${CROSSFED_KIND_REFRESH:-}" ] && [ -x "$LINK/kind" ]; then
  kind_log "cached: $(readlink -f "$LINK/kind")"; readlink -f "$LINK/kind"; exit 0
fi
kind_need_root
MIRROR="$(kind_debian_mirror)"; KEYRING="$(kind_debian_keyring)"
[ -n "$MIRROR" ] || kind_die "no Debian entry in the machine's apt sources"

TMP="$(mktemp -d /var/tmp/crossfed-kind-apt.XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP/sources" "$TMP/lists/partial" "$TMP/cache/archives/partial" "$TMP/deb"
{
  echo "Types: deb"; echo "URIs: $MIRROR"; echo "Suites: $SUITE"; echo "Components: main"
  [ "$KEYRING" = "-" ] || echo "Signed-By: $KEYRING"
} >"$TMP/sources/crossfed-kind.sources"
: >"$TMP/status"
APT=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$TMP/sources"
     -o "Dir::State::Lists=$TMP/lists" -o "Dir::Cache=$TMP/cache" -o "Dir::State::status=$TMP/status"
     -o "Acquire::Languages=none" -o "APT::Architectures::=amd64" -o "APT::Sandbox::User=root"
     -o "Debug::NoLocking=1")
kind_log "reading the $SUITE index from the machine's Debian mirror (temporary source)"
apt-get "${APT[@]}" update -qq >/dev/null 2>"$TMP/update.err" \
  || { cat "$TMP/update.err" >&2; kind_die "apt-get update of $SUITE failed"; }
apt-cache "${APT[@]}" show kind >"$TMP/show" 2>/dev/null || kind_die "no package kind in $SUITE"
VERSION="$(awk '/^Version:/ { print $2; exit }' "$TMP/show")"
SHA="$(awk '/^SHA256:/ { print $2; exit }' "$TMP/show")"
[ -n "$VERSION" ] && [ -n "$SHA" ] || kind_die "no Version/SHA256 for kind in the $SUITE index"
OUT="$KIND_CACHE/kind-$VERSION"
if [ -x "$OUT/kind" ] && [ "$(cat "$OUT/deb.sha256" 2>/dev/null)" = "$SHA" ]; then
  ln -sfn "$OUT" "$LINK"; kind_log "cached: $OUT/kind"; echo "$OUT/kind"; exit 0
fi
(cd "$TMP/deb" && apt-get "${APT[@]}" download -qq "kind=$VERSION" >/dev/null)
DEB="$(ls "$TMP"/deb/kind_*.deb)"
GOT="$(sha256sum "$DEB" | cut -d' ' -f1)"
[ "$GOT" = "$SHA" ] || kind_die "checksum mismatch for $(basename "$DEB"): $GOT, index says $SHA"
kind_log "$(basename "$DEB") sha256 $SHA matches the $SUITE Packages index"
dpkg-deb -x "$DEB" "$TMP/x"
BIN="$(find "$TMP/x" -type f -name kind -perm -u+x | head -1)"
[ -n "$BIN" ] || kind_die "no kind binary in $(basename "$DEB")"
mkdir -p "$OUT.tmp"
install -m 0755 "$BIN" "$OUT.tmp/kind"
echo "$SHA" >"$OUT.tmp/deb.sha256"
echo "$VERSION" >"$OUT.tmp/deb.version"
"$OUT.tmp/kind" version >&2
rm -rf "$OUT"; mv "$OUT.tmp" "$OUT"
ln -sfn "$OUT" "$LINK"
kind_log "cached: $OUT/kind"
echo "$OUT/kind"
