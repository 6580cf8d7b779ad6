#!/usr/bin/env bash
# One session keeps working across REINDEX CONCURRENTLY of the sidecar (a new index OID) and
# DROP + CREATE EXTENSION (new tables): the backend's cached table and index lookups follow.
source "$(dirname "$0")/lib.sh"

fresh_db reinstall
out=$(sql reinstall <<'SQL'
CREATE EXTENSION pylon_crdt;
SELECT pylon_crdt_apply_patch('P', 'r', '{"n":"int"}', '{"n":1}');
REINDEX TABLE CONCURRENTLY _pylon_crdt_snapshots;
SELECT pylon_crdt_apply_patch('P', 'r', '{"n":"int"}', '{"n":2}');
DROP EXTENSION pylon_crdt CASCADE;
CREATE EXTENSION pylon_crdt;
SELECT pylon_crdt_apply_patch('P', 'r', '{"n":"int"}', '{"n":3}');
SELECT pylon_crdt_project('P', 'r', '{"n":"int"}');
SQL
)
check "writes after REINDEX CONCURRENTLY and a reinstall, in one session" \
  "$(printf '%s\n' '{"n": 1}' '{"n": 2}' '{"n": 3}' '{"n": 3}')" "$out"

# DROP EXTENSION with an enabled table: refused (2BP01, the triggers depend on it); with
# CASCADE, the triggers and the docs go and the table stays, a plain one with its last values.
sql reinstall <<'SQL'
CREATE TABLE task (id text PRIMARY KEY, title text, votes int);
SELECT pylon_crdt_enable('task', '{"title":"string","votes":{"type":"int","crdt":"counter"}}');
INSERT INTO task VALUES ('t1', 'kept', 1);
UPDATE task SET votes = votes + 2;
SQL
check "DROP EXTENSION with an enabled table is refused" "2BP01" \
  "$(sql reinstall -v VERBOSITY=sqlstate -c "DROP EXTENSION pylon_crdt" 2>&1 >/dev/null | sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\).*/\1/p')"
check "DROP EXTENSION ... CASCADE leaves a plain table with its last values" "kept|3|0|0" \
  "$(sql reinstall -c "SET client_min_messages = warning" -c "DROP EXTENSION pylon_crdt CASCADE" \
       -c "SELECT title || '|' || votes FROM task" \
       -c "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'task'::regclass AND NOT tgisinternal" \
       -c "SELECT count(*) FROM pg_class WHERE relname = '_pylon_crdt_snapshots'" | paste -sd'|')"
check "... which takes plain writes" "4" \
  "$(sql reinstall -c "UPDATE task SET votes = votes + 1 RETURNING votes")"

psql "$BASE/postgres" -X -q -c "DROP DATABASE reinstall WITH (FORCE)"
finish
