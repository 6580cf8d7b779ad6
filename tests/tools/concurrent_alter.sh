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

# No pacing by the clock: gates made of advisory locks that the altering session holds put the
# three alters inside the writers' run by construction. Each writer does half of its statements,
# waits at gate 1 until the three of them are there and the alters start, does a quarter while
# the alters run, waits at gate 2 until the last alter has committed, then does the rest.
gate() { echo "SELECT pg_advisory_lock_shared($1); SELECT pg_advisory_unlock_shared($1);"; }
writes() { # first last statement-template: numbered statements
  for i in $(seq "$1" "$2"); do printf "$3\n" "$((i % ROWS + 1))" "$i"; done
}
script() { # statement-template
  writes 1 $((N / 2)) "$1"; gate 1
  writes $((N / 2 + 1)) $((3 * N / 4)) "$1"; gate 2
  writes $((3 * N / 4 + 1)) "$N" "$1"
}
updates=$(mktemp); patches=$(mktemp); alters=$(mktemp)
trap 'rm -f "$updates" "$patches" "$alters" "$alters.out"' EXIT
script "UPDATE counters SET votes = votes + 1 WHERE id = 'c%s'; -- %s" >"$updates"
script "SELECT pylon_crdt_apply_patch('counters', 'c%s', '{\"note\":\"edit %s\"}');" >"$patches"
cat >"$alters" <<'SQL'
SELECT pg_advisory_lock(1), pg_advisory_lock(2);
-- The three writers at gate 1. Nothing is asserted on time: the loop waits for them, and gives
-- up after a minute (a writer that failed early never comes) so that the checks report it.
DO $$
BEGIN
    FOR i IN 1..6000 LOOP
        EXIT WHEN (SELECT count(*) FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND classid = 0
                     AND objid = 1 AND objsubid = 1 AND NOT granted) = 3;
        PERFORM pg_catalog.pg_sleep(0.01);
    END LOOP;
END
$$;
SELECT pg_advisory_unlock(1);
SELECT pylon_crdt_alter('counters', '{"votes":{"type":"int","crdt":"counter"},"headline":"string","note":"richtext"}', '{"title":"headline"}');
SELECT pylon_crdt_alter('counters', '{"votes":"int","headline":"string","note":"string"}');
SELECT pylon_crdt_alter('counters', '{"votes":{"type":"int","crdt":"counter"},"title":"string","note":"richtext"}', '{"headline":"title"}');
-- How far the writers were when the last alter committed.
SELECT sum(votes) FROM counters;
SELECT pg_advisory_unlock(2);
SQL

pids=()
sql concurrent_alter -f "$alters" >"$alters.out" & pids+=($!)
# The writers start once the altering session holds both gates (or has failed: the checks say so).
for _ in $(seq 1200); do
  [ "$(sql concurrent_alter -c "SELECT count(*) FROM pg_catalog.pg_locks WHERE locktype = 'advisory'
         AND classid = 0 AND objid = 2 AND objsubid = 1 AND granted")" = 1 ] && break
  kill -0 "${pids[0]}" 2>/dev/null || break
  sleep 0.05
done
sql concurrent_alter -f "$updates" >/dev/null & pids+=($!)
sql concurrent_alter -f "$updates" >/dev/null & pids+=($!)
sql concurrent_alter -f "$patches" >/dev/null & pids+=($!)
errors=0
for pid in "${pids[@]}"; do wait "$pid" || errors=$((errors + 1)); done

check "no session failed (no deadlock, no error)" 0 "$errors"
during=$(tail -n 2 "$alters.out" | head -n 1)
check "the alters ran while the writers wrote (between gate 1 and gate 2: $during of $((2 * N)) increments)" yes \
  "$([ "$during" -ge "$N" ] && [ "$during" -le $((3 * N / 2)) ] && echo yes || echo no)"
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
