//! Conversions between JSON (what SQL callers send and receive) and Loro values.

use loro::LoroValue;
use serde_json::{Map, Number, Value};

/// JSON to a plain Loro value. Integers stay integers (`I64`), as the runtime stores them.
pub fn to_loro(value: &Value) -> LoroValue {
    match value {
        Value::Null => LoroValue::Null,
        Value::Bool(b) => LoroValue::Bool(*b),
        Value::Number(n) => number_to_loro(n),
        Value::String(s) => LoroValue::from(s.as_str()),
        Value::Array(items) => LoroValue::from(items.iter().map(to_loro).collect::<Vec<_>>()),
        Value::Object(map) => LoroValue::Map(
            map.iter()
                .map(|(k, v)| (k.clone(), to_loro(v)))
                .collect::<Vec<_>>()
                .into(),
        ),
    }
}

pub fn number_to_loro(n: &Number) -> LoroValue {
    match n.as_i64() {
        Some(i) => LoroValue::I64(i),
        None => LoroValue::Double(n.as_f64().unwrap_or(f64::NAN)),
    }
}

/// A Loro value as JSON. Non-finite doubles have no JSON form and project as null; binary
/// values project as arrays of byte values.
pub fn from_loro(value: &LoroValue) -> Value {
    match value {
        LoroValue::Null => Value::Null,
        LoroValue::Bool(b) => Value::Bool(*b),
        LoroValue::Double(d) => number_from_f64(*d),
        LoroValue::I64(i) => Value::from(*i),
        LoroValue::String(s) => Value::String(s.to_string()),
        LoroValue::Binary(b) => Value::Array(b.iter().map(|x| Value::from(*x)).collect()),
        LoroValue::List(items) => Value::Array(items.iter().map(from_loro).collect()),
        LoroValue::Map(map) => {
            // Sorted keys: Loro's map is unordered, and a stable projection makes equal docs
            // compare equal as text too.
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), from_loro(v)))
                    .collect::<Map<_, _>>(),
            )
        }
        LoroValue::Container(id) => Value::String(id.to_string()),
    }
}

/// An f64 as JSON, written as an integer when it is one (counters hold f64s, and `3` reads
/// better than `3.0` in an integer column).
pub fn number_from_f64(d: f64) -> Value {
    if d.is_finite() && d.fract() == 0.0 && d.abs() < 9.007_199_254_740_992e15 {
        Value::from(d as i64)
    } else {
        Number::from_f64(d)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    }
}

/// A rough serialized size of `value`, counted until it passes `limit` (then it stops early),
/// so oversized inputs are refused without serializing them.
pub fn approx_size(value: &Value, limit: usize) -> usize {
    fn walk(value: &Value, total: &mut usize, limit: usize) {
        if *total > limit {
            return;
        }
        *total += match value {
            Value::String(s) => s.len() + 2,
            Value::Array(items) => {
                for item in items {
                    walk(item, total, limit);
                }
                items.len() + 2
            }
            Value::Object(map) => {
                for (k, v) in map {
                    *total += k.len() + 3;
                    walk(v, total, limit);
                }
                2
            }
            _ => 8,
        };
    }
    let mut total = 0;
    walk(value, &mut total, limit);
    total
}
