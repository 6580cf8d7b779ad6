//! Generators of hostile inputs: real Loro exports (in every export mode, from docs shaped
//! like the fuzz fields and docs whose kinds do not match them), mutations of them (with the
//! checksum recomputed half the time so they reach the decoders), random bytes, random JSON
//! patches and random or mutated fields specs.

use loro::{
    ExportMode, Frontiers, LoroCounter, LoroDoc, LoroList, LoroMap, LoroMovableList, LoroText,
    LoroTree, VersionVector,
};
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Map, Value};

use crate::field_names;

/// Fields of the fuzz entities: one of every kind.
pub fn fuzz_fields() -> Value {
    json!({
        "title": "string",
        "body": "richtext",
        "votes": {"type": "int", "crdt": "counter"},
        "score": "float",
        "done": "bool",
        "at": "datetime",
        "tags": {"type": "string", "crdt": "list"},
        "steps": {"type": "string", "crdt": "movable-list"},
        "outline": {"type": "string", "crdt": "tree"}
    })
}

/// Real Loro exports and version vectors: made here with loro, in every export mode, from
/// docs whose `row` map matches the fuzz fields and docs whose kinds do not.
pub struct Corpus {
    pub blobs: Vec<Vec<u8>>,
    pub versions: Vec<Vec<u8>>,
}

pub fn populate(doc: &LoroDoc, rng: &mut StdRng, mismatched: bool) {
    let row = doc.get_map("row");
    if mismatched {
        // Same names, other kinds: a counter where a string is expected, and so on.
        let c = row.insert_container("title", LoroCounter::new()).unwrap();
        c.increment(3.0).unwrap();
        let t = row.insert_container("votes", LoroText::new()).unwrap();
        t.insert(0, "not a number").unwrap();
        let m = row.insert_container("outline", LoroMap::new()).unwrap();
        m.insert("k", 1).unwrap();
        let l = row.insert_container("body", LoroList::new()).unwrap();
        l.push("x").unwrap();
        row.insert("tags", "a string").unwrap();
        row.insert("done", 42).unwrap();
        row.insert("steps", true).unwrap();
        doc.get_text("elsewhere").insert(0, "outside row").unwrap();
        doc.commit();
        return;
    }
    row.insert("title", "hello").unwrap();
    row.insert("score", 1.5).unwrap();
    row.insert("done", true).unwrap();
    row.insert("at", "2024-01-01T00:00:00Z").unwrap();
    let text = row.insert_container("body", LoroText::new()).unwrap();
    text.insert(0, "Hello, world! ünïcödé 🎉").unwrap();
    let votes = row.insert_container("votes", LoroCounter::new()).unwrap();
    votes.increment(5.0).unwrap();
    let tags = row.insert_container("tags", LoroList::new()).unwrap();
    for i in 0..5 {
        tags.push(format!("tag{i}")).unwrap();
    }
    let steps = row
        .insert_container("steps", LoroMovableList::new())
        .unwrap();
    for i in 0..5 {
        steps.push(format!("step{i}")).unwrap();
    }
    steps.mov(0, 3).unwrap();
    steps.set(1, "changed").unwrap();
    let tree = row.insert_container("outline", LoroTree::new()).unwrap();
    tree.enable_fractional_index(0);
    let root = tree.create(None).unwrap();
    let child = tree.create(root).unwrap();
    let _grandchild = tree.create(child).unwrap();
    tree.get_meta(root)
        .unwrap()
        .insert("title", "Chapter")
        .unwrap();
    doc.commit();
    for round in 0..rng.gen_range(2..6) {
        text.insert(rng.gen_range(0..=text.len_unicode()), &format!("r{round}"))
            .unwrap();
        if text.len_unicode() > 3 {
            text.delete(1, 2).unwrap();
        }
        votes.increment(rng.gen_range(-3.0..3.0)).unwrap();
        tags.insert(0, round as i64).unwrap();
        let n = tree.create(root).unwrap();
        if round % 2 == 0 {
            tree.delete(n).unwrap();
        }
        doc.commit();
    }
}

/// Real exports made here with loro.
pub fn client_corpus(rng: &mut StdRng) -> Corpus {
    let mut blobs = Vec::new();
    let mut versions = Vec::new();
    for d in 0..6 {
        let doc = LoroDoc::new();
        doc.set_peer_id(100 + d).unwrap();
        let empty = doc.oplog_vv();
        populate(&doc, rng, d == 5);
        let mid_vv: VersionVector = doc.oplog_vv();
        let mid_frontiers: Frontiers = doc.oplog_frontiers();
        // A second peer edits concurrently and merges.
        let other = LoroDoc::new();
        other.set_peer_id(200 + d).unwrap();
        other
            .import(&doc.export(ExportMode::Snapshot).unwrap())
            .unwrap();
        if d != 5 {
            populate(&other, rng, false);
        }
        doc.import(&other.export(ExportMode::updates(&mid_vv)).unwrap())
            .unwrap();
        let end_frontiers = doc.oplog_frontiers();
        let modes = [
            ExportMode::Snapshot,
            ExportMode::all_updates(),
            ExportMode::updates(&empty),
            ExportMode::updates(&mid_vv),
            ExportMode::shallow_snapshot(&mid_frontiers),
            ExportMode::shallow_snapshot(&end_frontiers),
            ExportMode::StateOnly(None),
            ExportMode::SnapshotAt {
                version: std::borrow::Cow::Borrowed(&mid_frontiers),
            },
        ];
        for m in modes {
            if let Ok(b) = doc.export(m) {
                blobs.push(b);
            }
        }
        versions.push(empty.encode());
        versions.push(mid_vv.encode());
        versions.push(doc.oplog_vv().encode());
        versions.push(other.oplog_vv().encode());
    }
    Corpus { blobs, versions }
}

// ---------------------------------------------------------------- generators

pub fn fix_checksum(b: &mut [u8]) {
    if b.len() >= 22 && &b[..4] == b"loro" {
        let sum = xxhash_rust::xxh32::xxh32(&b[20..], u32::from_le_bytes(*b"LORO"));
        b[16..20].copy_from_slice(&sum.to_le_bytes());
    }
}

pub fn random_bytes(rng: &mut StdRng, max: usize) -> Vec<u8> {
    let n = rng.gen_range(0..=max);
    (0..n).map(|_| rng.gen()).collect()
}

pub fn mutate(rng: &mut StdRng, corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut b = corpus[rng.gen_range(0..corpus.len())].clone();
    for _ in 0..rng.gen_range(1..=4) {
        if b.is_empty() {
            b = random_bytes(rng, 32);
            continue;
        }
        let i = rng.gen_range(0..b.len());
        match rng.gen_range(0..9) {
            0 => b[i] ^= 1 << rng.gen_range(0..8),
            1 => b[i] = rng.gen(),
            2 => b[i] = [0u8, 0xff, 0x7f, 0x80, 1][rng.gen_range(0..5)],
            3 => b.truncate(i),
            4 => {
                let extra = random_bytes(rng, 16);
                b.splice(i..i, extra);
            }
            5 => {
                let j = rng.gen_range(i..=b.len().min(i + 32));
                b.drain(i..j);
            }
            6 => {
                let j = rng.gen_range(i..=b.len().min(i + 32));
                let chunk = b[i..j].to_vec();
                b.splice(j..j, chunk);
            }
            7 => {
                // Splice: our prefix, another export's suffix.
                let other = &corpus[rng.gen_range(0..corpus.len())];
                let j = rng.gen_range(0..=other.len());
                b.truncate(i);
                b.extend_from_slice(&other[j..]);
            }
            _ => {
                // A multi-byte varint-looking value: huge lengths and counts.
                let v = [0xffu8, 0xff, 0xff, 0xff, 0x0f];
                let end = (i + 5).min(b.len());
                b[i..end].copy_from_slice(&v[..end - i]);
            }
        }
    }
    if rng.gen_bool(0.5) {
        fix_checksum(&mut b);
    }
    b
}

pub fn hostile_bytes(rng: &mut StdRng, corpus: &[Vec<u8>]) -> Vec<u8> {
    match rng.gen_range(0..10) {
        0 => random_bytes(rng, 200),
        1 => {
            let mut b = b"loro".to_vec();
            b.extend(random_bytes(rng, 200));
            if rng.gen_bool(0.5) {
                fix_checksum(&mut b);
            }
            b
        }
        2 => corpus[rng.gen_range(0..corpus.len())].clone(),
        _ => mutate(rng, corpus),
    }
}

pub const WORDS: &[&str] = &[
    "increment",
    "push",
    "insert",
    "delete",
    "move",
    "set",
    "ops",
    "create",
    "parent",
    "index",
    "node",
    "data",
    "key",
    "value",
    "type",
    "crdt",
    "name",
    "title",
    "body",
    "votes",
    "tags",
    "steps",
    "outline",
    "id",
    "",
    "__proto__",
    "row",
    "ünï",
    "🎉",
];

pub fn random_string(rng: &mut StdRng) -> String {
    match rng.gen_range(0..7) {
        0 => String::new(),
        1 => WORDS[rng.gen_range(0..WORDS.len())].to_string(),
        2 => format!("{}@{}", rng.gen_range(-2i64..20), rng.gen::<u64>()),
        3 => "x".repeat(rng.gen_range(0..3000)),
        4 => (0..rng.gen_range(0..20))
            .map(|_| char::from_u32(rng.gen_range(0..0x2FFFF)).unwrap_or('\u{FFFD}'))
            .filter(|c| *c != '\0')
            .collect(),
        5 => "2024-02-30T25:61:00Z".into(),
        _ => format!("line\nwith \"quotes\" and 'single' ; {}", rng.gen::<u32>()),
    }
}

pub fn random_number(rng: &mut StdRng) -> Value {
    match rng.gen_range(0..10) {
        0 => json!(i64::MAX),
        1 => json!(i64::MIN),
        2 => json!(u64::MAX),
        3 => json!(1e308),
        4 => json!(-1e308),
        5 => json!(rng.gen_range(-5i64..50)),
        6 => json!(rng.gen::<f64>() * 1e6),
        7 => json!(9007199254740993u64),
        8 => json!(-0.0),
        _ => json!(rng.gen_range(-1_000_000_000i64..1_000_000_000)),
    }
}

pub fn random_json(rng: &mut StdRng, depth: u32, tree_ids: &[String]) -> Value {
    let top = if depth == 0 { 4 } else { 7 };
    match rng.gen_range(0..top) {
        0 => Value::Null,
        1 => Value::Bool(rng.gen()),
        2 => random_number(rng),
        3 => {
            if !tree_ids.is_empty() && rng.gen_bool(0.3) {
                json!(tree_ids[rng.gen_range(0..tree_ids.len())])
            } else {
                json!(random_string(rng))
            }
        }
        4 => Value::Array(
            (0..rng.gen_range(0..5))
                .map(|_| random_json(rng, depth - 1, tree_ids))
                .collect(),
        ),
        5 => {
            let mut m = Map::new();
            for _ in 0..rng.gen_range(0..4) {
                m.insert(
                    WORDS[rng.gen_range(0..WORDS.len())].to_string(),
                    random_json(rng, depth - 1, tree_ids),
                );
            }
            Value::Object(m)
        }
        _ => random_op(rng, depth - 1, tree_ids),
    }
}

pub fn small_index(rng: &mut StdRng) -> Value {
    match rng.gen_range(0..6) {
        0 => json!(-1),
        1 => json!(u32::MAX),
        2 => random_number(rng),
        _ => json!(rng.gen_range(0..8)),
    }
}

pub fn tree_id(rng: &mut StdRng, tree_ids: &[String]) -> Value {
    if !tree_ids.is_empty() && rng.gen_bool(0.7) {
        json!(tree_ids[rng.gen_range(0..tree_ids.len())])
    } else if rng.gen_bool(0.3) {
        Value::Null
    } else {
        json!(random_string(rng))
    }
}

/// An op-shaped value for some field kind, with random arguments.
pub fn random_op(rng: &mut StdRng, depth: u32, tree_ids: &[String]) -> Value {
    let v = |rng: &mut StdRng| random_json(rng, depth.saturating_sub(1), tree_ids);
    match rng.gen_range(0..12) {
        0 => json!({"increment": random_number(rng)}),
        1 => json!({"push": v(rng)}),
        2 => json!({"insert": [small_index(rng), v(rng)]}),
        3 => json!({"delete": [small_index(rng), small_index(rng)]}),
        4 => json!({"move": [small_index(rng), small_index(rng)]}),
        5 => json!({"set": [small_index(rng), v(rng)]}),
        6 => {
            let ops: Vec<Value> = (0..rng.gen_range(0..4))
                .map(|_| random_op(rng, depth.saturating_sub(1), tree_ids))
                .collect();
            json!({ "ops": ops })
        }
        7 => {
            let mut create = Map::new();
            create.insert("parent".into(), tree_id(rng, tree_ids));
            if rng.gen_bool(0.5) {
                create.insert("index".into(), small_index(rng));
            }
            if rng.gen_bool(0.7) {
                create.insert("data".into(), v(rng));
            }
            json!({ "create": create })
        }
        8 => {
            json!({"move": {"node": tree_id(rng, tree_ids), "parent": tree_id(rng, tree_ids), "index": small_index(rng)}})
        }
        9 => json!({"delete": tree_id(rng, tree_ids)}),
        10 => {
            json!({"set": {"node": tree_id(rng, tree_ids), "key": random_string(rng), "value": v(rng)}})
        }
        _ => {
            let ops: Vec<Value> = (0..rng.gen_range(1..5))
                .map(|_| random_op(rng, depth.saturating_sub(1), tree_ids))
                .collect();
            Value::Array(ops)
        }
    }
}

pub fn random_patch(rng: &mut StdRng, tree_ids: &[String]) -> Value {
    if rng.gen_range(0..20) == 0 {
        return random_json(rng, 2, tree_ids); // often not an object at all
    }
    let names = field_names(&fuzz_fields());
    let mut m = Map::new();
    for _ in 0..rng.gen_range(0..4) {
        let name = if rng.gen_range(0..12) == 0 {
            random_string(rng)
        } else {
            names[rng.gen_range(0..names.len())].clone()
        };
        let value = if rng.gen_bool(0.5) {
            random_op(rng, 2, tree_ids)
        } else {
            random_json(rng, 2, tree_ids)
        };
        m.insert(name, value);
    }
    Value::Object(m)
}

pub const TYPES: &[&str] = &[
    "string", "int", "float", "bool", "richtext", "datetime", "id(Note)", "id(", "id()", "",
    "STRING", "text", "json",
];
pub const CRDTS: &[&str] = &[
    "lww",
    "text",
    "counter",
    "list",
    "movable-list",
    "tree",
    "",
    "map",
    "Counter",
];

pub fn random_fields(rng: &mut StdRng) -> Value {
    let base = fuzz_fields();
    match rng.gen_range(0..10) {
        0..=4 => base,
        5 => {
            // Mutate one field of the valid spec.
            let mut m = base.as_object().unwrap().clone();
            let keys: Vec<String> = m.keys().cloned().collect();
            let k = &keys[rng.gen_range(0..keys.len())];
            let v = match rng.gen_range(0..5) {
                0 => json!(TYPES[rng.gen_range(0..TYPES.len())]),
                1 => {
                    json!({"type": TYPES[rng.gen_range(0..TYPES.len())], "crdt": CRDTS[rng.gen_range(0..CRDTS.len())]})
                }
                2 => json!({"crdt": CRDTS[rng.gen_range(0..CRDTS.len())]}),
                3 => random_json(rng, 2, &[]),
                _ => json!({"type": "string", "crdt": null, "extra": 1}),
            };
            m.insert(k.clone(), v);
            Value::Object(m)
        }
        6 => {
            // Manifest form, maybe broken.
            let arr: Vec<Value> = (0..rng.gen_range(0..5))
                .map(|_| match rng.gen_range(0..4) {
                    0 => json!({"name": WORDS[rng.gen_range(0..WORDS.len())], "type": TYPES[rng.gen_range(0..TYPES.len())], "crdt": CRDTS[rng.gen_range(0..CRDTS.len())]}),
                    1 => json!({"name": "votes", "type": "int", "crdt": "counter"}),
                    2 => json!({"type": "string"}),
                    _ => random_json(rng, 1, &[]),
                })
                .collect();
            Value::Array(arr)
        }
        _ => random_json(rng, 3, &[]),
    }
}
