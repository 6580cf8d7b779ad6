-- Storage modes, compaction, history trimming, input bounds and verification.
\set fields '{"title":"string","body":"richtext","votes":{"type":"int","crdt":"counter"}}'

-- 'log' storage: a write appends only its delta; readers merge snapshot and log.
SET pylon_crdt.log_compact_ratio = 1000;  -- fold by entry count only, until tested below
SELECT pylon_crdt_set_storage('Logged', 'log');
SELECT pylon_crdt_apply_patch('Logged', 'r', :'fields', '{"title":"v1","body":"hello","votes":1}');
SELECT snapshot AS first_snapshot FROM _pylon_crdt_snapshots WHERE entity = 'Logged' AND row_id = 'r' \gset
SELECT pylon_crdt_apply_patch('Logged', 'r', :'fields', '{"title":"v2","votes":{"increment":1}}');
SELECT pylon_crdt_apply_patch('Logged', 'r', :'fields', '{"body":"hello world"}');
SELECT count(*) AS log_entries, max(length(update)) < 200 AS deltas_are_small
  FROM _pylon_crdt_updates WHERE entity = 'Logged' AND row_id = 'r';
SELECT snapshot = :'first_snapshot' AS snapshot_not_rewritten FROM _pylon_crdt_snapshots WHERE entity = 'Logged';
SELECT pylon_crdt_project('Logged', 'r', :'fields');
-- Every reader sees snapshot + log: a fresh peer importing the exported snapshot agrees.
SELECT pylon_crdt_apply_update('LoggedCopy', 'r', :'fields', pylon_crdt_snapshot('Logged', 'r'));

-- Past pylon_crdt.log_compact_threshold a write folds the log into the snapshot.
SET pylon_crdt.log_compact_threshold = 3;
SELECT pylon_crdt_apply_patch('Logged', 'r', :'fields', '{"votes":{"increment":1}}') -> 'votes' AS votes;
SELECT pylon_crdt_apply_patch('Logged', 'r', :'fields', '{"votes":{"increment":1}}') -> 'votes' AS votes;
SELECT count(*) AS log_entries_after_fold FROM _pylon_crdt_updates WHERE entity = 'Logged';
SELECT snapshot <> :'first_snapshot' AS snapshot_rewritten FROM _pylon_crdt_snapshots WHERE entity = 'Logged';
-- The fold keeps what it took in (the log's entries, then the folding write's update) with
-- the new snapshot's version and tuple, for docs other backends cached before it.
SELECT cardinality(f.seqs) AS kept, cardinality(f.updates) AS kept_updates,
       f.version = pylon_crdt_version('Logged', 'r') AS at_the_snapshots_version,
       f.snapshot = s.xmin::text || ':' || s.ctid::text AS names_the_new_snapshot
  FROM _pylon_crdt_folds f JOIN _pylon_crdt_snapshots s USING (entity, row_id)
 WHERE entity = 'Logged' AND row_id = 'r';
RESET pylon_crdt.log_compact_threshold;
-- ... or once the log's bytes pass pylon_crdt.log_compact_ratio of the snapshot's size.
SELECT pylon_crdt_apply_patch('Logged', 'r', :'fields', '{"title":"by ratio 1"}') ->> 'title' AS title;
SELECT count(*) AS log_entries FROM _pylon_crdt_updates WHERE entity = 'Logged';
SET pylon_crdt.log_compact_ratio = 0.01;
SELECT pylon_crdt_apply_patch('Logged', 'r', :'fields', '{"title":"by ratio 2"}') ->> 'title' AS title;
SELECT count(*) AS log_entries FROM _pylon_crdt_updates WHERE entity = 'Logged';
SELECT compactions > 0 AS counted FROM pylon_crdt_stats();
SET pylon_crdt.log_compact_ratio = 1000;

-- pylon_crdt_compact folds on demand; trim_history drops history, keeping the projection.
SELECT pylon_crdt_apply_patch('Logged', 'r', :'fields', '{"title":"v3"}') ->> 'title' AS title;
SELECT pylon_crdt_compact('Logged', 'r') > 0 AS compacted;
SELECT count(*) AS log_entries_after_compact FROM _pylon_crdt_updates WHERE entity = 'Logged';
SELECT pylon_crdt_version('Logged', 'r') AS version_before_trim,
       pylon_crdt_snapshot('Logged', 'r') AS snapshot_before_trim \gset
SELECT pylon_crdt_project('Logged', 'r', :'fields') AS before_trim \gset
SELECT pylon_crdt_compact('Logged', 'r', trim_history => true) > 0 AS trimmed;
SELECT pylon_crdt_project('Logged', 'r', :'fields') = :'before_trim'::jsonb AS projection_unchanged;
SELECT count(*) AS folds_kept_after_trim FROM _pylon_crdt_folds WHERE entity = 'Logged';
-- One from before the trim is told to reload.
SELECT expect_error($$SELECT pylon_crdt_update_since('Logged', 'r', '\x00')$$);
-- Writes after the trim still merge, and a peer that was at the trim's version syncs: what it
-- is sent brings its copy to the doc as stored.
SELECT pylon_crdt_apply_patch('Logged', 'r', :'fields', '{"votes":{"increment":10}}') -> 'votes' AS votes;
SELECT loro_project(loro_merge(:'snapshot_before_trim'::bytea,
                               pylon_crdt_update_since('Logged', 'r', :'version_before_trim')), :'fields')
       = pylon_crdt_project('Logged', 'r', :'fields') AS peer_at_the_trim_syncs,
       loro_project(:'snapshot_before_trim'::bytea, :'fields')
       <> pylon_crdt_project('Logged', 'r', :'fields') AS it_was_behind;

-- Back to 'snapshot' storage folds every log.
SELECT pylon_crdt_apply_patch('Logged', 'r', :'fields', '{"title":"v4"}') ->> 'title' AS title;
SELECT pylon_crdt_set_storage('Logged', 'snapshot');
SELECT count(*) AS log_entries FROM _pylon_crdt_updates;
SELECT expect_error($$SELECT pylon_crdt_set_storage('Logged', 'bogus')$$);

-- Oversized inputs are refused before any work, with a configurable bound.
SET pylon_crdt.max_input_bytes = 1024;
SELECT expect_error(format($$SELECT pylon_crdt_apply_update('Big', 'b', '{}', %L::bytea)$$, '\x' || repeat('00', 2000)));
SELECT expect_error(format($$SELECT pylon_crdt_apply_patch('Big', 'b', '{"t":"string"}', %L)$$, jsonb_build_object('t', repeat('x', 2000))));
RESET pylon_crdt.max_input_bytes;
SELECT pylon_crdt_apply_patch('Big', 'b', '{"t":"string"}', jsonb_build_object('t', repeat('x', 2000))) ->> 't' = repeat('x', 2000) AS fits_by_default;

-- pylon_crdt_verify: rows whose columns disagree with their doc, or whose doc does not decode.
CREATE TABLE checked (id text PRIMARY KEY, title text, votes int);
SELECT pylon_crdt_enable('checked', '{"title":"string","votes":{"type":"int","crdt":"counter"}}');
INSERT INTO checked VALUES ('a', 'fine', 1), ('b', 'drifts', 2), ('c', 'corrupt', 3);
SELECT * FROM pylon_crdt_verify('checked');
ALTER TABLE checked DISABLE TRIGGER pylon_crdt_update;
UPDATE checked SET votes = 99 WHERE id = 'b';
ALTER TABLE checked ENABLE TRIGGER pylon_crdt_update;
UPDATE _pylon_crdt_snapshots SET snapshot = '\xdeadbeef' WHERE entity = 'checked' AND row_id = 'c';
SELECT * FROM pylon_crdt_verify('checked') ORDER BY row_id;
SELECT expect_error($$SELECT pylon_crdt_project('checked', 'c')$$);
