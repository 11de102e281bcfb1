# Shared helpers of the cluster/kind scripts (sourced, not run).
# No archive or registry host is named here: the Debian mirror is read from the machine's own
# apt sources at run time.
# shellcheck shell=bash

KIND_CACHE="${CROSSFED_KIND_CACHE:-${CROSSFED_CACHE:-/var/cache/crossfed}/kind}"
KIND_HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

kind_log() { echo "crossfed kind/$(basename "$0" .sh): $*" >&2; }
kind_die() { kind_log "$*"; exit 1; }
kind_need_root() { [ "$(id -u)" = 0 ] || { kind_log "needs root; run it with sudo"; exit 2; }; }

# Prints "URI SUITE COMPONENTS SIGNED_BY" for each Debian 'deb' entry of the machine's apt sources
# (deb822 *.sources files and one-line sources.list files), one per line.
kind_apt_entries() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -e "$f" ] || continue
    awk '
      function flush() {
        if (types ~ /(^| )deb( |$)/ && uris != "") {
          n = split(suites, s, " "); for (i = 1; i <= n; i++) {
            m = split(uris, u, " "); for (j = 1; j <= m; j++) print u[j], s[i], comps, (sb == "" ? "-" : sb)
          }
        }
        types = ""; uris = ""; suites = ""; comps = ""; sb = ""
      }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      /^Types:/ { sub(/^Types:[ \t]*/, ""); types = $0 }
      /^URIs:/ { sub(/^URIs:[ \t]*/, ""); uris = $0 }
      /^Suites:/ { sub(/^Suites:[ \t]*/, ""); suites = $0 }
      /^Components:/ { sub(/^Components:[ \t]*/, ""); comps = $0; gsub(/ /, ",", comps) }
      /^Signed-By:/ { sub(/^Signed-By:[ \t]*/, ""); sb = $0 }
      END { flush() }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -e "$f" ] || continue
    awk '$1 == "deb" {
      i = 2; sb = "-"
      if ($2 ~ /^\[/) { while ($i !~ /\]$/) { if ($i ~ /signed-by=/) { sb = $i; sub(/.*signed-by=/, "", sb); sub(/\]$/, "", sb) } i++ }
                        if ($i ~ /signed-by=/) { sb = $i; sub(/.*signed-by=/, "", sb); sub(/\]$/, "", sb) } i++ }
      uri = $i; suite = $(i + 1); comps = ""
      for (k = i + 2; k <= NF; k++) comps = comps (comps == "" ? "" : ",") $k
      print uri, suite, comps, sb }' "$f"
  done
}

# The machine's Debian archive URI: the one serving the release suite itself (not -security).
kind_debian_mirror() {
  local codename
  codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")"
  kind_apt_entries | awk -v c="$codename" '$2 == c { print $1; exit }'
}

# The keyring that signs the machine's Debian entry ("-" when none is named).
kind_debian_keyring() {
  local codename
  codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")"
  kind_apt_entries | awk -v c="$codename" '$2 == c { print $4; exit }'
}

# Every host name in the machine's apt sources, one per line (what a scrub must leave nowhere).
kind_archive_hosts() {
  {
    kind_apt_entries | awk '{ print $1 }'
    # comments in deb822 files name mirrors too (e.g. snapshot addresses)
    grep -ho 'https\?://[^/ ]*' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null || true
  } | sed -E 's#^[a-z+]+://##; s#/.*##; s#:.*##' | grep -v '^$' | sort -u
}

# debootstrap SUITE DIR PACKAGES... from the machine's mirror, cached by suite + packages.
# Prints the cached root filesystem's path.
kind_debootstrap() {
  local suite="$1" include="$2" key out mirror
  key="$(echo "$suite $include" | sha256sum | cut -c1-12)"
  out="$KIND_CACHE/rootfs/$suite-$key"
  if [ -x "$out/bin/sh" ] && [ -e "$out/.crossfed-done" ]; then echo "$out"; return 0; fi
  command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  mirror="$(kind_debian_mirror)"
  [ -n "$mirror" ] || kind_die "no Debian entry found in the machine's apt sources"
  rm -rf "$out.tmp"; mkdir -p "$(dirname "$out")"
  local start; start=$(date +%s)
  debootstrap --variant=minbase --include="$include" "$suite" "$out.tmp" "$mirror" \
    >"$out.log" 2>&1 || { tail -30 "$out.log" >&2; kind_die "debootstrap of $suite failed (log $out.log)"; }
  kind_log "debootstrap $suite ($key) took $(( $(date +%s) - start )) s"
  # A package's maintainer script may have started a daemon inside the chroot: end those (by id).
  local p
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/root" 2>/dev/null)" = "$out.tmp" ] || continue
    kind_log "ending ${p#/proc/} ($(tr '\0' ' ' <"$p/cmdline" | cut -c1-60)) started in the chroot"
    kill "${p#/proc/}" 2>/dev/null || true
  done
  kind_scrub "$out.tmp"
  touch "$out.tmp/.crossfed-done"
  mv "$out.tmp" "$out"
  echo "$out"
}

# Removes what debootstrap and apt leave that names the archive host, plus docs; then checks that
# no text file under ROOT still names one of the machine's archive hosts.
kind_scrub() {
  local root="$1" host hits=""
  rm -f "$root/etc/apt/sources.list" "$root"/etc/apt/sources.list.d/* "$root/var/log/bootstrap.log"
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
    "$root"/var/log/apt/* "$root"/var/lib/apt/extended_states \
    "$root/usr/share/doc" "$root/usr/share/man" "$root/usr/share/info" "$root/usr/share/lintian" \
    "$root/usr/lib/dpkg/methods/apt/setup"  # dselect's apt method: its example names the archive
  mkdir -p "$root/var/lib/apt/lists/partial"
  : >"$root/etc/apt/sources.list"
  local args=()
  for host in $(kind_archive_hosts); do
    args+=(-e "$host")
    # file names (apt list files embed the host)
    hits="$hits$(find "$root" -xdev -name "*$host*" 2>/dev/null)"
  done
  [ "${#args[@]}" -gt 0 ] || return 0
  hits="$hits$(grep -rIlF -D skip "${args[@]}" "$root" 2>/dev/null || true)"
  if [ -n "$hits" ]; then
    kind_log "archive host names left in $root:"; echo "$hits" | head -20 >&2
    return 1
  fi
}

# The runc wrapper is needed when the capability bounding set lacks CAP_SYS_RESOURCE (bit 24):
# runc then cannot grant a privileged container every capability ("unable to apply caps").
kind_capbnd_lacks_sys_resource() {
  local bnd
  bnd="$(awk '/^CapBnd:/ { print $2 }' /proc/self/status)"
  [ -n "$bnd" ] || return 1
  (( (16#$bnd >> 24 & 1) == 0 ))
}
