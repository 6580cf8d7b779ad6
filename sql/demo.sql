-- pylon_crdt demo: two writers edit one row concurrently and their edits merge.
\set ON_ERROR_STOP on
\pset footer off
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pylon_crdt CASCADE;
DROP TABLE IF EXISTS "Note";
CREATE EXTENSION pylon_crdt;

CREATE TABLE "Note" (id text PRIMARY KEY, title text, body text, done boolean, votes integer);
INSERT INTO "Note" (id) VALUES ('n1');
\set fields '{"title":"string","body":"richtext","done":"bool","votes":{"type":"int","crdt":"counter"}}'

\echo '== Writer A creates the note (one call: lock, merge, store, materialize):'
SELECT pylon_crdt_apply_patch('Note', 'n1', :'fields',
  '{"title":"Groceries","body":"milk and eggs","votes":1}') AS projection;
SELECT pylon_crdt_version('Note', 'n1') AS first_version \gset

\echo '== Writer B is a Loro peer that synced this version; here a second doc stands in for it:'
SELECT pylon_crdt_apply_update('NotePeer', 'n1', :'fields', pylon_crdt_snapshot('Note', 'n1')) AS peer;

\echo '== Both edit concurrently: A changes the start of the text, B appends and renames:'
SELECT pylon_crdt_apply_patch('Note', 'n1', :'fields',
  '{"body":"oat milk and eggs","done":true,"votes":{"increment":1}}') AS writer_a;
SELECT pylon_crdt_apply_patch('NotePeer', 'n1', :'fields',
  '{"body":"milk and eggs and bread","title":"Shopping","votes":{"increment":5}}') AS writer_b;

\echo '== They exchange only the updates each lacks, and converge:'
SELECT pylon_crdt_apply_update('Note', 'n1', :'fields',
  pylon_crdt_update_since('NotePeer', 'n1', pylon_crdt_version('Note', 'n1'))) AS merged_projection;
SELECT pylon_crdt_apply_update('NotePeer', 'n1', :'fields',
  pylon_crdt_update_since('Note', 'n1', pylon_crdt_version('NotePeer', 'n1'))) AS peer_after_sync;

\echo '== The materialized row (text edits from both writers, LWW fields, counter 1+1+5):'
SELECT * FROM "Note";
SELECT entity, row_id, length(snapshot) AS snapshot_bytes, updated_at IS NOT NULL AS stamped
  FROM _pylon_crdt_snapshots ORDER BY entity;

\echo '== Who changed the note, and when (each change carries its role and transaction):'
SELECT role, made_at IS NOT NULL AS timed, fields FROM pylon_crdt_history('Note', 'n1');
\echo '== What changed since writer A created it, per field (text spans, counter difference, values):'
SELECT pylon_crdt_diff('Note', 'n1', :'first_version', pylon_crdt_version('Note', 'n1')) AS since_created;
