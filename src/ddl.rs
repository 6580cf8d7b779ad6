//! Schema changes to enabled tables (issue 16): DDL that would silently break what
//! `pylon_crdt_enable` checked is refused, before it commits, by a pair of event triggers.
//!
//! At `ddl_command_start` of `ALTER TABLE` and `DROP INDEX`, the columns of every enforced
//! table are remembered by attribute number; at `ddl_command_end` they are compared with what
//! the command left. Refused, with what to do instead:
//! - renaming or dropping the id column or a column that holds a field (the doc keys its
//!   values by the field's name, so the column would stop matching the doc);
//! - a column newly named like a field (added or renamed to it: it would not hold the doc's
//!   values);
//! - a type a field's kind cannot be materialized into;
//! - losing what makes the id identify a row (its NOT NULL, or its unique index).
//!
//! Renaming the table, and any change to other columns, keep working.
//!
//! A registration is enforced once its table has the extension's triggers. pg_restore creates
//! triggers last, after the constraints and indexes, so a restore in progress is never
//! refused.

use std::cell::RefCell;

use pgrx::prelude::*;
use serde_json::Value;

use crate::doc;
use crate::error::{raise_with_hint, OrRaise, RowRef};
use crate::materialize::columns_of;
use crate::search_path::pinned;
use crate::store::query_column;
use crate::triggers::{column_fits, identifies_rows};

/// A table's live columns as (attnum, name).
type Columns = Vec<(i16, String)>;

thread_local! {
    /// Each enforced table's columns at the start of the current command.
    static BEFORE: RefCell<Vec<(pg_sys::Oid, Columns)>> = const { RefCell::new(Vec::new()) };
    /// Tables whose columns `pylon_crdt_alter` is renaming along with their fields.
    static ALTERING: RefCell<Vec<pg_sys::Oid>> = const { RefCell::new(Vec::new()) };
}

/// While alive, the DDL checks leave a table alone: `pylon_crdt_alter` renames a field's
/// column together with the field, and checks the columns against the new fields itself.
pub struct Altering;

impl Altering {
    pub fn begin(relid: pg_sys::Oid) -> Altering {
        ALTERING.with(|a| a.borrow_mut().push(relid));
        Altering
    }
}

impl Drop for Altering {
    fn drop(&mut self) {
        ALTERING.with(|a| a.borrow_mut().pop());
    }
}

/// Called by the event triggers with their event, `ddl_command_start` or `ddl_command_end`.
#[pg_extern(volatile, parallel_unsafe)]
fn _pylon_crdt_check_ddl(event: &str) {
    pinned(|| match event {
        "ddl_command_start" => {
            let before = enforced()
                .into_iter()
                .map(|t| (t.relid, attributes(t.relid)))
                .collect();
            BEFORE.with(|b| *b.borrow_mut() = before);
        }
        _ => {
            let before = BEFORE.with(|b| std::mem::take(&mut *b.borrow_mut()));
            for table in enforced() {
                if ALTERING.with(|a| a.borrow().contains(&table.relid)) {
                    continue;
                }
                let columns = before.iter().find(|(relid, _)| *relid == table.relid);
                check(&table, columns.map(|(_, c)| c.as_slice()));
            }
        }
    })
}

struct Enforced {
    entity: String,
    relid: pg_sys::Oid,
    name: String,
    id_column: String,
    fields: Value,
}

/// Registered tables that have the extension's row trigger.
fn enforced() -> Vec<Enforced> {
    let registry = crate::store::extension_table("_pylon_crdt_registry");
    query_column::<pgrx::JsonB>(
        &format!(
            "SELECT pg_catalog.jsonb_build_array(r.entity, r.relation::oid::int8, r.relation::text, r.id_column::text, r.fields)
               FROM {registry} r
              WHERE EXISTS (SELECT FROM pg_catalog.pg_trigger t
                             WHERE t.tgrelid = r.relation AND t.tgname = 'pylon_crdt_update')"
        ),
        &[],
    )
    .into_iter()
    .filter_map(|row| {
        let [entity, relid, name, id_column, fields] =
            <[Value; 5]>::try_from(row.0.as_array()?.clone()).ok()?;
        Some(Enforced {
            entity: entity.as_str()?.to_owned(),
            relid: pg_sys::Oid::from(relid.as_u64()? as u32),
            name: name.as_str()?.to_owned(),
            id_column: id_column.as_str()?.to_owned(),
            fields,
        })
    })
    .collect()
}

fn attributes(relid: pg_sys::Oid) -> Columns {
    query_column::<pgrx::JsonB>(
        "SELECT pg_catalog.jsonb_build_array(attnum, attname::text) FROM pg_catalog.pg_attribute
          WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped",
        &[relid.into()],
    )
    .into_iter()
    .filter_map(|row| {
        let pair = row.0;
        Some((
            pair.get(0)?.as_i64()? as i16,
            pair.get(1)?.as_str()?.to_owned(),
        ))
    })
    .collect()
}

const HINT: &str = "A field's values live in the table's docs under the field's name. To rename, drop or re-kind a field together with its docs, use pylon_crdt_alter(table, fields, renames), which renames its column too. For other changes, run pylon_crdt_disable on the table (its docs stay), make the change, then pylon_crdt_enable it with the fields it should have: enabling writes the docs' values into the columns.";

fn refuse(code: PgSqlErrorCode, table: &Enforced, what: String) -> ! {
    raise_with_hint(
        code,
        format!(
            "pylon_crdt: entity \"{}\": table {} is enabled; {what}",
            table.entity, table.name
        ),
        HINT,
    )
}

fn check(table: &Enforced, before: Option<&[(i16, String)]>) {
    let row = RowRef {
        entity: &table.entity,
        row_id: "",
    };
    let fields = doc::parse_fields(&table.fields).or_raise(row);
    let is_field = |name: &str| fields.iter().any(|f| f.name == name);
    let now = attributes(table.relid);
    if let Some(before) = before {
        for (attnum, old) in before {
            let role = if *old == table.id_column {
                "the id column"
            } else if is_field(old) {
                "the column of a CRDT field"
            } else {
                continue;
            };
            match now.iter().find(|(n, _)| n == attnum) {
                None => refuse(
                    PgSqlErrorCode::ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST,
                    table,
                    format!("cannot drop column \"{old}\", {role}"),
                ),
                Some((_, new)) if new != old => refuse(
                    PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                    table,
                    format!("cannot rename column \"{old}\", {role}, to \"{new}\""),
                ),
                Some(_) => {}
            }
        }
        for (_, name) in &now {
            if is_field(name) && !before.iter().any(|(_, old)| old == name) {
                refuse(
                    PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                    table,
                    format!("cannot add column \"{name}\": it would not hold the values of CRDT field \"{name}\""),
                );
            }
        }
    }
    if !identifies_rows(table.relid, &table.id_column) {
        refuse(
            PgSqlErrorCode::ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST,
            table,
            format!(
                "id column \"{}\" must stay NOT NULL with a unique index or primary key on exactly that column",
                table.id_column
            ),
        );
    }
    for (name, ty) in columns_of(table.relid) {
        if let Some(field) = fields.iter().find(|f| f.name == name) {
            if !column_fits(field, &ty) {
                refuse(
                    PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
                    table,
                    format!(
                        "field \"{name}\" ({}) cannot be materialized into column \"{name}\" of type {ty}",
                        field.kind.name()
                    ),
                );
            }
        }
    }
}
