-- pylon_crdt 0.2.0 -> 0.3.0
--
-- Issue 16: the row triggers of an enabled table queue the docs a statement writes, and a
-- statement-level trigger, pylon_crdt_flush, stores them at the end of the statement. Tables
-- enabled under 0.2.0 get that trigger here; until they have it, their row triggers store
-- each doc at once, as before.
DO $$
DECLARE
    registered pg_catalog.regclass;
BEGIN
    FOR registered IN
        SELECT r.relation FROM @extschema@._pylon_crdt_registry r
         WHERE EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) r.relation::pg_catalog.oid)
           AND NOT EXISTS (SELECT FROM pg_catalog.pg_trigger t
                            WHERE t.tgrelid OPERATOR(pg_catalog.=) r.relation::pg_catalog.oid
                              AND t.tgname OPERATOR(pg_catalog.=) 'pylon_crdt_flush')
    LOOP
        EXECUTE pg_catalog.format(
            'CREATE TRIGGER pylon_crdt_flush AFTER INSERT OR UPDATE OR DELETE ON %s FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.pylon_crdt_trigger()',
            registered);
    END LOOP;
END
$$;
