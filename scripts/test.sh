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
# Builds go to one target directory per machine (scripts/cargo-env.sh), so a fresh clone on a
# machine that built the project before compiles only the project's own crates. The run ends
# with its time against its target (warm: at most 25 minutes; cold: at most 60) and how many
# times it compiled the extension; its whole output is also kept in $PYLON_CRDT_WORK/logs.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$SECONDS
WORK="${PYLON_CRDT_WORK:-/var/tmp/pylon_crdt}"
install -d -m 755 "$WORK" "$WORK/logs"
# Decided before anything builds: whether this run found an earlier build to reuse.
source scripts/cargo-env.sh
log="$WORK/logs/test-$(date -u +%Y%m%dT%H%M%SZ).log"
exec > >(tee "$log") 2>&1
# The newest 20 runs' logs are kept.
find "$WORK/logs" -name 'test-*.log' -printf '%T@ %p\n' | sort -rn | tail -n +21 | cut -d' ' -f2- | xargs -r rm -f
# A step's heading, with the time since the start of the run.
step() { echo "== [$(((SECONDS - started) / 60))m$(printf %02d $(((SECONDS - started) % 60)))s] $*"; }

bash scripts/setup.sh

VERSIONS=(${PYLON_CRDT_PG_VERSIONS:-15 14 16 17 18})
runas=()
if [ "$(id -u)" = 0 ]; then
  # Postgres refuses to run as root: clusters run as `postgres` in directories it owns.
  install -d -o postgres -g postgres "$WORK/pg_test"
  runas=(--runas postgres)
fi

timings=()
for v in "${VERSIONS[@]}"; do
  export PYLON_CRDT_PG=$v
  source scripts/pg-env.sh
  t0=$SECONDS
  step "Postgres $v: cargo pgrx test (unit, property and #[pg_test] tests)"
  # Each `cargo pgrx test` makes a fresh cluster directory; drop the ones earlier runs left.
  rm -rf "$WORK"/pg_test/"$v"-*
  # It copies the library over the installed one in place; unlink it first so running
  # backends (e.g. a demo cluster) keep their mapped copy.
  rm -f "$("$PG_CONFIG" --pkglibdir)/pylon_crdt.so"
  cargo pgrx test "pg$v" "${runas[@]}" --pgdata "$WORK/pg_test"

  step "Postgres $v: SQL regression files (tests/pg_regress) against a local cluster"
  scripts/cluster.sh install
  scripts/cluster.sh start
  scripts/regress.sh

  step "Postgres $v: tool-level tests (tests/tools)"
  for t in tests/tools/*.sh; do
    [ "$(basename "$t")" = lib.sh ] && continue
    step "Postgres $v: $t"
    bash "$t"
  done
  [ "$v" = 15 ] || scripts/cluster.sh stop
  timings+=("Postgres $v: $((SECONDS - t0)) s")
done

if [[ " ${VERSIONS[*]} " == *" 15 "* ]]; then
  export PYLON_CRDT_PG=15
  t0=$SECONDS
  step "client tests over real connections: concurrency, interlock, crashes, hostile input, security (tests/client)"
  scripts/client-tests.sh
  timings+=("client suite: $((SECONDS - t0)) s")
fi

total=$((SECONDS - started))
echo "== all tests passed in $total s (${timings[*]/%/;})"
# What this run compiled, from cargo's own lines in the log ("Compiling <crate> v<version>",
# perhaps coloured), and the time against the target for a run of its kind.
compiled() { grep -cP "Compiling(\x1b\[[0-9;]*m)* $1" "$log" || true; }
echo "== compiled: pylon_crdt $(compiled 'pylon_crdt v') times, the client suite $(compiled 'pylon_crdt_client_tests v') times, $(compiled '') crates in all"
if [ "$PYLON_CRDT_TARGET_WARM" = warm ]; then target=25; else target=60; fi
verdict="within"
[ "$total" -le $((target * 60)) ] || verdict="OVER"
echo "== a $PYLON_CRDT_TARGET_WARM run ($CARGO_TARGET_DIR): $((total / 60)) min $((total % 60)) s, $verdict its target of $target min"
