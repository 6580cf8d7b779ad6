//! Concurrent writers over real connections: counters add up exactly, edits to different
//! regions of one text survive, and the row lock is per row.

use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use loro::{ExportMode, VersionVector};
use pylon_crdt_client_tests::*;
use serde_json::{json, Value};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// 16 connections × 500 `{"increment":1}` on one counter row end at exactly 8000: in the
/// projection, the materialized column and the snapshot decoded here with loro. Every call
/// returns a distinct value 1..=8000, so no write ever saw a stale doc.
///
/// Every writer makes all of its calls, however long they take: a count that stopped at a
/// deadline would pass with fewer writes than planned.
#[test]
fn counter_increments_from_16_connections_sum_exactly() {
    let conns = env_usize("PYLON_CRDT_CLIENT_CONNECTIONS", 16);
    let per_conn = env_usize("PYLON_CRDT_CLIENT_INCREMENTS", 500);
    let planned = conns * per_conn;
    let url = fresh_db("counter");
    let mut c = connect(&url);
    c.batch_execute(
        r#"CREATE TABLE "Counter" (id text PRIMARY KEY, votes int);
           INSERT INTO "Counter" VALUES ('c1', NULL);"#,
    )
    .unwrap();
    let fields = json!({"votes": {"type": "int", "crdt": "counter"}});
    let patch = json!({"votes": {"increment": 1}});

    let start = Instant::now();
    let barrier = Arc::new(Barrier::new(conns));
    let handles: Vec<_> = (0..conns)
        .map(|_| {
            let (url, fields, patch, barrier) =
                (url.clone(), fields.clone(), patch.clone(), barrier.clone());
            thread::spawn(move || {
                let mut c = connect(&url);
                let stmt = c
                    .prepare("SELECT pylon_crdt_apply_patch('Counter', 'c1', $1, $2)")
                    .unwrap();
                barrier.wait();
                let mut seen = Vec::with_capacity(per_conn);
                for _ in 0..per_conn {
                    let p: Value = c.query_one(&stmt, &[&fields, &patch]).unwrap().get(0);
                    seen.push(p["votes"].as_f64().expect("votes is a number") as i64);
                }
                seen
            })
        })
        .collect();
    let mut seen: Vec<i64> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("writer thread"))
        .collect();
    let elapsed = start.elapsed();
    seen.sort_unstable();
    let total = seen.len();

    let projection: Value = c
        .query_one("SELECT pylon_crdt_project('Counter', 'c1', $1)", &[&fields])
        .unwrap()
        .get(0);
    let column: i32 = c
        .query_one(r#"SELECT votes FROM "Counter" WHERE id = 'c1'"#, &[])
        .unwrap()
        .get(0);
    let snapshot: Vec<u8> = c
        .query_one("SELECT pylon_crdt_snapshot('Counter', 'c1')", &[])
        .unwrap()
        .get(0);
    let stored: Vec<u8> = c
        .query_one(
            "SELECT snapshot FROM _pylon_crdt_snapshots WHERE entity = 'Counter' AND row_id = 'c1'",
            &[],
        )
        .unwrap()
        .get(0);
    let decoded = doc_json(&decode(&snapshot).expect("snapshot decodes"));
    let decoded_stored = doc_json(&decode(&stored).expect("stored snapshot decodes"));
    let final_value = projection["votes"].as_f64().unwrap() as i64;
    println!(
        "counter: {conns} connections x {per_conn} increments: {total} of {planned} calls made in {elapsed:.1?}; \
         final {final_value}, lost updates {}, snapshot {} bytes",
        total as i64 - final_value,
        stored.len()
    );

    assert_eq!(total, planned, "calls made");
    assert_eq!(final_value, total as i64, "projection");
    assert_eq!(column as usize, total, "materialized column");
    assert_eq!(
        decoded["votes"].as_f64(),
        Some(total as f64),
        "decoded snapshot"
    );
    assert_eq!(
        decoded_stored["votes"].as_f64(),
        Some(total as f64),
        "stored snapshot"
    );
    let expected: Vec<i64> = (1..=total as i64).collect();
    assert!(
        seen == expected,
        "every call must return a distinct value 1..={total} (a repeat means a write worked on a stale doc)"
    );
    assert!(check_entity_by_hand(&mut c, "Counter", Some("Counter"), &fields).is_empty());
}

/// The same through plain SQL: 16 connections × 500 `UPDATE … SET votes = votes + 1` on one
/// row of a table enabled with `pylon_crdt_enable`. Each UPDATE's trigger records the delta as
/// a counter increment; the column and the doc must both end at exactly 16 × 500.
#[test]
fn plain_update_increments_on_an_enabled_table_sum_exactly() {
    let conns = env_usize("PYLON_CRDT_CLIENT_CONNECTIONS", 16);
    let per_conn = env_usize("PYLON_CRDT_CLIENT_INCREMENTS", 500);
    let url = fresh_db("counter_update");
    let mut c = connect(&url);
    let fields = json!({"votes": {"type": "int", "crdt": "counter"}});
    c.batch_execute(r#"CREATE TABLE "Tally" (id text PRIMARY KEY, votes int)"#)
        .unwrap();
    c.execute("SELECT pylon_crdt_enable('\"Tally\"', $1)", &[&fields])
        .unwrap();
    c.batch_execute(r#"INSERT INTO "Tally" VALUES ('t1', 0)"#)
        .unwrap();

    let start = Instant::now();
    let barrier = Arc::new(Barrier::new(conns));
    let handles: Vec<_> = (0..conns)
        .map(|_| {
            let (url, barrier) = (url.clone(), barrier.clone());
            thread::spawn(move || {
                let mut c = connect(&url);
                let stmt = c
                    .prepare(r#"UPDATE "Tally" SET votes = votes + 1 WHERE id = 't1'"#)
                    .unwrap();
                barrier.wait();
                for _ in 0..per_conn {
                    assert_eq!(c.execute(&stmt, &[]).unwrap(), 1);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("writer thread");
    }
    let total = (conns * per_conn) as i64;
    let column: i32 = c
        .query_one(r#"SELECT votes FROM "Tally" WHERE id = 't1'"#, &[])
        .unwrap()
        .get(0);
    let projection: Value = c
        .query_one("SELECT pylon_crdt_project('Tally', 't1')", &[])
        .unwrap()
        .get(0);
    println!(
        "counter (plain UPDATE, enabled table): {conns} connections x {per_conn} in {:.1?}; column {column}, doc {}",
        start.elapsed(),
        projection["votes"]
    );
    assert_eq!(column as i64, total, "column");
    assert_eq!(projection["votes"].as_f64(), Some(total as f64), "doc");
    assert!(verify(&mut c, Some("Tally")).is_empty());
}

const LINES: usize = 8;

fn line(i: usize, round: usize) -> String {
    format!("line {i}: round {round} by writer {i}")
}

fn lines_text(lines: &[String]) -> String {
    lines.join("\n")
}

fn setup_text(name: &str) -> (String, Value) {
    let url = fresh_db(name);
    let mut c = connect(&url);
    c.batch_execute(
        r#"CREATE TABLE "Page" (id text PRIMARY KEY, body text);
           INSERT INTO "Page" VALUES ('p1', NULL);"#,
    )
    .unwrap();
    let fields = json!({"body": "richtext"});
    let initial: Vec<String> = (0..LINES).map(|i| line(i, 0)).collect();
    c.query_one(
        "SELECT pylon_crdt_apply_patch('Page', 'p1', $1, $2)",
        &[&fields, &json!({"body": lines_text(&initial)})],
    )
    .unwrap();
    (url, fields)
}

fn final_body(c: &mut Client, fields: &Value) -> String {
    let p: Value = c
        .query_one("SELECT pylon_crdt_project('Page', 'p1', $1)", &[fields])
        .unwrap()
        .get(0);
    p["body"].as_str().expect("body is a string").to_owned()
}

fn assert_all_lines_final(body: &str, rounds: usize) {
    let got: Vec<&str> = body.split('\n').collect();
    let want: Vec<String> = (0..LINES).map(|i| line(i, rounds)).collect();
    assert_eq!(
        got, want,
        "every writer's last edit of its own line survives"
    );
}

/// Reads the text, rewrites writer `i`'s line for `round`, and sends the full text back as a
/// patch: returns the text sent and the body the call returned.
fn rewrite_own_line(
    c: &mut impl postgres::GenericClient,
    fields: &Value,
    i: usize,
    round: usize,
) -> (String, Value) {
    let p: Value = c
        .query_one("SELECT pylon_crdt_project('Page', 'p1', $1)", &[fields])
        .unwrap()
        .get(0);
    let mut lines: Vec<String> = p["body"]
        .as_str()
        .unwrap()
        .split('\n')
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), LINES, "text keeps {LINES} lines");
    lines[i] = line(i, round);
    let text = lines_text(&lines);
    let out: Value = c
        .query_one(
            "SELECT pylon_crdt_apply_patch('Page', 'p1', $1, $2)",
            &[fields, &json!({ "body": text })],
        )
        .unwrap()
        .get(0);
    (text, out["body"].clone())
}

/// 8 connections each rewrite only their own line of one text, as read-modify-write under
/// the runtime's row lock (the way a pylon replica does it): the server diffs the full new
/// text against the doc, and every writer's edits survive.
#[test]
fn text_regions_read_modify_write_under_row_lock() {
    let rounds = env_usize("PYLON_CRDT_CLIENT_TEXT_ROUNDS", 40);
    let (url, fields) = setup_text("text_locked");
    let barrier = Arc::new(Barrier::new(LINES));
    let handles: Vec<_> = (0..LINES)
        .map(|i| {
            let (url, fields, barrier) = (url.clone(), fields.clone(), barrier.clone());
            thread::spawn(move || {
                let mut c = connect(&url);
                barrier.wait();
                for round in 1..=rounds {
                    let mut tx = c.transaction().unwrap();
                    tx.execute(
                        "SELECT pg_advisory_xact_lock($1, $2)",
                        &[&advisory_key("Page"), &advisory_key("p1")],
                    )
                    .unwrap();
                    let (text, out) = rewrite_own_line(&mut tx, &fields, i, round);
                    assert_eq!(out.as_str(), Some(text.as_str()));
                    tx.commit().unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("writer thread");
    }
    let mut c = connect(&url);
    let body = final_body(&mut c, &fields);
    assert_all_lines_final(&body, rounds);
    assert!(check_entity_by_hand(&mut c, "Page", Some("Page"), &fields).is_empty());
    println!("text (row lock): {LINES} connections x {rounds} rounds, all {LINES} lines kept");
}

/// 8 Loro peers (docs in this process) each edit only their own line on a stale copy and sync
/// through `pylon_crdt_apply_update` / `pylon_crdt_update_since` concurrently, without any
/// client-side lock: the CRDT merge keeps every edit, and all peers converge with the server.
#[test]
fn text_regions_from_concurrent_loro_peers_merge() {
    let rounds = env_usize("PYLON_CRDT_CLIENT_TEXT_ROUNDS", 40);
    let (url, fields) = setup_text("text_peers");
    let barrier = Arc::new(Barrier::new(LINES));
    let handles: Vec<_> = (0..LINES)
        .map(|i| {
            let (url, fields, barrier) = (url.clone(), fields.clone(), barrier.clone());
            thread::spawn(move || {
                let mut c = connect(&url);
                let snapshot: Vec<u8> = c
                    .query_one("SELECT pylon_crdt_snapshot('Page', 'p1')", &[])
                    .unwrap()
                    .get(0);
                let peer = decode(&snapshot).expect("snapshot decodes");
                peer.set_peer_id(1000 + i as u64).unwrap();
                // The server created the text container; edit that one.
                let text = match peer.get_map("row").get("body") {
                    Some(loro::ValueOrContainer::Container(loro::Container::Text(t))) => t,
                    other => panic!("body is not a text container: {other:?}"),
                };
                barrier.wait();
                for round in 1..=rounds {
                    let base: VersionVector = peer.oplog_vv();
                    let mut lines: Vec<String> =
                        text.to_string().split('\n').map(str::to_owned).collect();
                    assert_eq!(lines.len(), LINES);
                    lines[i] = line(i, round);
                    text.update(&lines_text(&lines), Default::default())
                        .unwrap();
                    peer.commit();
                    let update = peer.export(ExportMode::updates(&base)).unwrap();
                    c.query_one(
                        "SELECT pylon_crdt_apply_update('Page', 'p1', $1, $2)",
                        &[&fields, &update],
                    )
                    .unwrap();
                    let since: Vec<u8> = c
                        .query_one(
                            "SELECT pylon_crdt_update_since('Page', 'p1', $1)",
                            &[&peer.oplog_vv().encode()],
                        )
                        .unwrap()
                        .get(0);
                    let status = peer.import(&since).unwrap();
                    assert!(status.pending.is_none(), "update_since is complete");
                }
                // Final pull after everyone is done.
                barrier.wait();
                let since: Vec<u8> = c
                    .query_one(
                        "SELECT pylon_crdt_update_since('Page', 'p1', $1)",
                        &[&peer.oplog_vv().encode()],
                    )
                    .unwrap()
                    .get(0);
                peer.import(&since).unwrap();
                text.to_string()
            })
        })
        .collect();
    let peers: Vec<String> = handles
        .into_iter()
        .map(|h| h.join().expect("peer thread"))
        .collect();
    let mut c = connect(&url);
    let body = final_body(&mut c, &fields);
    assert_all_lines_final(&body, rounds);
    for (i, p) in peers.iter().enumerate() {
        assert_eq!(p, &body, "peer {i} converged with the server");
    }
    let column: String = c
        .query_one(r#"SELECT body FROM "Page" WHERE id = 'p1'"#, &[])
        .unwrap()
        .get(0);
    assert_eq!(column, body, "materialized column");
    assert!(check_entity_by_hand(&mut c, "Page", Some("Page"), &fields).is_empty());
    println!("text (Loro peers): {LINES} peers x {rounds} rounds, all {LINES} lines kept");
}

/// The same 8 writers with plain autocommit patches: each reads the projection and sends the
/// full new text, with no lock between its read and its write. The server diffs the patch
/// against the doc as it is at write time, so a patch built from a stale read puts back the
/// other lines as they were when it read them: a `richtext` patch sets the whole content
/// (minimal diff, but against the current doc, not the writer's base). What must hold: every
/// call returns exactly the text it sent (no stale doc), the text keeps its shape, and the
/// last write wins. How many edits a stale read reverted is printed, not asserted.
#[test]
fn text_regions_stale_full_text_patches_are_last_writer_wins() {
    let rounds = env_usize("PYLON_CRDT_CLIENT_TEXT_ROUNDS", 40);
    let (url, fields) = setup_text("text_stale");
    let barrier = Arc::new(Barrier::new(LINES));
    let handles: Vec<_> = (0..LINES)
        .map(|i| {
            let (url, fields, barrier) = (url.clone(), fields.clone(), barrier.clone());
            thread::spawn(move || {
                let mut c = connect(&url);
                barrier.wait();
                for round in 1..=rounds {
                    let (text, out) = rewrite_own_line(&mut c, &fields, i, round);
                    assert_eq!(out.as_str(), Some(text.as_str()), "a patch sets the text");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("writer thread");
    }
    let mut c = connect(&url);
    let body = final_body(&mut c, &fields);
    let got: Vec<&str> = body.split('\n').collect();
    assert_eq!(got.len(), LINES);
    let mut reverted = 0;
    for (i, l) in got.iter().enumerate() {
        let prefix = format!("line {i}: round ");
        assert!(
            l.starts_with(&prefix),
            "line {i} is one of writer {i}'s versions: {l:?}"
        );
        if *l != line(i, rounds) {
            reverted += 1;
        }
    }
    assert!(check_entity_by_hand(&mut c, "Page", Some("Page"), &fields).is_empty());
    println!(
        "text (stale full-text patches, no lock): {LINES} connections x {rounds} rounds; \
         {reverted} of {LINES} writers' last edits were reverted by another writer's stale text"
    );
}

fn waiting_on_row_lock(c: &mut Client, pid: i32, entity: &str, row_id: &str) -> bool {
    let k1 = advisory_key(entity) as u32 as i64;
    let k2 = advisory_key(row_id) as u32 as i64;
    c.query_one(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
            AND pid = $1 AND classid::int8 = $2 AND objid::int8 = $3 AND objsubid = 2",
        &[&pid, &k1, &k2],
    )
    .unwrap()
    .get::<_, i64>(0)
        == 1
}

/// A transaction holding row A's lock does not block a write to row B, while a write to A
/// waits (on exactly the advisory lock of A) until the holder commits, and then sees its write.
#[test]
fn row_lock_blocks_the_same_row_only() {
    let url = fresh_db("row_lock");
    let mut c = connect(&url);
    c.batch_execute(
        r#"CREATE TABLE "Lock" (id text PRIMARY KEY, votes int);
           INSERT INTO "Lock" VALUES ('A', NULL), ('B', NULL);"#,
    )
    .unwrap();
    let fields = json!({"votes": {"type": "int", "crdt": "counter"}});
    let inc = json!({"votes": {"increment": 1}});
    let sql = "SELECT pylon_crdt_apply_patch('Lock', $1, $2, $3)";

    let mut holder = connect(&url);
    holder.batch_execute("BEGIN").unwrap();
    holder.query_one(sql, &[&"A", &fields, &inc]).unwrap();

    // Row B: not blocked. It returns while the holder still holds A; had it waited on a lock,
    // lock_timeout would have ended it with 55P03 (a lock wait, not a slow write).
    let mut other = connect(&url);
    other.batch_execute("SET lock_timeout = '5s'").unwrap();
    let b: Value = other
        .query_one(sql, &[&"B", &fields, &inc])
        .expect("the write to B waited on a lock")
        .get(0);
    assert_eq!(b["votes"].as_f64(), Some(1.0));
    other.batch_execute("RESET lock_timeout").unwrap();

    // Row A with a short statement_timeout: canceled while waiting.
    other
        .batch_execute("SET statement_timeout = '300ms'")
        .unwrap();
    let code = expect_err(other.query_one(sql, &[&"A", &fields, &inc]), "write to A");
    assert_eq!(
        code, "57014",
        "canceled by statement_timeout while A is locked"
    );
    other.batch_execute("RESET statement_timeout").unwrap();

    // Row A from a thread: blocks until the holder commits.
    let (tx, rx) = mpsc::channel();
    let (url2, fields2, inc2) = (url.clone(), fields.clone(), inc.clone());
    let (pid_tx, pid_rx) = mpsc::channel();
    let waiter = thread::spawn(move || {
        let mut w = connect(&url2);
        let pid: i32 = w.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
        pid_tx.send(pid).unwrap();
        let r: Value = w.query_one(sql, &[&"A", &fields2, &inc2]).unwrap().get(0);
        tx.send(r).unwrap();
    });
    let waiter_pid = pid_rx.recv().unwrap();
    assert!(
        rx.recv_timeout(Duration::from_millis(800)).is_err(),
        "write to A must wait for the holder"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !waiting_on_row_lock(&mut other, waiter_pid, "Lock", "A") {
        assert!(
            Instant::now() < deadline,
            "the waiter is not waiting on A's advisory lock"
        );
        thread::sleep(Duration::from_millis(50));
    }
    holder.batch_execute("COMMIT").unwrap();
    let r = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("write to A proceeds after COMMIT");
    waiter.join().unwrap();
    assert_eq!(
        r["votes"].as_f64(),
        Some(2.0),
        "the waiter sees the holder's committed write"
    );
    let a: i32 = c
        .query_one(r#"SELECT votes FROM "Lock" WHERE id = 'A'"#, &[])
        .unwrap()
        .get(0);
    assert_eq!(a, 2);
    // The canceled call left nothing behind.
    let snapshot_doc = |c: &mut Client| -> Value {
        let s: Vec<u8> = c
            .query_one("SELECT pylon_crdt_snapshot('Lock', 'A')", &[])
            .unwrap()
            .get(0);
        doc_json(&decode(&s).unwrap())
    };
    assert_eq!(snapshot_doc(&mut c)["votes"].as_f64(), Some(2.0));
}

/// A function call for a row that does not exist yet inserts it: a concurrent creator of the
/// same row of an enabled table waits on the unique id index until the first commits, then
/// fails as a second plain INSERT would (23505, or 40P01 if the two also meet in the sidecar);
/// its retry merges into the row the first one made.
#[test]
fn a_concurrent_creator_of_a_missing_row_fails_like_a_second_insert_and_its_retry_merges() {
    let url = fresh_db("create_race");
    let mut c = connect(&url);
    c.batch_execute(
        r#"CREATE TABLE "Race" (id text PRIMARY KEY, title text, votes int);
           SELECT pylon_crdt_enable('"Race"', '{"title":"string","votes":{"type":"int","crdt":"counter"}}');"#,
    )
    .unwrap();
    let sql = "SELECT pylon_crdt_apply_patch('Race', 'r1', $1)";
    let mut first = connect(&url);
    first.batch_execute("BEGIN").unwrap();
    first
        .query_one(
            sql,
            &[&json!({"title": "first", "votes": {"increment": 1}})],
        )
        .unwrap();

    let (code_tx, code_rx) = mpsc::channel();
    let (pid_tx, pid_rx) = mpsc::channel();
    let url2 = url.clone();
    let second = thread::spawn(move || {
        let mut w = connect(&url2);
        let pid: i32 = w.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
        pid_tx.send(pid).unwrap();
        let inc = json!({"votes": {"increment": 10}});
        let code = match w.query_one(sql, &[&inc]) {
            Ok(_) => "no error".to_string(),
            Err(e) => e.code().map_or(format!("{e}"), |s| s.code().to_string()),
        };
        code_tx.send(code).unwrap();
        // The retry, as a client would.
        w.query_one(sql, &[&inc]).expect("the retry");
    });
    let second_pid = pid_rx.recv().unwrap();
    // It waits: a lock it has not been granted, held by the first creator's transaction.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE pid = $1 AND NOT granted",
                &[&second_pid],
            )
            .unwrap()
            .get(0);
        if waiting > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the second creator did not wait for the first"
        );
        thread::sleep(Duration::from_millis(20));
    }
    first.batch_execute("COMMIT").unwrap();
    let code = code_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the second creator finishes once the first commits");
    assert!(
        code == "23505" || code == "40P01",
        "the second creator fails as a second INSERT would, got {code}"
    );
    second.join().expect("the retry succeeds");
    let p: Value = c
        .query_one("SELECT pylon_crdt_project('Race', 'r1')", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        p,
        json!({"title": "first", "votes": 11}),
        "the retry merged"
    );
    let votes: i32 = c
        .query_one(r#"SELECT votes FROM "Race" WHERE id = 'r1'"#, &[])
        .unwrap()
        .get(0);
    assert_eq!(votes, 11);
    assert!(verify(&mut c, Some("Race")).is_empty());
}

/// The fields of the docs the catch-up tests write.
fn catch_up_fields() -> Value {
    json!({"title": "string", "votes": {"type": "int", "crdt": "counter"}, "body": "richtext"})
}

/// Write number `n` to row 'd' of entity 'Doc': a title, a body and one vote.
fn write_numbered(c: &mut Client, n: i64) -> Value {
    let patch =
        json!({"title": format!("t{n}"), "votes": {"increment": 1}, "body": format!("body {n}")});
    c.query_one(
        "SELECT pylon_crdt_apply_patch('Doc', 'd', $1, $2)",
        &[&catch_up_fields(), &patch],
    )
    .unwrap()
    .get(0)
}

/// Snapshots this connection's backend has decoded.
fn decodes(c: &mut Client) -> i64 {
    c.query_one("SELECT decodes FROM pylon_crdt_stats()", &[])
        .unwrap()
        .get(0)
}

/// The stamp of the snapshot tuple that `_pylon_crdt_folds` keeps entries for, if any.
fn kept_for(c: &mut Client) -> Option<String> {
    c.query_opt(
        "SELECT snapshot FROM _pylon_crdt_folds WHERE entity = 'Doc' AND row_id = 'd'",
        &[],
    )
    .unwrap()
    .map(|r| r.get(0))
}

/// The doc `c`'s backend serves for 'Doc'/'d' is the stored one, read by a fresh connection.
fn assert_serves_stored(c: &mut Client, url: &str, what: &str) {
    let served: Vec<u8> = c
        .query_one("SELECT pylon_crdt_snapshot('Doc', 'd')", &[])
        .unwrap()
        .get(0);
    let stored = stored_doc(&mut connect(url), "Doc", "d").unwrap();
    let served = decode(&served).unwrap();
    assert_eq!(
        doc_json(&served),
        doc_json(&stored),
        "{what}: not the stored doc"
    );
    assert_eq!(served.oplog_vv(), stored.oplog_vv(), "{what}");
}

/// Two backends write one `log` row, and B's writes fold its log (every 3 entries). A's
/// cached doc, from before each fold, catches up from the entries the fold kept in
/// `_pylon_crdt_folds` without decoding the new snapshot, and ends equal to the stored doc.
/// A trimmed compaction keeps nothing (the history it drops must not survive it), so after
/// one A decodes.
#[test]
fn a_cached_doc_catches_up_across_a_fold_without_decoding() {
    let url = fresh_db("fold_catch_up");
    let (mut a, mut b) = (connect(&url), connect(&url));
    a.batch_execute(
        r#"CREATE TABLE "Doc" (id text PRIMARY KEY, title text, votes int, body text);
           SELECT pylon_crdt_set_storage('Doc', 'log');"#,
    )
    .unwrap();
    b.batch_execute("SET pylon_crdt.log_compact_threshold = 3")
        .unwrap();

    let mut n = 1;
    write_numbered(&mut a, n);
    for round in 0..4 {
        let fold_before = kept_for(&mut a);
        for _ in 0..4 {
            n += 1;
            write_numbered(&mut b, n);
        }
        let fold_after = kept_for(&mut a);
        assert!(
            fold_after.is_some() && fold_after != fold_before,
            "round {round}: B's writes folded the log"
        );
        let before = decodes(&mut a);
        n += 1;
        let projection = write_numbered(&mut a, n);
        assert_eq!(
            decodes(&mut a),
            before,
            "round {round}: A decoded the snapshot"
        );
        assert_eq!(projection["votes"], json!(n), "round {round}");
        assert_eq!(projection["title"], json!(format!("t{n}")), "round {round}");
        assert_serves_stored(&mut a, &url, &format!("round {round}"));
    }

    // A trimmed compaction keeps nothing: A decodes the new snapshot.
    n += 1;
    write_numbered(&mut b, n);
    b.execute("SELECT pylon_crdt_compact('Doc', 'd', true)", &[])
        .unwrap();
    assert_eq!(kept_for(&mut a), None, "a trimmed compaction keeps nothing");
    let before = decodes(&mut a);
    n += 1;
    assert_eq!(write_numbered(&mut a, n)["votes"], json!(n));
    assert_eq!(decodes(&mut a), before + 1, "after a trim A decodes");
    assert_serves_stored(&mut a, &url, "after the trim");

    // Deleting the doc deletes what was kept for it.
    for _ in 0..4 {
        n += 1;
        write_numbered(&mut b, n);
    }
    assert!(kept_for(&mut a).is_some());
    a.execute("SELECT pylon_crdt_delete('Doc', 'd')", &[])
        .unwrap();
    assert_eq!(kept_for(&mut a), None, "what was kept goes with the doc");
}

/// `snapshot` storage keeps nothing for other writers' cached docs (a tail made hot-row writes
/// slower: README, "Storage modes"): two backends taking turns each decode the other's write.
#[test]
fn writers_taking_turns_in_snapshot_storage_keep_nothing() {
    let url = fresh_db("no_tail");
    let (mut a, mut b) = (connect(&url), connect(&url));
    a.batch_execute(
        r#"CREATE TABLE "Doc" (id text PRIMARY KEY, title text, votes int, body text)"#,
    )
    .unwrap();
    let mut n = 0;
    for _ in 0..2 {
        for c in [&mut a, &mut b] {
            n += 1;
            write_numbered(c, n);
        }
    }
    let before = decodes(&mut a);
    for writer in [0, 1, 0] {
        n += 1;
        let c = if writer == 0 { &mut a } else { &mut b };
        assert_eq!(write_numbered(c, n)["votes"], json!(n));
    }
    assert_eq!(
        decodes(&mut a),
        before + 2,
        "each of A's writes decodes B's"
    );
    assert_eq!(kept_for(&mut a), None, "snapshot storage keeps nothing");
    assert_serves_stored(&mut a, &url, "after taking turns");
}
