-- pylon_crdt 0.1.0 -> 0.2.0
--
-- Issue 15: every statement the library runs is under a pinned search_path, and CREATE
-- EXTENSION refuses to adopt a _pylon_crdt_snapshots owned by a non-superuser, or granting
-- TRIGGER to one; an install that adopted such a table is refused here the same way, since
-- the extension writes every role's docs into that table as its owner.
-- Issue 16: an sql_drop event trigger drops the registration and docs of a dropped table.
-- Every name is schema-qualified, as in the install script.
DO $$
DECLARE
    sidecar   pg_catalog.oid;
    owner     pg_catalog.text;
    triggerer pg_catalog.text;
BEGIN
    SELECT c.oid INTO sidecar
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
     WHERE c.relname OPERATOR(pg_catalog.=) '_pylon_crdt_snapshots'
       AND n.nspname OPERATOR(pg_catalog.=) pg_catalog.current_schema();
    SELECT r.rolname INTO owner
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) c.relowner
     WHERE c.oid OPERATOR(pg_catalog.=) sidecar AND NOT r.rolsuper;
    IF owner IS NOT NULL THEN
        RAISE EXCEPTION 'table %._pylon_crdt_snapshots is owned by role %, which is not a superuser',
                pg_catalog.quote_ident(pg_catalog.current_schema()), pg_catalog.quote_ident(owner)
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'The extension writes every role''s docs into it as its owner. Check its triggers, rules, policies and defaults, then run ALTER TABLE ... OWNER TO a superuser and GRANT the runtime''s role SELECT, INSERT, UPDATE, DELETE on it.';
    END IF;
    SELECT pg_catalog.string_agg(pg_catalog.quote_ident(r.rolname), ', ') INTO triggerer
      FROM pg_catalog.pg_class c,
           LATERAL pg_catalog.aclexplode(c.relacl) AS a
           JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) a.grantee
     WHERE c.oid OPERATOR(pg_catalog.=) sidecar
       AND a.privilege_type OPERATOR(pg_catalog.=) 'TRIGGER' AND NOT r.rolsuper;
    IF triggerer IS NOT NULL THEN
        RAISE EXCEPTION 'table _pylon_crdt_snapshots grants TRIGGER to role(s) %, which are not superusers', triggerer
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'REVOKE TRIGGER ON _pylon_crdt_snapshots FROM those roles first.';
    END IF;
END
$$;

-- Dropping an enabled table drops its registration and its docs, as deleting its rows would
-- (issue 16): a later table of that name must not inherit another table's docs. Registrations
-- of tables already gone (dropped while event triggers were off) go at the same time. Runs as
-- the extension's owner, who alone may write these tables, with the search_path pinned.
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
        DELETE FROM @extschema@._pylon_crdt_snapshots WHERE entity OPERATOR(pg_catalog.=) ANY (gone);
        DELETE FROM @extschema@._pylon_crdt_storage WHERE entity OPERATOR(pg_catalog.=) ANY (gone);
    END IF;
END
$$;
CREATE EVENT TRIGGER _pylon_crdt_forget_dropped_tables ON sql_drop
    EXECUTE FUNCTION @extschema@._pylon_crdt_forget_dropped_tables();
