//! pylon_crdt: Loro CRDT documents inside PostgreSQL, one doc per (entity, row), merged in the
//! backend in the caller's transaction.
//!
//! `doc` is the pure Loro core (no Postgres); everything else adapts it to SQL.

pub mod doc;

mod alloc;
mod alter;
mod api;
mod batch;
mod blob;
mod cache;
mod changes;
mod ddl;
mod error;
mod history;
mod lookup;
mod materialize;
mod notify;
mod replication;
mod row;
mod search_path;
mod store;
mod triggers;
mod verify;

::pgrx::pg_module_magic!(name, version);

#[global_allocator]
static ALLOCATOR: alloc::ExtensionAllocator = alloc::ExtensionAllocator;

pgrx::extension_sql_file!("../sql/bootstrap.sql", name = "bootstrap", bootstrap);

/// `pylon_crdt.mergeable_fields`: see `doc::mergeable_fields_from`.
pub static MERGEABLE_FIELDS: pgrx::GucSetting<bool> = pgrx::GucSetting::<bool>::new(true);

/// Largest update, snapshot, version or patch a call accepts (`pylon_crdt.max_input_bytes`).
pub static MAX_INPUT_BYTES: pgrx::GucSetting<i32> = pgrx::GucSetting::<i32>::new(64 << 20);

#[pgrx::pg_guard]
pub extern "C-unwind" fn _PG_init() {
    use pgrx::{GucContext, GucFlags, GucRegistry};
    GucRegistry::define_int_guc(
        c"pylon_crdt.max_input_bytes",
        c"Largest Loro update, snapshot, version vector or JSON patch a call accepts.",
        c"Larger inputs are refused with SQLSTATE 54000 before any work is done.",
        &MAX_INPUT_BYTES,
        1024,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_BYTE,
    );
    GucRegistry::define_int_guc(
        c"pylon_crdt.cache_size",
        c"Decoded docs kept per backend (0 disables the cache).",
        c"Cached docs are validated against the stored row on every use, so they are never stale.",
        &cache::CACHE_SIZE,
        0,
        1_000_000,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pylon_crdt.log_compact_threshold",
        c"Log entries a row may gather in update-log storage before a write folds them into its snapshot.",
        c"Only for entities in 'log' storage; see pylon_crdt_set_storage.",
        &row::LOG_COMPACT_THRESHOLD,
        0,
        1_000_000,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_float_guc(
        c"pylon_crdt.log_compact_ratio",
        c"In 'log' storage, a write folds a row's log into its snapshot once the log's bytes pass this fraction of the snapshot's size.",
        c"Trades WAL per write (rewriting the snapshot) against the work of readers without a cached doc.",
        &row::LOG_COMPACT_RATIO,
        0.0,
        1000.0,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"pylon_crdt.publish",
        c"Which entities record their doc changes in the changes feed: off, registered or everything.",
        c"Registered: entities with a table registered by pylon_crdt_enable. See pylon_crdt_changes.",
        &changes::PUBLISH,
        // Set for a database or the server, not per session: a session that turned it off
        // would write changes readers never see.
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pylon_crdt.notify_unregistered",
        c"Whether changes to the docs of entities without a registered table are notified (LISTEN).",
        c"Registered entities notify unless pylon_crdt_set_notify turned them off. See pylon_crdt_channel.",
        &notify::NOTIFY_UNREGISTERED,
        // Like pylon_crdt.publish: a session that turned it off would hide its writes.
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pylon_crdt.mergeable_fields",
        c"Whether fields a write creates are mergeable Loro containers (on) or regular children (off).",
        c"Mergeable fields of docs created independently for one row merge; peers on Loro before 1.17 cannot read them.",
        &MERGEABLE_FIELDS,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pylon_crdt.replicate",
        c"Whether this node sends its doc changes to the nodes that subscribe to it (active-active).",
        c"Set it for the database on every node of an active-active setup; see the README, Active-active.",
        &replication::REPLICATE,
        // A session that turned it off would keep its writes from the other nodes.
        GucContext::Suset,
        GucFlags::default(),
    );
    doc::mergeable_fields_from(|| MERGEABLE_FIELDS.get());
    cache::init();
    batch::init();
    notify::init();
    materialize::init();
    store::init();
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    include!("pg_tests.rs");
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
