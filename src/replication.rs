//! Active-active over Postgres' own logical replication (issue 17; README, "Active-active").
//!
//! With `pylon_crdt.replicate` on, every committed change to a doc also goes into
//! `_pylon_crdt_outbox`: the Loro update of a write (from every path, statements over many
//! rows included), or a deletion. The row is deleted again at once, in the same transaction, so
//! the table stays empty; logical decoding reads the INSERT from the WAL all the same. Nodes
//! publish the outbox (INSERTs only) and subscribe to each other.
//!
//! On the receiving node the apply worker's INSERT passes through `_pylon_crdt_merge_replicated`,
//! a row trigger enabled for replica sessions only (`ENABLE REPLICA`: it fires in apply
//! workers, never for local writes). It takes the update as a peer update of the local doc,
//! through the same path as `pylon_crdt_apply_update` (the row's lock, the merge, the store,
//! the entity table's columns, creating the row when it is missing, notifications and the
//! changes feed) and drops the INSERT itself.
//!
//! Why an outbox rather than replicating `_pylon_crdt_snapshots` itself: an apply worker
//! updating a sidecar row holds that tuple's lock before any trigger runs, while every local
//! writer takes the entity row first and the sidecar tuple second, so the two would deadlock
//! and stop the worker; an INSERT into the outbox holds no lock on anything a writer takes.
//! It also sends each write's delta, not the whole doc. And nothing loops: a merge of a
//! replicated change writes no outbox row, so a change crosses each subscription once, on
//! Postgres 15 (which cannot filter by origin) as on 16 and later.

use std::cell::Cell;

use pgrx::prelude::*;
use pgrx::{PgTrigger, PgTriggerError, WhoAllocated};

use crate::doc;
use crate::error::{raise, OrRaise, RowRef};
use crate::materialize::{check_access, Access, EntityTable};
use crate::row::{self, Change, Entity};
use crate::store::{self, as_owner, query_column, run};
use pgrx::datum::DatumWithOid;

/// `pylon_crdt.replicate`: whether this node sends its doc changes to its subscribers.
pub static REPLICATE: pgrx::GucSetting<bool> = pgrx::GucSetting::<bool>::new(false);

thread_local! {
    /// Set while this backend stores a replicated change: the change is not sent on again.
    static MERGING: Cell<bool> = const { Cell::new(false) };
}

/// Whether a change made now is sent to subscribers.
pub fn sends() -> bool {
    REPLICATE.get() && !MERGING.with(Cell::get)
}

/// Puts outbox rows (entity, row id or NULL for all, update or NULL for a deletion) into the
/// WAL, and removes them again.
fn send(entity: &str, row_ids: Vec<Option<&str>>, updates: Vec<Option<&[u8]>>) {
    if row_ids.is_empty() {
        return;
    }
    let outbox = store::extension_table("_pylon_crdt_outbox");
    pass_through(
        &format!(
            "INSERT INTO {outbox} (entity, row_id, update)
             SELECT $1, r.row_id, r.update
               FROM ROWS FROM (pg_catalog.unnest($2::text[]), pg_catalog.unnest($3::bytea[])) AS r (row_id, update)
             RETURNING ctid::text"
        ),
        &[entity.into(), row_ids.into(), updates.into()],
    );
}

/// Runs `insert`, an INSERT into the outbox that returns its rows' ctids, and deletes those
/// rows again: they reach the WAL, the table stays empty. Returns how many rows went.
fn pass_through(insert: &str, args: &[DatumWithOid<'_>]) -> i64 {
    let outbox = store::extension_table("_pylon_crdt_outbox");
    as_owner(|| {
        let written = query_column::<String>(insert, args);
        let sent = written.len() as i64;
        run(
            &format!("DELETE FROM {outbox} WHERE ctid = ANY ($1::text[]::tid[])"),
            &[written.into()],
        );
        sent
    })
}

/// A write's change to a row's doc: its update.
pub fn wrote(row: RowRef<'_>, delta: &doc::WriteDelta<'_>) {
    if !sends() {
        return;
    }
    let update = doc::guarded(|| delta.bytes()).or_raise(row);
    send(row.entity, vec![Some(row.row_id)], vec![Some(update)]);
}

/// A statement's updates of many rows.
pub fn wrote_many(entity: &str, rows: &[(&str, &[u8])]) {
    if !sends() {
        return;
    }
    send(
        entity,
        rows.iter().map(|(id, _)| Some(*id)).collect(),
        rows.iter().map(|(_, s)| Some(*s)).collect(),
    );
}

/// Docs that were deleted.
pub fn deleted(entity: &str, row_ids: &[&str]) {
    if !sends() {
        return;
    }
    send(
        entity,
        row_ids.iter().map(|id| Some(*id)).collect(),
        vec![None; row_ids.len()],
    );
}

/// Every doc of an entity was deleted (TRUNCATE of its table).
pub fn deleted_entity(entity: &str) {
    if sends() {
        send(entity, vec![None], vec![None]);
    }
}

/// Sends every stored doc (of `entity`, or of all), so that a node subscribing after docs
/// were written gets them; merging makes a doc sent twice harmless.
#[pg_extern(volatile, parallel_unsafe)]
fn pylon_crdt_resend(entity: default!(Option<&str>, "NULL")) -> i64 {
    crate::error::check_writable("pylon_crdt_resend");
    crate::error::require_superuser("pylon_crdt_resend", "sends every doc");
    if !REPLICATE.get() {
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "pylon_crdt: pylon_crdt.replicate is off on this node, so nothing would be sent".into(),
        );
    }
    crate::search_path::pinned(|| {
        crate::batch::flush();
        let s = store::sidecar();
        let outbox = store::extension_table("_pylon_crdt_outbox");
        // Snapshots first, then log entries in order: each applies on top of what came before.
        pass_through(
            &format!(
                "INSERT INTO {outbox} (entity, row_id, update)
                 SELECT entity, row_id, bytes FROM (
                     SELECT entity, row_id, snapshot AS bytes, 0 AS part, 0::int8 AS seq FROM {table}
                      WHERE $1::text IS NULL OR entity = $1
                     UNION ALL
                     SELECT entity, row_id, update, 1, seq FROM {log}
                      WHERE $1::text IS NULL OR entity = $1) AS d
                 ORDER BY part, seq
                 RETURNING ctid::text",
                table = s.table,
                log = s.log
            ),
            &[entity.into()],
        )
    })
}

/// The outbox's replica trigger: a peer node's change, merged into this node's doc.
#[pg_trigger]
fn _pylon_crdt_merge_replicated<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, impl WhoAllocated>>, PgTriggerError> {
    let new = trigger.new().expect("an INSERT row trigger has NEW");
    let entity: String = new.get_by_name("entity").ok().flatten().unwrap_or_default();
    let row_id: Option<String> = new.get_by_name("row_id").ok().flatten();
    let update: Option<&[u8]> = new.get_by_name("update").ok().flatten();
    crate::search_path::pinned(|| {
        let _merging = Merging::begin();
        match (row_id, update) {
            (Some(row_id), Some(update)) => merge_in(
                RowRef {
                    entity: &entity,
                    row_id: &row_id,
                },
                update,
            ),
            (Some(row_id), None) => delete(RowRef {
                entity: &entity,
                row_id: &row_id,
            }),
            (None, _) => delete_entity(&entity),
        }
    });
    // The change is merged and stored; the outbox row itself is not kept.
    Ok(None::<PgHeapTuple<'a, pgrx::AllocatedByRust>>)
}

/// Sets `MERGING`, and clears it however the scope ends.
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

/// Merges a peer node's update into the local doc (see `Change::Replicated`).
fn merge_in(row: RowRef<'_>, update: &[u8]) {
    let entity = match EntityTable::registered(row.entity) {
        Some(_) => Entity::registered(row),
        // Without a registration the node knows no fields: the doc merges, nothing projects.
        None => Entity {
            table: None,
            fields: Vec::new(),
            registered_fields: false,
        },
    };
    row::write(row, &entity, Change::Replicated(update));
}

/// A peer node deleted the doc: so does this node, with its entity row.
fn delete(row: RowRef<'_>) {
    let table = EntityTable::registered(row.entity);
    check_access(row, table.as_ref(), Access::Write);
    let row_exists = row::lock(row, table.as_ref());
    store::delete(row);
    if let Some(table) = table.filter(|_| row_exists) {
        table.delete_row(row);
    }
}

/// A peer node deleted every doc of the entity (TRUNCATE): so does this node, with the rows.
fn delete_entity(entity: &str) {
    store::delete_entity(entity);
    if let Some(table) = EntityTable::registered(entity) {
        table.delete_all_rows();
    }
}

pgrx::extension_sql!(
    r#"
-- Active-active (issue 17): a node's doc changes, for its subscribers (see the README,
-- "Active-active"). Rows are deleted in the transaction that inserts them; logical decoding
-- reads the INSERTs from the WAL. Publish it WITH (publish = 'insert').
CREATE TABLE @extschema@._pylon_crdt_outbox (
    entity pg_catalog.text  NOT NULL,
    row_id pg_catalog.text,
    update pg_catalog.bytea
);
REVOKE ALL ON @extschema@._pylon_crdt_outbox FROM PUBLIC;
-- ENABLE REPLICA: the trigger fires in logical replication apply workers only.
CREATE TRIGGER _pylon_crdt_merge_replicated
    BEFORE INSERT ON @extschema@._pylon_crdt_outbox
    FOR EACH ROW EXECUTE FUNCTION @extschema@._pylon_crdt_merge_replicated();
ALTER TABLE @extschema@._pylon_crdt_outbox ENABLE REPLICA TRIGGER _pylon_crdt_merge_replicated;
"#,
    name = "replication_outbox",
    requires = [_pylon_crdt_merge_replicated]
);
