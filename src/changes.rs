//! The changes feed (issue 11): which rows' docs changed, in an order no reader can skip.
//!
//! Every transaction that changes a publishing entity's docs upserts one row per doc into
//! `_pylon_crdt_changes`: the transaction's top-level id (xid8) and whether the change deleted
//! the doc. A row changed many times in one transaction is written once.
//!
//! `pylon_crdt_changes(entity, since, limit)` returns the rows whose xid is above the cursor
//! `since` and below the oldest transaction still running (the xmin of `pg_current_snapshot()`).
//! Every transaction below that horizon has ended: its rows are visible if it committed, and
//! no transaction that is still open can later add a row below it. So a reader that passes
//! cursor c never misses a change that commits afterwards: that change's xid is at least the
//! horizon the reader saw, which is above c (the outbox bug cannot happen). The cursor is the
//! xid; a page holds whole transactions, so each change is returned exactly once.
//!
//! Which entities record changes is `pylon_crdt.publish`: none (the default: a recorded
//! change costs a write), registered ones, or all.

use pgrx::prelude::*;

use crate::error::RowRef;
use crate::materialize::{check_access, Access, EntityTable};
use crate::search_path::pinned;
use crate::store::{self, as_owner};

/// Which entities record their changes (`pylon_crdt.publish`).
#[derive(Clone, Copy, PartialEq, Eq, pgrx::PostgresGucEnum)]
pub enum Publish {
    #[name = c"off"]
    Off,
    #[name = c"registered"]
    Registered,
    #[name = c"everything"]
    Everything,
}

pub static PUBLISH: pgrx::GucSetting<Publish> = pgrx::GucSetting::<Publish>::new(Publish::Off);

fn changes_table() -> String {
    store::extension_table("_pylon_crdt_changes")
}

thread_local! {
    /// Whether the changes table exists: not before `ALTER EXTENSION pylon_crdt UPDATE` from a
    /// release without it, while this library is already loaded. Forgotten on every catalog
    /// invalidation (`materialize`), which the update's CREATE TABLE sends.
    static TABLE_PRESENT: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
}

pub fn forget_table() {
    TABLE_PRESENT.with(|p| p.set(None));
}

fn table_present() -> bool {
    TABLE_PRESENT.with(|p| {
        *p.get().get_or_insert_with(|| {
            store::query_one::<bool>(
                "SELECT pg_catalog.to_regclass($1) IS NOT NULL",
                &[changes_table().as_str().into()],
            ) == Some(true)
        })
    })
}

/// Whether changes to `entity`'s docs are recorded.
pub fn publishes(entity: &str) -> bool {
    let chosen = match PUBLISH.get() {
        Publish::Off => false,
        Publish::Registered => EntityTable::registered(entity).is_some(),
        Publish::Everything => true,
    };
    chosen && table_present()
}

/// Records that this transaction changed (or deleted) these docs of `entity`.
pub fn record(entity: &str, row_ids: &[&str], deleted: bool) {
    if row_ids.is_empty() || !publishes(entity) {
        return;
    }
    // One row (every single-row write) by VALUES, many (a bulk statement's chunk) by unnest.
    let rows = match row_ids {
        [_] => "VALUES ($1, $2, pg_catalog.pg_current_xact_id(), $3)",
        _ => {
            "SELECT DISTINCT $1, r.row_id, pg_catalog.pg_current_xact_id(), $3
                FROM pg_catalog.unnest($2::text[]) AS r (row_id)"
        }
    };
    let query = format!(
        "INSERT INTO {} AS c (entity, row_id, xid, deleted) {rows}
         ON CONFLICT (entity, row_id) DO UPDATE SET xid = excluded.xid, deleted = excluded.deleted
          WHERE c.xid OPERATOR(pg_catalog.<>) excluded.xid OR c.deleted OPERATOR(pg_catalog.<>) excluded.deleted",
        changes_table()
    );
    as_owner(|| match row_ids {
        [row_id] => store::run(&query, &[entity.into(), (*row_id).into(), deleted.into()]),
        _ => store::run(
            &query,
            &[entity.into(), row_ids.to_vec().into(), deleted.into()],
        ),
    });
}

/// The rows of `entity` whose doc changed after cursor `since` (0: from the start), oldest
/// change first: each row's id, its cursor (the changing transaction's id), the doc's version
/// now (NULL when deleted), and whether the change deleted it. About `limit` rows: a page
/// ends with a whole transaction. Pass the last row's cursor as the next `since`.
#[pg_extern(stable, parallel_restricted)]
fn pylon_crdt_changes(
    entity: &str,
    since: default!(i64, 0),
    limit: default!(i32, 1000),
) -> TableIterator<
    'static,
    (
        name!(row_id, String),
        name!(cursor, i64),
        name!(version, Option<Vec<u8>>),
        name!(deleted, bool),
    ),
> {
    pinned(|| {
        let row = RowRef { entity, row_id: "" };
        let table = EntityTable::resolve(entity);
        check_access(row, table.as_ref(), Access::Read);
        let query = format!(
            "WITH horizon AS (SELECT pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot()) AS h),
                  page AS (SELECT c.xid FROM {changes} c, horizon
                            WHERE c.entity = $1 AND c.xid > $2::text::pg_catalog.xid8 AND c.xid < horizon.h
                            ORDER BY c.xid LIMIT $3)
             SELECT pg_catalog.jsonb_build_array(c.row_id, c.xid::text::int8, c.deleted)
               FROM {changes} c, horizon
              WHERE c.entity = $1 AND c.xid > $2::text::pg_catalog.xid8 AND c.xid < horizon.h
                AND c.xid <= (SELECT xid FROM page ORDER BY xid DESC LIMIT 1)
              ORDER BY c.xid, c.row_id",
            changes = changes_table()
        );
        let found = as_owner(|| {
            store::query_column::<pgrx::JsonB>(
                &query,
                &[entity.into(), since.max(0).into(), limit.max(1).into()],
            )
        });
        let found: Vec<(String, i64, bool)> = found
            .into_iter()
            .filter_map(|j| {
                let a = j.0.as_array()?.clone();
                Some((
                    a.first()?.as_str()?.to_owned(),
                    a.get(1)?.as_i64()?,
                    a.get(2)?.as_bool()?,
                ))
            })
            .collect();
        // Rows the caller cannot see through the entity's table (row-level security) are
        // left out; a deleted row has no table row left to ask.
        let visible = match &table {
            Some(t) => {
                let ids: Vec<&str> = found
                    .iter()
                    .filter(|(_, _, deleted)| !deleted)
                    .map(|(id, _, _)| id.as_str())
                    .collect();
                Some(t.visible_ids(&ids))
            }
            None => None,
        };
        let live: Vec<&str> = found
            .iter()
            .filter(|(id, _, deleted)| !deleted && visible.as_ref().is_none_or(|v| v.contains(id)))
            .map(|(id, _, _)| id.as_str())
            .collect();
        let mut versions = store::versions_many(entity, &live);
        let rows: Vec<_> = found
            .into_iter()
            .filter(|(id, _, deleted)| *deleted || visible.as_ref().is_none_or(|v| v.contains(id)))
            .map(|(id, cursor, deleted)| {
                let version = if deleted { None } else { versions.remove(&id) };
                (id, cursor, version, deleted)
            })
            .collect();
        TableIterator::new(rows)
    })
}

/// Removes the tombstones of `entity`'s deleted docs whose deletion is at or before cursor
/// `before`; returns how many. Readers still behind that cursor then miss those deletions,
/// so prune only below what every reader has reached.
#[pg_extern(volatile, parallel_unsafe)]
fn pylon_crdt_prune_changes(entity: &str, before: i64) -> i64 {
    crate::error::check_writable("pylon_crdt_prune_changes");
    pinned(|| {
        let row = RowRef { entity, row_id: "" };
        check_access(row, EntityTable::resolve(entity).as_ref(), Access::Delete);
        as_owner(|| {
            store::query_one::<i64>(
                &format!(
                    "WITH gone AS (DELETE FROM {} WHERE entity = $1 AND deleted AND xid <= $2::text::pg_catalog.xid8 RETURNING 1)
                     SELECT count(*) FROM gone",
                    changes_table()
                ),
                &[entity.into(), before.into()],
            )
        })
        .unwrap_or(0)
    })
}
