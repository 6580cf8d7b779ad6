//! Storage via SPI: the sidecar table `_pylon_crdt_snapshots`, the runtime-compatible
//! advisory lock, and running sidecar I/O as the table's owner.
//!
//! PUBLIC cannot touch the sidecar (DESIGN 8), so reads and writes of it run as its owner
//! after `access` has checked the caller's rights on the entity itself.

use std::cell::OnceCell;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;

use crate::error::RowRef;

/// The runtime's `pg_advisory_key`: low 32 bits of std's `DefaultHasher` over the `&str`,
/// reinterpreted as i32. Must not change, or the extension and runtime stop serializing.
pub fn advisory_key(s: &str) -> i32 {
    let mut hasher = DefaultHasher::new();
    s.hash(&mut hasher);
    hasher.finish() as u32 as i32
}

/// Transaction-scoped lock on (entity, row_id), shared with the runtime's writers.
pub fn lock_row(row: RowRef<'_>) {
    Spi::run_with_args(
        "SELECT pg_catalog.pg_advisory_xact_lock($1, $2)",
        &[
            advisory_key(row.entity).into(),
            advisory_key(row.row_id).into(),
        ],
    )
    .expect("pg_advisory_xact_lock");
}

/// Where the sidecar lives and who owns it, looked up once per backend.
pub struct Sidecar {
    /// Schema-qualified, quoted name.
    pub table: String,
    pub oid: pg_sys::Oid,
    pub owner: pg_sys::Oid,
}

thread_local! {
    // A backend is single-threaded; the extension's schema cannot change under a loaded
    // library without DROP EXTENSION, which ends the functions' use in this backend too.
    static SIDECAR: OnceCell<&'static Sidecar> = const { OnceCell::new() };
}

pub fn sidecar() -> &'static Sidecar {
    SIDECAR.with(|cell| {
        *cell.get_or_init(|| {
            let found = Spi::connect(|client| {
                let rows = client.select(
                    "SELECT n.nspname::text, c.oid, c.relowner
                       FROM pg_catalog.pg_extension e
                       JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
                       JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid
                      WHERE e.extname = 'pylon_crdt' AND c.relname = '_pylon_crdt_snapshots'",
                    Some(1),
                    &[],
                )?;
                if rows.is_empty() {
                    return Ok(None);
                }
                rows.first()
                    .get_three::<String, pg_sys::Oid, pg_sys::Oid>()
                    .map(Some)
            })
            .expect("looking up _pylon_crdt_snapshots");
            let Some((Some(schema), Some(oid), Some(owner))) = found else {
                crate::error::raise(
                    PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
                    "pylon_crdt: _pylon_crdt_snapshots not found in the extension's schema".into(),
                )
            };
            Box::leak(Box::new(Sidecar {
                table: format!("{}._pylon_crdt_snapshots", quote_identifier(schema)),
                oid,
                owner,
            }))
        })
    })
}

/// Schema-qualified, quoted name of another extension table (the registry, the log).
pub fn extension_table(name: &str) -> String {
    extension_object(&quote_identifier(name))
}

/// `schema.object` for an object in the extension's schema; `object` must be SQL already.
pub fn extension_object(object: &str) -> String {
    let sidecar = &sidecar().table;
    let schema = &sidecar[..sidecar.len() - "._pylon_crdt_snapshots".len()];
    format!("{schema}.{object}")
}

/// Runs `f` as the sidecar's owner, restoring the caller's identity afterwards, also when
/// `f` raises (transaction abort restores it as well).
pub fn as_owner<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(pg_sys::Oid, i32);
    impl Drop for Restore {
        fn drop(&mut self) {
            unsafe { pg_sys::SetUserIdAndSecContext(self.0, self.1) };
        }
    }
    let mut user = pg_sys::Oid::INVALID;
    let mut context = 0;
    unsafe { pg_sys::GetUserIdAndSecContext(&mut user, &mut context) };
    let _restore = Restore(user, context);
    unsafe {
        pg_sys::SetUserIdAndSecContext(
            sidecar().owner,
            context
                | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32
                | pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
        )
    };
    f()
}

pub fn load(row: RowRef<'_>) -> Option<Vec<u8>> {
    let query = format!(
        "SELECT snapshot FROM {} WHERE entity = $1 AND row_id = $2",
        sidecar().table
    );
    as_owner(|| query_one::<Vec<u8>>(&query, &[row.entity.into(), row.row_id.into()]))
}

pub fn save(row: RowRef<'_>, snapshot: &[u8]) {
    let query = format!(
        "INSERT INTO {} AS s (entity, row_id, snapshot, updated_at) VALUES ($1, $2, $3, now())
         ON CONFLICT (entity, row_id) DO UPDATE SET snapshot = excluded.snapshot, updated_at = excluded.updated_at",
        sidecar().table
    );
    as_owner(|| {
        Spi::run_with_args(
            &query,
            &[row.entity.into(), row.row_id.into(), snapshot.into()],
        )
    })
    .expect("writing _pylon_crdt_snapshots");
}

/// Removes the doc; true when there was one.
pub fn delete(row: RowRef<'_>) -> bool {
    let query = format!(
        "DELETE FROM {} WHERE entity = $1 AND row_id = $2 RETURNING true",
        sidecar().table
    );
    as_owner(|| query_one::<bool>(&query, &[row.entity.into(), row.row_id.into()])).unwrap_or(false)
}

/// The first column of the first row, or `None` when there is no row or it is NULL.
pub fn query_one<T: FromDatum + IntoDatum>(query: &str, args: &[DatumWithOid<'_>]) -> Option<T> {
    Spi::connect_mut(|client| {
        let rows = client.update(query, Some(1), args)?;
        if rows.is_empty() {
            Ok(None)
        } else {
            rows.first().get_one::<T>()
        }
    })
    .unwrap_or_else(|e| panic!("pylon_crdt: SPI query failed: {e}"))
}

/// Removes every doc of an entity (TRUNCATE of its table, or disable with drop_docs).
pub fn delete_entity(entity: &str) {
    let query = format!("DELETE FROM {} WHERE entity = $1", sidecar().table);
    as_owner(|| Spi::run_with_args(&query, &[entity.into()]))
        .expect("deleting from _pylon_crdt_snapshots");
}
