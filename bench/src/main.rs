//! pylon_crdt write benchmark (issue 6): one run, one cluster, four ways of writing a row.
//!
//!   (a) `SELECT pylon_crdt_apply_patch(...)`, one call, autocommit
//!   (b) the pylon runtime's client-side transaction over a real connection
//!   (c) a plain `UPDATE` of the same columns, no CRDT
//!   (d) the same plain `UPDATE` on a table enabled with `pylon_crdt_enable` (when it exists)
//!   (e) as (a), for an entity in update-log storage (when `pylon_crdt_set_storage` exists)
//!   (f) the floor of (a): its two row writes (snapshot and columns) without any CRDT work
//!
//! Each at 1 client and at N clients (threads, one connection each) on distinct rows, and, for
//! small rows, N clients on one row; for small rows (one prior write) and for rows with
//! 10,000 prior edits. A client on small rows cycles through a pool of them, so they stay
//! small during the cell. Every cell starts from the same stored rows, after VACUUM and
//! CHECKPOINT, and measures writes/s, p50/p99 latency and WAL bytes per write.
//!
//!   cargo run --release -- postgresql://postgres@127.0.0.1:28849/postgres
//!
//! Settings (environment): BENCH_SECONDS per cell (default 5), BENCH_EDITS (10000),
//! BENCH_CLIENTS (8), BENCH_POOL small rows per client (200), BENCH_CONTENDED (1: also N
//! clients on one row; 0: skip); BENCH_APPROACHES a subset by letter (e.g. `a,e,f`; all).
//! The run drops and recreates the database `pylon_crdt_bench` on that cluster.

mod hop;
mod workload;
mod writer;

use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};

use workload::{Row, Shape};
use writer::{Approach, Writer};

pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const DATABASE: &str = "pylon_crdt_bench";

struct Settings {
    url: String,
    seconds: f64,
    edits: u64,
    clients: usize,
    pool: usize,
    contended: bool,
    /// The network round: simulated round trips (ms; 0 = straight over loopback).
    hops: Vec<f64>,
    /// The network round: writers on one hot row.
    hot: Vec<usize>,
    /// The network round: seconds per cell.
    hop_seconds: f64,
    /// Whether to run the loopback matrix (BENCH_MATRIX=0 runs only the network round).
    matrix: bool,
    /// Whether the network round writes small rows at 1 and N clients (BENCH_SMALL=0: only
    /// the hot row).
    small_rows: bool,
}

fn list_env<T: FromStr>(name: &str, default: &str) -> Result<Vec<T>> {
    let v = std::env::var(name).unwrap_or_else(|_| default.into());
    v.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim()
                .parse()
                .map_err(|_| format!("{name}={v}: not a list of values").into())
        })
        .collect()
}

fn env_or<T: FromStr>(name: &str, default: T) -> Result<T> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .map_err(|_| format!("{name}={v}: not a valid value").into()),
        Err(_) => Ok(default),
    }
}

impl Settings {
    fn from_env() -> Result<Settings> {
        let url = std::env::args()
            .nth(1)
            .or_else(|| std::env::var("BENCH_URL").ok())
            .ok_or("usage: pylon_crdt_bench postgresql://user@host:port/db (or BENCH_URL)")?;
        Ok(Settings {
            url,
            seconds: env_or("BENCH_SECONDS", 5.0)?,
            edits: env_or("BENCH_EDITS", 10_000)?,
            clients: env_or("BENCH_CLIENTS", 8)?,
            pool: env_or("BENCH_POOL", 200)?,
            contended: env_or("BENCH_CONTENDED", 1u8)? != 0,
            hops: list_env("BENCH_HOPS", "0,0.2,1")?,
            hot: list_env("BENCH_HOT", "1,8,32")?,
            hop_seconds: env_or("BENCH_HOP_SECONDS", 3.0)?,
            matrix: env_or("BENCH_MATRIX", 1u8)? != 0,
            small_rows: env_or("BENCH_SMALL", 1u8)? != 0,
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Size {
    Small,
    Large,
}

/// How many clients write which rows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Spread {
    /// One client.
    Single,
    /// Each client its own rows (the common case).
    Distinct(usize),
    /// Every client the same row (contended).
    Same(usize),
}

impl Spread {
    fn clients(self) -> usize {
        match self {
            Spread::Single => 1,
            Spread::Distinct(n) | Spread::Same(n) => n,
        }
    }

    fn label(self) -> String {
        match self {
            Spread::Single => "1".into(),
            Spread::Distinct(n) => format!("{n}, own rows"),
            Spread::Same(n) => format!("{n}, one row"),
        }
    }
}

/// Client `client`'s small rows (`pool` of them) or its large row.
fn rows_of(client: usize, size: Size, pool: usize) -> Vec<String> {
    match size {
        Size::Small => (0..pool).map(|k| format!("s{client}-{k}")).collect(),
        Size::Large => vec![format!("l{client}")],
    }
}

/// The rows each client of a cell cycles through.
fn cell_rows(size: Size, spread: Spread, pool: usize) -> Vec<Vec<String>> {
    match spread {
        Spread::Same(n) => vec![vec![rows_of(0, size, pool).swap_remove(0)]; n],
        _ => (0..spread.clients())
            .map(|c| rows_of(c, size, pool))
            .collect(),
    }
}

/// A stored starting point: the doc and the columns it projects to.
struct Template {
    snapshot: Vec<u8>,
    row: Row,
}

struct Templates {
    extension: [Template; 2],
    runtime: [Template; 2],
}

impl Templates {
    fn build(edits: u64) -> Result<Templates> {
        let one = |shape, size| -> Result<Template> {
            let edits = if size == Size::Small { 0 } else { edits };
            let (snapshot, row) = workload::history(shape, edits)?;
            Ok(Template { snapshot, row })
        };
        Ok(Templates {
            extension: [
                one(Shape::Extension, Size::Small)?,
                one(Shape::Extension, Size::Large)?,
            ],
            runtime: [
                one(Shape::Runtime, Size::Small)?,
                one(Shape::Runtime, Size::Large)?,
            ],
        })
    }

    /// Plain rows start from the extension's column values (there is no doc).
    fn get(&self, approach: Approach, size: Size) -> &Template {
        let i = (size == Size::Large) as usize;
        match approach.shape() {
            Some(Shape::Runtime) => &self.runtime[i],
            _ => &self.extension[i],
        }
    }
}

struct Cell {
    /// The simulated round trip in ms of the network round; `None` in the loopback matrix.
    hop: Option<f64>,
    size: Size,
    spread: Spread,
    approach: Approach,
    outcome: std::result::Result<Measured, String>,
}

struct Measured {
    writes: usize,
    per_second: f64,
    p50: Duration,
    p99: Duration,
    wal_per_write: f64,
    /// Mean snapshot size of the cell's rows afterwards; `None` without a doc.
    doc_after: Option<f64>,
    /// What the row's stored doc grew by per write (one-row cells with a doc).
    growth_per_write: Option<f64>,
    /// CPU time of the server backends serving the cell, per write (`None` when the server
    /// is not on this machine).
    server_cpu: Option<Duration>,
    /// CPU time of the benchmark's client threads, per write.
    client_cpu: Option<Duration>,
    /// Snapshots the cell's backends decoded, per write (`None` without the extension).
    decodes: Option<f64>,
}

struct Bench {
    settings: Settings,
    config: postgres::Config,
    admin: Client,
    /// Each approach that runs, with its entity name in `_pylon_crdt_snapshots`.
    approaches: Vec<(Approach, String)>,
    /// Each approach that does not, and why.
    skipped: Vec<(Approach, String)>,
    templates: Templates,
}

fn main() -> Result<()> {
    let settings = Settings::from_env()?;
    let mut config = postgres::Config::from_str(&settings.url)?;
    let mut server = config.connect(NoTls)?;
    server.batch_execute(&format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))?;
    server.batch_execute(&format!("CREATE DATABASE {DATABASE}"))?;
    if let Ok(dir) = std::env::var("BENCH_LIBRARY_DIR") {
        // Load the library from `dir` first (see scripts/bench.sh): the extension's functions
        // name it without a path, so dynamic_library_path decides which file is loaded.
        let path = format!("{dir}:$libdir").replace('\'', "''");
        server.batch_execute(&format!(
            "ALTER DATABASE {DATABASE} SET dynamic_library_path = '{path}'"
        ))?;
    }
    let version: String = server.query_one("SHOW server_version", &[])?.get(0);
    drop(server);
    config.dbname(DATABASE);
    let mut admin = config.connect(NoTls)?;
    admin.batch_execute("CREATE EXTENSION pylon_crdt")?;
    let extension: String = admin
        .query_one(
            "SELECT extversion FROM pg_extension WHERE extname = 'pylon_crdt'",
            &[],
        )?
        .get(0);
    check_lock_keys(&mut admin)?;
    let library = loaded_library(&mut admin)?;
    eprintln!("backends load {library}");

    let (mut approaches, mut skipped) = (Vec::new(), Vec::new());
    let picked: Vec<String> = list_env("BENCH_APPROACHES", "")?;
    for approach in Approach::ALL {
        if !picked.is_empty() && !picked.iter().any(|k| k == approach.key()) {
            continue;
        }
        match create_table(&mut admin, approach, &settings) {
            Ok(entity) => approaches.push((approach, entity)),
            Err(e) => {
                eprintln!("{} skipped: {e}", approach.label());
                skipped.push((approach, e.to_string()));
            }
        }
    }

    let started = Instant::now();
    let templates = Templates::build(settings.edits)?;
    eprintln!(
        "built the {}-edit docs in memory in {:.1} s",
        settings.edits,
        started.elapsed().as_secs_f64()
    );

    let mut bench = Bench {
        settings,
        config,
        admin,
        approaches,
        skipped,
        templates,
    };
    let load_before = load_average();
    let cells = match bench.settings.matrix {
        true => bench.run_all()?,
        false => Vec::new(),
    };
    let (network, round_trips) = bench.run_network()?;
    let load = format!("{load_before} before, {} after", load_average());
    let about = Header {
        version,
        extension,
        library,
        load,
    };
    print_report(&bench, &about, &cells);
    print_network(&bench, &network, &round_trips);
    Ok(())
}

/// The 1-minute load average: other work on the machine skews the numbers.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// Which pylon_crdt library this session's backend loaded, with its size (a debug build is
/// about 10 times larger than a release one). Read from /proc, so only when the server runs
/// on this machine.
fn loaded_library(admin: &mut Client) -> Result<String> {
    let pid: i32 = admin.query_one("SELECT pg_backend_pid()", &[])?.get(0);
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    let path = maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| path.ends_with("/pylon_crdt.so"));
    Ok(match path {
        Some(path) => {
            let size = std::fs::metadata(path).map_or(0, |m| m.len());
            format!("`{path}` ({:.1} MB)", size as f64 / 1e6)
        }
        None => "an unknown pylon_crdt library (the server is not on this machine)".into(),
    })
}

/// The runtime path computes lock keys here; they must equal the extension's.
fn check_lock_keys(admin: &mut Client) -> Result<()> {
    for s in ["bench_rt", "s0-0", "l7"] {
        let theirs: i32 = admin
            .query_one("SELECT pylon_crdt_lock_key($1)", &[&s])?
            .get(0);
        if theirs != writer::advisory_key(s) {
            return Err(format!(
                "lock key of {s:?}: extension {theirs}, client {}",
                writer::advisory_key(s)
            )
            .into());
        }
    }
    Ok(())
}

fn function_exists(admin: &mut Client, name: &str) -> Result<bool> {
    Ok(admin
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_proc WHERE proname = $1)",
            &[&name],
        )?
        .get(0))
}

/// Creates the approach's table with every row a cell may write; returns its entity name.
fn create_table(admin: &mut Client, approach: Approach, settings: &Settings) -> Result<String> {
    let table = approach.table();
    admin.batch_execute(&format!(
        r#"CREATE TABLE "{table}" (id text PRIMARY KEY, title text, body text, votes int)"#
    ))?;
    let mut entity = table.to_owned();
    match approach {
        Approach::Enabled | Approach::Registered | Approach::RegisteredPinned => {
            if !function_exists(admin, "pylon_crdt_enable")? {
                return Err("pylon_crdt_enable is not in the installed extension".into());
            }
            admin.execute(
                "SELECT pylon_crdt_enable($1::text::regclass, $2::jsonb)",
                &[
                    &table,
                    &serde_json::from_str::<serde_json::Value>(workload::FIELDS)?,
                ],
            )?;
            entity = admin
                .query_one(
                    "SELECT entity FROM _pylon_crdt_registry WHERE relation = $1::text::regclass",
                    &[&table],
                )?
                .get(0);
        }
        Approach::FunctionLog => {
            if !function_exists(admin, "pylon_crdt_set_storage")? {
                return Err("pylon_crdt_set_storage is not in the installed extension".into());
            }
            admin.execute("SELECT pylon_crdt_set_storage($1, 'log')", &[&entity])?;
        }
        _ => {}
    }
    // Inserted as the approach inserts (through the triggers of an enabled table).
    let rows: Vec<String> = (0..settings.clients)
        .flat_map(|c| {
            let mut rows = rows_of(c, Size::Small, settings.pool);
            rows.extend(rows_of(c, Size::Large, settings.pool));
            rows
        })
        .collect();
    admin.execute(
        &format!(
            r#"INSERT INTO "{table}" (id, title, body, votes) SELECT id, $2, $3, 0 FROM unnest($1::text[]) AS id"#
        ),
        &[&rows, &workload::title(0), &workload::body(0)],
    )?;
    Ok(entity)
}

impl Bench {
    fn run_all(&mut self) -> Result<Vec<Cell>> {
        let n = self.settings.clients;
        let round = Round {
            hop: None,
            config: self.config.clone(),
            seconds: self.settings.seconds,
        };
        let mut cells = Vec::new();
        for size in [Size::Small, Size::Large] {
            let mut spreads = vec![Spread::Single, Spread::Distinct(n)];
            if size == Size::Small && self.settings.contended {
                spreads.push(Spread::Same(n));
            }
            for spread in spreads {
                for (approach, entity) in self.approaches.clone() {
                    let cell = self.cell(&round, approach, &entity, size, spread);
                    eprintln!("{}", table_line(&cell, self.settings.edits));
                    cells.push(cell);
                }
            }
        }
        Ok(cells)
    }

    /// The network round (issue 13): small rows at 1 and N clients and one hot row at each
    /// writer count, through each simulated round trip.
    fn run_network(&mut self) -> Result<(Vec<Cell>, Vec<RoundTrip>)> {
        let upstream = upstream(&self.config)?;
        let small = match self.settings.small_rows {
            true => vec![Spread::Single, Spread::Distinct(self.settings.clients)],
            false => Vec::new(),
        };
        let spreads: Vec<Spread> = small
            .into_iter()
            .chain(self.settings.hot.iter().map(|&n| Spread::Same(n)))
            .collect();
        let approaches: Vec<(Approach, String)> = self
            .approaches
            .iter()
            .filter(|(a, _)| Approach::NETWORK.contains(a))
            .cloned()
            .collect();
        let (mut cells, mut round_trips) = (Vec::new(), Vec::new());
        for &hop_ms in &self.settings.hops.clone() {
            let hop = match hop_ms {
                ms if ms > 0.0 => Some(hop::Hop::start(
                    upstream,
                    Duration::from_secs_f64(ms / 1e3),
                )?),
                _ => None,
            };
            let round = Round {
                hop: Some(hop_ms),
                config: match &hop {
                    Some(hop) => hop::through(&self.config, hop),
                    None => self.config.clone(),
                },
                seconds: self.settings.hop_seconds,
            };
            let measured = hop::measured_round_trip(&round.config)?;
            eprintln!(
                "network round: {hop_ms} ms simulated, SELECT 1 takes {:.3} ms",
                measured.as_secs_f64() * 1e3
            );
            round_trips.push((hop_ms, measured));
            for &spread in &spreads {
                for (approach, entity) in &approaches {
                    let cell = self.cell(&round, *approach, entity, Size::Small, spread);
                    eprintln!("{hop_ms} ms {}", table_line(&cell, self.settings.edits));
                    cells.push(cell);
                }
            }
        }
        Ok((cells, round_trips))
    }

    fn cell(
        &mut self,
        round: &Round,
        approach: Approach,
        entity: &str,
        size: Size,
        spread: Spread,
    ) -> Cell {
        let outcome = self
            .run_cell(round, approach, entity, size, spread)
            .map_err(|e| e.to_string());
        Cell {
            hop: round.hop,
            size,
            spread,
            approach,
            outcome,
        }
    }

    /// Puts the template doc and columns in place on every row of the cell, bypassing
    /// triggers, then VACUUM and CHECKPOINT so each cell starts from the same quiet state.
    fn reset(
        &mut self,
        approach: Approach,
        entity: &str,
        size: Size,
        rows: &[String],
    ) -> Result<()> {
        let template = self.templates.get(approach, size);
        let table = approach.table();
        let mut tx = self.admin.transaction()?;
        tx.batch_execute("SET LOCAL session_replication_role = replica")?;
        if approach.stores_snapshots() {
            tx.execute(
                "DELETE FROM _pylon_crdt_updates WHERE entity = $1 AND row_id = ANY($2)",
                &[&entity, &rows],
            )?;
            tx.execute(
                "INSERT INTO _pylon_crdt_snapshots (entity, row_id, snapshot, updated_at)
                 SELECT $1, r, $3, now() FROM unnest($2::text[]) AS r
                 ON CONFLICT (entity, row_id) DO UPDATE SET snapshot = excluded.snapshot, updated_at = now()",
                &[&entity, &rows, &template.snapshot],
            )?;
        }
        let row = &template.row;
        tx.execute(
            &format!(
                r#"UPDATE "{table}" SET title = $1, body = $2, votes = $3 WHERE id = ANY($4)"#
            ),
            &[&row.title, &row.body, &row.votes, &rows],
        )?;
        tx.commit()?;
        self.admin.batch_execute(&format!(
            r#"VACUUM _pylon_crdt_snapshots, _pylon_crdt_updates, "{table}""#
        ))?;
        self.admin.batch_execute("CHECKPOINT")?;
        Ok(())
    }

    /// What the rows' docs take in storage: snapshots plus update-log entries.
    fn stored_bytes(&mut self, entity: &str, rows: &[String]) -> Result<f64> {
        Ok(self
            .admin
            .query_one(
                "SELECT (SELECT coalesce(sum(octet_length(snapshot)), 0) FROM _pylon_crdt_snapshots
                          WHERE entity = $1 AND row_id = ANY($2))::float8
                      + (SELECT coalesce(sum(octet_length(update)), 0) FROM _pylon_crdt_updates
                          WHERE entity = $1 AND row_id = ANY($2))::float8",
                &[&entity, &rows],
            )?
            .get(0))
    }

    fn run_cell(
        &mut self,
        round: &Round,
        approach: Approach,
        entity: &str,
        size: Size,
        spread: Spread,
    ) -> Result<Measured> {
        let rows = cell_rows(size, spread, self.settings.pool);
        let mut distinct: Vec<String> = rows.concat();
        distinct.sort_unstable();
        distinct.dedup();
        self.reset(approach, entity, size, &distinct)?;

        let duration = Duration::from_secs_f64(round.seconds);
        let next = Arc::new(AtomicU64::new(self.settings.edits + 1));
        // Connected and warmed up (one write each) / measuring.
        let ready = Arc::new(Barrier::new(rows.len() + 1));
        let go = Arc::new(Barrier::new(rows.len() + 1));
        let threads: Vec<_> = rows
            .iter()
            .map(|rows| {
                let (config, entity, rows) =
                    (round.config.clone(), entity.to_owned(), rows.clone());
                let (next, ready, go) = (next.clone(), ready.clone(), go.clone());
                thread::spawn(move || -> Result<ClientRun> {
                    let writer =
                        Writer::connect(&config, approach, &entity, &rows[0]).and_then(|mut w| {
                            w.write(&rows[0], next.fetch_add(1, Ordering::Relaxed))?;
                            Ok(w)
                        });
                    // Always meet the barriers, so one failed client cannot hang the others.
                    ready.wait();
                    go.wait();
                    let mut writer = writer?;
                    let mut latencies = Vec::new();
                    let decoded = writer.decodes()?;
                    let (server_cpu, client_cpu) =
                        (cpu_time(writer.backend_pid), thread_cpu_time());
                    let start = Instant::now();
                    for row in rows.iter().cycle() {
                        if start.elapsed() >= duration {
                            break;
                        }
                        let t = Instant::now();
                        writer.write(row, next.fetch_add(1, Ordering::Relaxed))?;
                        latencies.push(t.elapsed());
                    }
                    let elapsed = start.elapsed();
                    let since = |before: Option<Duration>, after: Option<Duration>| {
                        Some(after?.saturating_sub(before?))
                    };
                    let (server_cpu, client_cpu) = (
                        since(server_cpu, cpu_time(writer.backend_pid)),
                        since(client_cpu, thread_cpu_time()),
                    );
                    let decodes = writer.decodes()?.zip(decoded).map(|(a, b)| a - b);
                    Ok(ClientRun {
                        latencies,
                        elapsed,
                        server_cpu,
                        client_cpu,
                        decodes,
                    })
                })
            })
            .collect();

        ready.wait();
        // Baselines after the warm-up writes, so growth and WAL count only the measured ones.
        // Barrier errors wait until the clients are past `go`.
        let wal_before = self
            .admin
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .map(|r| r.get::<_, String>(0));
        let doc_before = approach
            .shape()
            .map(|_| self.stored_bytes(entity, &distinct));
        go.wait();
        let wal_before = wal_before?;
        let doc_before = doc_before.transpose()?;
        let mut latencies = Vec::new();
        let mut elapsed = Duration::ZERO;
        let mut failure = None;
        let (mut server_cpu, mut client_cpu) = (Some(Duration::ZERO), Some(Duration::ZERO));
        let mut decodes = Some(0i64);
        for t in threads {
            match t.join().map_err(|_| "client thread panicked")? {
                Ok(run) => {
                    latencies.extend(run.latencies);
                    elapsed = elapsed.max(run.elapsed);
                    server_cpu = server_cpu.zip(run.server_cpu).map(|(a, b)| a + b);
                    client_cpu = client_cpu.zip(run.client_cpu).map(|(a, b)| a + b);
                    decodes = decodes.zip(run.decodes).map(|(a, b)| a + b);
                }
                Err(e) => failure = Some(e),
            }
        }
        let wal: f64 = self
            .admin
            .query_one(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)::float8",
                &[&wal_before],
            )?
            .get(0);
        if let Some(e) = failure {
            return Err(e);
        }
        if latencies.is_empty() {
            return Err("no writes completed".into());
        }
        latencies.sort_unstable();
        let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
        let stored_after = match approach.shape() {
            Some(_) => Some(self.stored_bytes(entity, &distinct)?),
            None => None,
        };
        let writes = latencies.len();
        let growth_per_write = match (spread, doc_before, stored_after) {
            (Spread::Same(_), Some(before), Some(after)) => Some((after - before) / writes as f64),
            _ => None,
        };
        Ok(Measured {
            growth_per_write,
            server_cpu: server_cpu.map(|d| d / writes as u32),
            client_cpu: client_cpu.map(|d| d / writes as u32),
            decodes: decodes.map(|d| d as f64 / writes as f64),
            writes,
            per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
            p50: pct(0.50),
            p99: pct(0.99),
            wal_per_write: wal / writes as f64,
            doc_after: stored_after.map(|b| b / distinct.len() as f64),
        })
    }
}

/// How a set of cells connects and how long each runs: straight to the server (the loopback
/// matrix) or through a simulated hop (the network round).
struct Round {
    /// The simulated round trip in ms; `None` for the loopback matrix.
    hop: Option<f64>,
    config: postgres::Config,
    seconds: f64,
}

/// A simulated round trip (ms) and what `SELECT 1` took through it.
type RoundTrip = (f64, Duration);

/// What one client thread of a cell measured.
struct ClientRun {
    latencies: Vec<Duration>,
    elapsed: Duration,
    server_cpu: Option<Duration>,
    client_cpu: Option<Duration>,
    decodes: Option<i64>,
}

/// The server's address, for the simulated hop to forward to.
fn upstream(config: &postgres::Config) -> Result<SocketAddr> {
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        _ => return Err("the network round needs a TCP server address".into()),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    (host.as_str(), port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| format!("{host}:{port} does not resolve").into())
}

/// CPU time (user + system) a process on this machine has used so far: the scheduler's run
/// time in /proc/<pid>/schedstat (nanoseconds). `None` when the process is not here.
fn cpu_time(pid: i32) -> Option<Duration> {
    schedstat(&format!("/proc/{pid}/schedstat"))
}

/// CPU time the calling thread has used so far.
fn thread_cpu_time() -> Option<Duration> {
    schedstat("/proc/thread-self/schedstat")
}

fn schedstat(path: &str) -> Option<Duration> {
    let text = std::fs::read_to_string(path).ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

fn bytes(b: f64) -> String {
    if b < 1024.0 {
        format!("{b:.0} B")
    } else if b < 1024.0 * 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{:.2} MiB", b / (1024.0 * 1024.0))
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

fn size_label(size: Size, edits: u64) -> String {
    match size {
        Size::Small => "small".into(),
        Size::Large => format!("{edits} edits"),
    }
}

fn table_line(cell: &Cell, edits: u64) -> String {
    let row = size_label(cell.size, edits);
    match &cell.outcome {
        Ok(m) => format!(
            "| {row} | {} | {} | {:.0} | {} | {} | {} | {} | {} |",
            cell.spread.label(),
            cell.approach.label(),
            m.per_second,
            ms(m.p50),
            ms(m.p99),
            bytes(m.wal_per_write),
            m.doc_after.map(bytes).unwrap_or_else(|| "–".into()),
            m.writes,
        ),
        Err(e) => format!(
            "| {row} | {} | {} | failed: {} | | | | | |",
            cell.spread.label(),
            cell.approach.label(),
            e.replace('\n', " ")
        ),
    }
}

/// What the run was measured on.
struct Header {
    version: String,
    extension: String,
    library: String,
    load: String,
}

fn print_report(bench: &Bench, about: &Header, cells: &[Cell]) {
    let s = &bench.settings;
    let cores = thread::available_parallelism().map_or(0, |n| n.get());
    let Header {
        version,
        extension,
        library,
        load,
    } = about;
    println!("### Write benchmark\n");
    println!(
        "PostgreSQL {version}, pylon_crdt {extension} loaded from {library}, {cores} cores, \
         client and server on one machine (1-minute load average {load}), {} s per cell. Rows: `small` = one prior \
         write (a client cycles through {} of them, so they stay small); `{} edits` = that \
         many prior writes, each a separate commit under a fresh peer id. Every write sets \
         title, makes a small edit of body ({} characters) and changes votes. Clients: `N, own \
         rows` = N connections on N different rows; `N, one row` = N connections on one row. \
         WAL/write: `pg_wal_lsn_diff` over the cell divided by its writes. Doc after: mean \
         bytes stored per row at the cell's end (snapshot, plus update log for (e)).\n",
        s.seconds,
        s.pool,
        s.edits,
        workload::body(0).len(),
    );
    if !cells.is_empty() {
        println!(
        "| row | clients | approach | writes/s | p50 ms | p99 ms | WAL/write | doc after | writes |"
    );
        println!("|---|---|---|--:|--:|--:|--:|--:|--:|");
        for cell in cells {
            println!("{}", table_line(cell, s.edits));
        }
        for (approach, why) in &bench.skipped {
            println!("\n{} skipped: {why}", approach.label());
        }

        println!(
        "\n| row | clients | a/b writes/s | f/b writes/s | a/c p50 | f/c p50 | d/c p50 | a/e WAL/write | h/g writes/s | pin µs/write |"
    );
        println!("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|");
        let mut seen = Vec::new();
        for cell in cells {
            let key = (cell.size == Size::Large, cell.spread);
            if seen.contains(&key) {
                continue;
            }
            seen.push(key);
            let get = |a| {
                cells
                    .iter()
                    .find(|c| c.size == cell.size && c.spread == cell.spread && c.approach == a)
                    .and_then(|c| c.outcome.as_ref().ok())
            };
            let ratio = |a, b, of: fn(&Measured) -> f64| match (get(a), get(b)) {
                (Some(x), Some(y)) if of(y) > 0.0 => format!("{:.2}×", of(x) / of(y)),
                _ => "–".into(),
            };
            let p50 = |m: &Measured| m.p50.as_secs_f64();
            // What pinning the search_path adds to a write: (g)'s time per write minus (h)'s.
            let pin_cost = match (get(Approach::Registered), get(Approach::RegisteredPinned)) {
                (Some(g), Some(h)) if g.per_second > 0.0 && h.per_second > 0.0 => format!(
                    "{:.1}",
                    (1.0 / g.per_second - 1.0 / h.per_second) * 1e6 * cell.spread.clients() as f64
                ),
                _ => "–".into(),
            };
            println!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                size_label(cell.size, s.edits),
                cell.spread.label(),
                ratio(Approach::Function, Approach::Runtime, |m| m.per_second),
                ratio(Approach::Floor, Approach::Runtime, |m| m.per_second),
                ratio(Approach::Function, Approach::Plain, p50),
                ratio(Approach::Floor, Approach::Plain, p50),
                ratio(Approach::Enabled, Approach::Plain, p50),
                ratio(Approach::Function, Approach::FunctionLog, |m| m
                    .wal_per_write),
                ratio(Approach::RegisteredPinned, Approach::Registered, |m| m
                    .per_second),
                pin_cost,
            );
        }
    }

    println!(
        "\nThe CRDT work in one extension write, timed in the benchmark process without a \
         database (a warm loop of 200 writes from the stored doc; inside a backend, between \
         network waits, the same work runs slower):\n"
    );
    println!("| row | apply the patch | export the snapshot (a), (d) | export the delta (e) |");
    println!("|---|--:|--:|--:|");
    for (size, template) in [
        (Size::Small, &bench.templates.extension[0]),
        (Size::Large, &bench.templates.extension[1]),
    ] {
        let us = |d: Duration| format!("{:.0} µs", d.as_secs_f64() * 1e6);
        match workload::loro_costs(&template.snapshot, 200) {
            Ok(c) => println!(
                "| {} | {} | {} | {} |",
                size_label(size, s.edits),
                us(c.apply),
                us(c.snapshot),
                us(c.delta)
            ),
            Err(e) => println!("| {} | failed: {e} | | |", size_label(size, s.edits)),
        }
    }

    println!(
        "\nWhat a writer of a hot row pays in Loro alone to catch up (`log` storage): 8 docs \
         of one row take 250 turns each (2,000 writes), each taking in the others' 7 changes \
         before it writes: one import per change (as the extension does), or all 7 in one \
         update exported by a doc that holds them; then one change imported into a doc just \
         decoded from the row's snapshot (a cache miss, or after a fold):\n"
    );
    println!(
        "| peers | catch-up, one import per change | per change | catch-up as one blob | \
         first import after a decode | snapshot |"
    );
    println!("|---|--:|--:|--:|--:|--:|");
    for (label, every) in [
        ("one per writer, as now", 0),
        ("a new one every 16 writes, as before", 16),
    ] {
        let us = |d: Duration| format!("{:.0} µs", d.as_secs_f64() * 1e6);
        let each = workload::catch_up_costs(8, 250, every, workload::CatchUpBy::EachChange);
        let blob = workload::catch_up_costs(8, 250, every, workload::CatchUpBy::OneBlob);
        match (each, blob) {
            (Ok(each), Ok(blob)) => println!(
                "| {label} | {} | {} | {} | {} | {} |",
                us(each.per_turn),
                us(each.per_change),
                us(blob.per_turn),
                us(each.after_decode),
                bytes(each.snapshot_bytes as f64)
            ),
            (Err(e), _) | (_, Err(e)) => println!("| {label} | failed: {e} | | | | |"),
        }
    }

    let t = &bench.templates;
    println!("\n| stored doc at the start of a cell | extension: (a), (d), (e) | runtime: (b) |");
    println!("|---|--:|--:|");
    for (label, i) in [
        ("small (one write)".to_string(), 0),
        (format!("{} prior edits", s.edits), 1),
    ] {
        println!(
            "| {label} | {} | {} |",
            bytes(t.extension[i].snapshot.len() as f64),
            bytes(t.runtime[i].snapshot.len() as f64)
        );
    }
}

/// The network round's tables (issue 13).
fn print_network(bench: &Bench, cells: &[Cell], round_trips: &[RoundTrip]) {
    if cells.is_empty() {
        return;
    }
    let s = &bench.settings;
    println!(
        "\n### Across a network hop\n\nThe benchmark's connections go through a proxy that \
         holds every chunk for half the round trip in each direction (0 = straight over \
         loopback); {} s per cell, small rows. `N, one row`: N writers on one hot row, which \
         starts small and grows. Each cell: writes/s, p50 ms, and the CPU time of the server \
         backends serving the cell per write (from /proc/<pid>/schedstat).\n",
        s.hop_seconds
    );
    for (simulated, measured) in round_trips {
        println!(
            "- {simulated} ms simulated: `SELECT 1` takes {:.3} ms (median of 200)",
            measured.as_secs_f64() * 1e3
        );
    }
    let approaches: Vec<Approach> = Approach::NETWORK
        .into_iter()
        .filter(|a| cells.iter().any(|c| c.approach == *a))
        .collect();
    println!(
        "\n| round trip | clients | {} |",
        approaches
            .iter()
            .map(|a| a.label())
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|---|{}", "--:|".repeat(approaches.len()));
    let mut keys: Vec<(u64, Spread)> = Vec::new();
    for c in cells {
        let key = (c.hop.unwrap_or(0.0).to_bits(), c.spread);
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    let get = |hop: u64, spread: Spread, a: Approach| {
        cells
            .iter()
            .find(|c| {
                c.hop.unwrap_or(0.0).to_bits() == hop && c.spread == spread && c.approach == a
            })
            .and_then(|c| c.outcome.as_ref().ok())
    };
    let us = |d: Option<Duration>| {
        d.map_or("–".into(), |d| format!("{:.0} µs", d.as_secs_f64() * 1e6))
    };
    for &(hop, spread) in &keys {
        let line: Vec<String> = approaches
            .iter()
            .map(|&a| match get(hop, spread, a) {
                Some(m) => format!("{:.0}, {}, {}", m.per_second, ms(m.p50), us(m.server_cpu)),
                None => "failed".into(),
            })
            .collect();
        println!(
            "| {} ms | {} | {} |",
            f64::from_bits(hop),
            spread.label(),
            line.join(" | ")
        );
    }

    println!(
        "\n| round trip | clients | a/c writes/s | a/b | a/b' | e/b | e/f | server CPU/write a/f | e/f | (b) client CPU/write | growth/write a, e, b | decodes/1000 writes a, e |"
    );
    println!("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for &(hop, spread) in &keys {
        let ratio = |x, y, of: fn(&Measured) -> Option<f64>| match (
            get(hop, spread, x).and_then(of),
            get(hop, spread, y).and_then(of),
        ) {
            (Some(x), Some(y)) if y > 0.0 => format!("{:.2}×", x / y),
            _ => "–".into(),
        };
        let rate = |m: &Measured| Some(m.per_second);
        let cpu = |m: &Measured| m.server_cpu.map(|d| d.as_secs_f64());
        let growth = [Approach::Function, Approach::FunctionLog, Approach::Runtime]
            .map(|a| {
                get(hop, spread, a)
                    .and_then(|m| m.growth_per_write)
                    .map_or("–".into(), bytes)
            })
            .join(", ");
        let decodes = [Approach::Function, Approach::FunctionLog]
            .map(|a| {
                get(hop, spread, a)
                    .and_then(|m| m.decodes)
                    .map_or("–".into(), |d| format!("{:.0}", d * 1000.0))
            })
            .join(", ");
        println!(
            "| {} ms | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            f64::from_bits(hop),
            spread.label(),
            ratio(Approach::Function, Approach::Plain, rate),
            ratio(Approach::Function, Approach::Runtime, rate),
            ratio(Approach::Function, Approach::RuntimePrepared, rate),
            ratio(Approach::FunctionLog, Approach::Runtime, rate),
            ratio(Approach::FunctionLog, Approach::Floor, rate),
            ratio(Approach::Function, Approach::Floor, cpu),
            ratio(Approach::FunctionLog, Approach::Floor, cpu),
            us(get(hop, spread, Approach::Runtime).and_then(|m| m.client_cpu)),
            growth,
            decodes,
        );
    }
}
