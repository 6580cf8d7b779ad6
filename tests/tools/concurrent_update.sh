#!/usr/bin/env bash
# Concurrent writers to one counter of an enabled table, through plain UPDATE from two
# sessions and through the function from a third, lose nothing and never deadlock: every path
# locks the entity row before the advisory lock.
source "$(dirname "$0")/lib.sh"
N=${N:-300}

fresh_db concurrent
sql concurrent <<'SQL'
CREATE EXTENSION pylon_crdt;
CREATE TABLE counters (id text PRIMARY KEY, votes int, note text);
SELECT pylon_crdt_enable('counters', '{"votes":{"type":"int","crdt":"counter"},"note":"richtext"}');
INSERT INTO counters VALUES ('c', 0, '');
SQL

script_update=$(mktemp); script_function=$(mktemp)
trap 'rm -f "$script_update" "$script_function"' EXIT
for _ in $(seq "$N"); do echo "UPDATE counters SET votes = votes + 1 WHERE id = 'c';"; done >"$script_update"
for _ in $(seq "$N"); do echo "SELECT pylon_crdt_apply_patch('counters', 'c', '{\"votes\":{\"increment\":1}}');"; done >"$script_function"

pids=()
sql concurrent -f "$script_update" >/dev/null & pids+=($!)
sql concurrent -f "$script_update" >/dev/null & pids+=($!)
sql concurrent -f "$script_function" >/dev/null & pids+=($!)
errors=0
for pid in "${pids[@]}"; do wait "$pid" || errors=$((errors + 1)); done

check "no session failed (no deadlock, no error)" 0 "$errors"
check "column has every increment" "$((3 * N))" "$(sql concurrent -c "SELECT votes FROM counters WHERE id = 'c'")"
check "doc has every increment" "$((3 * N))" "$(sql concurrent -c "SELECT pylon_crdt_project('counters', 'c') ->> 'votes'")"

psql "$BASE/postgres" -X -q -c "DROP DATABASE concurrent WITH (FORCE)"
finish
