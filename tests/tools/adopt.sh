#!/usr/bin/env bash
# CREATE EXTENSION adopts a _pylon_crdt_snapshots table the pylon runtime created earlier:
# its docs stay readable and writable, extra columns with defaults are fine, and a table the
# runtime could no longer insert into is refused.
source "$(dirname "$0")/lib.sh"

# A doc as the runtime would have stored it: made here in a scratch database.
fresh_db adopt_scratch
snapshot=$(sql adopt_scratch -c "CREATE EXTENSION pylon_crdt" \
  -c "SELECT encode(pylon_crdt_snapshot('Note', 'n1'), 'hex') FROM (SELECT pylon_crdt_apply_patch('Note', 'n1', '{\"title\":\"string\",\"body\":\"richtext\"}', '{\"title\":\"from the runtime\",\"body\":\"hello\"}')) AS w")

fresh_db adopt
sql adopt <<SQL
CREATE TABLE _pylon_crdt_snapshots (
    entity text NOT NULL, row_id text NOT NULL, snapshot bytea NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(), origin text DEFAULT 'runtime',
    PRIMARY KEY (entity, row_id));
INSERT INTO _pylon_crdt_snapshots (entity, row_id, snapshot) VALUES ('Note', 'n1', decode('$snapshot', 'hex'));
CREATE EXTENSION pylon_crdt;
SQL
check "adopted table is not an extension member" "0" \
  "$(sql adopt -c "SELECT count(*) FROM pg_depend WHERE objid = '_pylon_crdt_snapshots'::regclass AND deptype = 'e'")"
check "the runtime's doc reads" '{"body": "hello", "title": "from the runtime"}' \
  "$(sql adopt -c "SELECT pylon_crdt_project('Note', 'n1', '{\"title\":\"string\",\"body\":\"richtext\"}')")"
check "and merges new writes" '{"body": "hello, world", "title": "from the runtime"}' \
  "$(sql adopt -c "SELECT pylon_crdt_apply_patch('Note', 'n1', '{\"title\":\"string\",\"body\":\"richtext\"}', '{\"body\":\"hello, world\"}')")"
check "the runtime's INSERT shape still works" "1" \
  "$(sql adopt -c "INSERT INTO _pylon_crdt_snapshots (entity, row_id, snapshot) VALUES ('Note', 'n2', '\\x00') RETURNING 1")"

fresh_db adopt_bad
sql adopt_bad -c "CREATE TABLE _pylon_crdt_snapshots (entity text, row_id text, snapshot bytea, updated_at timestamptz, owner_id int NOT NULL, PRIMARY KEY (entity, row_id))"
check "a NOT NULL column without default is refused" "refused" \
  "$(sql adopt_bad -c "CREATE EXTENSION pylon_crdt" >/dev/null 2>&1 && echo accepted || echo refused)"

psql "$BASE/postgres" -X -q -c "DROP DATABASE adopt_scratch WITH (FORCE)" -c "DROP DATABASE adopt WITH (FORCE)" -c "DROP DATABASE adopt_bad WITH (FORCE)"
finish
