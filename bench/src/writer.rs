//! The ways of writing a row that the benchmark compares, each over its own connection. All
//! but (b) prepare their statements once; (b) sends what the pylon runtime sends.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use loro::{ExportMode, LoroDoc};
use postgres::{Client, NoTls, Statement, ToStatement};
use serde_json::{json, Value};

use crate::workload::{self, Shape};
use crate::Result;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Approach {
    /// (a) `SELECT pylon_crdt_apply_patch(entity, row_id, fields, patch)`, autocommit.
    Function,
    /// (b) the pylon runtime's client-side transaction: lock, select, decode, patch, encode,
    /// upsert, update. As its `PgLoroStore` sends it: string queries through the synchronous
    /// `postgres` crate, so each statement is prepared on the fly (a Parse round trip, then
    /// Bind/Execute): with BEGIN and COMMIT, ten round trips per write.
    Runtime,
    /// (b') (b) with its statements prepared once per connection: six round trips per write.
    RuntimePrepared,
    /// (c) a plain `UPDATE` of the three columns, no CRDT.
    Plain,
    /// (d) the same plain `UPDATE` on a table enabled with `pylon_crdt_enable`.
    Enabled,
    /// (e) as (a), for an entity in update-log storage (`pylon_crdt_set_storage(.., 'log')`):
    /// a write appends its delta instead of rewriting the snapshot. Not runtime-compatible.
    FunctionLog,
    /// (f) the storage floor of (a): the two row writes every runtime-compatible write makes
    /// (the sidecar's snapshot, rewritten with a blob of the stored size, and the entity's
    /// columns), in one statement and autocommit, with no CRDT work at all. No implementation
    /// of the design can be faster than this.
    Floor,
    /// (g) `SELECT public.pylon_crdt_apply_patch(entity, row_id, patch)` for a registered
    /// (enabled) table, with the session's default search_path: the extension pins the path
    /// for the call and restores it.
    Registered,
    /// (h) as (g), from a session whose search_path already is the pinned value, so the
    /// extension skips its own pin: (g) − (h) is what pinning costs per write.
    RegisteredPinned,
}

impl Approach {
    pub const ALL: [Approach; 9] = [
        Approach::Function,
        Approach::Runtime,
        Approach::RuntimePrepared,
        Approach::Plain,
        Approach::Enabled,
        Approach::FunctionLog,
        Approach::Floor,
        Approach::Registered,
        Approach::RegisteredPinned,
    ];

    /// The approaches of the network round (issue 13).
    pub const NETWORK: [Approach; 6] = [
        Approach::Function,
        Approach::FunctionLog,
        Approach::Runtime,
        Approach::RuntimePrepared,
        Approach::Plain,
        Approach::Floor,
    ];

    /// The letter the labels and ratios use (`BENCH_APPROACHES` picks by it).
    pub fn key(self) -> &'static str {
        let label = self.label();
        &label[1..label.find(')').unwrap_or(1)]
    }

    pub fn label(self) -> &'static str {
        match self {
            Approach::Function => "(a) pylon_crdt_apply_patch",
            Approach::Runtime => "(b) runtime client-side",
            Approach::RuntimePrepared => "(b') (b), statements prepared",
            Approach::Plain => "(c) plain UPDATE",
            Approach::Enabled => "(d) UPDATE, enabled table",
            Approach::FunctionLog => "(e) apply_patch, log storage",
            Approach::Floor => "(f) floor: both row writes, no CRDT",
            Approach::Registered => "(g) apply_patch, registered",
            Approach::RegisteredPinned => "(h) (g), path pinned already",
        }
    }

    pub fn table(self) -> &'static str {
        match self {
            Approach::Function => "bench_fn",
            Approach::Runtime => "bench_rt",
            Approach::RuntimePrepared => "bench_rt_prepared",
            Approach::Plain => "bench_plain",
            Approach::Enabled => "bench_enabled",
            Approach::FunctionLog => "bench_log",
            Approach::Floor => "bench_floor",
            Approach::Registered => "bench_reg",
            Approach::RegisteredPinned => "bench_reg_pinned",
        }
    }

    /// The doc shape this approach's writes build; `None` without a doc.
    pub fn shape(self) -> Option<Shape> {
        match self {
            Approach::Function
            | Approach::Enabled
            | Approach::FunctionLog
            | Approach::Registered
            | Approach::RegisteredPinned => Some(Shape::Extension),
            Approach::Runtime | Approach::RuntimePrepared => Some(Shape::Runtime),
            Approach::Plain | Approach::Floor => None,
        }
    }

    /// Whether the approach's rows have a stored snapshot in `_pylon_crdt_snapshots`.
    pub fn stores_snapshots(self) -> bool {
        self.shape().is_some() || self == Approach::Floor
    }
}

/// The runtime's write: lock, select, decode, patch, encode, upsert, update, in one
/// transaction; `statements` as strings (prepared on the fly) or prepared.
fn runtime_write<S: ToStatement + ?Sized>(
    client: &mut Client,
    statements: [&S; 4],
    entity: &str,
    row_id: &str,
    n: u64,
) -> Result<()> {
    let mut tx = client.transaction()?;
    tx.execute(
        statements[0],
        &[&advisory_key(entity), &advisory_key(row_id)],
    )?;
    let stored: Option<Vec<u8>> = tx
        .query_opt(statements[1], &[&entity, &row_id])?
        .map(|r| r.get(0));
    let doc = LoroDoc::new();
    if let Some(bytes) = stored {
        doc.import(&bytes)?;
    }
    workload::apply_write(&doc, Shape::Runtime, n)?;
    let snapshot = doc.export(ExportMode::Snapshot)?;
    tx.execute(statements[2], &[&entity, &row_id, &snapshot])?;
    let row = workload::project(&doc);
    tx.execute(statements[3], &[&row.title, &row.body, &row.votes, &row_id])?;
    tx.commit()?;
    Ok(())
}

/// The runtime's `pg_advisory_key`: low 32 bits of std's `DefaultHasher` over the `&str`.
pub fn advisory_key(s: &str) -> i32 {
    let mut hasher = DefaultHasher::new();
    s.hash(&mut hasher);
    hasher.finish() as u32 as i32
}

fn update_columns(table: &str) -> String {
    format!(r#"UPDATE "{table}" SET title = $1, body = $2, votes = $3 WHERE id = $4"#)
}

pub struct Writer {
    client: Client,
    approach: Approach,
    entity: String,
    fields: Value,
    statements: Vec<Statement>,
    /// (b): the statements, sent as strings.
    runtime_sql: Vec<String>,
    /// The server process serving this connection (for its CPU time).
    pub backend_pid: i32,
    /// (f): the blob written as the snapshot, the size of the one stored at connect.
    floor_snapshot: Vec<u8>,
}

impl Writer {
    /// `first_row`: a row of the cell, whose stored snapshot (f) writes back.
    pub fn connect(
        config: &postgres::Config,
        approach: Approach,
        entity: &str,
        first_row: &str,
    ) -> Result<Self> {
        let mut client = config.connect(NoTls)?;
        if approach == Approach::RegisteredPinned {
            client.batch_execute("SET search_path = pg_catalog, pg_temp")?;
        }
        let sql = match approach {
            Approach::Registered | Approach::RegisteredPinned => vec![
                "SELECT public.pylon_crdt_apply_patch($1::text, $2::text, $3::jsonb)".into(),
            ],
            Approach::Function | Approach::FunctionLog => vec![
                "SELECT pylon_crdt_apply_patch($1::text, $2::text, $3::jsonb, $4::jsonb)".into(),
            ],
            Approach::Runtime | Approach::RuntimePrepared => vec![
                "SELECT pg_advisory_xact_lock($1::int4, $2::int4)".into(),
                "SELECT snapshot FROM _pylon_crdt_snapshots WHERE entity = $1 AND row_id = $2"
                    .into(),
                "INSERT INTO _pylon_crdt_snapshots (entity, row_id, snapshot, updated_at)
                 VALUES ($1, $2, $3, now())
                 ON CONFLICT (entity, row_id) DO UPDATE SET snapshot = excluded.snapshot, updated_at = now()"
                    .into(),
                update_columns(approach.table()),
            ],
            Approach::Plain | Approach::Enabled => vec![update_columns(approach.table())],
            Approach::Floor => vec![format!(
                r#"WITH doc AS (UPDATE _pylon_crdt_snapshots SET snapshot = $5, updated_at = now()
                                WHERE entity = $6 AND row_id = $4)
                   UPDATE "{}" SET title = $1, body = $2, votes = $3 WHERE id = $4"#,
                approach.table()
            )],
        };
        let floor_snapshot = match approach {
            Approach::Floor => client
                .query_one(
                    "SELECT snapshot FROM _pylon_crdt_snapshots WHERE entity = $1 AND row_id = $2",
                    &[&entity, &first_row],
                )?
                .get(0),
            _ => Vec::new(),
        };
        let backend_pid = client.query_one("SELECT pg_backend_pid()", &[])?.get(0);
        let (statements, runtime_sql) = if approach == Approach::Runtime {
            (Vec::new(), sql)
        } else {
            let prepared = sql
                .iter()
                .map(|s| client.prepare(s))
                .collect::<std::result::Result<_, _>>()?;
            (prepared, Vec::new())
        };
        Ok(Writer {
            client,
            approach,
            entity: entity.to_owned(),
            fields: serde_json::from_str(workload::FIELDS)?,
            statements,
            runtime_sql,
            backend_pid,
            floor_snapshot,
        })
    }

    /// How many snapshots this connection's backend has decoded so far (its doc cache's
    /// misses and stale docs); `None` for the approaches that do not use the extension.
    pub fn decodes(&mut self) -> Result<Option<i64>> {
        match self.approach {
            Approach::Function
            | Approach::FunctionLog
            | Approach::Registered
            | Approach::RegisteredPinned => Ok(Some(
                self.client
                    .query_one("SELECT decodes FROM pylon_crdt_stats()", &[])?
                    .get(0),
            )),
            _ => Ok(None),
        }
    }

    /// Write `n` to `row_id`, committed when this returns.
    pub fn write(&mut self, row_id: &str, n: u64) -> Result<()> {
        let s = &self.statements;
        match self.approach {
            Approach::Function | Approach::FunctionLog => {
                let patch = json!({
                    "title": workload::title(n),
                    "body": workload::body(n),
                    "votes": {"increment": 1},
                });
                self.client
                    .execute(&s[0], &[&self.entity, &row_id, &self.fields, &patch])?;
            }
            Approach::Registered | Approach::RegisteredPinned => {
                let patch = json!({
                    "title": workload::title(n),
                    "body": workload::body(n),
                    "votes": {"increment": 1},
                });
                self.client
                    .execute(&s[0], &[&self.entity, &row_id, &patch])?;
            }
            Approach::Runtime => {
                let q = &self.runtime_sql;
                runtime_write(
                    &mut self.client,
                    [&q[0], &q[1], &q[2], &q[3]],
                    &self.entity,
                    row_id,
                    n,
                )?;
            }
            Approach::RuntimePrepared => {
                runtime_write(
                    &mut self.client,
                    [&s[0], &s[1], &s[2], &s[3]],
                    &self.entity,
                    row_id,
                    n,
                )?;
            }
            Approach::Plain | Approach::Enabled => {
                let votes = n as i32;
                self.client.execute(
                    &s[0],
                    &[&workload::title(n), &workload::body(n), &votes, &row_id],
                )?;
            }
            Approach::Floor => {
                let votes = n as i32;
                self.client.execute(
                    &s[0],
                    &[
                        &workload::title(n),
                        &workload::body(n),
                        &votes,
                        &row_id,
                        &self.floor_snapshot,
                        &self.entity,
                    ],
                )?;
            }
        }
        Ok(())
    }
}
