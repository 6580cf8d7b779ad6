#!/usr/bin/env bash
# Write benchmark (issue 6): pylon_crdt_apply_patch vs the pylon runtime's client-side CRDT
# write vs plain UPDATEs (and an enabled table, and update-log storage), side by side on one
# dedicated cluster. Prints a markdown table ready for the README.
#
#   scripts/bench.sh                        setup, release install, cluster on 54349, run
#   BENCH_SKIP_INSTALL=1 scripts/bench.sh   no build: the library of the last full run, else
#                                           the one installed in the system Postgres
#
# Knobs (see bench/src/main.rs): BENCH_SECONDS per cell (5), BENCH_EDITS (10000),
# BENCH_CLIENTS (8), BENCH_POOL (200), BENCH_CONTENDED (1); BENCH_BULK_ROWS (100000) for
# bench/bulk.sql. The run takes about 3 minutes on 2 cores (plus about a minute for the bulk
# statements), after the release build of the extension (about 5 minutes cold). The cluster keeps
# running afterwards; stop it with
#   PYLON_CRDT_PORT=54349 PYLON_CRDT_WORK=/var/tmp/pylon_crdt_bench scripts/cluster.sh stop
set -euo pipefail
cd "$(dirname "$0")/.."
work=/var/tmp/pylon_crdt_bench

# Only the results go to stdout: `scripts/bench.sh > results.md` keeps the table.
bash scripts/setup.sh >&2
# Built first, so little time passes between installing the extension and using it.
(cd bench && cargo build --release --quiet)

# The system library directory is shared: any `cargo pgrx test` or `install` replaces the
# library there (with a debug build), and every cell's new connections load whatever is there.
# The benchmark database loads a private copy of the release build instead
# (dynamic_library_path; the extension's functions name the library without a path).
if [ -z "${BENCH_SKIP_INSTALL:-}" ]; then
  scripts/cluster.sh install --release >&2
  install -d -m 755 "$work/lib"
  install -m 755 target/release/libpylon_crdt.so "$work/lib/pylon_crdt.so"
fi
if [ -f "$work/lib/pylon_crdt.so" ]; then
  export BENCH_LIBRARY_DIR="$work/lib"
  lib="$work/lib/pylon_crdt.so"
else
  lib="$(/usr/lib/postgresql/15/bin/pg_config --pkglibdir)/pylon_crdt.so"
fi
before=$(sha256sum "$lib")

# A cluster of its own, never the demo/test cluster on 54329.
url=$(PYLON_CRDT_PORT=54349 PYLON_CRDT_WORK="$work" scripts/cluster.sh start)
echo "bench: cluster $url" >&2
bench/target/release/pylon_crdt_bench "$url"
# Issue 15: the search_path pin by itself, beside (g) and (h) above.
echo
"$(dirname "$(scripts/postgres-versions.sh --print-pg-config 15)")/psql" "$url" -X -q -A -t -f bench/pin_cost.sql | tail -n 1
# Issue 16: one statement over many rows of an enabled table, beside a plain table.
echo
echo "| statement, ${BENCH_BULK_ROWS:-100000} rows | plain table rows/s | enabled table rows/s | enabled / plain time per row |"
echo "|---|---|---|---|"
"$(dirname "$(scripts/postgres-versions.sh --print-pg-config 15)")/psql" "$url" -X -q -A -t \
  -v rows="${BENCH_BULK_ROWS:-100000}" -f bench/bulk.sql | grep '^|'
# Issue 11: what the changes feed costs a write, and one pull of 10,000 changed rows.
echo
echo "| changes feed, notifications | off | on | on / off time |"
echo "|---|---|---|---|"
psql_bin="$(dirname "$(scripts/postgres-versions.sh --print-pg-config 15)")/psql"
"$psql_bin" "$url" -X -q -c "DROP DATABASE IF EXISTS pylon_feed_bench" -c "CREATE DATABASE pylon_feed_bench" >&2
"$psql_bin" "${url%/postgres}/pylon_feed_bench" -X -q -A -t -f bench/feed.sql | grep '^|'
if [ "$(sha256sum "$lib")" != "$before" ]; then
  echo "bench: $lib was replaced during the run, so the results mix builds: run again" >&2
  exit 1
fi
