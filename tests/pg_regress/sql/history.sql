-- History you can ask about (issue 12): every change the extension commits carries who made
-- it (the role, the transaction's id) and when (the transaction's start, in seconds), in the
-- Loro change itself; pylon_crdt_history lists the changes, pylon_crdt_project_at shows the
-- row as it was at a time or a version.
CREATE TABLE hist_note (id text PRIMARY KEY, title text, body text, votes int);
SELECT pylon_crdt_enable('hist_note', '{"title":"string","body":"richtext","votes":{"type":"int","crdt":"counter"}}');
CREATE ROLE hist_writer;
GRANT SELECT, INSERT, UPDATE ON hist_note TO hist_writer;
CREATE ROLE hist_stranger_w;
GRANT SELECT ON hist_note TO hist_stranger_w;

BEGIN;
INSERT INTO hist_note VALUES ('n1', 'first', 'hello', 1);
SELECT pg_current_xact_id()::text::bigint AS xid1, now() AS t1 \gset
COMMIT;
SELECT pylon_crdt_version('hist_note', 'n1') AS v1 \gset
-- Times are kept in seconds: the next change is in a later second.
SELECT pg_sleep(1.1);
SET ROLE hist_writer;
BEGIN;
UPDATE hist_note SET body = 'hello world', votes = votes + 2 WHERE id = 'n1';
-- Two writes in one transaction make one change.
SELECT pylon_crdt_apply_patch('hist_note', 'n1', '{"title":"second"}') ->> 'title' AS title;
SELECT pg_current_xact_id()::text::bigint AS xid2, now() AS t2 \gset
COMMIT;
RESET ROLE;

-- One row per change, in causal order, with the fields it touched.
SELECT role, xid = :xid1 AS is_xid1, xid = :xid2 AS is_xid2,
       made_at = date_trunc('second', :'t1'::timestamptz) AS at_t1,
       made_at = date_trunc('second', :'t2'::timestamptz) AS at_t2,
       fields, counter_end > counter_start AS has_ops, message LIKE '{"role":%' AS json_message
  FROM pylon_crdt_history('hist_note', 'n1');

-- The row as it was: at a time, at a version; before the doc existed, an empty projection.
SELECT pylon_crdt_project_at('hist_note', 'n1', :'t1'::timestamptz) AS at_first_write,
       pylon_crdt_project_at('hist_note', 'n1', :'t2'::timestamptz) AS at_second_write,
       pylon_crdt_project_at('hist_note', 'n1', :'t1'::timestamptz - interval '1 day') AS before_it_existed;
SELECT pylon_crdt_project_at('hist_note', 'n1', :'v1'::bytea) AS at_v1;
-- With a fields spec, for any entity.
SELECT pylon_crdt_project_at('hist_note', 'n1', '{"title":"string"}', :'v1'::bytea) AS title_at_v1;
-- Nothing changed: the stored doc and the row are as they were.
SELECT title, body, votes FROM hist_note;

-- What changed between two versions or times, per field: a plain value, text spans, a
-- counter's difference.
SELECT pylon_crdt_diff('hist_note', 'n1', :'v1'::bytea, pylon_crdt_version('hist_note', 'n1')) AS since_v1;
SELECT pylon_crdt_diff('hist_note', 'n1', :'t1'::timestamptz, :'t2'::timestamptz)
     = pylon_crdt_diff('hist_note', 'n1', :'v1'::bytea, pylon_crdt_version('hist_note', 'n1')) AS same_by_time;

-- Restore: a new change that brings the row back, columns included; history is kept.
SELECT pylon_crdt_version('hist_note', 'n1') AS v2 \gset
SELECT pylon_crdt_restore('hist_note', 'n1', :'t1'::timestamptz) AS restored;
SELECT title, body, votes FROM hist_note;
SELECT count(*) AS changes, (array_agg(role ORDER BY lamport DESC))[1] AS last_by
  FROM pylon_crdt_history('hist_note', 'n1');
-- And forward again, to the version before the restore (by version: the restore was made in
-- the same second as the second write).
SELECT pylon_crdt_restore('hist_note', 'n1', '{"title":"string","body":"richtext","votes":{"type":"int","crdt":"counter"}}',
                          :'v2'::bytea) AS restored_again;
SELECT title, body, votes FROM hist_note;
-- A restore needs the right to write the row, and an existing row.
SET ROLE hist_stranger_w;
SELECT expect_error($$SELECT pylon_crdt_restore('hist_note', 'n1', now())$$);
RESET ROLE;
SELECT expect_error($$SELECT pylon_crdt_restore('hist_note', 'nope', now())$$);

-- A version the doc does not hold (ops it lacks): 55000.
SELECT pylon_crdt_apply_patch('HistOther', 'x', '{"title":"string"}', '{"title":"x"}') IS NOT NULL AS other_written;
SELECT expect_error(format($$SELECT pylon_crdt_project_at('hist_note', 'n1', %L::bytea)$$,
                           pylon_crdt_version('HistOther', 'x')));
SELECT expect_error($$SELECT pylon_crdt_project_at('hist_note', 'n1', '\xff'::bytea)$$);
-- Reading history needs the right to read the row.
CREATE ROLE hist_stranger;
SET ROLE hist_stranger;
SELECT expect_error($$SELECT count(*) FROM pylon_crdt_history('hist_note', 'n1')$$);
SELECT expect_error($$SELECT pylon_crdt_project_at('hist_note', 'n1', now())$$);
RESET ROLE;

-- After a history trim, times before it cannot be shown.
SELECT pylon_crdt_compact('hist_note', 'n1', true) > 0 AS trimmed;
SELECT expect_error(format($$SELECT pylon_crdt_project_at('hist_note', 'n1', %L::timestamptz)$$, :'t1'));
SELECT pylon_crdt_project_at('hist_note', 'n1', now()) AS now_still_works;

SELECT pylon_crdt_disable('hist_note');
DROP TABLE hist_note;
DROP ROLE hist_writer, hist_stranger, hist_stranger_w;
SELECT pylon_crdt_delete('HistOther', 'x');
