-- pylon_crdt 0.4.0 -> 0.5.0
--
-- Issue 11: notifications on commit. Registered entities notify by default; the registry
-- keeps the per-entity switch.
ALTER TABLE @extschema@._pylon_crdt_registry
    ADD COLUMN notify pg_catalog.bool NOT NULL DEFAULT true;

CREATE FUNCTION "pylon_crdt_channel"(
	"entity" TEXT /* &str */
) RETURNS TEXT /* alloc::string::String */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'pylon_crdt_channel_wrapper';

CREATE FUNCTION "pylon_crdt_set_notify"(
	"entity" TEXT, /* &str */
	"enabled" bool /* bool */
) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'pylon_crdt_set_notify_wrapper';
