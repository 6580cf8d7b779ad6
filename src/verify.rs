//! `pylon_crdt_verify`: finds rows whose stored doc does not decode, or whose materialized
//! columns disagree with their doc's projection. Used by the crash tests; useful after a
//! restore or a manual edit of a table.

use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::Value;

use crate::doc;
use crate::error::{require_superuser, RowRef};
use crate::materialize::{check_access, Access, EntityTable};
use crate::search_path::pinned;
use crate::store::{self, as_owner, query_column};

/// Rows of `entity` (all entities when NULL) with a problem; none when all is well.
#[pg_extern(volatile, parallel_unsafe)]
fn pylon_crdt_verify(
    entity: default!(Option<&str>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(entity, String),
        name!(row_id, String),
        name!(problem, String),
    ),
> {
    TableIterator::new(pinned(|| problems(entity)))
}

/// (entity, row_id, problem) for every row with a problem.
fn problems(entity: Option<&str>) -> Vec<(String, String, String)> {
    crate::batch::flush();
    let mut problems = Vec::new();

    // Every stored doc (and log) must decode.
    let keys = stored_rows(entity);
    for (e, r) in &keys {
        if let Err(message) = decodes(e, r) {
            problems.push((e.clone(), r.clone(), message));
        }
    }

    // Registered tables: every row's columns equal its doc's projection, and no doc is orphaned.
    let registry = store::extension_table("_pylon_crdt_registry");
    let entities = query_column::<String>(
        &format!(
            "SELECT entity FROM {registry} WHERE $1::text IS NULL OR entity = $1 ORDER BY entity"
        ),
        &[entity.into()],
    );
    // The sql_drop event trigger drops the registration of a dropped table; one left behind
    // (the table dropped while event triggers were off) is reported, never an error here.
    let stale = query_column::<String>(
        &format!(
            "SELECT entity FROM {registry} r WHERE ($1::text IS NULL OR entity = $1)
                AND NOT EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid = r.relation)
              ORDER BY entity"
        ),
        &[entity.into()],
    );
    for name in stale {
        problems.push((
            name,
            String::new(),
            "registered table no longer exists: the next DROP of any table drops this registration and its docs".into(),
        ));
    }
    for name in entities {
        let Some(table) = EntityTable::registered(&name) else {
            continue;
        };
        check_access(
            RowRef {
                entity: &name,
                row_id: "",
            },
            Some(&table),
            Access::Read,
        );
        let fields = match doc::parse_fields(table.fields.as_ref().expect("registered")) {
            Ok(f) => f,
            Err(e) => {
                problems.push((name.clone(), String::new(), e.to_string()));
                continue;
            }
        };
        let ids = query_column::<String>(
            &format!(
                "SELECT t.{}::text FROM {} AS t",
                pgrx::spi::quote_identifier(&table.id_column),
                table.name
            ),
            &[],
        );
        let mut with_rows = std::collections::HashSet::new();
        for id in ids {
            let row = RowRef {
                entity: &name,
                row_id: &id,
            };
            let stored = store::fetch(row, None);
            if !stored.exists() {
                problems.push((name.clone(), id.clone(), "row has no doc".into()));
                continue;
            }
            with_rows.insert(id.clone());
            if problems.iter().any(|(e, r, _)| *e == name && *r == id) {
                continue; // does not decode: reported above
            }
            let Ok(projection) = crate::row::read(row, Some(&table), |d| doc::project(d, &fields))
            else {
                continue;
            };
            let differing = differing_columns(&table, row, &projection);
            if !differing.is_empty() {
                problems.push((
                    name.clone(),
                    id,
                    format!(
                        "columns differ from the doc's projection: {}",
                        differing.join(", ")
                    ),
                ));
            }
        }
        for (_, id) in keys.iter().filter(|(e, _)| *e == name) {
            if !with_rows.contains(id)
                && !table.row_exists(RowRef {
                    entity: &name,
                    row_id: id,
                })
            {
                problems.push((name.clone(), id.clone(), "doc without a row".into()));
            }
        }
    }
    problems
}

/// Whether the stored doc decodes. SPI first, then only pure Loro work inside `guarded`, so
/// a Loro panic on corrupt bytes is a finding, not an abort.
fn decodes(entity: &str, row_id: &str) -> Result<(), String> {
    let (snapshot, log) = stored_blobs(RowRef { entity, row_id });
    doc::begin_call();
    let doc = doc::OwnedDoc::new(loro::LoroDoc::new());
    doc::guarded(|| {
        if let Some(bytes) = &snapshot {
            doc::import(&doc, bytes)
                .map_err(|e| doc::DocError::Bytes(format!("snapshot does not decode: {e}")))?;
        }
        for update in &log {
            doc::import(&doc, update)
                .map_err(|e| doc::DocError::Bytes(format!("update log does not apply: {e}")))?;
        }
        Ok(())
    })
    .map_err(|e| match e {
        doc::DocError::Bytes(m) => m,
        other => other.to_string(),
    })
}

/// The field columns whose value differs from what the projection would write there.
fn differing_columns(table: &EntityTable, row: RowRef<'_>, projection: &Value) -> Vec<String> {
    let Some(current) = table.row_values(row) else {
        return vec![];
    };
    // Normalize through the column types, as materialization would, and render the result
    // as `row_values` does (timestamptz in UTC).
    let query = format!(
        "SELECT to_jsonb(pg_catalog.jsonb_populate_record(NULL::{}, $1))",
        table.name
    );
    let wanted = crate::search_path::in_utc(|| {
        crate::store::query_one::<JsonB>(&query, &[JsonB(projection.clone()).into()])
    })
    .map(|j| j.0);
    let Some(Value::Object(wanted)) = wanted else {
        return vec![];
    };
    projection
        .as_object()
        .into_iter()
        .flat_map(|p| p.keys())
        .filter(|k| current.contains_key(*k) && current.get(*k) != wanted.get(*k))
        .cloned()
        .collect()
}

/// Every stored doc's version as `{"peer": counter}` (of `entity`, or of all), read from the
/// stored bytes' headers: what `pylon_crdt_verify_versions` on another node compares with.
#[pg_extern(volatile, parallel_unsafe)]
fn pylon_crdt_versions(
    entity: default!(Option<&str>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(entity, String),
        name!(row_id, String),
        name!(version, JsonB),
    ),
> {
    require_superuser("pylon_crdt_versions", "reads every doc");
    TableIterator::new(pinned(|| versions(entity)))
}

/// Compares this node's docs with another node's versions (`jsonb_agg` of that node's
/// `pylon_crdt_versions()`): a row per doc that one node has and the other has not, or that
/// holds changes the other lacks. None once the nodes have converged.
#[pg_extern(volatile, parallel_unsafe)]
fn pylon_crdt_verify_versions(
    other: JsonB,
) -> TableIterator<
    'static,
    (
        name!(entity, String),
        name!(row_id, String),
        name!(problem, String),
    ),
> {
    require_superuser("pylon_crdt_verify_versions", "reads every doc");
    let mut theirs = std::collections::BTreeMap::new();
    for item in other.0.as_array().into_iter().flatten() {
        let key = |k: &str| item.get(k).and_then(Value::as_str).map(str::to_owned);
        if let (Some(e), Some(r)) = (key("entity"), key("row_id")) {
            theirs.insert((e, r), item.get("version").cloned().unwrap_or(Value::Null));
        }
    }
    let mut problems = Vec::new();
    let mut ours = std::collections::BTreeMap::new();
    pinned(|| {
        for (e, r, v) in versions(None) {
            ours.insert((e, r), v.0);
        }
    });
    for ((e, r), here) in &ours {
        match theirs.get(&(e.clone(), r.clone())) {
            None => problems.push((e.clone(), r.clone(), "only on this node".to_owned())),
            Some(there) => {
                if let Some(difference) = doc::blob::version_difference(here, there) {
                    problems.push((e.clone(), r.clone(), difference));
                }
            }
        }
    }
    for (e, r) in theirs.keys() {
        if !ours.contains_key(&(e.clone(), r.clone())) {
            problems.push((e.clone(), r.clone(), "only on the other node".to_owned()));
        }
    }
    TableIterator::new(problems)
}

/// Every (entity, row id) with a stored doc or log entries, of `entity` or of all, in order.
fn stored_rows(entity: Option<&str>) -> Vec<(String, String)> {
    let sidecar = store::sidecar();
    let keys: Vec<JsonB> = as_owner(|| {
        query_column::<JsonB>(
            &format!(
                "SELECT jsonb_build_array(entity, row_id) FROM {} WHERE $1::text IS NULL OR entity = $1
                 UNION SELECT jsonb_build_array(entity, row_id) FROM {} WHERE $1::text IS NULL OR entity = $1
                 ORDER BY 1",
                sidecar.table, sidecar.log
            ),
            &[entity.into()],
        )
    });
    keys.into_iter()
        .filter_map(|key| {
            let (e, r) = (key.0[0].as_str()?, key.0[1].as_str()?);
            Some((e.to_owned(), r.to_owned()))
        })
        .collect()
}

/// A row's stored bytes: its snapshot, if any, and its log entries, oldest first.
fn stored_blobs(row: RowRef<'_>) -> (Option<Vec<u8>>, Vec<Vec<u8>>) {
    (
        store::fetch(row, None).snapshot,
        store::log_since(row, None),
    )
}

fn versions(entity: Option<&str>) -> Vec<(String, String, JsonB)> {
    crate::batch::flush();
    let rows = stored_rows(entity);
    let mut out = Vec::with_capacity(rows.len());
    for (e, r) in rows {
        let row = RowRef {
            entity: &e,
            row_id: &r,
        };
        let (snapshot, log) = stored_blobs(row);
        let blobs: Vec<&[u8]> = snapshot
            .iter()
            .map(Vec::as_slice)
            .chain(log.iter().map(Vec::as_slice))
            .collect();
        let version = doc::guarded(|| doc::blob::stored_version(&blobs))
            .unwrap_or_else(|err| crate::error::raise_doc(row, err));
        out.push((e, r, JsonB(version)));
    }
    out
}
