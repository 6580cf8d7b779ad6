#!/usr/bin/env bash
# Read replicas and failover (issue 14), with the real tools: a streaming standby made with
# pg_basebackup -R follows a primary that writes through every path (functions, the triggers
# of an enabled table, peer updates, `log` storage with compaction). On the standby every read
# function returns what the primary returns, a standby backend's cache follows replay, and
# every write function fails with 25006 before doing anything. Then the standby is promoted:
# it takes writes through every path, and the old primary's last changes to the same doc
# still merge into it.
source "$(dirname "$0")/lib.sh"
SPORT=$((PORT + 300))
SDATA="$DATA-standby"
SBASE="postgresql://postgres@127.0.0.1:$SPORT"
ssql() { # db, sql...: like sql, on the standby
  local db=$1; shift
  psql "$SBASE/$db" -X -q -A -t -v ON_ERROR_STOP=1 "$@"
}
stop_standby() {
  "$(dirname "$0")/../../scripts/cluster.sh" standby-stop
}
trap stop_standby EXIT

NOTE='{"title":"string","body":"richtext"}'
LOG='{"n":{"type":"int","crdt":"counter"}}'

fresh_db standby_src
sql standby_src >/dev/null <<SQL
ALTER DATABASE standby_src SET pylon_crdt.publish = registered;
SQL
sql standby_src >/dev/null <<SQL
CREATE EXTENSION pylon_crdt;
$SAMPLE_DOCS_SQL
SQL

"$(dirname "$0")/../../scripts/cluster.sh" standby >/dev/null
check "the standby is in recovery" t "$(ssql postgres -c "SELECT pg_is_in_recovery()")"

wait_replay() { # until the standby has replayed all the primary has written
  local lsn
  lsn=$(sql postgres -c "SELECT pg_current_wal_lsn()")
  for _ in $(seq 300); do
    [ "$(ssql postgres -c "SELECT pg_last_wal_replay_lsn() >= '$lsn'")" = t ] && return 0
    sleep 0.1
  done
  echo "the standby did not replay up to $lsn" >&2
  return 1
}

# Writes after the base backup, through every path, arrive by streaming.
sql standby_src >/dev/null <<SQL
UPDATE task SET votes = votes + 5, notes = 'Draft four' WHERE id = 't1';
INSERT INTO task VALUES ('t2', 'second', 'x', 0);
SELECT pylon_crdt_apply_patch('Note', 'n1', '$NOTE', '{"title":"edited on the primary"}');
SELECT pylon_crdt_apply_update('Note', 'n2', '$NOTE', pylon_crdt_snapshot('Note', 'n1'));
SELECT pylon_crdt_apply_patch('Log', 'l1', '$LOG', '{"n":{"increment":1}}');
SELECT pylon_crdt_compact('Log', 'l1');
SELECT pylon_crdt_apply_patch('Log', 'l1', '$LOG', '{"n":{"increment":2}}');
SQL
wait_replay

reads="SELECT concat_ws(' | ',
  pylon_crdt_project('task', 't1'), pylon_crdt_project('task', 't2'),
  pylon_crdt_project('Note', 'n1', '$NOTE'), pylon_crdt_project('Note', 'n2', '$NOTE'),
  pylon_crdt_project('Log', 'l1', '$LOG'),
  md5(pylon_crdt_snapshot('task', 't1')), md5(pylon_crdt_snapshot('Note', 'n1')), md5(pylon_crdt_snapshot('Log', 'l1')),
  encode(pylon_crdt_version('task', 't1'), 'hex'), encode(pylon_crdt_version('Log', 'l1'), 'hex'),
  loro_project(pylon_crdt_update_since('Note', 'n1', pylon_crdt_version('Nothing', 'here')), '$NOTE'),
  (SELECT count(*) FROM pylon_crdt_verify()), (SELECT count(*) FROM pylon_crdt_stats()),
  (SELECT string_agg(row_id || ':' || deleted || ':' || md5(version), ',' ORDER BY cursor, row_id) FROM pylon_crdt_changes('task')))"
primary_reads=$(sql standby_src -c "$reads")
check "the standby reads what the primary reads (projections, snapshots, versions, update since, verify, stats, changes feed)" \
  "$primary_reads" "$(ssql standby_src -c "$reads")"
check "... and the reads are the expected ones" \
  '{"notes": "Draft four", "title": "Written before", "votes": 7} | {"notes": "x", "title": "second", "votes": 0} | {"body": "hello", "title": "edited on the primary"} | {"body": "hello", "title": "edited on the primary"} | {"n": 10}' \
  "$(echo "$primary_reads" | cut -d'|' -f1-5 | sed 's/ $//')"
check "... and the update since an empty version carries the whole doc" \
  '{"body": "hello", "title": "edited on the primary"}' \
  "$(echo "$primary_reads" | cut -d'|' -f11 | sed 's/^ //; s/ $//')"

check "the standby's changes feed lists the enabled table's rows" "t1,t2" \
  "$(ssql standby_src -c "SELECT string_agg(row_id, ',' ORDER BY row_id) FROM pylon_crdt_changes('task')")"

# Every write function fails before doing anything, with 25006 and a read-only message.
refused=0
for statement in \
  "SELECT pylon_crdt_apply_patch('Note', 'n1', '$NOTE', '{\"title\":\"x\"}')" \
  "SELECT pylon_crdt_apply_patch('task', 't1', '{\"title\":\"x\"}')" \
  "SELECT pylon_crdt_apply_update('Note', 'n1', '$NOTE', pylon_crdt_snapshot('Note', 'n2'))" \
  "SELECT pylon_crdt_apply_update('task', 't1', pylon_crdt_snapshot('task', 't1'))" \
  "SELECT pylon_crdt_delete('Note', 'n1')" \
  "SELECT pylon_crdt_compact('Log', 'l1')" \
  "SELECT pylon_crdt_set_storage('Log', 'snapshot')" \
  "SELECT pylon_crdt_enable('task', '{\"title\":\"string\"}')" \
  "SELECT pylon_crdt_disable('task')" \
  "SELECT pylon_crdt_alter('task', '{\"title\":\"string\"}')" \
  "UPDATE task SET votes = votes + 1"; do
  out=$(psql "$SBASE/standby_src" -X -q -A -t -v VERBOSITY=verbose -c "$statement" 2>&1 || true)
  if [[ "$out" == *"ERROR:  25006:"*"read-only"* ]]; then
    refused=$((refused + 1))
  else
    echo "  not refused with 25006: $statement -> $out"
  fi
done
check "every write on the standby fails with 25006, read-only" 11 "$refused"
check "the standby's docs did not change" "$primary_reads" "$(ssql standby_src -c "$reads")"

# A standby backend that cached a doc returns the newer doc once replay applied the
# primary's next write: the same session reads before and after.
lsn_file=$(mktemp); write_file=$(mktemp)
trap 'stop_standby; rm -f "$lsn_file" "$write_file"' EXIT
cat >"$write_file" <<SQL
SELECT pylon_crdt_apply_patch('Note', 'n1', '$NOTE', '{"title":"after replay"}');
UPDATE task SET votes = votes + 1 WHERE id = 't1';
SELECT pg_current_wal_lsn();
SQL
cache=$(ssql standby_src <<SQL
SELECT pylon_crdt_project('Note', 'n1', '$NOTE') ->> 'title';
SELECT pylon_crdt_project('task', 't1') ->> 'votes';
SELECT pylon_crdt_project('Note', 'n1', '$NOTE') IS NOT NULL;
SELECT cache_hits = 1 FROM pylon_crdt_stats();
\! psql "$BASE/standby_src" -X -q -A -t -v ON_ERROR_STOP=1 -f $write_file | tail -n 1 >$lsn_file
\set lsn \`cat $lsn_file\`
SELECT count(*) >= 0 FROM generate_series(1, 300) WHERE pg_last_wal_replay_lsn() < :'lsn'::pg_lsn AND (SELECT true FROM pg_sleep(0.05));
SELECT pg_last_wal_replay_lsn() >= :'lsn'::pg_lsn;
SELECT pylon_crdt_project('Note', 'n1', '$NOTE') ->> 'title';
SELECT pylon_crdt_project('task', 't1') ->> 'votes';
SELECT decodes FROM pylon_crdt_stats();
SQL
)
check "a standby session's cached docs follow replay (a hit, then new docs decoded after replay)" "edited on the primary|7|t|t|t|t|after replay|8|4" "$(echo "$cache" | paste -sd'|')"

# Promotion: the standby becomes a primary that takes writes through every path.
wait_replay
common=$(ssql standby_src -c "SELECT encode(pylon_crdt_version('Note', 'n1'), 'hex')")
as_postgres "$PGBIN/pg_ctl" -D "$SDATA" -w promote >/dev/null
check "promoted" f "$(ssql postgres -c "SELECT pg_is_in_recovery()")"
check "the trigger writes on the promoted server" "9|promoted" \
  "$(ssql standby_src -c "UPDATE task SET votes = votes + 1, notes = 'promoted' WHERE id = 't1'" -c "SELECT votes || '|' || notes FROM task WHERE id = 't1'")"
check "the function writes on the promoted server, under the runtime's advisory lock" "t" \
  "$(ssql standby_src -c "BEGIN" -c "SELECT pylon_crdt_apply_patch('Note', 'n3', '$NOTE', '{\"title\":\"new\"}') IS NOT NULL" \
      -c "SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
            AND classid::int8 = (pylon_crdt_lock_key('Note')::int8 & 4294967295)
            AND objid::int8 = (pylon_crdt_lock_key('n3')::int8 & 4294967295))" -c "COMMIT" | tail -n 1)"
check "log storage keeps working on the promoted server" '{"n": 14}' \
  "$(ssql standby_src -c "SELECT pylon_crdt_apply_patch('Log', 'l1', '$LOG', '{\"n\":{\"increment\":4}}')")"

# The old primary wrote on after the promotion (a split brain, or changes a client still had):
# its changes to the same doc merge into the promoted server's, with both edits kept, since
# no peer id of the old primary's history is used again.
ssql standby_src -c "SELECT pylon_crdt_apply_patch('Note', 'n1', '$NOTE', '{\"body\":\"promoted edit\"}')" >/dev/null
sql standby_src -c "SELECT pylon_crdt_apply_patch('Note', 'n1', '$NOTE', '{\"title\":\"old primary edit\"}')" >/dev/null
late=$(sql standby_src -c "SELECT encode(pylon_crdt_update_since('Note', 'n1', '\\x$common'), 'hex')")
check "the old primary's last changes merge into the promoted server" \
  '{"body": "promoted edit", "title": "old primary edit"}' \
  "$(ssql standby_src -c "SELECT pylon_crdt_apply_update('Note', 'n1', '$NOTE', '\\x$late')")"
check "the promoted server's docs verify" 0 "$(ssql standby_src -c "SELECT count(*) FROM pylon_crdt_verify()")"

stop_standby
psql "$BASE/postgres" -X -q -c "DROP DATABASE standby_src WITH (FORCE)"
finish
