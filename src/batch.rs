//! Sidecar writes deferred to the end of a statement over many rows of an enabled table
//! (issue 16).
//!
//! A row trigger computes the row's doc and projection at once (NEW must show the projection,
//! so that part cannot wait), but the doc's sidecar write can: it is queued here and written
//! with the queue's other rows in one statement per entity, `FLUSH_EVERY` rows at a time, by
//! the table's statement-level trigger at the end of the statement (or earlier, when the
//! queue is full). One statement per thousand rows instead of one per row is most of what
//! makes `INSERT … SELECT`, `COPY` and multi-row `UPDATE`/`DELETE` fast.
//!
//! The queue never shows an old doc to anyone who asks the extension: reading or writing a
//! queued row (`store::fetch`, `store::delete`) or a whole entity writes the queue first, and
//! a row is queued at most once (queueing it again writes the queue first). What a rolled-back
//! savepoint queued is dropped with it; a transaction that would commit with rows still queued
//! (a statement trigger disabled by hand) fails instead of losing them.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use loro::LoroDoc;
use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::cache;
use crate::error::{raise, RowRef};
use crate::store;

/// Rows queued before the queue is written even though the statement goes on: bounds the
/// memory a statement over millions of rows holds (about 1 KB per small row).
const FLUSH_EVERY: usize = 1000;

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

#[derive(Default)]
struct Queue {
    rows: Vec<Queued>,
    keys: HashSet<(String, String)>,
}

thread_local! {
    // Leaked on purpose, like the doc cache: dropping Loro docs in a thread-local destructor
    // at backend exit would run after Loro's own thread-locals are gone.
    static QUEUE: &'static RefCell<Queue> = Box::leak(Box::new(RefCell::new(Queue::default())));
}

fn with_queue<R>(f: impl FnOnce(&mut Queue) -> R) -> R {
    QUEUE.with(|q| f(&mut q.borrow_mut()))
}

fn is_queued(row: RowRef<'_>) -> bool {
    with_queue(|q| {
        !q.rows.is_empty()
            && q.keys
                .contains(&(row.entity.to_owned(), row.row_id.to_owned()))
    })
}

fn push(row: RowRef<'_>, op: Op) {
    if is_queued(row) {
        flush();
    }
    let full = with_queue(|q| {
        q.keys
            .insert((row.entity.to_owned(), row.row_id.to_owned()));
        q.rows.push(Queued {
            entity: row.entity.to_owned(),
            row_id: row.row_id.to_owned(),
            op,
            subxact: unsafe { pg_sys::GetCurrentSubTransactionId() },
        });
        q.rows.len() >= FLUSH_EVERY
    });
    if full {
        flush();
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

/// Writes the queue if it holds `row`: called before the row's doc is read or written.
pub fn flush_row(row: RowRef<'_>) {
    if is_queued(row) {
        flush();
    }
}

/// Writes everything queued: the docs are encoded (on two threads when there are many),
/// then, per entity, one upsert stores the saved rows and one delete removes the deleted
/// ones. The queue is taken first, so a trigger fired by these writes starts with an empty
/// one. A small queue (a statement over a few rows) leaves its docs in the cache; a large
/// one drops them where they were encoded, off the backend's thread.
pub fn flush() {
    let rows = with_queue(|q| {
        q.keys.clear();
        std::mem::take(&mut q.rows)
    });
    if rows.is_empty() {
        return;
    }
    let keep = rows.len() <= KEEP_IN_CACHE;
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
    let (snapshots, docs) = encode_all(docs, keep);
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
        for (row_id, stamp) in store::save_many(entity, &saved) {
            stamps.insert((entity.to_owned(), row_id), stamp);
        }
    }
    // Cache what was stored, under the stamps the writes returned.
    for (key, doc) in rows.into_iter().zip(docs) {
        if let (Some(doc), Some(stamp)) = (doc, stamps.remove(&key)) {
            cache::put(&key.0, &key.1, doc, stamp);
        }
    }
}

/// Per queued row: its encoded snapshot (None for a removal), or the Loro panic's message.
type Encoded = Vec<Option<Result<Vec<u8>, String>>>;

/// Queues up to this long keep their docs in the cache after they are stored.
const KEEP_IN_CACHE: usize = 64;

/// A snapshot per doc (None where there is no doc), and the docs back when `keep`. Encoding
/// is pure Loro work, so past a few docs the second half is encoded (and, unless kept,
/// dropped) on a thread of its own, which never calls into Postgres; Postgres' signals stay
/// blocked on it. A Loro panic becomes that row's error.
fn encode_all(docs: Vec<Option<LoroDoc>>, keep: bool) -> (Encoded, Vec<Option<LoroDoc>>) {
    fn encode(docs: Vec<Option<LoroDoc>>, keep: bool) -> (Encoded, Vec<Option<LoroDoc>>) {
        let snapshots = docs
            .iter()
            .map(|doc| {
                doc.as_ref().map(|doc| {
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        crate::doc::snapshot(doc)
                    }))
                    .map_err(|payload| {
                        payload
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| payload.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "panic without a message".into())
                    })
                })
            })
            .collect();
        let failed = docs
            .iter()
            .zip(&snapshots)
            .any(|(_, s): (_, &Option<Result<_, _>>)| matches!(s, Some(Err(_))));
        if failed {
            // A doc Loro panicked on may panic again when dropped: leak them all.
            std::mem::forget(docs);
            return (snapshots, Vec::new());
        }
        if keep {
            (snapshots, docs)
        } else {
            drop(docs);
            (snapshots, Vec::new())
        }
    }
    let n = docs.len();
    if keep || n < 2 * KEEP_IN_CACHE {
        let (snapshots, kept) = encode(docs, keep);
        let kept = if kept.is_empty() {
            (0..n).map(|_| None).collect()
        } else {
            kept
        };
        return (snapshots, kept);
    }
    let mut first = docs;
    let second = first.split_off(n / 2);
    let (mut snapshots, other) = {
        let blocked = SignalsBlocked::new();
        std::thread::scope(|scope| {
            let worker = scope.spawn(move || encode(second, false));
            drop(blocked); // the worker inherited the blocked mask; the backend needs its signals
            let (mine, _) = encode(first, false);
            (mine, worker.join())
        })
    };
    match other {
        Ok((theirs, _)) => snapshots.extend(theirs),
        Err(_) => raise(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            "pylon_crdt: the thread encoding docs failed".into(),
        ),
    }
    (snapshots, (0..n).map(|_| None).collect())
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

fn forget_all() {
    with_queue(|q| {
        q.keys.clear();
        q.rows.clear();
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
            let left = with_queue(|q| q.rows.len());
            if left > 0 {
                forget_all();
                raise(
                    PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                    format!(
                        "pylon_crdt: {left} docs of rows written by this transaction were never stored; is the pylon_crdt_flush trigger of an enabled table disabled?"
                    ),
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
        SUBXACT_EVENT_ABORT_SUB => with_queue(|q| {
            q.rows.retain(|r| r.subxact < subxact);
            q.keys = q
                .rows
                .iter()
                .map(|r| (r.entity.clone(), r.row_id.clone()))
                .collect();
        }),
        SUBXACT_EVENT_COMMIT_SUB => with_queue(|q| {
            for r in q.rows.iter_mut().filter(|r| r.subxact >= subxact) {
                r.subxact = parent;
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
