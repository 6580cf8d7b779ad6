#!/usr/bin/env bash
# Active-active (issue 17), with Postgres' own logical replication between two clusters of
# this major (ports PORT+400 and PORT+401, wal_level = logical). Both nodes create the same
# rows on their own first (mergeable fields: the docs merge); then 8 connections on each node
# write the same 10 rows at once for PYLON_CRDT_AA_SECONDS (default 60) through the
# functions, plain UPDATEs of the enabled table and peer updates, each transaction recording
# what it added in a ledger row of its own node. Then both nodes hold the same docs and
# columns, every counter is the exact number of committed increments of both nodes together,
# every text token committed on either node is there, the titles (LWW) agree, and no apply
# worker ever failed. Then a partition (both subscriptions disabled), writes on both sides,
# heal; then node B killed (pg_ctl -m immediate) while A writes; both converge again with
# nothing lost. Lastly the WAL of both nodes stays still: nothing loops. Runs on 15 (no
# origin filter) and 17 (origin = none); the other majors skip it.
source "$(dirname "$0")/lib.sh"
case "$PG_MAJOR" in
  15 | 17) ;;
  *) echo "active_active: runs on Postgres 15 and 17, skipped on $PG_MAJOR"; exit 0 ;;
esac
SECONDS_TO_WRITE="${PYLON_CRDT_AA_SECONDS:-60}"
A_PORT=$((PORT + 400))
B_PORT=$((PORT + 401))
A_DATA="$WORK/active-active-$PG_MAJOR-a"
B_DATA="$WORK/active-active-$PG_MAJOR-b"
url() { echo "postgresql://postgres@127.0.0.1:$1/aa"; }
on() { # port, sql...: prints unaligned, tuples only
  local port=$1; shift
  psql "$(url "$port")" -X -q -A -t -v ON_ERROR_STOP=1 "$@"
}

stop_nodes() {
  for d in "$A_DATA" "$B_DATA"; do
    as_postgres "$PGBIN/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$d"
  done
}
trap stop_nodes EXIT
stop_nodes
for node in "$A_DATA:$A_PORT" "$B_DATA:$B_PORT"; do
  data=${node%:*} port=${node#*:}
  init_server "$PGBIN" "$data"
  # autovacuum off: the last check is that nothing writes WAL once the nodes converged, and
  # vacuuming the outbox would.
  as_postgres tee -a "$data/postgresql.conf" >/dev/null <<CONF
wal_level = logical
max_wal_senders = 10
max_replication_slots = 10
max_worker_processes = 16
autovacuum = off
CONF
  start_server "$PGBIN" "$data" "$port"
  psql "postgresql://postgres@127.0.0.1:$port/postgres" -X -q -c "CREATE DATABASE aa"
  psql "postgresql://postgres@127.0.0.1:$port/postgres" -X -q -c "ALTER DATABASE aa SET pylon_crdt.replicate = on"
done

# The same schema on both nodes (schema changes do not replicate), the publication of the
# outbox, and the rows created on each node on its own.
for node in "A:$A_PORT" "B:$B_PORT"; do
  name=${node%:*} port=${node#*:}
  on "$port" >/dev/null <<SQL
CREATE EXTENSION pylon_crdt;
CREATE TABLE task (id text PRIMARY KEY, title text, body text NOT NULL DEFAULT '', votes int NOT NULL DEFAULT 0);
SELECT pylon_crdt_enable('task', '{"title":"string","body":"richtext","votes":{"type":"int","crdt":"counter"}}');
-- What each committed transaction of this node added: increments to votes, tokens to body.
CREATE TABLE ledger (node text, row_id text, votes int, tokens int);
CREATE PUBLICATION pylon_crdt FOR TABLE _pylon_crdt_outbox WITH (publish = 'insert');
-- kind 1: a function call (an increment, an LWW title); 2: a plain UPDATE through the
-- trigger (an increment, a text token); 3: a peer update (a doc made apart with +1 on its
-- mergeable counter, applied with pylon_crdt_apply_update).
CREATE FUNCTION aa_write(kind int, rid text, node text) RETURNS void LANGUAGE plpgsql AS \$\$
DECLARE sid text;
BEGIN
  IF kind = 1 THEN
    PERFORM pylon_crdt_apply_patch('task', rid,
      jsonb_build_object('votes', '{"increment":1}'::jsonb, 'title', node || ' ' || clock_timestamp()));
    INSERT INTO ledger VALUES (node, rid, 1, 0);
  ELSIF kind = 2 THEN
    UPDATE task SET votes = votes + 1, body = body || lower(node) || ';' WHERE id = rid;
    INSERT INTO ledger VALUES (node, rid, 1, 1);
  ELSE
    sid := node || '-' || gen_random_uuid();
    PERFORM pylon_crdt_apply_patch('scratch', sid, '{"votes":{"type":"int","crdt":"counter"}}', '{"votes":{"increment":1}}');
    PERFORM pylon_crdt_apply_update('task', rid, pylon_crdt_snapshot('scratch', sid));
    PERFORM pylon_crdt_delete('scratch', sid);
    INSERT INTO ledger VALUES (node, rid, 1, 0);
  END IF;
END \$\$;
INSERT INTO task SELECT 'r' || i, '$name', lower('$name') || ';', 1 FROM generate_series(0, 9) i;
INSERT INTO ledger SELECT '$name', 'r' || i, 1, 1 FROM generate_series(0, 9) i;
SQL
done

origin=""
[ "$PG_MAJOR" -ge 16 ] && origin=", origin = none"
on "$A_PORT" -c "CREATE SUBSCRIPTION from_b CONNECTION 'host=127.0.0.1 port=$B_PORT dbname=aa user=postgres' PUBLICATION pylon_crdt WITH (copy_data = false$origin)"
on "$B_PORT" -c "CREATE SUBSCRIPTION from_a CONNECTION 'host=127.0.0.1 port=$A_PORT dbname=aa user=postgres' PUBLICATION pylon_crdt WITH (copy_data = false$origin)"
# The docs written before the subscriptions existed.
on "$A_PORT" -c "SELECT pylon_crdt_resend()" >/dev/null
on "$B_PORT" -c "SELECT pylon_crdt_resend()" >/dev/null

# What a node holds: per row its columns and its doc's version; the same on both nodes once
# they converged.
STATE="SELECT string_agg(t.id || ':' || t.votes || ':' || md5(t.body) || ':' || coalesce(t.title, '')
                         || ':' || (loro_version_json(pylon_crdt_version('task', t.id)))::text, ' ' ORDER BY t.id)
         FROM task t"
caught_up() { # port: its subscriber confirmed everything it published
  on "$1" -c "SELECT coalesce(bool_and(confirmed_flush_lsn >= pg_current_wal_lsn()), false) FROM pg_replication_slots WHERE slot_type = 'logical'"
}
converge() { # label: waits until both nodes hold the same state
  for _ in $(seq 600); do
    if [ "$(caught_up "$A_PORT")" = t ] && [ "$(caught_up "$B_PORT")" = t ] &&
       [ "$(on "$A_PORT" -c "$STATE")" = "$(on "$B_PORT" -c "$STATE")" ]; then
      return 0
    fi
    sleep 0.5
  done
  echo "FAIL - $1: the nodes did not converge"; failed=$((failed + 1))
}
# Another node's versions travel through a file: they are too long for an argument.
versions_a=$(mktemp)
chmod 644 "$versions_a"
LEDGER="SELECT row_id || ':' || sum(votes) || ':' || sum(tokens) FROM ledger GROUP BY row_id ORDER BY row_id"
check_converged() { # label
  converge "$1"
  check "$1: both nodes hold the same columns and doc versions" "$(on "$A_PORT" -c "$STATE")" "$(on "$B_PORT" -c "$STATE")"
  check "$1: both nodes project the same docs" \
    "$(on "$A_PORT" -c "SELECT string_agg(pylon_crdt_project('task', id)::text, ' ' ORDER BY id) FROM task")" \
    "$(on "$B_PORT" -c "SELECT string_agg(pylon_crdt_project('task', id)::text, ' ' ORDER BY id) FROM task")"
  # Each counter is the sum of both ledgers' increments; each text has every committed token.
  expected=$( (on "$A_PORT" -c "$LEDGER"; on "$B_PORT" -c "$LEDGER") |
    awk -F: '{v[$1] += $2; t[$1] += $3} END {for (r in v) print r ":" v[r] ":" t[r]}' | sort | paste -sd' ')
  check "$1: counters are the committed increments of both nodes, texts hold every committed token" "$expected" \
    "$(on "$A_PORT" -c "SELECT string_agg(id || ':' || votes || ':' || (length(body) - length(replace(body, ';', ''))), ' ' ORDER BY id) FROM task")"
  check "$1: no apply or sync errors on either node" "0|0" \
    "$(for p in "$A_PORT" "$B_PORT"; do on "$p" -c "SELECT coalesce(sum(apply_error_count + sync_error_count), 0) FROM pg_stat_subscription_stats"; done | paste -sd'|')"
  on "$A_PORT" -c "SELECT jsonb_agg(v) FROM pylon_crdt_versions() v" >"$versions_a"
  check "$1: pylon_crdt_verify_versions finds no difference between the nodes" "0" \
    "$(on "$B_PORT" <<< "\\set other \`cat $versions_a\`
         SELECT count(*) FROM pylon_crdt_verify_versions(:'other')")"
  check "$1: pylon_crdt_verify finds nothing on either node" "0|0" \
    "$(for p in "$A_PORT" "$B_PORT"; do on "$p" -c "SELECT count(*) FROM pylon_crdt_verify()"; done | paste -sd'|')"
}

check_converged "rows created on both nodes apart"
check "their docs merged: both nodes' first tokens and counts" "r0:2:2" \
  "$(on "$B_PORT" -c "SELECT id || ':' || votes || ':' || (length(body) - length(replace(body, ';', ''))) FROM task WHERE id = 'r0'")"

# The concurrent phase: 8 connections per node, each transaction one random write.
script() { # node
  local f; f=$(mktemp)
  cat >"$f" <<PGB
\set r random(0, 9)
\set k random(1, 3)
SELECT aa_write(:k, 'r' || :r, '$1');
PGB
  chmod 644 "$f"; echo "$f"
}
# Replication lag, measured as users see it: each node writes a probe doc with its clock
# time every second (both nodes share this machine's clock), and the other node notes how
# long after that time the probe's new value shows in its own projection.
PROBE='{"t":"string"}'
probe_writer() { # port, node
  while sleep 1; do
    on "$1" -c "SELECT pylon_crdt_apply_patch('probe', '$2', '$PROBE', jsonb_build_object('t', clock_timestamp()))" >/dev/null 2>&1 || true
  done
}
probe_reader() { # port, node whose probe it reads: prints one lag (ms) per new probe value
  local prev="" line
  while sleep 0.05; do
    line=$(on "$1" -c "SELECT t || '|' || round(extract(epoch FROM clock_timestamp() - t::timestamptz) * 1000)
                         FROM (SELECT pylon_crdt_project('probe', '$2', '$PROBE') ->> 't' AS t) p WHERE t IS NOT NULL" 2>/dev/null || true)
    if [ -n "$line" ] && [ "${line%|*}" != "$prev" ]; then
      echo "${line##*|}" # the probe doc is new in this phase: its first value counts too
      prev=${line%|*}
    fi
  done
}
lag_ab=$(mktemp) lag_ba=$(mktemp)
probe_writer "$A_PORT" A & probes=($!)
probe_writer "$B_PORT" B & probes+=($!)
probe_reader "$B_PORT" A >"$lag_ab" & probes+=($!)
probe_reader "$A_PORT" B >"$lag_ba" & probes+=($!)
"$PGBIN/pgbench" -n -c 8 -j 2 -T "$SECONDS_TO_WRITE" -f "$(script A)" "$(url "$A_PORT")" >/tmp/aa_bench_a.log 2>&1 &
bench_a=$!
"$PGBIN/pgbench" -n -c 8 -j 2 -T "$SECONDS_TO_WRITE" -f "$(script B)" "$(url "$B_PORT")" >/tmp/aa_bench_b.log 2>&1 &
bench_b=$!
status=0
wait "$bench_a" || status=1
wait "$bench_b" || status=1
kill "${probes[@]}" 2>/dev/null || true
check "the writers on both nodes ran without an error" "0" "$status"
grep -h "failed\|aborted" /tmp/aa_bench_a.log /tmp/aa_bench_b.log || true
t0=$SECONDS
converge "after $SECONDS_TO_WRITE s of writes on both nodes"
catchup=$((SECONDS - t0))
lag_summary() { # file: median and maximum
  sort -n "$1" | awk '{v[NR] = $1} END {if (NR) printf "median %d ms, max %d ms over %d probes", v[int((NR + 1) / 2)], v[NR], NR; else printf "no probe arrived"}'
}
for n in A B; do
  port=$A_PORT lags=$lag_ab other=B
  [ $n = B ] && port=$B_PORT lags=$lag_ba other=A
  commits=$(on "$port" -c "SELECT count(*) - 10 FROM ledger WHERE node = '$n'")
  echo "active_active (Postgres $PG_MAJOR): node $n committed $commits writes in $SECONDS_TO_WRITE s ($((commits / SECONDS_TO_WRITE)) per s); its changes showed on node $other after: $(lag_summary "$lags")"
done
echo "active_active (Postgres $PG_MAJOR): both nodes converged $catchup s after the writers stopped"
check_converged "after the concurrent phase"

# Partition: neither node hears the other; both write; heal.
on "$A_PORT" -c "ALTER SUBSCRIPTION from_b DISABLE"
on "$B_PORT" -c "ALTER SUBSCRIPTION from_a DISABLE"
for i in $(seq 30); do
  on "$A_PORT" -c "SELECT aa_write($((i % 3 + 1)), 'r$((i % 10))', 'A')" >/dev/null
  on "$B_PORT" -c "SELECT aa_write($((i % 3 + 1)), 'r$((i % 10))', 'B')" >/dev/null
done
check "partitioned: the nodes differ" "t" \
  "$([ "$(on "$A_PORT" -c "$STATE")" != "$(on "$B_PORT" -c "$STATE")" ] && echo t || echo f)"
check "partitioned: pylon_crdt_verify_versions names the rows each node lacks changes of" "t|t" \
  "$(on "$A_PORT" -c "SELECT jsonb_agg(v) FROM pylon_crdt_versions() v" >"$versions_a"
     on "$B_PORT" <<< "\\set other \`cat $versions_a\`
       SELECT bool_or(problem LIKE '%this node lacks%'), bool_or(problem LIKE '%the other node lacks%')
              FROM pylon_crdt_verify_versions(:'other') WHERE entity = 'task'" | paste -sd'|')"
on "$A_PORT" -c "ALTER SUBSCRIPTION from_b ENABLE"
on "$B_PORT" -c "ALTER SUBSCRIPTION from_a ENABLE"
check_converged "after a partition healed"

# Node B dies (immediate shutdown: no checkpoint, a crash for its WAL) while A writes.
# A's apply worker loses its publisher then, an error of its own that the subscription
# statistics count; the logs must show no other, and the statistics start over after it.
a_log_start=$(stat -c %s "$A_DATA/server.log")
b_log_start=$(stat -c %s "$B_DATA/server.log")
"$PGBIN/pgbench" -n -c 4 -j 2 -T 10 -f "$(script A)" "$(url "$A_PORT")" >/tmp/aa_bench_crash.log 2>&1 &
bench_a=$!
sleep 3
as_postgres "$PGBIN/pg_ctl" -D "$B_DATA" -m immediate stop >/dev/null
sleep 2
start_server "$PGBIN" "$B_DATA" "$B_PORT"
status=0
wait "$bench_a" || status=1
check "node A's writers ran on while B restarted" "0" "$status"
for i in $(seq 10); do on "$B_PORT" -c "SELECT aa_write($((i % 3 + 1)), 'r$((i % 10))', 'B')" >/dev/null; done
converge "after node B was killed and restarted"
check "while B was down, replication errors were only the lost connection" "" \
  "$( (tail -c +$((a_log_start + 1)) "$A_DATA/server.log"; tail -c +$((b_log_start + 1)) "$B_DATA/server.log") |
      grep "ERROR" | grep -v "could not receive data from WAL stream\|could not connect to the publisher\|server closed the connection\|connection to server .* failed\|terminating connection due to\|the database system is \(starting up\|shutting down\|in recovery mode\)" || true)"
for p in "$A_PORT" "$B_PORT"; do on "$p" -c "SELECT pg_stat_reset_subscription_stats(NULL)" >/dev/null; done
check_converged "after node B was killed and restarted"

# Nothing loops: once converged, neither node writes WAL but the running-transactions record
# Postgres itself logs every 15 s while it has written anything (rmgr Standby).
for port_data in "$A_PORT:$A_DATA" "$B_PORT:$B_DATA"; do
  port=${port_data%%:*} data=${port_data#*:}
  # A checkpoint first, so that a timed one (Postgres' own record) does not fall in the window.
  on "$port" -c "CHECKPOINT" >/dev/null
  start=$(on "$port" -c "SELECT pg_current_wal_lsn()")
  sleep 20
  end=$(on "$port" -c "SELECT pg_current_wal_lsn()")
  others=0
  if [ "$start" != "$end" ]; then
    # pg_waldump must read the range: a failure is a finding, not an empty range.
    records=$(as_postgres "$PGBIN/pg_waldump" -p "$data/pg_wal" -s "$start" -e "$end") || records="pg_waldump failed"
    others=$(grep -v "^rmgr: Standby " <<< "$records" | grep -c . || true)
  fi
  check "after convergence node $port writes no WAL of its own ($start .. $end)" "0" "$others"
  [ "$others" = 0 ] || grep -v "^rmgr: Standby " <<< "$records" | head -n 5
done
check "no deadlock, no unique violation in either node's log" "0" \
  "$(cat "$A_DATA/server.log" "$B_DATA/server.log" | grep -c "deadlock detected\|duplicate key" || true)"
finish
