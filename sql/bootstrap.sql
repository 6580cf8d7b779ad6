-- Every name below is schema-qualified (@extschema@ or pg_catalog): during CREATE EXTENSION
-- the search_path holds the extension's schema, and a role that can create objects there
-- must not be able to shadow a function or operator this script calls (README, Security).

-- Storage shared with the pylon runtime (DESIGN 2). An existing table created earlier by the
-- runtime is adopted as it is; its shape and its owner are checked.
DO $$
DECLARE
    existing  pg_catalog.oid;
    missing   pg_catalog.text;
    blocking  pg_catalog.text;
    owner     pg_catalog.text;
    triggerer pg_catalog.text;
BEGIN
    SELECT c.oid INTO existing
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
     WHERE c.relname OPERATOR(pg_catalog.=) '_pylon_crdt_snapshots'
       AND n.nspname OPERATOR(pg_catalog.=) pg_catalog.current_schema();
    IF existing IS NULL THEN
        CREATE TABLE @extschema@._pylon_crdt_snapshots (
            entity     pg_catalog.text        NOT NULL,
            row_id     pg_catalog.text        NOT NULL,
            snapshot   pg_catalog.bytea       NOT NULL,
            updated_at pg_catalog.timestamptz NOT NULL DEFAULT pg_catalog.now(),
            PRIMARY KEY (entity, row_id)
        );
        -- Docs are user data: pg_dump keeps them although the table belongs to the extension.
        PERFORM pg_catalog.pg_extension_config_dump('@extschema@._pylon_crdt_snapshots', '');
    ELSE
        -- The extension's functions write this table as its owner, for every role. Adopting a
        -- table a non-superuser owns would hand that role every doc (and its triggers would
        -- run whenever anyone writes), so it is refused, never silently taken over.
        SELECT r.rolname INTO owner
          FROM pg_catalog.pg_class c JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) c.relowner
         WHERE c.oid OPERATOR(pg_catalog.=) existing AND NOT r.rolsuper;
        IF owner IS NOT NULL THEN
            RAISE EXCEPTION 'existing table %._pylon_crdt_snapshots is owned by role %, which is not a superuser',
                    pg_catalog.quote_ident(pg_catalog.current_schema()), pg_catalog.quote_ident(owner)
                USING ERRCODE = 'insufficient_privilege',
                      HINT = 'The extension writes every role''s docs into it as its owner. Check its triggers, rules, policies and defaults, then run ALTER TABLE ... OWNER TO a superuser and GRANT the runtime''s role SELECT, INSERT, UPDATE, DELETE on it.';
        END IF;
        -- TRIGGER privilege lets a role attach a function that would run as the owner.
        SELECT pg_catalog.string_agg(pg_catalog.quote_ident(r.rolname), ', ') INTO triggerer
          FROM pg_catalog.pg_class c,
               LATERAL pg_catalog.aclexplode(c.relacl) AS a
               JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) a.grantee
         WHERE c.oid OPERATOR(pg_catalog.=) existing
           AND a.privilege_type OPERATOR(pg_catalog.=) 'TRIGGER' AND NOT r.rolsuper;
        IF triggerer IS NOT NULL THEN
            RAISE EXCEPTION 'existing table _pylon_crdt_snapshots grants TRIGGER to role(s) %, which are not superusers', triggerer
                USING ERRCODE = 'insufficient_privilege',
                      HINT = 'REVOKE TRIGGER ON _pylon_crdt_snapshots FROM those roles first.';
        END IF;
        SELECT pg_catalog.string_agg(c.name, ', ') INTO missing
          FROM pg_catalog.unnest(ARRAY['entity', 'row_id', 'snapshot', 'updated_at']::pg_catalog.name[]) AS c(name)
         WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_attribute a
                            WHERE a.attrelid OPERATOR(pg_catalog.=) existing
                              AND a.attname OPERATOR(pg_catalog.=) c.name AND NOT a.attisdropped);
        IF missing IS NOT NULL THEN
            RAISE EXCEPTION 'existing _pylon_crdt_snapshots lacks column(s) %', missing
                USING ERRCODE = 'invalid_table_definition';
        END IF;
        -- The runtime inserts only the known columns, so extra ones need defaults.
        SELECT pg_catalog.string_agg(a.attname, ', ') INTO blocking
          FROM pg_catalog.pg_attribute a
         WHERE a.attrelid OPERATOR(pg_catalog.=) existing AND a.attnum OPERATOR(pg_catalog.>) 0
           AND NOT a.attisdropped AND a.attnotnull AND NOT a.atthasdef
           AND a.attname OPERATOR(pg_catalog.<>) ALL (ARRAY['entity', 'row_id', 'snapshot']::pg_catalog.name[]);
        IF blocking IS NOT NULL THEN
            RAISE EXCEPTION 'existing _pylon_crdt_snapshots has NOT NULL column(s) without default: %', blocking
                USING ERRCODE = 'invalid_table_definition';
        END IF;
    END IF;
END
$$;

-- Loro snapshots and updates are compressed already (LZ4): let TOAST store them out of line
-- without trying pglz on every write, which costs CPU and gains nothing.
-- And keep snapshots of up to about 8 KB inline: a small doc's write then touches one heap
-- page, not the TOAST table and its index as well.
ALTER TABLE @extschema@._pylon_crdt_snapshots ALTER COLUMN snapshot SET STORAGE EXTERNAL;
ALTER TABLE @extschema@._pylon_crdt_snapshots SET (toast_tuple_target = 8160);

-- Tables whose rows are CRDT docs (DESIGN 4).
CREATE TABLE @extschema@._pylon_crdt_registry (
    entity    pg_catalog.text     PRIMARY KEY,
    relation  pg_catalog.regclass NOT NULL UNIQUE,
    id_column pg_catalog.name     NOT NULL DEFAULT 'id',
    fields    pg_catalog.jsonb    NOT NULL,
    -- Whether changes are notified to listeners (pylon_crdt_set_notify; issue 11).
    notify    pg_catalog.bool     NOT NULL DEFAULT true
);
SELECT pg_catalog.pg_extension_config_dump('@extschema@._pylon_crdt_registry', '');

-- Only the extension's functions (running as the table owner) write these; they check the
-- caller's rights on the entity's own table first (DESIGN 8).
REVOKE ALL ON @extschema@._pylon_crdt_snapshots FROM PUBLIC;
REVOKE ALL ON @extschema@._pylon_crdt_registry FROM PUBLIC;
GRANT SELECT ON @extschema@._pylon_crdt_registry TO PUBLIC;

-- Update-log storage (see the README, "Storage modes"): a write appends its delta here; the
-- snapshot is rewritten only past pylon_crdt.log_compact_threshold or on pylon_crdt_compact.
CREATE SEQUENCE @extschema@._pylon_crdt_updates_seq;
CREATE TABLE @extschema@._pylon_crdt_updates (
    entity pg_catalog.text   NOT NULL,
    row_id pg_catalog.text   NOT NULL,
    seq    pg_catalog.int8 NOT NULL DEFAULT pg_catalog.nextval('@extschema@._pylon_crdt_updates_seq'::pg_catalog.regclass),
    update pg_catalog.bytea  NOT NULL,
    PRIMARY KEY (entity, row_id, seq)
);
ALTER SEQUENCE @extschema@._pylon_crdt_updates_seq OWNED BY @extschema@._pylon_crdt_updates.seq;
ALTER TABLE @extschema@._pylon_crdt_updates ALTER COLUMN update SET STORAGE EXTERNAL;
SELECT pg_catalog.pg_extension_config_dump('@extschema@._pylon_crdt_updates', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@._pylon_crdt_updates_seq', '');

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

-- Per-entity storage mode; entities not listed use 'snapshot', the runtime-compatible mode.
CREATE TABLE @extschema@._pylon_crdt_storage (
    entity pg_catalog.text PRIMARY KEY,
    mode   pg_catalog.text NOT NULL CHECK (mode OPERATOR(pg_catalog.=) ANY (ARRAY['snapshot', 'log']::pg_catalog.text[]))
);
SELECT pg_catalog.pg_extension_config_dump('@extschema@._pylon_crdt_storage', '');

REVOKE ALL ON @extschema@._pylon_crdt_updates, @extschema@._pylon_crdt_updates_seq, @extschema@._pylon_crdt_storage FROM PUBLIC;
GRANT SELECT ON @extschema@._pylon_crdt_storage TO PUBLIC;

-- The changes feed (issue 11; see pylon_crdt_changes): per doc of a publishing entity, the
-- top-level id of the last transaction that changed it, and whether that deleted it. Not
-- dumped: transaction ids mean nothing in another cluster, so after a restore readers start
-- over from cursor 0.
CREATE TABLE @extschema@._pylon_crdt_changes (
    entity  pg_catalog.text    NOT NULL,
    row_id  pg_catalog.text    NOT NULL,
    xid     pg_catalog.xid8    NOT NULL,
    deleted pg_catalog.bool    NOT NULL,
    PRIMARY KEY (entity, row_id)
);
CREATE INDEX _pylon_crdt_changes_by_xid ON @extschema@._pylon_crdt_changes (entity, xid);
REVOKE ALL ON @extschema@._pylon_crdt_changes FROM PUBLIC;

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
        DELETE FROM @extschema@._pylon_crdt_folds WHERE entity OPERATOR(pg_catalog.=) ANY (gone);
        DELETE FROM @extschema@._pylon_crdt_snapshots WHERE entity OPERATOR(pg_catalog.=) ANY (gone);
        DELETE FROM @extschema@._pylon_crdt_storage WHERE entity OPERATOR(pg_catalog.=) ANY (gone);
    END IF;
END
$$;
CREATE EVENT TRIGGER _pylon_crdt_forget_dropped_tables ON sql_drop
    EXECUTE FUNCTION @extschema@._pylon_crdt_forget_dropped_tables();

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
