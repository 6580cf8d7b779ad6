//! The extension and the pylon runtime serialize on the same advisory lock: keys computed in
//! this process (as the runtime computes them) equal the extension's, a lock taken by a
//! runtime-style connection blocks the extension's write to that row, and mixed writers lose
//! nothing.

use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use loro::{ExportMode, LoroCounter, LoroDoc, ValueOrContainer};
use postgres::GenericClient;
use pylon_crdt_client_tests::*;
use serde_json::{json, Value};

const ENTITY: &str = "Vote";

fn fields() -> Value {
    json!({"title": "string", "votes": {"type": "int", "crdt": "counter"}})
}

fn setup(name: &str, rows: &[&str]) -> String {
    let url = fresh_db(name);
    let mut c = connect(&url);
    c.batch_execute(r#"CREATE TABLE "Vote" (id text PRIMARY KEY, title text, votes int)"#)
        .unwrap();
    for r in rows {
        c.execute(r#"INSERT INTO "Vote" (id) VALUES ($1)"#, &[r])
            .unwrap();
    }
    url
}

/// What a pylon runtime replica does for one write, inside the caller's transaction: lock
/// with its own keys, select, decode, change, encode, upsert, materialize.
fn runtime_write(
    tx: &mut impl GenericClient,
    row_id: &str,
    increment: f64,
    title: Option<&str>,
) -> f64 {
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, $2)",
        &[&advisory_key(ENTITY), &advisory_key(row_id)],
    )
    .unwrap();
    runtime_change(tx, row_id, increment, title)
}

/// The runtime's select → decode → change → encode → upsert → update, lock already held.
fn runtime_change(
    tx: &mut impl GenericClient,
    row_id: &str,
    increment: f64,
    title: Option<&str>,
) -> f64 {
    let stored: Option<Vec<u8>> = tx
        .query_opt(
            "SELECT snapshot FROM _pylon_crdt_snapshots WHERE entity = $1 AND row_id = $2",
            &[&ENTITY, &row_id],
        )
        .unwrap()
        .map(|r| r.get(0));
    let doc = match &stored {
        Some(bytes) => decode(bytes).expect("stored snapshot decodes"),
        None => LoroDoc::new(),
    };
    doc.set_peer_id(rand::random::<u64>() % (u64::MAX - 1))
        .unwrap();
    let row = doc.get_map("row");
    let counter = match row.get("votes") {
        Some(ValueOrContainer::Container(loro::Container::Counter(c))) => c,
        _ => row.insert_container("votes", LoroCounter::new()).unwrap(),
    };
    counter.increment(increment).unwrap();
    if let Some(t) = title {
        row.insert("title", t).unwrap();
    }
    doc.commit();
    let snapshot = doc.export(ExportMode::Snapshot).unwrap();
    tx.execute(
        "INSERT INTO _pylon_crdt_snapshots (entity, row_id, snapshot, updated_at)
         VALUES ($1, $2, $3, now())
         ON CONFLICT (entity, row_id) DO UPDATE SET snapshot = excluded.snapshot, updated_at = now()",
        &[&ENTITY, &row_id, &snapshot],
    )
    .unwrap();
    let value = counter.get_value();
    let projection = doc_json(&doc);
    tx.execute(
        r#"UPDATE "Vote" SET votes = $2::float8::int, title = $3 WHERE id = $1"#,
        &[&row_id, &value, &projection["title"].as_str()],
    )
    .unwrap();
    value
}

/// Keys computed client-side equal `pylon_crdt_lock_key` for ASCII, empty, quoted,
/// unicode and long strings.
#[test]
fn client_side_keys_equal_pylon_crdt_lock_key() {
    let mut c = connect(&fresh_db("lock_keys"));
    let long = "x".repeat(10_000);
    let mut samples: Vec<String> = [
        "",
        "Note",
        "n1",
        "Vote",
        "a\"b'c; DROP TABLE x; --",
        "naïve 表 🎉",
        "with space",
        "\t\n",
        long.as_str(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    samples.extend((0..200).map(|i| format!("row-{i}-{}", "é".repeat(i % 7))));
    for s in &samples {
        let server: i32 = c
            .query_one("SELECT pylon_crdt_lock_key($1)", &[s])
            .unwrap()
            .get(0);
        assert_eq!(server, advisory_key(s), "key of {s:?}");
    }
}

/// A runtime-style connection holds the row lock (keys computed here) and rewrites the
/// snapshot itself: the extension's write to that row waits on exactly that lock until the
/// runtime commits, then builds on the runtime's write. The other way round, the runtime's
/// `pg_try_advisory_xact_lock` fails while an extension write is uncommitted.
#[test]
fn runtime_lock_blocks_extension_write_and_vice_versa() {
    let url = setup("interlock", &["r1", "r2"]);
    let mut c = connect(&url);
    let f = fields();
    c.query_one(
        "SELECT pylon_crdt_apply_patch('Vote', 'r1', $1, $2)",
        &[&f, &json!({"title": "base", "votes": 5})],
    )
    .unwrap();

    let mut runtime = connect(&url);
    let mut tx = runtime.transaction().unwrap();
    let after_runtime = runtime_write(&mut tx, "r1", 10.0, Some("by runtime"));
    assert_eq!(after_runtime, 15.0);

    let (done_tx, done_rx) = mpsc::channel();
    let (pid_tx, pid_rx) = mpsc::channel();
    let (url2, f2) = (url.clone(), f.clone());
    let ext = thread::spawn(move || {
        let mut e = connect(&url2);
        let pid: i32 = e.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
        pid_tx.send(pid).unwrap();
        let p: Value = e
            .query_one(
                "SELECT pylon_crdt_apply_patch('Vote', 'r1', $1, $2)",
                &[&f2, &json!({"votes": {"increment": 1}})],
            )
            .unwrap()
            .get(0);
        done_tx.send(p).unwrap();
    });
    let pid = pid_rx.recv().unwrap();
    assert!(
        done_rx.recv_timeout(Duration::from_millis(800)).is_err(),
        "the extension's write must wait for the runtime's lock"
    );
    let k1 = advisory_key(ENTITY) as u32 as i64;
    let k2 = advisory_key("r1") as u32 as i64;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let waiting: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
                   AND pid = $1 AND classid::int8 = $2 AND objid::int8 = $3 AND objsubid = 2",
                &[&pid, &k1, &k2],
            )
            .unwrap()
            .get(0);
        if waiting == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "extension backend not waiting on (key(entity), key(row))"
        );
        thread::sleep(Duration::from_millis(50));
    }
    // A different row is not blocked by the runtime's lock on r1.
    let mut other = connect(&url);
    other.batch_execute("SET statement_timeout = '5s'").unwrap();
    other
        .query_one(
            "SELECT pylon_crdt_apply_patch('Vote', 'r2', $1, $2)",
            &[&f, &json!({"votes": {"increment": 1}})],
        )
        .unwrap();

    tx.commit().unwrap();
    let p = done_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("extension write proceeds after the runtime commits");
    ext.join().unwrap();
    assert_eq!(
        p["votes"].as_f64(),
        Some(16.0),
        "built on the runtime's write: {p}"
    );
    assert_eq!(p["title"], "by runtime");

    // Extension holds the lock: the runtime cannot take it until commit.
    let mut ext = connect(&url);
    ext.batch_execute("BEGIN").unwrap();
    ext.query_one(
        "SELECT pylon_crdt_apply_patch('Vote', 'r1', $1, $2)",
        &[&f, &json!({"votes": {"increment": 1}})],
    )
    .unwrap();
    let try_lock = |c: &mut Client| -> bool {
        c.query_one(
            "SELECT pg_try_advisory_xact_lock($1, $2)",
            &[&advisory_key(ENTITY), &advisory_key("r1")],
        )
        .unwrap()
        .get(0)
    };
    assert!(
        !try_lock(&mut runtime),
        "runtime must not get the lock during an extension write"
    );
    ext.batch_execute("COMMIT").unwrap();
    assert!(
        try_lock(&mut runtime),
        "runtime gets the lock after the extension commits"
    );

    let votes: i32 = c
        .query_one(r#"SELECT votes FROM "Vote" WHERE id = 'r1'"#, &[])
        .unwrap()
        .get(0);
    assert_eq!(votes, 17);
    let problems = check_entity_by_hand(&mut c, ENTITY, Some("Vote"), &f);
    assert!(problems.is_empty(), "{problems:#?}");
}

/// 4 runtime-style writers (client-side Loro under the client-computed lock) and 4 extension
/// writers increment one counter at once: the total is exact.
#[test]
fn mixed_runtime_and_extension_writers_lose_nothing() {
    let per_writer = std::env::var("PYLON_CRDT_CLIENT_MIXED_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100usize);
    let url = setup("interlock_mixed", &["m1"]);
    let f = fields();
    let barrier = Arc::new(Barrier::new(8));
    let mut handles = Vec::new();
    for w in 0..8 {
        let (url, f, barrier) = (url.clone(), f.clone(), barrier.clone());
        handles.push(thread::spawn(move || {
            let mut c = connect(&url);
            barrier.wait();
            for _ in 0..per_writer {
                if w % 2 == 0 {
                    let mut tx = c.transaction().unwrap();
                    runtime_write(&mut tx, "m1", 1.0, None);
                    tx.commit().unwrap();
                } else {
                    c.query_one(
                        "SELECT pylon_crdt_apply_patch('Vote', 'm1', $1, $2)",
                        &[&f, &json!({"votes": {"increment": 1}})],
                    )
                    .unwrap();
                }
            }
        }));
    }
    for h in handles {
        h.join().expect("writer");
    }
    let mut c = connect(&url);
    let p: Value = c
        .query_one("SELECT pylon_crdt_project('Vote', 'm1', $1)", &[&f])
        .unwrap()
        .get(0);
    let total = 8 * per_writer;
    println!(
        "mixed writers: 4 runtime-style + 4 extension connections x {per_writer} = {total}; final {}",
        p["votes"]
    );
    assert_eq!(p["votes"].as_f64(), Some(total as f64), "lost updates");
    let problems = check_entity_by_hand(&mut c, ENTITY, Some("Vote"), &f);
    assert!(problems.is_empty(), "{problems:#?}");
}
