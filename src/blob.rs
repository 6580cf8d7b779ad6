//! Stateless Loro functions on any bytea (issue 12): no table, no row, no lock, so they are
//! immutable and parallel safe. For Loro blobs kept in a column of one's own. Named `loro_*`,
//! after the format they take: `loro_merge(a, b)`, `SELECT loro_merge(doc) FROM drafts`,
//! `loro_value(doc)`. The work is in `doc::blob`.

use pgrx::prelude::*;
use pgrx::JsonB;

use crate::doc::{self, blob, DocError};
use crate::error::{raise, sqlstate_of};

/// Checks the inputs' sizes (54000 over `pylon_crdt.max_input_bytes`), runs `f` with Loro
/// panics caught, and raises its error naming the function.
fn run<T>(function: &str, inputs: &[(&str, usize)], f: impl FnOnce() -> Result<T, DocError>) -> T {
    let limit = crate::MAX_INPUT_BYTES.get().max(0) as usize;
    for (what, bytes) in inputs {
        if *bytes > limit {
            raise(
                PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
                format!("pylon_crdt: {function}: {what} of {bytes} bytes is over pylon_crdt.max_input_bytes ({limit})"),
            );
        }
    }
    doc::begin_call();
    doc::guarded(f)
        .unwrap_or_else(|e| raise(sqlstate_of(&e), format!("pylon_crdt: {function}: {e}")))
}

/// Both Loro blobs (snapshots or updates) merged into one snapshot. Also an aggregate:
/// `loro_merge(blob)` merges a column.
#[pg_extern(immutable, parallel_safe)]
fn loro_merge(a: &[u8], b: &[u8]) -> Vec<u8> {
    run(
        "loro_merge",
        &[("blob a", a.len()), ("blob b", b.len())],
        || blob::merge(a, b),
    )
}

/// The doc's whole value as JSON: each root container by name.
#[pg_extern(immutable, parallel_safe)]
fn loro_value(blob: &[u8]) -> JsonB {
    JsonB(run("loro_value", &[("blob", blob.len())], || {
        blob::value(blob)
    }))
}

/// The doc's pylon projection (its `row` map) under a fields spec, as
/// `pylon_crdt_project` gives for a stored row.
#[pg_extern(immutable, parallel_safe)]
fn loro_project(blob: &[u8], fields: JsonB) -> JsonB {
    JsonB(run("loro_project", &[("blob", blob.len())], || {
        let fields = doc::parse_fields(&fields.0)?;
        blob::projection(blob, &fields)
    }))
}

/// The doc's version vector, encoded as Loro encodes it (`pylon_crdt_version`'s format).
#[pg_extern(immutable, parallel_safe)]
fn loro_version(blob: &[u8]) -> Vec<u8> {
    run("loro_version", &[("blob", blob.len())], || {
        blob::version(blob)
    })
}

/// An encoded version vector as JSON: `{"<peer id>": <ops of that peer>}`.
#[pg_extern(immutable, parallel_safe)]
fn loro_version_json(version: &[u8]) -> JsonB {
    JsonB(run(
        "loro_version_json",
        &[("version vector", version.len())],
        || blob::version_json(version),
    ))
}

/// The update a peer at version `since` lacks from the doc.
#[pg_extern(immutable, parallel_safe)]
fn loro_update_since(blob: &[u8], since: &[u8]) -> Vec<u8> {
    run(
        "loro_update_since",
        &[("blob", blob.len()), ("version vector", since.len())],
        || blob::update_since(blob, since),
    )
}

/// Whether version `version` holds every op that version `other` holds.
#[pg_extern(immutable, parallel_safe)]
fn loro_version_includes(version: &[u8], other: &[u8]) -> bool {
    run(
        "loro_version_includes",
        &[
            ("version vector", version.len()),
            ("other version vector", other.len()),
        ],
        || blob::version_includes(version, other),
    )
}

pgrx::extension_sql!(
    r#"
-- A column of Loro blobs merged into one (NULLs skipped; no rows gives NULL, one row that
-- blob as it is). Merging is associative and commutative, so parallel plans combine partial
-- merges with the same function.
CREATE AGGREGATE @extschema@.loro_merge(pg_catalog.bytea) (
    sfunc = @extschema@.loro_merge,
    stype = pg_catalog.bytea,
    combinefunc = @extschema@.loro_merge,
    parallel = safe
);
"#,
    name = "loro_merge_aggregate",
    requires = [loro_merge]
);
