//! Prints a stored doc's changes as Loro JSON: `cargo run --example dump_doc -- DB ENTITY ROW`.
use pylon_crdt_client_tests::*;
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let mut c = connect(&url_for(&a[1], "postgres"));
    let doc = stored_doc(&mut c, &a[2], &a[3]).unwrap();
    let json = doc
        .export_json_updates(&Default::default(), &doc.oplog_vv())
        .unwrap();
    println!("{}", serde_json::to_string_pretty(&json).unwrap());
    println!("deep: {}", doc_json(&doc));
}
