//! Helpers for the client-side tests of pylon_crdt: they talk to a real cluster over real
//! connections (`scripts/client-tests.sh` starts a dedicated one and sets `PYLON_CRDT_URL`).
//!
//! Every test makes its own database (`fresh_db`), so tests are independent; roles are
//! cluster-wide and carry the test's prefix.

pub mod fuzz;

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use loro::{LoroDoc, LoroValue};
pub use postgres::{Client, NoTls};
use serde_json::{json, Value};

/// Connection string of the test cluster's `postgres` database.
pub fn base_url() -> String {
    std::env::var("PYLON_CRDT_URL")
        .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:28839/postgres".into())
}

/// Port of the test cluster, from `PYLON_CRDT_URL`.
pub fn port() -> u16 {
    let url = base_url();
    let after_host = url.rsplit('@').next().unwrap_or(&url);
    after_host
        .split(':')
        .nth(1)
        .and_then(|p| p.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or(28839)
}

/// Work directory of the test cluster (its data directory is `<work>/cluster`).
pub fn work_dir() -> PathBuf {
    PathBuf::from(
        std::env::var("PYLON_CRDT_WORK").unwrap_or_else(|_| "/var/tmp/pylon_crdt_client".into()),
    )
}

pub fn data_dir() -> PathBuf {
    work_dir().join("cluster")
}

pub fn server_log() -> PathBuf {
    data_dir().join("server.log")
}

/// The connection string for database `db` as role `user`.
pub fn url_for(db: &str, user: &str) -> String {
    format!("postgresql://{user}@127.0.0.1:{}/{db}", port())
}

pub fn connect(url: &str) -> Client {
    Client::connect(url, NoTls).unwrap_or_else(|e| panic!("connecting to {url}: {e}"))
}

/// Connects, retrying while the server starts up or recovers.
pub fn connect_retry(url: &str, timeout: Duration) -> Client {
    let start = Instant::now();
    loop {
        match Client::connect(url, NoTls) {
            Ok(mut c) => {
                if c.simple_query("SELECT 1").is_ok() {
                    return c;
                }
            }
            Err(e) if start.elapsed() > timeout => panic!("server at {url} not back: {e}"),
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn admin() -> Client {
    connect_retry(&base_url(), Duration::from_secs(60))
}

/// Drops and recreates database `pcc_<name>` with the extension; returns its URL (as
/// `postgres`).
pub fn fresh_db(name: &str) -> String {
    let db = format!("pcc_{name}");
    let mut admin = admin();
    // Two statements: a multi-statement query string runs as one transaction block.
    admin
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(&db)
        ))
        .expect("dropping the old test database");
    admin
        .batch_execute(&format!("CREATE DATABASE {}", quote_ident(&db)))
        .expect("creating the test database");
    let url = url_for(&db, "postgres");
    let mut c = connect(&url);
    c.batch_execute("CREATE EXTENSION pylon_crdt")
        .expect("CREATE EXTENSION pylon_crdt");
    url
}

/// Quotes an SQL identifier the way `quote_ident` does when quoting is needed.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Quotes an SQL string literal.
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The pylon runtime's `pg_advisory_key`: the low 32 bits of std's `DefaultHasher` over the
/// `&str`, as i32. Computed here, in the client, independently of the extension.
pub fn advisory_key(s: &str) -> i32 {
    let mut hasher = DefaultHasher::new();
    s.hash(&mut hasher);
    hasher.finish() as u32 as i32
}

/// The SQLSTATE of a server error, or `None` when there was none (a lost connection, an I/O
/// or protocol error).
pub fn sqlstate(e: &postgres::Error) -> Option<String> {
    e.as_db_error().map(|d| d.code().code().to_owned())
}

/// The SQLSTATE of a call's error; panics with context when the call succeeded or when the
/// failure was not a server ERROR.
pub fn expect_err<T: std::fmt::Debug>(r: Result<T, postgres::Error>, what: &str) -> String {
    match r {
        Ok(v) => panic!("{what}: expected an error, got {v:?}"),
        Err(e) => match e.as_db_error() {
            Some(db) => {
                assert_eq!(db.severity(), "ERROR", "{what}: {db:?}");
                db.code().code().to_owned()
            }
            None => panic!("{what}: not a server error (connection lost?): {e}"),
        },
    }
}

/// Decodes a snapshot with loro in the client: the whole history must import, nothing
/// pending.
pub fn decode(bytes: &[u8]) -> Result<LoroDoc, String> {
    let doc = LoroDoc::new();
    let status = doc.import(bytes).map_err(|e| e.to_string())?;
    if let Some(p) = status.pending {
        return Err(format!("pending ops after import: {p:?}"));
    }
    Ok(doc)
}

/// The doc's root map `row` as JSON, in the projection's shapes: counters as numbers, texts
/// as strings, trees as nested `{"id", "data", "children"}` in sibling order.
pub fn doc_json(doc: &LoroDoc) -> Value {
    let v: LoroValue = doc.get_map("row").get_deep_value();
    let mut json = serde_json::to_value(&v).expect("LoroValue serializes");
    if let Value::Object(m) = &mut json {
        for v in m.values_mut() {
            if is_loro_tree(v) {
                *v = tree_projection(v);
            }
        }
    }
    json
}

/// Loro's deep value of a tree: an array of nodes with `meta` and `fractional_index`.
fn is_loro_tree(v: &Value) -> bool {
    v.as_array().is_some_and(|nodes| {
        !nodes.is_empty()
            && nodes.iter().all(|n| {
                n.get("meta").is_some()
                    && n.get("fractional_index").is_some()
                    && n.get("id").is_some()
            })
    })
}

fn tree_projection(v: &Value) -> Value {
    let mut nodes: Vec<&Value> = v.as_array().map(|a| a.iter().collect()).unwrap_or_default();
    nodes.sort_by_key(|n| n.get("index").and_then(Value::as_u64).unwrap_or(0));
    Value::Array(
        nodes
            .into_iter()
            .map(|n| {
                json!({
                    "id": n["id"],
                    "data": n["meta"],
                    "children": tree_projection(n.get("children").unwrap_or(&Value::Null)),
                })
            })
            .collect(),
    )
}

/// Two JSON values are the same projection: numbers compare as numbers (a counter is a
/// float in the doc, an int in a column), a missing value is null.
pub fn same_value(a: Option<&Value>, b: Option<&Value>) -> bool {
    let a = a.unwrap_or(&Value::Null);
    let b = b.unwrap_or(&Value::Null);
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_value(Some(p), Some(q)))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| same_value(Some(v), y.get(k)))
        }
        _ => a == b,
    }
}

/// Field names of an object-form fields spec.
pub fn field_names(fields: &Value) -> Vec<String> {
    fields
        .as_object()
        .expect("object-form fields spec")
        .keys()
        .filter(|k| k.as_str() != "id")
        .cloned()
        .collect()
}

/// The doc of (entity, row) as stored: the sidecar snapshot plus, in `log` storage, the
/// row's update log in order, decoded here with loro.
pub fn stored_doc(c: &mut Client, entity: &str, row_id: &str) -> Result<LoroDoc, String> {
    let snapshot: Option<Vec<u8>> = c
        .query_opt(
            "SELECT snapshot FROM _pylon_crdt_snapshots WHERE entity = $1 AND row_id = $2",
            &[&entity, &row_id],
        )
        .unwrap()
        .map(|r| r.get(0));
    let doc = match &snapshot {
        Some(s) => decode(s).map_err(|e| format!("snapshot does not decode: {e}"))?,
        None => LoroDoc::new(),
    };
    if has_update_log(c) {
        let updates = c
            .query(
                "SELECT update FROM _pylon_crdt_updates WHERE entity = $1 AND row_id = $2 ORDER BY seq",
                &[&entity, &row_id],
            )
            .unwrap();
        for u in updates {
            let bytes: Vec<u8> = u.get(0);
            let status = doc
                .import(&bytes)
                .map_err(|e| format!("logged update does not decode: {e}"))?;
            if status.pending.is_some() {
                return Err("logged update left pending".into());
            }
        }
    }
    Ok(doc)
}

/// Whether the extension keeps an update log table (`log` storage).
pub fn has_update_log(c: &mut Client) -> bool {
    c.query_one("SELECT to_regclass('_pylon_crdt_updates') IS NOT NULL", &[])
        .unwrap()
        .get(0)
}

/// Checks every stored doc of `entity` by hand: the snapshot (and update log) decodes in the
/// client, the client's reading of the doc equals `pylon_crdt_project`, and, when `table` is
/// given, the row's columns equal the projection. Returns the problems found, one line each.
pub fn check_entity_by_hand(
    c: &mut Client,
    entity: &str,
    table: Option<&str>,
    fields: &Value,
) -> Vec<String> {
    let mut problems = Vec::new();
    let names = field_names(fields);
    let keys = if has_update_log(c) {
        "SELECT row_id FROM _pylon_crdt_snapshots WHERE entity = $1
         UNION SELECT row_id FROM _pylon_crdt_updates WHERE entity = $1 ORDER BY 1"
    } else {
        "SELECT row_id FROM _pylon_crdt_snapshots WHERE entity = $1 ORDER BY 1"
    };
    let rows = c.query(keys, &[&entity]).unwrap();
    for r in rows {
        let row_id: String = r.get(0);
        let doc = match stored_doc(c, entity, &row_id) {
            Ok(d) => d,
            Err(e) => {
                problems.push(format!("{entity}/{row_id}: does not decode: {e}"));
                continue;
            }
        };
        let client_view = doc_json(&doc);
        let projection: Value = c
            .query_one(
                "SELECT pylon_crdt_project($1, $2, $3)",
                &[&entity, &row_id, fields],
            )
            .map(|r| r.get(0))
            .unwrap_or_else(|e| {
                problems.push(format!("{entity}/{row_id}: project failed: {e}"));
                Value::Null
            });
        for name in &names {
            if !same_value(client_view.get(name), projection.get(name)) {
                problems.push(format!(
                    "{entity}/{row_id}: field {name}: doc has {:?}, projection {:?}",
                    client_view.get(name),
                    projection.get(name)
                ));
            }
        }
        if let Some(table) = table {
            let row = c
                .query_opt(
                    &format!(
                        "SELECT to_jsonb(t), to_jsonb(pg_catalog.jsonb_populate_record(NULL::{q}, $2::jsonb))
                           FROM {q} t WHERE id = $1",
                        q = quote_ident(table)
                    ),
                    &[&row_id, &projection],
                )
                .unwrap_or_else(|e| {
                    problems.push(format!(
                        "{entity}/{row_id}: the projection does not fit the table's columns: {e}"
                    ));
                    None
                });
            let Some(row) = row else { continue };
            // What materializing the projection would store, through the column types.
            let (columns, wanted): (Value, Value) = (row.get(0), row.get(1));
            for name in &names {
                if let Some(col) = columns.get(name) {
                    if !same_value(Some(col), wanted.get(name)) {
                        problems.push(format!(
                            "{entity}/{row_id}: column {name} = {col}, projection {:?}",
                            projection.get(name)
                        ));
                    }
                }
            }
        }
    }
    problems
}

/// `pylon_crdt_verify(entity)`: (entity, row id, problem) of every row it finds wrong. A
/// missing or renamed function fails the test that asked.
pub fn verify(c: &mut Client, entity: Option<&str>) -> Vec<(String, String, String)> {
    c.query(
        "SELECT entity, row_id, problem FROM pylon_crdt_verify($1)",
        &[&entity],
    )
    .expect("pylon_crdt_verify")
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

/// Runs `scripts/cluster.sh <cmd>` for the test cluster.
pub fn cluster(cmd: &str) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/cluster.sh");
    let status = Command::new("bash")
        .arg(script)
        .arg(cmd)
        .env("PYLON_CRDT_PORT", port().to_string())
        .env("PYLON_CRDT_WORK", work_dir())
        .status()
        .expect("running scripts/cluster.sh");
    assert!(
        status.success(),
        "scripts/cluster.sh {cmd} failed: {status}"
    );
}

/// `kill -9 <pid>`, from the test process (root, or the cluster's own user).
pub fn kill9(pid: i32) {
    let status = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("running kill");
    assert!(status.success(), "kill -9 {pid} failed");
}

pub fn process_alive(pid: i32) -> bool {
    PathBuf::from(format!("/proc/{pid}")).exists()
        && fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
}

/// Whether the process is gone entirely (not even a zombie left to reap): `pg_ctl` counts a
/// zombie postmaster as running.
pub fn process_gone(pid: i32) -> bool {
    !PathBuf::from(format!("/proc/{pid}")).exists()
}

/// The postmaster's pid, from `postmaster.pid`.
pub fn postmaster_pid() -> i32 {
    let text = fs::read_to_string(data_dir().join("postmaster.pid")).expect("postmaster.pid");
    text.lines().next().unwrap().trim().parse().unwrap()
}

/// Pids of the processes whose parent is `pid`.
pub fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(stat) = fs::read_to_string(format!("/proc/{child}/stat")) {
            // pid (comm) state ppid ...: comm may contain spaces, so split after ')'.
            if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
                let ppid = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok());
                if ppid == Some(pid) {
                    out.push(child);
                }
            }
        }
    }
    out
}

/// A position in the server log, to look only at what came after it.
pub struct LogMark(u64);

pub fn log_mark() -> LogMark {
    LogMark(fs::metadata(server_log()).map(|m| m.len()).unwrap_or(0))
}

/// The server log written since `mark`.
pub fn log_since(mark: &LogMark) -> String {
    let mut f = match fs::File::open(server_log()) {
        Ok(f) => f,
        Err(_) => return String::new(),
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = if len < mark.0 { 0 } else { mark.0 };
    f.seek(SeekFrom::Start(start)).unwrap();
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).unwrap();
    String::from_utf8_lossy(&buf).into_owned()
}

/// Log lines since `mark` that report a backend crash.
pub fn crash_lines_since(mark: &LogMark) -> Vec<String> {
    log_since(mark)
        .lines()
        .filter(|l| {
            l.contains("terminated by signal")
                || (l.contains("server process") && l.contains("was terminated"))
                || l.contains("exited with exit code")
                || l.contains("PANIC")
        })
        .map(str::to_owned)
        .collect()
}

static EXCLUSIVE: Mutex<()> = Mutex::new(());

/// Serializes tests within one test binary that must not overlap (crashes reset every
/// connection of the cluster).
pub fn exclusive() -> MutexGuard<'static, ()> {
    EXCLUSIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// A fields spec used by several tests: one of each simple kind.
pub fn note_fields() -> Value {
    json!({
        "title": "string",
        "body": "richtext",
        "votes": {"type": "int", "crdt": "counter"}
    })
}

/// Drops the roles (cluster-wide) if they exist, after dropping what they own or were
/// granted in the current database.
pub fn drop_roles(c: &mut Client, roles: &[&str]) {
    for r in roles {
        let exists: i64 = c
            .query_one("SELECT count(*) FROM pg_roles WHERE rolname = $1", &[r])
            .unwrap()
            .get(0);
        if exists > 0 {
            let _ = c.batch_execute(&format!("DROP OWNED BY {}", quote_ident(r)));
            c.batch_execute(&format!("DROP ROLE {}", quote_ident(r)))
                .unwrap_or_else(|e| panic!("DROP ROLE {r}: {e}"));
        }
    }
}
