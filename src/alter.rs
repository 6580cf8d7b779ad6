//! `pylon_crdt_alter`: an enabled table's fields change (issue 16). Fields are added, dropped,
//! renamed and re-kinded in every doc as a forward change (`doc::migrate`), the columns of
//! renamed fields are renamed with them, and the columns are rewritten where the projection
//! changed.
//!
//! The table is locked in EXCLUSIVE mode for the transaction: readers go on (seeing the old
//! docs until commit), writers (plain DML, the functions, peer updates: all lock the row
//! first) wait and then write under the new fields. Rows are migrated as bulk jobs
//! (`batch`), so a table of any size is migrated with default settings.

use std::sync::Arc;

use pgrx::prelude::*;
use pgrx::spi::quote_identifier;
use pgrx::JsonB;
use serde_json::{Map, Value};

use crate::batch::{self, Job};
use crate::ddl::Altering;
use crate::doc::{self, migrate};
use crate::error::{raise, OrRaise, RowRef};
use crate::materialize::{self, columns_of, EntityTable};
use crate::search_path::pinned;
use crate::store::query_one;
use crate::triggers::{check_columns, each_row, owns_table};

/// Changes the fields of an enabled table to `fields` (a full spec, as `pylon_crdt_enable`
/// takes). `renames` maps old field names to new ones (`{"title": "headline"}`); other fields
/// are matched by name. Returns the number of rows migrated.
#[pg_extern(volatile, parallel_unsafe)]
fn pylon_crdt_alter(
    relation: pgrx::PgRelation,
    fields: JsonB,
    renames: default!(JsonB, "'{}'"),
) -> i64 {
    crate::error::check_writable("pylon_crdt_alter");
    pinned(|| alter(relation.oid(), fields, &renames.0))
}

fn alter(relid: pg_sys::Oid, fields: JsonB, renames: &Value) -> i64 {
    let name =
        query_one::<String>("SELECT $1::regclass::text", &[relid.into()]).unwrap_or_default();
    let not_enabled = || -> ! {
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("pylon_crdt: table {name} is not enabled; use pylon_crdt_enable"),
        )
    };
    if EntityTable::registered_relation(relid).is_none() {
        not_enabled();
    }
    if owns_table(relid) != Some(true) {
        raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("pylon_crdt: must be owner of table {name} to alter its fields"),
        );
    }
    // Writers wait from here to commit; a concurrent alter committed before this returns, so
    // the registration is read again.
    Spi::run(&format!("LOCK TABLE {name} IN EXCLUSIVE MODE")).expect("LOCK TABLE");
    materialize::invalidate();
    let Some((entity, table)) = EntityTable::registered_relation(relid) else {
        not_enabled()
    };
    batch::flush();
    let row = RowRef {
        entity: &entity,
        row_id: "",
    };
    let old = doc::parse_fields(table.fields.as_deref().expect("registered")).or_raise(row);
    let new = Arc::new(doc::parse_fields(&fields.0).or_raise(row));
    let renames = parse_renames(renames, row);
    let migration = Arc::new(migrate::plan(&old, &new, &renames).or_raise(row));

    let _altering = Altering::begin(relid);
    let columns = columns_of(relid);
    let has_column = |c: &str| columns.iter().any(|(n, _)| n == c);
    for (from, to) in &renames {
        if !has_column(from) {
            continue;
        }
        if has_column(to) {
            raise(
                PgSqlErrorCode::ERRCODE_DUPLICATE_COLUMN,
                format!(
                    "pylon_crdt: {row}: cannot rename field \"{from}\" to \"{to}\": table {name} already has a column \"{to}\""
                ),
            );
        }
        Spi::run(&format!(
            "ALTER TABLE {name} RENAME COLUMN {} TO {}",
            quote_identifier(from),
            quote_identifier(to)
        ))
        .expect("RENAME COLUMN");
    }
    check_columns(&entity, &name, relid, &table.id_column, &new);

    materialize::update_registration(relid, "fields", fields.into());

    if migration.is_empty() {
        return 0;
    }
    let mut rows = 0;
    each_row(&name, &table.id_column, |row_id, values| {
        rows += 1;
        batch::submit(Job {
            relid,
            entity: entity.clone(),
            row_id,
            fields: new.clone(),
            patch: Value::Object(Map::new()),
            seed: Some(values.clone()),
            row: values,
            migration: Some(migration.clone()),
        });
    });
    rows
}

/// `{"old": "new", ...}` as pairs.
fn parse_renames(renames: &Value, row: RowRef<'_>) -> Vec<(String, String)> {
    let invalid = |message: String| -> ! {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("pylon_crdt: {row}: {message}"),
        )
    };
    let Some(map) = renames.as_object() else {
        invalid(format!(
            "renames must be a JSON object of old field name to new name, got {renames}"
        ))
    };
    map.iter()
        .map(|(from, to)| match to {
            Value::String(to) if !to.is_empty() && to != "id" => (from.clone(), to.clone()),
            other => invalid(format!(
                "renames: field \"{from}\" must be renamed to a non-empty name other than id, got {other}"
            )),
        })
        .collect()
}
