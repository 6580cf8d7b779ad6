-- Bulk writes on an enabled table (issue 16). A statement writes any number of rows with the
-- default max_locks_per_transaction: an enabled table's rows are ordered by their row locks,
-- not one advisory lock each, and the docs a statement writes are stored in batches at its
-- end (the pylon_crdt_flush statement trigger), always before anyone reads them.
\set fields '{"title":"string","body":"richtext","votes":{"type":"int","crdt":"counter"}}'
CREATE TABLE bulk (id text PRIMARY KEY, title text, body text, votes int NOT NULL DEFAULT 0);
SELECT pylon_crdt_enable('bulk', :'fields');

-- 20,000 rows in one statement, then a multi-row UPDATE, in one transaction: far more rows
-- than the shared lock table holds (max_locks_per_transaction x max_connections).
SHOW max_locks_per_transaction;
BEGIN;
INSERT INTO bulk SELECT 'r' || i, 'title ' || i, 'body ' || i, i % 5 FROM generate_series(1, 20000) AS i;
UPDATE bulk SET votes = votes + 1, body = body || '!';
SELECT count(*) AS advisory_locks FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid();
COMMIT;
SELECT count(*) AS docs FROM _pylon_crdt_snapshots WHERE entity = 'bulk';
SELECT sum(votes) AS column_sum,
       sum((pylon_crdt_project('bulk', id) ->> 'votes')::int) AS doc_sum
  FROM bulk;
SELECT pylon_crdt_project('bulk', 'r20000');
SELECT count(*) AS problems FROM pylon_crdt_verify('bulk');

-- A doc queued by a statement is never read stale: a function reading the row in the same
-- statement (here from a user trigger) stores the queue first.
CREATE TABLE seen (id text, title text);
CREATE FUNCTION bulk_seen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO seen VALUES (NEW.id, pylon_crdt_project('bulk', NEW.id) ->> 'title');
    RETURN NULL;
END $$;
CREATE TRIGGER bulk_seen AFTER UPDATE ON bulk FOR EACH ROW WHEN (NEW.id IN ('r1', 'r2')) EXECUTE FUNCTION bulk_seen();
UPDATE bulk SET title = 'renamed ' || id WHERE id IN ('r1', 'r2', 'r3');
SELECT * FROM seen ORDER BY id;
DROP TRIGGER bulk_seen ON bulk;

-- A rolled-back savepoint takes the docs it queued along; what was queued before it stays.
BEGIN;
UPDATE bulk SET votes = votes + 100 WHERE id = 'r1';
SAVEPOINT s;
UPDATE bulk SET votes = votes + 1000 WHERE id IN ('r1', 'r2');
ROLLBACK TO SAVEPOINT s;
UPDATE bulk SET votes = votes + 10 WHERE id = 'r2';
COMMIT;
SELECT id, votes, pylon_crdt_project('bulk', id) ->> 'votes' AS doc FROM bulk WHERE id IN ('r1', 'r2') ORDER BY id;

-- An error part way through a statement stores nothing of it: the division fails on row r19999
-- alone (its id is 6 long), at run time, after thousands of rows have queued their docs; the
-- same backend then reads every doc as it was. The statement runs on its own (no savepoint
-- around it), so it is the transaction's abort that must drop what it queued.
UPDATE bulk SET votes = votes + 1, title = CASE WHEN id = 'r19999' THEN (1 / (length(id) - 6))::text ELSE title END;
SELECT sum(votes) AS unchanged_sum,
       sum((pylon_crdt_project('bulk', id) ->> 'votes')::int) AS unchanged_doc_sum
  FROM bulk;

-- Multi-row DELETE removes the docs; TRUNCATE too.
DELETE FROM bulk WHERE id LIKE 'r1%';
SELECT count(*) AS rows, (SELECT count(*) FROM _pylon_crdt_snapshots WHERE entity = 'bulk') AS docs FROM bulk;
TRUNCATE bulk;
SELECT count(*) AS docs FROM _pylon_crdt_snapshots WHERE entity = 'bulk';

-- COPY goes through the same path.
COPY bulk (id, title, body, votes) FROM stdin;
c1	copied one	first body	3
c2	copied two	second body	4
\.
SELECT id, pylon_crdt_project('bulk', id) FROM bulk ORDER BY id;

-- Enabling a table that already holds rows gives every row a doc, in batches.
CREATE TABLE populated (id int PRIMARY KEY, title text, votes int);
INSERT INTO populated SELECT i, 'row ' || i, i FROM generate_series(1, 20000) AS i;
SELECT pylon_crdt_enable('populated', '{"title":"string","votes":{"type":"int","crdt":"counter"}}');
SELECT count(*) AS docs FROM _pylon_crdt_snapshots WHERE entity = 'populated';
SELECT pylon_crdt_project('populated', '12345');

-- A backfill through the function: one statement, 20,000 rows, no advisory lock per row.
BEGIN;
SELECT count(pylon_crdt_apply_patch('populated', id::text, jsonb_build_object('votes', jsonb_build_object('increment', 1))))
  FROM populated;
SELECT count(*) AS advisory_locks FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid();
COMMIT;
SELECT sum(votes) - 20000 * 20001 / 2 AS added FROM populated;

-- Unregistered entities keep the pylon runtime's interlock: one advisory lock per row until
-- commit, so a backfill there is bounded by the lock table.
BEGIN;
SELECT count(pylon_crdt_apply_patch('Loose', 'l' || i, '{"n":"int"}', '{"n":1}')) FROM generate_series(1, 100) AS i;
SELECT count(*) AS advisory_locks FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid();
ROLLBACK;

-- A disabled flush trigger cannot lose docs: the row trigger then stores each doc at once.
ALTER TABLE bulk DISABLE TRIGGER pylon_crdt_flush;
INSERT INTO bulk VALUES ('d1', 'direct', 'stored at once', 1);
ALTER TABLE bulk ENABLE TRIGGER pylon_crdt_flush;
SELECT pylon_crdt_project('bulk', 'd1');
SELECT count(*) AS problems FROM pylon_crdt_verify('bulk');

-- Past its first 64 rows a statement's docs are written by jobs on a thread of their own,
-- off the trigger (see src/batch.rs). A row whose projection differs from what the statement
-- wrote is corrected when its chunk is stored: here every tree gets new node ids.
CREATE TABLE outline (id text PRIMARY KEY, title text, tree jsonb, tags jsonb);
SELECT pylon_crdt_enable('outline', '{"title":"string","tree":{"type":"string","crdt":"tree"},"tags":{"type":"string","crdt":"list"}}');
INSERT INTO outline SELECT 'o' || i, 'outline ' || i, '{"create":{"parent":null,"data":{"name":"root"}}}', '["a","b"]'
  FROM generate_series(1, 300) AS i;
SELECT count(*) AS rows_with_a_tree_node FROM outline WHERE jsonb_array_length(tree) = 1 AND tree -> 0 ->> 'id' IS NOT NULL;
SELECT count(*) AS problems FROM pylon_crdt_verify('outline');
UPDATE outline SET tags = '{"push":"c"}';
SELECT DISTINCT tags FROM outline;

-- A job that fails names its row, and the statement stores nothing. Only row o250 fails, and
-- it comes after the first 64 rows of the scan, which the trigger handles itself, so a job
-- meets it; every other row's push is dropped with it.
SELECT count(*) >= 64 AS o250_is_past_the_rows_of_the_trigger
  FROM outline WHERE ctid < (SELECT ctid FROM outline WHERE id = 'o250');
SELECT expect_error($$UPDATE outline SET tags = CASE WHEN id = 'o250' THEN '{"delete":[7,1]}'::jsonb ELSE '{"push":"d"}'::jsonb END$$);
SELECT DISTINCT tags FROM outline;

-- A savepoint (here an exception block) that catches a failed statement over many rows drops
-- exactly its own rows; the statement before it in the same transaction is stored.
DO $$
BEGIN
    UPDATE outline SET title = 'kept ' || id;
    BEGIN
        UPDATE outline SET title = 'dropped', tags = CASE WHEN id = 'o250' THEN '{"delete":[9,1]}' ELSE tags END;
    EXCEPTION WHEN invalid_parameter_value THEN
        -- A warning, so that the output shows it: the job's error names row o250.
        RAISE WARNING 'caught: %', SQLERRM;
    END;
END
$$;
SELECT count(*) FILTER (WHERE title LIKE 'kept %') AS kept,
       count(*) FILTER (WHERE pylon_crdt_project('outline', id) ->> 'title' = title) AS docs_agree
  FROM outline;
BEGIN;
UPDATE outline SET title = 'in savepoint';
SAVEPOINT s;
UPDATE outline SET title = 'rolled back';
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT DISTINCT title, pylon_crdt_project('outline', id) ->> 'title' AS doc FROM outline;
SELECT count(*) AS problems FROM pylon_crdt_verify('outline');

DROP TABLE bulk, populated, seen, outline;
