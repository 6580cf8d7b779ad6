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

CREATE FUNCTION "_pylon_crdt_check_ddl"(
	"event" TEXT /* & str */
) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_pylon_crdt_check_ddl_wrapper';
-- Schema changes that would break an enabled table's registration are refused before they
-- commit (issue 16; see src/ddl.rs): the columns of enabled tables are remembered when an
-- ALTER TABLE or DROP INDEX starts and checked when it ends. The checks only read catalogs
-- and the registry; they run as the extension's owner so that a role without rights on the
-- extension's schema can still alter its own tables.
CREATE FUNCTION @extschema@._pylon_crdt_check_ddl_event() RETURNS pg_catalog.event_trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._pylon_crdt_check_ddl(TG_EVENT);
END
$$;
CREATE EVENT TRIGGER _pylon_crdt_ddl_start ON ddl_command_start
    WHEN TAG IN ('ALTER TABLE', 'DROP INDEX')
    EXECUTE FUNCTION @extschema@._pylon_crdt_check_ddl_event();
CREATE EVENT TRIGGER _pylon_crdt_ddl_end ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE', 'DROP INDEX')
    EXECUTE FUNCTION @extschema@._pylon_crdt_check_ddl_event();
