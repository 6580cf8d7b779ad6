//! One row's doc, start to finish. Every SQL function and trigger takes the row's lock the
//! same way (`lock`: the entity row of an enabled table, the runtime's advisory lock for any
//! other entity) and goes through `merge` (or, for statements over many rows,
//! `doc::rebuild` via `batch`), so all paths load, seed and save alike.

use loro::LoroDoc;
use pgrx::prelude::*;
use serde_json::{Map, Value};

use crate::cache;
use crate::doc::{self, rowpatch, DocError, Field};
use crate::error::{raise, OrRaise, RowRef};
use crate::materialize::{check_access, Access, EntityTable};
use crate::notify;
use crate::store::{self, Stamp, Storage};

/// An entity's table (if any) and its fields, as a call sees them.
pub struct Entity {
    pub table: Option<EntityTable>,
    pub fields: Vec<Field>,
    /// Whether the fields are the registration's (not a spec the caller passed).
    pub registered_fields: bool,
}

impl Entity {
    /// With an explicit fields spec; the table is the registered or same-named one.
    pub fn with_fields(row: RowRef<'_>, spec: &Value) -> Entity {
        let fields = doc::parse_fields(spec).or_raise(row);
        Entity {
            table: EntityTable::resolve(row.entity),
            fields,
            registered_fields: false,
        }
    }

    /// A registered entity, with the fields it was registered with (42P01 when unknown).
    pub fn registered(row: RowRef<'_>) -> Entity {
        let table = EntityTable::registered(row.entity).unwrap_or_else(|| {
            raise(
                PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
                format!(
                    "pylon_crdt: entity \"{}\" is not registered (use pylon_crdt_enable, or pass a fields spec)",
                    row.entity
                ),
            )
        });
        let spec = table
            .fields
            .as_ref()
            .expect("registered tables carry fields");
        let fields = doc::parse_fields(spec).or_raise(row);
        Entity {
            table: Some(table),
            fields,
            registered_fields: true,
        }
    }
}

/// Upper bound on a row's log entries before a write folds them into the snapshot
/// (`pylon_crdt.log_compact_threshold`): bounds the work of a reader without a cached doc.
pub static LOG_COMPACT_THRESHOLD: pgrx::GucSetting<i32> = pgrx::GucSetting::<i32>::new(1000);

/// A write also folds the log once its bytes pass this fraction of the snapshot's size
/// (`pylon_crdt.log_compact_ratio`). Rewriting a snapshot of size S only after about
/// ratio × S bytes of deltas keeps the amortized WAL per write near (1 + 1/ratio) × delta.
pub static LOG_COMPACT_RATIO: pgrx::GucSetting<f64> = pgrx::GucSetting::<f64>::new(1.0);

/// A row's doc as loaded, with what it was loaded from.
struct Loaded {
    doc: doc::OwnedDoc,
    stamp: Stamp,
    storage: Storage,
    /// Whether the row has a stored doc at all.
    exists: bool,
}

/// Loads the row's doc: the cached one when its stamp still matches the stored row (catching
/// up on newer log entries), else decoded from the snapshot and the log. A row without a doc
/// gives an empty one. Docs always edit under a fresh peer id (see `cache::take`).
fn load(row: RowRef<'_>) -> Loaded {
    doc::begin_call();
    let cached = cache::take(row.entity, row.row_id);
    let stored = store::fetch(row, cached.as_ref().map(|c| &c.stamp));
    let exists = stored.exists();
    let corrupt = |e: DocError| DocError::Bytes(format!("stored doc does not decode: {e}"));
    let (reusable, stale) = match cached {
        Some(c)
            if c.stamp.snapshot.is_some()
                && c.stamp.snapshot == stored.stamp.snapshot
                && c.stamp.log_seq <= stored.stamp.log_seq =>
        {
            (Some(c), None)
        }
        other => (None, other),
    };
    // A doc cached before a fold of the row's log catches up from what the fold kept.
    // (`snapshot` storage keeps nothing: see the README, "Storage modes".)
    let folded_in = stale
        .filter(|c| stored.storage == Storage::Log || c.stamp.log_seq.is_some())
        .and_then(|c| across_fold(row, c, stored.stamp.snapshot.as_deref()?));
    // The log only grows while the sidecar tuple stays (folding it rewrites the tuple), so a
    // reusable doc's log counts carry over and only newer entries are read.
    let mut stamp = stored.stamp;
    let (doc, log_after) = match (reusable, folded_in) {
        (Some(cached), _) => {
            cache::count(|s| s.hits += 1);
            stamp.log_len = cached.stamp.log_len;
            stamp.log_bytes = cached.stamp.log_bytes;
            stamp.folded_seq = cached.stamp.folded_seq;
            (doc::OwnedDoc::new(cached.doc), cached.stamp.log_seq)
        }
        // Caught up to the snapshot: every log entry now is newer than the fold.
        (None, Some((doc, folded_seq))) => {
            cache::count(|s| s.hits += 1);
            stamp.folded_seq = folded_seq;
            (doc, None)
        }
        (None, None) => {
            cache::count(|s| s.misses += 1);
            let doc = doc::OwnedDoc::new(LoroDoc::new());
            if let Some(bytes) = &stored.snapshot {
                cache::count(|s| s.decodes += 1);
                doc::guarded(|| doc::import(&doc, bytes))
                    .map_err(corrupt)
                    .or_raise(row);
            }
            (doc, None)
        }
    };
    if stamp.log_seq.is_some() && log_after != stamp.log_seq {
        for update in store::log_since(row, log_after) {
            doc::guarded(|| doc::import(&doc, &update))
                .map_err(corrupt)
                .or_raise(row);
            stamp.log_len += 1;
            stamp.log_bytes += update.len() as i64;
        }
    }
    Loaded {
        doc,
        stamp,
        storage: stored.storage,
        exists,
    }
}

/// `cached` (stale: the row's snapshot tuple changed) brought up to the snapshot tuple
/// `snapshot` by the updates that the fold which wrote it kept (`store::folded_since`), with
/// the newest kept entry it now holds; or None when that fold kept nothing, kept too few, or
/// anything fails: then the caller decodes the snapshot, as it always may.
fn across_fold(
    row: RowRef<'_>,
    cached: cache::CachedDoc,
    snapshot: &str,
) -> Option<(doc::OwnedDoc, Option<i64>)> {
    // The doc holds every entry up to its last log entry or its last kept one. When it knows
    // that entry, the kept ones must still include it, or the doc is further behind than they
    // reach and decoding is the cheaper way (nothing is imported in vain).
    let held = cached.stamp.log_seq.max(cached.stamp.folded_seq);
    let store::Kept {
        version,
        mut entries,
    } = store::folded_since(row, snapshot, held)?;
    if let Some(held) = held {
        match entries.first() {
            Some((seq, _)) if *seq == held => entries.remove(0),
            _ => return None,
        };
    }
    let newest = entries.last().map(|(seq, _)| *seq).or(held);
    let updates: Vec<Vec<u8>> = entries.into_iter().map(|(_, update)| update).collect();
    let doc = doc::OwnedDoc::new(cached.doc);
    let caught_up = doc::guarded(|| doc::catch_up(&doc, &version, &updates));
    caught_up.unwrap_or(false).then_some((doc, newest))
}

/// When a write's doc is stored: at once, or queued for the end of the statement (`batch`),
/// which only a row trigger on an enabled table with its flush trigger may ask for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Save {
    Now,
    Batched,
}

/// The core of every write, for a caller that holds the row's lock (see `lock`): load the doc
/// (a new one seeded from `seed()`, the row's current values, when the row has no doc yet),
/// apply `change`, store, return the projection. Errors raise and abort the transaction, so
/// nothing is half written; the doc goes back to the cache only after everything succeeded.
pub fn merge(
    row: RowRef<'_>,
    fields: &[Field],
    seed: impl FnOnce() -> Option<Map<String, Value>>,
    change: impl FnOnce(&LoroDoc) -> Result<(), DocError>,
    save: Save,
    kind: notify::Kind,
) -> Merged {
    let Loaded {
        doc,
        stamp,
        storage,
        exists,
    } = load(row);
    cache::choose_peer(row.entity, row.row_id, &doc);
    let before = doc.oplog_vv();
    // What the row's columns show before the change: the doc's projection, or, for a doc
    // seeded from the row just now, the row itself (a seeded tree gets new node ids, which
    // the columns must then take too).
    let seeded = if exists { None } else { seed() };
    let author = crate::history::current_author();
    let old = match seeded {
        Some(values) => {
            let seed = rowpatch::from_row(fields, &values, true);
            doc::history::attribute(&doc, Some(&author));
            doc::guarded(|| doc::apply_patch(&doc, fields, &seed)).or_raise(row);
            Value::Object(values)
        }
        None => doc::guarded(|| doc::project(&doc, fields)).or_raise(row),
    };
    doc::history::attribute(&doc, Some(&author));
    doc::guarded(|| change(&doc)).or_raise(row);
    let projection = doc::guarded(|| doc::project(&doc, fields)).or_raise(row);
    let unchanged = exists && doc.oplog_vv() == before; // then no write, no WAL
    cache::remember_peer(row.entity, row.row_id, &doc);
    let delta = doc::WriteDelta::new(&doc, &before);
    if !unchanged {
        notify::wrote(row, kind, &before, exists, &doc, &delta);
    }
    let batched = save == Save::Batched
        && storage == Storage::Snapshot
        && stamp.log_seq.is_none()
        && !unchanged;
    if !unchanged {
        crate::replication::wrote(row, &delta);
    }
    let stamp = match (batched, unchanged) {
        (true, _) => None,
        (false, true) => Some(stamp),
        (false, false) => {
            crate::changes::record(row.entity, &[row.row_id], false);
            Some(persist(row, &doc, &delta, stamp, storage, exists))
        }
    };
    drop(delta);
    match stamp {
        Some(stamp) => cache::put(row.entity, row.row_id, doc.into_inner(), stamp),
        None => crate::batch::save(row, doc.into_inner()), // in the changes feed when stored
    }
    let changed = differing(old.as_object(), &projection);
    Merged {
        projection,
        changed,
    }
}

/// A merge's result: the full projection, and the part of it that the change altered.
pub struct Merged {
    pub projection: Value,
    pub changed: Value,
}

/// The fields of `projection` whose value differs from `current` (an object of them).
/// Writing only these keeps unchanged (often TOASTed) columns out of the UPDATE and the WAL.
pub fn differing(current: Option<&Map<String, Value>>, projection: &Value) -> Value {
    let mut out = Map::new();
    for (k, v) in projection.as_object().into_iter().flatten() {
        if current.and_then(|c| c.get(k)) != Some(v) {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

/// The columns of `row` (a row as JSON) whose value is not what the projection shows:
/// the ones to (re)write. Doc-only fields, with no column, are left out.
pub fn stale_columns(row: &Map<String, Value>, projection: &Value) -> Option<Value> {
    let stale: Map<String, Value> = match differing(Some(row), projection) {
        Value::Object(m) => m.into_iter().filter(|(k, _)| row.contains_key(k)).collect(),
        _ => Map::new(),
    };
    (!stale.is_empty()).then_some(Value::Object(stale))
}

/// Stores a changed doc: in log mode the write's delta, else (or past the threshold) the full
/// snapshot with the log folded in.
fn persist(
    row: RowRef<'_>,
    doc: &LoroDoc,
    delta: &doc::WriteDelta<'_>,
    stamp: Stamp,
    storage: Storage,
    exists: bool,
) -> Stamp {
    if storage == Storage::Log && exists {
        let delta = doc::guarded(|| delta.bytes()).or_raise(row);
        let max_entries = i64::from(LOG_COMPACT_THRESHOLD.get().max(0));
        let max_bytes = LOG_COMPACT_RATIO.get() * stamp.snapshot_bytes as f64;
        let log_bytes = stamp.log_bytes + delta.len() as i64;
        if stamp.log_len < max_entries && (log_bytes as f64) <= max_bytes {
            let seq = store::append_log(row, delta);
            return Stamp {
                log_seq: Some(seq),
                log_len: stamp.log_len + 1,
                log_bytes,
                ..stamp
            };
        }
    }
    if stamp.log_len > 0 {
        cache::count(|s| s.compactions += 1);
    }
    let snapshot = doc::guarded(|| Ok(doc::snapshot(doc))).or_raise(row);
    // A fold keeps what it folds in, for other backends' cached docs.
    let version = (stamp.log_len > 0).then(|| doc.oplog_vv().encode());
    let fold = match &version {
        Some(version) => store::Fold::Keep {
            version,
            last: Some(doc::guarded(|| delta.bytes()).or_raise(row)),
        },
        None => store::Fold::Nothing,
    };
    store::save_snapshot(row, &snapshot, stamp.snapshot.is_some(), fold)
}

/// What a function call does to a doc.
pub enum Change<'a> {
    Patch(&'a Value),
    /// A peer's update or snapshot.
    Import(&'a [u8]),
    /// Another node's change (`replication`): merged like a peer's update, but a registered
    /// entity's missing row is created, as a patch would create it.
    Replicated(&'a [u8]),
    /// Back to the doc's state at a time or version, as a new change.
    Restore(doc::history::When<'a>),
}

/// Takes what orders writers of a row's doc, and says whether an enabled table's row exists.
///
/// - An enabled table's row: its row lock (`FOR UPDATE`, as the caller). Every path to an
///   enabled table's docs holds it: its triggers fire with the row locked, and the functions
///   lock it first. Row locks live in the tuple, not in the shared lock table, so a statement
///   may write any number of rows (issue 16). A row that does not exist yet is created by an
///   INSERT, and the table's unique id index makes a concurrent creator of the same row wait
///   and then fail (23505), as two plain INSERTs would.
/// - Any other entity: the runtime's advisory lock on (entity, row), which the runtime takes
///   first and holds until commit, so extension and runtime writers serialize. The runtime
///   knows nothing coarser, so this costs one lock-table entry per row and transaction.
pub fn lock(row: RowRef<'_>, table: Option<&EntityTable>) -> bool {
    match table.filter(|t| t.is_registered()) {
        Some(table) => table.lock_row(row),
        None => {
            store::lock_row(row);
            false
        }
    }
}

/// A function-path write: check access, lock the entity row, merge, then write the row's
/// columns (inserting the row for a patch to a registered entity whose row is missing).
pub fn write(row: RowRef<'_>, entity: &Entity, change: Change<'_>) -> Value {
    check_access(row, entity.table.as_ref(), Access::Write);
    let registered = entity
        .table
        .as_ref()
        .is_some_and(EntityTable::is_registered);
    let row_exists = lock(row, entity.table.as_ref());
    // A `pylon_crdt_alter` that committed while this call waited for the row lock changed
    // the registration: write under the fields (and columns) it left.
    let refreshed;
    let stale = entity.registered_fields
        && EntityTable::registered(row.entity)
            .is_some_and(|now| now.fields != entity.table.as_ref().and_then(|t| t.fields.clone()));
    let entity = if stale {
        refreshed = Entity::registered(row);
        &refreshed
    } else {
        entity
    };
    let table = entity.table.as_ref();
    let needs_row = match change {
        Change::Patch(_) | Change::Replicated(_) => None,
        Change::Import(_) => Some("a peer update"),
        Change::Restore(_) => Some("a restore"),
    };
    if let Some(what) = needs_row.filter(|_| registered && !row_exists) {
        raise(
            PgSqlErrorCode::ERRCODE_NO_DATA_FOUND,
            format!(
                "pylon_crdt: {row}: no such row in table {}; {what} needs an existing row",
                table.map_or("", |t| &t.name)
            ),
        );
    }
    let seed = || table.filter(|_| row_exists).and_then(|t| t.row_values(row));
    let kind = match change {
        Change::Patch(_) | Change::Restore(_) => notify::Kind::Write,
        Change::Import(_) | Change::Replicated(_) => notify::Kind::Update,
    };
    let merged = merge(
        row,
        &entity.fields,
        seed,
        |d| match change {
            Change::Patch(patch) => doc::apply_patch(d, &entity.fields, patch),
            Change::Import(bytes) | Change::Replicated(bytes) => doc::import(d, bytes),
            Change::Restore(when) => doc::history::revert(d, &doc::history::resolve(d, when)?),
        },
        Save::Now,
        kind,
    );
    match table {
        Some(table) if registered && !row_exists => table.insert_row(row, &merged.projection),
        // No UPDATE ran, or it found no row: make sure that is not row-level security hiding
        // a row whose doc was just written (`lock_row` raises then).
        Some(table) if !table.update_columns(row, &merged.changed) && !registered => {
            table.lock_row(row);
        }
        _ => {}
    }
    merged.projection
}

/// Runs `f` on the current doc (an empty one when there is none) after checking the caller
/// may read the row.
pub fn read<R>(row: RowRef<'_>, table: Option<&EntityTable>, f: impl FnOnce(&LoroDoc) -> R) -> R {
    check_read(row, table);
    read_checked(row, f)
}

/// `read` for a caller that has already checked access.
fn read_checked<R>(row: RowRef<'_>, f: impl FnOnce(&LoroDoc) -> R) -> R {
    let Loaded {
        doc, stamp, exists, ..
    } = load(row);
    let result = doc::guarded(|| Ok(f(&doc))).or_raise(row);
    if exists {
        cache::put(row.entity, row.row_id, doc.into_inner(), stamp);
    }
    result
}

fn check_read(row: RowRef<'_>, table: Option<&EntityTable>) {
    check_access(row, table, Access::Read);
    if let Some(table) = table {
        table.check_visible(row);
    }
}

/// The full snapshot. In snapshot storage with no log that is the stored value itself, with
/// no decode.
pub fn snapshot(row: RowRef<'_>, table: Option<&EntityTable>) -> Vec<u8> {
    check_read(row, table);
    let stored = store::fetch(row, None);
    match stored.snapshot {
        Some(bytes) if stored.stamp.log_seq.is_none() => bytes,
        _ => read_checked(row, doc::snapshot),
    }
}

/// Deletes the row's doc (not the entity row); true when there was one.
pub fn delete(row: RowRef<'_>) -> bool {
    let table = EntityTable::resolve(row.entity);
    check_access(row, table.as_ref(), Access::Delete);
    lock(row, table.as_ref());
    cache::forget(row.entity, row.row_id);
    store::delete(row)
}

/// Folds the row's log into a fresh snapshot (optionally a shallow one that drops history
/// before the current version). Returns the snapshot's size.
pub fn compact(row: RowRef<'_>, table: &Option<EntityTable>, trim_history: bool) -> usize {
    check_access(row, table.as_ref(), Access::Write);
    lock(row, table.as_ref());
    let Loaded {
        doc, stamp, exists, ..
    } = load(row);
    if !exists {
        return 0;
    }
    let (doc, bytes) = if trim_history {
        let shallow = doc::guarded(|| doc::shallow_snapshot(&doc)).or_raise(row);
        // Cache the trimmed doc, not the full one, or the next write would store the
        // trimmed history again.
        let trimmed = doc::OwnedDoc::new(LoroDoc::new());
        doc::guarded(|| doc::import(&trimmed, &shallow)).or_raise(row);
        (trimmed, shallow)
    } else {
        let full = doc::guarded(|| Ok(doc::snapshot(&doc))).or_raise(row);
        (doc, full)
    };
    if stamp.log_len > 0 {
        cache::count(|s| s.compactions += 1);
    }
    let version = doc.oplog_vv().encode();
    // A trim drops any earlier fold's entries too: the history it drops must not survive it.
    let fold = match (trim_history, stamp.log_len > 0) {
        (true, _) => store::Fold::Drop,
        (false, true) => store::Fold::Keep {
            version: &version,
            last: None,
        },
        (false, false) => store::Fold::Nothing,
    };
    let stamp = store::save_snapshot(row, &bytes, stamp.snapshot.is_some(), fold);
    cache::put(row.entity, row.row_id, doc.into_inner(), stamp);
    bytes.len()
}

/// Sets an entity's storage mode; leaving 'log' folds every row's log into its snapshot.
pub fn set_storage(entity: &str, mode: &str) {
    let entity_row = RowRef { entity, row_id: "" };
    let storage = match mode {
        "snapshot" => Storage::Snapshot,
        "log" => Storage::Log,
        other => raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!(
                "pylon_crdt: {entity_row}: storage mode must be 'snapshot' or 'log', got '{other}'"
            ),
        ),
    };
    let table = EntityTable::resolve(entity);
    check_access(entity_row, table.as_ref(), Access::Write);
    let config = store::extension_table("_pylon_crdt_storage");
    store::as_owner(|| {
        store::run(
            &format!(
                "INSERT INTO {config} (entity, mode) VALUES ($1, $2)
                 ON CONFLICT (entity) DO UPDATE SET mode = excluded.mode"
            ),
            &[entity.into(), mode.into()],
        )
    });
    if storage == Storage::Snapshot {
        let rows = store::as_owner(|| {
            store::query_column::<String>(
                &format!(
                    "SELECT DISTINCT row_id FROM {} WHERE entity = $1",
                    store::sidecar().log
                ),
                &[entity.into()],
            )
        });
        for row_id in rows {
            compact(
                RowRef {
                    entity,
                    row_id: &row_id,
                },
                &table,
                false,
            );
        }
    }
}
