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
use std::collections::HashSet;

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
    /// Store this snapshot (the doc is cached once it is stored).
    Save { snapshot: Vec<u8>, doc: LoroDoc },
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

/// Queues a row's new snapshot; `doc` is the doc it encodes.
pub fn save(row: RowRef<'_>, doc: LoroDoc, snapshot: Vec<u8>) {
    push(row, Op::Save { snapshot, doc });
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

/// Writes everything queued: per entity, one upsert for the saved rows and one delete for
/// the deleted ones. The queue is taken first, so a trigger fired by these writes starts
/// with an empty one.
pub fn flush() {
    let rows = with_queue(|q| {
        q.keys.clear();
        std::mem::take(&mut q.rows)
    });
    if rows.is_empty() {
        return;
    }
    let mut entities: Vec<&str> = Vec::new();
    for queued in &rows {
        if !entities.contains(&queued.entity.as_str()) {
            entities.push(&queued.entity);
        }
    }
    let mut docs = Vec::new();
    for entity in entities {
        let mut saved: Vec<(&str, &[u8])> = Vec::new();
        let mut deleted: Vec<&str> = Vec::new();
        for queued in rows.iter().filter(|r| r.entity == entity) {
            match &queued.op {
                Op::Save { snapshot, .. } => saved.push((&queued.row_id, snapshot)),
                Op::Delete => deleted.push(&queued.row_id),
            }
        }
        store::delete_many(entity, &deleted);
        docs.push((entity.to_owned(), store::save_many(entity, &saved)));
    }
    // Cache what was stored, under the stamps the writes returned.
    let mut stamps: std::collections::HashMap<(String, String), store::Stamp> = docs
        .into_iter()
        .flat_map(|(entity, stamps)| {
            stamps
                .into_iter()
                .map(move |(row_id, stamp)| ((entity.clone(), row_id), stamp))
        })
        .collect();
    for queued in rows {
        if let Op::Save { doc, .. } = queued.op {
            if let Some(stamp) = stamps.remove(&(queued.entity.clone(), queued.row_id.clone())) {
                cache::put(&queued.entity, &queued.row_id, doc, stamp);
            }
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
