//! Applying a JSON patch to a row doc (DESIGN section 3, "Patch semantics").
//!
//! Every value is checked against its field's kind before the doc changes, so a patch with a
//! bad value changes nothing. Ops that can only fail against the current content (an index
//! past the end, a tree node that does not exist) fail while applying; callers then throw
//! the doc away instead of saving or caching it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use loro::{
    ContainerTrait, LoroCounter, LoroDoc, LoroList, LoroMap, LoroMovableList, LoroText, LoroTree,
    LoroValue, TreeID, ValueOrContainer,
};
use serde_json::{Map, Value};
use similar::{capture_diff_slices, capture_diff_slices_deadline, Algorithm, DiffOp};

use super::fields::{BaseType, Field, FieldKind};
use super::json::{number_to_loro, to_loro};
use super::{root, DocError};

/// Applies `patch` (a JSON object of field name to value) and commits. Absent fields are
/// untouched; `id` is ignored (it names the row, it is not a field).
pub fn apply_patch(doc: &LoroDoc, fields: &[Field], patch: &Value) -> Result<(), DocError> {
    let entries = patch.as_object().ok_or_else(|| DocError::Patch {
        field: None,
        message: format!("patch must be a JSON object, got {}", json_type(patch)),
    })?;
    let mut plan = Vec::with_capacity(entries.len());
    for (name, value) in entries {
        if name == "id" {
            continue;
        }
        let field = fields
            .iter()
            .find(|f| f.name == *name)
            .ok_or_else(|| DocError::patch(name, "is not a declared field"))?;
        check_shape(field, value).map_err(|m| DocError::patch(name, m))?;
        plan.push((field, value));
    }
    let row = root(doc);
    for (field, value) in plan {
        apply_field(&row, field, value).map_err(|m| DocError::patch(&field.name, m))?;
    }
    doc.commit();
    Ok(())
}

type Outcome = Result<(), String>;

/// The JSON type name used in error messages.
pub fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn expected(what: &str, got: &Value) -> String {
    format!("expected {what}, got {}", json_type(got))
}

fn check_shape(field: &Field, value: &Value) -> Outcome {
    if value.is_null() {
        return Ok(()); // null removes any kind of field
    }
    match field.kind {
        FieldKind::LwwString | FieldKind::Text if !value.is_string() => {
            Err(expected("a string or null", value))
        }
        FieldKind::LwwBool if !value.is_boolean() => Err(expected("a boolean or null", value)),
        FieldKind::LwwNumber => check_number(field, value),
        FieldKind::Counter => match value {
            Value::Object(op) => match single_op(op)? {
                ("increment", n) => check_number(field, n),
                _ => Err("expected a number or {\"increment\": n}".into()),
            },
            other => check_number(field, other),
        },
        FieldKind::List | FieldKind::MovableList => match value {
            Value::Array(_) => Ok(()),
            Value::Object(_) => list_ops(value, field.kind).map(drop),
            other => Err(expected("an array or a list op object", other)),
        },
        FieldKind::Tree => tree_ops(value).map(drop),
        _ => Ok(()),
    }
}

fn check_number(field: &Field, value: &Value) -> Outcome {
    match value {
        Value::Number(n) if field.base == BaseType::Int && !n.is_i64() && !n.is_u64() => {
            Err(format!("expected an integer for an int field, got {n}"))
        }
        Value::Number(_) => Ok(()),
        other => Err(expected("a number or null", other)),
    }
}

fn single_op(op: &Map<String, Value>) -> Result<(&str, &Value), String> {
    let mut entries = op.iter();
    match (entries.next(), entries.next()) {
        (Some((name, arg)), None) => Ok((name.as_str(), arg)),
        _ => Err(format!(
            "an op object has exactly one key, got {}",
            Value::Object(op.clone())
        )),
    }
}

fn apply_field(row: &LoroMap, field: &Field, value: &Value) -> Outcome {
    let name = field.name.as_str();
    if value.is_null() {
        if row.get(name).is_some() {
            row.delete(name).map_err(|e| e.to_string())?;
        }
        return Ok(());
    }
    if !matches!(
        field.kind,
        FieldKind::LwwString | FieldKind::LwwNumber | FieldKind::LwwBool
    ) {
        adopt(row, field)?;
    }
    match field.kind {
        FieldKind::LwwString | FieldKind::LwwBool => set_lww(row, name, to_loro(value)),
        FieldKind::LwwNumber => {
            let n = value.as_number().expect("shape checked");
            let v = match field.base {
                BaseType::Float => LoroValue::Double(n.as_f64().unwrap_or(f64::NAN)),
                _ => number_to_loro(n),
            };
            set_lww(row, name, v)
        }
        FieldKind::Text => {
            let text = child::<LoroText>(row, name)?;
            update_text(&text, value.as_str().expect("shape checked"))
        }
        FieldKind::Counter => {
            let counter = child::<LoroCounter>(row, name)?;
            let delta = match value {
                Value::Object(op) => single_op(op)?.1.as_f64().expect("shape checked"),
                n => n.as_f64().expect("shape checked") - counter.get_value(),
            };
            if delta != 0.0 {
                counter.increment(delta).map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        FieldKind::List => {
            let list = child::<LoroList>(row, name)?;
            apply_list(&ListHandle::Plain(list), value, field.kind)
        }
        FieldKind::MovableList => {
            let list = child::<LoroMovableList>(row, name)?;
            apply_list(&ListHandle::Movable(list), value, field.kind)
        }
        FieldKind::Tree => {
            let tree = child::<LoroTree>(row, name)?;
            // Sibling order needs fractional indexes; it is a local setting, not stored.
            tree.enable_fractional_index(0);
            for op in tree_ops(value)? {
                apply_tree_op(&tree, op)?;
            }
            Ok(())
        }
    }
}

/// A key holding another shape than its field's kind (a peer on an older schema wrote it, or
/// won the key over `pylon_crdt_alter`'s conversion) is converted first, keeping its value
/// where it fits: a counter over a plain number starts from that number, a text over a string
/// from that string. A value that does not fit the kind is dropped, as a write replaces it.
fn adopt(row: &LoroMap, field: &Field) -> Outcome {
    let Some(existing) = row.get(&field.name) else {
        return Ok(());
    };
    if super::migrate::holds(&existing, field.kind) {
        return Ok(());
    }
    let value = super::project::value_of(&existing)?;
    row.delete(&field.name).map_err(|e| e.to_string())?;
    let value = match (field.kind, value) {
        (FieldKind::Tree, nodes @ Value::Array(_)) => {
            let mut op = Map::new();
            op.insert("replace".into(), nodes);
            Value::Object(op)
        }
        (_, value) => value,
    };
    if !value.is_null() && check_shape(field, &value).is_ok() {
        apply_field(row, field, &value)?;
    }
    Ok(())
}

/// Writes an LWW value, skipping writes that change nothing so history does not grow.
fn set_lww(row: &LoroMap, name: &str, value: LoroValue) -> Outcome {
    if let Some(ValueOrContainer::Value(current)) = row.get(name) {
        if current == value {
            return Ok(());
        }
    }
    row.insert(name, value).map_err(|e| e.to_string())
}

/// The field's container, created (or replacing a value of another kind) when missing.
///
/// New containers are mergeable: Loro derives their id from the parent map, the key and the
/// kind, so two docs created independently for one row (on two primaries, or by an offline
/// client that never loaded the server's doc) hold the same container and merge, where
/// regular children would be two containers under one key and one would silently win.
/// A regular child that an older doc already holds is kept: every peer that loaded the doc
/// edits that container, and replacing it would drop their concurrent edits.
fn child<C: FieldContainer>(row: &LoroMap, name: &str) -> Result<C, String> {
    match row.get(name) {
        Some(ValueOrContainer::Container(existing)) => {
            if let Some(c) = C::try_from_container(existing) {
                return Ok(c);
            }
            row.delete(name).map_err(|e| e.to_string())?;
        }
        Some(ValueOrContainer::Value(_)) => row.delete(name).map_err(|e| e.to_string())?,
        None => {}
    }
    if !MERGEABLE_FIELDS.with(|on| on.get())() {
        return row
            .insert_container(name, C::new_detached())
            .map_err(|e| e.to_string());
    }
    let c = C::ensure_mergeable(row, name).map_err(|e| e.to_string())?;
    // Loro keeps a mergeable child's state while its key is cleared and shows it again when
    // the key is set; a field set to null starts over, as it did with a fresh child.
    c.clear_field()?;
    Ok(c)
}

thread_local! {
    static MERGEABLE_FIELDS: std::cell::Cell<fn() -> bool> = const { std::cell::Cell::new(|| true) };
}

/// Where new fields learn whether to be mergeable (the SQL layer passes its setting,
/// `pylon_crdt.mergeable_fields`): peers on Loro before 1.17 cannot read mergeable children
/// and see the field as a binary value, so a deployment with such peers turns it off.
pub fn mergeable_fields_from(setting: fn() -> bool) {
    MERGEABLE_FIELDS.with(|source| source.set(setting));
}

/// The container kinds a field can have, with their mergeable constructor.
trait FieldContainer: ContainerTrait + Sized {
    fn new_detached() -> Self;
    fn ensure_mergeable(row: &LoroMap, name: &str) -> loro::LoroResult<Self>;
    /// Empties the container; records nothing when it is empty already.
    fn clear_field(&self) -> Outcome;
}

impl FieldContainer for LoroText {
    fn new_detached() -> Self {
        LoroText::new()
    }
    fn ensure_mergeable(row: &LoroMap, name: &str) -> loro::LoroResult<Self> {
        row.ensure_mergeable_text(name)
    }
    fn clear_field(&self) -> Outcome {
        let len = self.len_unicode();
        if len == 0 {
            return Ok(());
        }
        self.delete(0, len).map_err(|e| e.to_string())
    }
}

impl FieldContainer for LoroCounter {
    fn new_detached() -> Self {
        LoroCounter::new()
    }
    fn ensure_mergeable(row: &LoroMap, name: &str) -> loro::LoroResult<Self> {
        row.ensure_mergeable_counter(name)
    }
    fn clear_field(&self) -> Outcome {
        let value = self.get_value();
        if value == 0.0 {
            return Ok(());
        }
        self.decrement(value).map_err(|e| e.to_string())
    }
}

impl FieldContainer for LoroList {
    fn new_detached() -> Self {
        LoroList::new()
    }
    fn ensure_mergeable(row: &LoroMap, name: &str) -> loro::LoroResult<Self> {
        row.ensure_mergeable_list(name)
    }
    fn clear_field(&self) -> Outcome {
        if self.is_empty() {
            return Ok(());
        }
        self.clear().map_err(|e| e.to_string())
    }
}

impl FieldContainer for LoroMovableList {
    fn new_detached() -> Self {
        LoroMovableList::new()
    }
    fn ensure_mergeable(row: &LoroMap, name: &str) -> loro::LoroResult<Self> {
        row.ensure_mergeable_movable_list(name)
    }
    fn clear_field(&self) -> Outcome {
        if self.is_empty() {
            return Ok(());
        }
        self.clear().map_err(|e| e.to_string())
    }
}

impl FieldContainer for LoroTree {
    fn new_detached() -> Self {
        LoroTree::new()
    }
    fn ensure_mergeable(row: &LoroMap, name: &str) -> loro::LoroResult<Self> {
        row.ensure_mergeable_tree(name)
    }
    fn clear_field(&self) -> Outcome {
        for node in self.roots() {
            self.delete(node).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

// ---- lists ----

/// The two list kinds share diffing and most ops.
enum ListHandle {
    Plain(LoroList),
    Movable(LoroMovableList),
}

impl ListHandle {
    fn len(&self) -> usize {
        match self {
            ListHandle::Plain(l) => l.len(),
            ListHandle::Movable(l) => l.len(),
        }
    }

    fn values(&self) -> Vec<LoroValue> {
        let value = match self {
            ListHandle::Plain(l) => l.get_value(),
            ListHandle::Movable(l) => l.get_value(),
        };
        match value {
            LoroValue::List(items) => items.to_vec(),
            _ => Vec::new(),
        }
    }

    fn insert(&self, pos: usize, v: LoroValue) -> Outcome {
        match self {
            ListHandle::Plain(l) => l.insert(pos, v),
            ListHandle::Movable(l) => l.insert(pos, v),
        }
        .map_err(|e| e.to_string())
    }

    fn delete(&self, pos: usize, len: usize) -> Outcome {
        match self {
            ListHandle::Plain(l) => l.delete(pos, len),
            ListHandle::Movable(l) => l.delete(pos, len),
        }
        .map_err(|e| e.to_string())
    }

    /// Replaces in place where the kind allows it (movable lists keep element identity).
    fn replace(&self, pos: usize, v: LoroValue) -> Outcome {
        match self {
            ListHandle::Plain(l) => l
                .delete(pos, 1)
                .and_then(|_| l.insert(pos, v))
                .map_err(|e| e.to_string()),
            ListHandle::Movable(l) => l.set(pos, v).map_err(|e| e.to_string()),
        }
    }
}

enum ListOp<'a> {
    Push(&'a Value),
    Insert(usize, &'a Value),
    Delete(usize, usize),
    Move(usize, usize),
    Set(usize, &'a Value),
}

/// Parses `{"push": v}`, `{"insert": [i, v]}`, `{"delete": [i, n]}`, `{"move": [from, to]}`,
/// `{"set": [i, v]}`, or `{"ops": [op, ...]}` for several in order.
fn list_ops(value: &Value, kind: FieldKind) -> Result<Vec<ListOp<'_>>, String> {
    let op = value
        .as_object()
        .ok_or_else(|| expected("a list op object", value))?;
    let (name, arg) = single_op(op)?;
    if name == "ops" {
        let items = arg
            .as_array()
            .ok_or_else(|| expected("an array of ops for \"ops\"", arg))?;
        let mut ops = Vec::with_capacity(items.len());
        for item in items {
            if item.get("ops").is_some() {
                return Err("\"ops\" cannot be nested".into());
            }
            ops.extend(list_ops(item, kind)?);
        }
        return Ok(ops);
    }
    let pair = |what: &str| -> Result<(&Value, &Value), String> {
        match arg.as_array().map(Vec::as_slice) {
            Some([a, b]) => Ok((a, b)),
            _ => Err(format!("\"{name}\" takes a two-element array [{what}]")),
        }
    };
    let index = |v: &Value| -> Result<usize, String> {
        v.as_u64()
            .map(|i| i as usize)
            .ok_or_else(|| format!("\"{name}\": index must be a non-negative integer, got {v}"))
    };
    let movable_only = || -> Result<(), String> {
        if kind == FieldKind::MovableList {
            Ok(())
        } else {
            Err(format!("\"{name}\" is only for movable-list fields"))
        }
    };
    Ok(vec![match name {
        "push" => ListOp::Push(arg),
        "insert" => {
            let (i, v) = pair("index, value")?;
            ListOp::Insert(index(i)?, v)
        }
        "delete" => {
            let (i, n) = pair("index, count")?;
            ListOp::Delete(index(i)?, index(n)?)
        }
        "move" => {
            movable_only()?;
            let (from, to) = pair("from, to")?;
            ListOp::Move(index(from)?, index(to)?)
        }
        "set" => {
            movable_only()?;
            let (i, v) = pair("index, value")?;
            ListOp::Set(index(i)?, v)
        }
        other => {
            return Err(format!(
                "unknown list op \"{other}\" (expected push, insert, delete, move, set or ops)"
            ))
        }
    }])
}

fn apply_list(list: &ListHandle, value: &Value, kind: FieldKind) -> Outcome {
    if let Value::Array(items) = value {
        return diff_into(list, items.iter().map(to_loro).collect());
    }
    for op in list_ops(value, kind)? {
        let len = list.len();
        let out_of_range =
            |what: &str| Err(format!("{what} out of range for a list of length {len}"));
        match op {
            ListOp::Push(v) => list.insert(len, to_loro(v))?,
            ListOp::Insert(i, v) if i <= len => list.insert(i, to_loro(v))?,
            ListOp::Delete(i, n) if i.checked_add(n).is_some_and(|end| end <= len) => {
                list.delete(i, n)?
            }
            ListOp::Set(i, v) if i < len => list.replace(i, to_loro(v))?,
            ListOp::Move(from, to) if from < len && to < len => match list {
                ListHandle::Movable(l) => l.mov(from, to).map_err(|e| e.to_string())?,
                ListHandle::Plain(_) => {
                    unreachable!("move is rejected for plain lists when parsed")
                }
            },
            ListOp::Insert(..) => return out_of_range("insert index"),
            ListOp::Delete(..) => return out_of_range("delete range"),
            ListOp::Set(..) => return out_of_range("set index"),
            ListOp::Move(..) => return out_of_range("move index"),
        }
    }
    Ok(())
}

/// How long a text diff may search for a minimal edit before it settles for a coarser one
/// (still correct, just less precise about which characters it keeps).
const TEXT_DIFF_DEADLINE: Duration = Duration::from_millis(500);

/// Turns the text into `new` with a minimal character diff, so concurrent edits to other
/// parts of the text survive. The common prefix and suffix are cut off first and only the
/// rest is diffed: a typical edit changes one region, and this is about 20 times cheaper
/// than `LoroText::update` over the whole text (44 µs for a 280-character paragraph).
/// Positions are in Unicode scalar values, as `LoroText::insert`/`delete` count them.
fn update_text(text: &LoroText, new: &str) -> Outcome {
    let old = text.to_string();
    if old == new {
        return Ok(());
    }
    let old: Vec<char> = old.chars().collect();
    let new: Vec<char> = new.chars().collect();
    let prefix = old.iter().zip(&new).take_while(|(a, b)| a == b).count();
    let suffix = old[prefix..]
        .iter()
        .rev()
        .zip(new[prefix..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let old_mid = &old[prefix..old.len() - suffix];
    let new_mid = &new[prefix..new.len() - suffix];
    let err = |e: loro::LoroError| e.to_string();
    let deadline = Some(Instant::now() + TEXT_DIFF_DEADLINE);
    // Ops come in order; `at` is where the next one applies: the new text so far.
    let mut at = 0;
    for op in capture_diff_slices_deadline(Algorithm::Myers, old_mid, new_mid, deadline) {
        let (_, old_range, new_range) = op.as_tag_tuple();
        if !matches!(op, DiffOp::Equal { .. }) {
            if !old_range.is_empty() {
                text.delete(prefix + at, old_range.len()).map_err(err)?;
            }
            if !new_range.is_empty() {
                let inserted: String = new_mid[new_range.clone()].iter().collect();
                text.insert(prefix + at, &inserted).map_err(err)?;
            }
        }
        at += new_range.len();
    }
    Ok(())
}

/// Turns the list into `new` with a minimal element diff (Myers), so elements nobody
/// changed keep their identity and concurrent edits elsewhere in the list survive.
fn diff_into(list: &ListHandle, new: Vec<LoroValue>) -> Outcome {
    let old = list.values();
    // similar needs Ord; intern values to integers so equal elements compare equal.
    let mut ids: HashMap<&LoroValue, usize> = HashMap::new();
    let mut intern = |v| {
        let next = ids.len();
        *ids.entry(v).or_insert(next)
    };
    let old_ids: Vec<usize> = old.iter().map(&mut intern).collect();
    let new_ids: Vec<usize> = new.iter().map(&mut intern).collect();
    // Ops come in order; `at` is where the next one applies: the new list so far. (Not
    // `new_index`, which similar reports off for some deletes.)
    let mut at = 0;
    for op in capture_diff_slices(Algorithm::Myers, &old_ids, &new_ids) {
        let (_, old_range, new_range) = op.as_tag_tuple();
        if !matches!(op, DiffOp::Equal { .. }) {
            // Replace in place what both sides have, then delete or insert the rest.
            let shared = old_range.len().min(new_range.len());
            for k in 0..shared {
                list.replace(at + k, new[new_range.start + k].clone())?;
            }
            if old_range.len() > shared {
                list.delete(at + shared, old_range.len() - shared)?;
            }
            for k in shared..new_range.len() {
                list.insert(at + k, new[new_range.start + k].clone())?;
            }
        }
        at += new_range.len();
    }
    Ok(())
}

// ---- trees ----

enum TreeOp<'a> {
    /// The whole tree, in projection shape (`[{"data", "children"}]`; ids are ignored):
    /// rebuilt with new nodes. Used to seed a doc from a table row.
    Replace(&'a [Value]),
    Create {
        parent: Option<TreeID>,
        index: Option<usize>,
        data: Option<&'a Map<String, Value>>,
    },
    Move {
        node: TreeID,
        parent: Option<TreeID>,
        index: Option<usize>,
    },
    Delete(TreeID),
    Set {
        node: TreeID,
        key: &'a str,
        value: &'a Value,
    },
}

/// Parses one tree op object or an array of them (applied in order).
fn tree_ops(value: &Value) -> Result<Vec<TreeOp<'_>>, String> {
    match value {
        Value::Array(items) => items.iter().map(tree_op).collect(),
        Value::Object(_) => Ok(vec![tree_op(value)?]),
        other => Err(expected("a tree op object or an array of them", other)),
    }
}

fn tree_op(value: &Value) -> Result<TreeOp<'_>, String> {
    let op = value
        .as_object()
        .ok_or_else(|| expected("a tree op object", value))?;
    let (name, arg) = single_op(op)?;
    let args = |required: &[&str]| -> Result<&Map<String, Value>, String> {
        let obj = arg
            .as_object()
            .ok_or_else(|| format!("\"{name}\" takes an object, got {}", json_type(arg)))?;
        match required.iter().find(|k| !obj.contains_key(**k)) {
            Some(missing) => Err(format!("\"{name}\" needs \"{missing}\"")),
            None => Ok(obj),
        }
    };
    Ok(match name {
        "create" => {
            let a = args(&[])?;
            let data = match a.get("data") {
                None | Some(Value::Null) => None,
                Some(Value::Object(d)) => Some(d),
                Some(other) => return Err(expected("an object for \"data\"", other)),
            };
            TreeOp::Create {
                parent: parent_of(a)?,
                index: index_of(a)?,
                data,
            }
        }
        "move" => {
            let a = args(&["node"])?;
            TreeOp::Move {
                node: node_id(&a["node"])?,
                parent: parent_of(a)?,
                index: index_of(a)?,
            }
        }
        "delete" => TreeOp::Delete(node_id(arg)?),
        "replace" => {
            let nodes = arg
                .as_array()
                .ok_or_else(|| expected("an array of nodes for \"replace\"", arg))?;
            check_nodes(nodes, 0)?;
            TreeOp::Replace(nodes)
        }
        "set" => {
            let a = args(&["node", "key", "value"])?;
            let key = a["key"]
                .as_str()
                .ok_or_else(|| expected("a string \"key\"", &a["key"]))?;
            TreeOp::Set {
                node: node_id(&a["node"])?,
                key,
                value: &a["value"],
            }
        }
        other => {
            return Err(format!(
                "unknown tree op \"{other}\" (expected create, move, delete, set or replace)"
            ))
        }
    })
}

/// Checks projection-shaped nodes: objects with an optional `data` object and an optional
/// `children` array, no deeper than projection allows.
fn check_nodes(nodes: &[Value], depth: usize) -> Result<(), String> {
    if depth > super::project::MAX_TREE_DEPTH {
        return Err(format!(
            "tree deeper than {} levels",
            super::project::MAX_TREE_DEPTH
        ));
    }
    for node in nodes {
        let obj = node
            .as_object()
            .ok_or_else(|| expected("a node object", node))?;
        match obj.get("data") {
            None | Some(Value::Null) | Some(Value::Object(_)) => {}
            Some(other) => return Err(expected("an object for a node's \"data\"", other)),
        }
        match obj.get("children") {
            None | Some(Value::Null) => {}
            Some(Value::Array(children)) => check_nodes(children, depth + 1)?,
            Some(other) => return Err(expected("an array for a node's \"children\"", other)),
        }
    }
    Ok(())
}

fn build_nodes(tree: &LoroTree, parent: Option<TreeID>, nodes: &[Value]) -> Outcome {
    for node in nodes {
        let id = tree.create(parent).map_err(|e| e.to_string())?;
        if let Some(Value::Object(data)) = node.get("data") {
            let meta = tree.get_meta(id).map_err(|e| e.to_string())?;
            for (k, v) in data {
                meta.insert(k, to_loro(v)).map_err(|e| e.to_string())?;
            }
        }
        if let Some(Value::Array(children)) = node.get("children") {
            build_nodes(tree, Some(id), children)?;
        }
    }
    Ok(())
}

fn node_id(value: &Value) -> Result<TreeID, String> {
    let s = value
        .as_str()
        .ok_or_else(|| expected("a node id string like \"0@123\"", value))?;
    TreeID::try_from(s)
        .map_err(|_| format!("\"{s}\" is not a tree node id (expected counter@peer)"))
}

fn parent_of(args: &Map<String, Value>) -> Result<Option<TreeID>, String> {
    match args.get("parent") {
        None | Some(Value::Null) => Ok(None),
        Some(p) => node_id(p).map(Some),
    }
}

fn index_of(args: &Map<String, Value>) -> Result<Option<usize>, String> {
    match args.get("index") {
        None | Some(Value::Null) => Ok(None),
        Some(i) => i
            .as_u64()
            .map(|i| Some(i as usize))
            .ok_or_else(|| expected("a non-negative integer \"index\"", i)),
    }
}

fn apply_tree_op(tree: &LoroTree, op: TreeOp<'_>) -> Outcome {
    let live = |node: TreeID| -> Outcome {
        match tree.is_node_deleted(&node) {
            Ok(false) => Ok(()),
            _ => Err(format!("tree node {node} does not exist")),
        }
    };
    let siblings = |parent: Option<TreeID>| tree.children_num(parent).unwrap_or(0);
    match op {
        TreeOp::Create {
            parent,
            index,
            data,
        } => {
            if let Some(p) = parent {
                live(p)?;
            }
            let node = match index {
                Some(i) if i > siblings(parent) => {
                    return Err(format!(
                        "create index {i} out of range ({} siblings)",
                        siblings(parent)
                    ))
                }
                Some(i) => tree.create_at(parent, i),
                None => tree.create(parent),
            }
            .map_err(|e| e.to_string())?;
            if let Some(data) = data {
                let meta = tree.get_meta(node).map_err(|e| e.to_string())?;
                for (k, v) in data {
                    meta.insert(k, to_loro(v)).map_err(|e| e.to_string())?;
                }
            }
        }
        TreeOp::Move {
            node,
            parent,
            index,
        } => {
            live(node)?;
            if let Some(p) = parent {
                live(p)?;
            }
            match index {
                Some(i) => {
                    // Moving within the same parent, the node itself does not count.
                    let same_parent = tree.parent(node) == Some(parent.into());
                    let max = siblings(parent) - usize::from(same_parent);
                    if i > max {
                        return Err(format!("move index {i} out of range ({max} siblings)"));
                    }
                    tree.mov_to(node, parent, i)
                }
                None => tree.mov(node, parent),
            }
            .map_err(|e| format!("cannot move {node}: {e}"))?;
        }
        TreeOp::Delete(node) => {
            live(node)?;
            tree.delete(node).map_err(|e| e.to_string())?;
        }
        TreeOp::Replace(nodes) => {
            for root in tree.roots() {
                tree.delete(root).map_err(|e| e.to_string())?;
            }
            build_nodes(tree, None, nodes)?;
        }
        TreeOp::Set { node, key, value } => {
            live(node)?;
            let meta = tree.get_meta(node).map_err(|e| e.to_string())?;
            if value.is_null() {
                meta.delete(key).map_err(|e| e.to_string())?;
            } else {
                meta.insert(key, to_loro(value))
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(())
}
