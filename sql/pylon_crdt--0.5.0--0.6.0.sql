-- pylon_crdt 0.5.0 -> 0.6.0
--
-- Issue 13: a cached doc catches up across a fold of its row's log by importing the entries
-- the fold took in (kept here) instead of decoding the new snapshot.
-- The last fold of each row's log (see the README, "Storage modes"): the snapshot tuple it
-- wrote (xmin:ctid), that snapshot's version, and the newest log entries it folded in. A
-- backend whose cached doc predates the fold imports those entries instead of decoding the
-- new snapshot, and keeps the result only if it reaches exactly that version. Not dumped: a
-- shortcut for caches, not data.
CREATE TABLE @extschema@._pylon_crdt_folds (
    entity   pg_catalog.text    NOT NULL,
    row_id   pg_catalog.text    NOT NULL,
    snapshot pg_catalog.text    NOT NULL,
    version  pg_catalog.bytea   NOT NULL,
    seqs     pg_catalog.int8[]  NOT NULL,
    updates  pg_catalog.bytea[] NOT NULL,
    PRIMARY KEY (entity, row_id)
);
REVOKE ALL ON @extschema@._pylon_crdt_folds FROM PUBLIC;

-- Dropping an enabled table also drops its rows' folds. The function is dropped and created
-- again: the extension's scripts never replace an object in place, which an object a
-- squatter made first would satisfy (tests/tools/extension_script.sh).
DROP EVENT TRIGGER _pylon_crdt_forget_dropped_tables;
DROP FUNCTION @extschema@._pylon_crdt_forget_dropped_tables();
CREATE FUNCTION @extschema@._pylon_crdt_forget_dropped_tables() RETURNS pg_catalog.event_trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    gone pg_catalog.text[];
BEGIN
    WITH forgotten AS (
        DELETE FROM @extschema@._pylon_crdt_registry r
         WHERE r.relation::pg_catalog.oid OPERATOR(pg_catalog.=) ANY (
                   SELECT d.objid FROM pg_catalog.pg_event_trigger_dropped_objects() d
                    WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
                      AND d.objsubid OPERATOR(pg_catalog.=) 0)
            OR NOT EXISTS (SELECT FROM pg_catalog.pg_class c
                            WHERE c.oid OPERATOR(pg_catalog.=) r.relation::pg_catalog.oid)
        RETURNING r.entity)
    SELECT pg_catalog.array_agg(entity) INTO gone FROM forgotten;
    IF gone IS NOT NULL THEN
        DELETE FROM @extschema@._pylon_crdt_updates WHERE entity OPERATOR(pg_catalog.=) ANY (gone);
        DELETE FROM @extschema@._pylon_crdt_folds WHERE entity OPERATOR(pg_catalog.=) ANY (gone);
        DELETE FROM @extschema@._pylon_crdt_snapshots WHERE entity OPERATOR(pg_catalog.=) ANY (gone);
        DELETE FROM @extschema@._pylon_crdt_storage WHERE entity OPERATOR(pg_catalog.=) ANY (gone);
    END IF;
END
$$;
CREATE EVENT TRIGGER _pylon_crdt_forget_dropped_tables ON sql_drop
    EXECUTE FUNCTION @extschema@._pylon_crdt_forget_dropped_tables();
