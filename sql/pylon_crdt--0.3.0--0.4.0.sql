-- pylon_crdt 0.3.0 -> 0.4.0
--
-- Issue 16: pylon_crdt_alter changes an enabled table's fields (add, drop, rename, convert a
-- field's kind) in every doc.
CREATE FUNCTION "pylon_crdt_alter"(
	"relation" regclass, /* pgrx :: PgRelation */
	"fields" jsonb, /* JsonB */
	"renames" jsonb DEFAULT '{}' /* JsonB */
) RETURNS bigint /* i64 */
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'pylon_crdt_alter_wrapper';

-- Issue 11: the changes feed.
CREATE TABLE @extschema@._pylon_crdt_changes (
    entity  pg_catalog.text    NOT NULL,
    row_id  pg_catalog.text    NOT NULL,
    xid     pg_catalog.xid8    NOT NULL,
    deleted pg_catalog.bool    NOT NULL,
    PRIMARY KEY (entity, row_id)
);
CREATE INDEX _pylon_crdt_changes_by_xid ON @extschema@._pylon_crdt_changes (entity, xid);
REVOKE ALL ON @extschema@._pylon_crdt_changes FROM PUBLIC;

CREATE FUNCTION "pylon_crdt_changes"(
	"entity" TEXT, /* & str */
	"since" bigint DEFAULT 0, /* i64 */
	"limit" INT DEFAULT 1000 /* i32 */
) RETURNS TABLE (
	"row_id" TEXT,  /* String */
	"cursor" bigint,  /* i64 */
	"version" bytea,  /* :: std :: option :: Option < Vec < u8 > > */
	"deleted" bool  /* bool */
)
STRICT STABLE PARALLEL RESTRICTED
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'pylon_crdt_changes_wrapper';

CREATE FUNCTION "pylon_crdt_prune_changes"(
	"entity" TEXT, /* & str */
	"before" bigint /* i64 */
) RETURNS bigint /* i64 */
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'pylon_crdt_prune_changes_wrapper';
