-- pylon_crdt_apply_patch: one call locks, merges, stores the snapshot and writes the row.
CREATE TABLE "Note" (id text PRIMARY KEY, title text, body text, done boolean, rank float8);
INSERT INTO "Note" (id) VALUES ('n1');
\set fields '{"title":"string","body":"richtext","done":"bool","rank":"float"}'

SELECT pylon_crdt_apply_patch('Note', 'n1', :'fields', '{"title":"Hi","body":"Hello","done":false}');
SELECT * FROM "Note";

-- Absent fields stay; null removes; text changes as a diff.
SELECT pylon_crdt_apply_patch('Note', 'n1', :'fields', '{"body":"Hello, world","done":null,"rank":2.5}');
SELECT * FROM "Note";
SELECT pylon_crdt_project('Note', 'n1', :'fields');

-- The runtime's manifest form of fields works the same.
SELECT pylon_crdt_apply_patch('Note', 'n1',
    '[{"name":"id","type":"string","crdt":null},{"name":"title","type":"string","crdt":null}]',
    '{"title":"Manifest"}');

-- A doc without a table keeps only the sidecar row.
SELECT pylon_crdt_apply_patch('Draft', 'd1', '{"title":"string"}', '{"title":"no table"}');
SELECT entity, row_id, length(snapshot) > 0 AS has_snapshot FROM _pylon_crdt_snapshots ORDER BY 1, 2;

-- A rolled-back transaction leaves neither the snapshot nor the column change.
BEGIN;
SELECT pylon_crdt_apply_patch('Note', 'n1', :'fields', '{"title":"rolled back"}');
ROLLBACK;
SELECT title FROM "Note" WHERE id = 'n1';
SELECT pylon_crdt_project('Note', 'n1', :'fields') ->> 'title' AS title;

-- Deleting the doc keeps the entity row.
SELECT pylon_crdt_delete('Draft', 'd1'), pylon_crdt_delete('Draft', 'd1');
SELECT pylon_crdt_project('Draft', 'd1', '{"title":"string"}');
