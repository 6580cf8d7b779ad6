-- Tables that are CRDTs: pylon_crdt_enable installs triggers, and plain SQL goes through the doc.
CREATE TABLE "Task List" (id text PRIMARY KEY, title text, notes text, votes integer, done boolean, tags jsonb, due timestamptz);
INSERT INTO "Task List" (id, title, votes) VALUES ('existing', 'was here before', 2);
\set fields '{"title":"string","notes":"richtext","votes":{"type":"int","crdt":"counter"},"done":"bool","tags":{"type":"string","crdt":"list"},"due":"datetime"}'
SELECT pylon_crdt_enable('"Task List"', :'fields', entity => 'Task');
SELECT entity, relation, id_column FROM _pylon_crdt_registry;
SELECT tgname FROM pg_trigger WHERE tgrelid = '"Task List"'::regclass ORDER BY 1;
-- Rows that existed before got docs from their values.
SELECT pylon_crdt_project('Task', 'existing');

-- INSERT creates the doc; the row equals the projection.
INSERT INTO "Task List" (id, title, notes, votes, tags) VALUES ('t1', 'Write docs', 'Draft the README', 1, '["docs"]');
SELECT pylon_crdt_project('Task', 't1');

-- UPDATE of a counter column records the delta, a text column becomes a diff.
UPDATE "Task List" SET votes = votes + 1, notes = 'Draft the README and the FAQ' WHERE id = 't1';
UPDATE "Task List" SET votes = votes + 10 WHERE id = 't1';
SELECT id, title, notes, votes FROM "Task List" WHERE id = 't1';
SELECT pylon_crdt_project('Task', 't1') -> 'votes' AS doc_votes;

-- A remote peer's increment and a plain UPDATE add up.
SELECT pylon_crdt_apply_patch('Task', 't1', '{"votes":{"increment":100}}') -> 'votes' AS after_function;
UPDATE "Task List" SET votes = votes + 1 WHERE id = 't1';
SELECT votes FROM "Task List" WHERE id = 't1';

-- A list column takes an array (diffed) or list ops.
UPDATE "Task List" SET tags = '{"push":"urgent"}' WHERE id = 't1';
UPDATE "Task List" SET tags = '["docs","urgent","later"]' WHERE id = 't1';
SELECT tags FROM "Task List" WHERE id = 't1';

-- Bad values in plain SQL are refused like bad patches.
SELECT expect_error($$UPDATE "Task List" SET tags = '"not a list"' WHERE id = 't1'$$);
SELECT expect_error($$UPDATE "Task List" SET id = 'renamed' WHERE id = 't1'$$);

-- Multi-row UPDATE, INSERT ... ON CONFLICT, COPY.
INSERT INTO "Task List" (id, title, votes) VALUES ('t2', 'Second', 5), ('t3', 'Third', 7);
UPDATE "Task List" SET votes = votes * 2, done = true WHERE id IN ('t2', 't3');
INSERT INTO "Task List" (id, title, votes) VALUES ('t2', 'ignored', 1)
  ON CONFLICT (id) DO UPDATE SET votes = "Task List".votes + excluded.votes;
COPY "Task List" (id, title, votes, due) FROM STDIN;
c1	Copied one	3	2026-11-27 10:00:00+00
c2	Copied two	4	\N
\.
SELECT id, title, votes, done, due FROM "Task List" ORDER BY id;
SELECT id, pylon_crdt_project('Task', id) ->> 'votes' AS doc_votes, pylon_crdt_project('Task', id) ->> 'due' AS doc_due
  FROM "Task List" ORDER BY id;
-- A timestamptz column's value is kept in one canonical form, UTC, whatever the writing
-- session's TimeZone (here PST8PDT, pg_regress's): the same instant written from another zone
-- and from UTC is the same value, and the column holds that instant.
SET TimeZone = 'Asia/Kolkata';
UPDATE "Task List" SET due = '2026-12-02 10:00:00+00' WHERE id = 't2';
SET TimeZone = 'UTC';
UPDATE "Task List" SET due = '2026-12-02 10:00:00+00' WHERE id = 't3';
RESET TimeZone;
SELECT id, pylon_crdt_project('Task', id) ->> 'due' AS doc_due, due = '2026-12-02 10:00:00+00' AS column_holds_the_instant
  FROM "Task List" WHERE id IN ('t2', 't3') ORDER BY id;

-- The function path on a registered table: no trigger recursion (the counter moves once).
SELECT pylon_crdt_apply_patch('Task', 't3', '{"votes":{"increment":1},"title":"Third!"}');
SELECT title, votes FROM "Task List" WHERE id = 't3';
-- A patch for a missing row inserts it; constraint violations surface as usual.
SELECT pylon_crdt_apply_patch('Task', 'new', '{"title":"Made by a patch","votes":3}') ->> 'title' AS title;
SELECT id, title, votes FROM "Task List" WHERE id = 'new';
-- A peer update for a missing row is refused (P0002) and leaves no orphan snapshot.
SELECT expect_error($$SELECT pylon_crdt_apply_update('Task', 'ghost', pylon_crdt_snapshot('Task', 't1'))$$);
SELECT count(*) AS orphans FROM _pylon_crdt_snapshots WHERE entity = 'Task' AND row_id = 'ghost';
-- A peer's update for an existing row merges and materializes (a second doc plays the peer).
SELECT pylon_crdt_apply_update('TaskPeer', 'c2', :'fields', pylon_crdt_snapshot('Task', 'c2')) ->> 'title' AS peer_has;
SELECT pylon_crdt_version('TaskPeer', 'c2') AS peer_version \gset
SELECT pylon_crdt_apply_patch('TaskPeer', 'c2', :'fields', '{"title":"Renamed by a peer","votes":{"increment":1}}') ->> 'title';
UPDATE "Task List" SET votes = votes + 1 WHERE id = 'c2';
SELECT pylon_crdt_apply_update('Task', 'c2', pylon_crdt_update_since('TaskPeer', 'c2', :'peer_version'));
SELECT title, votes FROM "Task List" WHERE id = 'c2';

-- DELETE and TRUNCATE remove the docs.
DELETE FROM "Task List" WHERE id = 'c1';
SELECT count(*) FROM _pylon_crdt_snapshots WHERE entity = 'Task' AND row_id = 'c1';
SELECT count(*) > 0 AS has_docs FROM _pylon_crdt_snapshots WHERE entity = 'Task';
TRUNCATE "Task List";
SELECT count(*) AS docs_after_truncate FROM _pylon_crdt_snapshots WHERE entity = 'Task';

-- Column types that cannot hold a field's kind are refused.
CREATE TABLE wrong (id int PRIMARY KEY, votes text, tags text, flag integer);
SELECT expect_error($$SELECT pylon_crdt_enable('wrong', '{"votes":{"type":"int","crdt":"counter"}}')$$);
SELECT expect_error($$SELECT pylon_crdt_enable('wrong', '{"tags":{"type":"string","crdt":"list"}}')$$);
SELECT expect_error($$SELECT pylon_crdt_enable('wrong', '{"flag":"bool"}')$$);
SELECT expect_error($$SELECT pylon_crdt_enable('wrong', '{"x":"string"}', id_column => 'nope')$$);
SELECT expect_error($$SELECT pylon_crdt_enable('wrong', '{"x":"bogus"}')$$);

-- disable removes the triggers and the registration; docs stay unless asked.
INSERT INTO "Task List" (id, title) VALUES ('kept', 'kept doc');
SELECT pylon_crdt_disable('"Task List"');
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = '"Task List"'::regclass;
SELECT count(*) AS docs FROM _pylon_crdt_snapshots WHERE entity = 'Task';
SELECT expect_error($$SELECT pylon_crdt_project('Task', 'kept')$$);

-- Quotes in a table name are fine; entity names are global, so one registered for another
-- table is refused.
CREATE TABLE "we""ird Name" (id text PRIMARY KEY, title text);
SELECT pylon_crdt_enable('"we""ird Name"', '{"title":"string"}');
INSERT INTO "we""ird Name" VALUES ('q', 'quoted');
UPDATE "we""ird Name" SET title = 'quoted; DROP TABLE x' WHERE id = 'q';
SELECT pylon_crdt_project('we"ird Name', 'q');
CREATE TABLE other_table (id text PRIMARY KEY, title text);
SELECT expect_error($$SELECT pylon_crdt_enable('other_table', '{"title":"string"}', entity => 'we"ird Name')$$);
-- An UPDATE that changes no CRDT column leaves the doc alone.
ALTER TABLE "we""ird Name" ADD COLUMN plain int;
SELECT xmin AS v FROM _pylon_crdt_snapshots WHERE entity = 'we"ird Name' \gset
UPDATE "we""ird Name" SET plain = 1;
SELECT xmin = :'v' AS doc_untouched FROM _pylon_crdt_snapshots WHERE entity = 'we"ird Name';

-- Your own triggers on an entity table, fired by the extension's column write, see the
-- extension's pinned search_path (as under a function with SET search_path); fired by your own
-- statement, your own path.
CREATE TABLE paths_seen (n serial, path text);
CREATE FUNCTION record_path() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.paths_seen (path) VALUES (pg_catalog.current_setting('search_path'));
    RETURN NULL;
END $$;
CREATE TRIGGER record_path AFTER UPDATE ON "we""ird Name" FOR EACH ROW EXECUTE FUNCTION record_path();
SET search_path = public, pg_catalog;
SELECT pylon_crdt_apply_patch('we"ird Name', 'q', '{"title":"patched"}') ->> 'title' AS title;
UPDATE "we""ird Name" SET plain = 2;
RESET search_path;
SELECT n, path FROM paths_seen ORDER BY n;
DROP TRIGGER record_path ON "we""ird Name";

-- An entity name that names another role's table (whose docs it would be handed) cannot be
-- registered for one's own table (42501), nor one whose table-less docs this role could not
-- write; its own name can.
DROP ROLE IF EXISTS pylon_other_owner;
CREATE ROLE pylon_other_owner;
GRANT CREATE ON SCHEMA public TO pylon_other_owner;
CREATE TABLE su_notes (id text PRIMARY KEY, title text);
SELECT pylon_crdt_apply_patch('su_notes', 'n1', '{"title":"string"}', '{"title":"the superuser''s"}') IS NOT NULL AS written;
SELECT pylon_crdt_apply_patch('LooseDocs', 'l1', '{"title":"string"}', '{"title":"table-less"}') IS NOT NULL AS written;
SET ROLE pylon_other_owner;
CREATE TABLE mine (id text PRIMARY KEY, title text);
SELECT expect_error($$SELECT pylon_crdt_enable('mine', '{"title":"string"}', entity => 'su_notes')$$);
SELECT expect_error($$SELECT pylon_crdt_enable('mine', '{"title":"string"}', entity => 'LooseDocs')$$);
SELECT expect_error($$SELECT pylon_crdt_enable('mine', '{"title":"string"}', entity => 'Mine')$$) AS own_name;
SELECT pylon_crdt_disable('mine');
DROP TABLE mine;
RESET ROLE;
SELECT pylon_crdt_delete('su_notes', 'n1'), pylon_crdt_delete('LooseDocs', 'l1');
DROP TABLE su_notes;
REVOKE CREATE ON SCHEMA public FROM pylon_other_owner;
DROP ROLE pylon_other_owner;
