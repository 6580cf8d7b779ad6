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

-- Issue 12: stateless Loro functions on any bytea.
CREATE FUNCTION "loro_merge"(
	"a" bytea, /* &[u8] */
	"b" bytea /* &[u8] */
) RETURNS bytea /* alloc::vec::Vec<u8> */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'loro_merge_wrapper';

CREATE FUNCTION "loro_value"(
	"blob" bytea /* &[u8] */
) RETURNS jsonb /* pgrx::datum::json::JsonB */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'loro_value_wrapper';

CREATE FUNCTION "loro_project"(
	"blob" bytea, /* &[u8] */
	"fields" jsonb /* pgrx::datum::json::JsonB */
) RETURNS jsonb /* pgrx::datum::json::JsonB */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'loro_project_wrapper';

CREATE FUNCTION "loro_version"(
	"blob" bytea /* &[u8] */
) RETURNS bytea /* alloc::vec::Vec<u8> */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'loro_version_wrapper';

CREATE FUNCTION "loro_version_json"(
	"version" bytea /* &[u8] */
) RETURNS jsonb /* pgrx::datum::json::JsonB */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'loro_version_json_wrapper';

CREATE FUNCTION "loro_update_since"(
	"blob" bytea, /* &[u8] */
	"since" bytea /* &[u8] */
) RETURNS bytea /* alloc::vec::Vec<u8> */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'loro_update_since_wrapper';

CREATE FUNCTION "loro_version_includes"(
	"version" bytea, /* &[u8] */
	"other" bytea /* &[u8] */
) RETURNS bool /* bool */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'loro_version_includes_wrapper';

CREATE AGGREGATE @extschema@.loro_merge(pg_catalog.bytea) (
    sfunc = @extschema@.loro_merge,
    stype = pg_catalog.bytea,
    combinefunc = @extschema@.loro_merge,
    parallel = safe
);

-- Issue 12: history and time travel.
CREATE FUNCTION "pylon_crdt_history"(
	"entity" TEXT, /* &str */
	"row_id" TEXT /* &str */
) RETURNS TABLE (
	"peer" TEXT,  /* alloc::string::String */
	"counter_start" INT,  /* i32 */
	"counter_end" INT,  /* i32 */
	"lamport" bigint,  /* i64 */
	"made_at" timestamp with time zone,  /* core::option::Option<pgrx::datum::time_stamp_with_timezone::TimestampWithTimeZone> */
	"role" TEXT,  /* core::option::Option<alloc::string::String> */
	"xid" bigint,  /* core::option::Option<i64> */
	"message" TEXT,  /* core::option::Option<alloc::string::String> */
	"fields" TEXT[]  /* alloc::vec::Vec<alloc::string::String> */
)
STRICT STABLE PARALLEL RESTRICTED
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'pylon_crdt_history_wrapper';

CREATE FUNCTION "pylon_crdt_project_at"(
	"entity" TEXT, /* &str */
	"row_id" TEXT, /* &str */
	"at" timestamp with time zone /* pgrx::datum::time_stamp_with_timezone::TimestampWithTimeZone */
) RETURNS jsonb /* pgrx::datum::json::JsonB */
STRICT STABLE PARALLEL RESTRICTED
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'pylon_crdt_project_at_time_wrapper';

CREATE FUNCTION "pylon_crdt_project_at"(
	"entity" TEXT, /* &str */
	"row_id" TEXT, /* &str */
	"version" bytea /* &[u8] */
) RETURNS jsonb /* pgrx::datum::json::JsonB */
STRICT STABLE PARALLEL RESTRICTED
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'pylon_crdt_project_at_version_wrapper';

CREATE FUNCTION "pylon_crdt_project_at"(
	"entity" TEXT, /* &str */
	"row_id" TEXT, /* &str */
	"fields" jsonb, /* pgrx::datum::json::JsonB */
	"at" timestamp with time zone /* pgrx::datum::time_stamp_with_timezone::TimestampWithTimeZone */
) RETURNS jsonb /* pgrx::datum::json::JsonB */
STRICT STABLE PARALLEL RESTRICTED
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'pylon_crdt_project_at_time_fields_wrapper';

CREATE FUNCTION "pylon_crdt_project_at"(
	"entity" TEXT, /* &str */
	"row_id" TEXT, /* &str */
	"fields" jsonb, /* pgrx::datum::json::JsonB */
	"version" bytea /* &[u8] */
) RETURNS jsonb /* pgrx::datum::json::JsonB */
STRICT STABLE PARALLEL RESTRICTED
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'pylon_crdt_project_at_version_fields_wrapper';

CREATE FUNCTION "pylon_crdt_diff"(
	"entity" TEXT,
	"row_id" TEXT,
	"from" bytea,
	"to" bytea
) RETURNS jsonb
STRICT STABLE PARALLEL RESTRICTED
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'pylon_crdt_diff_versions_wrapper';

CREATE FUNCTION "pylon_crdt_diff"(
	"entity" TEXT,
	"row_id" TEXT,
	"from" timestamp with time zone,
	"to" timestamp with time zone
) RETURNS jsonb
STRICT STABLE PARALLEL RESTRICTED
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'pylon_crdt_diff_times_wrapper';

CREATE FUNCTION "pylon_crdt_restore"(
	"entity" TEXT,
	"row_id" TEXT,
	"at" timestamp with time zone
) RETURNS jsonb
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'pylon_crdt_restore_time_wrapper';

CREATE FUNCTION "pylon_crdt_restore"(
	"entity" TEXT,
	"row_id" TEXT,
	"version" bytea
) RETURNS jsonb
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'pylon_crdt_restore_version_wrapper';

CREATE FUNCTION "pylon_crdt_restore"(
	"entity" TEXT,
	"row_id" TEXT,
	"fields" jsonb,
	"at" timestamp with time zone
) RETURNS jsonb
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'pylon_crdt_restore_time_fields_wrapper';

CREATE FUNCTION "pylon_crdt_restore"(
	"entity" TEXT,
	"row_id" TEXT,
	"fields" jsonb,
	"version" bytea
) RETURNS jsonb
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'pylon_crdt_restore_version_fields_wrapper';

-- Issue 17: active-active over logical replication (README, "Active-active"): a node's doc
-- changes go through the outbox to its subscribers, where the replica trigger merges them.
CREATE FUNCTION "_pylon_crdt_merge_replicated"()
	RETURNS TRIGGER
	LANGUAGE c
	AS 'MODULE_PATHNAME', '_pylon_crdt_merge_replicated_wrapper';

CREATE TABLE @extschema@._pylon_crdt_outbox (
    entity pg_catalog.text  NOT NULL,
    row_id pg_catalog.text,
    update pg_catalog.bytea
);
REVOKE ALL ON @extschema@._pylon_crdt_outbox FROM PUBLIC;
CREATE TRIGGER _pylon_crdt_merge_replicated
    BEFORE INSERT ON @extschema@._pylon_crdt_outbox
    FOR EACH ROW EXECUTE FUNCTION @extschema@._pylon_crdt_merge_replicated();
ALTER TABLE @extschema@._pylon_crdt_outbox ENABLE REPLICA TRIGGER _pylon_crdt_merge_replicated;

CREATE FUNCTION "pylon_crdt_resend"(
	"entity" TEXT DEFAULT NULL /* core::option::Option<&str> */
) RETURNS bigint /* i64 */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'pylon_crdt_resend_wrapper';

CREATE FUNCTION "pylon_crdt_versions"(
	"entity" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS TABLE (
	"entity" TEXT,  /* String */
	"row_id" TEXT,  /* String */
	"version" jsonb  /* pgrx::datum::json::JsonB */
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'pylon_crdt_versions_wrapper';

CREATE FUNCTION "pylon_crdt_verify_versions"(
	"other" jsonb /* pgrx::datum::json::JsonB */
) RETURNS TABLE (
	"entity" TEXT,  /* String */
	"row_id" TEXT,  /* String */
	"problem" TEXT  /* String */
)
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'pylon_crdt_verify_versions_wrapper';
