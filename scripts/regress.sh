#!/usr/bin/env bash
# Runs the SQL behaviour files in tests/pg_regress (pgrx's layout: sql/ and expected/, with
# setup.sql first) with Postgres' own pg_regress against the local cluster of the Postgres
# PYLON_CRDT_PG picks (default 15). Same files as `cargo pgrx regress`, which cannot run as
# root; this runner can. A file whose output differs on some major keeps that output in
# expected/<name>_1.out, which pg_regress accepts as an alternative.
#   scripts/regress.sh           run all files
#   scripts/regress.sh --update  accept the current output as expected (review the diff!)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pg-env.sh

DIR=tests/pg_regress

tests=(setup)
for f in "$DIR"/sql/*.sql; do
  name=$(basename "$f" .sql)
  [ "$name" = setup ] || tests+=("$name")
done

launcher=$(mktemp)
trap 'rm -f "$launcher"' EXIT
printf '#!/bin/bash\n"$@" -v VERBOSITY=terse\n' >"$launcher"
chmod 755 "$launcher"

# A backend that crashes mid-file can still leave passing output: watch the server log too.
log="$DATA/server.log"
log_start=$(stat -c %s "$log" 2>/dev/null || echo 0)

status=0
PGOPTIONS="-c client_min_messages=warning" "$PG_REGRESS" \
  --host=127.0.0.1 --port="$PORT" --user=postgres --dbname=pylon_crdt_regress \
  --bindir="$PGBIN" --inputdir="$DIR" --outputdir="$DIR" --launcher="$launcher" "${tests[@]}" || status=$?

if tail -c +"$((log_start + 1))" "$log" 2>/dev/null | grep -E "terminated by signal|PANIC"; then
  echo "regress: a backend crashed during the run (see $log)"
  exit 1
fi

if [ "${1:-}" = --update ]; then
  for t in "${tests[@]}"; do cp "$DIR/results/$t.out" "$DIR/expected/$t.out"; done
  echo "regress: expected output updated from results/"
  exit 0
fi
[ $status = 0 ] || { cat "$DIR/regression.diffs" 2>/dev/null | head -200; }
exit $status
