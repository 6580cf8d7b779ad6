-- The changes feed (issue 11): pylon_crdt_changes(entity, since, limit) lists the rows whose
-- doc changed after a cursor, oldest change first, one row per doc and transaction, with the
-- doc's version now and whether the change deleted it. Cursors are transaction ids, and a
-- pull never passes a transaction that is still open (see the README, "Changes feed").
-- What records changes is pylon_crdt.publish: off (the default, as a recorded change costs a
-- write), registered (entities with a registered table) or everything. A superuser sets it for a
-- database or the server (ALTER DATABASE ... SET); here, for the session.
SET pylon_crdt.publish = registered;
CREATE TABLE feed (id text PRIMARY KEY, title text, votes int);
SELECT pylon_crdt_enable('feed', '{"title":"string","votes":{"type":"int","crdt":"counter"}}');

-- Every write path records the change: INSERT, UPDATE and DELETE through the trigger, the
-- function, a peer update. Writes to one row in one transaction are one change.
INSERT INTO feed VALUES ('a', 'first', 1), ('b', 'second', 2);
BEGIN;
UPDATE feed SET votes = votes + 1 WHERE id = 'a';
SELECT pylon_crdt_apply_patch('feed', 'a', '{"title":"first, edited"}') ->> 'title' AS title;
COMMIT;
SELECT pylon_crdt_apply_update('feed', 'b', pylon_crdt_snapshot('feed', 'a')) IS NOT NULL AS peer_update;
INSERT INTO feed VALUES ('c', 'third', 3);
DELETE FROM feed WHERE id = 'c';

-- From the start: one row per doc, at its latest change; the deleted one as a tombstone.
SELECT row_id, deleted, version = pylon_crdt_version('feed', row_id) AS current_version,
       cursor > 0 AS has_cursor
  FROM pylon_crdt_changes('feed') ORDER BY cursor, row_id;
-- Changes come in cursor order, and a cursor picks up after itself.
SELECT count(*) AS after_the_last
  FROM pylon_crdt_changes('feed', (SELECT max(cursor) FROM pylon_crdt_changes('feed')));
SELECT max(cursor) AS cursor FROM pylon_crdt_changes('feed') \gset
UPDATE feed SET title = 'second, edited' WHERE id = 'b';
SELECT row_id, deleted FROM pylon_crdt_changes('feed', :cursor);

-- A statement over many rows records them all; pages end on whole transactions.
INSERT INTO feed SELECT 'bulk' || i, 'row ' || i, i FROM generate_series(1, 500) AS i;
SELECT count(*) AS changed, count(DISTINCT cursor) AS transactions
  FROM pylon_crdt_changes('feed', :cursor, 10);
UPDATE feed SET votes = votes + 1 WHERE id LIKE 'bulk%';
SELECT count(*) AS changed FROM pylon_crdt_changes('feed', :cursor);

-- A rolled-back write and a rolled-back savepoint record nothing.
SELECT max(cursor) AS cursor FROM pylon_crdt_changes('feed') \gset
BEGIN;
UPDATE feed SET votes = 100 WHERE id = 'a';
ROLLBACK;
BEGIN;
SAVEPOINT s;
SELECT pylon_crdt_apply_patch('feed', 'b', '{"votes":{"increment":1}}') IS NOT NULL AS written;
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT count(*) AS after_rollbacks FROM pylon_crdt_changes('feed', :cursor);

-- TRUNCATE and pylon_crdt_delete leave tombstones; pylon_crdt_prune_changes removes those
-- at or before a cursor every reader has passed.
SELECT pylon_crdt_delete('feed', 'a');
TRUNCATE feed;
SELECT count(*) FILTER (WHERE deleted) AS tombstones, count(*) FILTER (WHERE NOT deleted) AS live
  FROM pylon_crdt_changes('feed', :cursor, 100000);
SELECT pylon_crdt_prune_changes('feed', (SELECT max(cursor) FROM pylon_crdt_changes('feed', 0, 100000))) AS pruned;
SELECT count(*) AS left_after_pruning FROM pylon_crdt_changes('feed', 0, 100000);

-- Table-less entities publish with pylon_crdt.publish = everything, not with registered; with
-- off, nothing is recorded, a registered table's writes neither.
SELECT pylon_crdt_apply_patch('Loose', 'x', '{"n":"int"}', '{"n":1}') IS NOT NULL AS written;
SELECT count(*) AS unpublished_while_registered FROM pylon_crdt_changes('Loose');
SET pylon_crdt.publish = off;
SELECT pylon_crdt_apply_patch('Loose', 'x', '{"n":"int"}', '{"n":3}') IS NOT NULL AS written;
INSERT INTO feed VALUES ('off', 'written while off', 1);
SELECT pylon_crdt_apply_patch('feed', 'off', '{"votes":{"increment":1}}') ->> 'votes' AS votes;
SET pylon_crdt.publish = everything;
SELECT count(*) AS unpublished_while_off FROM pylon_crdt_changes('Loose');
SELECT count(*) AS feed_unpublished_while_off FROM pylon_crdt_changes('feed', 0, 100000);
DELETE FROM feed WHERE id = 'off';
SELECT row_id, deleted FROM pylon_crdt_changes('feed', 0, 100000);
SELECT pylon_crdt_prune_changes('feed', (SELECT max(cursor) FROM pylon_crdt_changes('feed', 0, 100000))) AS pruned;
SELECT pylon_crdt_apply_patch('Loose', 'x', '{"n":"int"}', '{"n":2}') IS NOT NULL AS written;
SELECT row_id, deleted FROM pylon_crdt_changes('Loose');
SELECT pylon_crdt_delete('Loose', 'x');
SELECT pylon_crdt_prune_changes('Loose', (SELECT max(cursor) FROM pylon_crdt_changes('Loose')));
SET pylon_crdt.publish = registered;

-- Reading the feed needs the right to read the entity: row-level security hides rows.
CREATE TABLE secret (id text PRIMARY KEY, title text, owner text);
SELECT pylon_crdt_enable('secret', '{"title":"string"}');
INSERT INTO secret VALUES ('mine', 'x', 'pylon_feed_reader'), ('theirs', 'y', 'someone');
CREATE ROLE pylon_feed_reader;
GRANT SELECT ON secret TO pylon_feed_reader;
ALTER TABLE secret ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON secret FOR SELECT USING (owner = current_user);
SET ROLE pylon_feed_reader;
SELECT row_id FROM pylon_crdt_changes('secret');
SELECT expect_error($$SELECT * FROM pylon_crdt_changes('feed')$$);
RESET ROLE;
DROP TABLE feed, secret;
DROP ROLE pylon_feed_reader;
RESET pylon_crdt.publish;
