//! The pylon runtime's own CRDT crate (pylon-crdt 0.3.23, from crates.io) against the
//! extension over a real connection: docs the runtime wrote, whose fields are regular Loro
//! children, still read, take writes and merge; the runtime reads and edits the docs the
//! extension creates now, whose fields are mergeable children; and a doc the runtime created
//! for a row on its own merges with the extension's doc of that row where both sides'
//! fields are mergeable (counters, texts), instead of one side's field replacing the other's.

use pylon_crdt::{CrdtField, CrdtFieldKind};
use pylon_crdt_client_tests::*;
use serde_json::{json, Value};

const FIELDS: &str = r#"{"title":"string","body":"richtext","n":"int"}"#;

fn runtime_fields() -> Vec<CrdtField> {
    [
        ("title", CrdtFieldKind::LwwString),
        ("body", CrdtFieldKind::Text),
        ("n", CrdtFieldKind::LwwNumber),
    ]
    .into_iter()
    .map(|(name, kind)| CrdtField {
        name: name.into(),
        kind,
    })
    .collect()
}

fn apply_update(c: &mut Client, row_id: &str, update: &[u8]) -> Value {
    let fields: Value = serde_json::from_str(FIELDS).unwrap();
    c.query_one(
        "SELECT pylon_crdt_apply_update('RtNote', $1, $2, $3)",
        &[&row_id, &fields, &update],
    )
    .unwrap()
    .get(0)
}

fn apply_patch(c: &mut Client, row_id: &str, patch: Value) -> Value {
    let fields: Value = serde_json::from_str(FIELDS).unwrap();
    c.query_one(
        "SELECT pylon_crdt_apply_patch('RtNote', $1, $2, $3)",
        &[&row_id, &fields, &patch],
    )
    .unwrap()
    .get(0)
}

fn snapshot(c: &mut Client, row_id: &str) -> Vec<u8> {
    c.query_one("SELECT pylon_crdt_snapshot('RtNote', $1)", &[&row_id])
        .unwrap()
        .get(0)
}

/// The runtime's projection of a doc, with its numbers as the extension projects an int.
fn runtime_view(doc: &loro::LoroDoc) -> Value {
    let mut row = pylon_crdt::project_doc_to_json(doc, &runtime_fields());
    if let Some(n) = row["n"].as_f64() {
        row["n"] = json!(n as i64);
    }
    row
}

#[test]
fn docs_the_runtime_wrote_take_writes_and_merge() {
    let mut c = connect(&fresh_db("runtime_interop_old"));
    let runtime = loro::LoroDoc::new();
    pylon_crdt::apply_patch(
        &runtime,
        &runtime_fields(),
        &json!({"title": "by the runtime", "body": "shared text", "n": 1}),
    )
    .unwrap();
    apply_update(&mut c, "r1", &pylon_crdt::encode_snapshot(&runtime));

    // The extension edits the runtime's text container in place while the runtime edits it
    // too; both edits survive the exchange.
    let got = apply_patch(&mut c, "r1", json!({"body": "shared text!", "n": 2}));
    assert_eq!(got["body"], json!("shared text!"));
    let text = match pylon_crdt::root_map(&runtime).get("body") {
        Some(loro::ValueOrContainer::Container(loro::Container::Text(t))) => t,
        other => panic!("the runtime's body is not a text: {other:?}"),
    };
    text.insert(0, ">> ").unwrap();
    runtime.commit();
    let got = apply_update(&mut c, "r1", &pylon_crdt::encode_snapshot(&runtime));
    assert_eq!(got["body"], json!(">> shared text!"));
    assert_eq!(got["n"], json!(2));

    pylon_crdt::apply_update(&runtime, &snapshot(&mut c, "r1")).unwrap();
    assert_eq!(runtime_view(&runtime), got);
}

#[test]
fn the_runtime_reads_and_edits_the_docs_the_extension_creates() {
    let mut c = connect(&fresh_db("runtime_interop_new"));
    let made = apply_patch(
        &mut c,
        "r2",
        json!({"title": "made in postgres", "body": "hello", "n": 7}),
    );
    let runtime = loro::LoroDoc::new();
    pylon_crdt::apply_update(&runtime, &snapshot(&mut c, "r2")).unwrap();
    assert_eq!(runtime_view(&runtime), made);

    let seen = runtime.oplog_vv();
    pylon_crdt::apply_patch(
        &runtime,
        &runtime_fields(),
        &json!({"body": "hello from the runtime", "n": 8}),
    )
    .unwrap();
    let got = apply_update(
        &mut c,
        "r2",
        &pylon_crdt::encode_update_since(&runtime, &seen),
    );
    assert_eq!(got["body"], json!("hello from the runtime"));
    assert_eq!(got["n"], json!(8));
    assert_eq!(got["title"], json!("made in postgres"));
}

/// A doc the runtime (on the same Loro) creates with mergeable fields, as a client that never
/// loaded the server's doc would, merges with the extension's doc of that row.
#[test]
fn independently_created_docs_of_one_row_merge() {
    let mut c = connect(&fresh_db("runtime_interop_fresh"));
    let fields: Value = json!({"body": "richtext", "votes": {"type": "int", "crdt": "counter"}});
    let server: Value = c
        .query_one(
            "SELECT pylon_crdt_apply_patch('Fresh', 'r3', $1, $2)",
            &[
                &fields,
                &json!({"body": "from the server", "votes": {"increment": 5}}),
            ],
        )
        .unwrap()
        .get(0);
    assert_eq!(server["votes"], json!(5));

    let client = loro::LoroDoc::new();
    let row = pylon_crdt::root_map(&client);
    row.ensure_mergeable_text("body")
        .unwrap()
        .insert(0, "from the client")
        .unwrap();
    row.ensure_mergeable_counter("votes")
        .unwrap()
        .increment(3.0)
        .unwrap();
    client.commit();
    let merged: Value = c
        .query_one(
            "SELECT pylon_crdt_apply_update('Fresh', 'r3', $1, $2)",
            &[&fields, &client.export(loro::ExportMode::Snapshot).unwrap()],
        )
        .unwrap()
        .get(0);
    assert_eq!(merged["votes"], json!(8), "{merged}");
    let body = merged["body"].as_str().unwrap();
    assert!(
        body.contains("from the server") && body.contains("from the client"),
        "{body}"
    );
}
