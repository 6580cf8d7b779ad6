//! The SQL surface (DESIGN 4): thin wrappers over `row` and the pure `doc` core.

use pgrx::prelude::*;
use pgrx::JsonB;

use crate::doc;
use crate::error::{check_writable, raise, OrRaise, RowRef};
use crate::materialize::EntityTable;
use crate::row::{self, Change, Entity};
use crate::search_path::pinned;

/// Refuses (54000) an input over `pylon_crdt.max_input_bytes` before any work.
pub(crate) fn check_size(row: RowRef<'_>, what: &str, bytes: usize) {
    let limit = crate::MAX_INPUT_BYTES.get().max(0) as usize;
    if bytes > limit {
        raise(
            PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            format!("pylon_crdt: {row}: {what} of {bytes} bytes is over pylon_crdt.max_input_bytes ({limit})"),
        );
    }
}

fn check_patch_size(row: RowRef<'_>, patch: &serde_json::Value) {
    let limit = crate::MAX_INPUT_BYTES.get().max(0) as usize;
    check_size(row, "patch", doc::json::approx_size(patch, limit + 1));
}

/// Applies a JSON patch to the row's doc and returns the projection of every field.
#[pg_extern(volatile, parallel_unsafe)]
fn pylon_crdt_apply_patch(entity: &str, row_id: &str, fields: JsonB, patch: JsonB) -> JsonB {
    check_writable("pylon_crdt_apply_patch");
    pinned(|| {
        let row = RowRef { entity, row_id };
        check_patch_size(row, &patch.0);
        let target = Entity::with_fields(row, &fields.0);
        JsonB(row::write(row, &target, Change::Patch(&patch.0)))
    })
}

/// `pylon_crdt_apply_patch` for an entity registered with `pylon_crdt_enable`.
#[pg_extern(volatile, parallel_unsafe, name = "pylon_crdt_apply_patch")]
fn pylon_crdt_apply_patch_registered(entity: &str, row_id: &str, patch: JsonB) -> JsonB {
    check_writable("pylon_crdt_apply_patch");
    pinned(|| {
        let row = RowRef { entity, row_id };
        check_patch_size(row, &patch.0);
        let target = Entity::registered(row);
        JsonB(row::write(row, &target, Change::Patch(&patch.0)))
    })
}

/// Imports a Loro update or snapshot from a peer and returns the projection.
#[pg_extern(volatile, parallel_unsafe)]
fn pylon_crdt_apply_update(entity: &str, row_id: &str, fields: JsonB, update: &[u8]) -> JsonB {
    check_writable("pylon_crdt_apply_update");
    pinned(|| {
        let row = RowRef { entity, row_id };
        check_size(row, "update", update.len());
        let target = Entity::with_fields(row, &fields.0);
        JsonB(row::write(row, &target, Change::Import(update)))
    })
}

#[pg_extern(volatile, parallel_unsafe, name = "pylon_crdt_apply_update")]
fn pylon_crdt_apply_update_registered(entity: &str, row_id: &str, update: &[u8]) -> JsonB {
    check_writable("pylon_crdt_apply_update");
    pinned(|| {
        let row = RowRef { entity, row_id };
        check_size(row, "update", update.len());
        let target = Entity::registered(row);
        JsonB(row::write(row, &target, Change::Import(update)))
    })
}

/// The row's full Loro snapshot; an encoded empty doc when it has none.
#[pg_extern(stable, parallel_restricted)]
fn pylon_crdt_snapshot(entity: &str, row_id: &str) -> Vec<u8> {
    pinned(|| {
        let row = RowRef { entity, row_id };
        row::snapshot(row, EntityTable::resolve(entity).as_ref())
    })
}

/// The row's encoded version vector, for `pylon_crdt_update_since`.
#[pg_extern(stable, parallel_restricted)]
fn pylon_crdt_version(entity: &str, row_id: &str) -> Vec<u8> {
    pinned(|| {
        let row = RowRef { entity, row_id };
        row::read(row, EntityTable::resolve(entity).as_ref(), doc::version)
    })
}

/// The ops a peer at version `since` lacks, as a Loro update.
#[pg_extern(stable, parallel_restricted)]
fn pylon_crdt_update_since(entity: &str, row_id: &str, since: &[u8]) -> Vec<u8> {
    pinned(|| {
        let row = RowRef { entity, row_id };
        check_size(row, "version vector", since.len());
        let since = doc::decode_version(since).or_raise(row);
        row::read(row, EntityTable::resolve(entity).as_ref(), |d| {
            doc::updates_since(d, &since)
        })
        .or_raise(row)
    })
}

/// The projection of the given fields.
#[pg_extern(stable, parallel_restricted)]
fn pylon_crdt_project(entity: &str, row_id: &str, fields: JsonB) -> JsonB {
    pinned(|| {
        let row = RowRef { entity, row_id };
        let target = Entity::with_fields(row, &fields.0);
        JsonB(
            row::read(row, target.table.as_ref(), |d| {
                doc::project(d, &target.fields)
            })
            .or_raise(row),
        )
    })
}

#[pg_extern(stable, parallel_safe, name = "pylon_crdt_project")]
fn pylon_crdt_project_registered(entity: &str, row_id: &str) -> JsonB {
    pinned(|| {
        let row = RowRef { entity, row_id };
        let target = Entity::registered(row);
        JsonB(
            row::read(row, target.table.as_ref(), |d| {
                doc::project(d, &target.fields)
            })
            .or_raise(row),
        )
    })
}

/// Deletes the row's doc (the entity row stays); true when there was one.
#[pg_extern(volatile, parallel_unsafe)]
fn pylon_crdt_delete(entity: &str, row_id: &str) -> bool {
    check_writable("pylon_crdt_delete");
    pinned(|| row::delete(RowRef { entity, row_id }))
}

/// The runtime's advisory-lock key for a string (DESIGN 5), for clients that lock by hand.
#[pg_extern(immutable, parallel_safe)]
fn pylon_crdt_lock_key(s: &str) -> i32 {
    crate::store::advisory_key(s)
}

/// Folds the row's update log into its snapshot; with `trim_history`, also drops history
/// before the current version (a Loro shallow snapshot): the projection stays the same and
/// peers at the current version keep syncing, but an update that depends on trimmed history
/// is refused. Returns the new snapshot's size in bytes.
#[pg_extern(volatile, parallel_unsafe)]
fn pylon_crdt_compact(entity: &str, row_id: &str, trim_history: default!(bool, "false")) -> i64 {
    check_writable("pylon_crdt_compact");
    pinned(|| {
        let row = RowRef { entity, row_id };
        row::compact(row, &EntityTable::resolve(entity), trim_history) as i64
    })
}

/// Chooses how an entity's docs are stored: 'snapshot' (the default: the full snapshot is
/// rewritten on every write, as the runtime's own readers need) or 'log' (a write appends
/// only its delta; see the README). Switching to 'snapshot' folds every row's log.
#[pg_extern(volatile, parallel_unsafe)]
fn pylon_crdt_set_storage(entity: &str, mode: &str) {
    check_writable("pylon_crdt_set_storage");
    pinned(|| {
        row::set_storage(entity, mode);
    })
}

/// This backend's doc-cache and storage counters.
#[pg_extern(volatile, parallel_safe)]
fn pylon_crdt_stats() -> TableIterator<
    'static,
    (
        name!(cache_hits, i64),
        name!(cache_misses, i64),
        name!(decodes, i64),
        name!(compactions, i64),
        name!(cached_docs, i64),
    ),
> {
    let s = crate::cache::STATS.with(|s| s.get());
    TableIterator::once((
        s.hits,
        s.misses,
        s.decodes,
        s.compactions,
        crate::cache::len() as i64,
    ))
}
