# Shared by the tool-level tests: a fresh database on the local cluster of the Postgres
# PYLON_CRDT_PG picks (scripts/pg-env.sh), and assertions.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/pg-env.sh"
BASE="postgresql://postgres@127.0.0.1:$PORT"
PATH="$PGBIN:$PATH"
passed=0
failed=0

fresh_db() { # name
  psql "$BASE/postgres" -X -q -c "DROP DATABASE IF EXISTS \"$1\" WITH (FORCE)" -c "CREATE DATABASE \"$1\""
}

sql() { # db, sql... : prints unaligned, tuples only
  local db=$1; shift
  psql "$BASE/$db" -X -q -A -t -v ON_ERROR_STOP=1 "$@"
}

check() { # description, expected, actual
  if [ "$2" = "$3" ]; then
    passed=$((passed + 1)); echo "ok - $1"
  else
    failed=$((failed + 1)); echo "FAIL - $1"; echo "  expected: $2"; echo "  got:      $3"
  fi
}

finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" = 0 ]
}

# Docs on every write path, for the tests that carry them across an upgrade: an enabled table
# written through its triggers, a table-less doc, and a doc in `log` storage with a log.
SAMPLE_DOCS_SQL=$(cat <<'SQL'
CREATE TABLE task (id text PRIMARY KEY, title text, notes text, votes int);
SELECT pylon_crdt_enable('task', '{"title":"string","notes":"richtext","votes":{"type":"int","crdt":"counter"}}');
INSERT INTO task VALUES ('t1', 'Written before', 'Draft', 1);
UPDATE task SET votes = votes + 1, notes = 'Draft two' WHERE id = 't1';
SELECT pylon_crdt_apply_patch('Note', 'n1', '{"title":"string","body":"richtext"}', '{"title":"a note","body":"hello"}');
SELECT pylon_crdt_set_storage('Log', 'log');
SELECT pylon_crdt_apply_patch('Log', 'l1', '{"n":{"type":"int","crdt":"counter"}}', '{"n":{"increment":3}}');
SELECT pylon_crdt_apply_patch('Log', 'l1', '{"n":{"type":"int","crdt":"counter"}}', '{"n":{"increment":4}}');
SQL
)
# What they read back (projections, then how many problems pylon_crdt_verify finds).
SAMPLE_DOCS_READ='{"notes": "Draft two", "title": "Written before", "votes": 2}|{"body": "hello", "title": "a note"}|{"n": 7}|0'

read_sample_docs() { # psql command...: what the sample docs read back, one line
  "$@" -c "SELECT pylon_crdt_project('task', 't1')" \
    -c "SELECT pylon_crdt_project('Note', 'n1', '{\"title\":\"string\",\"body\":\"richtext\"}')" \
    -c "SELECT pylon_crdt_project('Log', 'l1', '{\"n\":{\"type\":\"int\",\"crdt\":\"counter\"}}')" \
    -c "SELECT count(*) FROM pylon_crdt_verify()" | paste -sd'|'
}

check_sample_writes() { # label, psql command...: the trigger and the functions still write
  check "$1: the trigger and the functions still write" "12|Draft three|{\"n\": 8}" \
    "$("${@:2}" -c "UPDATE task SET votes = votes + 10, notes = 'Draft three' WHERE id = 't1'" \
         -c "SELECT votes || '|' || notes FROM task WHERE id = 't1'" \
         -c "SELECT pylon_crdt_apply_patch('Log', 'l1', '{\"n\":{\"type\":\"int\",\"crdt\":\"counter\"}}', '{\"n\":{\"increment\":1}}')" | paste -sd'|')"
}
