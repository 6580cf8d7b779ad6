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

psql "$BASE/postgres" -X -q -c "DROP DATABASE reinstall WITH (FORCE)"
finish
