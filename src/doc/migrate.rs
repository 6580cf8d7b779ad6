//! Schema changes of an entity's fields (`pylon_crdt_alter`, issue 16): adding, dropping,
//! renaming a field and changing its kind, applied to a doc as one forward change that peers
//! merge like any other (history is kept).
//!
//! A change is planned once from the old and the new fields (refusing unsound conversions
//! before any doc is touched), then applied to every doc:
//! - a **renamed** field's value is read under its old name, written under the new one (a new
//!   container for container kinds: a tree gets new node ids) and the old key is deleted;
//! - a field whose **kind** changes is read as it projects and written back in the new kind
//!   (string <-> text, number <-> counter, list <-> movable-list);
//! - a **dropped** field's key is deleted;
//! - an **added** field keeps what the doc already holds under its name (a peer on the new
//!   schema may have written it), else takes the row's column value, if any.
//!
//! A key the doc already holds in the new field's shape is kept as is, so re-running a change,
//! or a peer that migrated first, does not write it twice.

use loro::{LoroDoc, ValueOrContainer};
use serde_json::{Map, Value};

use super::fields::{BaseType, Field, FieldKind};
use super::{apply_patch, root, rowpatch, DocError};

/// What one doc needs, planned from the old and the new fields.
#[derive(Clone, Debug, PartialEq)]
pub struct Migration {
    steps: Vec<Step>,
}

#[derive(Clone, Debug, PartialEq)]
enum Step {
    /// The value under `from` (the old name) becomes `to`'s value in `to`'s kind.
    Convert { from: String, to: Field },
    /// A field no longer declared: its key goes.
    Drop(String),
    /// A new field: the doc's value under its name if any, else the row's.
    Add(Field),
}

/// Plans the change from `old` to `new` fields. `renames` maps old names to new ones; every
/// other field is matched by name. Refuses (`DocError::Unsupported`) a conversion that could
/// lose or invent values, and (`DocError::Fields`) a rename that does not name an old field
/// and a new one.
pub fn plan(
    old: &[Field],
    new: &[Field],
    renames: &[(String, String)],
) -> Result<Migration, DocError> {
    for (from, to) in renames {
        if !old.iter().any(|f| f.name == *from) {
            return Err(DocError::fields(format!(
                "cannot rename field \"{from}\": it is not a field of the current spec"
            )));
        }
        if !new.iter().any(|f| f.name == *to) {
            return Err(DocError::fields(format!(
                "cannot rename field \"{from}\" to \"{to}\": \"{to}\" is not in the new fields"
            )));
        }
        if new.iter().any(|f| f.name == *from) {
            return Err(DocError::fields(format!(
                "cannot rename field \"{from}\": it is also in the new fields (rename it, or keep it, not both)"
            )));
        }
        if old.iter().any(|f| f.name == *to) {
            return Err(DocError::fields(format!(
                "cannot rename field \"{from}\" to \"{to}\": \"{to}\" is already a field (drop it first)"
            )));
        }
        if renames.iter().filter(|(_, t)| t == to).count() > 1 {
            return Err(DocError::fields(format!(
                "more than one field is renamed to \"{to}\""
            )));
        }
    }
    let mut steps = Vec::new();
    for field in old {
        let renamed = renames.iter().find(|(from, _)| *from == field.name);
        let target = match renamed {
            Some((_, to)) => new.iter().find(|f| f.name == *to),
            None => new.iter().find(|f| f.name == field.name),
        };
        let Some(target) = target else {
            steps.push(Step::Drop(field.name.clone()));
            continue;
        };
        check_conversion(field, target)?;
        if renamed.is_some() || target.kind != field.kind {
            steps.push(Step::Convert {
                from: field.name.clone(),
                to: target.clone(),
            });
        }
    }
    for field in new {
        let known = old.iter().any(|f| f.name == field.name)
            || renames.iter().any(|(_, to)| *to == field.name);
        if !known {
            steps.push(Step::Add(field.clone()));
        }
    }
    Ok(Migration { steps })
}

/// Whether every value of `from` has a faithful value in `to`.
fn check_conversion(from: &Field, to: &Field) -> Result<(), DocError> {
    use FieldKind::*;
    let kinds_convert = matches!(
        (from.kind, to.kind),
        (LwwString | Text, LwwString | Text)
            | (LwwNumber | Counter, LwwNumber | Counter)
            | (List | MovableList, List | MovableList)
            | (LwwBool, LwwBool)
            | (Tree, Tree)
    );
    let name = if from.name == to.name {
        format!("\"{}\"", from.name)
    } else {
        format!("\"{}\" (renamed \"{}\")", from.name, to.name)
    };
    if !kinds_convert {
        return Err(DocError::Unsupported(format!(
            "cannot convert field {name} from {} to {}: only string <-> text, number <-> counter and list <-> movable-list convert; drop the field and add a new one instead",
            from.kind.name(),
            to.kind.name()
        )));
    }
    let numeric = matches!(from.kind, LwwNumber | Counter);
    if numeric && from.base == BaseType::Float && to.base == BaseType::Int {
        return Err(DocError::Unsupported(format!(
            "cannot convert field {name} from float to int: its values may have fractions"
        )));
    }
    Ok(())
}

impl Migration {
    /// Whether no doc needs anything.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Applies the change to a doc and commits it as one change. `row` is the entity row's
    /// values (after its columns were renamed): an added field takes its column's value when
    /// the doc has none.
    pub fn apply(&self, doc: &LoroDoc, row: Option<&Map<String, Value>>) -> Result<(), DocError> {
        let map = root(doc);
        // Every source is read before any key changes, so no step sees another's output.
        let mut sources = Vec::with_capacity(self.steps.len());
        for step in &self.steps {
            sources.push(match step {
                Step::Convert { from, .. } => map.get(from).map(|v| value_of(&v)).transpose()?,
                _ => None,
            });
        }
        for (step, source) in self.steps.iter().zip(sources) {
            match step {
                Step::Drop(name) => delete(&map, name)?,
                Step::Convert { from, to } => {
                    if *from != to.name {
                        delete(&map, from)?;
                    }
                    let current = map.get(&to.name);
                    if current.as_ref().is_some_and(|v| holds(v, to.kind)) {
                        continue; // already in the new shape (migrated before, or by a peer)
                    }
                    let source = if *from == to.name {
                        source
                    } else {
                        // A value a peer already wrote under the new name wins over the old one.
                        match current {
                            Some(v) => Some(value_of(&v)?),
                            None => source,
                        }
                    };
                    delete(&map, &to.name)?;
                    if let Some(value) = source.filter(|v| !v.is_null()) {
                        write(doc, to, value)?;
                    }
                }
                Step::Add(field) => match map.get(&field.name) {
                    Some(v) if holds(&v, field.kind) => {}
                    Some(v) => {
                        let value = value_of(&v)?;
                        delete(&map, &field.name)?;
                        write(doc, field, value)?;
                    }
                    None => {
                        if let Some(value) = row.and_then(|r| r.get(&field.name)) {
                            write(doc, field, value.clone())?;
                        }
                    }
                },
            }
        }
        doc.commit();
        Ok(())
    }
}

fn delete(map: &loro::LoroMap, key: &str) -> Result<(), DocError> {
    if map.get(key).is_some() {
        map.delete(key)
            .map_err(|e| DocError::patch(key, e.to_string()))?;
    }
    Ok(())
}

/// Writes a projected value as `field`'s value (a tree's projection rebuilds the tree).
fn write(doc: &LoroDoc, field: &Field, value: Value) -> Result<(), DocError> {
    let mut row = Map::new();
    row.insert(field.name.clone(), value);
    let patch = rowpatch::from_row(std::slice::from_ref(field), &row, true);
    apply_patch(doc, std::slice::from_ref(field), &patch).map_err(|e| match e {
        DocError::Patch { field, message } => DocError::Patch {
            field,
            message: format!("cannot convert the stored value: {message}"),
        },
        other => other,
    })
}

/// A key's value as it projects, whatever its shape.
fn value_of(value: &ValueOrContainer) -> Result<Value, DocError> {
    super::project::value_of(value).map_err(DocError::Limit)
}

/// Whether a key's value already has the shape of `kind`.
pub fn holds(value: &ValueOrContainer, kind: FieldKind) -> bool {
    use loro::Container;
    match (value, kind) {
        (
            ValueOrContainer::Value(_),
            FieldKind::LwwString | FieldKind::LwwNumber | FieldKind::LwwBool,
        ) => true,
        (ValueOrContainer::Container(c), _) => matches!(
            (c, kind),
            (Container::Text(_), FieldKind::Text)
                | (Container::Counter(_), FieldKind::Counter)
                | (Container::List(_), FieldKind::List)
                | (Container::MovableList(_), FieldKind::MovableList)
                | (Container::Tree(_), FieldKind::Tree)
        ),
        _ => false,
    }
}
