#!/usr/bin/env bash
# Postgres major upgrades keep every doc: pg_dump of a Postgres 15 database restored into 17,
# and pg_upgrade of a whole 15 cluster to 17. Each carries an enabled table written through
# its triggers, a table-less doc and a doc in `log` storage; afterwards the projections are
# the same, pylon_crdt_verify finds nothing, and the trigger and the functions still write.
# Runs in the Postgres 17 round of scripts/test.sh (15 and 17 both have the extension
# installed by then), on clusters of its own.
source "$(dirname "$0")/lib.sh"
[ "$PG_MAJOR" = 17 ] || { echo "skip - runs in the Postgres 17 round"; exit 0; }
OLD_BIN=$(dirname "$(scripts/postgres-versions.sh --print-pg-config 15)")
NEW_BIN=$PGBIN
[ -f "$("$OLD_BIN/pg_config" --pkglibdir)/pylon_crdt.so" ] ||
  { echo "FAIL - pylon_crdt is not installed in Postgres 15 (run PYLON_CRDT_PG=15 scripts/cluster.sh install)"; exit 1; }

dir="$WORK/cross-version"
as_postgres() { if [ "$(id -u)" = 0 ]; then sudo -u postgres "$@"; else "$@"; fi; }
cleanup() {
  for d in old dump upgraded; do as_postgres "$OLD_BIN/pg_ctl" -D "$dir/$d" -m immediate stop >/dev/null 2>&1 || true
    as_postgres "$NEW_BIN/pg_ctl" -D "$dir/$d" -m immediate stop >/dev/null 2>&1 || true; done
  rm -rf "$dir"
}
trap cleanup EXIT
cleanup
install -d -m 755 "$WORK"
if [ "$(id -u)" = 0 ]; then install -d -o postgres -g postgres "$dir"; else install -d "$dir"; fi
start() { # bin, name, port
  [ -f "$dir/$2/PG_VERSION" ] ||
    as_postgres "$1/initdb" -D "$dir/$2" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-instructions >/dev/null
  as_postgres "$1/pg_ctl" -D "$dir/$2" -l "$dir/$2.log" -w \
    -o "-p $3 -c listen_addresses=127.0.0.1 -c unix_socket_directories=''" start >/dev/null
}
on() { # port, sql... : unaligned, tuples only, in database app
  local port=$1; shift
  "$NEW_BIN/psql" "postgresql://postgres@127.0.0.1:$port/app" -X -q -A -t -v ON_ERROR_STOP=1 "$@"
}
OLD_PORT=54461 DUMP_PORT=54462 UPGRADED_PORT=54463
fields='{"title":"string","notes":"richtext","votes":{"type":"int","crdt":"counter"}}'
read_all() { # port: every projection, one line
  on "$1" -c "SELECT pylon_crdt_project('task', 't1')" \
    -c "SELECT pylon_crdt_project('Note', 'n1', '{\"title\":\"string\",\"body\":\"richtext\"}')" \
    -c "SELECT pylon_crdt_project('Log', 'l1', '{\"n\":{\"type\":\"int\",\"crdt\":\"counter\"}}')" \
    -c "SELECT count(*) FROM pylon_crdt_verify()" | paste -sd'|'
}

start "$OLD_BIN" old $OLD_PORT
"$NEW_BIN/psql" "postgresql://postgres@127.0.0.1:$OLD_PORT/postgres" -X -q -c "CREATE DATABASE app"
on $OLD_PORT <<SQL >/dev/null
CREATE EXTENSION pylon_crdt;
CREATE TABLE task (id text PRIMARY KEY, title text, notes text, votes int);
SELECT pylon_crdt_enable('task', '$fields');
INSERT INTO task VALUES ('t1', 'Written on 15', 'Draft', 1);
UPDATE task SET votes = votes + 1, notes = 'Draft two' WHERE id = 't1';
SELECT pylon_crdt_apply_patch('Note', 'n1', '{"title":"string","body":"richtext"}', '{"title":"a note","body":"hello"}');
SELECT pylon_crdt_set_storage('Log', 'log');
SELECT pylon_crdt_apply_patch('Log', 'l1', '{"n":{"type":"int","crdt":"counter"}}', '{"n":{"increment":3}}');
SELECT pylon_crdt_apply_patch('Log', 'l1', '{"n":{"type":"int","crdt":"counter"}}', '{"n":{"increment":4}}');
SQL
before=$(read_all $OLD_PORT)
check "docs written on 15" '{"notes": "Draft two", "title": "Written on 15", "votes": 2}|{"body": "hello", "title": "a note"}|{"n": 7}|0' "$before"

writes_after() { # port, label
  check "$2: the trigger and the functions still write" "12|Draft three|{\"n\": 8}" \
    "$(on "$1" -c "UPDATE task SET votes = votes + 10, notes = 'Draft three' WHERE id = 't1'" \
         -c "SELECT votes || '|' || notes FROM task WHERE id = 't1'" \
         -c "SELECT pylon_crdt_apply_patch('Log', 'l1', '{\"n\":{\"type\":\"int\",\"crdt\":\"counter\"}}', '{\"n\":{\"increment\":1}}')" | paste -sd'|')"
}

# pg_dump with the newer server's tools (as Postgres advises), restored into a 17 cluster.
start "$NEW_BIN" dump $DUMP_PORT
"$NEW_BIN/pg_dump" -Fc -d "postgresql://postgres@127.0.0.1:$OLD_PORT/app" -f "$dir/app.dump"
"$NEW_BIN/psql" "postgresql://postgres@127.0.0.1:$DUMP_PORT/postgres" -X -q -c "CREATE DATABASE app"
"$NEW_BIN/pg_restore" --exit-on-error -d "postgresql://postgres@127.0.0.1:$DUMP_PORT/app" "$dir/app.dump"
check "pg_dump 15 -> restore into 17: the same docs" "$before" "$(read_all $DUMP_PORT)"
writes_after $DUMP_PORT "restored into 17"

# pg_upgrade of the whole 15 cluster.
as_postgres "$OLD_BIN/pg_ctl" -D "$dir/old" -m fast -w stop >/dev/null
as_postgres "$NEW_BIN/initdb" -D "$dir/upgraded" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-instructions >/dev/null
(cd "$dir" && as_postgres "$NEW_BIN/pg_upgrade" -b "$OLD_BIN" -B "$NEW_BIN" -d "$dir/old" -D "$dir/upgraded" \
   -U postgres >"$dir/pg_upgrade.out" 2>&1) || { tail -n 30 "$dir/pg_upgrade.out"; exit 1; }
start "$NEW_BIN" upgraded $UPGRADED_PORT
check "pg_upgrade 15 -> 17: the same docs" "$before" "$(read_all $UPGRADED_PORT)"
writes_after $UPGRADED_PORT "upgraded to 17"
finish
