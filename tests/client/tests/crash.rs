//! Crashes in the middle of writes: `kill -9` of a writing backend (the postmaster then
//! resets every backend and recovers), and `kill -9` of the postmaster followed by a restart
//! with `scripts/cluster.sh start` (crash recovery from WAL). Afterwards every committed doc
//! is intact and no uncommitted change is visible.
//!
//! Two entities are written in each transaction: `Crash`, a plain same-named table (snapshot
//! storage), and `CrashLog`, a table registered with `pylon_crdt_enable` in `log` storage
//! with a low compaction threshold (when the installed extension has those), so crashes also
//! land in log appends and compactions.
//!
//! These tests reset every connection of the cluster: they take `exclusive()` and the suite
//! runs with `--test-threads=1`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use pylon_crdt_client_tests::*;
use serde_json::{json, Value};

const ROWS: usize = 8;
const PLAIN: &str = "Crash";
const LOGGED: &str = "CrashLog";

fn row(i: usize) -> String {
    format!("r{i}")
}

type Key = (String, String);

/// The writer's view: projections of committed transactions, and the transaction in flight
/// (written, COMMIT sent, no answer yet) when the crash came.
#[derive(Default)]
struct Model {
    committed: BTreeMap<Key, Value>,
    in_flight: Option<BTreeMap<Key, Value>>,
    transactions: usize,
}

struct Scenario {
    url: String,
    fields: Value,
    entities: Vec<&'static str>,
    open_before: Value,
    model: Arc<Mutex<Model>>,
    writer: thread::JoinHandle<()>,
    writer_pid: i32,
    stop: Arc<AtomicBool>,
}

fn long_body(tag: &str) -> String {
    (0..40)
        .map(|i| format!("{tag} paragraph {i}: the quick brown fox jumps over the lazy dog."))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Applies a patch: registered entities through the 2-argument overload.
fn apply(
    c: &mut impl postgres::GenericClient,
    entity: &str,
    row_id: &str,
    fields: &Value,
    patch: &Value,
) -> Result<Value, postgres::Error> {
    let sql = if entity == LOGGED {
        "SELECT pylon_crdt_apply_patch($1::text, $2::text, $3::jsonb)"
    } else {
        "SELECT pylon_crdt_apply_patch($1::text, $2::text, $3::jsonb, $4::jsonb)"
    };
    if entity == LOGGED {
        c.query_one(sql, &[&entity, &row_id, patch])
            .map(|r| r.get(0))
    } else {
        c.query_one(sql, &[&entity, &row_id, fields, patch])
            .map(|r| r.get(0))
    }
}

/// Seeds the rows, and starts a writer committing transactions that patch one row of each
/// entity, in a loop.
fn start_scenario(db: &str) -> Scenario {
    let url = fresh_db(db);
    let mut c = connect(&url);
    let fields = note_fields();
    c.batch_execute(
        r#"CREATE TABLE "Crash" (id text PRIMARY KEY, title text, body text, votes int);
           CREATE TABLE "CrashLog" (id text PRIMARY KEY, title text, body text, votes int);"#,
    )
    .unwrap();
    let mut entities = vec![PLAIN];
    c.execute(r#"SELECT pylon_crdt_enable('"CrashLog"', $1)"#, &[&fields])
        .unwrap();
    c.execute("SELECT pylon_crdt_set_storage('CrashLog', 'log')", &[])
        .unwrap();
    entities.push(LOGGED);
    let model = Arc::new(Mutex::new(Model::default()));
    for e in &entities {
        for i in 0..ROWS {
            c.execute(
                &format!("INSERT INTO {} (id) VALUES ($1)", quote_ident(e)),
                &[&row(i)],
            )
            .unwrap();
            let p = apply(
                &mut c,
                e,
                &row(i),
                &fields,
                &json!({"title": format!("r{i} v0"), "body": long_body("v0"), "votes": 0}),
            )
            .unwrap();
            model
                .lock()
                .unwrap()
                .committed
                .insert((e.to_string(), row(i)), p);
        }
    }
    c.execute(r#"INSERT INTO "Crash" (id) VALUES ('open')"#, &[])
        .unwrap();
    let open_before = apply(
        &mut c,
        PLAIN,
        "open",
        &fields,
        &json!({"title": "committed", "votes": 1}),
    )
    .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let (pid_tx, pid_rx) = std::sync::mpsc::channel();
    let writer = {
        let (url, fields, model, stop, entities) = (
            url.clone(),
            fields.clone(),
            model.clone(),
            stop.clone(),
            entities.clone(),
        );
        thread::spawn(move || {
            let mut w = connect(&url);
            // Compact the log often, so crashes also hit compactions.
            w.batch_execute("SET pylon_crdt.log_compact_threshold = 4")
                .unwrap();
            let pid: i32 = w.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
            pid_tx.send(pid).unwrap();
            let mut k = 0usize;
            while !stop.load(Ordering::Relaxed) {
                k += 1;
                let r = row(k % ROWS);
                let result = (|| -> Result<BTreeMap<Key, Value>, postgres::Error> {
                    let mut tx = w.transaction()?;
                    let mut written = BTreeMap::new();
                    for e in &entities {
                        let p = apply(
                            &mut tx,
                            e,
                            &r,
                            &fields,
                            &json!({
                                "title": format!("{r} v{k}"),
                                "body": long_body(&format!("v{k}")),
                                "votes": {"increment": 1}
                            }),
                        )?;
                        written.insert((e.to_string(), r.clone()), p);
                    }
                    model.lock().unwrap().in_flight = Some(written.clone());
                    tx.commit()?;
                    Ok(written)
                })();
                match result {
                    Ok(written) => {
                        let mut m = model.lock().unwrap();
                        m.committed.extend(written);
                        m.in_flight = None;
                        m.transactions += 1;
                    }
                    Err(e) => {
                        // The crash: the connection is gone, or the server ended it (FATAL).
                        // Anything else is a failure of the extension.
                        let db = e.as_db_error();
                        assert!(
                            db.is_none() || db.map(|d| d.severity()) == Some("FATAL"),
                            "writer failed with something other than the crash: {e:?}"
                        );
                        return;
                    }
                }
            }
        })
    };
    let writer_pid = pid_rx.recv().unwrap();
    Scenario {
        url,
        fields,
        entities,
        open_before,
        model,
        writer,
        writer_pid,
        stop,
    }
}

/// Opens a connection with an uncommitted write to row "open" and keeps it open.
fn open_uncommitted(s: &Scenario) -> Client {
    let mut open = connect(&s.url);
    open.batch_execute("BEGIN").unwrap();
    apply(
        &mut open,
        PLAIN,
        "open",
        &s.fields,
        &json!({"title": "UNCOMMITTED", "votes": {"increment": 1000}}),
    )
    .unwrap();
    open
}

/// Waits until the writer has committed `n` transactions.
fn wait_for_commits(s: &Scenario, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while s.model.lock().unwrap().transactions < n {
        assert!(Instant::now() < deadline, "writer too slow");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (up to 5 s) until the writer's backend is inside a `pylon_crdt_apply_patch` call
/// or its transaction, so the kill lands in the middle of a write. Returns what it was doing.
fn wait_until_writing(c: &mut Client, pid: i32) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let row = c
            .query_opt(
                "SELECT coalesce(state, ''), coalesce(query, '') FROM pg_stat_activity WHERE pid = $1",
                &[&pid],
            )
            .unwrap();
        if let Some(r) = row {
            let (state, query): (String, String) = (r.get(0), r.get(1));
            if (state == "active" && query.contains("pylon_crdt_apply_patch"))
                || state == "idle in transaction"
                || Instant::now() > deadline
            {
                return format!("{state}: {}", query.chars().take(70).collect::<String>());
            }
        }
    }
}

/// After the crash: every committed row is exactly as committed (or, for the transaction in
/// flight, all of its rows old or all new), the open transaction's write is gone, docs decode,
/// projections equal the columns, and `pylon_crdt_verify` (when present) finds nothing.
/// Returns (transactions committed before the crash, rows of the in-flight one that landed).
fn check_after_crash(s: Scenario) -> (usize, usize) {
    s.stop.store(true, Ordering::Relaxed);
    s.writer.join().expect("writer thread");
    let mut c = connect_retry(&s.url, Duration::from_secs(90));
    let m = s.model.lock().unwrap();
    let mut in_flight_new = 0;
    let mut in_flight_old = 0;
    for ((e, r), committed) in &m.committed {
        let got: Value = c
            .query_one("SELECT pylon_crdt_project($1, $2, $3)", &[e, r, &s.fields])
            .unwrap()
            .get(0);
        let in_flight = m
            .in_flight
            .as_ref()
            .and_then(|f| f.get(&(e.clone(), r.clone())));
        if same_value(Some(&got), Some(committed)) {
            if in_flight.is_some() {
                in_flight_old += 1;
            }
            continue;
        }
        assert!(
            in_flight.is_some_and(|p| same_value(Some(&got), Some(p))),
            "{e}/{r} after the crash is neither its committed state nor the in-flight one:\n got {got}\n committed {committed}\n in flight {in_flight:?}"
        );
        in_flight_new += 1;
    }
    assert!(
        in_flight_new == 0 || in_flight_old == 0,
        "the in-flight transaction is half applied: {in_flight_new} rows new, {in_flight_old} old"
    );
    let open: Value = c
        .query_one(
            "SELECT pylon_crdt_project('Crash', 'open', $1)",
            &[&s.fields],
        )
        .unwrap()
        .get(0);
    assert!(
        same_value(Some(&open), Some(&s.open_before)),
        "an uncommitted write is visible after the crash: {open} (before: {})",
        s.open_before
    );
    for e in &s.entities {
        let problems = check_entity_by_hand(&mut c, e, Some(e), &s.fields);
        assert!(
            problems.is_empty(),
            "by-hand check of {e} after the crash: {problems:#?}"
        );
    }
    let rows = verify(&mut c, None);
    assert!(
        rows.is_empty(),
        "pylon_crdt_verify after the crash: {rows:?}"
    );
    // The extension still writes after recovery, on top of the committed state.
    for e in &s.entities {
        let p = apply(
            &mut c,
            e,
            "r0",
            &s.fields,
            &json!({"votes": {"increment": 1}}),
        )
        .unwrap();
        let before = m.committed[&(e.to_string(), "r0".to_string())]["votes"]
            .as_f64()
            .unwrap();
        assert!(p["votes"].as_f64().unwrap() >= before + 1.0, "{e}/r0: {p}");
    }
    (m.transactions, in_flight_new)
}

/// The checks can fail: a tampered column and a tampered snapshot are both reported, by hand
/// and by `pylon_crdt_verify` (which compares columns of registered tables only).
fn tamper_and_expect_reports(url: &str, entities: &[&str]) {
    let mut c = connect(url);
    // Bypass the enabled table's trigger, as a careless manual edit or restore would.
    c.batch_execute("SET session_replication_role = replica")
        .unwrap();
    for e in entities {
        c.execute(
            &format!(
                "UPDATE {} SET title = 'tampered' WHERE id = 'r1'",
                quote_ident(e)
            ),
            &[],
        )
        .unwrap();
    }
    c.batch_execute(
        r#"UPDATE _pylon_crdt_snapshots SET snapshot = '\x00ff' WHERE entity = 'Crash' AND row_id = 'r2';"#,
    )
    .unwrap();
    c.batch_execute("RESET session_replication_role").unwrap();
    for e in entities {
        let problems = check_entity_by_hand(&mut c, e, Some(e), &note_fields());
        assert!(
            problems
                .iter()
                .any(|p| p.contains(&format!("{e}/r1")) && p.contains("title")),
            "{problems:?}"
        );
    }
    let problems = check_entity_by_hand(&mut c, PLAIN, Some(PLAIN), &note_fields());
    assert!(
        problems
            .iter()
            .any(|p| p.contains("Crash/r2") && p.contains("decode")),
        "{problems:?}"
    );
    let rows = verify(&mut c, None);
    assert!(
        rows.iter().any(|r| r.0 == PLAIN && r.1 == "r2"),
        "pylon_crdt_verify missed the corrupt snapshot: {rows:?}"
    );
    if entities.contains(&LOGGED) {
        assert!(
            rows.iter().any(|r| r.0 == LOGGED && r.1 == "r1"),
            "pylon_crdt_verify missed the tampered column of a registered table: {rows:?}"
        );
    }
}

#[test]
fn kill_9_of_a_writing_backend_keeps_committed_docs_and_drops_uncommitted() {
    let _guard = exclusive();
    let s = start_scenario("crash_backend");
    let _open = open_uncommitted(&s);
    wait_for_commits(&s, 10 + rand::random::<usize>() % 40);
    let mut watcher = connect(&s.url);
    let mark = log_mark();
    let at = wait_until_writing(&mut watcher, s.writer_pid);
    kill9(s.writer_pid);
    let (url, pid, entities) = (s.url.clone(), s.writer_pid, s.entities.clone());
    let (transactions, in_flight_new) = check_after_crash(s);
    let log = log_since(&mark);
    assert!(
        log.contains(&format!("(PID {pid}) was terminated by signal 9")),
        "the kill did not register in the server log:\n{log}"
    );
    println!(
        "backend kill -9 during [{at}]: {transactions} transactions committed before, in-flight rows applied: {in_flight_new}; entities {entities:?}; all committed docs intact, uncommitted write absent"
    );
    tamper_and_expect_reports(&url, &entities);
}

#[test]
fn kill_9_of_the_postmaster_then_restart_recovers_committed_docs() {
    let _guard = exclusive();
    let s = start_scenario("crash_postmaster");
    let _open = open_uncommitted(&s);
    wait_for_commits(&s, 10 + rand::random::<usize>() % 40);
    let mut watcher = connect(&s.url);
    let mark = log_mark();
    let at = wait_until_writing(&mut watcher, s.writer_pid);
    let pm = postmaster_pid();
    let children = children_of(pm);
    assert!(!children.is_empty(), "postmaster {pm} has no children?");
    kill9(pm);
    // Children notice the postmaster's death and exit; a restart needs them gone (they hold
    // the shared memory), and the postmaster reaped (pg_ctl counts a zombie as running). Any
    // child still there after 30 s gets kill -9 too, like a machine crash.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut forced = 0;
    loop {
        let alive: Vec<i32> = children
            .iter()
            .copied()
            .filter(|p| !process_gone(*p))
            .collect();
        if alive.is_empty() && process_gone(pm) {
            break;
        }
        if Instant::now() > deadline {
            for p in alive {
                if process_alive(p) {
                    kill9(p);
                    forced += 1;
                }
            }
            assert!(
                process_gone(pm),
                "the killed postmaster {pm} was never reaped"
            );
            thread::sleep(Duration::from_millis(500));
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    drop(watcher);
    cluster("start");
    let (transactions, in_flight_new) = check_after_crash(s);
    let log = log_since(&mark);
    assert!(
        log.contains("automatic recovery in progress") || log.contains("redo starts"),
        "the restart did not run crash recovery:\n{log}"
    );
    println!(
        "postmaster kill -9 during [{at}] ({} children, {forced} forced), restart, recovery: {transactions} transactions committed before, in-flight rows applied: {in_flight_new}; all committed docs intact, uncommitted write absent",
        children.len()
    );
}
