//! Loro blobs on their own (issue 12): merge, read and compare any snapshot or update, with no
//! row or table behind them. The SQL functions over these (`loro_merge`, `loro_value`, …) are
//! in `crate::blob`.

use loro::LoroDoc;
use serde_json::{Map, Value};

use super::{
    decode_version, json, project, refuse_pending, snapshot, updates_since, DocError, Field,
    OwnedDoc,
};

/// A doc made of `blobs` (snapshots or updates, in any order). An update whose history is in
/// none of them is an error, not a silently incomplete doc. Run inside `guarded`: the doc is
/// an `OwnedDoc`, leaked if Loro panicked.
pub fn load(blobs: &[&[u8]]) -> Result<OwnedDoc, DocError> {
    let doc = OwnedDoc::new(LoroDoc::new());
    // Only the first may stay a snapshot (see `snapshot_as_update`).
    let owned: Vec<Vec<u8>> = blobs
        .iter()
        .enumerate()
        .map(|(i, b)| match i {
            0 => b.to_vec(),
            _ => super::snapshot_as_update(b).unwrap_or_else(|| b.to_vec()),
        })
        .collect();
    let status = doc
        .import_batch(&owned)
        .map_err(|e| DocError::Bytes(e.to_string()))?;
    refuse_pending(status, "the bytes depend on history they do not hold")?;
    Ok(doc)
}

/// Both blobs in one snapshot (merging is commutative, associative and idempotent).
pub fn merge(a: &[u8], b: &[u8]) -> Result<Vec<u8>, DocError> {
    let doc = load(&[a, b])?;
    Ok(snapshot(&doc))
}

/// The doc's whole value: every root container, as JSON.
pub fn value(blob: &[u8]) -> Result<Value, DocError> {
    Ok(json::from_loro(&load(&[blob])?.get_deep_value()))
}

/// The pylon projection of the doc's `row` map under `fields`.
pub fn projection(blob: &[u8], fields: &[Field]) -> Result<Value, DocError> {
    let doc = load(&[blob])?;
    project(&doc, fields)
}

/// The doc's encoded version vector.
pub fn version(blob: &[u8]) -> Result<Vec<u8>, DocError> {
    Ok(load(&[blob])?.oplog_vv().encode())
}

/// An encoded version vector as `{"peer": counter}`: each peer's id (a string: ids pass
/// JavaScript's safe integers) and the number of its ops the version holds.
pub fn version_json(version: &[u8]) -> Result<Value, DocError> {
    Ok(vv_json(&decode_version(version)?))
}

fn vv_json(vv: &loro::VersionVector) -> Value {
    let mut peers: Vec<(u64, i32)> = vv.iter().map(|(p, c)| (*p, *c)).collect();
    peers.sort();
    let map: Map<String, Value> = peers
        .into_iter()
        .map(|(peer, counter)| (peer.to_string(), Value::from(counter)))
        .collect();
    Value::Object(map)
}

/// The ops of the doc a peer at `since` lacks, as an update.
pub fn update_since(blob: &[u8], since: &[u8]) -> Result<Vec<u8>, DocError> {
    let since = decode_version(since)?;
    let doc = load(&[blob])?;
    updates_since(&doc, &since)
}

/// Whether `version` holds every op `other` holds.
pub fn version_includes(version: &[u8], other: &[u8]) -> Result<bool, DocError> {
    Ok(decode_version(version)?.includes_vv(&decode_version(other)?))
}

/// The version of the doc made of `blobs` (a row's snapshot and log entries), read from their
/// headers without decoding them: each peer's highest counter. For comparing nodes.
pub fn stored_version(blobs: &[&[u8]]) -> Result<Value, DocError> {
    let mut vv = loro::VersionVector::new();
    for blob in blobs {
        let meta = LoroDoc::decode_import_blob_meta(blob, false)
            .map_err(|e| DocError::Bytes(e.to_string()))?;
        for (peer, counter) in meta.partial_end_vv.iter() {
            if vv.get(peer).is_none_or(|c| c < counter) {
                vv.insert(*peer, *counter);
            }
        }
    }
    Ok(vv_json(&vv))
}

/// Where two nodes' versions of one doc differ (`{"peer": counter}` each): `None` when equal.
pub fn version_difference(here: &Value, there: &Value) -> Option<String> {
    let counters = |v: &Value| -> std::collections::BTreeMap<String, i64> {
        v.as_object()
            .into_iter()
            .flatten()
            .map(|(p, c)| (p.clone(), c.as_i64().unwrap_or(0)))
            .collect()
    };
    let (here, there) = (counters(here), counters(there));
    let mut lacking_here = Vec::new();
    let mut lacking_there = Vec::new();
    for peer in here
        .keys()
        .chain(there.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let (h, t) = (
            here.get(peer).copied().unwrap_or(0),
            there.get(peer).copied().unwrap_or(0),
        );
        if h < t {
            lacking_here.push(format!("peer {peer} ops {h}..{t}"));
        } else if t < h {
            lacking_there.push(format!("peer {peer} ops {t}..{h}"));
        }
    }
    let mut parts = Vec::new();
    if !lacking_here.is_empty() {
        parts.push(format!("this node lacks {}", lacking_here.join(", ")));
    }
    if !lacking_there.is_empty() {
        parts.push(format!("the other node lacks {}", lacking_there.join(", ")));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}
