#!/usr/bin/env bash
# pylon_crdt_alter while other connections write (issue 16): two sessions increment counters
# through plain UPDATE and a third writes a text field through the function, while a fourth
# converts votes from LWW number to counter and back and renames a field. Every statement
# commits on its own and none may fail, so the committed increments are exactly 2 * N: the
# column and the doc must both show all of them, and the docs must match the columns.
source "$(dirname "$0")/lib.sh"
N=${N:-2000}
ROWS=50

fresh_db concurrent_alter
sql concurrent_alter <<SQL
CREATE EXTENSION pylon_crdt;
CREATE TABLE counters (id text PRIMARY KEY, votes int, title text, note text);
SELECT pylon_crdt_enable('counters', '{"votes":"int","title":"string","note":"richtext"}');
INSERT INTO counters SELECT 'c' || i, 0, 'row ' || i, '' FROM generate_series(1, $ROWS) AS i;
SQL

updates=$(mktemp); patches=$(mktemp); alters=$(mktemp)
trap 'rm -f "$updates" "$patches" "$alters" "$alters.out"' EXIT
for i in $(seq "$N"); do echo "UPDATE counters SET votes = votes + 1 WHERE id = 'c$((i % ROWS + 1))';"; done >"$updates"
for i in $(seq "$N"); do echo "SELECT pylon_crdt_apply_patch('counters', 'c$((i % ROWS + 1))', '{\"note\":\"edit $i\"}');"; done >"$patches"
cat >"$alters" <<'SQL'
SELECT pg_sleep(0.2);
SELECT pylon_crdt_alter('counters', '{"votes":{"type":"int","crdt":"counter"},"headline":"string","note":"richtext"}', '{"title":"headline"}');
SELECT pg_sleep(0.2);
SELECT pylon_crdt_alter('counters', '{"votes":"int","headline":"string","note":"string"}');
SELECT pg_sleep(0.2);
SELECT pylon_crdt_alter('counters', '{"votes":{"type":"int","crdt":"counter"},"title":"string","note":"richtext"}', '{"headline":"title"}');
-- How far the writers were: the alters must have run while they wrote.
SELECT sum(votes) FROM counters;
SQL

pids=()
sql concurrent_alter -f "$updates" >/dev/null & pids+=($!)
sql concurrent_alter -f "$updates" >/dev/null & pids+=($!)
sql concurrent_alter -f "$patches" >/dev/null & pids+=($!)
sql concurrent_alter -f "$alters" >"$alters.out" & pids+=($!)
errors=0
for pid in "${pids[@]}"; do wait "$pid" || errors=$((errors + 1)); done

check "no session failed (no deadlock, no error)" 0 "$errors"
during=$(tail -n 1 "$alters.out")
check "the alters ran while the writers wrote ($during of $((2 * N)) increments)" yes \
  "$([ "$during" -gt 0 ] && [ "$during" -lt $((2 * N)) ] && echo yes || echo no)"
check "the columns have every increment" "$((2 * N))" "$(sql concurrent_alter -c "SELECT sum(votes) FROM counters")"
check "the docs have every increment" "$((2 * N))" \
  "$(sql concurrent_alter -c "SELECT sum((pylon_crdt_project('counters', id) ->> 'votes')::int) FROM counters")"
check "every field ends as the last alter left it" '{"note": "richtext", "title": "string", "votes": {"crdt": "counter", "type": "int"}}' \
  "$(sql concurrent_alter -c "SELECT fields FROM _pylon_crdt_registry WHERE entity = 'counters'")"
check "the docs match the columns" 0 "$(sql concurrent_alter -c "SELECT count(*) FROM pylon_crdt_verify()")"
check "titles kept through two renames" "$ROWS" \
  "$(sql concurrent_alter -c "SELECT count(*) FROM counters WHERE title = 'row ' || substr(id, 2)")"
psql "$BASE/postgres" -X -q -c "DROP DATABASE concurrent_alter WITH (FORCE)"
finish
