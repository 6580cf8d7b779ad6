-- The changes feed and notifications (issue 11): what recording a change, and notifying it,
-- cost a write, and one pull of 10,000 changed rows. Run by scripts/bench.sh in a database of
-- its own; prints markdown rows.
--   psql -v rounds=3 -v writes=2000 -f bench/feed.sql
\set ON_ERROR_STOP 1
\if :{?rounds}
\else
\set rounds 3
\endif
\if :{?writes}
\else
\set writes 2000
\endif
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pylon_crdt;
DROP TABLE IF EXISTS feed_bench, feed_bench_times, notify_bench_times;
CREATE TABLE feed_bench (id text PRIMARY KEY, title text, votes int);
SELECT pylon_crdt_enable('feed_bench', '{"title":"string","votes":{"type":"int","crdt":"counter"}}') IS NULL AS enabled \gset
INSERT INTO feed_bench SELECT 'r' || i, 'row', 0 FROM generate_series(1, 200) AS i;
CREATE TABLE feed_bench_times (publish text, round int, ms float8);

-- Single-row function-path writes, each its own transaction (the feed records one row per
-- doc and transaction), with the feed off and on in alternating rounds.
CREATE PROCEDURE pg_temp.writes(publish text, round int, n int) LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz;
BEGIN
    PERFORM pg_catalog.set_config('pylon_crdt.publish', publish, false);
    t0 := clock_timestamp();
    FOR i IN 1..n LOOP
        PERFORM pylon_crdt_apply_patch('feed_bench', 'r' || (i % 200 + 1), '{"votes":{"increment":1}}');
        COMMIT;
    END LOOP;
    INSERT INTO feed_bench_times VALUES (publish, round, extract(epoch FROM clock_timestamp() - t0) * 1000);
    COMMIT;
END $$;
CALL pg_temp.writes('off', 0, :writes / 4);  -- warm-up
SELECT format('CALL pg_temp.writes(%L, %s, %s)', 'off', r, :writes),
       format('CALL pg_temp.writes(%L, %s, %s)', 'registered', r, :writes)
  FROM generate_series(1, :rounds) AS r \gexec
SELECT format('| single-row writes, feed off vs on (%s × %s) | %s | %s | %s |', :rounds, :writes,
              round(:writes * 1000 / avg(ms) FILTER (WHERE publish = 'off')),
              round(:writes * 1000 / avg(ms) FILTER (WHERE publish = 'registered')),
              round((avg(ms) FILTER (WHERE publish = 'registered') / avg(ms) FILTER (WHERE publish = 'off'))::numeric, 2))
  FROM feed_bench_times;

-- Notifications on commit: the same writes with the table's notifications off and on (the
-- feed off), in alternating rounds. Each committed write queues one NOTIFY with the update.
CREATE TABLE notify_bench_times (notify bool, round int, ms float8);
CREATE PROCEDURE pg_temp.notify_writes(notify bool, round int, n int) LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz;
BEGIN
    PERFORM pg_catalog.set_config('pylon_crdt.publish', 'off', false);
    PERFORM pylon_crdt_set_notify('feed_bench', notify);
    COMMIT;
    t0 := clock_timestamp();
    FOR i IN 1..n LOOP
        PERFORM pylon_crdt_apply_patch('feed_bench', 'r' || (i % 200 + 1), '{"votes":{"increment":1}}');
        COMMIT;
    END LOOP;
    INSERT INTO notify_bench_times VALUES (notify, round, extract(epoch FROM clock_timestamp() - t0) * 1000);
    COMMIT;
END $$;
CALL pg_temp.notify_writes(true, 0, :writes / 4);  -- warm-up
SELECT format('CALL pg_temp.notify_writes(%L, %s, %s)', false, r, :writes),
       format('CALL pg_temp.notify_writes(%L, %s, %s)', true, r, :writes)
  FROM generate_series(1, :rounds) AS r \gexec
SELECT format('| single-row writes, notifications off vs on (%s × %s) | %s | %s | %s |', :rounds, :writes,
              round(:writes * 1000 / avg(ms) FILTER (WHERE NOT notify)),
              round(:writes * 1000 / avg(ms) FILTER (WHERE notify)),
              round((avg(ms) FILTER (WHERE notify) / avg(ms) FILTER (WHERE NOT notify))::numeric, 2))
  FROM notify_bench_times;
SELECT pylon_crdt_set_notify('feed_bench', true);

-- One pull of 10,000 changed rows, with each doc's version, in one query.
SET pylon_crdt.publish = registered;
INSERT INTO feed_bench SELECT 'bulk' || i, 'row', 0 FROM generate_series(1, 10000) AS i;
SELECT max(cursor) AS before_bulk FROM pylon_crdt_changes('feed_bench', 0, 1000000)
 WHERE row_id NOT LIKE 'bulk%' \gset
SELECT clock_timestamp() AS t0 \gset
SELECT count(*) AS pulled, count(version) AS versions FROM pylon_crdt_changes('feed_bench', :before_bulk, 10000) \gset
SELECT format('| one pull of %s changed rows with their %s versions | %s ms |', :pulled, :versions,
              round(extract(epoch FROM clock_timestamp() - :'t0'::timestamptz)::numeric * 1000));
DROP TABLE feed_bench, feed_bench_times, notify_bench_times;
