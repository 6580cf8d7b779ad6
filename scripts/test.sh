#!/usr/bin/env bash
# Runs every test against a real PostgreSQL 15: the pure-core unit and property tests and the
# #[pg_test]s (`cargo pgrx test`), the SQL behaviour files in tests/pg_regress, the tests with
# the real client tools (tests/tools), and the client suite over real connections
# (tests/client, on a cluster of its own that it starts and stops).
# Works as root on a fresh Debian 12 machine: Postgres itself runs as the `postgres` user,
# with data directories under $PYLON_CRDT_WORK that this user owns.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

WORK="${PYLON_CRDT_WORK:-/var/tmp/pylon_crdt}"
runas=()
if [ "$(id -u)" = 0 ]; then
  # Postgres refuses to run as root: clusters run as `postgres` in directories it owns.
  install -d -m 755 "$WORK"
  install -d -o postgres -g postgres "$WORK/pg_test"
  runas=(--runas postgres)
fi
# Each `cargo pgrx test` makes a fresh cluster directory; drop the ones earlier runs left.
rm -rf "$WORK"/pg_test/15-*

echo "== cargo pgrx test (unit, property and #[pg_test] tests)"
# It copies the library over the installed one in place; unlink it first so running
# backends (e.g. a demo cluster) keep their mapped copy.
rm -f "$(/usr/lib/postgresql/15/bin/pg_config --pkglibdir)/pylon_crdt.so"
cargo pgrx test pg15 "${runas[@]}" --pgdata "$WORK/pg_test"

echo "== SQL regression files (tests/pg_regress) against a local cluster"
scripts/cluster.sh install
scripts/cluster.sh start
scripts/regress.sh

echo "== tool-level tests: pg_dump/pg_restore, adoption, concurrent writers (tests/tools)"
for t in tests/tools/*.sh; do
  [ "$(basename "$t")" = lib.sh ] || bash "$t"
done

echo "== client tests over real connections: concurrency, interlock, crashes, hostile input, security (tests/client)"
scripts/client-tests.sh
