-- Storage shared with the pylon runtime (DESIGN 2). An existing table created earlier by the
-- runtime is adopted as it is; only its shape is checked.
DO $$
DECLARE
    missing text;
    blocking text;
BEGIN
    IF to_regclass('_pylon_crdt_snapshots') IS NULL THEN
        CREATE TABLE _pylon_crdt_snapshots (
            entity     text        NOT NULL,
            row_id     text        NOT NULL,
            snapshot   bytea       NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (entity, row_id)
        );
        -- Docs are user data: pg_dump keeps them although the table belongs to the extension.
        PERFORM pg_catalog.pg_extension_config_dump('_pylon_crdt_snapshots', '');
    ELSE
        SELECT string_agg(c, ', ') INTO missing
        FROM unnest(ARRAY['entity', 'row_id', 'snapshot', 'updated_at']) AS c
        WHERE NOT EXISTS (SELECT 1 FROM pg_attribute a
                          WHERE a.attrelid = '_pylon_crdt_snapshots'::regclass
                            AND a.attname = c AND NOT a.attisdropped);
        IF missing IS NOT NULL THEN
            RAISE EXCEPTION 'existing _pylon_crdt_snapshots lacks column(s) %', missing
                USING ERRCODE = 'invalid_table_definition';
        END IF;
        -- The runtime inserts only the known columns, so extra ones need defaults.
        SELECT string_agg(a.attname, ', ') INTO blocking
        FROM pg_attribute a
        WHERE a.attrelid = '_pylon_crdt_snapshots'::regclass AND a.attnum > 0
          AND NOT a.attisdropped AND a.attnotnull AND NOT a.atthasdef
          AND a.attname NOT IN ('entity', 'row_id', 'snapshot');
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
ALTER TABLE _pylon_crdt_snapshots ALTER COLUMN snapshot SET STORAGE EXTERNAL;
ALTER TABLE _pylon_crdt_snapshots SET (toast_tuple_target = 8160);

-- Tables whose rows are CRDT docs (DESIGN 4).
CREATE TABLE _pylon_crdt_registry (
    entity    text     PRIMARY KEY,
    relation  regclass NOT NULL UNIQUE,
    id_column name     NOT NULL DEFAULT 'id',
    fields    jsonb    NOT NULL
);
SELECT pg_catalog.pg_extension_config_dump('_pylon_crdt_registry', '');

-- Only the extension's functions (running as the table owner) write these; they check the
-- caller's rights on the entity's own table first (DESIGN 8).
REVOKE ALL ON _pylon_crdt_snapshots FROM PUBLIC;
REVOKE ALL ON _pylon_crdt_registry FROM PUBLIC;
GRANT SELECT ON _pylon_crdt_registry TO PUBLIC;

-- Update-log storage (see the README, "Storage modes"): a write appends its delta here; the
-- snapshot is rewritten only past pylon_crdt.log_compact_threshold or on pylon_crdt_compact.
CREATE SEQUENCE _pylon_crdt_updates_seq;
CREATE TABLE _pylon_crdt_updates (
    entity text   NOT NULL,
    row_id text   NOT NULL,
    seq    bigint NOT NULL DEFAULT nextval('_pylon_crdt_updates_seq'),
    update bytea  NOT NULL,
    PRIMARY KEY (entity, row_id, seq)
);
ALTER SEQUENCE _pylon_crdt_updates_seq OWNED BY _pylon_crdt_updates.seq;
ALTER TABLE _pylon_crdt_updates ALTER COLUMN update SET STORAGE EXTERNAL;
SELECT pg_catalog.pg_extension_config_dump('_pylon_crdt_updates', '');
SELECT pg_catalog.pg_extension_config_dump('_pylon_crdt_updates_seq', '');

-- Per-entity storage mode; entities not listed use 'snapshot', the runtime-compatible mode.
CREATE TABLE _pylon_crdt_storage (
    entity text PRIMARY KEY,
    mode   text NOT NULL CHECK (mode IN ('snapshot', 'log'))
);
SELECT pg_catalog.pg_extension_config_dump('_pylon_crdt_storage', '');

REVOKE ALL ON _pylon_crdt_updates, _pylon_crdt_updates_seq, _pylon_crdt_storage FROM PUBLIC;
GRANT SELECT ON _pylon_crdt_storage TO PUBLIC;
