//! Replays inputs the hostile-input test saved after a lost connection
//! (`$PYLON_CRDT_WORK/crash-inputs/*.txt`), one by one on a fresh row each, and says which
//! ones crash a backend: `cargo run --example replay -- FILE...`.

use pylon_crdt_client_tests::*;
use serde_json::Value;
use std::time::Duration;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

fn main() {
    let url = fresh_db("replay");
    for (i, path) in std::env::args().skip(1).enumerate() {
        let text = std::fs::read_to_string(&path).unwrap();
        let mut fields = Value::Null;
        let mut patch = None;
        let mut bytes = None;
        let mut since = None;
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("fields ") {
                fields = serde_json::from_str(v).unwrap();
            } else if let Some(v) = line.strip_prefix("patch ") {
                patch = Some(serde_json::from_str::<Value>(v).unwrap());
            } else if let Some(v) = line.strip_prefix("update ") {
                bytes = Some(unhex(v));
            } else if let Some(v) = line.strip_prefix("since ") {
                since = Some(unhex(v));
            }
        }
        let mut c = connect_retry(&url, Duration::from_secs(60));
        let row = format!("replay{i}");
        let r = if let Some(p) = patch {
            c.query_one(
                "SELECT pylon_crdt_apply_patch('Replay', $1, $2, $3)::text",
                &[&row, &fields, &p],
            )
        } else if let Some(b) = bytes {
            c.query_one(
                "SELECT pylon_crdt_apply_update('Replay', $1, $2, $3)::text",
                &[&row, &fields, &b],
            )
        } else if let Some(b) = since {
            c.query_one(
                "SELECT length(pylon_crdt_update_since('Replay', $1, $2))::text",
                &[&row, &b],
            )
        } else {
            continue;
        };
        let verdict = match r {
            Ok(_) => "ok".to_string(),
            Err(e) => match e.as_db_error() {
                Some(db) => format!(
                    "ERROR {} {}",
                    db.code().code(),
                    db.message().chars().take(120).collect::<String>()
                ),
                None => format!("CONNECTION LOST: {e}"),
            },
        };
        println!("{path}: {verdict}");
    }
}
