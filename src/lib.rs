//! pylon_crdt: Loro CRDT documents inside PostgreSQL, one doc per (entity, row), merged in the
//! backend in the caller's transaction.
//!
//! `doc` is the pure Loro core (no Postgres); everything else adapts it to SQL.

pub mod doc;

mod api;
mod error;
mod materialize;
mod row;
mod store;
mod triggers;

::pgrx::pg_module_magic!(name, version);

pgrx::extension_sql_file!("../sql/bootstrap.sql", name = "bootstrap", bootstrap);

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
