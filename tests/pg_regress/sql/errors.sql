-- Bad input: a clear error with a fitting SQLSTATE, naming entity, row and field (DESIGN 7).
\set fields '{"title":"string","done":"bool","votes":{"type":"int","crdt":"counter"}}'
SELECT expect_error($$SELECT pylon_crdt_apply_patch('Note', 'e1', '{"title":"strin"}', '{}')$$);
SELECT expect_error($$SELECT pylon_crdt_apply_patch('Note', 'e1', '{"done":{"type":"bool","crdt":"counter"}}', '{}')$$);
SELECT expect_error($$SELECT pylon_crdt_apply_patch('Note', 'e1', '"title"', '{}')$$);
SELECT expect_error(format($$SELECT pylon_crdt_apply_patch('Note', 'e1', %L, '{"title": 5}')$$, :'fields'));
SELECT expect_error(format($$SELECT pylon_crdt_apply_patch('Note', 'e1', %L, '{"votes": "many"}')$$, :'fields'));
SELECT expect_error(format($$SELECT pylon_crdt_apply_patch('Note', 'e1', %L, '{"unknown": 1}')$$, :'fields'));
SELECT expect_error(format($$SELECT pylon_crdt_apply_patch('Note', 'e1', %L, '[]')$$, :'fields'));
SELECT expect_error(format($$SELECT pylon_crdt_apply_update('Note', 'e1', %L, '\xdeadbeef')$$, :'fields'));
SELECT expect_error($$SELECT pylon_crdt_update_since('Note', 'e1', '\x0102')$$);
SELECT expect_error($$SELECT pylon_crdt_apply_patch('Unregistered', 'e1', '{}')$$);
-- Nothing was written by any of them.
SELECT count(*) FROM _pylon_crdt_snapshots WHERE row_id = 'e1';
