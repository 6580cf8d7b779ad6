//! Per-backend cache of decoded docs (DESIGN 6). Decoding a large snapshot costs O(doc); a
//! cached doc is reused only when the stored row still has the stamp it was decoded from
//! (sidecar tuple xmin and ctid, log position), so it is never stale across backends.
//!
//! A backend is single-threaded: `thread_local!` + `RefCell`, no mutex, and the `lru` crate
//! for eviction. An entry is taken out while a call uses it and put back only after the call
//! succeeded, so a failed call never leaves a half-changed doc behind; the transaction
//! callbacks drop entries touched by a transaction that aborts, and start a new peer-id epoch.

use std::cell::{Cell, RefCell};
use std::num::NonZeroUsize;

use loro::LoroDoc;
use lru::LruCache;
use pgrx::pg_sys;

use crate::doc;
use crate::store::Stamp;

/// Upper bound on cached docs per backend (`pylon_crdt.cache_size`); 0 disables the cache.
pub static CACHE_SIZE: pgrx::GucSetting<i32> = pgrx::GucSetting::<i32>::new(256);

pub struct CachedDoc {
    pub doc: LoroDoc,
    pub stamp: Stamp,
    epoch: u64,
}

#[derive(Default, Clone, Copy)]
pub struct Stats {
    pub hits: i64,
    pub misses: i64,
    pub decodes: i64,
    pub compactions: i64,
}

type Key = (String, String);

thread_local! {
    // Leaked on purpose: a thread-local destructor would drop Loro docs at backend exit,
    // after Loro's own thread-locals are gone, and abort the process.
    static DOCS: &'static RefCell<LruCache<Key, CachedDoc>> = Box::leak(Box::new(RefCell::new(LruCache::unbounded())));
    static TOUCHED: RefCell<Vec<Key>> = const { RefCell::new(Vec::new()) };
    static EPOCH: Cell<u64> = const { Cell::new(0) };
    pub static STATS: Cell<Stats> = Cell::new(Stats::default());
}

pub fn count(update: impl FnOnce(&mut Stats)) {
    STATS.with(|s| {
        let mut stats = s.get();
        update(&mut stats);
        s.set(stats);
    });
}

/// Takes the row's entry out of the cache. A doc last used by an earlier transaction gets a
/// fresh peer id, so op ids are never reused after a rollback elsewhere.
pub fn take(entity: &str, row_id: &str) -> Option<CachedDoc> {
    if CACHE_SIZE.get() <= 0 {
        DOCS.with(|d| d.borrow_mut().clear());
        return None;
    }
    let entry = DOCS.with(|d| d.borrow_mut().pop(&(entity.to_owned(), row_id.to_owned())))?;
    if entry.epoch != EPOCH.with(Cell::get) {
        doc::fresh_peer(&entry.doc);
    }
    Some(entry)
}

/// Puts a doc (back) after a successful call.
pub fn put(entity: &str, row_id: &str, doc: LoroDoc, stamp: Stamp) {
    let capacity = CACHE_SIZE.get().max(0) as usize;
    let Some(capacity) = NonZeroUsize::new(capacity) else {
        return;
    };
    let key = (entity.to_owned(), row_id.to_owned());
    TOUCHED.with(|t| t.borrow_mut().push(key.clone()));
    DOCS.with(|d| {
        let mut docs = d.borrow_mut();
        if docs.cap() != capacity {
            docs.resize(capacity);
        }
        docs.put(
            key,
            CachedDoc {
                doc,
                stamp,
                epoch: EPOCH.with(Cell::get),
            },
        );
    });
}

/// Forgets one row (its doc was deleted).
pub fn forget(entity: &str, row_id: &str) {
    DOCS.with(|d| d.borrow_mut().pop(&(entity.to_owned(), row_id.to_owned())));
}

pub fn len() -> usize {
    DOCS.with(|d| d.borrow().len())
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_xact_event(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::XactEvent::*;
    match event {
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT => {
            let touched = TOUCHED.with(|t| std::mem::take(&mut *t.borrow_mut()));
            DOCS.with(|d| {
                let mut docs = d.borrow_mut();
                for key in touched {
                    docs.pop(&key);
                }
            });
        }
        XACT_EVENT_COMMIT | XACT_EVENT_PARALLEL_COMMIT | XACT_EVENT_PREPARE => {
            TOUCHED.with(|t| t.borrow_mut().clear());
        }
        _ => return,
    }
    EPOCH.with(|e| e.set(e.get() + 1));
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_subxact_event(
    event: pg_sys::SubXactEvent::Type,
    _mysubid: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    // A rolled-back savepoint may have changed cached docs; stamps would catch it, but
    // dropping them is cheaper than reasoning about it.
    if event == pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
        let touched = TOUCHED.with(|t| t.borrow().clone());
        DOCS.with(|d| {
            let mut docs = d.borrow_mut();
            for key in touched {
                docs.pop(&key);
            }
        });
    }
}

pub fn init() {
    unsafe {
        pg_sys::RegisterXactCallback(Some(on_xact_event), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(on_subxact_event), std::ptr::null_mut());
    }
}
