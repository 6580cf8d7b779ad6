// #[pg_test]s: every SQL function against a real Postgres with the extension installed.
// Included into `mod tests` in lib.rs (pgrx's #[pg_schema] needs an inline module).

use loro::{ExportMode, LoroDoc, VersionVector};
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};

use crate::doc::json::from_loro;

const NOTE_FIELDS: &str = r#"{"title":"string","body":"richtext","done":"bool","rank":"float"}"#;

fn sql_json(query: &str) -> Value {
    Spi::get_one::<JsonB>(query).expect("query").expect("non-null").0
}

fn sql_bytes(query: &str) -> Vec<u8> {
    Spi::get_one::<Vec<u8>>(query).expect("query").expect("non-null")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn patch(entity: &str, row: &str, fields: &str, patch: Value) -> Value {
    Spi::get_one_with_args::<JsonB>(
        "SELECT pylon_crdt_apply_patch($1, $2, $3::jsonb, $4::jsonb)",
        &[entity.into(), row.into(), fields.into(), patch.to_string().into()],
    )
    .expect("apply_patch")
    .expect("non-null")
    .0
}

fn apply_update(entity: &str, row: &str, fields: &str, update: &[u8]) -> Value {
    Spi::get_one_with_args::<JsonB>(
        "SELECT pylon_crdt_apply_update($1, $2, $3::jsonb, $4)",
        &[entity.into(), row.into(), fields.into(), update.into()],
    )
    .expect("apply_update")
    .expect("non-null")
    .0
}

fn snapshot(entity: &str, row: &str) -> Vec<u8> {
    Spi::get_one_with_args::<Vec<u8>>("SELECT pylon_crdt_snapshot($1, $2)", &[entity.into(), row.into()])
        .expect("snapshot")
        .expect("non-null")
}

/// SQLSTATE and message of the error `sql` raises, or "ok". Runs in a subtransaction
/// (a PL/pgSQL exception block), so the test's transaction stays usable.
fn error_of(sql: &str) -> String {
    Spi::run(
        "CREATE OR REPLACE FUNCTION pg_temp.error_of(q text) RETURNS text LANGUAGE plpgsql AS $$
         BEGIN EXECUTE q; RETURN 'ok';
         EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE || ' ' || SQLERRM; END $$",
    )
    .unwrap();
    Spi::get_one_with_args::<String>("SELECT pg_temp.error_of($1)", &[sql.into()]).unwrap().unwrap()
}

fn assert_error(sql: &str, sqlstate: &str, needles: &[&str]) {
    let got = error_of(sql);
    assert!(got.starts_with(sqlstate), "{sql}\n expected {sqlstate}, got: {got}");
    for needle in needles {
        assert!(got.contains(needle), "{sql}\n error should mention {needle:?}: {got}");
    }
}

fn peer_projection(doc: &LoroDoc) -> Value {
    let fields = crate::doc::parse_fields(&serde_json::from_str(NOTE_FIELDS).unwrap()).unwrap();
    crate::doc::project(doc, &fields).unwrap()
}

#[pg_test]
fn patch_projects_lww_and_text_fields() {
    let got = patch("Note", "n1", NOTE_FIELDS, json!({"title": "Hi", "body": "Hello", "done": true, "rank": 1.5}));
    assert_eq!(got, json!({"title": "Hi", "body": "Hello", "done": true, "rank": 1.5}));
    // Absent fields are untouched; null removes.
    let got = patch("Note", "n1", NOTE_FIELDS, json!({"body": "Hello world", "done": null}));
    assert_eq!(got, json!({"title": "Hi", "body": "Hello world", "done": null, "rank": 1.5}));
    let projected = sql_json(&format!("SELECT pylon_crdt_project('Note', 'n1', '{NOTE_FIELDS}')"));
    assert_eq!(projected, got);
}

#[pg_test]
fn manifest_form_fields_work_like_object_form() {
    let manifest = r#"[{"name":"id","type":"string","crdt":null},{"name":"title","type":"string","crdt":null},{"name":"body","type":"string","crdt":"text"}]"#;
    let got = patch("Note", "m1", manifest, json!({"title": "A", "body": "B"}));
    assert_eq!(got, json!({"title": "A", "body": "B"}));
    // The body is a LoroText container, as a peer sees it.
    let doc = LoroDoc::from_snapshot(&snapshot("Note", "m1")).unwrap();
    let body = doc.get_map("row").get("body").unwrap();
    assert!(matches!(body, loro::ValueOrContainer::Container(loro::Container::Text(_))));
}

#[pg_test]
fn patch_writes_the_same_named_table() {
    Spi::run(r#"CREATE TABLE "Note" (id text PRIMARY KEY, title text, body text, done boolean, rank float8, untouched text DEFAULT 'keep')"#).unwrap();
    Spi::run(r#"INSERT INTO "Note" (id) VALUES ('n1'), ('n2')"#).unwrap();
    patch("Note", "n1", NOTE_FIELDS, json!({"title": "Hi", "body": "Hello", "done": false, "rank": 2}));
    let row = sql_json(r#"SELECT to_jsonb(n) FROM "Note" n WHERE id = 'n1'"#);
    assert_eq!(row, json!({"id": "n1", "title": "Hi", "body": "Hello", "done": false, "rank": 2, "untouched": "keep"}));
    let other = sql_json(r#"SELECT to_jsonb(n) FROM "Note" n WHERE id = 'n2'"#);
    assert_eq!(other["title"], Value::Null, "only the patched row changes");
}

#[pg_test]
fn materializes_into_tables_with_awkward_names_and_typed_ids() {
    Spi::run(r#"CREATE TABLE "My ""Odd"" Table" (id int PRIMARY KEY, "Title" text)"#).unwrap();
    Spi::run(r#"INSERT INTO "My ""Odd"" Table" VALUES (7, NULL)"#).unwrap();
    patch(r#"My "Odd" Table"#, "7", r#"{"Title":"string"}"#, json!({"Title": "quoted; DROP TABLE x"}));
    let title = Spi::get_one::<String>(r#"SELECT "Title" FROM "My ""Odd"" Table" WHERE id = 7"#).unwrap();
    assert_eq!(title.as_deref(), Some("quoted; DROP TABLE x"));
}

#[pg_test]
fn snapshot_round_trips_through_a_plain_loro_doc() {
    patch("Note", "r1", NOTE_FIELDS, json!({"title": "T", "body": "some text", "done": true}));
    let bytes = snapshot("Note", "r1");
    let doc = LoroDoc::new();
    doc.import(&bytes).unwrap();
    assert_eq!(from_loro(&doc.get_map("row").get_deep_value()), json!({"title": "T", "body": "some text", "done": true}));
    // A doc edited outside Postgres goes back in whole.
    doc.get_map("row").insert("title", "from a peer").unwrap();
    doc.commit();
    let got = apply_update("Note", "r2", NOTE_FIELDS, &doc.export(ExportMode::Snapshot).unwrap());
    assert_eq!(got["title"], json!("from a peer"));
    assert_eq!(got["body"], json!("some text"));
}

#[pg_test]
fn missing_row_snapshot_is_an_empty_doc() {
    let doc = LoroDoc::from_snapshot(&snapshot("Nothing", "here")).unwrap();
    assert!(doc.oplog_vv().is_empty());
    assert_eq!(sql_json(r#"SELECT pylon_crdt_project('Nothing', 'here', '{"a":"string"}')"#), json!({"a": null}));
}

#[pg_test]
fn docs_edited_apart_converge_in_both_directions() {
    patch("Note", "c1", NOTE_FIELDS, json!({"title": "base", "body": "The quick brown fox"}));
    // A peer forks from the stored doc and edits the end of the text.
    let peer = LoroDoc::from_snapshot(&snapshot("Note", "c1")).unwrap();
    peer.set_peer_id(42).unwrap();
    let peer_base = peer.oplog_vv();
    let text = match peer.get_map("row").get("body").unwrap() {
        loro::ValueOrContainer::Container(loro::Container::Text(t)) => t,
        other => panic!("body is not text: {other:?}"),
    };
    text.update("The quick brown fox jumps", Default::default()).unwrap();
    peer.get_map("row").insert("done", true).unwrap();
    peer.commit();
    // Meanwhile the server edits the start of the text.
    let server_version = sql_bytes("SELECT pylon_crdt_version('Note', 'c1')");
    patch("Note", "c1", NOTE_FIELDS, json!({"body": "A quick brown fox", "rank": 3}));

    // Peer -> server.
    let got = apply_update("Note", "c1", NOTE_FIELDS, &peer.export(ExportMode::updates(&peer_base)).unwrap());
    assert_eq!(got["body"], json!("A quick brown fox jumps"), "both text edits survive");
    assert_eq!(got["done"], json!(true));
    // Server -> peer, from the version the peer had.
    let since = VersionVector::decode(&server_version).unwrap();
    assert_eq!(since, peer_base);
    let update = sql_bytes(&format!(
        "SELECT pylon_crdt_update_since('Note', 'c1', '\\x{}'::bytea)",
        hex(&peer.oplog_vv().encode())
    ));
    peer.import(&update).unwrap();
    assert_eq!(peer_projection(&peer), got, "peer and server converge");
    assert_eq!(peer.oplog_vv(), VersionVector::decode(&sql_bytes("SELECT pylon_crdt_version('Note', 'c1')")).unwrap());
}

#[pg_test]
fn update_since_returns_only_the_missing_ops() {
    // A body that does not compress away, so the snapshot outweighs one change's delta
    // (which carries its author and time too).
    let body: String = (0..3000u32)
        .scan(1u32, |x, _| {
            *x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            Some(char::from(b'a' + (*x >> 16) as u8 % 26))
        })
        .collect();
    patch("Note", "u1", NOTE_FIELDS, json!({"title": "one", "body": body}));
    let version = sql_bytes("SELECT pylon_crdt_version('Note', 'u1')");
    patch("Note", "u1", NOTE_FIELDS, json!({"title": "two"}));
    let update = sql_bytes(&format!("SELECT pylon_crdt_update_since('Note', 'u1', '\\x{}'::bytea)", hex(&version)));
    let full = snapshot("Note", "u1");
    assert!(update.len() * 4 < full.len(), "delta {} vs snapshot {}", update.len(), full.len());
    // It holds exactly the one new change: on top of the old version it gives the new state.
    let meta = LoroDoc::decode_import_blob_meta(&update, false).unwrap();
    assert_eq!(meta.change_num, 1);
    let old = LoroDoc::new();
    old.import(&full).unwrap();
    let at_version = old.fork_at(&old.vv_to_frontiers(&VersionVector::decode(&version).unwrap())).unwrap();
    assert_eq!(from_loro(&at_version.get_map("row").get("title").unwrap().get_deep_value()), json!("one"));
    at_version.import(&update).unwrap();
    assert_eq!(from_loro(&at_version.get_map("row").get("title").unwrap().get_deep_value()), json!("two"));
    // Up to date: nothing is missing.
    let current = sql_bytes("SELECT pylon_crdt_version('Note', 'u1')");
    let empty = sql_bytes(&format!("SELECT pylon_crdt_update_since('Note', 'u1', '\\x{}'::bytea)", hex(&current)));
    assert_eq!(LoroDoc::decode_import_blob_meta(&empty, false).unwrap().change_num, 0);
}

#[pg_test]
fn rolled_back_write_leaves_no_snapshot_and_no_column_change() {
    Spi::run(r#"CREATE TABLE "Note" (id text PRIMARY KEY, title text)"#).unwrap();
    Spi::run(r#"INSERT INTO "Note" VALUES ('rb', 'before')"#).unwrap();
    Spi::run(
        r#"DO $$ BEGIN
             PERFORM pylon_crdt_apply_patch('Note', 'rb', '{"title":"string"}', '{"title":"after"}');
             RAISE EXCEPTION 'roll back';
           EXCEPTION WHEN raise_exception THEN NULL; END $$"#,
    )
    .unwrap();
    assert_eq!(Spi::get_one::<String>(r#"SELECT title FROM "Note" WHERE id = 'rb'"#).unwrap().as_deref(), Some("before"));
    let count = Spi::get_one::<i64>("SELECT count(*) FROM _pylon_crdt_snapshots WHERE row_id = 'rb'").unwrap();
    assert_eq!(count, Some(0));
}

#[pg_test]
fn advisory_key_is_the_runtimes_default_hasher_key() {
    use std::hash::{Hash, Hasher};
    for s in ["Note", "n1", "", "héllo wörld", "a;b'c\"d"] {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        s.hash(&mut hasher);
        let expected = (hasher.finish() & 0xffff_ffff) as u32 as i32;
        let got = Spi::get_one_with_args::<i32>("SELECT pylon_crdt_lock_key($1)", &[s.into()]).unwrap();
        assert_eq!(got, Some(expected), "key of {s:?}");
    }
}

#[pg_test]
fn write_holds_the_advisory_lock_until_the_transaction_ends() {
    patch("Note", "lk", NOTE_FIELDS, json!({"title": "x"}));
    let held = Spi::get_one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_locks
           WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND objsubid = 2 AND granted
             AND classid::int8 = (pylon_crdt_lock_key('Note')::int8 & 4294967295)
             AND objid::int8 = (pylon_crdt_lock_key('lk')::int8 & 4294967295))",
    )
    .unwrap();
    assert_eq!(held, Some(true));
}

#[pg_test]
fn delete_removes_the_doc() {
    patch("Note", "d1", NOTE_FIELDS, json!({"title": "x"}));
    assert_eq!(Spi::get_one::<bool>("SELECT pylon_crdt_delete('Note', 'd1')").unwrap(), Some(true));
    assert_eq!(Spi::get_one::<bool>("SELECT pylon_crdt_delete('Note', 'd1')").unwrap(), Some(false));
    assert_eq!(sql_json(r#"SELECT pylon_crdt_project('Note', 'd1', '{"title":"string"}')"#), json!({"title": null}));
}

#[pg_test]
fn bad_input_raises_fitting_sqlstates_and_writes_nothing() {
    let f = NOTE_FIELDS;
    assert_error(r#"SELECT pylon_crdt_apply_patch('Note', 'e1', '{"title":"strin"}', '{}')"#, "22023", &["Note", "e1", "title"]);
    assert_error(
        r#"SELECT pylon_crdt_apply_patch('Note', 'e1', '{"done":{"type":"bool","crdt":"counter"}}', '{}')"#,
        "22023",
        &["Note", "e1", "done", "counter"],
    );
    assert_error(&format!(r#"SELECT pylon_crdt_apply_patch('Note', 'e1', '{f}', '{{"title": 5}}')"#), "22023", &["Note", "e1", "title", "string"]);
    assert_error(&format!(r#"SELECT pylon_crdt_apply_patch('Note', 'e1', '{f}', '{{"nope": 5}}')"#), "22023", &["nope"]);
    assert_error(&format!(r#"SELECT pylon_crdt_apply_patch('Note', 'e1', '{f}', '[1]')"#), "22023", &["Note", "e1", "object"]);
    // One bad field spoils the whole patch: the good one is not written either.
    assert_error(&format!(r#"SELECT pylon_crdt_apply_patch('Note', 'e1', '{f}', '{{"title": "ok", "done": "yes"}}')"#), "22023", &["done"]);
    assert_error(&format!(r#"SELECT pylon_crdt_apply_update('Note', 'e1', '{f}', '\xdeadbeef')"#), "22P03", &["Note", "e1"]);
    assert_error("SELECT pylon_crdt_update_since('Note', 'e1', '\\x0102')", "22P03", &["Note", "e1", "version"]);
    assert_error("SELECT pylon_crdt_apply_patch('Unregistered', 'e1', '{}')", "42P01", &["Unregistered"]);
    assert_error("SELECT pylon_crdt_project('Unregistered', 'e1')", "42P01", &["Unregistered"]);
    let count = Spi::get_one::<i64>("SELECT count(*) FROM _pylon_crdt_snapshots WHERE row_id = 'e1'").unwrap();
    assert_eq!(count, Some(0));
}

#[pg_test]
fn roles_without_rights_on_the_entity_table_are_refused() {
    Spi::run(r#"CREATE TABLE "Note" (id text PRIMARY KEY, title text)"#).unwrap();
    Spi::run(r#"INSERT INTO "Note" VALUES ('p1', NULL)"#).unwrap();
    Spi::run("CREATE ROLE pylon_reader").unwrap();
    Spi::run(r#"GRANT SELECT ON "Note" TO pylon_reader"#).unwrap();
    patch("Note", "p1", r#"{"title":"string"}"#, json!({"title": "owner's"}));
    Spi::run("SET LOCAL ROLE pylon_reader").unwrap();
    assert_error(r#"SELECT pylon_crdt_apply_patch('Note', 'p1', '{"title":"string"}', '{"title":"x"}')"#, "42501", &["Note", "p1", "UPDATE"]);
    assert_error("SELECT pylon_crdt_apply_update('Note', 'p1', '{}', '\\x00')", "42501", &["UPDATE"]);
    assert_error("SELECT pylon_crdt_delete('Note', 'p1')", "42501", &["DELETE"]);
    // Reading is allowed with SELECT; the sidecar itself is not reachable.
    assert_eq!(sql_json(r#"SELECT pylon_crdt_project('Note', 'p1', '{"title":"string"}')"#), json!({"title": "owner's"}));
    assert_error("SELECT count(*) FROM _pylon_crdt_snapshots", "42501", &[]);
    assert_error("SELECT pylon_crdt_snapshot('TablelessEntity', 'x')", "42501", &["_pylon_crdt_snapshots"]);
    Spi::run("RESET ROLE").unwrap();
}

const ALL_KINDS: &str = r#"{"title":"string","body":"richtext","votes":{"type":"int","crdt":"counter"},
  "tags":{"type":"string","crdt":"list"},"order":{"type":"string","crdt":"movable-list"},
  "outline":{"type":"string","crdt":"tree"}}"#;

#[pg_test]
fn every_kind_goes_through_sql_and_matches_what_a_peer_sees() {
    patch("Board", "b1", ALL_KINDS, json!({"title": "t", "body": "hello", "votes": 3, "tags": ["a", "b"], "order": ["x", "y", "z"]}));
    patch("Board", "b1", ALL_KINDS, json!({"votes": {"increment": 4}, "tags": {"push": "c"}, "order": {"move": [0, 2]}}));
    let got = patch("Board", "b1", ALL_KINDS, json!({"outline": {"create": {"parent": null, "data": {"title": "root"}}}}));
    let root = got["outline"][0]["id"].as_str().unwrap().to_owned();
    let got = patch("Board", "b1", ALL_KINDS, json!({"outline": {"create": {"parent": root, "data": {"title": "child"}}}}));
    assert_eq!(got["votes"], json!(7));
    assert_eq!(got["tags"], json!(["a", "b", "c"]));
    assert_eq!(got["order"], json!(["y", "z", "x"]));
    assert_eq!(got["outline"][0]["data"], json!({"title": "root"}));
    assert_eq!(got["outline"][0]["children"][0]["data"], json!({"title": "child"}));

    // A plain Loro peer sees the same values under the root map `row`, in Loro's containers.
    let peer = LoroDoc::from_snapshot(&snapshot("Board", "b1")).unwrap();
    let row = peer.get_map("row");
    let container = |k: &str| match row.get(k) {
        Some(loro::ValueOrContainer::Container(c)) => c,
        other => panic!("{k} is not a container: {other:?}"),
    };
    assert!(matches!(container("body"), loro::Container::Text(t) if t.to_string() == "hello"));
    assert!(matches!(container("votes"), loro::Container::Counter(c) if c.get_value() == 7.0));
    assert!(matches!(container("tags"), loro::Container::List(_)));
    assert!(matches!(container("order"), loro::Container::MovableList(_)));
    assert!(matches!(container("outline"), loro::Container::Tree(_)));
    let fields = crate::doc::parse_fields(&serde_json::from_str(ALL_KINDS).unwrap()).unwrap();
    assert_eq!(crate::doc::project(&peer, &fields).unwrap(), got);
    assert_eq!(sql_json(&format!("SELECT pylon_crdt_project('Board', 'b1', '{ALL_KINDS}')")), got);
}

#[pg_test]
fn concurrent_counter_increments_from_a_peer_add_up() {
    patch("Board", "k1", ALL_KINDS, json!({"votes": 10}));
    let peer = LoroDoc::from_snapshot(&snapshot("Board", "k1")).unwrap();
    peer.set_peer_id(7).unwrap();
    let base = peer.oplog_vv();
    match peer.get_map("row").get("votes") {
        Some(loro::ValueOrContainer::Container(loro::Container::Counter(c))) => c.increment(5.0).unwrap(),
        other => panic!("votes is not a counter: {other:?}"),
    }
    peer.commit();
    patch("Board", "k1", ALL_KINDS, json!({"votes": {"increment": 2}}));
    let got = apply_update("Board", "k1", ALL_KINDS, &peer.export(ExportMode::updates(&base)).unwrap());
    assert_eq!(got["votes"], json!(17));
}

#[pg_test]
fn bad_ops_for_a_kind_write_nothing() {
    patch("Board", "x1", ALL_KINDS, json!({"tags": ["a"]}));
    let before = snapshot("Board", "x1");
    assert_error(&format!(r#"SELECT pylon_crdt_apply_patch('Board', 'x1', '{ALL_KINDS}', '{{"tags": {{"delete": [0, 5]}}}}')"#), "22023", &["Board", "x1", "tags", "out of range"]);
    assert_error(&format!(r#"SELECT pylon_crdt_apply_patch('Board', 'x1', '{ALL_KINDS}', '{{"tags": {{"move": [0, 0]}}}}')"#), "22023", &["tags", "movable-list"]);
    assert_error(&format!(r#"SELECT pylon_crdt_apply_patch('Board', 'x1', '{ALL_KINDS}', '{{"outline": {{"delete": "1@2"}}}}')"#), "22023", &["outline", "does not exist"]);
    assert_error(&format!(r#"SELECT pylon_crdt_apply_patch('Board', 'x1', '{ALL_KINDS}', '{{"votes": true}}')"#), "22023", &["votes"]);
    assert_eq!(snapshot("Board", "x1"), before);
}

#[pg_test]
fn alter_converts_every_doc_into_the_new_containers_a_peer_merges() {
    Spi::run("CREATE TABLE altered (id text PRIMARY KEY, title text, votes int, tags jsonb)").unwrap();
    Spi::run(
        r#"SELECT pylon_crdt_enable('altered', '{"title":"string","votes":"int","tags":{"type":"string","crdt":"list"}}')"#,
    )
    .unwrap();
    Spi::run(r#"INSERT INTO altered VALUES ('a1', 'Hi', 5, '["x","y"]')"#).unwrap();
    // A Loro peer copies the doc before the change.
    let peer = LoroDoc::from_snapshot(&snapshot("altered", "a1")).unwrap();
    let migrated = Spi::get_one::<i64>(
        r#"SELECT pylon_crdt_alter('altered', '{"headline":"richtext","votes":{"type":"int","crdt":"counter"},"tags":{"type":"string","crdt":"movable-list"}}', '{"title":"headline"}')"#,
    )
    .unwrap();
    assert_eq!(migrated, Some(1));
    // The peer merges the change as ordinary updates and finds the new containers.
    peer.import(&sql_bytes(&format!(
        "SELECT pylon_crdt_update_since('altered', 'a1', '\\x{}')",
        hex(&peer.oplog_vv().encode())
    )))
    .unwrap();
    let row = peer.get_map("row");
    assert!(row.get("title").is_none(), "the old key is deleted");
    assert!(matches!(row.get("headline"), Some(loro::ValueOrContainer::Container(loro::Container::Text(t))) if t.to_string() == "Hi"));
    assert!(matches!(row.get("votes"), Some(loro::ValueOrContainer::Container(loro::Container::Counter(c))) if c.get_value() == 5.0));
    assert!(matches!(row.get("tags"), Some(loro::ValueOrContainer::Container(loro::Container::MovableList(l))) if l.len() == 2));
    assert_eq!(
        sql_json("SELECT to_jsonb(a) - 'id' FROM altered a"),
        json!({"headline": "Hi", "votes": 5, "tags": ["x", "y"]})
    );
}
