//! A doc's history (issue 12): who made each change and when, and the doc as it was.
//!
//! Every change the extension commits carries its author in Loro's own change metadata: the
//! commit message is `{"role": …, "xid": …}` (the Postgres role and the transaction's id) and
//! the timestamp is the transaction's start, in Unix seconds. So the record travels with the
//! doc to every peer and through pg_dump. Changes imported from peers keep what the peer
//! recorded.

use std::collections::HashMap;

use loro::event::{Diff, ListDiffItem};
use loro::{
    ContainerID, Frontiers, Index, JsonMapOp, JsonOpContent, LoroDoc, TextDelta, TreeExternalDiff,
    TreeParentId, VersionVector,
};
use serde_json::{json, Value};

use super::{decode_version, project, DocError, ROOT_MAP};

/// Who commits the next change, and when.
#[derive(Clone, Debug, PartialEq)]
pub struct Author {
    pub role: String,
    pub xid: u64,
    /// Unix seconds.
    pub at: i64,
}

impl Author {
    pub fn message(&self) -> String {
        json!({"role": self.role, "xid": self.xid.to_string()}).to_string()
    }
}

/// Stamps the doc's next commit with its author. Changes of one transaction share the
/// message and merge into one Loro change; different transactions' never merge.
pub fn attribute(doc: &LoroDoc, author: Option<&Author>) {
    if let Some(author) = author {
        doc.set_next_commit_message(&author.message());
        doc.set_next_commit_timestamp(author.at);
    }
}

/// One change of a doc's history.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub peer: u64,
    /// The change's ops are the peer's `counter_start..counter_end`.
    pub counter_start: i32,
    pub counter_end: i32,
    pub lamport: u32,
    /// Unix seconds, as the peer recorded it (0: none recorded).
    pub timestamp: i64,
    pub message: Option<String>,
    /// The author, when the change was committed by this extension.
    pub role: Option<String>,
    pub xid: Option<u64>,
    /// The fields (keys of the `row` map) its ops touched.
    pub fields: Vec<String>,
    /// The last ops (peer, counter) of the changes it follows.
    pub deps: Vec<(u64, i32)>,
}

/// Every change the doc holds, in causal order (by Lamport time, then peer).
pub fn changes(doc: &LoroDoc) -> Result<Vec<Change>, DocError> {
    let from = if doc.is_shallow() {
        doc.shallow_since_vv().to_vv()
    } else {
        VersionVector::new()
    };
    let schema = doc
        .export_json_updates_without_peer_compression(&from, &doc.oplog_vv())
        .map_err(|e| DocError::Pending(format!("cannot read the doc's history: {e}")))?;
    let mut field_of: HashMap<ContainerID, Option<String>> = HashMap::new();
    let mut out = Vec::with_capacity(schema.changes.len());
    for change in schema.changes {
        let mut fields: Vec<String> = Vec::new();
        let mut end = change.id.counter;
        for op in &change.ops {
            end = end.max(op.counter + op.content.op_len() as i32);
            let field = match (&op.content, is_row(&op.container)) {
                (JsonOpContent::Map(JsonMapOp::Insert { key, .. }), true)
                | (JsonOpContent::Map(JsonMapOp::Delete { key }), true) => Some(key.clone()),
                (_, true) => None,
                _ => field_of
                    .entry(op.container.clone())
                    .or_insert_with(|| field_of_container(doc, &op.container))
                    .clone(),
            };
            if let Some(field) = field.filter(|f| !fields.contains(f)) {
                fields.push(field);
            }
        }
        fields.sort();
        let (role, xid) = author_of(change.msg.as_deref());
        out.push(Change {
            peer: change.id.peer,
            counter_start: change.id.counter,
            counter_end: end,
            lamport: change.lamport,
            timestamp: change.timestamp,
            message: change.msg,
            role,
            xid,
            fields,
            deps: change.deps.iter().map(|d| (d.peer, d.counter)).collect(),
        });
    }
    out.sort_by_key(|c| (c.lamport, c.peer));
    Ok(out)
}

fn is_row(container: &ContainerID) -> bool {
    matches!(container, ContainerID::Root { name, .. } if name.as_str() == ROOT_MAP)
}

/// The field a container belongs to: the key it (or its ancestor) has in the `row` map. A
/// path lists each container from the root down with its index in its parent.
fn field_of_container(doc: &LoroDoc, container: &ContainerID) -> Option<String> {
    let path = doc.get_path_to_container(container)?;
    match (path.first(), path.get(1)) {
        (Some((root, _)), Some((_, Index::Key(key)))) if is_row(root) => Some(key.to_string()),
        _ => None,
    }
}

/// The role and xid of a message this extension wrote.
fn author_of(message: Option<&str>) -> (Option<String>, Option<u64>) {
    let Some(Value::Object(m)) = message.and_then(|m| serde_json::from_str(m).ok()) else {
        return (None, None);
    };
    let role = m.get("role").and_then(Value::as_str).map(str::to_owned);
    let xid = m
        .get("xid")
        .and_then(Value::as_str)
        .and_then(|x| x.parse().ok());
    (role, xid)
}

/// The version the doc had at time `at` (Unix seconds): every change made at or before it,
/// with its causal history. A change without a recorded time counts as made when the latest
/// of the changes it depends on was. A time before a trimmed history's start is an error.
pub fn version_at(doc: &LoroDoc, at: i64) -> Result<VersionVector, DocError> {
    let history = changes(doc)?;
    let mut vv = if doc.is_shallow() {
        doc.shallow_since_vv().to_vv()
    } else {
        VersionVector::new()
    };
    if doc.is_shallow() {
        let earliest = history.iter().map(|c| c.timestamp).filter(|t| *t > 0).min();
        if earliest.is_none_or(|t| at < t) {
            return Err(DocError::Pending(
                "the doc's history was trimmed (pylon_crdt_compact with trim_history) after that time"
                    .into(),
            ));
        }
    }
    // Lamport order is causal order: a change's deps come before it, and a peer's changes
    // come in counter order, so each peer's (first counter, time) list stays sorted.
    let mut times: HashMap<u64, Vec<(i32, i64)>> = HashMap::new();
    for change in &history {
        let dep_time = change
            .deps
            .iter()
            .filter_map(|(peer, counter)| {
                let list = times.get(peer)?;
                let i = list.partition_point(|(start, _)| start <= counter);
                list.get(i.checked_sub(1)?).map(|(_, t)| *t)
            })
            .max()
            .unwrap_or(0);
        let time = if change.timestamp > 0 {
            change.timestamp
        } else {
            dep_time
        };
        times
            .entry(change.peer)
            .or_default()
            .push((change.counter_start, time));
        let deps_in = change
            .deps
            .iter()
            .all(|(peer, counter)| vv.get(peer).is_some_and(|end| end > counter));
        let contiguous = vv.get(&change.peer).copied().unwrap_or(0) >= change.counter_start;
        if time <= at && deps_in && contiguous {
            vv.insert(change.peer, change.counter_end);
        }
    }
    Ok(vv)
}

/// When to look at a doc: a time (Unix seconds) or an encoded version vector.
#[derive(Clone, Copy, Debug)]
pub enum When<'a> {
    Time(i64),
    Version(&'a [u8]),
}

/// The version `when` names in this doc.
pub fn resolve(doc: &LoroDoc, when: When<'_>) -> Result<VersionVector, DocError> {
    match when {
        When::Time(at) => version_at(doc, at),
        When::Version(bytes) => decode_version(bytes),
    }
}

/// A version the doc can show: one it holds, not before a history trim.
fn check_held(doc: &LoroDoc, version: &VersionVector) -> Result<(), DocError> {
    if !doc.oplog_vv().includes_vv(version) {
        return Err(DocError::Pending(
            "the doc does not hold that version (it has ops the doc lacks)".into(),
        ));
    }
    if doc.is_shallow() && !version.includes_vv(&doc.shallow_since_vv().to_vv()) {
        return Err(DocError::Pending(
            "the doc's history was trimmed (pylon_crdt_compact with trim_history) after that version".into(),
        ));
    }
    Ok(())
}

/// A copy of the doc as it was at `version`, for reading; the doc itself is untouched.
pub fn doc_at(doc: &LoroDoc, version: &VersionVector) -> Result<LoroDoc, DocError> {
    check_held(doc, version)?;
    let frontiers: Frontiers = doc.vv_to_frontiers(version);
    let failed =
        |e: loro::LoroError| DocError::Pending(format!("cannot check out that version: {e}"));
    if !doc.is_shallow() {
        return doc.fork_at(&frontiers).map_err(failed);
    }
    // Loro cannot fork a shallow doc at a version: check a copy out there instead.
    let copy = LoroDoc::new();
    copy.import(&super::snapshot(doc)).map_err(failed)?;
    copy.checkout(&frontiers).map_err(failed)?;
    Ok(copy)
}

/// What changed in each field between two versions: for a plain (LWW) field its new value,
/// for text the spans kept, inserted and deleted (`{"retain": n}`, `{"insert": "…"}`,
/// `{"delete": n}`), for a counter the difference, for lists the same spans of values, for
/// trees the nodes created, moved and deleted, and for a container inside a field (a tree
/// node's data) its changes under `"inside"`. Fields that did not change are left out.
pub fn diff(doc: &LoroDoc, from: &VersionVector, to: &VersionVector) -> Result<Value, DocError> {
    for version in [from, to] {
        check_held(doc, version)?;
    }
    let (a, b) = (doc.vv_to_frontiers(from), doc.vv_to_frontiers(to));
    let batch = doc
        .diff(&a, &b)
        .map_err(|e| DocError::Pending(format!("cannot compare those versions: {e}")))?;
    let mut out = serde_json::Map::new();
    for (container, change) in batch.iter() {
        if is_row(container) {
            if let Diff::Map(map) = change {
                for (key, value) in &map.updated {
                    let value = match value {
                        Some(v) => project::value_of(v).unwrap_or(Value::Null),
                        None => Value::Null,
                    };
                    let entry = out.entry(key.to_string()).or_insert_with(|| json!({}));
                    entry["value"] = value;
                }
            }
            continue;
        }
        let Some(field) = field_of_container(doc, container) else {
            continue;
        };
        let entry = out.entry(field).or_insert_with(|| json!({}));
        let described = describe(change);
        // A field's own container is one level below `row`; deeper ones are inside it.
        let own = doc
            .get_path_to_container(container)
            .is_some_and(|path| path.len() == 2);
        if own {
            for (k, v) in described.as_object().into_iter().flatten() {
                entry[k] = v.clone();
            }
        } else {
            let inside = entry
                .as_object_mut()
                .expect("an object")
                .entry("inside")
                .or_insert_with(|| json!([]));
            if let Value::Array(list) = inside {
                list.push(described);
            }
        }
    }
    Ok(Value::Object(out))
}

fn describe(change: &Diff<'_>) -> Value {
    match change {
        Diff::Text(deltas) => json!({"text": deltas.iter().map(|d| match d {
            TextDelta::Retain { retain, .. } => json!({"retain": retain}),
            TextDelta::Insert { insert, .. } => json!({"insert": insert}),
            TextDelta::Delete { delete } => json!({"delete": delete}),
        }).collect::<Vec<_>>()}),
        Diff::Counter(delta) => json!({"increment": super::json::number_from_f64(*delta)}),
        Diff::List(items) => json!({"list": items.iter().map(|i| match i {
            ListDiffItem::Retain { retain } => json!({"retain": retain}),
            ListDiffItem::Insert { insert, .. } => json!({"insert": insert
                .iter()
                .map(|v| project::value_of(v).unwrap_or(Value::Null))
                .collect::<Vec<_>>()}),
            ListDiffItem::Delete { delete } => json!({"delete": delete}),
        }).collect::<Vec<_>>()}),
        Diff::Map(map) => json!({"map": map.updated.iter().map(|(k, v)| {
            (k.to_string(), v.as_ref().map_or(Value::Null, |v| project::value_of(v).unwrap_or(Value::Null)))
        }).collect::<serde_json::Map<_, _>>()}),
        Diff::Tree(tree) => json!({"tree": tree.diff.iter().map(|item| {
            let node = item.target.to_string();
            match &item.action {
                TreeExternalDiff::Create { parent, index, .. } => {
                    json!({"create": {"node": node, "parent": parent_id(parent), "index": index}})
                }
                TreeExternalDiff::Move { parent, index, old_parent, .. } => json!({"move": {
                    "node": node, "parent": parent_id(parent), "index": index,
                    "old_parent": parent_id(old_parent)}}),
                TreeExternalDiff::Delete { old_parent, .. } => {
                    json!({"delete": {"node": node, "old_parent": parent_id(old_parent)}})
                }
            }
        }).collect::<Vec<_>>()}),
        _ => json!({"unknown": true}),
    }
}

fn parent_id(parent: &TreeParentId) -> Value {
    match parent {
        TreeParentId::Node(id) => Value::String(id.to_string()),
        _ => Value::Null,
    }
}

/// Brings the doc back to its state at `version`, as new ops after the current ones (a
/// forward change peers merge like any other; the history stays).
pub fn revert(doc: &LoroDoc, version: &VersionVector) -> Result<(), DocError> {
    check_held(doc, version)?;
    doc.revert_to(&doc.vv_to_frontiers(version))
        .map_err(|e| DocError::Pending(format!("cannot restore that version: {e}")))?;
    doc.commit();
    Ok(())
}
