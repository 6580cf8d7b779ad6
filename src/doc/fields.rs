//! Field specs: which CRDT kind each field of an entity is (DESIGN section 3).
//!
//! A field's kind comes from its pylon type plus an optional `crdt` annotation. Specs arrive
//! as jsonb in two forms: an object `{"title": "string", "votes": {"type": "int", "crdt":
//! "counter"}}` or the runtime's manifest array `[{"name": "title", "type": "string",
//! "crdt": null}]`. Both are parsed here, and a bad annotation is rejected before any doc is
//! touched.

use serde_json::Value;

use super::DocError;

/// How a field is stored in the doc and merged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// Last-writer-wins string value in the `row` map.
    LwwString,
    /// Last-writer-wins number (i64 for integers, f64 otherwise).
    LwwNumber,
    /// Last-writer-wins boolean.
    LwwBool,
    /// `LoroText` container, edited by minimal diffs.
    Text,
    /// `LoroCounter` container: writes record deltas, concurrent increments add up.
    Counter,
    /// `LoroList` container.
    List,
    /// `LoroMovableList` container.
    MovableList,
    /// `LoroTree` container.
    Tree,
}

impl FieldKind {
    pub fn name(self) -> &'static str {
        match self {
            FieldKind::LwwString => "lww string",
            FieldKind::LwwNumber => "lww number",
            FieldKind::LwwBool => "lww bool",
            FieldKind::Text => "text",
            FieldKind::Counter => "counter",
            FieldKind::List => "list",
            FieldKind::MovableList => "movable-list",
            FieldKind::Tree => "tree",
        }
    }
}

/// The pylon base types a field can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BaseType {
    String,
    Datetime,
    Id,
    Int,
    Float,
    Bool,
    RichText,
}

impl BaseType {
    fn parse(ty: &str) -> Option<BaseType> {
        Some(match ty {
            "string" => BaseType::String,
            "datetime" => BaseType::Datetime,
            "int" => BaseType::Int,
            "float" => BaseType::Float,
            "bool" => BaseType::Bool,
            "richtext" => BaseType::RichText,
            _ if ty.starts_with("id(") && ty.ends_with(')') && ty.len() > 4 => BaseType::Id,
            _ => return None,
        })
    }

    fn default_kind(self) -> FieldKind {
        match self {
            BaseType::String | BaseType::Datetime | BaseType::Id => FieldKind::LwwString,
            BaseType::Int | BaseType::Float => FieldKind::LwwNumber,
            BaseType::Bool => FieldKind::LwwBool,
            BaseType::RichText => FieldKind::Text,
        }
    }

    /// The kind an annotation selects for this type, or `None` when it does not fit.
    fn annotated_kind(self, annotation: &str) -> Option<FieldKind> {
        use BaseType::*;
        Some(match (annotation, self) {
            ("lww", RichText) => FieldKind::LwwString,
            ("lww", ty) => ty.default_kind(),
            ("text", String | RichText) => FieldKind::Text,
            ("counter", Int | Float) => FieldKind::Counter,
            ("list", _) => FieldKind::List,
            ("movable-list", _) => FieldKind::MovableList,
            ("tree", _) => FieldKind::Tree,
            _ => return None,
        })
    }
}

/// One CRDT field of an entity.
#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    pub name: String,
    pub base: BaseType,
    pub kind: FieldKind,
}

/// Parses a fields spec in either accepted form. The `id` field is skipped: it names the row
/// and is never a CRDT field.
pub fn parse_fields(spec: &Value) -> Result<Vec<Field>, DocError> {
    let mut fields = Vec::new();
    match spec {
        Value::Object(map) => {
            for (name, decl) in map {
                let (ty, crdt) = match decl {
                    Value::String(ty) => (ty.as_str(), None),
                    Value::Object(obj) => (type_of(name, obj)?, annotation_of(name, obj)?),
                    other => {
                        return Err(DocError::fields(format!(
                            "field \"{name}\": expected a type name or an object with \"type\", got {other}"
                        )))
                    }
                };
                push_field(&mut fields, name, ty, crdt)?;
            }
        }
        Value::Array(items) => {
            for item in items {
                let obj = item.as_object().ok_or_else(|| {
                    DocError::fields(format!(
                        "expected an object with \"name\" and \"type\", got {item}"
                    ))
                })?;
                let name = obj.get("name").and_then(Value::as_str).ok_or_else(|| {
                    DocError::fields(format!("field without a string \"name\": {item}"))
                })?;
                push_field(
                    &mut fields,
                    name,
                    type_of(name, obj)?,
                    annotation_of(name, obj)?,
                )?;
            }
        }
        other => {
            return Err(DocError::fields(format!(
                "fields must be a JSON object or array, got {other}"
            )))
        }
    }
    Ok(fields)
}

fn type_of<'a>(name: &str, obj: &'a serde_json::Map<String, Value>) -> Result<&'a str, DocError> {
    obj.get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| DocError::fields(format!("field \"{name}\": missing string \"type\"")))
}

fn annotation_of<'a>(
    name: &str,
    obj: &'a serde_json::Map<String, Value>,
) -> Result<Option<&'a str>, DocError> {
    match obj.get("crdt") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(other) => Err(DocError::fields(format!(
            "field \"{name}\": \"crdt\" must be a string or null, got {other}"
        ))),
    }
}

fn push_field(
    fields: &mut Vec<Field>,
    name: &str,
    ty: &str,
    crdt: Option<&str>,
) -> Result<(), DocError> {
    if name == "id" {
        return Ok(());
    }
    if name.is_empty() {
        return Err(DocError::fields("a field name must not be empty".into()));
    }
    if fields.iter().any(|f| f.name == name) {
        return Err(DocError::fields(format!(
            "field \"{name}\" is declared twice"
        )));
    }
    let base = BaseType::parse(ty).ok_or_else(|| {
        DocError::fields(format!(
            "field \"{name}\": unknown type \"{ty}\" (expected string, datetime, id(Entity), int, float, bool or richtext)"
        ))
    })?;
    let kind = match crdt {
        None => base.default_kind(),
        Some(annotation) => base.annotated_kind(annotation).ok_or_else(|| {
            DocError::fields(format!(
                "field \"{name}\": annotation crdt=\"{annotation}\" does not fit type \"{ty}\""
            ))
        })?,
    };
    fields.push(Field {
        name: name.to_owned(),
        base,
        kind,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kinds(spec: Value) -> Vec<(String, FieldKind)> {
        parse_fields(&spec)
            .unwrap()
            .into_iter()
            .map(|f| (f.name, f.kind))
            .collect()
    }

    #[test]
    fn object_form_uses_defaults_and_annotations() {
        let got = kinds(json!({
            "title": "string", "body": "richtext", "done": "bool", "n": "float",
            "votes": {"type": "int", "crdt": "counter"}, "owner": "id(User)",
            "notes": {"type": "richtext", "crdt": "lww"}, "tags": {"type": "string", "crdt": "list"},
            "order": {"type": "string", "crdt": "movable-list"}, "outline": {"type": "string", "crdt": "tree"},
            "id": "string"
        }));
        assert_eq!(
            got,
            vec![
                ("title".into(), FieldKind::LwwString),
                ("body".into(), FieldKind::Text),
                ("done".into(), FieldKind::LwwBool),
                ("n".into(), FieldKind::LwwNumber),
                ("votes".into(), FieldKind::Counter),
                ("owner".into(), FieldKind::LwwString),
                ("notes".into(), FieldKind::LwwString),
                ("tags".into(), FieldKind::List),
                ("order".into(), FieldKind::MovableList),
                ("outline".into(), FieldKind::Tree),
            ]
        );
    }

    #[test]
    fn manifest_form_matches_object_form() {
        let manifest = json!([
            {"name": "id", "type": "string", "crdt": null},
            {"name": "title", "type": "string", "crdt": null},
            {"name": "body", "type": "string", "crdt": "text"},
            {"name": "votes", "type": "int", "crdt": "counter"}
        ]);
        assert_eq!(
            kinds(manifest),
            vec![
                ("title".into(), FieldKind::LwwString),
                ("body".into(), FieldKind::Text),
                ("votes".into(), FieldKind::Counter),
            ]
        );
    }

    #[test]
    fn misfit_annotations_are_rejected_naming_the_field() {
        for (spec, needle) in [
            (json!({"done": {"type": "bool", "crdt": "counter"}}), "done"),
            (json!({"n": {"type": "int", "crdt": "text"}}), "n"),
            (json!({"x": {"type": "string", "crdt": "bogus"}}), "x"),
            (json!({"y": "uuid"}), "y"),
            (json!({"z": 3}), "z"),
            (json!([{"name": "w"}]), "w"),
        ] {
            let err = parse_fields(&spec).unwrap_err();
            assert!(
                err.to_string().contains(needle),
                "{err} should name {needle}"
            );
        }
        assert!(parse_fields(&json!("string")).is_err());
        assert!(
            parse_fields(&json!([{"name": "a", "type": "int"}, {"name": "a", "type": "int"}]))
                .is_err()
        );
    }
}
