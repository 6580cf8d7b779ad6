//! Patches from table rows: what a plain INSERT or UPDATE on a CRDT-backed table means for
//! the doc (DESIGN 4). Rows arrive as JSON objects (`to_jsonb(row)`).
//!
//! An UPDATE only patches the columns it changed, and a counter column's change is recorded
//! as an increment (new minus old), so `SET votes = votes + 1` from concurrent transactions
//! and remote peers adds up. Text columns are diffed by the text kind itself.

use serde_json::{Map, Value};

use super::fields::{BaseType, Field, FieldKind};

/// The patch an inserted row (or a row seeding a new doc) means: every field column's
/// value. NULLs are skipped, so an insert does not clear what a doc already holds.
/// An inserted tree column holds tree ops; a seeding row holds a projection, which is
/// rebuilt as a new tree with the same shape and data (`{"replace": nodes}`).
pub fn from_row(fields: &[Field], row: &Map<String, Value>, seeding: bool) -> Value {
    let mut patch = Map::new();
    for field in fields {
        match row.get(&field.name) {
            None | Some(Value::Null) => {}
            Some(value) if seeding && field.kind == FieldKind::Tree => {
                let mut op = Map::new();
                op.insert("replace".into(), value.clone());
                patch.insert(field.name.clone(), Value::Object(op));
            }
            Some(value) => {
                patch.insert(field.name.clone(), value.clone());
            }
        }
    }
    Value::Object(patch)
}

/// The patch an UPDATE means: the field columns whose value changed.
pub fn from_update(fields: &[Field], old: &Map<String, Value>, new: &Map<String, Value>) -> Value {
    let mut patch = Map::new();
    for field in fields {
        let Some(after) = new.get(&field.name) else {
            continue;
        };
        let before = old.get(&field.name).unwrap_or(&Value::Null);
        if before == after {
            continue;
        }
        let value = match (field.kind, before, after) {
            (FieldKind::Counter, Value::Number(b), Value::Number(a)) => increment(field, b, a),
            _ => after.clone(),
        };
        patch.insert(field.name.clone(), value);
    }
    Value::Object(patch)
}

fn increment(field: &Field, before: &serde_json::Number, after: &serde_json::Number) -> Value {
    let by = match (field.base, before.as_i64(), after.as_i64()) {
        (BaseType::Int, Some(b), Some(a)) => Value::from(a.wrapping_sub(b)),
        _ => super::json::number_from_f64(
            after.as_f64().unwrap_or(0.0) - before.as_f64().unwrap_or(0.0),
        ),
    };
    let mut op = Map::new();
    op.insert("increment".into(), by);
    Value::Object(op)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::parse_fields;
    use serde_json::json;

    fn fields() -> Vec<Field> {
        parse_fields(&json!({"title": "string", "body": "richtext", "votes": {"type": "int", "crdt": "counter"},
            "outline": {"type": "string", "crdt": "tree"}}))
        .unwrap()
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn updates_patch_changed_columns_and_counters_by_delta() {
        let old = obj(json!({"id": "a", "title": "t", "body": "x", "votes": 5, "other": 1}));
        let new = obj(json!({"id": "a", "title": "t", "body": "xy", "votes": 7, "other": 2}));
        assert_eq!(
            from_update(&fields(), &old, &new),
            json!({"body": "xy", "votes": {"increment": 2}})
        );
        let cleared = obj(json!({"id": "a", "title": null, "body": "x", "votes": 5}));
        assert_eq!(
            from_update(&fields(), &old, &cleared),
            json!({"title": null})
        );
    }

    #[test]
    fn inserts_and_seeds_take_non_null_columns() {
        let row = obj(
            json!({"id": "a", "title": "t", "body": null, "votes": 3, "outline": [{"create": {}}]}),
        );
        assert_eq!(
            from_row(&fields(), &row, false),
            json!({"title": "t", "votes": 3, "outline": [{"create": {}}]})
        );
        assert_eq!(
            from_row(&fields(), &row, true),
            json!({"title": "t", "votes": 3, "outline": {"replace": [{"create": {}}]}})
        );
    }
}
