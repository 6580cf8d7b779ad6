//! The pure Loro core: field kinds, patch application and projection.
//!
//! Nothing here knows about Postgres, so it is unit- and property-tested with `cargo test`;
//! the SPI, trigger and SQL layers are thin adapters around it (like loro's own bindings).
//! Doc shape (the pylon projection contract): one root map named `row` whose keys are the
//! field names.

pub mod blob;
pub mod fields;
pub mod history;
pub mod json;
pub mod migrate;
pub mod patch;
pub mod project;
pub mod rowpatch;

#[cfg(test)]
mod tests;

use std::fmt;

use loro::{ExportMode, LoroDoc, LoroMap, VersionVector};

pub use fields::{parse_fields, BaseType, Field, FieldKind};
pub use patch::{apply_patch, mergeable_fields_from};
pub use project::project;

/// Name of the root map every field lives in.
pub const ROOT_MAP: &str = "row";

/// What can go wrong in the pure core; `crate::error` maps each variant to a SQLSTATE and
/// adds the entity and row.
#[derive(Debug, Clone, PartialEq)]
pub enum DocError {
    /// Bad fields spec or annotation (22023).
    Fields(String),
    /// A patch value of the wrong shape, or an op Loro refused (22023).
    Patch {
        field: Option<String>,
        message: String,
    },
    /// Bytes that are not a Loro snapshot, update or version vector (22P03).
    Bytes(String),
    /// An update that needs history this doc does not have (55000).
    Pending(String),
    /// Content past a built-in limit, such as a tree too deep to project (54000).
    Limit(String),
    /// A schema change that cannot be made faithfully (0A000).
    Unsupported(String),
    /// Loro panicked (XX000); the doc it was working on is thrown away.
    Panic(String),
}

impl DocError {
    pub fn fields(message: String) -> Self {
        DocError::Fields(message)
    }

    pub fn patch(field: &str, message: impl Into<String>) -> Self {
        DocError::Patch {
            field: Some(field.to_owned()),
            message: message.into(),
        }
    }
}

impl fmt::Display for DocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DocError::Fields(m) => write!(f, "invalid fields spec: {m}"),
            DocError::Patch {
                field: Some(field),
                message,
            } => write!(f, "field \"{field}\": {message}"),
            DocError::Patch {
                field: None,
                message,
            } => f.write_str(message),
            DocError::Bytes(m) => write!(f, "malformed Loro data: {m}"),
            DocError::Pending(m) | DocError::Limit(m) | DocError::Unsupported(m) => f.write_str(m),
            DocError::Panic(m) => write!(f, "internal error in Loro: {m}"),
        }
    }
}

impl std::error::Error for DocError {}

/// A doc that edits under a peer id never used before: a fixed server peer id reused after
/// reloading a snapshot would reuse op ids, which Loro rejects or mis-merges (DESIGN 6).
pub fn fresh_peer(doc: &LoroDoc) {
    set_peer(doc, random_peer());
}

/// A random peer id. Peer ids are u64; Loro reserves u64::MAX, so stay below it.
pub fn random_peer() -> u64 {
    rand::random::<u64>() % (u64::MAX - 1)
}

pub fn set_peer(doc: &LoroDoc, peer: u64) {
    // Setting a peer commits and renews Loro's pending transaction: skip it when unchanged.
    if doc.peer_id() != peer {
        doc.set_peer_id(peer)
            .expect("a peer id below u64::MAX is valid");
    }
}

/// Decodes a stored snapshot (full or shallow) into a doc ready for local edits.
pub fn load(snapshot: Option<&[u8]>) -> Result<LoroDoc, DocError> {
    let doc = LoroDoc::new();
    if let Some(bytes) = snapshot {
        import(&doc, bytes)?;
    }
    fresh_peer(&doc);
    Ok(doc)
}

/// Who edits in `rebuild`: the peer id, the author its changes carry, and where the
/// notification's update starts (none: the entity does not notify).
#[derive(Clone, Copy, Default)]
pub struct Editor<'a> {
    pub peer: u64,
    pub author: Option<&'a history::Author>,
    pub notice_from: Option<&'a NoticeFrom>,
    /// Whether to return the update this write made (`Rebuilt::delta`), for replication.
    pub delta: bool,
}

impl Editor<'_> {
    /// Just a peer id: no author, no notice.
    pub fn peer(peer: u64) -> Self {
        Editor {
            peer,
            ..Editor::default()
        }
    }
}

/// A row's doc after `rebuild`: its projection, its new snapshot when anything changed, and
/// what a notification of the change says (when one was asked for and the doc changed).
pub struct Rebuilt {
    pub projection: serde_json::Value,
    pub snapshot: Option<Vec<u8>>,
    pub notice: Option<Notice>,
    /// The update the write made, when the editor asked for it and the doc changed.
    pub delta: Option<Vec<u8>>,
}

/// Largest update a notification carries: its base64 (4/3 as long) must fit Postgres' 8000-byte
/// payload with the rest of the notification. A larger one is left out (`Notice::update`).
pub const NOTICE_UPDATE_MAX: usize = 5700;

/// From which version a notification's update starts: the doc's version before this write,
/// or (for a row the transaction changed before) the one it had before the first write.
#[derive(Clone, Debug, PartialEq)]
pub enum NoticeFrom {
    Before,
    Version(VersionVector),
}

/// What a notification says of a changed doc: its new version, and the Loro update from
/// `start` to it (`None` when over `NOTICE_UPDATE_MAX`, or not asked for).
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    pub start: VersionVector,
    pub version: Vec<u8>,
    pub update: Option<Vec<u8>>,
}

/// The notice of a change to `doc` since `start`; `with_update: false` skips the export (an
/// earlier write of the transaction already found the update too large). A notice that starts
/// where the write did takes its update from `delta` instead of exporting it again.
pub fn notice(
    doc: &LoroDoc,
    start: VersionVector,
    with_update: bool,
    delta: Option<&WriteDelta<'_>>,
) -> Notice {
    let update = match delta.filter(|d| *d.before == start) {
        _ if !with_update => None,
        Some(delta) => delta.bytes().ok().map(<[u8]>::to_vec),
        None => updates_since(doc, &start).ok(),
    }
    .filter(|u| u.len() <= NOTICE_UPDATE_MAX);
    Notice {
        version: version(doc),
        start,
        update,
    }
}

/// The update one write made to a doc (its ops since `before`), exported at most once: log
/// storage, notifications and replication each want the same bytes.
pub struct WriteDelta<'a> {
    doc: &'a LoroDoc,
    before: &'a VersionVector,
    bytes: std::cell::OnceCell<Result<Vec<u8>, DocError>>,
}

impl<'a> WriteDelta<'a> {
    pub fn new(doc: &'a LoroDoc, before: &'a VersionVector) -> Self {
        WriteDelta {
            doc,
            before,
            bytes: std::cell::OnceCell::new(),
        }
    }

    /// The update, exported on first use.
    pub fn bytes(&self) -> Result<&[u8], DocError> {
        match self
            .bytes
            .get_or_init(|| updates_since(self.doc, self.before))
        {
            Ok(bytes) => Ok(bytes),
            Err(e) => Err(e.clone()),
        }
    }
}

/// One row's whole write, from stored bytes to stored bytes, for a statement over many rows
/// (`crate::batch` runs these on a thread of its own): decode what is stored (the snapshot,
/// then any log entries; when there is nothing, seed a new doc from the row's values), apply
/// the patch under `peer`, project, and encode a snapshot when it differs from the one
/// stored. A schema change (`migration`) is applied to a stored doc first, with the row's
/// values (`seed`) for its added fields. Needs nothing but its arguments. A Loro panic becomes
/// `DocError::Panic`, and the doc it broke is leaked rather than dropped.
pub fn rebuild(
    stored: &[Vec<u8>],
    seed: Option<&serde_json::Map<String, serde_json::Value>>,
    fields: &[Field],
    patch: &serde_json::Value,
    migration: Option<&migrate::Migration>,
    editor: Editor<'_>,
) -> Result<Rebuilt, DocError> {
    let Editor {
        peer,
        author,
        notice_from,
        delta,
    } = editor;
    let doc = std::mem::ManuallyDrop::new(LoroDoc::new());
    let work = || -> Result<Rebuilt, DocError> {
        for bytes in stored {
            import(&doc, bytes)
                .map_err(|e| DocError::Bytes(format!("stored doc does not decode: {e}")))?;
        }
        set_peer(&doc, peer);
        let before = doc.oplog_vv();
        history::attribute(&doc, author);
        if let (true, Some(values)) = (stored.is_empty(), seed) {
            apply_patch(&doc, fields, &rowpatch::from_row(fields, values, true))?;
        } else if let Some(migration) = migration {
            migration.apply(&doc, seed)?;
        }
        history::attribute(&doc, author);
        apply_patch(&doc, fields, patch)?;
        let projection = project(&doc, fields)?;
        let edited = doc.oplog_vv() != before;
        let changed = stored.len() != 1 || edited;
        let write_delta = WriteDelta::new(&doc, &before);
        let notice = match notice_from.filter(|_| edited || stored.is_empty()) {
            Some(NoticeFrom::Before) => {
                Some(self::notice(&doc, before.clone(), true, Some(&write_delta)))
            }
            Some(NoticeFrom::Version(start)) => {
                Some(self::notice(&doc, start.clone(), true, Some(&write_delta)))
            }
            None => None,
        };
        let delta = match delta && (edited || stored.is_empty()) {
            true => Some(write_delta.bytes()?.to_vec()),
            false => None,
        };
        Ok(Rebuilt {
            projection,
            snapshot: changed.then(|| snapshot(&doc)),
            notice,
            delta,
        })
    };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
        Ok(result) => {
            drop(std::mem::ManuallyDrop::into_inner(doc));
            result
        }
        Err(payload) => Err(DocError::Panic(panic_message(payload.as_ref()))),
    }
}

/// The message of a caught panic.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic without a message".into())
}

/// Imports a peer's update or snapshot. An update that depends on ops this doc lacks is an
/// error rather than a silently pending doc.
pub fn import(doc: &LoroDoc, bytes: &[u8]) -> Result<(), DocError> {
    let converted = if doc.oplog_vv().is_empty() {
        None
    } else {
        snapshot_as_update(bytes)
    };
    let status = doc
        .import(converted.as_deref().unwrap_or(bytes))
        .map_err(|e| DocError::Bytes(e.to_string()))?;
    refuse_pending(status, "update depends on history this doc does not have")
}

/// Brings `doc`, a cached doc from before a fold of its row's log, up to the folded snapshot
/// whose encoded version is `version` by importing `folded` (the log entries the fold took
/// in that the doc may lack). True only if the doc then holds exactly that version's ops, so
/// it equals the snapshot; otherwise (entries missing, a doc not from before this fold) the
/// caller decodes the snapshot instead. Importing an entry the doc has is a no-op.
pub fn catch_up(doc: &LoroDoc, version: &[u8], folded: &[Vec<u8>]) -> Result<bool, DocError> {
    let target = decode_version(version)?;
    let behind = matches!(
        doc.oplog_vv().partial_cmp(&target),
        Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
    );
    if !behind {
        return Ok(false);
    }
    for update in folded {
        import(doc, update)?;
    }
    Ok(doc.oplog_vv() == target)
}

/// Header bytes 20..22 of a Loro blob of updates (after the magic and the checksum: its
/// encoding mode, big-endian).
const UPDATES_MODE: [u8; 2] = [0, 4];

/// A full snapshot's changes as an update blob, for a doc that already holds some history.
/// Loro 1.17.1 can panic ("counter should be continuous") while importing a snapshot into a
/// doc that holds part of the snapshot's history (two nodes' docs of one row, each with the
/// other's earlier changes), and the panic aborts the backend while unwinding; the same
/// changes as an update import cleanly. Costs a second decode of the snapshot. `None` for
/// anything else (updates, shallow snapshots) or bytes that do not decode.
pub fn snapshot_as_update(bytes: &[u8]) -> Option<Vec<u8>> {
    // Most blobs are updates (peers', log entries) and say so in their header (bytes 20..22,
    // the encoding mode); reading the metadata to find out would decode every change.
    if bytes.get(20..22) == Some(&UPDATES_MODE[..]) {
        return None;
    }
    let meta = LoroDoc::decode_import_blob_meta(bytes, false).ok()?;
    if !matches!(meta.mode, loro::EncodedBlobMode::Snapshot) {
        return None;
    }
    let copy = OwnedDoc::new(LoroDoc::new());
    copy.import(bytes).ok()?;
    copy.export(ExportMode::all_updates()).ok()
}

/// An import that left ops pending (their history missing) as a `DocError::Pending` naming
/// them after `what`.
pub fn refuse_pending(status: loro::ImportStatus, what: &str) -> Result<(), DocError> {
    let Some(pending) = status.pending else {
        return Ok(());
    };
    let missing: Vec<String> = pending
        .iter()
        .map(|(peer, (start, end))| format!("peer {peer} ops {start}..{end}"))
        .collect();
    Err(DocError::Pending(format!(
        "{what} ({})",
        missing.join(", ")
    )))
}

pub fn root(doc: &LoroDoc) -> LoroMap {
    doc.get_map(ROOT_MAP)
}

pub fn snapshot(doc: &LoroDoc) -> Vec<u8> {
    doc.export(ExportMode::Snapshot)
        .expect("exporting a snapshot of a loaded doc succeeds")
}

pub fn version(doc: &LoroDoc) -> Vec<u8> {
    doc.oplog_vv().encode()
}

/// The version of a stored doc (its snapshot, then its log entries), read from the blobs'
/// headers: what `version` of the decoded doc gives, without decoding it.
pub fn stored_version(blobs: &[Vec<u8>]) -> Result<Vec<u8>, DocError> {
    let mut vv = VersionVector::new();
    for blob in blobs {
        let meta = LoroDoc::decode_import_blob_meta(blob, false)
            .map_err(|e| DocError::Bytes(e.to_string()))?;
        vv.merge(&meta.partial_end_vv);
    }
    Ok(vv.encode())
}

pub fn decode_version(bytes: &[u8]) -> Result<VersionVector, DocError> {
    let vv = VersionVector::decode(bytes)
        .map_err(|e| DocError::Bytes(format!("version vector: {e}")))?;
    // The decoder ignores trailing bytes; a blob that is not exactly one vector is refused.
    if vv.encode().len() != bytes.len() {
        return Err(DocError::Bytes(
            "version vector: unexpected trailing bytes".into(),
        ));
    }
    Ok(vv)
}

/// The ops a peer at version `since` is missing. A peer older than a trimmed doc's history
/// cannot be served updates (55000): Loro would export ops the peer cannot apply, so it must
/// load the snapshot instead.
pub fn updates_since(doc: &LoroDoc, since: &VersionVector) -> Result<Vec<u8>, DocError> {
    if doc.is_shallow() && !since.includes_vv(&doc.shallow_since_vv().to_vv()) {
        return Err(DocError::Pending(
            "the peer's version is older than this doc's trimmed history; it must load pylon_crdt_snapshot".into(),
        ));
    }
    doc.export(ExportMode::updates(since))
        .map_err(|e| DocError::Pending(format!("cannot export updates: {e}")))
}

/// A snapshot without history before the current version (Loro's shallow snapshot).
pub fn shallow_snapshot(doc: &LoroDoc) -> Result<Vec<u8>, DocError> {
    doc.export(ExportMode::shallow_snapshot(&doc.oplog_frontiers()))
        .map_err(|e| DocError::Pending(format!("cannot trim history: {e}")))
}

thread_local! {
    static PANICKED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs pure Loro work, turning a panic into `DocError::Panic` so the caller can raise an
/// ERROR that names the row. Only for code without SPI: a Postgres error must not be caught.
/// Docs the work touched must be held in `OwnedDoc`s, which are then leaked, not dropped.
pub fn guarded<T>(f: impl FnOnce() -> Result<T, DocError>) -> Result<T, DocError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        PANICKED.with(|p| p.set(true));
        Err(DocError::Panic(panic_message(payload.as_ref())))
    })
}

/// Owns the doc a call works on. After Loro panicked (in `guarded`), dropping a doc could
/// panic again on its broken state, and a panic while the ERROR unwinds aborts the backend:
/// so from then until the next call, these docs are leaked instead of dropped.
pub struct OwnedDoc(std::mem::ManuallyDrop<LoroDoc>);

impl OwnedDoc {
    pub fn new(doc: LoroDoc) -> OwnedDoc {
        OwnedDoc(std::mem::ManuallyDrop::new(doc))
    }

    pub fn into_inner(self) -> LoroDoc {
        let mut this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never used or dropped again.
        unsafe { std::mem::ManuallyDrop::take(&mut this.0) }
    }
}

impl std::ops::Deref for OwnedDoc {
    type Target = LoroDoc;
    fn deref(&self) -> &LoroDoc {
        &self.0
    }
}

impl Drop for OwnedDoc {
    fn drop(&mut self) {
        if !PANICKED.with(|p| p.get()) {
            // SAFETY: dropped once, here.
            unsafe { std::mem::ManuallyDrop::drop(&mut self.0) }
        }
    }
}

/// Clears the panic mark at the start of a call.
pub fn begin_call() {
    PANICKED.with(|p| p.set(false));
}
