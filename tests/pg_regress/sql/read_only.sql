-- Reads never write (issue 14): the read functions assign no transaction id, which is what
-- lets them run on a hot standby (tests/tools/standby.sh runs them on a real one) and keeps
-- them cheap on the primary; every write function refuses a read-only transaction before any
-- work, with 25006, as it refuses a standby.
CREATE TABLE ro_task (id text PRIMARY KEY, title text, votes int);
SELECT pylon_crdt_enable('ro_task', '{"title":"string","votes":{"type":"int","crdt":"counter"}}');
INSERT INTO ro_task VALUES ('t1', 'first', 1);
SELECT pylon_crdt_apply_patch('RoNote', 'n1', '{"title":"string"}', '{"title":"note"}');
SELECT pylon_crdt_set_storage('RoLog', 'log');
SELECT pylon_crdt_apply_patch('RoLog', 'l1', '{"n":{"type":"int","crdt":"counter"}}', '{"n":{"increment":2}}') ->> 'n' AS n;

-- A new session, so that nothing is cached: every lookup runs.
\c
BEGIN;
SELECT pylon_crdt_project('ro_task', 't1') AS registered,
       pylon_crdt_project('RoNote', 'n1', '{"title":"string"}') AS table_less,
       pylon_crdt_project('RoLog', 'l1', '{"n":{"type":"int","crdt":"counter"}}') AS logged,
       length(pylon_crdt_snapshot('ro_task', 't1')) > 0 AS snapshot,
       loro_project(pylon_crdt_update_since('RoNote', 'n1', pylon_crdt_version('RoNote', 'missing')),
                    '{"title":"string"}') AS update_since_nothing,
       (SELECT count(*) FROM pylon_crdt_verify()) AS problems;
SELECT pg_current_xact_id_if_assigned() IS NULL AS no_transaction_id;
COMMIT;

BEGIN READ ONLY;
SELECT pylon_crdt_project('ro_task', 't1') ->> 'votes' AS reads_work;
SELECT expect_error($$SELECT pylon_crdt_apply_patch('RoNote', 'n1', '{"title":"string"}', '{"title":"x"}')$$);
SELECT expect_error($$SELECT pylon_crdt_apply_patch('ro_task', 't1', '{"votes":{"increment":1}}')$$);
SELECT expect_error($$SELECT pylon_crdt_apply_update('RoNote', 'n1', '{"title":"string"}', pylon_crdt_snapshot('RoNote', 'n1'))$$);
SELECT expect_error($$SELECT pylon_crdt_delete('RoNote', 'n1')$$);
SELECT expect_error($$SELECT pylon_crdt_compact('RoLog', 'l1')$$);
SELECT expect_error($$SELECT pylon_crdt_set_storage('RoLog', 'snapshot')$$);
SELECT expect_error($$SELECT pylon_crdt_alter('ro_task', '{"title":"string"}')$$);
SELECT expect_error($$SELECT pylon_crdt_disable('ro_task')$$);
COMMIT;
SELECT pylon_crdt_project('RoNote', 'n1', '{"title":"string"}') AS unchanged;

SELECT pylon_crdt_delete('RoNote', 'n1'), pylon_crdt_delete('RoLog', 'l1');
SELECT pylon_crdt_set_storage('RoLog', 'snapshot');
DROP TABLE ro_task;
