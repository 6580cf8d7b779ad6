//! Active-active over Postgres' own logical replication (issue 17; README, "Active-active").
//!
//! Nodes publish the doc tables (`_pylon_crdt_snapshots` and the update log) and subscribe to
//! each other. The apply worker's writes to those tables pass through
//! `_pylon_crdt_merge_replicated`, a row trigger that is enabled for replica sessions only
//! (`ENABLE REPLICA`: it fires in apply workers, never for local writes). It takes the
//! incoming bytes (a peer node's snapshot, or one of its log entries) as a peer update of the
//! local doc, through the same path as `pylon_crdt_apply_update`: the row's lock, the merge,
//! the store, the entity table's columns (the row is created when missing), notifications and
//! the changes feed. Then it drops the apply worker's own write, which would have overwritten
//! the local doc (or, for an INSERT of a row the node has too, stopped the worker with a
//! unique violation). An incoming doc that adds nothing to the local one writes nothing, so
//! on Postgres 15, whose subscriptions cannot filter by origin, an echo dies after one round.
//!
//! A replicated DELETE of a doc deletes the local doc and its entity row; a peer deleting its
//! own log entries (compaction) is ignored, since every node keeps its own log.

use std::cell::Cell;

use pgrx::prelude::*;
use pgrx::{PgTrigger, PgTriggerError, WhoAllocated};

use crate::doc;
use crate::error::RowRef;
use crate::materialize::{check_access, Access, EntityTable};
use crate::notify;
use crate::row::{self, Entity, Save};
use crate::store;

thread_local! {
    /// Set while this backend stores a merge it made for a replicated change: the trigger
    /// then lets the extension's own writes to the doc tables through.
    static MERGING: Cell<bool> = const { Cell::new(false) };
}

/// The doc tables' replica trigger. Its argument names the table's bytes column: `snapshot`
/// (`_pylon_crdt_snapshots`) or `update` (`_pylon_crdt_updates`).
#[pg_trigger]
fn _pylon_crdt_merge_replicated<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, impl WhoAllocated>>, PgTriggerError> {
    let passes = |op: PgTriggerOperation| match op {
        PgTriggerOperation::Delete => trigger.old().map(|t| t.into_owned()),
        _ => trigger.new().map(|t| t.into_owned()),
    };
    let op = trigger.op()?;
    if MERGING.with(Cell::get) {
        return Ok(passes(op));
    }
    let column = trigger.extra_args()?.into_iter().next().unwrap_or_default();
    let log = column == "update";
    let tuple = match op {
        PgTriggerOperation::Delete => trigger.old(),
        _ => trigger.new(),
    }
    .expect("a row trigger has its row");
    let text = |name: &str| -> String { tuple.get_by_name(name).ok().flatten().unwrap_or_default() };
    let entity = text("entity");
    let row_id = text("row_id");
    let row = RowRef {
        entity: &entity,
        row_id: &row_id,
    };
    crate::search_path::pinned(|| match op {
        PgTriggerOperation::Insert | PgTriggerOperation::Update => {
            let bytes: Option<&[u8]> = tuple.get_by_name(&column).ok().flatten();
            merge_in(row, bytes.unwrap_or_default());
            Ok(None)
        }
        PgTriggerOperation::Delete if log => Ok(None),
        PgTriggerOperation::Delete => {
            delete(row);
            Ok(None)
        }
        PgTriggerOperation::Truncate => Ok(passes(op)),
    })
}

/// Sets `MERGING` for the extension's own writes, and clears it however the scope ends.
struct Merging;

impl Merging {
    fn begin() -> Merging {
        MERGING.with(|m| m.set(true));
        Merging
    }
}

impl Drop for Merging {
    fn drop(&mut self) {
        MERGING.with(|m| m.set(false));
    }
}

/// Merges a peer node's bytes into the local doc, as `pylon_crdt_apply_update` would, and
/// materializes the result; a registered entity's missing row is created.
fn merge_in(row: RowRef<'_>, bytes: &[u8]) {
    let _merging = Merging::begin();
    let entity = match EntityTable::registered(row.entity) {
        Some(_) => Entity::registered(row),
        // Without a registration the node knows no fields: the doc merges, nothing projects.
        None => Entity {
            table: None,
            fields: Vec::new(),
            registered_fields: false,
        },
    };
    let table = entity.table.as_ref();
    check_access(row, table, Access::Write);
    let row_exists = row::lock(row, table);
    let seed = || table.filter(|_| row_exists).and_then(|t| t.row_values(row));
    let merged = row::merge(
        row,
        &entity.fields,
        seed,
        |d| doc::import(d, bytes),
        Save::Now,
        notify::Kind::Update,
    );
    if let Some(table) = table {
        if row_exists {
            table.update_columns(row, &merged.changed);
        } else {
            table.insert_row(row, &merged.projection);
        }
    }
}

/// A peer node deleted the doc: so does this node, with its entity row.
fn delete(row: RowRef<'_>) {
    let _merging = Merging::begin();
    let table = EntityTable::registered(row.entity);
    check_access(row, table.as_ref(), Access::Write);
    let row_exists = row::lock(row, table.as_ref());
    store::delete(row);
    if let Some(table) = table.filter(|_| row_exists) {
        table.delete_row(row);
    }
}

pgrx::extension_sql!(
    r#"
-- Active-active (issue 17): replicated changes to the doc tables merge into the local docs.
-- ENABLE REPLICA: the trigger fires in logical replication apply workers only.
CREATE TRIGGER _pylon_crdt_merge_replicated
    BEFORE INSERT OR UPDATE OR DELETE ON @extschema@._pylon_crdt_snapshots
    FOR EACH ROW EXECUTE FUNCTION @extschema@._pylon_crdt_merge_replicated('snapshot');
ALTER TABLE @extschema@._pylon_crdt_snapshots ENABLE REPLICA TRIGGER _pylon_crdt_merge_replicated;
CREATE TRIGGER _pylon_crdt_merge_replicated
    BEFORE INSERT OR UPDATE OR DELETE ON @extschema@._pylon_crdt_updates
    FOR EACH ROW EXECUTE FUNCTION @extschema@._pylon_crdt_merge_replicated('update');
ALTER TABLE @extschema@._pylon_crdt_updates ENABLE REPLICA TRIGGER _pylon_crdt_merge_replicated;
"#,
    name = "merge_replicated_triggers",
    requires = [_pylon_crdt_merge_replicated]
);
