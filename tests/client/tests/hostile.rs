//! Hostile input: at least 100,000 random and mutated inputs through the SQL functions, from
//! several connections. Every call must end in a server ERROR with a SQLSTATE or in a valid
//! result; no backend may crash, a failed call writes nothing, the connection stays usable,
//! and afterwards every stored doc still decodes (and registered tables still equal their
//! docs). Inputs that made Loro panic (XX000) are replayed: XX000 again, same backend.
//!
//! Mutations of real Loro exports get their checksum recomputed half the time, so they get
//! past Loro's xxhash check into the decoders.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use loro::{ExportMode, LoroDoc, LoroText, VersionVector};
use postgres::types::ToSql;
use postgres::Statement;
use pylon_crdt_client_tests::fuzz::*;
use pylon_crdt_client_tests::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const ROW_IDS: usize = 24;

const TABLE_COLUMNS: &str = "id text PRIMARY KEY, title text, body text, votes int, score float8, \
     done boolean, at timestamptz, tags jsonb, steps jsonb, outline jsonb";

fn build_corpus(server: &mut Client, rng: &mut StdRng) -> Corpus {
    let Corpus {
        mut blobs,
        mut versions,
    } = client_corpus(rng);
    // The server's own exports of a seeded row.
    let fields = fuzz_fields();
    server
        .execute(
            "SELECT pylon_crdt_apply_patch('CorpusSrc', 'c1', $1, $2)",
            &[
                &fields,
                &json!({"title": "t", "body": "server text", "votes": 3, "tags": ["a", "b"],
                "outline": {"create": {"parent": null, "data": {"k": "v"}}}}),
            ],
        )
        .unwrap();
    let snap: Vec<u8> = server
        .query_one("SELECT pylon_crdt_snapshot('CorpusSrc', 'c1')", &[])
        .unwrap()
        .get(0);
    let vv: Vec<u8> = server
        .query_one("SELECT pylon_crdt_version('CorpusSrc', 'c1')", &[])
        .unwrap()
        .get(0);
    let since: Vec<u8> = server
        .query_one(
            "SELECT pylon_crdt_update_since('CorpusSrc', 'c1', $1)",
            &[&VersionVector::new().encode()],
        )
        .unwrap()
        .get(0);
    blobs.push(snap);
    blobs.push(since);
    versions.push(vv);
    Corpus { blobs, versions }
}

// ---------------------------------------------------------------- the run

#[derive(Default)]
struct Tally {
    tried: u64,
    valid: u64,
    errors: BTreeMap<String, u64>,
    crashes: u64,
    invalid_results: Vec<String>,
    severity_not_error: Vec<String>,
    panics: Vec<(String, Vec<u8>, Value, Value)>,
    sampled: u64,
    sample_violations: Vec<String>,
    unusable: u64,
}

impl Tally {
    fn merge(&mut self, o: Tally) {
        self.tried += o.tried;
        self.valid += o.valid;
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.crashes += o.crashes;
        self.invalid_results.extend(o.invalid_results);
        self.severity_not_error.extend(o.severity_not_error);
        self.panics.extend(o.panics);
        self.sampled += o.sampled;
        self.unusable += o.unusable;
        self.sample_violations.extend(o.sample_violations);
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Flavor {
    /// A plain same-named table, fields passed with every call (random and mutated specs).
    Spec,
    /// A table registered with `pylon_crdt_enable`; the overloads without fields.
    Registered,
    /// Registered, in `log` storage.
    RegisteredLog,
}

struct Target {
    entity: String,
    flavor: Flavor,
}

enum Call {
    Patch(Value, Value),
    Update(Value, Vec<u8>),
    Since(Vec<u8>),
    Project(Value),
    /// A stateless `loro_*` function (issue 12; `STATELESS` names them) on two blobs or
    /// version vectors and a fields spec.
    Stateless(usize, Vec<u8>, Vec<u8>, Value),
}

/// The stateless functions, each as the hostile run calls it.
const STATELESS: [(&str, &str); 7] = [
    (
        "loro_merge",
        "SELECT to_jsonb(length(loro_merge($1::bytea, $2::bytea)))",
    ),
    ("loro_value", "SELECT loro_value($1::bytea)"),
    ("loro_project", "SELECT loro_project($1::bytea, $2::jsonb)"),
    (
        "loro_version",
        "SELECT to_jsonb(length(loro_version($1::bytea)))",
    ),
    ("loro_version_json", "SELECT loro_version_json($1::bytea)"),
    (
        "loro_update_since",
        "SELECT to_jsonb(length(loro_update_since($1::bytea, $2::bytea)))",
    ),
    (
        "loro_version_includes",
        "SELECT to_jsonb(loro_version_includes($1::bytea, $2::bytea))",
    ),
];

impl Call {
    fn name(&self) -> &'static str {
        match self {
            Call::Patch(..) => "apply_patch",
            Call::Update(..) => "apply_update",
            Call::Since(..) => "update_since",
            Call::Project(..) => "project",
            Call::Stateless(which, ..) => STATELESS[*which].0,
        }
    }
    fn writes(&self) -> bool {
        matches!(self, Call::Patch(..) | Call::Update(..))
    }
}

struct Statements {
    patch: Statement,
    patch_reg: Statement,
    update: Statement,
    update_reg: Statement,
    since: Statement,
    project: Statement,
    state: Statement,
    stateless: Vec<Statement>,
}

fn prepare(c: &mut Client, entity: &str) -> Statements {
    let lit = quote_literal(entity);
    let table = quote_ident(entity);
    let log = if has_update_log(c) {
        "(SELECT string_agg(md5(update), ',' ORDER BY seq) FROM _pylon_crdt_updates WHERE entity = $1 AND row_id = $2)"
    } else {
        "NULL::text"
    };
    Statements {
        patch: c.prepare(&format!("SELECT pylon_crdt_apply_patch({lit}, $1::text, $2::jsonb, $3::jsonb)")).unwrap(),
        patch_reg: c.prepare(&format!("SELECT pylon_crdt_apply_patch({lit}, $1::text, $2::jsonb)")).unwrap(),
        update: c.prepare(&format!("SELECT pylon_crdt_apply_update({lit}, $1::text, $2::jsonb, $3::bytea)")).unwrap(),
        update_reg: c.prepare(&format!("SELECT pylon_crdt_apply_update({lit}, $1::text, $2::bytea)")).unwrap(),
        since: c.prepare(&format!("SELECT pylon_crdt_update_since({lit}, $1::text, $2::bytea)")).unwrap(),
        project: c.prepare(&format!("SELECT pylon_crdt_project({lit}, $1::text, $2::jsonb)")).unwrap(),
        stateless: STATELESS.iter().map(|(_, sql)| c.prepare(sql).unwrap()).collect(),
        state: c.prepare(&format!(
            "SELECT (SELECT md5(snapshot) || ' ' || xmin::text FROM _pylon_crdt_snapshots WHERE entity = $1 AND row_id = $2),
                    {log},
                    (SELECT md5(to_jsonb(t)::text) FROM {table} t WHERE id = $2)"
        )).unwrap(),
    }
}

fn row_state(c: &mut Client, st: &Statements, entity: &str, row_id: &str) -> Option<String> {
    c.query_one(&st.state, &[&entity, &row_id]).ok().map(|r| {
        format!(
            "{:?}|{:?}|{:?}",
            r.get::<_, Option<String>>(0),
            r.get::<_, Option<String>>(1),
            r.get::<_, Option<String>>(2)
        )
    })
}

fn run_call(
    c: &mut Client,
    st: &Statements,
    target: &Target,
    row_id: &str,
    call: &Call,
) -> Result<postgres::Row, postgres::Error> {
    let reg = target.flavor != Flavor::Spec;
    match call {
        Call::Patch(fields, patch) if reg => c.query_one(&st.patch_reg, &[&row_id, patch]),
        Call::Patch(fields, patch) => c.query_one(&st.patch, &[&row_id, fields, patch]),
        Call::Update(_, bytes) if reg => {
            c.query_one(&st.update_reg, &[&row_id, bytes as &(dyn ToSql + Sync)])
        }
        Call::Update(fields, bytes) => c.query_one(&st.update, &[&row_id, fields, bytes]),
        Call::Since(bytes) => c.query_one(&st.since, &[&row_id, bytes]),
        Call::Project(fields) => c.query_one(&st.project, &[&row_id, fields]),
        Call::Stateless(which, a, b, fields) => {
            let statement = &st.stateless[*which];
            match statement.params().len() {
                1 => c.query_one(statement, &[a]),
                _ if statement.params()[1] == postgres::types::Type::JSONB => {
                    c.query_one(statement, &[a, fields])
                }
                _ => c.query_one(statement, &[a, b]),
            }
        }
    }
}

/// A valid result: a projection object, or bytes that are a Loro blob loro can import.
fn result_is_valid(call: &Call, row: &postgres::Row) -> Result<(), String> {
    match call {
        Call::Since(_) => {
            let b: Vec<u8> = row.try_get(0).map_err(|e| e.to_string())?;
            LoroDoc::new()
                .import(&b)
                .map(|_| ())
                .map_err(|e| format!("update_since returned bytes loro cannot import: {e}"))
        }
        Call::Stateless(..) => row
            .try_get::<_, Value>(0)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        _ => {
            let v: Value = row.try_get(0).map_err(|e| e.to_string())?;
            if v.is_object() {
                Ok(())
            } else {
                Err(format!("projection is not an object: {v}"))
            }
        }
    }
}

fn collect_tree_ids(v: &Value, out: &mut Vec<String>) {
    if let Some(nodes) = v.get("outline").and_then(Value::as_array) {
        let mut stack: Vec<&Value> = nodes.iter().collect();
        while let Some(n) = stack.pop() {
            if let Some(id) = n.get("id").and_then(Value::as_str) {
                if out.len() < 64 && !out.iter().any(|x| x == id) {
                    out.push(id.to_owned());
                }
            }
            if let Some(ch) = n.get("children").and_then(Value::as_array) {
                stack.extend(ch.iter());
            }
        }
    }
}

fn quiet_session(c: &mut Client) {
    // Hostile inputs fail by the thousand: keep them out of the server log (crash lines
    // come from the postmaster and are logged regardless).
    c.batch_execute("SET log_min_messages = fatal; SET log_min_error_statement = panic")
        .unwrap();
}

fn fuzz_worker(
    url: String,
    target: Target,
    seed: u64,
    count: u64,
    corpus: Arc<Corpus>,
    progress: Arc<Mutex<u64>>,
) -> Tally {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut c = connect(&url);
    quiet_session(&mut c);
    let mut st = prepare(&mut c, &target.entity);
    let mut tally = Tally::default();
    let mut tree_ids: Vec<String> = Vec::new();
    let mut writes_per_row = [0u32; ROW_IDS];
    let row_ids: Vec<String> = (0..ROW_IDS).map(|i| format!("f{i}")).collect();
    // PYLON_CRDT_CLIENT_FUZZ_TRACE=Entity/row (or Entity/*) writes every call on that row, and
    // its outcome, to $PYLON_CRDT_WORK/fuzz-trace-<Entity>.txt: the history behind a finding.
    let trace = std::env::var("PYLON_CRDT_CLIENT_FUZZ_TRACE").ok();
    let verify_each = std::env::var("PYLON_CRDT_CLIENT_FUZZ_VERIFY_EACH").is_ok_and(|v| v == "1");
    let traced = |row_id: &str| {
        trace.as_deref().is_some_and(|t| {
            t == format!("{}/{row_id}", target.entity) || t == format!("{}/*", target.entity)
        })
    };
    let mut trace_out = String::new();
    for n in 0..count {
        let r = rng.gen_range(0..ROW_IDS);
        let row_id = &row_ids[r];
        let call = match rng.gen_range(0..100) {
            0..=39 => Call::Patch(random_fields(&mut rng), random_patch(&mut rng, &tree_ids)),
            40..=79 => Call::Update(
                random_fields(&mut rng),
                hostile_bytes(&mut rng, &corpus.blobs),
            ),
            80..=94 => Call::Since(match rng.gen_range(0..4) {
                0 => random_bytes(&mut rng, 40),
                1 => corpus.versions[rng.gen_range(0..corpus.versions.len())].clone(),
                2 => mutate(&mut rng, &corpus.versions),
                _ => hostile_bytes(&mut rng, &corpus.blobs),
            }),
            95..=97 => {
                let mut blob = || match rng.gen_range(0..3) {
                    0 => corpus.blobs[rng.gen_range(0..corpus.blobs.len())].clone(),
                    1 => corpus.versions[rng.gen_range(0..corpus.versions.len())].clone(),
                    _ => hostile_bytes(&mut rng, &corpus.blobs),
                };
                let (a, b) = (blob(), blob());
                Call::Stateless(
                    rng.gen_range(0..STATELESS.len()),
                    a,
                    b,
                    random_fields(&mut rng),
                )
            }
            _ => Call::Project(random_fields(&mut rng)),
        };
        let sample = call.writes() && n % 16 == 0;
        let before = if sample {
            row_state(&mut c, &st, &target.entity, row_id)
        } else {
            None
        };
        tally.tried += 1;
        let result = run_call(&mut c, &st, &target, row_id, &call);
        if traced(row_id) {
            let outcome = match &result {
                Ok(r) => format!(
                    "ok {}",
                    r.try_get::<_, Value>(0)
                        .map(|v| v.to_string())
                        .unwrap_or_default()
                ),
                Err(e) => match e.as_db_error() {
                    Some(db) => format!("error {} {}", db.code().code(), db.message()),
                    None => format!("error {e}"),
                },
            };
            let row: Option<Value> = c
                .query_opt(
                    &format!(
                        "SELECT to_jsonb(t) FROM {} t WHERE id = $1",
                        quote_ident(&target.entity)
                    ),
                    &[row_id],
                )
                .ok()
                .flatten()
                .map(|r| r.get(0));
            trace_out.push_str(&format!(
                "#{n} {row_id} {}\n  -> {outcome}\n  row {row:?}\n",
                describe(&call)
            ));
        }
        // With PYLON_CRDT_CLIENT_FUZZ_VERIFY_EACH=1, stop at the first call after which
        // pylon_crdt_verify finds a problem, and say which call that was (in the trace).
        if verify_each && trace.is_some() {
            let found: Vec<String> = c
                .query(
                    "SELECT row_id || ': ' || problem FROM pylon_crdt_verify($1)",
                    &[&target.entity],
                )
                .map(|rows| rows.iter().map(|r| r.get(0)).collect())
                .unwrap_or_default();
            if !found.is_empty() {
                trace_out.push_str(&format!(
                    "FIRST PROBLEM after #{n} on {row_id}: {found:?}\n"
                ));
                break;
            }
        }
        match result {
            Ok(row) => {
                tally.valid += 1;
                if let Err(e) = result_is_valid(&call, &row) {
                    tally.invalid_results.push(format!("{}: {e}", call.name()));
                }
                if call.writes() {
                    if let Ok(v) = row.try_get::<_, Value>(0) {
                        collect_tree_ids(&v, &mut tree_ids);
                    }
                    writes_per_row[r] += 1;
                }
            }
            Err(e) => match e.as_db_error() {
                Some(db) => {
                    let code = db.code().code().to_owned();
                    if db.severity() != "ERROR" {
                        tally.severity_not_error.push(format!(
                            "{} {}: {}",
                            db.severity(),
                            code,
                            db.message()
                        ));
                    }
                    if code == "XX000" && tally.panics.len() < 20 {
                        let (fields, bytes, patch) = match &call {
                            Call::Patch(f, p) => (f.clone(), vec![], p.clone()),
                            Call::Update(f, b) => (f.clone(), b.clone(), Value::Null),
                            Call::Since(b) => (Value::Null, b.clone(), Value::Null),
                            Call::Project(f) => (f.clone(), vec![], Value::Null),
                            Call::Stateless(_, a, _, f) => (f.clone(), a.clone(), Value::Null),
                        };
                        tally
                            .panics
                            .push((call.name().to_string(), bytes, fields, patch));
                    }
                    *tally.errors.entry(code).or_default() += 1;
                    if sample {
                        tally.sampled += 1;
                        let after = row_state(&mut c, &st, &target.entity, row_id);
                        if after != before {
                            tally.sample_violations.push(format!(
                                "{} on {}/{row_id} failed ({}) but the row changed: {before:?} -> {after:?}",
                                call.name(),
                                target.entity,
                                db.code().code()
                            ));
                        }
                    }
                }
                None => {
                    tally.crashes += 1;
                    let dir = work_dir().join("crash-inputs");
                    let _ = std::fs::create_dir_all(&dir);
                    let _ = std::fs::write(
                        dir.join(format!("{}-{seed}-{n}.txt", call.name())),
                        format!("{e}\n{}", describe(&call)),
                    );
                    c = connect_retry(&url, Duration::from_secs(60));
                    quiet_session(&mut c);
                    st = prepare(&mut c, &target.entity);
                }
            },
        }
        if c.is_closed() {
            tally.crashes += 1;
            c = connect_retry(&url, Duration::from_secs(60));
            quiet_session(&mut c);
            st = prepare(&mut c, &target.entity);
        }
        // Keep docs small: reset a row after a number of successful writes.
        // Keep docs small: reset a row after a number of successful writes. Rows of enabled
        // tables are deleted and inserted again (DELETE drops the doc: pylon_crdt_delete on
        // an enabled table would leave a row without a doc), other rows lose their doc.
        if writes_per_row[r] >= 25 {
            writes_per_row[r] = 0;
            if traced(row_id) {
                trace_out.push_str(&format!("RESET {row_id}\n"));
            }
            let reset = if target.flavor == Flavor::Spec {
                c.execute(
                    "SELECT pylon_crdt_delete($1, $2)",
                    &[&target.entity, row_id],
                )
            } else {
                let table = quote_ident(&target.entity);
                c.execute(&format!("DELETE FROM {table} WHERE id = $1"), &[row_id])
                    .and_then(|_| {
                        c.execute(&format!("INSERT INTO {table} (id) VALUES ($1)"), &[row_id])
                    })
            };
            if let Err(e) = reset {
                assert!(e.as_db_error().is_none(), "resetting a row failed: {e}");
                // Another connection's input crashed a backend and the cluster reset.
                c = connect_retry(&url, Duration::from_secs(60));
                quiet_session(&mut c);
                st = prepare(&mut c, &target.entity);
            }
            tree_ids.clear();
        }
        if n % 1000 == 999 {
            *progress.lock().unwrap() += 1000;
        }
    }
    if !trace_out.is_empty() {
        std::fs::write(
            work_dir().join(format!("fuzz-trace-{}.txt", target.entity)),
            &trace_out,
        )
        .unwrap();
    }
    // The connection is still usable after all that.
    if c.query_one("SELECT 1", &[]).is_err() {
        tally.unusable += 1;
    }
    tally
}

fn describe(call: &Call) -> String {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    match call {
        Call::Patch(f, p) => format!("fields {f}\npatch {p}"),
        Call::Update(f, b) => format!("fields {f}\nupdate {}", hex(b)),
        Call::Since(b) => format!("since {}", hex(b)),
        Call::Project(f) => format!("fields {f}"),
        Call::Stateless(which, a, b, f) => format!(
            "{}\na {}\nb {}\nfields {f}",
            STATELESS[*which].0,
            hex(a),
            hex(b)
        ),
    }
}

#[test]
fn hostile_inputs_never_crash_and_never_write_on_failure() {
    let total: u64 = std::env::var("PYLON_CRDT_CLIENT_FUZZ_INPUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let workers: u64 = std::env::var("PYLON_CRDT_CLIENT_FUZZ_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    // Worker w gets flavor (w + offset) % 4: 0, 1 fields spec, 2 registered, 3 registered+log.
    let offset: u64 = std::env::var("PYLON_CRDT_CLIENT_FUZZ_FLAVOR_OFFSET")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let url = fresh_db("hostile");
    let mut c = connect(&url);
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let corpus = Arc::new(build_corpus(&mut c, &mut rng));
    let mut targets = Vec::new();
    for w in 0..workers {
        let entity = format!("Fuzz{w}");
        c.batch_execute(&format!(
            "CREATE TABLE {} ({TABLE_COLUMNS})",
            quote_ident(&entity)
        ))
        .unwrap();
        let flavor = match (w + offset) % 4 {
            2 => Flavor::Registered,
            3 => Flavor::RegisteredLog,
            _ => Flavor::Spec,
        };
        if flavor != Flavor::Spec {
            c.execute(
                &format!(
                    "SELECT pylon_crdt_enable({}, $1)",
                    quote_literal(&quote_ident(&entity))
                ),
                &[&fuzz_fields()],
            )
            .unwrap();
        }
        if flavor == Flavor::RegisteredLog {
            c.execute("SELECT pylon_crdt_set_storage($1, 'log')", &[&entity])
                .unwrap();
        }
        for i in 0..ROW_IDS {
            c.execute(
                &format!("INSERT INTO {} (id) VALUES ($1)", quote_ident(&entity)),
                &[&format!("f{i}")],
            )
            .unwrap();
        }
        targets.push(Target { entity, flavor });
    }
    let mark = log_mark();
    let start = Instant::now();
    let progress = Arc::new(Mutex::new(0u64));
    let per = total.div_ceil(workers);
    let handles: Vec<_> = targets
        .into_iter()
        .enumerate()
        .map(|(w, t)| {
            let (url, corpus, progress) = (url.clone(), corpus.clone(), progress.clone());
            thread::spawn(move || fuzz_worker(url, t, 1000 + w as u64, per, corpus, progress))
        })
        .collect();
    let mut tally = Tally::default();
    let flavors: Vec<&str> = (0..workers)
        .map(|w| match (w + offset) % 4 {
            2 => "registered",
            3 => "registered+log",
            _ => "fields spec",
        })
        .collect();
    for h in handles {
        tally.merge(h.join().expect("fuzz worker"));
    }
    let elapsed = start.elapsed();
    let errors: u64 = tally.errors.values().sum();
    let crash_lines = crash_lines_since(&mark);
    println!(
        "hostile input: {} inputs over {workers} connections ({flavors:?}) in {elapsed:.1?}: \
         {} valid results, {errors} errors by SQLSTATE {:?}, backend crashes={} (connections lost: {}), XX000 (panics) kept for replay: {}, \
         failed writes sampled for no-change: {}",
        tally.tried,
        tally.valid,
        tally.errors,
        crash_lines.len(),
        tally.crashes,
        tally.panics.len(),
        tally.sampled
    );

    // Every check runs, so one report shows all that failed.
    let mut failures: Vec<String> = Vec::new();
    if tally.unusable > 0 {
        failures.push(format!(
            "{} worker connections unusable at the end",
            tally.unusable
        ));
    }
    if !crash_lines.is_empty() {
        failures.push(format!(
            "backend crashes in the server log: {crash_lines:#?}"
        ));
    }
    if tally.crashes > 0 {
        failures.push(format!(
            "{} connections lost (inputs in flight saved in {:?}; one crash resets every \
             connection, so replay them one by one with `cargo run --example replay -- FILE...`)",
            tally.crashes,
            work_dir().join("crash-inputs")
        ));
    }
    if tally.tried < total {
        failures.push(format!("tried {} < {total}", tally.tried));
    }
    if !tally.severity_not_error.is_empty() {
        failures.push(format!("not ERROR: {:?}", tally.severity_not_error));
    }
    if !tally.invalid_results.is_empty() {
        failures.push(format!(
            "invalid results: {:#?}",
            &tally.invalid_results[..tally.invalid_results.len().min(10)]
        ));
    }
    if tally.sampled == 0 {
        failures.push("no failed write was sampled".into());
    }
    if !tally.sample_violations.is_empty() {
        failures.push(format!(
            "failed calls changed rows: {:#?}",
            tally.sample_violations
        ));
    }

    // After it all: every doc decodes, and registered tables equal their docs.
    let mut c = connect_retry(&url, Duration::from_secs(60));
    for (w, flavor) in flavors.iter().enumerate() {
        let entity = format!("Fuzz{w}");
        let registered = *flavor != "fields spec";
        let table = registered.then_some(entity.as_str());
        let problems = check_entity_by_hand(&mut c, &entity, table, &fuzz_fields());
        let relevant: Vec<&String> = problems
            .iter()
            .filter(|p| registered || p.contains("decode") || p.contains("project failed"))
            .collect();
        if !relevant.is_empty() {
            failures.push(format!("{entity} after the run: {relevant:#?}"));
        }
    }
    let rows = verify(&mut c, None);
    if !rows.is_empty() {
        failures.push(format!("pylon_crdt_verify after the run: {rows:#?}"));
    }

    // Inputs that panicked inside the extension: replayed on a fresh row, they give XX000
    // again and the backend survives (same pid, still answers).
    replay_panics(&url, &tally.panics);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn replay_panics(url: &str, panics: &[(String, Vec<u8>, Value, Value)]) {
    if panics.is_empty() {
        println!("no input made the extension panic (XX000); no backend crashed");
        return;
    }
    let mut c = connect(url);
    c.batch_execute(r#"CREATE TABLE "Replay" (id text PRIMARY KEY)"#)
        .unwrap();
    let pid: i32 = c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let mut reproduced = 0;
    for (i, (name, bytes, fields, patch)) in panics.iter().enumerate() {
        let row_id = format!("p{i}");
        let r = match name.as_str() {
            "apply_update" => c.query_one(
                "SELECT pylon_crdt_apply_update('Replay', $1, $2, $3)",
                &[&row_id, fields, bytes],
            ),
            "update_since" => c.query_one(
                "SELECT pylon_crdt_update_since('Replay', $1, $2)",
                &[&row_id, bytes],
            ),
            "apply_patch" => c.query_one(
                "SELECT pylon_crdt_apply_patch('Replay', $1, $2, $3)",
                &[&row_id, fields, patch],
            ),
            _ => continue,
        };
        match r {
            Err(e) if sqlstate(&e).as_deref() == Some("XX000") => {
                reproduced += 1;
                if reproduced == 1 {
                    println!(
                        "panic replayed: {name}: {}",
                        e.as_db_error().unwrap().message()
                    );
                }
            }
            Err(e) => assert!(e.as_db_error().is_some(), "replay lost the connection: {e}"),
            Ok(_) => {} // depended on the fuzzed row's doc; not reproducible on an empty one
        }
        let now: i32 = c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
        assert_eq!(now, pid, "the backend survived the panic");
    }
    println!(
        "{} of {} panicking inputs replayed to XX000 on a fresh row; backend {pid} still up",
        reproduced,
        panics.len()
    );
}

/// `pylon_crdt.max_input_bytes` (when the extension has it): inputs over the bound set with
/// SET are refused with 54000 and write nothing; inputs under it work.
#[test]
fn max_input_bytes_refuses_oversized_inputs() {
    let url = fresh_db("max_input");
    let mut c = connect(&url);
    // Load the library so its settings exist.
    c.query_one("SELECT pylon_crdt_lock_key('x')", &[]).unwrap();
    let setting: Option<String> = c
        .query_one(
            "SELECT current_setting('pylon_crdt.max_input_bytes', true)",
            &[],
        )
        .unwrap()
        .get(0);
    let Some(default) = setting else {
        println!("pylon_crdt.max_input_bytes not present: skipped");
        return;
    };
    println!("pylon_crdt.max_input_bytes default: {default}");
    let fields = json!({"body": "richtext"});
    c.execute(
        "SELECT pylon_crdt_apply_patch('Big', 'b1', $1, $2)",
        &[&fields, &json!({"body": "small"})],
    )
    .unwrap();
    let snapshot = |c: &mut Client| -> Vec<u8> {
        c.query_one(
            "SELECT snapshot FROM _pylon_crdt_snapshots WHERE entity = 'Big' AND row_id = 'b1'",
            &[],
        )
        .unwrap()
        .get(0)
    };
    let before = snapshot(&mut c);
    c.batch_execute("SET pylon_crdt.max_input_bytes = 4096")
        .unwrap();

    let big_patch = json!({"body": "y".repeat(5000)});
    let code = expect_err(
        c.query_one(
            "SELECT pylon_crdt_apply_patch('Big', 'b1', $1, $2)",
            &[&fields, &big_patch],
        ),
        "oversized patch",
    );
    assert_eq!(code, "54000");

    let peer = LoroDoc::new();
    peer.get_map("row")
        .insert_container("body", LoroText::new())
        .unwrap()
        // Random text: a snapshot compresses runs, so it would stay small.
        .insert(0, &{
            let mut rng = StdRng::seed_from_u64(7);
            (0..6000)
                .map(|_| rng.gen_range('a'..='z'))
                .collect::<String>()
        })
        .unwrap();
    peer.commit();
    let big_update = peer.export(ExportMode::Snapshot).unwrap();
    assert!(big_update.len() > 4096);
    let code = expect_err(
        c.query_one(
            "SELECT pylon_crdt_apply_update('Big', 'b1', $1, $2)",
            &[&fields, &big_update],
        ),
        "oversized update",
    );
    assert_eq!(code, "54000");

    let big_since = vec![0u8; 5000];
    let code = expect_err(
        c.query_one(
            "SELECT pylon_crdt_update_since('Big', 'b1', $1)",
            &[&big_since],
        ),
        "oversized version vector",
    );
    assert_eq!(code, "54000");
    assert_eq!(snapshot(&mut c), before, "refused inputs wrote nothing");

    // Under the bound: accepted.
    let p: Value = c
        .query_one(
            "SELECT pylon_crdt_apply_patch('Big', 'b1', $1, $2)",
            &[&fields, &json!({"body": "y".repeat(1000)})],
        )
        .unwrap()
        .get(0);
    assert_eq!(p["body"].as_str().map(str::len), Some(1000));
    c.batch_execute("RESET pylon_crdt.max_input_bytes").unwrap();
    let p: Value = c
        .query_one(
            "SELECT pylon_crdt_apply_update('Big', 'b1', $1, $2)",
            &[&fields, &big_update],
        )
        .unwrap()
        .get(0);
    assert!(p["body"].is_string());
}

/// `pylon_crdt_delete` on a row of an enabled table: the next write rebuilds the doc from the
/// row's columns, and afterwards the columns must equal the doc's projection (README: "After
/// every statement the row's CRDT columns equal the doc's projection").
#[test]
fn pylon_crdt_delete_then_write_keeps_enabled_columns_equal_to_the_doc() {
    let url = fresh_db("delete_rebuild");
    let mut c = connect(&url);
    let fields = json!({"title": "string", "outline": {"type": "string", "crdt": "tree"},
                        "tags": {"type": "string", "crdt": "list"}});
    c.batch_execute(
        r#"CREATE TABLE "Outline" (id text PRIMARY KEY, title text, outline jsonb, tags jsonb);
           INSERT INTO "Outline" VALUES ('o1', 'x', NULL, '["a"]');"#,
    )
    .unwrap();
    c.execute("SELECT pylon_crdt_enable('\"Outline\"', $1)", &[&fields])
        .unwrap();
    c.execute(
        "SELECT pylon_crdt_apply_patch('Outline', 'o1', $1)",
        &[&json!({"outline": {"create": {"parent": null, "data": {"k": "v"}}}})],
    )
    .unwrap();
    c.execute("SELECT pylon_crdt_delete('Outline', 'o1')", &[])
        .unwrap();
    let p: Value = c
        .query_one(
            "SELECT pylon_crdt_apply_patch('Outline', 'o1', '{\"title\":\"y\"}')",
            &[],
        )
        .unwrap()
        .get(0);
    let problems = check_entity_by_hand(&mut c, "Outline", Some("Outline"), &fields);
    let verified = verify(&mut c, Some("Outline"));
    assert!(
        problems.is_empty() && verified.is_empty(),
        "after pylon_crdt_delete and a write, the row disagrees with its doc (projection {p}):\n{problems:#?}\n{verified:?}"
    );
}

/// A call that fails must leave no trace, also not in the backend's doc cache: after a peer
/// update refused as pending (55000) or refused while writing the row (22P02), later calls on
/// the same connection see the doc as it was.
#[test]
fn failed_imports_leave_no_trace_in_later_calls() {
    let url = fresh_db("failed_imports");
    let mut c = connect(&url);
    let fields = json!({"title": "string", "votes": {"type": "int", "crdt": "counter"}});
    c.batch_execute(r#"CREATE TABLE "Leak" (id text PRIMARY KEY, title text, votes int)"#)
        .unwrap();
    c.execute("SELECT pylon_crdt_enable('\"Leak\"', $1)", &[&fields])
        .unwrap();
    c.execute(r#"INSERT INTO "Leak" (id) VALUES ('a'), ('b'), ('c')"#, &[])
        .unwrap();
    let patch = |c: &mut Client, row: &str, p: Value| -> Result<Value, postgres::Error> {
        c.query_one(
            "SELECT pylon_crdt_apply_patch('Leak', $1, $2, $3)",
            &[&row, &fields, &p],
        )
        .map(|r| r.get(0))
    };
    let update = |c: &mut Client, row: &str, b: &[u8]| -> Result<Value, postgres::Error> {
        c.query_one(
            "SELECT pylon_crdt_apply_update('Leak', $1, $2, $3)",
            &[&row, &fields, &b],
        )
        .map(|r| r.get(0))
    };
    let mut findings = Vec::new();

    // (a) Pending: a peer's second change without its first.
    patch(&mut c, "a", json!({"title": "server", "votes": 1})).unwrap();
    let snapshot: Vec<u8> = c
        .query_one("SELECT pylon_crdt_snapshot('Leak', 'a')", &[])
        .unwrap()
        .get(0);
    let peer = decode(&snapshot).unwrap();
    peer.set_peer_id(4242).unwrap();
    let base = peer.oplog_vv();
    peer.get_map("row").insert("title", "first").unwrap();
    peer.commit();
    let middle = peer.oplog_vv();
    peer.get_map("row").insert("title", "REFUSED").unwrap();
    peer.commit();
    let second_only = peer.export(ExportMode::updates(&middle)).unwrap();
    let code = expect_err(
        update(&mut c, "a", &second_only),
        "update without its dependency",
    );
    assert_eq!(code, "55000");
    let p = patch(&mut c, "a", json!({})).unwrap();
    if p["title"] != "server" {
        findings.push(format!(
            "after a refused pending update, patch {{}} sees {p}"
        ));
    }
    // Only the first change now: the refused second one must not come along.
    let first_only = {
        let first = LoroDoc::new();
        first.import(&snapshot).unwrap();
        first
            .import(&peer.export(ExportMode::updates(&base)).unwrap())
            .unwrap();
        // Rebuild the first change alone: a peer that never made the second.
        let only = decode(&snapshot).unwrap();
        only.set_peer_id(4242).unwrap();
        only.get_map("row").insert("title", "first").unwrap();
        only.commit();
        only.export(ExportMode::updates(&base)).unwrap()
    };
    let p = update(&mut c, "a", &first_only).unwrap();
    if p["title"] != "first" {
        findings.push(format!(
            "the refused change came back with its dependency: {p}"
        ));
    }

    // (a2) Partly pending: one peer's change applies, another's waits for a missing one; the
    // call is refused (55000), so the change that could apply must not stay either.
    patch(&mut c, "c", json!({"title": "server", "votes": 1})).unwrap();
    let snapshot: Vec<u8> = c
        .query_one("SELECT pylon_crdt_snapshot('Leak', 'c')", &[])
        .unwrap()
        .get(0);
    let q = decode(&snapshot).unwrap();
    q.set_peer_id(5151).unwrap();
    let base = q.oplog_vv();
    q.get_map("row")
        .insert("title", "APPLIED BY A REFUSED CALL")
        .unwrap();
    q.commit();
    let p2 = decode(&snapshot).unwrap();
    p2.set_peer_id(5252).unwrap();
    p2.get_map("row").insert("title", "p first").unwrap();
    p2.commit();
    let middle = p2.oplog_vv();
    if let Some(loro::ValueOrContainer::Container(loro::Container::Counter(k))) =
        p2.get_map("row").get("votes")
    {
        k.increment(7.0).unwrap();
    }
    p2.commit();
    // One blob with q's change and p2's second change, but not p2's first.
    let all = LoroDoc::new();
    all.import(&snapshot).unwrap();
    all.import(&q.export(ExportMode::updates(&base)).unwrap())
        .unwrap();
    all.import(&p2.export(ExportMode::updates(&base)).unwrap())
        .unwrap();
    let blob = all.export(ExportMode::updates(&middle)).unwrap();
    let code = expect_err(update(&mut c, "c", &blob), "partly pending update");
    assert_eq!(code, "55000");
    let p = patch(&mut c, "c", json!({})).unwrap();
    if p["title"] != "server" || p["votes"].as_f64() != Some(1.0) {
        findings.push(format!(
            "after a partly pending update was refused, patch {{}} sees {p}"
        ));
    }

    // (b) Refused while writing the row: a float counter into an int column (22P02).
    patch(&mut c, "b", json!({"title": "server", "votes": 1})).unwrap();
    let snapshot: Vec<u8> = c
        .query_one("SELECT pylon_crdt_snapshot('Leak', 'b')", &[])
        .unwrap()
        .get(0);
    let peer = decode(&snapshot).unwrap();
    peer.set_peer_id(4343).unwrap();
    let base = peer.oplog_vv();
    peer.get_map("row").insert("title", "REFUSED").unwrap();
    if let Some(loro::ValueOrContainer::Container(loro::Container::Counter(k))) =
        peer.get_map("row").get("votes")
    {
        k.increment(0.5).unwrap();
    }
    peer.commit();
    let bad = peer.export(ExportMode::updates(&base)).unwrap();
    let r = update(&mut c, "b", &bad);
    match &r {
        Ok(p) => findings.push(format!("a half counter in an int column was accepted: {p}")),
        Err(e) => assert!(e.as_db_error().is_some(), "{e}"),
    }
    let p = patch(&mut c, "b", json!({})).unwrap();
    if p["title"] != "server" || p["votes"].as_f64() != Some(1.0) {
        findings.push(format!(
            "after an update refused at the row write, patch {{}} sees {p}"
        ));
    }
    let rows = verify(&mut c, Some("Leak"));
    if !rows.is_empty() {
        findings.push(format!("pylon_crdt_verify: {rows:?}"));
    }
    let problems = check_entity_by_hand(&mut c, "Leak", Some("Leak"), &fields);
    findings.extend(problems);
    assert!(
        findings.is_empty(),
        "failed calls left traces (enabled table):\n{}",
        findings.join("\n")
    );
}

/// Random schema changes (`pylon_crdt_alter`) of a populated enabled table, mixed with random
/// writes: every call ends in a result or an ERROR with one of the documented SQLSTATEs, no
/// backend crashes, a failed alter changes nothing (registration, column names, rows, docs),
/// and after a successful one every row equals its doc.
#[test]
fn random_schema_changes_never_crash_and_a_failed_alter_changes_nothing() {
    let url = fresh_db("hostile_alter");
    let mut c = connect(&url);
    let mut rng = StdRng::seed_from_u64(16);
    c.batch_execute(
        "CREATE TABLE shifting (id text PRIMARY KEY, a text, b int, c float8, d jsonb, e jsonb, f boolean);
         INSERT INTO shifting SELECT 's' || i, 'text ' || i, i, i / 4.0, '[1, 2]', NULL, i % 2 = 0
           FROM generate_series(1, 40) AS i;",
    )
    .unwrap();
    let mut spec = json!({"a": "string", "b": "int", "c": "float", "d": {"type": "string", "crdt": "list"},
                          "f": "bool", "g": "richtext"});
    c.execute("SELECT pylon_crdt_enable('shifting', $1)", &[&spec])
        .unwrap();
    let kinds = [
        json!("string"),
        json!("richtext"),
        json!("int"),
        json!("float"),
        json!("bool"),
        json!("datetime"),
        json!({"type": "int", "crdt": "counter"}),
        json!({"type": "float", "crdt": "counter"}),
        json!({"type": "string", "crdt": "list"}),
        json!({"type": "string", "crdt": "movable-list"}),
        json!({"type": "string", "crdt": "tree"}),
        json!({"type": "richtext", "crdt": "lww"}),
    ];
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "id"];
    let fingerprint = |c: &mut Client| -> String {
        c.query_one(
            "SELECT (SELECT fields::text FROM _pylon_crdt_registry WHERE entity = 'shifting')
                 || (SELECT string_agg(attname::text, ',' ORDER BY attnum) FROM pg_attribute
                      WHERE attrelid = 'shifting'::regclass AND attnum > 0 AND NOT attisdropped)
                 || (SELECT md5(string_agg(s::text, ',' ORDER BY id)) FROM shifting s)
                 || (SELECT md5(string_agg(md5(snapshot), ',' ORDER BY row_id)) FROM _pylon_crdt_snapshots
                      WHERE entity = 'shifting')",
            &[],
        )
        .unwrap()
        .get(0)
    };
    let allowed = ["22023", "0A000", "42804", "42701", "54000"];
    let (mut done, mut refused) = (0, 0);
    let mut codes: BTreeMap<String, usize> = BTreeMap::new();
    for round in 0..400 {
        // A random write first, through the trigger (any outcome but a crash).
        let row = format!("s{}", rng.gen_range(1..=40));
        let column = names[rng.gen_range(0..names.len() - 1)];
        let value = random_json(&mut rng, 2, &[]);
        let _ = c.execute(
            &format!(
                "UPDATE shifting SET {} = jsonb_populate_record(NULL::shifting, jsonb_build_object($1::text, $2::jsonb)).{} WHERE id = $3",
                quote_ident(column),
                quote_ident(column)
            ),
            &[&column, &value, &row],
        );
        // A random new spec: the current fields mostly kept, some re-kinded, renamed, dropped
        // or added; sometimes garbage.
        let current: Vec<String> = spec.as_object().unwrap().keys().cloned().collect();
        let mut new = serde_json::Map::new();
        let mut renames = serde_json::Map::new();
        for name in &current {
            match rng.gen_range(0..10) {
                0 => {}
                1 | 2 => {
                    new.insert(name.clone(), kinds[rng.gen_range(0..kinds.len())].clone());
                }
                3 => {
                    let to = names[rng.gen_range(0..names.len())].to_string();
                    renames.insert(name.clone(), json!(to));
                    new.insert(to, spec[name].clone());
                }
                _ => {
                    new.insert(name.clone(), spec[name].clone());
                }
            }
        }
        if rng.gen_bool(0.2) {
            let name = names[rng.gen_range(0..names.len())];
            new.insert(name.into(), kinds[rng.gen_range(0..kinds.len())].clone());
        }
        let (new, renames) = match rng.gen_range(0..12) {
            0 => (random_json(&mut rng, 2, &[]), Value::Object(renames)),
            1 => (Value::Object(new), random_json(&mut rng, 2, &[])),
            _ => (Value::Object(new), Value::Object(renames)),
        };
        let before = fingerprint(&mut c);
        match c.execute(
            "SELECT pylon_crdt_alter('shifting', $1, $2)",
            &[&new, &renames],
        ) {
            Ok(_) => {
                done += 1;
                spec = new;
                let problems = verify(&mut c, Some("shifting"));
                assert!(
                    problems.is_empty(),
                    "round {round}: after altering to {spec} the rows disagree with their docs: {problems:?}"
                );
            }
            Err(e) => {
                refused += 1;
                let code = sqlstate(&e)
                    .unwrap_or_else(|| panic!("round {round}: no SQLSTATE (crash?): {e}"));
                *codes.entry(code.clone()).or_default() += 1;
                assert!(
                    allowed.contains(&code.as_str()),
                    "round {round}: alter to {new} with renames {renames}: unexpected {code}: {e:?}"
                );
                assert_eq!(
                    fingerprint(&mut c),
                    before,
                    "round {round}: a failed alter ({code}) changed something"
                );
            }
        }
    }
    println!("{done} alters done, {refused} refused: {codes:?}");
    assert!(
        done > 20 && refused > 20,
        "{done} alters done, {refused} refused: the generator must exercise both"
    );
}
