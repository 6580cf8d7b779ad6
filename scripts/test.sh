#!/usr/bin/env bash
# Runs every test against real PostgreSQL servers, on every supported major (15, 14, 16, 17,
# 18; PYLON_CRDT_PG_VERSIONS narrows a local run, e.g. PYLON_CRDT_PG_VERSIONS="15 17"):
#   every major: the pure-core unit and property tests and the #[pg_test]s (`cargo pgrx
#     test`), the SQL behaviour files in tests/pg_regress, and the tests with the real client
#     tools (tests/tools: dump/restore, adoption, install script, upgrades, concurrency; the
#     .deb package on 15; pg_dump 15 -> 17 and pg_upgrade 16 -> 17 in the 17 round);
#   15 (the apt Postgres): also the client suite over real connections (tests/client, on a
#     cluster of its own that it starts and stops).
# Works as root on a fresh Debian 12 machine: Postgres itself runs as the `postgres` user,
# with data directories under $PYLON_CRDT_WORK that this user owns.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

VERSIONS=(${PYLON_CRDT_PG_VERSIONS:-15 14 16 17 18})
WORK="${PYLON_CRDT_WORK:-/var/tmp/pylon_crdt}"
runas=()
if [ "$(id -u)" = 0 ]; then
  # Postgres refuses to run as root: clusters run as `postgres` in directories it owns.
  install -d -m 755 "$WORK"
  install -d -o postgres -g postgres "$WORK/pg_test"
  runas=(--runas postgres)
fi

started=$SECONDS
timings=()
for v in "${VERSIONS[@]}"; do
  export PYLON_CRDT_PG=$v
  source scripts/pg-env.sh
  t0=$SECONDS
  echo "== Postgres $v: cargo pgrx test (unit, property and #[pg_test] tests)"
  # Each `cargo pgrx test` makes a fresh cluster directory; drop the ones earlier runs left.
  rm -rf "$WORK"/pg_test/"$v"-*
  # It copies the library over the installed one in place; unlink it first so running
  # backends (e.g. a demo cluster) keep their mapped copy.
  rm -f "$("$PG_CONFIG" --pkglibdir)/pylon_crdt.so"
  cargo pgrx test "pg$v" "${runas[@]}" --pgdata "$WORK/pg_test"

  echo "== Postgres $v: SQL regression files (tests/pg_regress) against a local cluster"
  scripts/cluster.sh install
  scripts/cluster.sh start
  scripts/regress.sh

  echo "== Postgres $v: tool-level tests (tests/tools)"
  for t in tests/tools/*.sh; do
    [ "$(basename "$t")" = lib.sh ] || bash "$t"
  done
  [ "$v" = 15 ] || scripts/cluster.sh stop
  timings+=("Postgres $v: $((SECONDS - t0)) s")
done

if [[ " ${VERSIONS[*]} " == *" 15 "* ]]; then
  export PYLON_CRDT_PG=15
  t0=$SECONDS
  echo "== client tests over real connections: concurrency, interlock, crashes, hostile input, security (tests/client)"
  scripts/client-tests.sh
  timings+=("client suite: $((SECONDS - t0)) s")
fi

echo "== all tests passed in $((SECONDS - started)) s (${timings[*]/%/;})"
