-- Schema changes of the fields (issue 16): pylon_crdt_alter(table, fields, renames) changes an
-- enabled table's fields and migrates every doc as a forward change, renaming the columns of
-- renamed fields and rewriting the columns whose projection changed.
CREATE TABLE note (id text PRIMARY KEY, title text, body text, votes int, tags jsonb,
                   outline jsonb, priority int);
SELECT pylon_crdt_enable('note', '{"title":"string","body":"string","votes":"int",
  "tags":{"type":"string","crdt":"list"},"outline":{"type":"string","crdt":"tree"},"draft":"string"}');
INSERT INTO note (id, title, body, votes, tags, priority)
VALUES ('n1', 'Hi', 'Hello', 3, '["a","b"]', 2), ('n2', 'Yo', NULL, 0, NULL, NULL);
UPDATE note SET outline = '{"create":{"data":{"title":"Part 1"}}}' WHERE id = 'n1';
SELECT pylon_crdt_apply_patch('note', 'n1', '{"draft":"doc-only"}') ->> 'draft' AS draft;

-- Two peers copy n1's doc before the change (table-less entities stand in for Loro clients).
\set old_fields '{"title":"string","votes":"int"}'
SELECT pylon_crdt_apply_update('note_peer', 'n1', :'old_fields', pylon_crdt_snapshot('note', 'n1')) AS peer_copy;
SELECT pylon_crdt_apply_update('note_stale', 'n1', :'old_fields', pylon_crdt_snapshot('note', 'n1')) IS NOT NULL AS stale_copy;
SELECT pylon_crdt_version('note', 'n1') AS before_alter \gset

-- One call: rename title to headline (its column too), body from string to text, votes from
-- LWW number to counter, tags from list to movable-list, outline renamed to plan (a tree
-- keeps its shape and data under new node ids), draft dropped, priority added (its column's
-- values seed the docs). It returns the number of rows migrated.
SELECT pylon_crdt_alter('note', '{"headline":"string","body":"richtext",
  "votes":{"type":"int","crdt":"counter"},"tags":{"type":"string","crdt":"movable-list"},
  "plan":{"type":"string","crdt":"tree"},"priority":"int"}', '{"title":"headline","outline":"plan"}');
SELECT id, headline, body, votes, tags, priority FROM note ORDER BY id;
SELECT id, plan #> '{0,data}' AS plan_root, pylon_crdt_project('note', id) - 'plan' AS doc
  FROM note ORDER BY id;
SELECT fields FROM _pylon_crdt_registry WHERE entity = 'note';
SELECT * FROM pylon_crdt_verify();

-- The new kinds work through plain SQL: concurrent-safe increments, text diffs, moves.
UPDATE note SET votes = votes + 1, body = 'Hello there', tags = '{"move":[0,1]}' WHERE id = 'n1';
SELECT headline, body, votes, tags FROM note WHERE id = 'n1';

-- The change is a forward change: history is kept, and a peer that copied the doc before
-- merges it and reads what the table shows.
\set new_fields '{"headline":"string","body":"richtext","votes":{"type":"int","crdt":"counter"},"tags":{"type":"string","crdt":"movable-list"},"plan":{"type":"string","crdt":"tree"},"priority":"int"}'
SELECT pylon_crdt_apply_update('note_peer', 'n1', :'new_fields',
         pylon_crdt_update_since('note', 'n1', :'before_alter'))
       = pylon_crdt_project('note', 'n1') AS peer_reads_the_table;

-- Peers still on the old schema (the rule the README documents). Whichever write to a key
-- has the later Lamport timestamp wins it, as in any Loro map:
-- a write made concurrently with the change, before syncing it, loses to the change here;
-- its write to title, a name no field has now, stays in the doc and is not shown.
SELECT pylon_crdt_apply_patch('note_stale', 'n1', :'old_fields', '{"title":"stale","votes":100}');
SELECT pylon_crdt_apply_update('note', 'n1', pylon_crdt_update_since('note_stale', 'n1', pylon_crdt_version('note', 'n1'))) - 'plan' AS merged;
-- a plain write made after syncing the change wins the key and is read as it stands; the
-- next write under the new schema turns it back into a counter, keeping its value.
SELECT pylon_crdt_apply_patch('note_peer', 'n1', :'old_fields', '{"votes":100}') ->> 'votes' AS peer_votes;
SELECT pylon_crdt_apply_update('note', 'n1', pylon_crdt_update_since('note_peer', 'n1', pylon_crdt_version('note', 'n1'))) ->> 'votes' AS merged_votes;
UPDATE note SET votes = votes + 1 WHERE id = 'n1';
SELECT votes FROM note WHERE id = 'n1';

-- Nothing to convert (an int field becoming float once its column can hold fractions, a
-- doc-only field added): the docs are read, not rewritten.
ALTER TABLE note ALTER COLUMN priority TYPE numeric;
SELECT pylon_crdt_snapshot('note', 'n1') AS snapshot_before \gset
SELECT pylon_crdt_alter('note', '{"headline":"string","body":"richtext",
  "votes":{"type":"int","crdt":"counter"},"tags":{"type":"string","crdt":"movable-list"},
  "plan":{"type":"string","crdt":"tree"},"priority":"float","color":"string"}');
SELECT pylon_crdt_snapshot('note', 'n1') = :'snapshot_before' AS doc_unchanged;
UPDATE note SET priority = 2.5 WHERE id = 'n1';
SELECT pylon_crdt_project('note', 'n1') -> 'priority' AS priority;

-- And back: text to string, counter to LWW number, movable-list to list.
SELECT pylon_crdt_alter('note', '{"headline":"string","body":"string","votes":"int",
  "tags":{"type":"string","crdt":"list"},"plan":{"type":"string","crdt":"tree"},"priority":"float"}');
SELECT headline, body, votes, tags FROM note WHERE id = 'n1';
SELECT * FROM pylon_crdt_verify();

-- Refused before any doc or column changes, with what to do instead:
-- a conversion that could lose or invent values (0A000),
SELECT expect_error($$SELECT pylon_crdt_alter('note', '{"headline":"string","body":{"type":"int","crdt":"counter"}}')$$);
SELECT expect_error($$SELECT pylon_crdt_alter('note', '{"headline":"string","priority":"int"}')$$);
-- a rename that does not name a current field and a new one, or clashes (22023, 42701),
SELECT expect_error($$SELECT pylon_crdt_alter('note', '{"headline":"string"}', '{"nope":"headline"}')$$);
SELECT expect_error($$SELECT pylon_crdt_alter('note', '{"title":"string"}', '{"headline":["title"]}')$$);
ALTER TABLE note ADD COLUMN title text;
SELECT expect_error($$SELECT pylon_crdt_alter('note', '{"title":"string"}', '{"headline":"title"}')$$);
ALTER TABLE note DROP COLUMN title;
-- a column that cannot hold the new kind (42804),
ALTER TABLE note ADD COLUMN due int;
SELECT expect_error($$SELECT pylon_crdt_alter('note', '{"headline":"string","due":"datetime"}')$$);
ALTER TABLE note DROP COLUMN due;
-- a table that is not enabled (55000), a caller that does not own it (42501).
CREATE TABLE plain (id text PRIMARY KEY);
SELECT expect_error($$SELECT pylon_crdt_alter('plain', '{}')$$);
CREATE ROLE pylon_alter_stranger;
GRANT ALL ON note TO pylon_alter_stranger;
SET ROLE pylon_alter_stranger;
SELECT expect_error($$SELECT pylon_crdt_alter('note', '{"headline":"string"}')$$);
RESET ROLE;
REVOKE ALL ON note FROM pylon_alter_stranger;
DROP ROLE pylon_alter_stranger;
SELECT fields FROM _pylon_crdt_registry WHERE entity = 'note';

-- Plain DDL on a field's column is still refused, and its hint names pylon_crdt_alter.
\set VERBOSITY default
ALTER TABLE note RENAME COLUMN headline TO title;
\set VERBOSITY terse

-- Rolled back, an alter leaves nothing: registration, column names and docs as before.
SELECT pylon_crdt_snapshot('note', 'n1') AS snapshot_before \gset
BEGIN;
SELECT pylon_crdt_alter('note', '{"title":"richtext","votes":{"type":"int","crdt":"counter"}}', '{"headline":"title"}');
SELECT title, votes FROM note WHERE id = 'n1';
ROLLBACK;
SELECT headline, votes FROM note WHERE id = 'n1';
SELECT pylon_crdt_snapshot('note', 'n1') = :'snapshot_before' AS doc_unchanged;

-- Many rows: the docs are migrated in bulk, with default settings.
INSERT INTO note (id, headline, body, votes)
SELECT 'bulk' || i, 'row ' || i, 'text ' || i, i FROM generate_series(1, 5000) AS i;
SELECT pylon_crdt_alter('note', '{"name":"richtext","body":"richtext","votes":{"type":"int","crdt":"counter"}}', '{"headline":"name"}');
SELECT count(*) AS rows, sum(votes) AS votes, count(*) FILTER (WHERE name LIKE 'row %') AS renamed
  FROM note WHERE id LIKE 'bulk%';
UPDATE note SET votes = votes + 1 WHERE id LIKE 'bulk%';
SELECT sum(votes) AS votes, sum((pylon_crdt_project('note', id) ->> 'votes')::int) AS doc_votes
  FROM note WHERE id LIKE 'bulk%';
SELECT * FROM pylon_crdt_verify();
SELECT pylon_crdt_delete('note_peer', 'n1') AND pylon_crdt_delete('note_stale', 'n1') AS peers_deleted;
DROP TABLE note, plain;
