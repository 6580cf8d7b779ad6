#!/usr/bin/env bash
# Where the server's time goes while writers share one hot row (issue 13): `perf record` of
# the whole machine (sampling at 997 Hz, no call graphs) while the benchmark runs only the
# hot-row cells of the chosen approaches over loopback, then the hottest symbols of the
# Postgres processes, grouped by library. Run scripts/bench.sh once first (it builds the
# release library and starts the benchmark cluster).
#
#   bench/profile.sh [approaches (a,e,f)] [writers on one row (8)] [seconds per cell (10)]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/cargo-env.sh
work=/var/tmp/pylon_crdt_bench
command -v perf >/dev/null || { echo "profile: needs perf (apt-get install linux-perf)" >&2; exit 1; }
[ -f "$work/lib/pylon_crdt.so" ] || { echo "profile: run scripts/bench.sh first" >&2; exit 1; }
url=$(PYLON_CRDT_PORT=28849 PYLON_CRDT_WORK="$work" scripts/cluster.sh start)
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
for approach in $(echo "${1:-a,e,f}" | tr ',' ' '); do
  perf record -a -F 997 -o "$data/$approach.perf" -- env BENCH_LIBRARY_DIR="$work/lib" \
    BENCH_MATRIX=0 BENCH_SMALL=0 BENCH_HOPS=0 BENCH_HOT="${2:-8}" BENCH_APPROACHES="$approach" \
    BENCH_HOP_SECONDS="${3:-10}" "$CARGO_TARGET_DIR/release/pylon_crdt_bench" "$url" 2>&1 >/dev/null |
    grep "one row" || true
  echo
  echo "($approach): the Postgres processes' samples by library, then the 25 hottest symbols"
  perf report -i "$data/$approach.perf" --comm postgres --sort dso --stdio 2>/dev/null |
    grep -v '^#' | grep -v '^$' | head -n 8
  perf report -i "$data/$approach.perf" --comm postgres --sort dso,sym --stdio 2>/dev/null |
    grep -v '^#' | grep -v '^$' | head -n 25
  echo
done
