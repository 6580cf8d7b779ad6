#!/usr/bin/env bash
# CREATE EXTENSION adopts a _pylon_crdt_snapshots table the pylon runtime created earlier:
# its docs stay readable and writable, extra columns with defaults are fine, and a table the
# runtime could no longer insert into is refused. So is a table a non-superuser owns, or on
# which one holds TRIGGER: the extension writes every role's docs into it as its owner.
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
# The refusal itself, by SQLSTATE and message: any other failure of CREATE EXTENSION is not it.
refusal_of() { # db: CREATE EXTENSION's error, as "SQLSTATE: message", or "accepted"
  local err
  err=$(sql "$1" -v VERBOSITY=verbose -c "CREATE EXTENSION pylon_crdt" 2>&1 >/dev/null) && { echo accepted; return; }
  sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\): \(.*\)$/\1: \2/p' <<<"$err" | head -n 1
}
check "a NOT NULL column without default is refused" \
  "42P16: existing _pylon_crdt_snapshots has NOT NULL column(s) without default: owner_id" "$(refusal_of adopt_bad)"

fresh_db adopt_owned
sql adopt_owned <<SQL
DROP ROLE IF EXISTS pylon_runtime_app;
CREATE ROLE pylon_runtime_app;
GRANT CREATE ON SCHEMA public TO pylon_runtime_app;
SET ROLE pylon_runtime_app;
CREATE TABLE _pylon_crdt_snapshots (entity text, row_id text, snapshot bytea, updated_at timestamptz DEFAULT now(), PRIMARY KEY (entity, row_id));
RESET ROLE;
SQL
refusal=$(sql adopt_owned -c "CREATE EXTENSION pylon_crdt" 2>&1 >/dev/null || true)
check "a sidecar a non-superuser owns is refused, saying why" "yes" \
  "$(grep -q 'owned by role pylon_runtime_app, which is not a superuser' <<<"$refusal" && echo yes || echo "$refusal")"
check "and the extension is not installed" "0" \
  "$(sql adopt_owned -c "SELECT count(*) FROM pg_extension WHERE extname = 'pylon_crdt'")"
sql adopt_owned -c "ALTER TABLE _pylon_crdt_snapshots OWNER TO postgres" -c "GRANT TRIGGER ON _pylon_crdt_snapshots TO pylon_runtime_app"
check "a sidecar that grants TRIGGER to a non-superuser is refused" \
  "42501: existing table _pylon_crdt_snapshots grants TRIGGER to role(s) pylon_runtime_app, which are not superusers" \
  "$(refusal_of adopt_owned)"
# What the HINT says to do: a superuser owns it, the runtime's role keeps what it needs.
sql adopt_owned -c "REVOKE TRIGGER ON _pylon_crdt_snapshots FROM pylon_runtime_app" \
  -c "GRANT SELECT, INSERT, UPDATE, DELETE ON _pylon_crdt_snapshots TO pylon_runtime_app" -c "CREATE EXTENSION pylon_crdt"
check "after ALTER TABLE OWNER TO a superuser it is adopted" "1" \
  "$(sql adopt_owned -c "SELECT count(*) FROM pg_extension WHERE extname = 'pylon_crdt'")"
check "and the runtime's role still writes it directly" "1" \
  "$(sql adopt_owned -c "SET ROLE pylon_runtime_app" -c "INSERT INTO _pylon_crdt_snapshots (entity, row_id, snapshot) VALUES ('Note', 'r1', '\\x00') RETURNING 1")"

psql "$BASE/postgres" -X -q -c "DROP DATABASE adopt_scratch WITH (FORCE)" -c "DROP DATABASE adopt WITH (FORCE)" -c "DROP DATABASE adopt_bad WITH (FORCE)" \
  -c "DROP DATABASE adopt_owned WITH (FORCE)" -c "DROP ROLE pylon_runtime_app"
finish
