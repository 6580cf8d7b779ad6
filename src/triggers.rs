//! Tables that are CRDTs (DESIGN 4): `pylon_crdt_enable` / `pylon_crdt_disable` and the
//! trigger that turns plain INSERT / UPDATE / DELETE / TRUNCATE into doc changes.
//!
//! - BEFORE UPDATE, per row: the changed CRDT columns become a patch (counter columns as
//!   increments), the doc merges it, and NEW's CRDT columns are replaced by the projection.
//!   The row is already locked when a BEFORE UPDATE trigger runs, and that lock is all that
//!   orders an enabled table's writers (`row::lock`). Past a statement's first rows the Loro
//!   work goes to `batch`'s worker threads and NEW is returned as the statement made it.
//! - AFTER INSERT, per row: after, not before, so `INSERT ... ON CONFLICT DO UPDATE` patches
//!   the doc once, through the UPDATE, when the insert does not happen. If the projection
//!   differs from what was inserted (the doc already held data), the row is updated to it.
//! - AFTER DELETE per row and AFTER TRUNCATE: the docs go too.
//! - AFTER INSERT OR UPDATE OR DELETE, per statement (`pylon_crdt_flush`): what the row
//!   triggers queued is stored (`batch`).
//!
//! When the extension itself writes the entity row (function path), the trigger must not
//! apply the change again: `ExtensionWrite` marks that (relation, row) for the duration.

use std::cell::RefCell;
use std::sync::Arc;

use pgrx::prelude::*;
use pgrx::spi::quote_identifier;
use pgrx::{JsonB, WhoAllocated};
use serde_json::{Map, Value};

use crate::doc::{self, rowpatch, BaseType, Field, FieldKind};
use crate::error::{raise, OrRaise, RowRef};
use crate::materialize::{columns_of, EntityTable};
use crate::row::{self, Save};
use crate::search_path::{in_utc, pinned};
use crate::store::{self, as_owner, query_one};

thread_local! {
    // A backend is single-threaded; a stack because extension writes can nest through user
    // triggers on other tables.
    static EXTENSION_WRITES: RefCell<Vec<(pg_sys::Oid, String)>> = const { RefCell::new(Vec::new()) };
}

/// Marks a write of the extension's own to (relation, row) while alive; dropped on unwind too.
pub struct ExtensionWrite;

impl ExtensionWrite {
    pub fn begin(relid: pg_sys::Oid, row_id: &str) -> ExtensionWrite {
        EXTENSION_WRITES.with(|w| w.borrow_mut().push((relid, row_id.to_owned())));
        ExtensionWrite
    }

    fn active(relid: pg_sys::Oid, row_id: &str) -> bool {
        EXTENSION_WRITES.with(|w| w.borrow().iter().any(|(r, id)| *r == relid && id == row_id))
    }
}

impl Drop for ExtensionWrite {
    fn drop(&mut self) {
        EXTENSION_WRITES.with(|w| w.borrow_mut().pop());
    }
}

/// Registers a table as CRDT-backed and installs its triggers. Existing rows get docs made
/// from their current values; rows that already have docs keep them and take their projection.
#[pg_extern(volatile, parallel_unsafe)]
fn pylon_crdt_enable(
    relation: pgrx::PgRelation,
    fields: JsonB,
    entity: default!(Option<&str>, "NULL"),
    id_column: default!(&str, "'id'"),
) {
    crate::error::check_writable("pylon_crdt_enable");
    pinned(|| enable(relation.oid(), fields, entity, id_column))
}

fn enable(relation: pg_sys::Oid, fields: JsonB, entity: Option<&str>, id_column: &str) {
    let name =
        query_one::<String>("SELECT $1::regclass::text", &[relation.into()]).unwrap_or_default();
    let entity = match entity {
        Some(e) => e.to_owned(),
        None => query_one::<String>(
            "SELECT relname::text FROM pg_catalog.pg_class WHERE oid = $1",
            &[relation.into()],
        )
        .unwrap_or_default(),
    };
    let owns = query_one::<bool>(
        "SELECT pg_catalog.pg_has_role(relowner, 'USAGE') FROM pg_catalog.pg_class
          WHERE oid = $1 AND relkind IN ('r', 'p') AND relpersistence <> 't'",
        &[relation.into()],
    );
    match owns {
        None => raise(
            PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            format!("pylon_crdt: {name} is not a permanent table"),
        ),
        Some(false) => raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("pylon_crdt: must be owner of table {name} to enable it"),
        ),
        Some(true) => {}
    }
    let row = RowRef {
        entity: &entity,
        row_id: "",
    };
    let parsed = Arc::new(doc::parse_fields(&fields.0).or_raise(row));
    check_columns(&entity, &name, relation, id_column, &parsed);
    check_entity_is_ours(row, &name, relation);

    let registry = store::extension_table("_pylon_crdt_registry");
    as_owner(|| {
        Spi::run_with_args(
            &format!(
                "INSERT INTO {registry} (entity, relation, id_column, fields) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (entity) DO UPDATE SET relation = excluded.relation,
                     id_column = excluded.id_column, fields = excluded.fields"
            ),
            &[entity.as_str().into(), relation.into(), id_column.into(), fields.into()],
        )
    })
    .unwrap_or_else(|e| raise(PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT, format!("pylon_crdt: cannot register {name}: {e}")));

    drop_triggers(&name);
    let function = store::extension_object("pylon_crdt_trigger()");
    for (trigger, timing) in [
        ("pylon_crdt_update", "BEFORE UPDATE ON {rel} FOR EACH ROW"),
        ("pylon_crdt_insert", "AFTER INSERT ON {rel} FOR EACH ROW"),
        ("pylon_crdt_delete", "AFTER DELETE ON {rel} FOR EACH ROW"),
        (
            "pylon_crdt_truncate",
            "AFTER TRUNCATE ON {rel} FOR EACH STATEMENT",
        ),
        (
            "pylon_crdt_flush",
            "AFTER INSERT OR UPDATE OR DELETE ON {rel} FOR EACH STATEMENT",
        ),
    ] {
        let timing = timing.replace("{rel}", &name);
        Spi::run(&format!(
            "CREATE TRIGGER {trigger} {timing} EXECUTE FUNCTION {function}"
        ))
        .expect("CREATE TRIGGER");
    }

    // Existing rows: docs from their values (or, for rows that have docs, their projection).
    // CREATE TRIGGER above locked the table against writers until commit, so the rows stay
    // as read.
    each_row(&name, id_column, |id, values| {
        crate::batch::submit(crate::batch::Job {
            relid: relation,
            entity: entity.clone(),
            row_id: id,
            fields: parsed.clone(),
            patch: Value::Object(Map::new()),
            seed: Some(values.clone()),
            row: values,
            migration: None,
        });
    });
}

/// Calls `f` with every row of `table` (id, values), read through a cursor a thousand at a
/// time, then stores the docs `f` handed to jobs. The caller holds a lock that keeps writers
/// out, so the rows stay as read.
pub fn each_row(table: &str, id_column: &str, mut f: impl FnMut(String, Map<String, Value>)) {
    let query = format!(
        "SELECT t.{}::text, pg_catalog.to_jsonb(t) FROM {table} AS t",
        quote_identifier(id_column)
    );
    let cursor = Spi::connect_mut(|client| client.open_cursor(&query, &[]).detach_into_name());
    loop {
        // The rows' JSON is made as they are fetched: timestamptz values in UTC.
        let rows = in_utc(|| {
            Spi::connect_mut(|client| {
                let mut cursor = client.find_cursor(&cursor)?;
                let rows = cursor
                    .fetch(1000)?
                    .map(|r| Ok((r.get::<String>(1)?.unwrap_or_default(), r.get::<JsonB>(2)?)))
                    .collect::<Result<Vec<_>, pgrx::spi::Error>>()?;
                if rows.is_empty() {
                    drop(cursor); // closes the portal
                } else {
                    std::mem::forget(cursor); // keeps it open for the next chunk
                }
                Ok::<_, pgrx::spi::Error>(rows)
            })
        })
        .expect("reading the table");
        if rows.is_empty() {
            break;
        }
        for (id, values) in rows {
            if let Some(Value::Object(values)) = values.map(|v| v.0) {
                f(id, values);
            }
        }
    }
    crate::batch::flush();
}

/// Removes the triggers and the registration. Docs stay unless `drop_docs`.
#[pg_extern(volatile, parallel_unsafe)]
fn pylon_crdt_disable(relation: pgrx::PgRelation, drop_docs: default!(bool, "false")) -> bool {
    crate::error::check_writable("pylon_crdt_disable");
    pinned(|| disable(relation.oid(), drop_docs))
}

fn disable(relation: pg_sys::Oid, drop_docs: bool) -> bool {
    let Some((entity, table)) = EntityTable::registered_relation(relation) else {
        return false;
    };
    let owns = owns_table(relation);
    if owns != Some(true) {
        raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!(
                "pylon_crdt: must be owner of table {} to disable it",
                table.name
            ),
        );
    }
    drop_triggers(&table.name);
    // While still registered, so that the feed and listeners hear of the deletions.
    if drop_docs {
        store::delete_entity(&entity);
    }
    let registry = store::extension_table("_pylon_crdt_registry");
    as_owner(|| {
        Spi::run_with_args(
            &format!("DELETE FROM {registry} WHERE relation = $1"),
            &[relation.into()],
        )
    })
    .expect("unregistering");
    true
}

/// `pylon_crdt_set_notify`: turns a registered entity's notifications on or off.
pub fn set_notify(entity: &str, enabled: bool) {
    let Some(table) = EntityTable::registered(entity) else {
        raise(
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            format!(
                "pylon_crdt: entity \"{entity}\" is not registered (unregistered entities notify by pylon_crdt.notify_unregistered)"
            ),
        )
    };
    if owns_table(table.relid) != Some(true) {
        raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!(
                "pylon_crdt: must be owner of table {} to change its notifications",
                table.name
            ),
        );
    }
    crate::materialize::update_registration(table.relid, "notify", enabled.into());
}

/// Whether the current role owns (is a member of the owner of) a relation.
pub fn owns_table(relid: pg_sys::Oid) -> Option<bool> {
    query_one::<bool>(
        "SELECT pg_catalog.pg_has_role(relowner, 'USAGE') FROM pg_catalog.pg_class WHERE oid = $1",
        &[relid.into()],
    )
}

/// Entity names are global in `_pylon_crdt_snapshots`: registering a table under a name
/// would hand it the docs stored under that name. Refuse a name that is registered for
/// another table (42710), or whose docs belong to a same-named table the caller does not own
/// or, for a table-less entity, that the caller could not write anyway (42501).
fn check_entity_is_ours(entity: RowRef<'_>, table: &str, relation: pg_sys::Oid) {
    if let Some(existing) = EntityTable::registered(entity.entity) {
        if existing.relid != relation {
            raise(
                PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
                format!(
                    "pylon_crdt: {entity} is already registered for table {}; disable it first",
                    existing.name
                ),
            );
        }
        return;
    }
    match EntityTable::resolve(entity.entity) {
        Some(other) if other.relid != relation => {
            let owns = owns_table(other.relid);
            if owns != Some(true) {
                raise(
                    PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                    format!(
                        "pylon_crdt: {entity} names table {}, which this role does not own; choose another entity name for {table}",
                        other.name
                    ),
                );
            }
        }
        Some(_) => {}
        None => {
            let has_docs = as_owner(|| {
                query_one::<bool>(
                    &format!(
                        "SELECT true FROM {} WHERE entity = $1 LIMIT 1",
                        store::sidecar().table
                    ),
                    &[entity.entity.into()],
                )
            });
            if has_docs.is_some() {
                crate::materialize::check_access(entity, None, crate::materialize::Access::Write);
            }
        }
    }
}

const TRIGGERS: [&str; 5] = [
    "pylon_crdt_update",
    "pylon_crdt_insert",
    "pylon_crdt_delete",
    "pylon_crdt_truncate",
    "pylon_crdt_flush",
];

fn drop_triggers(table: &str) {
    for trigger in TRIGGERS {
        let exists = query_one::<bool>(
            "SELECT true FROM pg_catalog.pg_trigger WHERE tgrelid = $1::regclass AND tgname = $2",
            &[table.into(), trigger.into()],
        );
        if exists.is_some() {
            Spi::run(&format!("DROP TRIGGER {trigger} ON {table}")).expect("DROP TRIGGER");
        }
    }
}

/// Refuses columns that cannot hold their field's kind (42804), and a missing id column.
pub fn check_columns(
    entity: &str,
    table: &str,
    relid: pg_sys::Oid,
    id_column: &str,
    fields: &[Field],
) {
    let columns = columns_of(relid);
    if !columns.iter().any(|(n, _)| n == id_column) {
        raise(
            PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
            format!(
                "pylon_crdt: entity \"{entity}\": table {table} has no id column \"{id_column}\""
            ),
        );
    }
    if !identifies_rows(relid, id_column) {
        crate::error::raise_with_hint(
            PgSqlErrorCode::ERRCODE_INVALID_COLUMN_REFERENCE,
            format!(
                "pylon_crdt: entity \"{entity}\": id column \"{id_column}\" of table {table} does not identify a row by itself"
            ),
            "A row's doc is found by its id alone: the id column needs NOT NULL and a primary key or unique index on exactly that column.",
        );
    }
    for field in fields {
        let Some((_, ty)) = columns.iter().find(|(n, _)| *n == field.name) else {
            continue;
        };
        if !column_fits(field, ty) {
            raise(
                PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
                format!(
                    "pylon_crdt: entity \"{entity}\": field \"{}\" ({}) cannot be materialized into column \"{}\" of type {ty} in table {table}",
                    field.name,
                    field.kind.name(),
                    field.name
                ),
            );
        }
    }
}

/// One doc per row: rows that shared an id would share a doc (issue 16). The id column must
/// be NOT NULL with a valid unique index (or primary key) on exactly that column.
pub fn identifies_rows(relid: pg_sys::Oid, id_column: &str) -> bool {
    query_one::<bool>(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_attribute a
                          JOIN pg_catalog.pg_index i ON i.indrelid = a.attrelid
                         WHERE a.attrelid = $1 AND a.attname = $2 AND NOT a.attisdropped
                           AND a.attnotnull AND i.indisunique AND i.indisvalid
                           AND i.indpred IS NULL AND i.indexprs IS NULL
                           AND i.indnkeyatts = 1 AND i.indkey[0] = a.attnum)",
        &[relid.into(), id_column.into()],
    ) == Some(true)
}

/// Which column types can hold a kind's projection. jsonb and json hold anything.
pub fn column_fits(field: &Field, sql_type: &str) -> bool {
    // "character varying(20)" -> "character varying", "timestamp(3) with time zone" -> "timestamp with time zone"
    let base: String = {
        let mut out = String::new();
        let mut depth = 0;
        for c in sql_type.chars() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ if depth == 0 => out.push(c),
                _ => {}
            }
        }
        out.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    let ty = base.as_str();
    if matches!(ty, "jsonb" | "json") {
        return true;
    }
    let text = matches!(
        ty,
        "text" | "character varying" | "character" | "name" | "citext"
    );
    let integer = matches!(ty, "smallint" | "integer" | "bigint");
    let number = integer || matches!(ty, "numeric" | "real" | "double precision");
    match field.kind {
        FieldKind::LwwString | FieldKind::Text => {
            text || (field.base == BaseType::Datetime
                && matches!(
                    ty,
                    "timestamp with time zone" | "timestamp without time zone" | "date"
                ))
                || (field.base == BaseType::Id && (ty == "uuid" || integer))
        }
        FieldKind::LwwNumber | FieldKind::Counter => {
            if field.base == BaseType::Int {
                number
            } else {
                number && !integer
            }
        }
        FieldKind::LwwBool => ty == "boolean",
        FieldKind::List | FieldKind::MovableList | FieldKind::Tree => false,
    }
}

/// The trigger function installed by `pylon_crdt_enable`.
#[pg_trigger]
fn pylon_crdt_trigger<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, impl WhoAllocated>>, pgrx::PgTriggerError> {
    pinned(|| on_trigger(trigger))
}

fn on_trigger<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, impl WhoAllocated>>, pgrx::PgTriggerError> {
    let relid = trigger.relid()?;
    let statement = matches!(trigger.level(), PgTriggerLevel::Statement);
    if statement && !matches!(trigger.op()?, PgTriggerOperation::Truncate) {
        // pylon_crdt_flush: the statement's queued docs are stored now.
        crate::batch::statement_end();
        return Ok(None);
    }
    let Some((entity, table)) = EntityTable::registered_relation(relid) else {
        // Registration removed while the trigger stayed (e.g. a restored dump without it).
        return Ok(trigger.new().map(|t| t.into_owned()));
    };
    let fields = parsed_fields(
        table.fields.as_ref().expect("registered"),
        RowRef {
            entity: &entity,
            row_id: "",
        },
    );
    let rowtype = table.rowtype;
    // Only a datetime field can live in a timestamptz column.
    let utc = fields.iter().any(|f| f.base == BaseType::Datetime);
    let save = if table.flushes {
        Save::Batched
    } else {
        Save::Now
    };
    let id_of = |values: &Map<String, Value>| match values.get(&table.id_column) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => raise(
            PgSqlErrorCode::ERRCODE_NOT_NULL_VIOLATION,
            format!(
                "pylon_crdt: entity \"{entity}\": id column \"{}\" is null",
                table.id_column
            ),
        ),
        Some(other) => other.to_string(),
    };

    match trigger.op()? {
        PgTriggerOperation::Update => {
            let old = to_json(trigger.old().expect("UPDATE has OLD"), utc);
            let new = to_json(trigger.new().expect("UPDATE has NEW"), utc);
            let row_id = id_of(&new);
            if id_of(&old) != row_id {
                raise(
                    PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                    format!("pylon_crdt: entity \"{entity}\" row \"{}\": the id of a CRDT row cannot change", id_of(&old)),
                );
            }
            if ExtensionWrite::active(relid, &row_id) {
                return Ok(trigger.new().map(|t| t.into_owned()));
            }
            let row = RowRef {
                entity: &entity,
                row_id: &row_id,
            };
            let patch = rowpatch::from_update(&fields, &old, &new);
            if patch.as_object().is_some_and(|p| p.is_empty()) {
                // No CRDT column changed: the doc and the columns already agree.
                return Ok(trigger.new().map(|t| t.into_owned()));
            }
            if save == Save::Batched && crate::batch::wants_job() {
                // Many rows: the doc is written by a job; NEW as the statement made it is the
                // projection when the doc agreed with OLD, and is corrected if not.
                crate::batch::submit(crate::batch::Job {
                    relid,
                    entity: entity.clone(),
                    row_id: row_id.clone(),
                    fields: fields.clone(),
                    patch,
                    seed: Some(old),
                    row: new,
                    migration: None,
                });
                return Ok(trigger.new().map(|t| t.into_owned()));
            }
            let merged = row::merge(
                row,
                &fields,
                || Some(old.clone()),
                |d| doc::apply_patch(d, &fields, &patch),
                save,
                crate::notify::Kind::Write,
            );
            // Usually NEW already shows the projection (no concurrent peer edit): keep it.
            match row::stale_columns(&new, &merged.projection) {
                None => Ok(trigger.new().map(|t| t.into_owned())),
                Some(stale) => Ok(Some(with_projection(
                    trigger.new().expect("NEW"),
                    rowtype,
                    &stale,
                ))),
            }
        }
        PgTriggerOperation::Insert => {
            let new = to_json(trigger.new().expect("INSERT has NEW"), utc);
            let row_id = id_of(&new);
            if ExtensionWrite::active(relid, &row_id) {
                return Ok(None);
            }
            let patch = rowpatch::from_row(&fields, &new, false);
            if save == Save::Batched && crate::batch::wants_job() {
                crate::batch::submit(crate::batch::Job {
                    relid,
                    entity: entity.clone(),
                    row_id,
                    fields: fields.clone(),
                    patch,
                    seed: None,
                    row: new,
                    migration: None,
                });
                return Ok(None);
            }
            {
                let row = RowRef {
                    entity: &entity,
                    row_id: &row_id,
                };
                let merged = row::merge(
                    row,
                    &fields,
                    || None,
                    |d| doc::apply_patch(d, &fields, &patch),
                    save,
                    crate::notify::Kind::Write,
                );
                if let Some(stale) = row::stale_columns(&new, &merged.projection) {
                    table.update_columns(row, &stale);
                }
            }
            Ok(None)
        }
        PgTriggerOperation::Delete => {
            let old = to_json(trigger.old().expect("DELETE has OLD"), utc);
            let row_id = id_of(&old);
            let row = RowRef {
                entity: &entity,
                row_id: &row_id,
            };
            // The DELETE holds the row's lock.
            match save {
                Save::Batched => crate::batch::delete(row),
                Save::Now => {
                    store::delete(row);
                }
            }
            Ok(None)
        }
        PgTriggerOperation::Truncate => {
            store::delete_entity(&entity);
            Ok(None)
        }
    }
}

/// A fields spec and what it parses to.
type ParsedSpec = (Arc<Value>, Arc<Vec<Field>>);

thread_local! {
    /// The last registered fields spec the trigger parsed, and what it parsed to: a statement
    /// fires the trigger once per row with the same spec.
    static PARSED: RefCell<Option<ParsedSpec>> = const { RefCell::new(None) };
}

fn parsed_fields(spec: &Arc<Value>, entity: RowRef<'_>) -> Arc<Vec<Field>> {
    if let Some(fields) = PARSED.with(|p| {
        p.borrow()
            .as_ref()
            .filter(|(s, _)| Arc::ptr_eq(s, spec))
            .map(|(_, f)| f.clone())
    }) {
        return fields;
    }
    let fields = Arc::new(doc::parse_fields(spec).or_raise(entity));
    PARSED.with(|p| *p.borrow_mut() = Some((spec.clone(), fields.clone())));
    fields
}

/// A row as JSON: Postgres' own `row_to_json`, called directly (no SPI: it runs for every
/// row a statement writes). Its values are those `to_jsonb`, which `jsonb_populate_record`
/// reverses, gives for every column type a field can live in; with `utc` (the row has a
/// datetime field), timestamptz values in UTC.
fn to_json<A: WhoAllocated>(tuple: PgHeapTuple<'_, A>, utc: bool) -> Map<String, Value> {
    let datum = tuple.into_datum();
    // SAFETY: `row_to_json` takes one composite datum, which `datum` is (a trigger's OLD or
    // NEW tuple), and returns a json datum or NULL, which pgrx reads as `Json`.
    let call =
        || unsafe { pgrx::direct_function_call::<pgrx::Json>(pg_sys::row_to_json, &[datum]) };
    let json = if utc { in_utc(call) } else { call() };
    match json.map(|j| j.0) {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// NEW with its CRDT columns replaced by the projection.
fn with_projection<'a, A: WhoAllocated>(
    new: PgHeapTuple<'a, A>,
    rowtype: pg_sys::Oid,
    projection: &Value,
) -> PgHeapTuple<'a, pgrx::AllocatedByRust> {
    let arg = unsafe { pgrx::datum::DatumWithOid::new(new, rowtype) };
    query_one::<PgHeapTuple<'a, pgrx::AllocatedByRust>>(
        "SELECT pg_catalog.jsonb_populate_record($1, $2)",
        &[arg, JsonB(projection.clone()).into()],
    )
    .expect("jsonb_populate_record returns a row")
}
