//! One row's doc, start to finish: check access, lock, load, change, save, materialize.
//! Every SQL function and trigger goes through here, so all paths share one lock order and
//! one set of checks.

use loro::LoroDoc;
use pgrx::prelude::*;
use serde_json::Value;

use crate::doc::{self, DocError, Field};
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

/// Loads the stored doc (an empty one when the row has none) with a fresh peer id.
fn load(row: RowRef<'_>) -> LoroDoc {
    let stored = store::load(row);
    doc::load(stored.as_deref())
        .map_err(|e| DocError::Bytes(format!("stored snapshot does not decode: {e}")))
        .or_raise(row)
}

/// Applies `change` under the row's advisory lock, saves the snapshot, writes the columns and
/// returns the projection. Any error aborts the caller's transaction: nothing is half written.
pub fn write(
    row: RowRef<'_>,
    entity: &Entity,
    change: impl FnOnce(&LoroDoc) -> Result<(), DocError>,
) -> Value {
    check_access(row, entity.table.as_ref(), Access::Write);
    store::lock_row(row);
    let doc = load(row);
    change(&doc).or_raise(row);
    let projection = doc::project(&doc, &entity.fields).or_raise(row);
    store::save(row, &doc::snapshot(&doc));
    if let Some(table) = &entity.table {
        table.write_columns(row, &projection);
    }
    projection
}

/// Runs `f` on the current doc after checking the caller may read the row.
pub fn read<R>(row: RowRef<'_>, table: Option<&EntityTable>, f: impl FnOnce(&LoroDoc) -> R) -> R {
    check_access(row, table, Access::Read);
    if let Some(table) = table {
        table.check_visible(row);
    }
    f(&load(row))
}

/// Deletes the row's doc (not the entity row); true when there was one.
pub fn delete(row: RowRef<'_>) -> bool {
    let table = EntityTable::resolve(row.entity);
    check_access(row, table.as_ref(), Access::Delete);
    store::lock_row(row);
    store::delete(row)
}
