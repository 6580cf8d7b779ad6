//! Per-backend state kept across calls: the cache of decoded docs (DESIGN 6) and the peer id
//! each row's doc edits under.
//!
//! Decoding a large snapshot costs O(doc); a cached doc is reused only when the stored row
//! still has the stamp it was decoded from (sidecar tuple xmin and ctid, log position), so it
//! is never stale across backends. A backend is single-threaded: `thread_local!` +
//! `RefCell`, no mutex, and the `lru` crate for eviction. An entry is taken out while a call
//! uses it and put back only after the call succeeded, so a failed call never leaves a
//! half-changed doc behind; the transaction callbacks drop entries touched by a transaction
//! or savepoint that rolls back.
//!
//! Peer ids. Op ids (peer, counter) must never be reused with different content, or Loro
//! rejects or mis-merges them. A fresh random peer per write is safe, but every peer stays in
//! a doc's history for good: a row written 10,000 times would carry 10,000 peers (about 64
//! bytes each, and changes from distinct peers do not compress together). So a backend goes
//! on with the peer id it used for a row while the doc it loads holds exactly the ops it
//! committed under that peer: its counters then continue past them, and no other holder of
//! that peer exists. Anything else (another incarnation of the row, a restored backup, a
//! rolled-back write whose ops may have been exported) gets a fresh random peer. A row this
//! backend has not written gets a fresh one too, so docs that share history (a copy made from
//! another row's snapshot) never share a peer.
//!
//! A peer is retired only when its counter nears Loro's i32 limit. Retiring it every 16
//! writes, as 0.5.0 did, no longer pays with Loro 1.17.1, and costs: each peer stays in the
//! doc, and a writer that catches up on missed changes pays for every peer in their version
//! vectors. In the benchmark's Loro-only tables, 8 writers taking turns on a row import a
//! missed change in 47 µs under one peer each, 69 µs with a new peer every 16 writes, and the
//! snapshot is 124 against 149 KB after 2,000 writes.

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
}

#[derive(Default, Clone, Copy)]
pub struct Stats {
    pub hits: i64,
    pub misses: i64,
    pub decodes: i64,
    pub compactions: i64,
}

type Key = (String, String);

/// A peer's counter past which the next write takes a fresh peer: Loro's counters are i32,
/// and one write may use many (a text insert takes one per character).
const PEER_COUNTER_LIMIT: i32 = 1 << 30;

/// The peer a row's doc last edited under here, and that peer's counter after the edit.
#[derive(Clone, Copy)]
struct PeerUse {
    peer: u64,
    next_counter: i32,
}

thread_local! {
    // Leaked on purpose: a thread-local destructor would drop Loro docs at backend exit,
    // after Loro's own thread-locals are gone, and abort the process.
    static DOCS: &'static RefCell<LruCache<Key, CachedDoc>> =
        Box::leak(Box::new(RefCell::new(LruCache::unbounded())));
    static PEERS: RefCell<LruCache<Key, PeerUse>> =
        RefCell::new(LruCache::new(NonZeroUsize::new(16_384).unwrap()));
    static TOUCHED: RefCell<Vec<Key>> = const { RefCell::new(Vec::new()) };
    pub static STATS: Cell<Stats> = Cell::new(Stats::default());
}

fn key(entity: &str, row_id: &str) -> Key {
    (entity.to_owned(), row_id.to_owned())
}

pub fn count(update: impl FnOnce(&mut Stats)) {
    STATS.with(|s| {
        let mut stats = s.get();
        update(&mut stats);
        s.set(stats);
    });
}

/// Takes the row's entry out of the cache.
pub fn take(entity: &str, row_id: &str) -> Option<CachedDoc> {
    if CACHE_SIZE.get() <= 0 {
        DOCS.with(|d| d.borrow_mut().clear());
        return None;
    }
    DOCS.with(|d| d.borrow_mut().pop(&key(entity, row_id)))
}

/// Puts a doc (back) after a successful call.
pub fn put(entity: &str, row_id: &str, doc: LoroDoc, stamp: Stamp) {
    let capacity = CACHE_SIZE.get().max(0) as usize;
    let Some(capacity) = NonZeroUsize::new(capacity) else {
        return;
    };
    let key = key(entity, row_id);
    TOUCHED.with(|t| t.borrow_mut().push(key.clone()));
    DOCS.with(|d| {
        let mut docs = d.borrow_mut();
        if docs.cap() != capacity {
            docs.resize(capacity);
        }
        docs.put(key, CachedDoc { doc, stamp });
    });
}

/// Sets the peer id the row's doc edits under (see the module comment).
pub fn choose_peer(entity: &str, row_id: &str, doc: &LoroDoc) {
    let used = PEERS.with(|p| p.borrow_mut().get(&key(entity, row_id)).copied());
    let peer = match used {
        Some(u)
            if u.next_counter < PEER_COUNTER_LIMIT
                && doc.oplog_vv().get(&u.peer).copied().unwrap_or(0) == u.next_counter =>
        {
            u.peer
        }
        _ => doc::random_peer(),
    };
    doc::set_peer(doc, peer);
}

/// Records what a successful write made under the doc's peer. Dropped again if the
/// transaction does not commit.
pub fn remember_peer(entity: &str, row_id: &str, doc: &LoroDoc) {
    let peer = doc.peer_id();
    let next_counter = doc.oplog_vv().get(&peer).copied().unwrap_or(0);
    let key = key(entity, row_id);
    TOUCHED.with(|t| t.borrow_mut().push(key.clone()));
    PEERS.with(|p| p.borrow_mut().put(key, PeerUse { peer, next_counter }));
}

/// Forgets one row (its doc was deleted).
pub fn forget(entity: &str, row_id: &str) {
    let key = key(entity, row_id);
    DOCS.with(|d| d.borrow_mut().pop(&key));
    PEERS.with(|p| p.borrow_mut().pop(&key));
}

pub fn len() -> usize {
    DOCS.with(|d| d.borrow().len())
}

/// Drops the cached docs and peer records of the rows this transaction (or, with
/// `keep_list`, the savepoint being rolled back) touched.
fn drop_touched(keep_list: bool) {
    let touched = TOUCHED.with(|t| {
        if keep_list {
            t.borrow().clone()
        } else {
            std::mem::take(&mut *t.borrow_mut())
        }
    });
    DOCS.with(|d| {
        let mut docs = d.borrow_mut();
        for key in &touched {
            docs.pop(key);
        }
    });
    PEERS.with(|p| {
        let mut peers = p.borrow_mut();
        for key in &touched {
            peers.pop(key);
        }
    });
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_xact_event(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::XactEvent::*;
    match event {
        XACT_EVENT_COMMIT | XACT_EVENT_PARALLEL_COMMIT => {
            TOUCHED.with(|t| t.borrow_mut().clear());
        }
        // A prepared transaction may still roll back: treat it as not committed.
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT | XACT_EVENT_PREPARE => drop_touched(false),
        _ => {}
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_subxact_event(
    event: pg_sys::SubXactEvent::Type,
    _mysubid: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    // A rolled-back savepoint may have changed cached docs and used peers: drop what this
    // transaction touched so far (stamps would catch the docs, but this is simpler to trust).
    if event == pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
        drop_touched(true);
    }
}

pub fn init() {
    unsafe {
        pg_sys::RegisterXactCallback(Some(on_xact_event), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(on_subxact_event), std::ptr::null_mut());
    }
}
