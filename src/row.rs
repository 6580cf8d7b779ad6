//! One row's doc, start to finish. Every SQL function and trigger goes through `merge`, so all
//! paths share one lock order (entity row first, then the advisory lock) and one way of
//! loading, seeding and saving.

use loro::LoroDoc;
use pgrx::prelude::*;
use serde_json::{Map, Value};

use crate::doc::{self, rowpatch, DocError, Field};
use crate::error::{raise, OrRaise, RowRef};
use crate::materialize::{check_access, Access, EntityTable};
use crate::store;

/// An entity's table (if any) and its fields, as a call sees them.
pub struct Entity {
    pub table: Option<EntityTable>,
    pub fields: Vec<Field>,
}

impl Entity {
    /// With an explicit fields spec; the table is the registered or same-named one.
    pub fn with_fields(row: RowRef<'_>, spec: &Value) -> Entity {
        let fields = doc::parse_fields(spec).or_raise(row);
        Entity {
            table: EntityTable::resolve(row.entity),
            fields,
        }
    }

    /// A registered entity, with the fields it was registered with (42P01 when unknown).
    pub fn registered(row: RowRef<'_>) -> Entity {
        let table = EntityTable::registered(row.entity).unwrap_or_else(|| {
            raise(
                PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
                format!(
                    "pylon_crdt: entity \"{}\" is not registered (use pylon_crdt_enable, or pass a fields spec)",
                    row.entity
                ),
            )
        });
        let spec = table
            .fields
            .as_ref()
            .expect("registered tables carry fields");
        let fields = doc::parse_fields(spec).or_raise(row);
        Entity {
            table: Some(table),
            fields,
        }
    }
}

/// Loads the stored doc with a fresh peer id; `None` when the row has no doc yet.
fn load(row: RowRef<'_>) -> Option<LoroDoc> {
    let stored = store::load(row)?;
    Some(
        doc::load(Some(&stored))
            .map_err(|e| DocError::Bytes(format!("stored snapshot does not decode: {e}")))
            .or_raise(row),
    )
}

/// The core of every write, for a caller that already holds the entity row's lock (or has
/// none): take the advisory lock, load the doc (a new one seeded from `seed()`, the row's
/// current values, when the row has no doc yet), apply `change`, save, return the projection.
/// Errors raise and abort the transaction, so nothing is half written.
pub fn merge(
    row: RowRef<'_>,
    fields: &[Field],
    seed: impl FnOnce() -> Option<Map<String, Value>>,
    change: impl FnOnce(&LoroDoc) -> Result<(), DocError>,
) -> Value {
    store::lock_row(row);
    let doc = load(row).unwrap_or_else(|| {
        let fresh = doc::load(None).or_raise(row);
        if let Some(values) = seed() {
            doc::apply_patch(&fresh, fields, &rowpatch::from_row(fields, &values, true))
                .or_raise(row);
        }
        fresh
    });
    change(&doc).or_raise(row);
    let projection = doc::project(&doc, fields).or_raise(row);
    store::save(row, &doc::snapshot(&doc));
    projection
}

/// What a function call does to a doc.
pub enum Change<'a> {
    Patch(&'a Value),
    /// A peer's update or snapshot.
    Import(&'a [u8]),
}

/// A function-path write: check access, lock the entity row, merge, then write the row's
/// columns (inserting the row for a patch to a registered entity whose row is missing).
pub fn write(row: RowRef<'_>, entity: &Entity, change: Change<'_>) -> Value {
    let table = entity.table.as_ref();
    check_access(row, table, Access::Write);
    let row_exists = table.is_some_and(|t| t.lock_row(row));
    let registered = table.is_some_and(EntityTable::is_registered);
    if registered && !row_exists && matches!(change, Change::Import(_)) {
        raise(
            PgSqlErrorCode::ERRCODE_NO_DATA_FOUND,
            format!(
                "pylon_crdt: {row}: no such row in table {}; a peer update needs an existing row",
                table.map_or("", |t| &t.name)
            ),
        );
    }
    let seed = || {
        table
            .filter(|_| registered && row_exists)
            .and_then(|t| t.row_values(row))
    };
    let projection = merge(row, &entity.fields, seed, |d| match change {
        Change::Patch(patch) => doc::apply_patch(d, &entity.fields, patch),
        Change::Import(bytes) => doc::import(d, bytes),
    });
    if let Some(table) = table {
        if row_exists {
            table.update_columns(row, &projection);
        } else if registered {
            table.insert_row(row, &projection);
        }
    }
    projection
}

/// Runs `f` on the current doc (an empty one when there is none) after checking the caller
/// may read the row.
pub fn read<R>(row: RowRef<'_>, table: Option<&EntityTable>, f: impl FnOnce(&LoroDoc) -> R) -> R {
    check_access(row, table, Access::Read);
    if let Some(table) = table {
        table.check_visible(row);
    }
    let doc = load(row).unwrap_or_else(|| doc::load(None).or_raise(row));
    f(&doc)
}

/// Deletes the row's doc (not the entity row); true when there was one.
pub fn delete(row: RowRef<'_>) -> bool {
    let table = EntityTable::resolve(row.entity);
    check_access(row, table.as_ref(), Access::Delete);
    store::lock_row(row);
    store::delete(row)
}
