//! Statements over many rows of an enabled table (issue 16): `INSERT … SELECT`, `COPY`,
//! multi-row `UPDATE` and `DELETE`.
//!
//! Per row, a write costs a Postgres part (the trigger, the row as JSON, storing the doc) and
//! a Loro part (decode, patch, project, encode) of about the same size. A statement's first
//! `ROWS_IN_TRIGGER` rows are written as single rows are: the trigger does the Loro part and
//! queues only the doc's storing (`save`, `delete`), so a short statement keeps its docs in the
//! cache. Past them, the trigger hands the row to a job instead (`submit`): a row's whole Loro
//! part, `doc::rebuild`, which needs nothing from Postgres. Jobs run `CHUNK` at a time on two
//! worker threads kept for the backend's life, while the backend goes on with the statement's
//! next rows (a Postgres backend has one thread; these never call into Postgres and have its
//! signals blocked); each chunk's
//! stored docs are read with one query before it starts, and its results stored with one
//! upsert after it ends. An UPDATE's trigger returns NEW as the statement made it, which is
//! the projection whenever the doc agreed with the row before (the enabled-table invariant);
//! a row whose projection differs anyway (a tree's new node ids, a doc changed while the
//! trigger was off) is corrected when its chunk is stored. Everything queued is stored by the
//! table's statement-level trigger, `pylon_crdt_flush`, at the end of the statement.
//!
//! The queue never shows an old doc to anyone who asks the extension: reading or writing a
//! queued row (`store::fetch`, `store::delete`) or a whole entity stores the queue first, and
//! a row is queued at most once (queueing it again stores the queue first). What a rolled-back
//! savepoint queued is dropped with it; a transaction that would commit with rows still queued
//! (a statement trigger disabled by hand) fails instead of losing them.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;

use loro::LoroDoc;
use pgrx::pg_sys;
use pgrx::prelude::*;
use serde_json::{Map, Value};

use crate::cache;
use crate::doc::history::Author;
use crate::doc::{self, migrate::Migration, DocError, Field, NoticeFrom, Rebuilt};
use crate::error::{raise, RowRef};
use crate::store;

/// Rows queued before the queue is stored even though the statement goes on: bounds the
/// memory a statement over millions of rows holds (about 1 KB per small row).
const FLUSH_EVERY: usize = 1000;

/// Rows of a statement its row triggers write themselves before they hand rows to jobs.
const ROWS_IN_TRIGGER: usize = 64;

/// Jobs a thread runs at a time.
const CHUNK: usize = 250;

enum Op {
    /// Store this doc's snapshot.
    Save(LoroDoc),
    /// Remove the row's doc and log.
    Delete,
}

struct Queued {
    entity: String,
    row_id: String,
    op: Op,
    /// The subtransaction that queued it, so a rolled-back savepoint takes its rows along.
    subxact: pg_sys::SubTransactionId,
}

/// A row handed over by its trigger: what `doc::rebuild` needs, and what the row must show.
pub struct Job {
    pub relid: pg_sys::Oid,
    pub entity: String,
    pub row_id: String,
    pub fields: Arc<Vec<Field>>,
    pub patch: Value,
    /// The row's values, to seed a doc for a row that has none (UPDATE).
    pub seed: Option<Map<String, Value>>,
    /// The row as the statement leaves it; columns the projection disagrees with are rewritten.
    pub row: Map<String, Value>,
    /// A schema change to apply to the stored doc first (`pylon_crdt_alter`).
    pub migration: Option<Arc<Migration>>,
}

struct QueuedJob {
    job: Job,
    subxact: pg_sys::SubTransactionId,
    /// Whether the row had a stored doc, and log entries, which its new snapshot folds in.
    existed: bool,
    had_log: bool,
}

/// A chunk of jobs and the worker running them.
struct Running {
    jobs: Vec<QueuedJob>,
    worker: usize,
}

/// One row's input to `doc::rebuild`.
struct Task {
    stored: Vec<Vec<u8>>,
    seed: Option<Map<String, Value>>,
    fields: Arc<Vec<Field>>,
    patch: Value,
    migration: Option<Arc<Migration>>,
    /// The peer id to edit under.
    peer: u64,
    /// Where the notification's update starts, when the entity notifies.
    notice_from: Option<NoticeFrom>,
    /// Who the changes are made by (`doc::history`).
    author: Arc<Author>,
    /// Whether the write's update goes to other nodes (`replication`).
    delta: bool,
}

/// What a worker is given: a chunk of rows.
type Work = Vec<Task>;
type Results = Vec<Result<Rebuilt, DocError>>;

/// A thread that runs chunks of jobs, kept for the backend's life so that its heap stays
/// warm. It never calls into Postgres, and Postgres' signals are blocked on it.
struct Worker {
    work: Sender<Work>,
    results: Receiver<Results>,
}

/// Workers per backend: two chunks can be in flight while the backend prepares a third.
const WORKERS: usize = 2;

impl Worker {
    fn spawn() -> Worker {
        let (work, inbox) = channel::<Work>();
        let (outbox, results) = channel::<Results>();
        let _blocked = SignalsBlocked::new();
        std::thread::spawn(move || {
            for chunk in inbox {
                let done = chunk
                    .iter()
                    .map(|t| {
                        doc::rebuild(
                            &t.stored,
                            t.seed.as_ref(),
                            &t.fields,
                            &t.patch,
                            t.migration.as_deref(),
                            doc::Editor {
                                peer: t.peer,
                                author: Some(&t.author),
                                notice_from: t.notice_from.as_ref(),
                                delta: t.delta,
                            },
                        )
                    })
                    .collect();
                drop(chunk);
                if outbox.send(done).is_err() {
                    break;
                }
            }
        });
        Worker { work, results }
    }
}

/// A store in progress: the subtransaction it runs in, and those of the rows it stores.
struct Storing {
    within: pg_sys::SubTransactionId,
    rows: Vec<pg_sys::SubTransactionId>,
}

#[derive(Default)]
struct Queue {
    rows: Vec<Queued>,
    waiting: Vec<QueuedJob>,
    running: VecDeque<Running>,
    workers: Vec<Worker>,
    done: Vec<(QueuedJob, Result<Rebuilt, DocError>)>,
    /// Every (entity, row) in any of the above.
    keys: HashSet<(String, String)>,
    /// Rows the current statement's triggers have seen.
    statement_rows: usize,
    /// The stores in progress (they can nest: a trigger fired by a store may read a queued
    /// row). If storing fails with a Postgres error and an enclosing savepoint catches it,
    /// rows of the surviving outer subtransactions went down with the failed batch: `lost`
    /// then fails the commit.
    storing: Vec<Storing>,
    lost: bool,
    /// When the client statement whose rows `statement_rows` counts started.
    statement_start: pg_sys::TimestampTz,
}

impl Queue {
    fn is_empty(&self) -> bool {
        self.rows.is_empty()
            && self.waiting.is_empty()
            && self.running.is_empty()
            && self.done.is_empty()
    }
}

thread_local! {
    // Leaked on purpose, like the doc cache: dropping Loro docs in a thread-local destructor
    // at backend exit would run after Loro's own thread-locals are gone.
    static QUEUE: &'static RefCell<Queue> = Box::leak(Box::new(RefCell::new(Queue::default())));
}

fn with_queue<R>(f: impl FnOnce(&mut Queue) -> R) -> R {
    QUEUE.with(|q| f(&mut q.borrow_mut()))
}

fn key(row: RowRef<'_>) -> (String, String) {
    (row.entity.to_owned(), row.row_id.to_owned())
}

fn is_queued(row: RowRef<'_>) -> bool {
    with_queue(|q| !q.keys.is_empty() && q.keys.contains(&key(row)))
}

fn subxact() -> pg_sys::SubTransactionId {
    unsafe { pg_sys::GetCurrentSubTransactionId() }
}

fn push(row: RowRef<'_>, op: Op) {
    if is_queued(row) {
        flush();
    }
    let full = with_queue(|q| {
        q.keys.insert(key(row));
        q.rows.push(Queued {
            entity: row.entity.to_owned(),
            row_id: row.row_id.to_owned(),
            op,
            subxact: subxact(),
        });
        q.rows.len() >= FLUSH_EVERY
    });
    if full {
        store_rows();
    }
}

/// Queues a row's changed doc, to be encoded and stored with the rest of the queue.
pub fn save(row: RowRef<'_>, doc: LoroDoc) {
    push(row, Op::Save(doc));
}

/// Queues the removal of a row's doc.
pub fn delete(row: RowRef<'_>) {
    cache::forget(row.entity, row.row_id);
    push(row, Op::Delete);
}

/// Counts a row of the current statement; true once the statement is past the rows its
/// triggers write themselves, when the row should go to `submit`.
pub fn wants_job() -> bool {
    let started = unsafe { pg_sys::GetCurrentStatementStartTimestamp() };
    with_queue(|q| {
        if q.statement_start != started {
            q.statement_start = started;
            q.statement_rows = 0;
        }
        q.statement_rows += 1;
        q.statement_rows > ROWS_IN_TRIGGER
    })
}

/// The `pylon_crdt_flush` statement trigger. A statement the extension runs while storing
/// the queue (correcting a row's columns) ends inside that store, which goes on by itself.
pub fn statement_end() {
    if with_queue(|q| q.storing.is_empty()) {
        flush();
        // The next statement starts counting again (statements in a loop inside one client
        // statement, too: each single-row UPDATE stays on the trigger's own path).
        with_queue(|q| q.statement_rows = 0);
    }
}

/// Hands a row's write to a job.
pub fn submit(job: Job) {
    let row = RowRef {
        entity: &job.entity,
        row_id: &job.row_id,
    };
    if is_queued(row) {
        flush();
    }
    cache::forget(&job.entity, &job.row_id);
    let full = with_queue(|q| {
        q.keys.insert((job.entity.clone(), job.row_id.clone()));
        q.waiting.push(QueuedJob {
            job,
            subxact: subxact(),
            existed: false,
            had_log: false,
        });
        q.waiting.len() >= CHUNK
    });
    if full {
        // With every worker busy, store the oldest chunk first; then start this one.
        if with_queue(|q| q.running.len() >= WORKERS) {
            finish_oldest();
            store_done();
        }
        start_waiting();
    }
}

/// Stores the queue if it holds `row`: called before the row's doc is read or written.
pub fn flush_row(row: RowRef<'_>) {
    if is_queued(row) {
        flush();
    }
}

/// Stores everything queued. Called at the end of each statement on an enabled table (the
/// `pylon_crdt_flush` trigger), and whenever a queued row or a whole entity is about to be
/// read or written.
pub fn flush() {
    finish_running();
    store_done();
    if with_queue(|q| !q.waiting.is_empty()) {
        // The statement's last rows: split them over both workers, nothing else to overlap.
        let half = with_queue(|q| q.waiting.len().div_ceil(WORKERS));
        let rest = with_queue(|q| q.waiting.split_off(half));
        start_waiting();
        with_queue(|q| q.waiting = rest);
        start_waiting();
        finish_running();
        store_done();
    }
    store_rows();
    with_queue(|q| {
        if q.is_empty() {
            q.keys.clear();
        }
    });
}

/// Reads the waiting jobs' stored docs and starts a thread on them.
fn start_waiting() {
    let mut jobs = with_queue(|q| std::mem::take(&mut q.waiting));
    if jobs.is_empty() {
        return;
    }
    let mut stored: Vec<Vec<Vec<u8>>> = Vec::with_capacity(jobs.len());
    let mut entities: Vec<String> = Vec::new();
    for queued in &jobs {
        if !entities.contains(&queued.job.entity) {
            entities.push(queued.job.entity.clone());
        }
    }
    let mut found: HashMap<(String, String), Vec<Vec<u8>>> = HashMap::new();
    for entity in &entities {
        let ids: Vec<&str> = jobs
            .iter()
            .filter(|q| &q.job.entity == entity)
            .map(|q| q.job.row_id.as_str())
            .collect();
        for (row_id, blobs) in store::fetch_many(entity, &ids) {
            found.insert((entity.clone(), row_id), blobs);
        }
    }
    for queued in &mut jobs {
        let blobs = found
            .remove(&(queued.job.entity.clone(), queued.job.row_id.clone()))
            .unwrap_or_default();
        queued.existed = !blobs.is_empty();
        queued.had_log = blobs.len() > 1;
        stored.push(blobs);
    }
    let author = Arc::new(crate::history::current_author());
    let work: Work = jobs
        .iter_mut()
        .zip(stored)
        .map(|(queued, stored)| Task {
            stored,
            seed: queued.job.seed.take(),
            fields: queued.job.fields.clone(),
            patch: std::mem::take(&mut queued.job.patch),
            migration: queued.job.migration.clone(),
            peer: doc::random_peer(),
            notice_from: crate::notify::notice_from(&queued.job.entity, &queued.job.row_id),
            author: author.clone(),
            delta: crate::replication::sends(),
        })
        .collect();
    let worker = with_queue(|q| {
        if q.workers.len() < WORKERS {
            q.workers.push(Worker::spawn());
        }
        // The one not in use (at most WORKERS - 1 chunks run when a chunk starts).
        (0..q.workers.len())
            .find(|w| !q.running.iter().any(|r| r.worker == *w))
            .unwrap_or(0)
    });
    let sent = with_queue(|q| q.workers[worker].work.send(work).is_ok());
    if !sent {
        with_queue(|q| q.workers.clear());
        raise(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            "pylon_crdt: the thread writing docs is gone".into(),
        );
    }
    with_queue(|q| q.running.push_back(Running { jobs, worker }));
}

/// Waits for the oldest running chunk, if any, and moves its results to `done`.
fn finish_oldest() {
    let Some(running) = with_queue(|q| q.running.pop_front()) else {
        return;
    };
    let results = with_queue(|q| q.workers.get(running.worker).map(|w| w.results.recv()));
    let Some(Ok(results)) = results else {
        with_queue(|q| q.workers.clear());
        raise(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            "pylon_crdt: the thread writing docs failed".into(),
        )
    };
    with_queue(|q| q.done.extend(running.jobs.into_iter().zip(results)));
}

/// Waits for every running chunk.
fn finish_running() {
    while with_queue(|q| !q.running.is_empty()) {
        finish_oldest();
    }
}

/// Stores the finished jobs: per entity one upsert of the new snapshots (and one delete of
/// the logs they folded in), then the rows whose columns disagree with their projection.
fn store_done() {
    let done = with_queue(|q| {
        for (queued, _) in &q.done {
            q.keys
                .remove(&(queued.job.entity.clone(), queued.job.row_id.clone()));
        }
        std::mem::take(&mut q.done)
    });
    if done.is_empty() {
        return;
    }
    let failed = done.iter().find_map(|(queued, result)| {
        let e = result.as_ref().err()?;
        Some((
            queued.job.entity.clone(),
            queued.job.row_id.clone(),
            e.clone(),
        ))
    });
    if let Some((entity, row_id, e)) = failed {
        // Back in the queue, so that a savepoint rolled back by this error takes exactly its
        // own rows along.
        with_queue(|q| {
            q.done = done;
            rebuild_keys(q);
        });
        crate::error::raise_doc(
            RowRef {
                entity: &entity,
                row_id: &row_id,
            },
            e,
        );
    }
    begin_storing(done.iter().map(|(j, _)| j.subxact).collect());
    let mut entities: Vec<&str> = Vec::new();
    for (queued, _) in &done {
        if !entities.contains(&queued.job.entity.as_str()) {
            entities.push(&queued.job.entity);
        }
    }
    for entity in entities {
        let rows = done.iter().filter(|(q, _)| q.job.entity == entity);
        let folded: Vec<&str> = rows
            .clone()
            .filter(|(q, _)| q.had_log)
            .map(|(q, _)| q.job.row_id.as_str())
            .collect();
        store::delete_logs(entity, &folded);
        let saved = |existed: bool| -> Vec<(&str, &[u8])> {
            rows.clone()
                .filter(|(q, _)| q.existed == existed)
                .filter_map(|(q, r)| {
                    let snapshot = r.as_ref().ok()?.snapshot.as_deref()?;
                    Some((q.job.row_id.as_str(), snapshot))
                })
                .collect()
        };
        let (existing, created) = (saved(true), saved(false));
        store::update_many(entity, &existing);
        store::save_many(entity, &created);
        let deltas: Vec<(&str, &[u8])> = rows
            .clone()
            .filter_map(|(q, r)| Some((q.job.row_id.as_str(), r.as_ref().ok()?.delta.as_deref()?)))
            .collect();
        crate::replication::wrote_many(entity, &deltas);
        let changed: Vec<&str> = existing.iter().chain(&created).map(|(id, _)| *id).collect();
        crate::changes::record(entity, &changed, false);
        for (queued, result) in rows {
            if let Ok(Rebuilt {
                notice: Some(notice),
                ..
            }) = result
            {
                let row = RowRef {
                    entity,
                    row_id: &queued.job.row_id,
                };
                crate::notify::wrote_notice(row, notice.clone(), queued.existed);
            }
        }
    }
    for (queued, result) in &done {
        let Ok(rebuilt) = result else { continue };
        let Some(stale) = crate::row::stale_columns(&queued.job.row, &rebuilt.projection) else {
            continue;
        };
        if let Some((_, table)) =
            crate::materialize::EntityTable::registered_relation(queued.job.relid)
        {
            let row = RowRef {
                entity: &queued.job.entity,
                row_id: &queued.job.row_id,
            };
            table.update_columns(row, &stale);
        }
    }
    with_queue(|q| q.storing.pop());
}

/// Stores the queued saves and deletes: the docs are encoded, then, per entity, one upsert
/// stores the saved rows and one delete removes the deleted ones; the saved docs go to the
/// cache under their new stamps. The queue is taken first, so a trigger fired by these
/// writes starts with an empty one.
fn store_rows() {
    let rows = with_queue(|q| {
        for r in &q.rows {
            q.keys.remove(&(r.entity.clone(), r.row_id.clone()));
        }
        std::mem::take(&mut q.rows)
    });
    if rows.is_empty() {
        return;
    }
    begin_storing(rows.iter().map(|r| r.subxact).collect());
    let (rows, docs): (Vec<(String, String)>, Vec<Option<LoroDoc>>) = rows
        .into_iter()
        .map(|r| {
            let doc = match r.op {
                Op::Save(doc) => Some(doc),
                Op::Delete => None,
            };
            ((r.entity, r.row_id), doc)
        })
        .unzip();
    let (snapshots, docs) = encode_all(docs);
    let mut entities: Vec<&str> = Vec::new();
    for (entity, _) in &rows {
        if !entities.contains(&entity.as_str()) {
            entities.push(entity);
        }
    }
    let mut stamps = HashMap::new();
    for entity in entities {
        let mut saved: Vec<(&str, &[u8])> = Vec::new();
        let mut deleted: Vec<&str> = Vec::new();
        for ((_, row_id), snapshot) in rows
            .iter()
            .zip(&snapshots)
            .filter(|((e, _), _)| e == entity)
        {
            match snapshot {
                Some(Ok(bytes)) => saved.push((row_id, bytes)),
                Some(Err(message)) => raise(
                    PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
                    format!(
                        "pylon_crdt: {}: internal error in Loro: {message}",
                        RowRef { entity, row_id }
                    ),
                ),
                None => deleted.push(row_id),
            }
        }
        store::delete_many(entity, &deleted);
        let saved_ids: Vec<&str> = saved.iter().map(|(id, _)| *id).collect();
        crate::changes::record(entity, &saved_ids, false);
        for (row_id, stamp) in store::save_many(entity, &saved) {
            stamps.insert((entity.to_owned(), row_id), stamp);
        }
    }
    with_queue(|q| q.storing.pop());
    // Cache what was stored, under the stamps the writes returned.
    for (key, doc) in rows.into_iter().zip(docs) {
        if let (Some(doc), Some(stamp)) = (doc, stamps.remove(&key)) {
            cache::put(&key.0, &key.1, doc, stamp);
        }
    }
}

/// Per queued row: its encoded snapshot (None for a removal), or the Loro panic's message.
type Encoded = Vec<Option<Result<Vec<u8>, String>>>;

/// A snapshot per doc (None where there is no doc), and the docs back to be cached. The
/// queue holds at most a statement's first `ROWS_IN_TRIGGER` docs (the rest go to jobs), so
/// they are encoded here, on the backend's thread. A Loro panic becomes that row's error,
/// and then no doc is handed back: one Loro panicked on may panic again when dropped, so they
/// are all leaked.
fn encode_all(docs: Vec<Option<LoroDoc>>) -> (Encoded, Vec<Option<LoroDoc>>) {
    let snapshots: Encoded = docs
        .iter()
        .map(|doc| {
            doc.as_ref().map(|doc| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| doc::snapshot(doc)))
                    .map_err(|payload| doc::panic_message(payload.as_ref()))
            })
        })
        .collect();
    if snapshots.iter().any(|s| matches!(s, Some(Err(_)))) {
        let none = docs.iter().map(|_| None).collect();
        std::mem::forget(docs);
        return (snapshots, none);
    }
    (snapshots, docs)
}

/// Blocks every signal on this thread while alive, so a thread spawned meanwhile starts with
/// them blocked: Postgres' handlers must only ever run on the backend's own thread.
struct SignalsBlocked(libc::sigset_t);

impl SignalsBlocked {
    fn new() -> SignalsBlocked {
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
            SignalsBlocked(old)
        }
    }
}

impl Drop for SignalsBlocked {
    fn drop(&mut self) {
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut());
        }
    }
}

fn begin_storing(rows: Vec<pg_sys::SubTransactionId>) {
    let within = subxact();
    with_queue(|q| q.storing.push(Storing { within, rows }));
}

/// Waits for the running chunks without storing them (the transaction or savepoint is going
/// away, and errors must not be raised here).
fn abandon_running() {
    while let Some(running) = with_queue(|q| q.running.pop_front()) {
        match with_queue(|q| q.workers.get(running.worker).map(|w| w.results.recv())) {
            Some(Ok(results)) => {
                with_queue(|q| q.done.extend(running.jobs.into_iter().zip(results)))
            }
            // The worker is gone with these rows: never let the transaction commit.
            _ => with_queue(|q| {
                q.workers.clear();
                q.lost = true;
            }),
        }
    }
}

fn rebuild_keys(q: &mut Queue) {
    let mut keys = HashSet::new();
    keys.extend(q.rows.iter().map(|r| (r.entity.clone(), r.row_id.clone())));
    keys.extend(
        q.waiting
            .iter()
            .chain(q.done.iter().map(|(j, _)| j))
            .map(|j| (j.job.entity.clone(), j.job.row_id.clone())),
    );
    q.keys = keys;
}

fn forget_all() {
    abandon_running();
    with_queue(|q| {
        q.rows.clear();
        q.waiting.clear();
        q.done.clear();
        q.keys.clear();
        q.storing.clear();
        q.lost = false;
    });
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_xact_event(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::XactEvent::*;
    match event {
        XACT_EVENT_PRE_COMMIT | XACT_EVENT_PRE_PREPARE => {
            let left = with_queue(|q| !q.is_empty() || q.lost);
            if left {
                forget_all();
                raise(
                    PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                    "pylon_crdt: docs of rows written by this transaction were never stored (is the pylon_crdt_flush trigger of an enabled table disabled, or did a savepoint catch an error while they were stored?)".into(),
                );
            }
        }
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT => forget_all(),
        _ => {}
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_subxact_event(
    event: pg_sys::SubXactEvent::Type,
    subxact: pg_sys::SubTransactionId,
    parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::SubXactEvent::*;
    match event {
        // Subtransaction ids only grow, and a savepoint ends after its children: what is
        // queued at or past `subxact` is exactly what it (and its released children) queued.
        SUBXACT_EVENT_ABORT_SUB => {
            abandon_running();
            with_queue(|q| {
                // A savepoint at or outside the store caught an error from it: rows of outer
                // subtransactions in that store were taken from the queue and never stored.
                // (An error inside a trigger the store fired, caught there, is no concern.)
                let interrupted = q.storing.iter().any(|st| subxact <= st.within);
                if interrupted {
                    if q.storing
                        .iter()
                        .flat_map(|st| &st.rows)
                        .any(|s| *s < subxact)
                    {
                        q.lost = true;
                    }
                    q.storing.retain(|st| st.within < subxact);
                }
                q.rows.retain(|r| r.subxact < subxact);
                q.waiting.retain(|j| j.subxact < subxact);
                q.done.retain(|(j, _)| j.subxact < subxact);
                rebuild_keys(q);
            })
        }
        SUBXACT_EVENT_COMMIT_SUB => with_queue(|q| {
            for r in q.rows.iter_mut().filter(|r| r.subxact >= subxact) {
                r.subxact = parent;
            }
            let jobs = q
                .waiting
                .iter_mut()
                .chain(q.done.iter_mut().map(|(j, _)| j))
                .chain(q.running.iter_mut().flat_map(|r| r.jobs.iter_mut()));
            for j in jobs.filter(|j| j.subxact >= subxact) {
                j.subxact = parent;
            }
        }),
        _ => {}
    }
}

pub fn init() {
    unsafe {
        pg_sys::RegisterXactCallback(Some(on_xact_event), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(on_subxact_event), std::ptr::null_mut());
    }
}
