//! Projection: the JSON a row doc shows for its fields, which is also what gets written to
//! the entity table's columns. It matches what a Loro peer reads under the `row` map.

use loro::{Container, LoroDoc, LoroTree, TreeID, ValueOrContainer};
use serde_json::{Map, Value};

use super::fields::Field;
use super::json::{from_loro, number_from_f64};
use super::{root, DocError};

/// Deeper trees are refused: projection recurses, and a peer must not be able to exhaust
/// the backend's stack.
pub const MAX_TREE_DEPTH: usize = 1000;

/// Every declared field, in declaration order; a field the doc lacks projects as null.
pub fn project(doc: &LoroDoc, fields: &[Field]) -> Result<Value, DocError> {
    let row = root(doc);
    let mut out = Map::with_capacity(fields.len());
    for field in fields {
        let value = match row.get(&field.name) {
            None => Value::Null,
            Some(v) => value_of(&v)
                .map_err(|m| DocError::Limit(format!("field \"{}\": {m}", field.name)))?,
        };
        out.insert(field.name.clone(), value);
    }
    Ok(Value::Object(out))
}

/// A key's value as JSON, whatever its shape: a field projects what its key holds, so a doc
/// a peer wrote under an older schema (a plain number where the field is now a counter) still
/// shows its value.
pub fn value_of(value: &ValueOrContainer) -> Result<Value, String> {
    match value {
        ValueOrContainer::Value(v) => Ok(from_loro(v)),
        ValueOrContainer::Container(c) => project_container(c.clone()),
    }
}

fn project_container(container: Container) -> Result<Value, String> {
    Ok(match container {
        Container::Text(text) => Value::String(text.to_string()),
        Container::Counter(counter) => number_from_f64(counter.get_value()),
        Container::Tree(tree) => tree_nodes(&tree, None, 0)?,
        other => from_loro(&ValueOrContainer::Container(other).get_deep_value()),
    })
}

/// `[{"id", "data", "children"}]` for the children of `parent`, in sibling order.
fn tree_nodes(tree: &LoroTree, parent: Option<TreeID>, depth: usize) -> Result<Value, String> {
    if depth > MAX_TREE_DEPTH {
        return Err(format!(
            "tree deeper than {MAX_TREE_DEPTH} levels cannot be projected"
        ));
    }
    let mut nodes = Vec::new();
    for id in tree.children(parent).unwrap_or_default() {
        let data = match tree.get_meta(id) {
            Ok(meta) => from_loro(&meta.get_deep_value()),
            Err(_) => Value::Object(Map::new()),
        };
        let mut node = Map::with_capacity(3);
        node.insert("id".into(), Value::String(id.to_string()));
        node.insert("data".into(), data);
        node.insert("children".into(), tree_nodes(tree, Some(id), depth + 1)?);
        nodes.push(Value::Object(node));
    }
    Ok(Value::Array(nodes))
}
