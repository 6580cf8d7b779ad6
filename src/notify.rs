//! Notifications on commit (issue 11): connections that `LISTEN` hear of every committed change
//! to a doc.
//!
//! A write records, per changed row, what a listener needs: the kind of change, the doc's
//! version after it, and the Loro update from the version the row had before this
//! transaction first changed it, so one update covers all of the transaction's writes to the
//! row. The records stay in backend memory until the transaction ends, and a rolled-back
//! savepoint undoes its own. At PRE_COMMIT each row's record becomes one `NOTIFY` on the
//! entity's channel (`channel`), which Postgres delivers if, and only when, the transaction
//! commits. The row's lock is held from its first write to commit, so no other writer's ops
//! can slip into the update.
//!
//! Registered entities notify unless `pylon_crdt_set_notify` turned them off; other entities
//! only with `pylon_crdt.notify_unregistered`.

use std::cell::RefCell;
use std::collections::HashMap;

use base64::Engine;
use loro::{LoroDoc, VersionVector};
use pgrx::pg_sys;
use pgrx::prelude::*;
use serde_json::{json, Value};

use crate::doc::{self, Notice, NoticeFrom};
use crate::error::{OrRaise, RowRef};
use crate::materialize::EntityTable;

/// Whether entities without a registered table notify (`pylon_crdt.notify_unregistered`).
pub static NOTIFY_UNREGISTERED: pgrx::GucSetting<bool> = pgrx::GucSetting::<bool>::new(false);

/// What changed a doc, as the payload's `kind` names it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// A patch: the functions, or INSERT/UPDATE through an enabled table's trigger.
    Write,
    /// A peer's binary update (`pylon_crdt_apply_update`).
    Update,
    Delete,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Write => "write",
            Kind::Update => "update",
            Kind::Delete => "delete",
        }
    }
}

/// One row's pending notification.
#[derive(Clone)]
struct Entry {
    /// The last change's kind.
    kind: Kind,
    /// The version the update starts from.
    start: VersionVector,
    /// Whether the doc is new in this transaction (created, or deleted and created again):
    /// the update then starts from an empty doc, and a listener's copy is to be replaced.
    created: bool,
    /// The doc's version now (none once deleted).
    version: Option<Vec<u8>>,
    update: Option<Vec<u8>>,
    /// An update of this transaction was already too large; later ones only grow.
    too_large: bool,
}

type Key = (String, String);

/// `TopSubTransactionId`: the transaction itself, outside any savepoint.
const TOP_SUBXACT: pg_sys::SubTransactionId = 1;

#[derive(Default)]
struct Pending {
    /// Rows in the order of their first change (an undone row may be listed twice; sending
    /// takes each entry once).
    order: Vec<Key>,
    entries: HashMap<Key, Entry>,
    /// For each change made inside a savepoint: the entry it replaced, restored if the
    /// savepoint rolls back.
    undo: Vec<(pg_sys::SubTransactionId, Key, Option<Entry>)>,
}

thread_local! {
    static PENDING: RefCell<Pending> = RefCell::new(Pending::default());
}

fn with_pending<R>(f: impl FnOnce(&mut Pending) -> R) -> R {
    PENDING.with(|p| f(&mut p.borrow_mut()))
}

/// Whether changes to `entity`'s docs are notified.
pub fn enabled(entity: &str) -> bool {
    match EntityTable::registered(entity) {
        Some(table) => table.notify,
        None => NOTIFY_UNREGISTERED.get(),
    }
}

/// Where a bulk job's notice starts (`None`: the entity does not notify).
pub fn notice_from(entity: &str, row_id: &str) -> Option<NoticeFrom> {
    if !enabled(entity) {
        return None;
    }
    let key = (entity.to_owned(), row_id.to_owned());
    Some(with_pending(|p| match p.entries.get(&key) {
        Some(e) => NoticeFrom::Version(e.start.clone()),
        None => NoticeFrom::Before,
    }))
}

/// Records a change to a row's doc, made with the row locked: `before` is the doc's version
/// before this change (`delta` its update since then), `existed` whether it had a stored doc.
pub fn wrote(
    row: RowRef<'_>,
    kind: Kind,
    before: &VersionVector,
    existed: bool,
    doc: &LoroDoc,
    delta: &doc::WriteDelta<'_>,
) {
    if !enabled(row.entity) {
        return;
    }
    let key = (row.entity.to_owned(), row.row_id.to_owned());
    let prior = with_pending(|p| {
        p.entries
            .get(&key)
            .map(|e| (e.start.clone(), e.created, e.too_large))
    });
    let (start, created, too_large) = prior.unwrap_or_else(|| (before.clone(), !existed, false));
    let notice =
        doc::guarded(|| Ok(doc::notice(doc, start, !too_large, Some(delta)))).or_raise(row);
    put(key, kind, notice, created, too_large);
}

/// Records a bulk job's change (its notice was made from `notice_from`).
pub fn wrote_notice(row: RowRef<'_>, notice: Notice, existed: bool) {
    let key = (row.entity.to_owned(), row.row_id.to_owned());
    let prior = with_pending(|p| p.entries.get(&key).map(|e| (e.created, e.too_large)));
    let (created, too_large) = prior.unwrap_or((!existed, false));
    put(key, Kind::Write, notice, created, too_large);
}

fn put(key: Key, kind: Kind, notice: Notice, created: bool, too_large: bool) {
    let too_large = too_large || notice.update.is_none();
    set(
        key,
        Entry {
            kind,
            start: notice.start,
            created,
            version: Some(notice.version),
            update: notice.update.filter(|_| !too_large),
            too_large,
        },
    );
}

/// Records that these docs of `entity` were deleted.
pub fn deleted(entity: &str, row_ids: &[&str]) {
    if row_ids.is_empty() || !enabled(entity) {
        return;
    }
    for row_id in row_ids {
        // A doc written again later in the transaction is a new doc: its update starts empty.
        set(
            (entity.to_owned(), (*row_id).to_owned()),
            Entry {
                kind: Kind::Delete,
                start: VersionVector::new(),
                created: true,
                version: None,
                update: None,
                too_large: false,
            },
        );
    }
}

fn set(key: Key, entry: Entry) {
    let subxact = unsafe { pg_sys::GetCurrentSubTransactionId() };
    with_pending(|p| {
        let old = p.entries.insert(key.clone(), entry);
        if old.is_none() {
            p.order.push(key.clone());
        }
        if subxact != TOP_SUBXACT {
            p.undo.push((subxact, key, old));
        }
    });
}

/// The channel `entity`'s notifications go to: `pylon_crdt.<entity>`. Channel names are
/// identifiers, at most 63 bytes; a longer one is cut to 40 bytes (at a character boundary)
/// and ends in `.` and the 16 hex digits of the entity's 64-bit FNV-1a hash, so that it stays
/// unique.
pub fn channel(entity: &str) -> String {
    let full = format!("pylon_crdt.{entity}");
    if full.len() <= 63 {
        return full;
    }
    let mut cut = 40;
    while !full.is_char_boundary(cut) {
        cut -= 1;
    }
    let hash = entity.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{}.{hash:016x}", &full[..cut])
}

/// Postgres refuses payloads of 8000 bytes or more.
const PAYLOAD_MAX: usize = 7999;

/// The JSON a listener receives, under Postgres' payload limit. What would not fit is left
/// out, in this order: the update (`update_omitted`: fetch it with `pylon_crdt_update_since`),
/// the version of a doc edited by very many peers (`version_omitted`: `pylon_crdt_version`),
/// and ids too long to fit even alone (`ids_omitted`: read the changes feed).
fn payload(key: &Key, e: &Entry) -> String {
    let b64 = |bytes: &Vec<u8>| base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut p = json!({
        "entity": key.0,
        "row_id": key.1,
        "kind": e.kind.name(),
        "new": e.created && e.kind != Kind::Delete,
        "version": e.version.as_ref().map(b64),
        "update": e.update.as_ref().map(b64),
        "update_omitted": e.too_large && e.kind != Kind::Delete,
    });
    let mut text = p.to_string();
    if text.len() > PAYLOAD_MAX && e.update.is_some() {
        p["update"] = Value::Null;
        p["update_omitted"] = Value::Bool(true);
        text = p.to_string();
    }
    // A doc edited by many peers has a version vector too large too.
    if text.len() > PAYLOAD_MAX && e.version.is_some() {
        p["version"] = Value::Null;
        p["version_omitted"] = Value::Bool(true);
        text = p.to_string();
    }
    if text.len() > PAYLOAD_MAX {
        p["entity"] = Value::Null;
        p["row_id"] = Value::Null;
        p["ids_omitted"] = Value::Bool(true);
        text = p.to_string();
    }
    text
}

/// Queues one NOTIFY per changed row; Postgres sends them when the commit succeeds.
fn send_all() {
    let pending = with_pending(std::mem::take);
    let mut entries = pending.entries;
    for key in pending.order {
        let Some(entry) = entries.remove(&key) else {
            continue;
        };
        let args = [
            channel(&key.0).into_datum(),
            payload(&key, &entry).into_datum(),
        ];
        // `pg_notify(channel, payload)`, as SQL calls it.
        unsafe { pgrx::fcinfo::direct_function_call_as_datum(pg_sys::pg_notify, &args) };
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_xact_event(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::XactEvent::*;
    match event {
        XACT_EVENT_PRE_COMMIT => send_all(),
        // Postgres cannot PREPARE a transaction that notifies: a prepared transaction's
        // changes reach the changes feed only.
        XACT_EVENT_PRE_PREPARE | XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT => {
            with_pending(|p| *p = Pending::default())
        }
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
        // Subtransaction ids only grow: what was recorded at or past `subxact` is what it
        // (and its released children) recorded, undone newest first.
        SUBXACT_EVENT_ABORT_SUB => with_pending(|p| {
            while p.undo.last().is_some_and(|(s, _, _)| *s >= subxact) {
                let (_, key, old) = p.undo.pop().expect("checked");
                match old {
                    Some(entry) => p.entries.insert(key, entry),
                    None => p.entries.remove(&key),
                };
            }
        }),
        SUBXACT_EVENT_COMMIT_SUB => with_pending(|p| {
            if parent == TOP_SUBXACT {
                p.undo.retain(|(s, _, _)| *s < subxact);
            } else {
                for (s, _, _) in p.undo.iter_mut().filter(|(s, _, _)| *s >= subxact) {
                    *s = parent;
                }
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

/// The channel `entity`'s notifications are sent on: `LISTEN` to it (quoted: it holds a dot
/// and keeps the entity's case).
#[pg_extern(immutable, parallel_safe)]
fn pylon_crdt_channel(entity: &str) -> String {
    channel(entity)
}

/// Turns notifications on or off for a registered entity (they are on by default). Needs
/// ownership of the entity's table.
#[pg_extern(volatile, parallel_unsafe)]
fn pylon_crdt_set_notify(entity: &str, enabled: bool) {
    crate::error::check_writable("pylon_crdt_set_notify");
    crate::search_path::pinned(|| crate::triggers::set_notify(entity, enabled))
}
