-- Stateless Loro functions on any bytea (issue 12): for Loro blobs kept in a column of one's
-- own, outside the pylon sidecar. They touch no table, so they are immutable, strict and
-- parallel safe.

-- Two peers' copies of one doc, kept as bytea: blobs made here by the extension (any Loro
-- peer's snapshot or update works the same).
SELECT pylon_crdt_apply_patch('LoroDraft', 'd1', '{"title":"string","body":"richtext","votes":{"type":"int","crdt":"counter"}}',
                              '{"title":"first","body":"Hello","votes":1}') IS NOT NULL AS written;
CREATE TABLE drafts (id int PRIMARY KEY, doc bytea);
INSERT INTO drafts VALUES (1, pylon_crdt_snapshot('LoroDraft', 'd1'));
SELECT pylon_crdt_apply_patch('LoroDraft', 'd1', '{"title":"string","body":"richtext","votes":{"type":"int","crdt":"counter"}}',
                              '{"body":"Hello world","votes":{"increment":2}}') IS NOT NULL AS written;
INSERT INTO drafts VALUES (2, pylon_crdt_snapshot('LoroDraft', 'd1'));
-- A third copy: only the ops the first lacks (an update, not a snapshot).
INSERT INTO drafts VALUES (3, loro_update_since((SELECT doc FROM drafts WHERE id = 2),
                                                loro_version((SELECT doc FROM drafts WHERE id = 1))));

-- loro_value: the whole doc as JSON, each root container by name.
SELECT loro_value(doc) FROM drafts WHERE id = 1;

-- loro_project: the pylon projection (the `row` map) under a fields spec.
SELECT loro_project(doc, '{"title":"string","body":"richtext","votes":{"type":"int","crdt":"counter"}}')
  FROM drafts WHERE id = 2;

-- loro_merge(a, b): one snapshot holding both; an update merges onto the snapshot it extends.
SELECT loro_project(loro_merge(a.doc, c.doc), '{"body":"richtext","votes":{"type":"int","crdt":"counter"}}') AS merged
  FROM drafts a, drafts c WHERE a.id = 1 AND c.id = 3;
-- Merging is commutative and idempotent. The fork is another peer's copy: the first one's
-- history, then edits of its own made without the second's, so the two copies conflict (the
-- same text edited, the counter incremented on both sides) and the merge has both sides.
SELECT pylon_crdt_apply_update('LoroFork', 'd1', '{"title":"string","body":"richtext","votes":{"type":"int","crdt":"counter"}}',
                               (SELECT doc FROM drafts WHERE id = 1)) ->> 'body' AS forked_from;
SELECT pylon_crdt_apply_patch('LoroFork', 'd1', '{"title":"string","body":"richtext","votes":{"type":"int","crdt":"counter"}}',
                              '{"title":"forked","body":"Hello there","votes":{"increment":5}}') IS NOT NULL AS written;
WITH fork AS (SELECT pylon_crdt_snapshot('LoroFork', 'd1') AS doc)
SELECT loro_value(loro_merge(b.doc, f.doc)) = loro_value(loro_merge(f.doc, b.doc)) AS commutative,
       loro_value(loro_merge(b.doc, f.doc)) NOT IN (loro_value(b.doc), loro_value(f.doc)) AS has_both_sides,
       loro_project(loro_merge(b.doc, f.doc), '{"title":"string","votes":{"type":"int","crdt":"counter"}}') AS merged,
       loro_value(loro_merge(b.doc, b.doc)) = loro_value(b.doc) AS idempotent
  FROM drafts b, fork f WHERE b.id = 2;

-- loro_merge(blob) is also an aggregate over a column (NULLs skipped).
INSERT INTO drafts VALUES (4, NULL);
SELECT loro_project(loro_merge(doc ORDER BY id DESC), '{"body":"richtext","votes":{"type":"int","crdt":"counter"}}') AS merged_column
  FROM drafts;
SELECT loro_merge(doc) IS NULL AS no_rows_no_doc FROM drafts WHERE false;

-- loro_version: the encoded version vector (pylon_crdt_version's format);
-- loro_version_json reads one as {"peer id": ops of that peer}.
SELECT loro_version((SELECT doc FROM drafts WHERE id = 2)) = pylon_crdt_version('LoroDraft', 'd1') AS same_as_stored;
SELECT jsonb_typeof(loro_version_json(loro_version(doc))) AS json_type,
       (SELECT count(*) FROM jsonb_each(loro_version_json(loro_version(doc)))) AS peers
  FROM drafts WHERE id = 2;
SELECT loro_version_json(loro_version(loro_merge(doc, doc))) = loro_version_json(loro_version(doc)) AS same
  FROM drafts WHERE id = 1;

-- loro_version_includes(version, other): whether a peer at `version` has everything `other` has.
SELECT loro_version_includes(loro_version(b.doc), loro_version(a.doc)) AS newer_has_older,
       loro_version_includes(loro_version(a.doc), loro_version(b.doc)) AS older_has_newer
  FROM drafts a, drafts b WHERE a.id = 1 AND b.id = 2;

-- loro_update_since: what a peer at a version lacks; applied, it catches the peer up.
SELECT loro_value(loro_merge(a.doc, loro_update_since(b.doc, loro_version(a.doc)))) = loro_value(b.doc) AS caught_up
  FROM drafts a, drafts b WHERE a.id = 1 AND b.id = 2;

-- Bad input: malformed bytes 22P03, an update without the history it needs 55000, a bad
-- fields spec 22023, oversized input 54000 (pylon_crdt.max_input_bytes), NULL gives NULL.
SELECT expect_error($$SELECT loro_value('\x0102'::bytea)$$);
SELECT expect_error($$SELECT loro_merge('\x0102'::bytea, '\x'::bytea)$$);
SELECT regexp_replace(expect_error($$SELECT loro_value(doc) FROM drafts WHERE id = 3$$),
                      'peer \d+ ops \d+\.\.\d+', 'peer <id> ops <range>') AS needs_history;
SELECT expect_error($$SELECT loro_version_json('\xffff'::bytea)$$);
SELECT expect_error($$SELECT loro_project(doc, '{"title":"nonsense-kind"}') FROM drafts WHERE id = 1$$);
SET pylon_crdt.max_input_bytes = '1kB';
SELECT expect_error($$SELECT loro_value(decode(repeat('00', 2000), 'hex'))$$);
SELECT expect_error($$SELECT loro_merge(doc, decode(repeat('00', 2000), 'hex')) FROM drafts WHERE id = 1$$);
RESET pylon_crdt.max_input_bytes;
SELECT loro_value(NULL) IS NULL AS strict;
-- They are immutable and parallel safe (usable in indexes and parallel plans).
SELECT proname, provolatile, proparallel FROM pg_proc
 WHERE proname LIKE 'loro\_%' AND prokind = 'f' ORDER BY proname;

DROP TABLE drafts;
SELECT pylon_crdt_delete('LoroDraft', 'd1');
