#!/usr/bin/env bash
# Postgres major upgrades keep every doc: pg_dump of a Postgres 15 database restored into 17,
# and pg_upgrade of a whole Postgres 16 cluster to 17. Each carries an enabled table written
# through its triggers, a table-less doc and a doc in `log` storage; afterwards the
# projections are the same, pylon_crdt_verify finds nothing, and the trigger and the
# functions still write. Runs in the Postgres 17 round of scripts/test.sh (15, 16 and 17 all
# have the extension installed by then), on clusters of its own.
#
# Why 15's own pg_dump, and pg_upgrade from 16 rather than 15: Debian's 15.20 (November 2026)
# tags every column with an attribute option, pg_attver, that the newest 17 available here
# (17.11) does not know. pg_dump 15.20 leaves it out; pg_dump 17.11, and so pg_upgrade to
# 17.11, copy it and the restore fails ("unrecognized parameter"). A 17 from the same
# release round as 15.20 would take either path.
source "$(dirname "$0")/lib.sh"
[ "$PG_MAJOR" = 17 ] || { echo "skip - runs in the Postgres 17 round"; exit 0; }
OLD_BIN=$(dirname "$(scripts/postgres-versions.sh --print-pg-config 15)")
MID_BIN=$(dirname "$(scripts/postgres-versions.sh --print-pg-config 16)")
NEW_BIN=$PGBIN
# A narrowed run (PYLON_CRDT_PG_VERSIONS) may not have installed the extension there yet.
for major in 15 16; do
  bin=$(dirname "$(scripts/postgres-versions.sh --print-pg-config $major)")
  [ -f "$("$bin/pg_config" --pkglibdir)/pylon_crdt.so" ] || PYLON_CRDT_PG=$major scripts/cluster.sh install >/dev/null
done

dir="$WORK/cross-version"
cleanup() {
  for d in old mid dump upgraded; do
    for bin in "$OLD_BIN" "$MID_BIN" "$NEW_BIN"; do
      as_postgres "$bin/pg_ctl" -D "$dir/$d" -m immediate stop >/dev/null 2>&1 || true
    done
  done
  rm -rf "$dir"
}
trap cleanup EXIT
cleanup
install -d -m 755 "$WORK"
if [ "$(id -u)" = 0 ]; then install -d -o postgres -g postgres "$dir"; else install -d "$dir"; fi
on() { # port, sql... : unaligned, tuples only, in database app
  local port=$1; shift
  "$NEW_BIN/psql" "postgresql://postgres@127.0.0.1:$port/app" -X -q -A -t -v ON_ERROR_STOP=1 "$@"
}
OLD_PORT=28861 DUMP_PORT=28862 UPGRADED_PORT=28863 MID_PORT=28864
populate() { # bin, name, port: the sample docs written on that server
  start_server "$1" "$dir/$2" "$3"
  "$NEW_BIN/psql" "postgresql://postgres@127.0.0.1:$3/postgres" -X -q -c "CREATE DATABASE app"
  on "$3" -c "CREATE EXTENSION pylon_crdt" -c "$SAMPLE_DOCS_SQL" >/dev/null
}

# pg_dump of a 15 database, restored into a 17 cluster.
populate "$OLD_BIN" old $OLD_PORT
check "docs written on 15" "$SAMPLE_DOCS_READ" "$(read_sample_docs on $OLD_PORT)"
start_server "$NEW_BIN" "$dir/dump" $DUMP_PORT
"$OLD_BIN/pg_dump" -Fc -d "postgresql://postgres@127.0.0.1:$OLD_PORT/app" -f "$dir/app.dump"
"$NEW_BIN/psql" "postgresql://postgres@127.0.0.1:$DUMP_PORT/postgres" -X -q -c "CREATE DATABASE app"
"$NEW_BIN/pg_restore" --exit-on-error -d "postgresql://postgres@127.0.0.1:$DUMP_PORT/app" "$dir/app.dump"
check "pg_dump 15 -> restore into 17: the same docs" "$SAMPLE_DOCS_READ" "$(read_sample_docs on $DUMP_PORT)"
check_sample_writes "restored into 17" on $DUMP_PORT

# pg_upgrade of a whole 16 cluster to 17.
populate "$MID_BIN" mid $MID_PORT
check "docs written on 16" "$SAMPLE_DOCS_READ" "$(read_sample_docs on $MID_PORT)"
as_postgres "$MID_BIN/pg_ctl" -D "$dir/mid" -m fast -w stop >/dev/null
init_server "$NEW_BIN" "$dir/upgraded"
(cd "$dir" && as_postgres "$NEW_BIN/pg_upgrade" -b "$MID_BIN" -B "$NEW_BIN" -d "$dir/mid" -D "$dir/upgraded" \
   -U postgres >"$dir/pg_upgrade.out" 2>&1) || { tail -n 30 "$dir/pg_upgrade.out"; exit 1; }
start_server "$NEW_BIN" "$dir/upgraded" $UPGRADED_PORT
check "pg_upgrade 16 -> 17: the same docs" "$SAMPLE_DOCS_READ" "$(read_sample_docs on $UPGRADED_PORT)"
check_sample_writes "upgraded to 17" on $UPGRADED_PORT
finish
