#!/usr/bin/env bash
# A screenshot of a run report by Debian's chromium, headless, kept as a CI artifact.
#   .ci/screenshot.sh REPORT.html SHOT.png
# As root chromium runs in a network namespace of its own (loopback only): the report is one
# self-contained file and nothing may leave the machine.
set -euo pipefail
REPORT="${1:?report}"; SHOT="${2:?png}"
BROWSER="$(command -v chromium || command -v chromium-browser || true)"
[ -n "$BROWSER" ] || { echo "crossfed ci: no chromium (apt-get install chromium): no screenshot" >&2; exit 1; }
[ -s "$REPORT" ] || { echo "crossfed ci: no report at $REPORT: no screenshot" >&2; exit 1; }
PROFILE="$(mktemp -d)"; trap 'rm -rf "$PROFILE"' EXIT
wrap=()
if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null; then wrap=(unshare --net --); fi
"${wrap[@]}" "$BROWSER" --headless --no-sandbox --disable-gpu --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --disable-extensions --proxy-server=http://127.0.0.1:9 --user-data-dir="$PROFILE" \
  --window-size=1400,3000 --screenshot="$(realpath -m "$SHOT")" \
  "file://$(realpath "$REPORT")" >/dev/null 2>&1
[ -s "$SHOT" ] || { echo "crossfed ci: chromium wrote no screenshot of $REPORT" >&2; exit 1; }
echo "crossfed ci: screenshot of $REPORT: $SHOT" >&2
