#!/usr/bin/env bash
# The CI cluster for .ci/run: up, writing STATE/env, or CI fails with the cluster's own error.
#   .ci/cluster-tier.sh STATE
# CROSSFED_CI_CLUSTER=0 is the one way to run without it (then no scenario runs in a pod, and
# the summary says so). Anything the failed start made is taken down before exiting.
set -uo pipefail
cd "$(dirname "$0")/.."
STATE="${1:?state dir}"
say() { echo "crossfed ci: $*" >&2; }

if [ "${CROSSFED_CI_CLUSTER:-1}" != 1 ]; then
  say "cluster not requested (CROSSFED_CI_CLUSTER=0): the scenarios run in processes only"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  say "!! the CI cluster needs root (network namespaces, mounts, iptables); run .ci/run as " \
      "root, or set CROSSFED_CI_CLUSTER=0 to run without pods"
  exit 1
fi
mkdir -p "$STATE"
LOG="$STATE/ci-cluster.log"
# Shown as it comes and kept for the cause line.
{ bash cluster/ci-cluster.sh up "$STATE" 2>&1 1>&3 | tee "$LOG" >&2; } 3>&1
status=${PIPESTATUS[0]}
if [ "$status" = 0 ] && [ -s "$STATE/env" ]; then
  exit 0
fi
cause="$(grep -E 'crossfed (microcluster|ci-cluster|build-|install-)|[Ee]rror|cannot|failed' \
  "$LOG" | tail -n 1)"
say "!! the CI cluster did not start (exit $status): ${cause:-see the lines above}"
say "!! fix that, or set CROSSFED_CI_CLUSTER=0 to run without the cluster (no pod scenarios)"
bash cluster/ci-cluster.sh down "$STATE" >/dev/null 2>&1 || true
exit 1
