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
