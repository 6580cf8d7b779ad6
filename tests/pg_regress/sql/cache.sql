-- The per-backend doc cache: reused when the stored row is unchanged, never stale.
\set fields '{"title":"string","votes":{"type":"int","crdt":"counter"}}'
CREATE EXTENSION IF NOT EXISTS dblink;
SELECT dblink_connect('other', format('host=127.0.0.1 port=%s dbname=%s user=%s',
       current_setting('port'), current_database(), current_user));
CREATE TEMP TABLE s0 AS SELECT * FROM pylon_crdt_stats();

-- Repeated writes by one backend decode the doc once.
SELECT pylon_crdt_apply_patch('Cached', 'r', :'fields', '{"title":"a","votes":1}') ->> 'title';
SELECT pylon_crdt_apply_patch('Cached', 'r', :'fields', '{"votes":{"increment":1}}') -> 'votes';
SELECT pylon_crdt_apply_patch('Cached', 'r', :'fields', '{"votes":{"increment":1}}') -> 'votes';
SELECT s.cache_hits - s0.cache_hits AS hits, s.decodes - s0.decodes AS decodes
  FROM pylon_crdt_stats() s, s0;

-- Two connections alternate writes to one row: each sees the other's, through its cache.
SELECT * FROM dblink('other', format($$SELECT pylon_crdt_apply_patch('Cached', 'r', %L, '{"votes":{"increment":10}}') -> 'votes'$$, :'fields')) AS t(votes jsonb);
SELECT pylon_crdt_apply_patch('Cached', 'r', :'fields', '{"votes":{"increment":1}}') -> 'votes';
SELECT * FROM dblink('other', format($$SELECT pylon_crdt_apply_patch('Cached', 'r', %L, '{"title":"from other"}') ->> 'title'$$, :'fields')) AS t(title text);
SELECT pylon_crdt_apply_patch('Cached', 'r', :'fields', '{"votes":{"increment":1}}');

-- A rolled-back write never shows through the cache, here or in the other backend.
BEGIN;
SELECT pylon_crdt_apply_patch('Cached', 'r', :'fields', '{"title":"rolled back","votes":{"increment":1000}}');
ROLLBACK;
SELECT pylon_crdt_project('Cached', 'r', :'fields');
SELECT pylon_crdt_apply_patch('Cached', 'r', :'fields', '{"votes":{"increment":1}}');
SELECT * FROM dblink('other', 'BEGIN') AS t(r text);
SELECT * FROM dblink('other', format($$SELECT pylon_crdt_apply_patch('Cached', 'r', %L, '{"title":"other rolled back"}') ->> 'title'$$, :'fields')) AS t(title text);
SELECT * FROM dblink('other', 'ROLLBACK') AS t(r text);
SELECT pylon_crdt_project('Cached', 'r', :'fields');
SELECT * FROM dblink('other', format($$SELECT pylon_crdt_project('Cached', 'r', %L)$$, :'fields')) AS t(projection jsonb);

-- A rolled-back savepoint too.
BEGIN;
SAVEPOINT s;
SELECT pylon_crdt_apply_patch('Cached', 'r', :'fields', '{"title":"savepoint"}') ->> 'title';
ROLLBACK TO SAVEPOINT s;
SELECT pylon_crdt_apply_patch('Cached', 'r', :'fields', '{"votes":{"increment":1}}');
COMMIT;

-- With the cache off, every call decodes.
SET pylon_crdt.cache_size = 0;
CREATE TEMP TABLE s1 AS SELECT * FROM pylon_crdt_stats();
SELECT pylon_crdt_apply_patch('Cached', 'r', :'fields', '{"votes":{"increment":1}}') -> 'votes';
SELECT pylon_crdt_apply_patch('Cached', 'r', :'fields', '{"votes":{"increment":1}}') -> 'votes';
SELECT s.cache_hits - s1.cache_hits AS hits, s.decodes - s1.decodes AS decodes FROM pylon_crdt_stats() s, s1;
RESET pylon_crdt.cache_size;
SELECT dblink_disconnect('other');

-- Peer ids: a backend goes on with its peer id for a row while its writes commit, so history
-- does not gain a peer per write; after a rollback the row gets a fresh one.
SELECT pylon_crdt_apply_patch('Peers', 'p', :'fields', '{"votes":1}') IS NOT NULL AS first;
SELECT length(pylon_crdt_version('Peers', 'p')) AS one_peer \gset
SELECT count(pylon_crdt_apply_patch('Peers', 'p', :'fields', '{"votes":{"increment":1}}')) FROM generate_series(1, 10);
SELECT length(pylon_crdt_version('Peers', 'p')) = :one_peer AS still_one_peer;
BEGIN;
SELECT pylon_crdt_apply_patch('Peers', 'p', :'fields', '{"title":"rolled back"}') IS NOT NULL AS written;
ROLLBACK;
SELECT pylon_crdt_apply_patch('Peers', 'p', :'fields', '{"votes":{"increment":1}}') -> 'votes' AS votes;
SELECT length(pylon_crdt_version('Peers', 'p')) > :one_peer AS new_peer_after_rollback;
-- A peer is not retired after some number of writes (each peer stays in the doc for good).
SELECT length(pylon_crdt_version('Peers', 'p')) AS two_peers \gset
SELECT count(pylon_crdt_apply_patch('Peers', 'p', :'fields', '{"votes":{"increment":1}}')) FROM generate_series(1, 40);
SELECT length(pylon_crdt_version('Peers', 'p')) = :two_peers AS forty_writes_one_peer;
SELECT pylon_crdt_apply_patch('Peers', 'p', :'fields', '{"votes":{"increment":1}}') -> 'votes' AS votes;
-- Two rows that share history never share a peer: a copy made and edited in one
-- transaction still merges back cleanly.
BEGIN;
SELECT pylon_crdt_apply_update('PeersCopy', 'p', :'fields', pylon_crdt_snapshot('Peers', 'p')) -> 'votes' AS copied;
SELECT pylon_crdt_version('Peers', 'p') AS base \gset
SELECT pylon_crdt_apply_patch('PeersCopy', 'p', :'fields', '{"title":"copy","votes":{"increment":100}}') ->> 'title';
SELECT pylon_crdt_apply_patch('Peers', 'p', :'fields', '{"votes":{"increment":1000}}') -> 'votes';
SELECT pylon_crdt_apply_update('Peers', 'p', :'fields', pylon_crdt_update_since('PeersCopy', 'p', :'base'));
COMMIT;
