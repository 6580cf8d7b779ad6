-- Active-active (issue 17; README, "Active-active"). A node sends its doc changes through
-- _pylon_crdt_outbox when pylon_crdt.replicate is on; rows are deleted in the transaction
-- that inserts them, so the table stays empty (logical decoding reads the INSERTs from WAL).
CREATE TABLE rep_note (id text PRIMARY KEY, title text, body text, votes int);
SELECT pylon_crdt_enable('rep_note', '{"title":"string","body":"richtext","votes":{"type":"int","crdt":"counter"}}');
SET pylon_crdt.replicate = on;
SET pylon_crdt.publish = registered;
-- Each write inserts its outbox row and deletes it again: the transaction's own statistics
-- count both, and the table is left empty.
BEGIN;
INSERT INTO rep_note VALUES ('n1', 'here', 'local text', 1);
SELECT pylon_crdt_apply_patch('rep_note', 'n1', '{"votes":{"increment":1}}') ->> 'votes' AS votes;
SELECT n_tup_ins AS outbox_inserts, n_tup_del AS outbox_deletes
  FROM pg_stat_xact_user_tables WHERE relid = '_pylon_crdt_outbox'::regclass;
COMMIT;
SELECT count(*) AS outbox_rows FROM _pylon_crdt_outbox;

-- What an apply worker does with a change from another node: its session runs with
-- session_replication_role = replica, where the outbox's trigger merges the change into the
-- local doc (and its row) instead of storing it. Here, another node's doc of the same row,
-- created there on its own, and one of a row this node does not have yet.
SELECT pylon_crdt_apply_patch('Elsewhere', 'n1', '{"title":"string","body":"richtext","votes":{"type":"int","crdt":"counter"}}',
                              '{"body":"remote text","votes":{"increment":5}}') IS NOT NULL AS made;
SELECT pylon_crdt_apply_patch('Elsewhere', 'n2', '{"title":"string","body":"richtext","votes":{"type":"int","crdt":"counter"}}',
                              '{"title":"made there","votes":{"increment":2}}') IS NOT NULL AS made;
SET session_replication_role = replica;
INSERT INTO _pylon_crdt_outbox
SELECT 'rep_note', row_id, pylon_crdt_snapshot('Elsewhere', row_id) FROM (VALUES ('n1'), ('n2')) AS r (row_id);
RESET session_replication_role;
SELECT count(*) AS outbox_rows FROM _pylon_crdt_outbox;
-- The counters add up, both texts stay, the missing row was created, the columns follow.
SELECT id, title, votes, body LIKE '%local text%' AND body LIKE '%remote text%' AS both_texts
  FROM rep_note ORDER BY id;
SELECT count(*) AS problems FROM pylon_crdt_verify('rep_note');
-- The changes feed reports the remote change like a local one (notifications too: the merge
-- takes the same path as pylon_crdt_apply_update).
SELECT row_id, deleted FROM pylon_crdt_changes('rep_note') ORDER BY row_id;

-- A deletion from another node deletes the doc and its row.
SET session_replication_role = replica;
INSERT INTO _pylon_crdt_outbox VALUES ('rep_note', 'n2', NULL);
RESET session_replication_role;
SELECT id FROM rep_note ORDER BY id;
SELECT pylon_crdt_project('rep_note', 'n2') AS gone;
SELECT row_id, deleted FROM pylon_crdt_changes('rep_note') ORDER BY row_id;
RESET pylon_crdt.publish;

-- Comparing nodes: every doc's version, and the differences from another node's list.
SELECT row_id, jsonb_typeof(version) AS version FROM pylon_crdt_versions('rep_note');
SELECT count(*) AS against_itself
  FROM pylon_crdt_verify_versions((SELECT jsonb_agg(v) FROM pylon_crdt_versions() v));
SELECT entity, row_id, problem
  FROM pylon_crdt_verify_versions(
         (SELECT jsonb_agg(CASE WHEN v.entity = 'rep_note'
                                THEN jsonb_set(to_jsonb(v), '{version,1}', '7') ELSE to_jsonb(v) END)
            FROM pylon_crdt_versions() v)
         || '[{"entity":"rep_note","row_id":"n9","version":{}}]')
 ORDER BY row_id;

-- pylon_crdt_resend sends every stored doc once (for a node that subscribes after docs
-- were written); it needs pylon_crdt.replicate.
SELECT pylon_crdt_resend('rep_note') AS sent;
SET pylon_crdt.replicate = off;
SELECT pylon_crdt_resend();
RESET pylon_crdt.replicate;

-- Comparing and re-sending nodes' docs, and the settings that decide what is sent, recorded
-- and announced, are the superuser's: another role is refused each of them.
DROP ROLE IF EXISTS pylon_rep_user;
CREATE ROLE pylon_rep_user;
GRANT SELECT, INSERT, UPDATE, DELETE ON rep_note TO pylon_rep_user;
SET ROLE pylon_rep_user;
SELECT expect_error($$SELECT * FROM pylon_crdt_versions('rep_note')$$);
SELECT expect_error($$SELECT * FROM pylon_crdt_verify_versions('[]')$$);
SELECT expect_error($$SELECT pylon_crdt_resend('rep_note')$$);
SELECT expect_error($$SET pylon_crdt.replicate = on$$);
SELECT expect_error($$SET pylon_crdt.publish = everything$$);
SELECT expect_error($$SET pylon_crdt.notify_unregistered = on$$);
RESET ROLE;
REVOKE ALL ON rep_note FROM pylon_rep_user;
DROP ROLE pylon_rep_user;
SELECT pylon_crdt_disable('rep_note', drop_docs => true);
DROP TABLE rep_note;
SELECT pylon_crdt_delete('Elsewhere', r) FROM (VALUES ('n1'), ('n2')) AS t (r);
