//! Storage: the sidecar table `_pylon_crdt_snapshots`, the update log `_pylon_crdt_updates`,
//! the storage modes, and the runtime-compatible advisory lock.
//!
//! PUBLIC cannot touch the sidecar (DESIGN 8); `materialize::check_access` checks the
//! caller's rights on the entity itself first. The read every write starts with (`fetch`)
//! is a set of primary-key probes (`lookup`), which need no privileges; writes run through
//! SPI as the tables' owner, each statement prepared once per backend and kept
//! (`SPI_keepplan`; Postgres' plan cache revalidates kept plans after DDL).

use std::cell::{Cell, RefCell};
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::mem::ManuallyDrop;
use std::num::NonZeroUsize;
use std::rc::Rc;

use lru::LruCache;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::{quote_identifier, OwnedPreparedStatement, SpiTupleTable};
use pgrx::PgOid;

use crate::error::RowRef;
use crate::lookup::{self, CallSnapshot, Probe};

/// The runtime's `pg_advisory_key`: low 32 bits of std's `DefaultHasher` over the `&str`,
/// reinterpreted as i32. Must not change, or the extension and runtime stop serializing.
pub fn advisory_key(s: &str) -> i32 {
    let mut hasher = DefaultHasher::new();
    s.hash(&mut hasher);
    hasher.finish() as u32 as i32
}

/// Transaction-scoped lock on (entity, row_id), shared with the runtime's writers. Called
/// directly rather than through SPI: it is on every write's path.
pub fn lock_row(row: RowRef<'_>) {
    unsafe {
        pgrx::direct_function_call_as_datum(
            pg_sys::pg_advisory_xact_lock_int4,
            &[
                advisory_key(row.entity).into_datum(),
                advisory_key(row.row_id).into_datum(),
            ],
        );
    }
}

/// Where the sidecar lives and who owns it, looked up once per backend.
pub struct Sidecar {
    /// Schema-qualified, quoted name.
    pub table: String,
    /// Schema-qualified, quoted name of the update log.
    pub log: String,
    /// Schema-qualified, quoted name of the table of the logs' last folds.
    pub folds: String,
    pub oid: pg_sys::Oid,
    pub owner: pg_sys::Oid,
}

/// A statement's text and argument types.
type StatementKey = (String, Vec<pg_sys::Oid>);

thread_local! {
    // Looked up once per backend and again after a relcache invalidation of the sidecar (DROP
    // and CREATE EXTENSION in one session make a new table). The old entry is leaked: a
    // caller may still hold it, and it is a few bytes per reinstall.
    static SIDECAR: Cell<Option<&'static Sidecar>> = const { Cell::new(None) };
    static STATEMENTS: RefCell<LruCache<StatementKey, ManuallyDrop<OwnedPreparedStatement>>> =
        RefCell::new(LruCache::new(NonZeroUsize::new(256).unwrap()));
}

pub fn sidecar() -> &'static Sidecar {
    if let Some(sidecar) = SIDECAR.with(Cell::get) {
        return sidecar;
    }
    let found = Spi::connect(|client| {
        let rows = client.select(
            "SELECT n.nspname::text, c.oid, c.relowner
               FROM pg_catalog.pg_extension e
               JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
               JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid
              WHERE e.extname = 'pylon_crdt' AND c.relname = '_pylon_crdt_snapshots'",
            Some(1),
            &[],
        )?;
        if rows.is_empty() {
            return Ok(None);
        }
        rows.first()
            .get_three::<String, pg_sys::Oid, pg_sys::Oid>()
            .map(Some)
    })
    .expect("looking up _pylon_crdt_snapshots");
    let Some((Some(schema), Some(oid), Some(owner))) = found else {
        crate::error::raise(
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            "pylon_crdt: _pylon_crdt_snapshots not found in the extension's schema".into(),
        )
    };
    let schema = quote_identifier(schema);
    let sidecar: &'static Sidecar = Box::leak(Box::new(Sidecar {
        table: format!("{schema}._pylon_crdt_snapshots"),
        log: format!("{schema}._pylon_crdt_updates"),
        folds: format!("{schema}._pylon_crdt_folds"),
        oid,
        owner,
    }));
    SIDECAR.with(|cell| cell.set(Some(sidecar)));
    sidecar
}

/// Schema-qualified, quoted name of another extension table (the registry, the log).
pub fn extension_table(name: &str) -> String {
    extension_object(&quote_identifier(name))
}

/// `schema.object` for an object in the extension's schema; `object` must be SQL already.
pub fn extension_object(object: &str) -> String {
    let sidecar = &sidecar().table;
    let schema = &sidecar[..sidecar.len() - "._pylon_crdt_snapshots".len()];
    format!("{schema}.{object}")
}

/// Runs `f` as the sidecar's owner, restoring the caller's identity afterwards, also when
/// `f` raises (transaction abort restores it as well). Only ever inside a pinned search_path
/// and in a restricted security context, as Postgres' own maintenance commands switch users.
pub fn as_owner<R>(f: impl FnOnce() -> R) -> R {
    debug_assert!(
        crate::search_path::is_pinned(),
        "as_owner outside search_path::pinned"
    );
    struct Restore(pg_sys::Oid, i32);
    impl Drop for Restore {
        fn drop(&mut self) {
            unsafe { pg_sys::SetUserIdAndSecContext(self.0, self.1) };
        }
    }
    let mut user = pg_sys::Oid::INVALID;
    let mut context = 0;
    unsafe { pg_sys::GetUserIdAndSecContext(&mut user, &mut context) };
    let _restore = Restore(user, context);
    unsafe {
        pg_sys::SetUserIdAndSecContext(
            sidecar().owner,
            context
                | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32
                | pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
        )
    };
    f()
}

/// Runs `query` through a kept plan, preparing it on first use. A plan is taken out of the
/// cache while it runs (a trigger fired by it may run other statements) and goes back only
/// on success; on error it is leaked rather than freed mid-abort.
fn with_statement<R>(
    query: &str,
    args: &[DatumWithOid<'_>],
    f: impl FnOnce(SpiTupleTable<'_>) -> pgrx::spi::Result<R>,
) -> R {
    let key = (
        query.to_owned(),
        args.iter().map(DatumWithOid::oid).collect::<Vec<_>>(),
    );
    let cached = STATEMENTS.with(|s| s.borrow_mut().pop(&key));
    let (statement, result) = Spi::connect_mut(|client| {
        let statement = match cached {
            Some(statement) => statement,
            None => {
                let oids: Vec<PgOid> = key.1.iter().map(|oid| PgOid::from(*oid)).collect();
                ManuallyDrop::new(client.prepare_mut(query, &oids)?.keep())
            }
        };
        // `select` on a statement prepared mutable runs it as a volatile statement (a new
        // snapshot, after a command counter increment) without pgrx's `update`, which would
        // assign the transaction an id first: that fails on a hot standby ("cannot assign
        // TransactionIds during recovery") and makes every read call a writing transaction.
        let rows = client.select(&*statement, None, args)?;
        let result = f(rows)?;
        Ok::<_, pgrx::spi::Error>((statement, result))
    })
    .unwrap_or_else(|e| panic!("pylon_crdt: SPI query failed: {e}\n{query}"));
    if let Some((_, evicted)) = STATEMENTS.with(|s| s.borrow_mut().push(key, statement)) {
        drop(ManuallyDrop::into_inner(evicted));
    }
    result
}

/// The first column of the first row, or `None` when there is no row or it is NULL.
pub fn query_one<T: FromDatum + IntoDatum>(query: &str, args: &[DatumWithOid<'_>]) -> Option<T> {
    with_statement(query, args, |rows| {
        if rows.is_empty() {
            Ok(None)
        } else {
            rows.first().get_one::<T>()
        }
    })
}

/// Every row's first column.
pub fn query_column<T: FromDatum + IntoDatum>(query: &str, args: &[DatumWithOid<'_>]) -> Vec<T> {
    with_statement(query, args, |rows| {
        rows.map(|r| r.get::<T>(1).map(Option::unwrap)).collect()
    })
}

/// Runs a statement for its effect.
pub fn run(query: &str, args: &[DatumWithOid<'_>]) {
    with_statement(query, args, |_| Ok(()))
}

/// How a row's doc is kept: the full snapshot rewritten on every write (compatible with the
/// runtime's direct readers), or deltas appended to `_pylon_crdt_updates` and folded in past
/// a threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    Snapshot,
    Log,
}

/// Identifies the stored state a cached doc was decoded from: the sidecar tuple version
/// (xmin and ctid change on every write, by any backend) and the last log entry.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Stamp {
    pub snapshot: Option<String>,
    pub log_seq: Option<i64>,
    /// The newest entry of `_pylon_crdt_folds` the doc holds (written by its own write, or
    /// taken in catching up): a catch-up imports only newer ones. Not part of the identity.
    pub folded_seq: Option<i64>,
    /// Log entries and their bytes, for deciding when to fold the log (not part of the
    /// identity). `fetch` leaves them 0; `row::load` counts what it reads.
    pub log_len: i64,
    pub log_bytes: i64,
    pub snapshot_bytes: i64,
}

/// What `fetch` found. `snapshot` is None when there is none, or when it is unchanged since
/// `known` (the caller's cached stamp), which saves reading and detoasting it.
pub struct Stored {
    pub stamp: Stamp,
    pub snapshot: Option<Vec<u8>>,
    pub storage: Storage,
}

impl Stored {
    /// Whether the row has a stored doc at all.
    pub fn exists(&self) -> bool {
        self.stamp.snapshot.is_some() || self.stamp.log_seq.is_some()
    }
}

/// How `fetch` reads the sidecar, the log and the storage modes: primary-key probes, found
/// once per backend by table name and forgotten on a relcache invalidation of any of the
/// three tables (which DDL on them and their indexes, REINDEX and DROP EXTENSION all send).
struct Probes {
    sidecar: Probe,
    snapshot_column: i16,
    log: Probe,
    seq_column: i16,
    update_column: i16,
    storage: Probe,
    mode_column: i16,
}

thread_local! {
    static PROBES: RefCell<Option<Rc<Probes>>> = const { RefCell::new(None) };
}

fn probes() -> Rc<Probes> {
    if let Some(probes) = PROBES.with(|p| p.borrow().clone()) {
        return probes;
    }
    let s = sidecar();
    let missing = |what: &str| -> ! {
        crate::error::raise(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!("pylon_crdt: {what} not found (is the extension installed completely?)"),
        )
    };
    let table = |name: &str| {
        query_one::<pg_sys::Oid>("SELECT pg_catalog.to_regclass($1)::oid", &[name.into()])
            .unwrap_or_else(|| missing(name))
    };
    let (sidecar_table, log_table) = (table(&s.table), table(&s.log));
    let storage_table = table(&extension_table("_pylon_crdt_storage"));
    let column = |table, name: &str| {
        lookup::attnum(table, name).unwrap_or_else(|| missing(&format!("column {name}")))
    };
    let probes = Rc::new(Probes {
        sidecar: lookup::probe(sidecar_table, &["entity", "row_id"])
            .unwrap_or_else(|| missing("a unique index on _pylon_crdt_snapshots (entity, row_id)")),
        snapshot_column: column(sidecar_table, "snapshot"),
        log: lookup::probe(log_table, &["entity", "row_id", "seq"])
            .unwrap_or_else(|| missing("the primary key of _pylon_crdt_updates")),
        seq_column: column(log_table, "seq"),
        update_column: column(log_table, "update"),
        storage: lookup::probe(storage_table, &["entity"])
            .unwrap_or_else(|| missing("the primary key of _pylon_crdt_storage")),
        mode_column: column(storage_table, "mode"),
    });
    PROBES.with(|p| *p.borrow_mut() = Some(probes.clone()));
    probes
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn forget_tables(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    SIDECAR.with(|cell| {
        if cell
            .get()
            .is_some_and(|s| relid == pg_sys::InvalidOid || relid == s.oid)
        {
            cell.set(None);
        }
    });
    PROBES.with(|p| {
        if let Ok(mut probes) = p.try_borrow_mut() {
            let ours = probes.as_ref().is_some_and(|p| {
                relid == pg_sys::InvalidOid
                    || [p.sidecar.table, p.log.table, p.storage.table].contains(&relid)
            });
            if ours {
                *probes = None;
            }
        }
    });
}

pub fn init() {
    unsafe { pg_sys::CacheRegisterRelcacheCallback(Some(forget_tables), pg_sys::Datum::from(0)) };
}

/// On every write's path: the row's stamp, its snapshot unless `known` already matches, the
/// last log entry, and the entity's storage mode. Three index probes, no SPI (see `lookup`).
pub fn fetch(row: RowRef<'_>, known: Option<&Stamp>) -> Stored {
    crate::batch::flush_row(row);
    let probes = probes();
    let snapshot = CallSnapshot::take();
    let keys = [row.entity, row.row_id];
    let found = lookup::first(&probes.sidecar, &keys, false, &snapshot, |tuple, desc| {
        let stamp = lookup::tuple_stamp(tuple);
        let size = lookup::column_size(tuple, desc, probes.snapshot_column);
        let unchanged = known.and_then(|k| k.snapshot.as_deref()) == Some(stamp.as_str());
        let bytes = if unchanged {
            None
        } else {
            lookup::column::<Vec<u8>>(tuple, desc, probes.snapshot_column)
        };
        (stamp, size, bytes)
    });
    let log_seq = lookup::first(&probes.log, &keys, true, &snapshot, |tuple, desc| {
        lookup::column::<i64>(tuple, desc, probes.seq_column)
    })
    .flatten();
    let mode = lookup::first(
        &probes.storage,
        &[row.entity],
        false,
        &snapshot,
        |tuple, desc| lookup::column::<String>(tuple, desc, probes.mode_column),
    )
    .flatten();
    let (stamp, size, snapshot_bytes) = match found {
        Some((stamp, size, bytes)) => (Some(stamp), size, bytes),
        None => (None, None, None),
    };
    Stored {
        stamp: Stamp {
            snapshot: stamp,
            log_seq,
            folded_seq: None,
            log_len: 0,
            log_bytes: 0,
            snapshot_bytes: size.unwrap_or(0),
        },
        snapshot: snapshot_bytes,
        storage: match mode.as_deref() {
            Some("log") => Storage::Log,
            _ => Storage::Snapshot,
        },
    }
}

/// Log entries after `after` (all when None), oldest first: an index range scan, no SPI (a
/// writer of a hot row reads the entries it missed on every write).
pub fn log_since(row: RowRef<'_>, after: Option<i64>) -> Vec<Vec<u8>> {
    let probes = probes();
    let snapshot = CallSnapshot::take();
    let mut updates = Vec::new();
    lookup::each_after(
        &probes.log,
        &[row.entity, row.row_id],
        after.unwrap_or(0),
        &snapshot,
        |tuple, desc| {
            updates.extend(lookup::column::<Vec<u8>>(tuple, desc, probes.update_column));
            true
        },
    );
    updates
}

/// How many of a fold's newest log entries `_pylon_crdt_folds` keeps: enough for a cached doc
/// up to that many writes behind the fold (every other writer of a hot row), a small copy of
/// what the log held.
const FOLD_KEEPS: i64 = 64;

/// What writing a full snapshot does with the row's log, and what a fold keeps in
/// `_pylon_crdt_folds` for docs other backends cached before it: a row there holds the new
/// snapshot's tuple stamp and encoded `version` and the newest updates it took in, each under
/// a number from the log's sequence (so in the order they were written).
#[derive(Clone, Copy)]
pub enum Fold<'a> {
    /// The row has no log, and nothing is kept.
    Nothing,
    /// Drops the log (now in the snapshot) and keeps its newest entries, then the update of
    /// the write that folds it (`last`, which the log never held).
    Keep {
        version: &'a [u8],
        last: Option<&'a [u8]>,
    },
    /// Drops the log and keeps nothing (a trimmed history must not survive the trim).
    Drop,
}

/// Writes the full snapshot and folds the row's log as `fold` says; returns the new stamp.
/// `exists`: the row had a stored snapshot when it was loaded.
pub fn save_snapshot(row: RowRef<'_>, snapshot: &[u8], exists: bool, fold: Fold<'_>) -> Stamp {
    let s = sidecar();
    let upsert = format!(
        "INSERT INTO {} AS s (entity, row_id, snapshot, updated_at) VALUES ($1, $2, $3, now())
         ON CONFLICT (entity, row_id) DO UPDATE SET snapshot = excluded.snapshot, updated_at = excluded.updated_at
         RETURNING xmin::text || ':' || ctid::text",
        s.table
    );
    // A plain UPDATE for a row known to exist: cheaper than the upsert's speculative insert.
    let update = format!(
        "UPDATE {} SET snapshot = $3, updated_at = now() WHERE entity = $1 AND row_id = $2
         RETURNING xmin::text || ':' || ctid::text",
        s.table
    );
    let args = || [row.entity.into(), row.row_id.into(), snapshot.into()];
    let (stamp, folded_seq) = as_owner(|| {
        let updated = if exists {
            query_one::<String>(&update, &args())
        } else {
            None
        };
        let stamp = updated.or_else(|| query_one::<String>(&upsert, &args()));
        let keys = || [row.entity.into(), row.row_id.into()];
        let folded_seq = match (fold, &stamp) {
            (Fold::Nothing, _) => None,
            // The folding write's own update, numbered from the log's sequence, comes last.
            (Fold::Keep { version, last }, Some(stamp)) => query_one::<i64>(
                &format!(
                    "WITH gone AS (DELETE FROM {log} WHERE entity = $1 AND row_id = $2 RETURNING seq, update),
                          own AS (SELECT pg_catalog.nextval($6::pg_catalog.regclass) AS seq,
                                         $5::pg_catalog.bytea AS update
                                   WHERE $5 IS NOT NULL),
                          kept AS (SELECT seq, update
                                     FROM (SELECT seq, update FROM gone
                                           UNION ALL SELECT seq, update FROM own) AS entries
                                    ORDER BY seq DESC LIMIT {FOLD_KEEPS})
                     INSERT INTO {folds} (entity, row_id, snapshot, version, seqs, updates)
                     SELECT $1, $2, $3, $4,
                            coalesce(pg_catalog.array_agg(seq ORDER BY seq), '{{}}'),
                            coalesce(pg_catalog.array_agg(update ORDER BY seq), '{{}}')
                       FROM kept
                     ON CONFLICT (entity, row_id) DO UPDATE
                        SET snapshot = excluded.snapshot, version = excluded.version,
                            seqs = excluded.seqs, updates = excluded.updates
                     RETURNING seqs[pg_catalog.array_upper(seqs, 1)]",
                    log = s.log,
                    folds = s.folds
                ),
                &[
                    row.entity.into(),
                    row.row_id.into(),
                    stamp.as_str().into(),
                    version.into(),
                    last.into(),
                    extension_table("_pylon_crdt_updates_seq").as_str().into(),
                ],
            ),
            (Fold::Keep { .. } | Fold::Drop, _) => {
                run(
                    &format!("DELETE FROM {} WHERE entity = $1 AND row_id = $2", s.log),
                    &keys(),
                );
                run(
                    &format!("DELETE FROM {} WHERE entity = $1 AND row_id = $2", s.folds),
                    &keys(),
                );
                None
            }
        };
        (stamp, folded_seq)
    });
    Stamp {
        snapshot: stamp,
        log_seq: None,
        folded_seq,
        log_len: 0,
        log_bytes: 0,
        snapshot_bytes: snapshot.len() as i64,
    }
}

/// What `folded_since` found: the snapshot's encoded version, and kept updates with their
/// numbers, oldest first.
pub struct Kept {
    pub version: Vec<u8>,
    pub entries: Vec<(i64, Vec<u8>)>,
}

/// What `_pylon_crdt_folds` keeps for the snapshot tuple `snapshot` (a stamp), if it is the one
/// the last fold or tail write wrote: the snapshot's encoded version and the kept entries
/// numbered from `from` on, oldest first, with their numbers.
pub fn folded_since(row: RowRef<'_>, snapshot: &str, from: Option<i64>) -> Option<Kept> {
    let query = format!(
        "SELECT f.version, u.seq, u.update
           FROM {} f LEFT JOIN LATERAL unnest(f.seqs, f.updates) AS u (seq, update) ON u.seq >= $4
          WHERE f.entity = $1 AND f.row_id = $2 AND f.snapshot = $3
          ORDER BY u.seq",
        sidecar().folds
    );
    let args = [
        row.entity.into(),
        row.row_id.into(),
        snapshot.into(),
        from.unwrap_or(i64::MIN).into(),
    ];
    as_owner(|| {
        with_statement(&query, &args, |rows| {
            let mut found: Option<Kept> = None;
            for r in rows {
                let kept = match &mut found {
                    Some(kept) => kept,
                    None => found.insert(Kept {
                        version: r.get::<Vec<u8>>(1)?.unwrap_or_default(),
                        entries: Vec::new(),
                    }),
                };
                if let (Some(seq), Some(update)) = (r.get::<i64>(2)?, r.get::<Vec<u8>>(3)?) {
                    kept.entries.push((seq, update));
                }
            }
            Ok(found)
        })
    })
}

/// Appends a delta to the row's log; returns its sequence number.
pub fn append_log(row: RowRef<'_>, update: &[u8]) -> i64 {
    let query = format!(
        "INSERT INTO {} (entity, row_id, update) VALUES ($1, $2, $3) RETURNING seq",
        sidecar().log
    );
    as_owner(|| {
        query_one::<i64>(
            &query,
            &[row.entity.into(), row.row_id.into(), update.into()],
        )
    })
    .expect("INSERT ... RETURNING seq")
}

/// Removes the doc and its log; true when there was one.
pub fn delete(row: RowRef<'_>) -> bool {
    crate::batch::flush_row(row);
    let s = sidecar();
    let existed = as_owner(|| {
        let logged = query_one::<bool>(
            &format!(
                "WITH gone AS (DELETE FROM {} WHERE entity = $1 AND row_id = $2 RETURNING 1)
                 SELECT count(*) > 0 FROM gone",
                s.log
            ),
            &[row.entity.into(), row.row_id.into()],
        );
        run(
            &format!("DELETE FROM {} WHERE entity = $1 AND row_id = $2", s.folds),
            &[row.entity.into(), row.row_id.into()],
        );
        let stored = query_one::<bool>(
            &format!(
                "DELETE FROM {} WHERE entity = $1 AND row_id = $2 RETURNING true",
                s.table
            ),
            &[row.entity.into(), row.row_id.into()],
        );
        (stored.unwrap_or(false), logged.unwrap_or(false))
    });
    let (stored, logged) = existed;
    if stored || logged {
        crate::changes::record(row.entity, &[row.row_id], true);
        crate::notify::deleted(row.entity, &[row.row_id]);
        crate::replication::deleted(row.entity, &[row.row_id]);
    }
    stored
}

/// Removes every doc of an entity (TRUNCATE of its table, or disable with drop_docs).
pub fn delete_entity(entity: &str) {
    crate::batch::flush();
    crate::replication::deleted_entity(entity);
    let s = sidecar();
    let (feed, listeners) = (
        crate::changes::publishes(entity),
        crate::notify::enabled(entity),
    );
    if feed || listeners {
        let ids = as_owner(|| {
            query_column::<String>(
                &format!(
                    "SELECT row_id FROM {} WHERE entity = $1 UNION SELECT row_id FROM {} WHERE entity = $1",
                    s.table, s.log
                ),
                &[entity.into()],
            )
        });
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        crate::changes::record(entity, &ids, true);
        crate::notify::deleted(entity, &ids);
    }
    as_owner(|| {
        run(
            &format!("DELETE FROM {} WHERE entity = $1", s.log),
            &[entity.into()],
        );
        run(
            &format!("DELETE FROM {} WHERE entity = $1", s.folds),
            &[entity.into()],
        );
        run(
            &format!("DELETE FROM {} WHERE entity = $1", s.table),
            &[entity.into()],
        );
    });
}

/// Runs the batch statements of `f` as the primary-key probes they are meant to be, whatever
/// the statistics say. Each names its chunk's row ids in the sidecar's index condition
/// (`row_id = ANY`, or a LATERAL probe per id that its LIMIT keeps a subquery), and runs with
/// a generic plan (a custom plan sees the array's length) and no hash, merge, bitmap or
/// sequential scans, in a GUC nest level of their own. Otherwise the planner may scan every
/// row of the entity once per chunk, which makes a statement over N rows cost O(N²): it did,
/// for a million rows inserted earlier in the same transaction, which no statistics count.
fn with_index_probes<R>(f: impl FnOnce() -> R) -> R {
    let _settings = crate::search_path::Settings::set(&[
        (c"plan_cache_mode", c"force_generic_plan"),
        (c"enable_hashjoin", c"off"),
        (c"enable_mergejoin", c"off"),
        (c"enable_bitmapscan", c"off"),
        (c"enable_seqscan", c"off"),
    ]);
    f()
}

/// Stores many rows' snapshots of one entity in one statement (`batch`); returns each row's
/// new stamp. Only for rows without a log.
pub fn save_many(entity: &str, rows: &[(&str, &[u8])]) -> Vec<(String, Stamp)> {
    if rows.is_empty() {
        return Vec::new();
    }
    let query = format!(
        "INSERT INTO {} AS s (entity, row_id, snapshot, updated_at)
         SELECT $1, r.row_id, r.snapshot, now() FROM ROWS FROM (pg_catalog.unnest($2::text[]), pg_catalog.unnest($3::bytea[])) AS r (row_id, snapshot)
         ON CONFLICT (entity, row_id) DO UPDATE SET snapshot = excluded.snapshot, updated_at = excluded.updated_at
         RETURNING s.row_id, s.xmin::text || ':' || s.ctid::text, pg_catalog.length(s.snapshot)",
        sidecar().table
    );
    let ids: Vec<&str> = rows.iter().map(|(id, _)| *id).collect();
    let snapshots: Vec<&[u8]> = rows.iter().map(|(_, s)| *s).collect();
    with_index_probes(|| {
        as_owner(|| {
            with_statement(
                &query,
                &[entity.into(), ids.into(), snapshots.into()],
                |result| {
                    result
                        .map(|r| {
                            let row_id = r.get::<String>(1)?.unwrap_or_default();
                            let stamp = Stamp {
                                snapshot: r.get::<String>(2)?,
                                snapshot_bytes: r.get::<i32>(3)?.unwrap_or(0).into(),
                                ..Stamp::default()
                            };
                            Ok((row_id, stamp))
                        })
                        .collect()
                },
            )
        })
    })
}

/// `save_many` for rows known to have a stored doc: a plain UPDATE, cheaper than the
/// upsert's conflict check. Rows it does not find (none, while their entity rows are locked)
/// go through `save_many`.
pub fn update_many(entity: &str, rows: &[(&str, &[u8])]) {
    if rows.is_empty() {
        return;
    }
    let query = format!(
        "UPDATE {} AS s SET snapshot = r.snapshot, updated_at = now()
           FROM ROWS FROM (pg_catalog.unnest($2::text[]), pg_catalog.unnest($3::bytea[])) AS r (row_id, snapshot)
          WHERE s.entity = $1 AND s.row_id = ANY ($2::text[]) AND s.row_id = r.row_id
          RETURNING s.row_id",
        sidecar().table
    );
    let ids: Vec<&str> = rows.iter().map(|(id, _)| *id).collect();
    let snapshots: Vec<&[u8]> = rows.iter().map(|(_, s)| *s).collect();
    let updated: std::collections::HashSet<String> = with_index_probes(|| {
        as_owner(|| query_column::<String>(&query, &[entity.into(), ids.into(), snapshots.into()]))
    })
    .into_iter()
    .collect();
    if updated.len() < rows.len() {
        let missing: Vec<(&str, &[u8])> = rows
            .iter()
            .filter(|(id, _)| !updated.contains(*id))
            .copied()
            .collect();
        save_many(entity, &missing);
    }
}

/// Removes many rows' docs and logs of one entity in two statements (`batch`).
pub fn delete_many(entity: &str, row_ids: &[&str]) {
    if row_ids.is_empty() {
        return;
    }
    let s = sidecar();
    // The rows that had a doc (a snapshot or log entries): only theirs is a deletion to
    // record and notify (a row whose doc pylon_crdt_delete removed before has none).
    let gone = with_index_probes(|| {
        as_owner(|| {
            query_column::<String>(
                &format!(
                    "WITH logs AS (DELETE FROM {log} WHERE entity = $1 AND row_id = ANY ($2::text[]) RETURNING row_id),
                          folds AS (DELETE FROM {folds} WHERE entity = $1 AND row_id = ANY ($2::text[])),
                          docs AS (DELETE FROM {table} WHERE entity = $1 AND row_id = ANY ($2::text[]) RETURNING row_id)
                     SELECT row_id FROM logs UNION SELECT row_id FROM docs",
                    log = s.log,
                    folds = s.folds,
                    table = s.table
                ),
                &[entity.into(), row_ids.to_vec().into()],
            )
        })
    });
    let gone: Vec<&str> = gone.iter().map(String::as_str).collect();
    crate::changes::record(entity, &gone, true);
    crate::notify::deleted(entity, &gone);
    crate::replication::deleted(entity, &gone);
}

/// What is stored for many rows of one entity (`batch`): per row that has a doc, its
/// snapshot (if any) followed by its log entries, oldest first. One query, and one more per
/// row that has a log.
pub fn fetch_many(entity: &str, row_ids: &[&str]) -> Vec<(String, Vec<Vec<u8>>)> {
    let s = sidecar();
    let query = format!(
        "SELECT r.row_id, s.snapshot, l.found IS NOT NULL
           FROM pg_catalog.unnest($2::text[]) AS r (row_id)
           LEFT JOIN LATERAL (SELECT s.snapshot FROM {table} s
                               WHERE s.entity = $1 AND s.row_id = r.row_id LIMIT 1) s ON true
           LEFT JOIN LATERAL (SELECT true AS found FROM {log} l
                               WHERE l.entity = $1 AND l.row_id = r.row_id LIMIT 1) l ON true",
        log = s.log,
        table = s.table
    );
    let found = with_index_probes(|| {
        as_owner(|| {
            with_statement(
                &query,
                &[entity.into(), row_ids.to_vec().into()],
                |result| {
                    result
                        .map(|r| {
                            let row_id = r.get::<String>(1)?.unwrap_or_default();
                            let snapshot = r.get::<Vec<u8>>(2)?;
                            let has_log = r.get::<bool>(3)?.unwrap_or(false);
                            Ok((row_id, snapshot, has_log))
                        })
                        .collect::<pgrx::spi::Result<Vec<_>>>()
                },
            )
        })
    });
    found
        .into_iter()
        .filter_map(|(row_id, snapshot, has_log)| {
            let mut blobs: Vec<Vec<u8>> = snapshot.into_iter().collect();
            if has_log {
                blobs.extend(log_since(
                    RowRef {
                        entity,
                        row_id: &row_id,
                    },
                    None,
                ));
            }
            (!blobs.is_empty()).then_some((row_id, blobs))
        })
        .collect()
}

/// Removes the log entries of many rows of one entity (`batch`: deleted rows, and rows whose
/// logs new snapshots folded in).
pub fn delete_logs(entity: &str, row_ids: &[&str]) {
    if row_ids.is_empty() {
        return;
    }
    let s = sidecar();
    with_index_probes(|| {
        as_owner(|| {
            for table in [&s.log, &s.folds] {
                run(
                    &format!("DELETE FROM {table} WHERE entity = $1 AND row_id = ANY ($2::text[])"),
                    &[entity.into(), row_ids.to_vec().into()],
                )
            }
        })
    });
}

/// The version of each of these docs of `entity` (rows without a doc are left out), read
/// from the stored blobs' headers without decoding the docs (`doc::stored_version`).
pub fn versions_many(entity: &str, row_ids: &[&str]) -> std::collections::HashMap<String, Vec<u8>> {
    crate::batch::flush();
    fetch_many(entity, row_ids)
        .into_iter()
        .filter_map(|(row_id, blobs)| {
            let version = crate::doc::stored_version(&blobs).ok()?;
            Some((row_id, version))
        })
        .collect()
}
