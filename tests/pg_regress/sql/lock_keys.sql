-- Advisory-lock keys are the runtime's: low 32 bits of Rust's DefaultHasher (DESIGN 5).
-- Pinned here: if they ever change, the extension and the runtime stop serializing.
SELECT s, pylon_crdt_lock_key(s) FROM unnest(ARRAY['Note', 'n1', 'Todo', '']) AS s;

-- The lock is held until the caller's transaction ends.
BEGIN;
SELECT pylon_crdt_apply_patch('Note', 'lk', '{"title":"string"}', '{"title":"x"}') IS NOT NULL AS written;
SELECT count(*) AS held FROM pg_locks
 WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND objsubid = 2
   AND classid::int8 = (pylon_crdt_lock_key('Note')::int8 & 4294967295)
   AND objid::int8 = (pylon_crdt_lock_key('lk')::int8 & 4294967295);
COMMIT;
SELECT count(*) AS held_after_commit FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid();
