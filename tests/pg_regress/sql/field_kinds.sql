-- Every field kind: its patch forms and its projection (DESIGN 3).
\set fields '{"title":"string","due":"datetime","owner":"id(User)","n":"int","x":"float","done":"bool","body":"richtext","notes":{"type":"richtext","crdt":"lww"},"votes":{"type":"int","crdt":"counter"},"tags":{"type":"string","crdt":"list"},"steps":{"type":"string","crdt":"movable-list"},"outline":{"type":"string","crdt":"tree"}}'

-- LWW string / number / bool: a value sets, null removes.
SELECT pylon_crdt_apply_patch('Kinds', 'k', :'fields',
  '{"title":"t","due":"2026-11-27T10:00:00Z","owner":"u1","n":3,"x":0.5,"done":true,"notes":"plain"}');

-- text: a new string is applied as a minimal diff.
SELECT pylon_crdt_apply_patch('Kinds', 'k', :'fields', '{"body":"Hello world"}') ->> 'body' AS body;
SELECT pylon_crdt_apply_patch('Kinds', 'k', :'fields', '{"body":"Hello, brave world"}') ->> 'body' AS body;

-- counter: a number sets the value (the doc records the delta); increment adds.
SELECT pylon_crdt_apply_patch('Kinds', 'k', :'fields', '{"votes":10}') -> 'votes' AS votes;
SELECT pylon_crdt_apply_patch('Kinds', 'k', :'fields', '{"votes":{"increment":5}}') -> 'votes' AS votes;
SELECT pylon_crdt_apply_patch('Kinds', 'k', :'fields', '{"votes":{"increment":-2}}') -> 'votes' AS votes;
SELECT expect_error($$SELECT pylon_crdt_apply_patch('Kinds', 'k', '{"votes":{"type":"int","crdt":"counter"}}', '{"votes":{"increment":0.5}}')$$);

-- list: an array is diffed element by element; ops act on the current content.
SELECT pylon_crdt_apply_patch('Kinds', 'k', :'fields', '{"tags":["a","b","c"]}') -> 'tags' AS tags;
SELECT pylon_crdt_apply_patch('Kinds', 'k', :'fields', '{"tags":{"push":"d"}}') -> 'tags' AS tags;
SELECT pylon_crdt_apply_patch('Kinds', 'k', :'fields', '{"tags":{"insert":[0,"z"]}}') -> 'tags' AS tags;
SELECT pylon_crdt_apply_patch('Kinds', 'k', :'fields', '{"tags":{"delete":[1,2]}}') -> 'tags' AS tags;
SELECT pylon_crdt_apply_patch('Kinds', 'k', :'fields', '{"tags":{"ops":[{"push":1},{"push":{"nested":true}}]}}') -> 'tags' AS tags;

-- movable-list: also move and set, which keep element identity across peers.
SELECT pylon_crdt_apply_patch('Kinds', 'k', :'fields', '{"steps":["mix","bake","eat"]}') -> 'steps' AS steps;
SELECT pylon_crdt_apply_patch('Kinds', 'k', :'fields', '{"steps":{"move":[2,0]}}') -> 'steps' AS steps;
SELECT pylon_crdt_apply_patch('Kinds', 'k', :'fields', '{"steps":{"set":[1,"stir"]}}') -> 'steps' AS steps;

-- tree: create / move / delete / set; projection nests children in sibling order.
-- Node ids are Loro TreeIDs ("counter@peer"); peer ids are random, so ids are masked here.
CREATE FUNCTION shape(tree jsonb) RETURNS jsonb LANGUAGE sql AS $$
  SELECT coalesce(jsonb_agg(jsonb_build_object('data', n -> 'data', 'children', shape(n -> 'children'))), '[]')
  FROM jsonb_array_elements(tree) AS n $$;
SELECT shape(pylon_crdt_apply_patch('Kinds', 'k', :'fields',
  '{"outline":[{"create":{"parent":null,"data":{"title":"Chapter 1"}}},{"create":{"parent":null,"data":{"title":"Chapter 2"}}}]}') -> 'outline');
SELECT pylon_crdt_project('Kinds', 'k', :'fields') #>> '{outline,0,id}' AS ch1 \gset
SELECT pylon_crdt_project('Kinds', 'k', :'fields') #>> '{outline,1,id}' AS ch2 \gset
SELECT shape(pylon_crdt_apply_patch('Kinds', 'k', :'fields', jsonb_build_object('outline', jsonb_build_array(
  jsonb_build_object('create', jsonb_build_object('parent', :'ch1', 'data', '{"title":"Section 1.2"}'::jsonb)),
  jsonb_build_object('create', jsonb_build_object('parent', :'ch1', 'index', 0, 'data', '{"title":"Section 1.1"}'::jsonb)),
  jsonb_build_object('set', jsonb_build_object('node', :'ch2', 'key', 'draft', 'value', true))))) -> 'outline');
SELECT shape(pylon_crdt_apply_patch('Kinds', 'k', :'fields', jsonb_build_object('outline', jsonb_build_array(
  jsonb_build_object('move', jsonb_build_object('node', :'ch2', 'parent', NULL, 'index', 0)),
  jsonb_build_object('delete', :'ch1')))) -> 'outline');

-- A tree deeper than 1000 levels is refused (54000) rather than risk the backend's stack, and
-- that write is not kept; 1000 levels are fine. 1001 nodes are made side by side, then moved
-- under one another.
\set deep '{"outline":{"type":"string","crdt":"tree"}}'
SELECT jsonb_array_length(pylon_crdt_apply_patch('Deep', 'd', :'deep', jsonb_build_object('outline',
         (SELECT jsonb_agg('{"create":{"parent":null,"data":{}}}'::jsonb) FROM generate_series(1, 1001)))) -> 'outline') AS roots;
CREATE TEMP TABLE deep_node AS
  SELECT i, node ->> 'id' AS id
    FROM jsonb_array_elements(pylon_crdt_project('Deep', 'd', :'deep') -> 'outline') WITH ORDINALITY AS n (node, i);
SELECT jsonb_array_length(pylon_crdt_apply_patch('Deep', 'd', :'deep', jsonb_build_object('outline',
         (SELECT jsonb_agg(jsonb_build_object('move', jsonb_build_object('node', c.id, 'parent', p.id)) ORDER BY c.i)
            FROM deep_node c JOIN deep_node p ON p.i = c.i - 1 WHERE c.i <= 1000))) -> 'outline') AS roots_with_1000_levels;
SELECT expect_error(format($$SELECT pylon_crdt_apply_patch('Deep', 'd', %L, %L)$$, :'deep',
         jsonb_build_object('outline', jsonb_build_object('move', jsonb_build_object(
           'node', (SELECT id FROM deep_node WHERE i = 1001), 'parent', (SELECT id FROM deep_node WHERE i = 1000))))));
SELECT jsonb_array_length(pylon_crdt_project('Deep', 'd', :'deep') -> 'outline') AS roots_still;
SELECT pylon_crdt_delete('Deep', 'd');

-- The whole projection, every kind at once.
SELECT jsonb_pretty(pylon_crdt_project('Kinds', 'k', :'fields') - 'outline');

-- An annotation that does not fit its type fails before anything is written.
SELECT expect_error($$SELECT pylon_crdt_apply_patch('Kinds', 'bad', '{"done":{"type":"bool","crdt":"counter"}}', '{"done":true}')$$);
SELECT expect_error($$SELECT pylon_crdt_apply_patch('Kinds', 'bad', '{"n":{"type":"int","crdt":"text"}}', '{}')$$);
SELECT count(*) FROM _pylon_crdt_snapshots WHERE entity = 'Kinds' AND row_id = 'bad';
