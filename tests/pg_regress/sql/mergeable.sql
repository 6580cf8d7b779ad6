-- Docs created apart merge (issue 17): the fields a write creates are Loro mergeable
-- children, whose container id comes from the root map, the field name and the kind. Two docs
-- made for one row without seeing each other (on two primaries, or by an offline client) hold
-- the same containers, so a merge keeps both sides.
\set fields '{"title":"string","body":"richtext","votes":{"type":"int","crdt":"counter"},"tags":{"type":"string","crdt":"list"}}'
SELECT pylon_crdt_apply_patch('SideA', 'r', :'fields',
  '{"title":"A","body":"hello from A","votes":{"increment":5},"tags":["a"]}') ->> 'votes' AS a_votes;
SELECT pylon_crdt_apply_patch('SideB', 'r', :'fields',
  '{"title":"B","body":"hello from B","votes":{"increment":3},"tags":["b"]}') ->> 'votes' AS b_votes;

-- B's doc as a peer update to A's: the counters add up, both texts and both tags stay, and
-- the LWW title is one of the two.
SELECT p ->> 'votes' AS votes,
       p ->> 'body' LIKE '%hello from A%' AND p ->> 'body' LIKE '%hello from B%' AS both_texts,
       p -> 'tags' @> '["a","b"]' AS both_tags,
       p ->> 'title' IN ('A', 'B') AS title_is_one
  FROM pylon_crdt_apply_update('SideA', 'r', :'fields', pylon_crdt_snapshot('SideB', 'r')) AS p;

-- The same holds for any two blobs, in either order.
SELECT loro_project(loro_merge(pylon_crdt_snapshot('SideB', 'r'), pylon_crdt_snapshot('SideA', 'r')), :'fields')
     = pylon_crdt_project('SideA', 'r', :'fields') AS same_either_way;

-- For peers on Loro before 1.17, which cannot read mergeable children, the setting makes new
-- fields regular children again; then docs made apart do not merge: one side's field wins.
SET pylon_crdt.mergeable_fields = off;
SELECT pylon_crdt_apply_patch('OldA', 'r', :'fields', '{"body":"hello from A","votes":{"increment":5}}') IS NOT NULL AS written;
SELECT pylon_crdt_apply_patch('OldB', 'r', :'fields', '{"body":"hello from B","votes":{"increment":3}}') IS NOT NULL AS written;
SELECT (p ->> 'votes')::int IN (3, 5) AS one_side_wins,
       p ->> 'body' IN ('hello from A', 'hello from B') AS one_text_wins
  FROM pylon_crdt_apply_update('OldA', 'r', :'fields', pylon_crdt_snapshot('OldB', 'r')) AS p;
RESET pylon_crdt.mergeable_fields;

-- A doc whose fields are regular children keeps them: writes edit them in place, so peers
-- that loaded the doc keep merging with it.
SELECT pylon_crdt_apply_patch('OldA', 'r', :'fields', '{"votes":{"increment":1}}') ->> 'votes' IN ('4', '6') AS edited_in_place;

-- A field set to null and written again starts over, though Loro keeps a mergeable child's
-- state while its key is cleared.
SELECT pylon_crdt_apply_patch('SideA', 'r', :'fields', '{"votes":null,"tags":null}') ->> 'votes' AS cleared;
SELECT p ->> 'votes' AS votes, p -> 'tags' AS tags
  FROM pylon_crdt_apply_patch('SideA', 'r', :'fields', '{"votes":{"increment":2},"tags":{"push":"c"}}') AS p;

SELECT pylon_crdt_delete(e, 'r') FROM unnest(ARRAY['SideA', 'SideB', 'OldA', 'OldB']) AS e;
