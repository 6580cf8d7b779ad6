#!/usr/bin/env bash
# Write benchmark (issue 6): pylon_crdt_apply_patch vs the pylon runtime's client-side CRDT
# write vs plain UPDATEs (and an enabled table, and update-log storage), side by side on one
# dedicated cluster. Prints a markdown table ready for the README.
#
#   scripts/bench.sh                        setup, release install, cluster on 28849, run
#   BENCH_SKIP_INSTALL=1 scripts/bench.sh   no build: the library of the last full run, else
#                                           the one installed in the system Postgres
#
# Knobs (see bench/src/main.rs): BENCH_SECONDS per cell (5), BENCH_EDITS (10000),
# BENCH_CLIENTS (8), BENCH_POOL (200), BENCH_CONTENDED (1); the network round (issue 13):
# BENCH_HOPS simulated round trips in ms (0,0.2,1; 0 = straight over loopback), BENCH_HOT
# writers on one hot row (1,8,32), BENCH_HOP_SECONDS per cell (3); BENCH_MATRIX=0 skips the
# loopback matrix; BENCH_BULK_ROWS (100000) for bench/bulk.sql. The run takes about 9 minutes
# on 2 cores (plus about a minute for the bulk statements), after the release build of the
# extension (about 5 minutes cold). The cluster keeps running afterwards; stop it with
#   PYLON_CRDT_PORT=28849 PYLON_CRDT_WORK=/var/tmp/pylon_crdt_bench scripts/cluster.sh stop
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/cargo-env.sh
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
  install -m 755 "$CARGO_TARGET_DIR/release/libpylon_crdt.so" "$work/lib/pylon_crdt.so"
fi
if [ -f "$work/lib/pylon_crdt.so" ]; then
  export BENCH_LIBRARY_DIR="$work/lib"
  lib="$work/lib/pylon_crdt.so"
else
  lib="$(/usr/lib/postgresql/15/bin/pg_config --pkglibdir)/pylon_crdt.so"
fi
before=$(sha256sum "$lib")

# A cluster of its own, never the demo/test cluster on 28815.
url=$(PYLON_CRDT_PORT=28849 PYLON_CRDT_WORK="$work" scripts/cluster.sh start)
echo "bench: cluster $url" >&2
"$CARGO_TARGET_DIR/release/pylon_crdt_bench" "$url"
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
# Notifications with concurrent writers: pgbench, a fixed number of transactions per client
# (-t, so every counted transaction committed), notifications off and on in alternating rounds.
feed_url="${url%/postgres}/pylon_feed_bench"
"$psql_bin" "$feed_url" -X -q -c "CREATE TABLE notify_pgbench (id text PRIMARY KEY, votes int)" \
  -c "SELECT pylon_crdt_enable('notify_pgbench', '{\"votes\":{\"type\":\"int\",\"crdt\":\"counter\"}}')" \
  -c "INSERT INTO notify_pgbench SELECT 'r' || i, 0 FROM generate_series(1, 200) i" >/dev/null
script=$(mktemp)
printf '%s\n' '\set r random(1, 200)' \
  "SELECT pylon_crdt_apply_patch('notify_pgbench', 'r' || :r, '{\"votes\":{\"increment\":1}}');" > "$script"
for round in 1 2 3; do
  for on in false true; do
    "$psql_bin" "$feed_url" -X -q -c "SELECT pylon_crdt_set_notify('notify_pgbench', $on)" >/dev/null
    echo "$on $("$(dirname "$psql_bin")/pgbench" -n -f "$script" -c 4 -j 2 -t 2500 "$feed_url" 2>/dev/null |
      sed -n 's/^tps = \([0-9.]*\).*/\1/p')"
  done
done | awk '{ sum[$1] += $2; n[$1]++ }
  END { off = sum["false"] / n["false"]; on = sum["true"] / n["true"];
        printf "| single-row writes over 4 connections (pgbench, 3 × 4 × 2500), notifications off vs on | %d | %d | %.2f |\n", off, on, off / on }'
rm -f "$script"
# Issue 12: history of a doc of 10,000 changes.
echo
echo "| history | time |"
echo "|---|---|"
"$psql_bin" "$url" -X -q -c "DROP DATABASE IF EXISTS pylon_history_bench" -c "CREATE DATABASE pylon_history_bench" >&2
"$psql_bin" "${url%/postgres}/pylon_history_bench" -X -q -A -t -f bench/history.sql | grep '^|'
if [ "$(sha256sum "$lib")" != "$before" ]; then
  echo "bench: $lib was replaced during the run, so the results mix builds: run again" >&2
  exit 1
fi
