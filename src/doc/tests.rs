//! Unit and property tests of the pure core: no Postgres, just Loro docs.

use loro::{ContainerTrait, ExportMode, LoroDoc, ValueOrContainer, VersionVector};
use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;

fn fields() -> Vec<Field> {
    parse_fields(&json!({
        "title": "string", "done": "bool", "n": "int", "x": "float", "body": "richtext",
        "votes": {"type": "int", "crdt": "counter"},
        "tags": {"type": "string", "crdt": "list"},
        "order": {"type": "string", "crdt": "movable-list"},
        "outline": {"type": "string", "crdt": "tree"}
    }))
    .unwrap()
}

fn patched(doc: &LoroDoc, patch: Value) -> Value {
    apply_patch(doc, &fields(), &patch).unwrap();
    project(doc, &fields()).unwrap()
}

/// A peer that starts from `base`'s current state, editing under its own fresh peer id.
fn fork(base: &LoroDoc) -> LoroDoc {
    load(Some(&snapshot(base))).unwrap()
}

/// Both peers receive what they lack from the other.
fn exchange(a: &LoroDoc, b: &LoroDoc) {
    let a_to_b = a.export(ExportMode::updates(&b.oplog_vv())).unwrap();
    let b_to_a = b.export(ExportMode::updates(&a.oplog_vv())).unwrap();
    import(b, &a_to_b).unwrap();
    import(a, &b_to_a).unwrap();
}

#[test]
fn lww_fields_set_and_clear() {
    let doc = load(None).unwrap();
    let got = patched(&doc, json!({"title": "t", "done": true, "n": 3, "x": 1.5}));
    assert_eq!(got["title"], json!("t"));
    assert_eq!(got["done"], json!(true));
    assert_eq!(got["n"], json!(3));
    assert_eq!(got["x"], json!(1.5));
    assert_eq!(patched(&doc, json!({"title": null}))["title"], Value::Null);
}

#[test]
fn unchanged_values_record_no_ops() {
    let doc = load(None).unwrap();
    patched(
        &doc,
        json!({"title": "t", "body": "b", "votes": 2, "tags": ["a"]}),
    );
    let before = doc.oplog_vv();
    patched(
        &doc,
        json!({"title": "t", "body": "b", "votes": 2, "tags": ["a"]}),
    );
    assert_eq!(doc.oplog_vv(), before);
}

#[test]
fn shapes_are_checked_before_anything_changes() {
    let doc = load(None).unwrap();
    for bad in [
        json!({"title": 1}),
        json!({"done": "yes"}),
        json!({"n": 1.5}),
        json!({"x": "1"}),
        json!({"body": ["a"]}),
        json!({"votes": {"add": 1}}),
        json!({"votes": {"increment": "1"}}),
        json!({"tags": "a"}),
        json!({"tags": {"move": [0, 1]}}),
        json!({"order": {"swap": [0, 1]}}),
        json!({"outline": {"create": {"parent": "nope"}}}),
        json!({"outline": 3}),
        json!({"zzz": 1}),
        json!("not an object"),
    ] {
        // A good field goes alongside the bad one: it must not be written either.
        let mut patch = json!({"title": "ok"});
        match (patch.as_object_mut(), bad.as_object()) {
            (Some(p), Some(b)) => p.extend(b.clone()),
            _ => patch = bad.clone(),
        }
        assert!(
            apply_patch(&doc, &fields(), &patch).is_err(),
            "{bad} should be refused"
        );
        assert!(doc.oplog_vv().is_empty(), "{bad} changed the doc");
    }
}

#[test]
fn counter_sets_by_delta_and_increments() {
    let doc = load(None).unwrap();
    assert_eq!(patched(&doc, json!({"votes": 5}))["votes"], json!(5));
    assert_eq!(
        patched(&doc, json!({"votes": {"increment": 2}}))["votes"],
        json!(7)
    );
    assert_eq!(patched(&doc, json!({"votes": 1}))["votes"], json!(1));
    let peer = fork(&doc);
    patched(&doc, json!({"votes": {"increment": 10}}));
    apply_patch(&peer, &fields(), &json!({"votes": {"increment": 100}})).unwrap();
    exchange(&doc, &peer);
    assert_eq!(project(&doc, &fields()).unwrap()["votes"], json!(111));
}

#[test]
fn text_merges_concurrent_edits_to_different_parts() {
    let doc = load(None).unwrap();
    patched(&doc, json!({"body": "The quick brown fox"}));
    let peer = fork(&doc);
    patched(&doc, json!({"body": "A quick brown fox"}));
    apply_patch(
        &peer,
        &fields(),
        &json!({"body": "The quick brown fox jumps"}),
    )
    .unwrap();
    exchange(&doc, &peer);
    assert_eq!(
        project(&doc, &fields()).unwrap()["body"],
        json!("A quick brown fox jumps")
    );
    assert_eq!(
        project(&peer, &fields()).unwrap(),
        project(&doc, &fields()).unwrap()
    );
}

#[test]
fn one_text_patch_changing_two_places_keeps_a_concurrent_delete_between_them() {
    // Only the changed characters are replaced: the unchanged middle is not deleted and
    // re-inserted, so a peer's concurrent delete inside it still applies.
    let doc = load(None).unwrap();
    patched(&doc, json!({"body": "aaaa middle bbbb"}));
    let peer = fork(&doc);
    patched(&doc, json!({"body": "Xaaa middle bbbY"}));
    apply_patch(&peer, &fields(), &json!({"body": "aaaa mile bbbb"})).unwrap();
    exchange(&doc, &peer);
    assert_eq!(
        project(&doc, &fields()).unwrap()["body"],
        json!("Xaaa mile bbbY")
    );
}

#[test]
fn text_patches_count_positions_in_characters() {
    let doc = load(None).unwrap();
    for body in [
        "héllo wörld",
        "héllo 😀 wörld",
        "he\u{301}llo 😀😀 wörld",
        "😀",
        "",
        "日本語のテキスト",
        "日本語 テキスト 😀",
    ] {
        assert_eq!(patched(&doc, json!({ "body": body }))["body"], json!(body));
    }
}

#[test]
fn list_arrays_diff_and_ops_apply() {
    let doc = load(None).unwrap();
    assert_eq!(
        patched(&doc, json!({"tags": ["a", "b", "c"]}))["tags"],
        json!(["a", "b", "c"])
    );
    let peer = fork(&doc);
    // Minimal diff: replacing the whole array does not clobber a concurrent insert.
    assert_eq!(
        patched(&doc, json!({"tags": ["a", "c", "d"]}))["tags"],
        json!(["a", "c", "d"])
    );
    apply_patch(&peer, &fields(), &json!({"tags": {"insert": [0, "z"]}})).unwrap();
    exchange(&doc, &peer);
    assert_eq!(
        project(&doc, &fields()).unwrap()["tags"],
        json!(["z", "a", "c", "d"])
    );
    assert_eq!(
        patched(&doc, json!({"tags": {"push": {"k": 1}}}))["tags"],
        json!(["z", "a", "c", "d", {"k": 1}])
    );
    assert_eq!(
        patched(&doc, json!({"tags": {"delete": [1, 2]}}))["tags"],
        json!(["z", "d", {"k": 1}])
    );
    assert_eq!(
        patched(
            &doc,
            json!({"tags": {"ops": [{"push": 1}, {"insert": [0, 0]}]}})
        )["tags"],
        json!([0, "z", "d", {"k": 1}, 1])
    );
    let err = apply_patch(&doc, &fields(), &json!({"tags": {"delete": [3, 9]}})).unwrap_err();
    assert!(err.to_string().contains("out of range"), "{err}");
}

#[test]
fn movable_list_moves_and_sets() {
    let doc = load(None).unwrap();
    patched(&doc, json!({"order": ["a", "b", "c"]}));
    assert_eq!(
        patched(&doc, json!({"order": {"move": [0, 2]}}))["order"],
        json!(["b", "c", "a"])
    );
    assert_eq!(
        patched(&doc, json!({"order": {"set": [1, "C"]}}))["order"],
        json!(["b", "C", "a"])
    );
    // A concurrent move and set of the same element both survive.
    let peer = fork(&doc);
    patched(&doc, json!({"order": {"move": [2, 0]}}));
    apply_patch(&peer, &fields(), &json!({"order": {"set": [2, "A"]}})).unwrap();
    exchange(&doc, &peer);
    assert_eq!(
        project(&doc, &fields()).unwrap()["order"],
        json!(["A", "b", "C"])
    );
}

#[test]
fn tree_ops_project_nested_in_sibling_order() {
    let doc = load(None).unwrap();
    let got = patched(
        &doc,
        json!({"outline": [
            {"create": {"parent": null, "data": {"title": "root"}}},
        ]}),
    );
    let root_id = got["outline"][0]["id"].as_str().unwrap().to_owned();
    let got = patched(
        &doc,
        json!({"outline": [
            {"create": {"parent": root_id, "data": {"title": "second"}}},
            {"create": {"parent": root_id, "index": 0, "data": {"title": "first"}}},
        ]}),
    );
    let children = &got["outline"][0]["children"];
    assert_eq!(children[0]["data"], json!({"title": "first"}));
    assert_eq!(children[1]["data"], json!({"title": "second"}));
    let second = children[1]["id"].as_str().unwrap().to_owned();
    let first = children[0]["id"].as_str().unwrap().to_owned();
    let got = patched(
        &doc,
        json!({"outline": [
            {"move": {"node": second, "parent": null}},
            {"set": {"node": first, "key": "done", "value": true}},
        ]}),
    );
    assert_eq!(got["outline"].as_array().unwrap().len(), 2);
    assert_eq!(
        got["outline"][0]["children"][0]["data"],
        json!({"title": "first", "done": true})
    );
    let got = patched(&doc, json!({"outline": {"delete": root_id}}));
    assert_eq!(
        got["outline"],
        json!([{"id": second, "data": {"title": "second"}, "children": []}])
    );
    let err = apply_patch(&doc, &fields(), &json!({"outline": {"delete": root_id}})).unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
}

#[test]
fn malformed_bytes_and_pending_updates_are_errors() {
    assert!(matches!(
        load(Some(b"\xde\xad\xbe\xef")),
        Err(DocError::Bytes(_))
    ));
    assert!(matches!(
        decode_version(b"\x01\x02"),
        Err(DocError::Bytes(_))
    ));
    let doc = load(None).unwrap();
    patched(&doc, json!({"title": "a"}));
    let v1 = doc.oplog_vv();
    patched(&doc, json!({"title": "b"}));
    // An update that needs history the receiver lacks is refused, not left pending.
    let update = doc.export(ExportMode::updates(&v1)).unwrap();
    assert!(matches!(
        import(&LoroDoc::new(), &update),
        Err(DocError::Pending(_))
    ));
}

#[test]
fn fresh_peers_never_repeat() {
    let base = load(None).unwrap();
    let peers: std::collections::HashSet<u64> = (0..100).map(|_| fork(&base).peer_id()).collect();
    assert_eq!(peers.len(), 100);
}

// ---- property tests: peers from a common base converge ----

fn text_strategy(alphabet: &'static str) -> impl Strategy<Value = String> {
    proptest::collection::vec(
        proptest::sample::select(alphabet.chars().collect::<Vec<_>>()),
        0..24,
    )
    .prop_map(|cs| cs.into_iter().collect())
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0i64..5).prop_map(Value::from),
        proptest::sample::select(vec!["a", "b", "c"]).prop_map(Value::from),
    ]
}

/// A random patch touching one field of any kind (some ops may be out of range: those fail
/// and leave the peer as it was, which must not break convergence).
fn any_patch() -> impl Strategy<Value = Value> {
    prop_oneof![
        text_strategy("ab").prop_map(|s| json!({"title": s})),
        any::<bool>().prop_map(|b| json!({"done": b})),
        text_strategy("abc ").prop_map(|s| json!({"body": s})),
        (-5i64..5).prop_map(|n| json!({"votes": {"increment": n}})),
        (-5i64..20).prop_map(|n| json!({"votes": n})),
        proptest::collection::vec(scalar(), 0..6).prop_map(|v| json!({"tags": v})),
        scalar().prop_map(|v| json!({"tags": {"push": v}})),
        (0usize..4, 0usize..3).prop_map(|(i, n)| json!({"tags": {"delete": [i, n]}})),
        proptest::collection::vec(scalar(), 0..6).prop_map(|v| json!({"order": v})),
        (0usize..4, 0usize..4).prop_map(|(a, b)| json!({"order": {"move": [a, b]}})),
        (0usize..4, scalar()).prop_map(|(i, v)| json!({"order": {"set": [i, v]}})),
        (0usize..8, 0usize..8, 0usize..3)
            .prop_map(|(node, parent, op)| json!({"outline": {"abstract": [node, parent, op]}})),
    ]
}

/// Tree ops need ids that exist in the peer; `abstract` ones are resolved against it here.
fn resolve_tree_op(doc: &LoroDoc, patch: Value) -> Value {
    let Some(args) = patch
        .pointer("/outline/abstract")
        .and_then(Value::as_array)
        .cloned()
    else {
        return patch;
    };
    let pick = |k: &Value| {
        let nodes: Vec<String> = match root(doc).get("outline") {
            Some(loro::ValueOrContainer::Container(loro::Container::Tree(t))) => t
                .nodes()
                .into_iter()
                .filter(|n| !t.is_node_deleted(n).unwrap_or(true))
                .map(|n| n.to_string())
                .collect(),
            _ => vec![],
        };
        let k = k.as_u64().unwrap() as usize;
        if nodes.is_empty() || k >= nodes.len() {
            Value::Null
        } else {
            Value::from(nodes[k].clone())
        }
    };
    let (node, parent) = (pick(&args[0]), pick(&args[1]));
    json!({"outline": match (args[2].as_u64().unwrap(), node.is_null()) {
        (0, _) | (_, true) => json!({"create": {"parent": parent, "data": {"k": args[0]}}}),
        (1, false) => json!({"move": {"node": node, "parent": parent}}),
        _ => json!({"delete": node}),
    }})
}

fn apply_all(doc: &LoroDoc, patches: &[Value]) {
    for p in patches {
        let _ = apply_patch(doc, &fields(), &resolve_tree_op(doc, p.clone()));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn peers_converge_for_every_kind(
        base in proptest::collection::vec(any_patch(), 0..6),
        a in proptest::collection::vec(any_patch(), 0..10),
        b in proptest::collection::vec(any_patch(), 0..10),
    ) {
        let origin = load(None).unwrap();
        apply_all(&origin, &base);
        let (pa, pb) = (fork(&origin), fork(&origin));
        apply_all(&pa, &a);
        apply_all(&pb, &b);
        exchange(&pa, &pb);
        prop_assert_eq!(project(&pa, &fields()).unwrap(), project(&pb, &fields()).unwrap());
        // Through a snapshot round trip too, as a stored doc would be.
        prop_assert_eq!(project(&fork(&pa), &fields()).unwrap(), project(&pb, &fields()).unwrap());
    }

    #[test]
    fn concurrent_counter_increments_sum(
        start in -50i64..50,
        a in proptest::collection::vec(-20i64..20, 0..12),
        b in proptest::collection::vec(-20i64..20, 0..12),
    ) {
        let origin = load(None).unwrap();
        patched(&origin, json!({"votes": start}));
        let (pa, pb) = (fork(&origin), fork(&origin));
        for n in &a { apply_patch(&pa, &fields(), &json!({"votes": {"increment": n}})).unwrap(); }
        for n in &b { apply_patch(&pb, &fields(), &json!({"votes": {"increment": n}})).unwrap(); }
        exchange(&pa, &pb);
        let want = start + a.iter().sum::<i64>() + b.iter().sum::<i64>();
        prop_assert_eq!(&project(&pa, &fields()).unwrap()["votes"], &json!(want));
        prop_assert_eq!(&project(&pb, &fields()).unwrap()["votes"], &json!(want));
    }

    #[test]
    fn a_text_patch_reaches_any_target(
        before in text_strategy("ab é😀\u{301}日"),
        after in text_strategy("ab é😀\u{301}日"),
    ) {
        let doc = load(None).unwrap();
        patched(&doc, json!({"body": before}));
        prop_assert_eq!(&patched(&doc, json!({"body": after.clone()}))["body"], &json!(after));
    }

    #[test]
    fn a_list_patch_reaches_any_target(
        before in proptest::collection::vec(scalar(), 0..12),
        after in proptest::collection::vec(scalar(), 0..12),
    ) {
        let doc = load(None).unwrap();
        patched(&doc, json!({"tags": before, "order": before}));
        let got = patched(&doc, json!({"tags": after.clone(), "order": after.clone()}));
        prop_assert_eq!(&got["tags"], &json!(after));
        prop_assert_eq!(&got["order"], &json!(after));
    }

    #[test]
    fn disjoint_text_edits_both_survive(
        left in text_strategy("abcdefghijklm "),
        right in text_strategy("nopqrstuvwxyz."),
        left2 in text_strategy("abcdefghijklm "),
        right2 in text_strategy("nopqrstuvwxyz."),
    ) {
        let origin = load(None).unwrap();
        patched(&origin, json!({"body": format!("{left}|{right}")}));
        let (pa, pb) = (fork(&origin), fork(&origin));
        apply_patch(&pa, &fields(), &json!({"body": format!("{left2}|{right}")})).unwrap();
        apply_patch(&pb, &fields(), &json!({"body": format!("{left}|{right2}")})).unwrap();
        exchange(&pa, &pb);
        let want = json!(format!("{left2}|{right2}"));
        prop_assert_eq!(&project(&pa, &fields()).unwrap()["body"], &want);
        prop_assert_eq!(&project(&pb, &fields()).unwrap()["body"], &want);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// `loro_merge` on random blobs (snapshots, and an update): commutative, associative,
    /// idempotent, holding both versions, and projecting as peers that exchanged their ops.
    #[test]
    fn blob_merge_is_commutative_associative_and_idempotent(
        base in proptest::collection::vec(any_patch(), 0..4),
        a in proptest::collection::vec(any_patch(), 0..6),
        b in proptest::collection::vec(any_patch(), 0..6),
        c in proptest::collection::vec(any_patch(), 0..6),
    ) {
        let origin = load(None).unwrap();
        apply_all(&origin, &base);
        let peers = [fork(&origin), fork(&origin), fork(&origin)];
        for (peer, patches) in peers.iter().zip([&a, &b, &c]) {
            apply_all(peer, patches);
        }
        let [ba, bb, _] = peers.each_ref().map(snapshot);
        // c as an update on top of the base, the way a peer would send it.
        let bc = updates_since(&peers[2], &VersionVector::new()).unwrap();
        let value = |bytes: &[u8]| blob::value(bytes).unwrap();
        let m = |x: &[u8], y: &[u8]| blob::merge(x, y).unwrap();
        prop_assert_eq!(value(&m(&ba, &bb)), value(&m(&bb, &ba)));
        prop_assert_eq!(value(&m(&m(&ba, &bb), &bc)), value(&m(&ba, &m(&bb, &bc))));
        prop_assert_eq!(value(&m(&ba, &ba)), value(&ba));
        let merged = m(&m(&ba, &bb), &bc);
        let version = blob::version(&merged).unwrap();
        for x in [&ba, &bb, &bc] {
            prop_assert!(blob::version_includes(&version, &blob::version(x).unwrap()).unwrap());
        }
        let all = fork(&peers[0]);
        exchange(&all, &peers[1]);
        exchange(&all, &peers[2]);
        prop_assert_eq!(blob::projection(&merged, &fields()).unwrap(), project(&all, &fields()).unwrap());
        // What a peer at a's version lacks brings it to the merged doc.
        let since = blob::update_since(&merged, &blob::version(&ba).unwrap()).unwrap();
        prop_assert_eq!(value(&m(&ba, &since)), value(&merged));
    }
}

fn author(role: &str, xid: u64, at: i64) -> history::Author {
    history::Author {
        role: role.into(),
        xid,
        at,
    }
}

/// Writes made with an author carry it in their Loro changes: the history lists each
/// transaction's change with its role, xid, time and fields, and the doc as it was at a time
/// or version projects as it did then.
#[test]
fn history_records_authors_and_travels_in_time() {
    let doc = load(None).unwrap();
    history::attribute(&doc, Some(&author("alice", 100, 1_000)));
    apply_patch(&doc, &fields(), &json!({"title": "first", "votes": 1})).unwrap();
    let v1 = doc.oplog_vv();
    let p1 = project(&doc, &fields()).unwrap();
    history::attribute(&doc, Some(&author("bob", 101, 2_000)));
    apply_patch(
        &doc,
        &fields(),
        &json!({"body": "hello", "votes": {"increment": 2}}),
    )
    .unwrap();
    // A peer that records no time: its change counts as made when what it follows was.
    let peer = fork(&doc);
    peer.get_map(ROOT_MAP).insert("title", "peer's").unwrap();
    peer.commit();
    doc.import(&peer.export(ExportMode::updates(&doc.oplog_vv())).unwrap())
        .unwrap();

    let changes = history::changes(&doc).unwrap();
    assert_eq!(changes.len(), 3, "{changes:#?}");
    assert_eq!(changes[0].role.as_deref(), Some("alice"));
    assert_eq!(changes[0].xid, Some(100));
    assert_eq!(changes[0].timestamp, 1_000);
    assert_eq!(changes[0].fields, ["title", "votes"]);
    assert_eq!(changes[1].role.as_deref(), Some("bob"));
    assert_eq!(changes[1].fields, ["body", "votes"]);
    assert_eq!(changes[2].role, None);
    assert_eq!(changes[2].fields, ["title"]);
    assert!(changes.windows(2).all(|w| w[0].lamport < w[1].lamport));

    let at = |t: i64| {
        let vv = history::version_at(&doc, t).unwrap();
        project(&history::doc_at(&doc, &vv).unwrap(), &fields()).unwrap()
    };
    assert_eq!(at(999), project(&load(None).unwrap(), &fields()).unwrap());
    assert_eq!(at(1_500), p1);
    assert_eq!(at(2_000), project(&doc, &fields()).unwrap());
    let by_version = history::doc_at(&doc, &v1).unwrap();
    assert_eq!(project(&by_version, &fields()).unwrap(), p1);
    // The doc itself is untouched.
    assert_eq!(project(&doc, &fields()).unwrap()["title"], json!("peer's"));
    // A trimmed doc shows versions from its trim on.
    let trimmed = load(Some(&shallow_snapshot(&doc).unwrap())).unwrap();
    let now = history::version_at(&trimmed, 2_000).unwrap();
    assert_eq!(
        project(&history::doc_at(&trimmed, &now).unwrap(), &fields()).unwrap(),
        project(&doc, &fields()).unwrap()
    );
    assert!(matches!(
        history::version_at(&trimmed, 1_500),
        Err(DocError::Pending(_))
    ));
    // A version with ops the doc lacks.
    let ahead = fork(&doc);
    patched(&ahead, json!({"title": "later"}));
    assert!(matches!(
        history::doc_at(&doc, &ahead.oplog_vv()),
        Err(DocError::Pending(_))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Any change's version projects, in the merged doc, as its author saw right after making it.
    #[test]
    fn the_doc_at_a_change_is_what_its_author_saw(
        rounds in proptest::collection::vec((0usize..3, proptest::collection::vec(any_patch(), 1..3)), 1..8),
    ) {
        let origin = load(None).unwrap();
        let peers = [fork(&origin), fork(&origin), fork(&origin)];
        let mut seen = Vec::new();
        for (who, patches) in &rounds {
            let peer = &peers[*who];
            apply_all(peer, patches);
            seen.push((peer.oplog_vv(), project(peer, &fields()).unwrap()));
            // Sometimes a peer catches up with another before the next round.
            let next = &peers[(who + 1) % 3];
            exchange(peer, next);
        }
        let all = fork(&peers[0]);
        exchange(&all, &peers[1]);
        exchange(&all, &peers[2]);
        for (version, projection) in seen {
            let then = history::doc_at(&all, &version).unwrap();
            prop_assert_eq!(project(&then, &fields()).unwrap(), projection);
        }
    }
}

/// `diff` names what changed per field between two versions (a plain value, text spans, a
/// counter's difference, list spans); `revert` brings the doc back as a new change.
#[test]
fn diff_and_revert_between_versions() {
    let doc = load(None).unwrap();
    patched(
        &doc,
        json!({"title": "a", "body": "Hello", "votes": 1, "tags": ["x"]}),
    );
    let v1 = doc.oplog_vv();
    let p1 = project(&doc, &fields()).unwrap();
    patched(
        &doc,
        json!({"title": "b", "body": "Hello world", "votes": {"increment": 4}, "tags": ["x", "y"]}),
    );
    let v2 = doc.oplog_vv();
    let d = history::diff(&doc, &v1, &v2).unwrap();
    assert_eq!(d["title"]["value"], json!("b"));
    assert_eq!(
        d["body"]["text"],
        json!([{"retain": 5}, {"insert": " world"}])
    );
    assert_eq!(d["votes"]["increment"], json!(4));
    assert_eq!(d["tags"]["list"], json!([{"retain": 1}, {"insert": ["y"]}]));
    assert!(
        d.get("order").is_none(),
        "unchanged fields are left out: {d}"
    );
    // Backwards, the same spans undone.
    assert_eq!(
        history::diff(&doc, &v2, &v1).unwrap()["body"]["text"],
        json!([{"retain": 5}, {"delete": 6}])
    );

    history::revert(&doc, &v1).unwrap();
    assert_eq!(project(&doc, &fields()).unwrap(), p1);
    assert!(
        doc.oplog_vv().includes_vv(&v2),
        "a revert adds ops; history stays"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Restoring an old version, then projecting, gives the old projection, for every kind
    /// (a tree node deleted since comes back under a new id: Loro's revert creates it anew).
    #[test]
    fn restore_then_project_is_the_old_projection(
        before in proptest::collection::vec(any_patch(), 0..6),
        after in proptest::collection::vec(any_patch(), 1..8),
    ) {
        let doc = load(None).unwrap();
        apply_all(&doc, &before);
        let (version, projection) = (doc.oplog_vv(), project(&doc, &fields()).unwrap());
        apply_all(&doc, &after);
        history::revert(&doc, &version).unwrap();
        prop_assert_eq!(
            without_tree_ids(project(&doc, &fields()).unwrap()),
            without_tree_ids(projection)
        );
    }
}

/// A projection with its tree nodes' ids left out (their shape and data stay).
fn without_tree_ids(mut v: Value) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                if m.contains_key("children") {
                    m.remove("id");
                }
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v
}

/// The stateless functions' errors: bad bytes, an update without its history, a bad version.
#[test]
fn blob_functions_refuse_bad_input() {
    assert!(matches!(
        blob::merge(&[1, 2, 3], &[]),
        Err(DocError::Bytes(_))
    ));
    assert!(matches!(blob::value(b"not loro"), Err(DocError::Bytes(_))));
    let doc = load(None).unwrap();
    patched(&doc, json!({"title": "a"}));
    let before = doc.oplog_vv();
    patched(&doc, json!({"title": "b"}));
    let tail = updates_since(&doc, &before).unwrap();
    assert!(matches!(blob::value(&tail), Err(DocError::Pending(_))));
    assert!(matches!(
        blob::version_json(&[0xff; 9]),
        Err(DocError::Bytes(_))
    ));
    let json = blob::version_json(&doc.oplog_vv().encode()).unwrap();
    let peer = doc.peer_id().to_string();
    assert_eq!(json[&peer], json!(2));
    assert!(!blob::version_includes(&before.encode(), &doc.oplog_vv().encode()).unwrap());
    assert!(blob::version_includes(&doc.oplog_vv().encode(), &before.encode()).unwrap());
}

#[test]
fn trimmed_history_keeps_the_projection_and_refuses_older_peers() {
    let doc = load(None).unwrap();
    patched(&doc, json!({"title": "a", "votes": 1}));
    let old_peer = fork(&doc);
    let old_version = old_peer.oplog_vv();
    patched(&doc, json!({"title": "b", "votes": {"increment": 1}}));
    let current_peer = fork(&doc);

    let trimmed = load(Some(&shallow_snapshot(&doc).unwrap())).unwrap();
    assert!(trimmed.is_shallow());
    assert_eq!(
        project(&trimmed, &fields()).unwrap(),
        project(&doc, &fields()).unwrap()
    );
    assert!(matches!(
        updates_since(&trimmed, &old_version),
        Err(DocError::Pending(_))
    ));
    assert!(matches!(
        updates_since(&trimmed, &VersionVector::new()),
        Err(DocError::Pending(_))
    ));

    // A peer at the current version keeps syncing both ways.
    apply_patch(
        &current_peer,
        &fields(),
        &json!({"votes": {"increment": 5}}),
    )
    .unwrap();
    let update = current_peer
        .export(ExportMode::updates(&trimmed.oplog_vv()))
        .unwrap();
    import(&trimmed, &update).unwrap();
    assert_eq!(project(&trimmed, &fields()).unwrap()["votes"], json!(7));
    let back = updates_since(&trimmed, &current_peer.oplog_vv()).unwrap();
    import(&current_peer, &back).unwrap();

    // An edit made on top of trimmed history is refused, and the doc is unchanged.
    let before = trimmed.oplog_vv();
    apply_patch(&old_peer, &fields(), &json!({"title": "stale"})).unwrap();
    let stale = old_peer.export(ExportMode::updates(&old_version)).unwrap();
    assert!(import(&trimmed, &stale).is_err());
    assert_eq!(trimmed.oplog_vv(), before);
}

#[test]
fn guarded_turns_a_panic_into_an_error() {
    let got: Result<(), DocError> = guarded(|| panic!("boom at {}", 42));
    assert_eq!(got, Err(DocError::Panic("boom at 42".into())));
    assert_eq!(guarded(|| Ok(7)), Ok(7));
}

#[test]
fn a_tree_projection_seeds_a_tree_of_the_same_shape() {
    let doc = load(None).unwrap();
    let built = patched(
        &doc,
        json!({"outline": [
            {"create": {"parent": null, "data": {"title": "a"}}},
        ]}),
    );
    let a = built["outline"][0]["id"].as_str().unwrap().to_owned();
    let built = patched(
        &doc,
        json!({"outline": {"create": {"parent": a, "data": {"title": "a.1"}}}}),
    );
    let fresh = load(None).unwrap();
    let seeded = patched(&fresh, json!({"outline": {"replace": built["outline"]}}));
    let shape = |v: &Value| {
        let mut v = v.clone();
        fn strip(v: &mut Value) {
            for n in v.as_array_mut().into_iter().flatten() {
                n.as_object_mut().unwrap().remove("id");
                strip(n.get_mut("children").unwrap());
            }
        }
        strip(&mut v);
        v
    };
    assert_eq!(shape(&seeded["outline"]), shape(&built["outline"]));
    assert!(apply_patch(
        &fresh,
        &fields(),
        &json!({"outline": {"replace": [{"data": 1}]}})
    )
    .is_err());
}

/// `rebuild` (a bulk statement's job) does what a single-row write does: a row without a doc
/// gets one seeded from its values, a stored doc is patched, and only a change is encoded.
#[test]
fn rebuild_seeds_patches_and_encodes_only_changes() {
    let fields = fields();
    let row = json!({"title": "seeded", "votes": 2, "body": "hello"});
    let seeded = rebuild(
        &[],
        row.as_object(),
        &fields,
        &json!({"votes": {"increment": 1}}),
        None,
        Editor::peer(7),
    )
    .unwrap();
    assert_eq!(seeded.projection["title"], json!("seeded"));
    assert_eq!(seeded.projection["votes"], json!(3));
    let stored = seeded.snapshot.expect("a new doc is always stored");

    let patched = rebuild(
        std::slice::from_ref(&stored),
        None,
        &fields,
        &json!({"body": "hello world"}),
        None,
        Editor::peer(8),
    )
    .unwrap();
    assert_eq!(patched.projection["body"], json!("hello world"));
    assert_eq!(patched.projection["votes"], json!(3));
    let after = load(Some(&patched.snapshot.expect("a change is stored"))).unwrap();
    assert_eq!(project(&after, &fields).unwrap(), patched.projection);
    // Both peers' ops are in it: the seed's and the patch's.
    assert!(after.oplog_vv().get(&7).is_some() && after.oplog_vv().get(&8).is_some());

    let unchanged = rebuild(
        std::slice::from_ref(&stored),
        None,
        &fields,
        &json!({"title": "seeded"}),
        None,
        Editor::peer(9),
    )
    .unwrap();
    assert!(
        unchanged.snapshot.is_none(),
        "nothing changed, nothing to store"
    );

    // A log entry after the snapshot is folded into the new snapshot.
    let doc = load(Some(&stored)).unwrap();
    let before = doc.oplog_vv();
    apply_patch(&doc, &fields, &json!({"title": "from the log"})).unwrap();
    let delta = updates_since(&doc, &before).unwrap();
    let folded = rebuild(
        &[stored, delta],
        None,
        &fields,
        &json!({}),
        None,
        Editor::peer(10),
    )
    .unwrap();
    assert_eq!(folded.projection["title"], json!("from the log"));
    assert!(
        folded.snapshot.is_some(),
        "a doc with a log gets one snapshot"
    );
}

#[test]
fn rebuild_reports_bad_bytes_and_bad_patches() {
    let fields = fields();
    assert!(matches!(
        rebuild(
            &[vec![1, 2, 3]],
            None,
            &fields,
            &json!({}),
            None,
            Editor::peer(1)
        ),
        Err(DocError::Bytes(_))
    ));
    assert!(matches!(
        rebuild(
            &[],
            None,
            &fields,
            &json!({"votes": "many"}),
            None,
            Editor::peer(1)
        ),
        Err(DocError::Patch { .. })
    ));
}

/// A notification's update covers exactly the changes since its start: applied to a copy at
/// that version it reproduces the doc; one from an earlier write's start covers both writes;
/// one over the size limit is left out, the version still given.
#[test]
fn notices_carry_the_update_since_their_start() {
    let fields = fields();
    let first = rebuild(
        &[],
        None,
        &fields,
        &json!({"title": "a"}),
        None,
        Editor {
            peer: 3,
            notice_from: Some(&NoticeFrom::Before),
            ..Editor::default()
        },
    )
    .unwrap();
    let stored = first.snapshot.unwrap();
    let notice = first.notice.expect("a new doc is noticed");
    assert!(notice.start.is_empty());
    let copy = LoroDoc::new();
    import(&copy, notice.update.as_ref().unwrap()).unwrap();
    assert_eq!(project(&copy, &fields).unwrap(), first.projection);
    assert_eq!(version(&copy), notice.version);

    // A second write coalesced with the first: its update starts at the first one's start.
    let second = rebuild(
        std::slice::from_ref(&stored),
        None,
        &fields,
        &json!({"body": "hello"}),
        None,
        Editor {
            peer: 4,
            notice_from: Some(&NoticeFrom::Version(notice.start.clone())),
            ..Editor::default()
        },
    )
    .unwrap();
    let both = second.notice.unwrap();
    let copy = LoroDoc::new();
    import(&copy, both.update.as_ref().unwrap()).unwrap();
    assert_eq!(project(&copy, &fields).unwrap(), second.projection);

    // From the stored version: only the second write, which applies on top of the first.
    let delta = rebuild(
        std::slice::from_ref(&stored),
        None,
        &fields,
        &json!({"body": "hello"}),
        None,
        Editor {
            peer: 4,
            notice_from: Some(&NoticeFrom::Before),
            ..Editor::default()
        },
    )
    .unwrap()
    .notice
    .unwrap();
    let copy = load(Some(&stored)).unwrap();
    import(&copy, delta.update.as_ref().unwrap()).unwrap();
    assert_eq!(project(&copy, &fields).unwrap()["body"], json!("hello"));
    assert!(delta.update.unwrap().len() < both.update.unwrap().len());

    // Nothing changed: no notice.
    let unchanged = rebuild(
        std::slice::from_ref(&stored),
        None,
        &fields,
        &json!({"title": "a"}),
        None,
        Editor {
            peer: 5,
            notice_from: Some(&NoticeFrom::Before),
            ..Editor::default()
        },
    )
    .unwrap();
    assert!(unchanged.notice.is_none());

    // Too large for a payload: the update is left out.
    let big = "x".repeat(NOTICE_UPDATE_MAX * 2);
    let large = rebuild(
        &[],
        None,
        &fields,
        &json!({"body": big}),
        None,
        Editor {
            peer: 6,
            notice_from: Some(&NoticeFrom::Before),
            ..Editor::default()
        },
    )
    .unwrap();
    let large = large.notice.unwrap();
    assert!(large.update.is_none());
    assert!(!large.version.is_empty());
}

/// A write's update is exported once and shared: the notice that starts where the write did
/// carries those very bytes (one starting earlier exports its own), and a bulk job's
/// replication delta equals its notice's update.
#[test]
fn a_writes_update_is_shared_by_its_consumers() {
    let fields = fields();
    let doc = load(None).unwrap();
    patched(&doc, json!({"title": "a", "votes": 1}));
    let start = doc.oplog_vv();
    patched(&doc, json!({"body": "b"}));
    let before = doc.oplog_vv();
    patched(&doc, json!({"votes": {"increment": 2}}));
    let delta = WriteDelta::new(&doc, &before);
    let exported = updates_since(&doc, &before).unwrap();
    assert_eq!(delta.bytes().unwrap(), &exported[..]);
    assert!(std::ptr::eq(delta.bytes().unwrap(), delta.bytes().unwrap()));

    let same_start = notice(&doc, before.clone(), true, Some(&delta));
    assert_eq!(same_start.update.as_deref(), Some(&exported[..]));
    let earlier = notice(&doc, start.clone(), true, Some(&delta));
    assert_eq!(earlier.update, Some(updates_since(&doc, &start).unwrap()));
    assert_ne!(earlier.update, same_start.update);
    assert!(notice(&doc, before.clone(), false, Some(&delta))
        .update
        .is_none());

    let stored = snapshot(&load(None).unwrap());
    let rebuilt = rebuild(
        std::slice::from_ref(&stored),
        None,
        &fields,
        &json!({"title": "c"}),
        None,
        Editor {
            peer: 7,
            notice_from: Some(&NoticeFrom::Before),
            delta: true,
            ..Editor::default()
        },
    )
    .unwrap();
    assert_eq!(rebuilt.delta, rebuilt.notice.unwrap().update);
    assert!(rebuilt.delta.is_some());
}

fn spec(value: Value) -> Vec<Field> {
    parse_fields(&value).unwrap()
}

/// `migrate`: a rename carries the value (a container's content too) to the new key, a kind
/// change converts in place, a drop deletes, an add takes the row's value; all as ops a peer
/// merges.
#[test]
fn migration_renames_converts_drops_and_adds() {
    let old = spec(json!({
        "title": "string", "body": "string", "votes": "int",
        "tags": {"type": "string", "crdt": "list"}, "gone": "string",
        "outline": {"type": "string", "crdt": "tree"}
    }));
    let new = spec(json!({
        "headline": "string", "body": "richtext", "votes": {"type": "int", "crdt": "counter"},
        "tags": {"type": "string", "crdt": "movable-list"}, "priority": "int",
        "plan": {"type": "string", "crdt": "tree"}
    }));
    let doc = load(None).unwrap();
    apply_patch(
        &doc,
        &old,
        &json!({"title": "Hi", "body": "Hello", "votes": 3, "tags": ["a", "b"], "gone": "x",
                "outline": {"create": {"data": {"t": "root"}}}}),
    )
    .unwrap();
    let peer = fork(&doc);
    let renames = [
        ("title".to_string(), "headline".to_string()),
        ("outline".to_string(), "plan".to_string()),
    ];
    let migration = migrate::plan(&old, &new, &renames).unwrap();
    let row = json!({"priority": 2, "headline": "ignored: the doc has a value"});
    migration.apply(&doc, row.as_object()).unwrap();

    let projected = project(&doc, &new).unwrap();
    assert_eq!(projected["headline"], json!("Hi"));
    assert_eq!(projected["body"], json!("Hello"));
    assert_eq!(projected["votes"], json!(3));
    assert_eq!(projected["tags"], json!(["a", "b"]));
    assert_eq!(projected["priority"], json!(2));
    assert_eq!(projected["plan"][0]["data"], json!({"t": "root"}));
    let keys: Vec<String> = root(&doc).keys().map(|k| k.to_string()).collect();
    assert!(!keys.contains(&"title".to_string()) && !keys.contains(&"gone".to_string()));

    // The new kinds behave as such: concurrent increments add up, text merges by diff.
    let other = fork(&doc);
    apply_patch(
        &doc,
        &new,
        &json!({"votes": {"increment": 1}, "body": "Hello there"}),
    )
    .unwrap();
    apply_patch(
        &other,
        &new,
        &json!({"votes": {"increment": 10}, "body": "Oh Hello"}),
    )
    .unwrap();
    exchange(&doc, &other);
    assert_eq!(project(&doc, &new).unwrap()["votes"], json!(14));
    assert_eq!(
        project(&doc, &new).unwrap()["body"],
        json!("Oh Hello there")
    );

    // A peer that missed the change merges it: it ends where the server did.
    exchange(&doc, &peer);
    assert_eq!(project(&peer, &new).unwrap(), project(&doc, &new).unwrap());

    // Applying it again changes nothing.
    let before = doc.oplog_vv();
    migration.apply(&doc, row.as_object()).unwrap();
    assert_eq!(doc.oplog_vv(), before);
}

/// Conversions that could lose or invent values are refused before any doc is touched.
#[test]
fn migration_refuses_unsound_conversions() {
    let old = spec(
        json!({"n": "float", "c": {"type": "int", "crdt": "counter"}, "s": "string", "b": "bool"}),
    );
    for (new, renames, needle) in [
        (
            json!({"n": "int", "c": {"type": "int", "crdt": "counter"}, "s": "string", "b": "bool"}),
            vec![],
            "from float to int",
        ),
        (
            json!({"n": "float", "c": "richtext", "s": "string", "b": "bool"}),
            vec![],
            "from counter to text",
        ),
        (
            json!({"n": "float", "c": {"type": "int", "crdt": "counter"}, "s": "int", "b": "bool"}),
            vec![],
            "from lww string to lww number",
        ),
        (
            json!({"n": "float", "c": {"type": "int", "crdt": "counter"}, "s": "string", "b": "string"}),
            vec![],
            "from lww bool",
        ),
    ] {
        let err = migrate::plan(&old, &spec(new), &renames).unwrap_err();
        assert!(matches!(err, DocError::Unsupported(_)), "{err}");
        assert!(
            err.to_string().contains(needle),
            "{err} should say {needle}"
        );
    }
    let same = spec(
        json!({"n": "float", "c": {"type": "int", "crdt": "counter"}, "s": "string", "b": "bool"}),
    );
    for (renames, needle) in [
        (vec![("nope", "s")], "not a field of the current spec"),
        (vec![("s", "t")], "not in the new fields"),
        (vec![("s", "b")], "also in the new fields"),
    ] {
        let renames: Vec<(String, String)> = renames
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let err = migrate::plan(&old, &same, &renames).unwrap_err();
        assert!(
            err.to_string().contains(needle),
            "{err} should say {needle}"
        );
    }
    assert!(migrate::plan(&old, &same, &[]).unwrap().is_empty());
}

/// A peer still on the old schema, syncing after the change (the state the README
/// documents): a plain value it writes later than the change wins the key (LWW), is read as it
/// stands, and is converted by the next write under the new schema, keeping its value. Its
/// edits inside a container the change replaced (items pushed onto the old list) stay in that
/// container, in history, and do not show.
#[test]
fn old_schema_writes_are_adopted_by_the_next_write() {
    let old = spec(json!({"votes": "int", "tags": {"type": "string", "crdt": "list"}}));
    let new = spec(json!({"votes": {"type": "int", "crdt": "counter"},
                          "tags": {"type": "string", "crdt": "movable-list"}}));
    let server = load(None).unwrap();
    apply_patch(&server, &old, &json!({"votes": 1, "tags": ["a"]})).unwrap();
    let peer = fork(&server);
    migrate::plan(&old, &new, &[])
        .unwrap()
        .apply(&server, None)
        .unwrap();
    // The peer writes twice under the old schema, so its last write is later than the change.
    apply_patch(&peer, &old, &json!({"votes": 5, "tags": ["a", "b"]})).unwrap();
    apply_patch(&peer, &old, &json!({"votes": 7, "tags": ["a", "b", "c"]})).unwrap();
    exchange(&server, &peer);
    assert_eq!(
        project(&server, &new).unwrap(),
        json!({"votes": 7, "tags": ["a"]})
    );
    apply_patch(
        &server,
        &new,
        &json!({"votes": {"increment": 1}, "tags": {"push": "d"}}),
    )
    .unwrap();
    assert_eq!(
        project(&server, &new).unwrap(),
        json!({"votes": 8, "tags": ["a", "d"]})
    );
    assert!(migrate::holds(
        &root(&server).get("votes").unwrap(),
        FieldKind::Counter
    ));
    assert!(migrate::holds(
        &root(&server).get("tags").unwrap(),
        FieldKind::MovableList
    ));
}

/// Two docs created for one row without ever seeing each other (two primaries, an offline
/// client) merge field by field: both sides' containers are the same mergeable container.
#[test]
fn independently_created_docs_merge_every_kind() {
    let a = load(None).unwrap();
    let b = load(None).unwrap();
    patched(
        &a,
        json!({"title": "A", "body": "hello from A", "votes": {"increment": 5},
               "tags": ["a1", "a2"], "order": ["x"],
               "outline": {"create": {"parent": null, "data": {"from": "A"}}}}),
    );
    patched(
        &b,
        json!({"title": "B", "body": "hello from B", "votes": {"increment": 3},
               "tags": ["b1"], "order": ["y"],
               "outline": {"create": {"parent": null, "data": {"from": "B"}}}}),
    );
    exchange(&a, &b);
    let merged = project(&a, &fields()).unwrap();
    assert_eq!(merged, project(&b, &fields()).unwrap());
    assert_eq!(merged["votes"], json!(8));
    let body = merged["body"].as_str().unwrap();
    assert!(
        body.contains("hello from A") && body.contains("hello from B"),
        "{body}"
    );
    let mut tags: Vec<_> = merged["tags"].as_array().unwrap().iter().collect();
    tags.sort_by_key(|v| v.to_string());
    assert_eq!(tags, [&json!("a1"), &json!("a2"), &json!("b1")]);
    let order = merged["order"].as_array().unwrap();
    assert!(
        order.contains(&json!("x")) && order.contains(&json!("y")),
        "{order:?}"
    );
    let mut from: Vec<_> = merged["outline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| node["data"]["from"].clone())
        .collect();
    from.sort_by_key(|v| v.to_string());
    assert_eq!(from, [json!("A"), json!("B")]);
    assert!(merged["title"] == json!("A") || merged["title"] == json!("B"));
    // And they keep merging: concurrent increments on both sides add up.
    patched(&a, json!({"votes": {"increment": 1}}));
    patched(&b, json!({"votes": {"increment": 1}}));
    exchange(&a, &b);
    assert_eq!(project(&b, &fields()).unwrap()["votes"], json!(10));
}

/// Loro keeps a mergeable child's state while its key is cleared; a field set to null still
/// starts over when it is written again.
#[test]
fn a_field_cleared_to_null_starts_over() {
    let doc = load(None).unwrap();
    patched(
        &doc,
        json!({"body": "old", "votes": 5, "tags": ["a"], "order": ["m"],
               "outline": {"create": {"parent": null, "data": {"k": 1}}}}),
    );
    let cleared = patched(
        &doc,
        json!({"body": null, "votes": null, "tags": null, "order": null, "outline": null}),
    );
    for name in ["body", "votes", "tags", "order", "outline"] {
        assert_eq!(cleared[name], Value::Null, "{name}");
    }
    let got = patched(
        &doc,
        json!({"votes": {"increment": 2}, "tags": {"push": "b"}, "order": {"push": "n"},
               "outline": {"create": {"parent": null, "data": {"k": 2}}}}),
    );
    assert_eq!(got["votes"], json!(2));
    assert_eq!(got["tags"], json!(["b"]));
    assert_eq!(got["order"], json!(["n"]));
    assert_eq!(got["outline"].as_array().unwrap().len(), 1);
    assert_eq!(got["outline"][0]["data"], json!({"k": 2}));
    assert_eq!(patched(&doc, json!({"body": "new"}))["body"], json!("new"));
}

/// A doc written before mergeable containers (by an older pylon_crdt, the pylon runtime or a
/// Loro client) keeps its regular children: edits go to the container its peers share.
#[test]
fn regular_children_of_older_docs_are_kept_and_merge() {
    let old = LoroDoc::new();
    let row = old.get_map(ROOT_MAP);
    let text = row.insert_container("body", loro::LoroText::new()).unwrap();
    text.insert(0, "shared").unwrap();
    let counter = row
        .insert_container("votes", loro::LoroCounter::new())
        .unwrap();
    counter.increment(4.0).unwrap();
    old.commit();
    let ours = fork(&old);
    let peer = fork(&old);
    let before = ours.get_map(ROOT_MAP).get("body");
    patched(
        &ours,
        json!({"body": "shared text", "votes": {"increment": 1}}),
    );
    let after = ours.get_map(ROOT_MAP).get("body");
    let id = |v: Option<ValueOrContainer>| match v {
        Some(ValueOrContainer::Container(c)) => c.id(),
        other => panic!("not a container: {other:?}"),
    };
    assert_eq!(id(before), id(after));
    let peer_text = match peer.get_map(ROOT_MAP).get("body") {
        Some(ValueOrContainer::Container(loro::Container::Text(t))) => t,
        other => panic!("{other:?}"),
    };
    peer_text.insert(0, ">> ").unwrap();
    peer.commit();
    exchange(&ours, &peer);
    let merged = project(&ours, &fields()).unwrap();
    assert_eq!(merged["body"], json!(">> shared text"));
    assert_eq!(merged["votes"], json!(5));
}

/// Two nodes' docs of one row, each holding part of the other's history (fixtures taken from
/// an active-active run): Loro 1.17.1 panics importing the one's snapshot into the other, and
/// the panic aborts the process. `import` and the blob functions take the snapshot's changes
/// as an update instead.
#[test]
fn a_snapshot_merges_into_a_doc_holding_part_of_its_history() {
    let ours: &[u8] =
        include_bytes!("../../tests/client/fixtures/loro-panic-snapshot-into-doc-doc.bin");
    let theirs: &[u8] =
        include_bytes!("../../tests/client/fixtures/loro-panic-snapshot-into-doc-snapshot.bin");
    let doc = load(Some(ours)).unwrap();
    import(&doc, theirs).unwrap();
    let other = load(Some(theirs)).unwrap();
    assert!(doc.oplog_vv().includes_vv(&other.oplog_vv()));
    let merged = blob::merge(ours, theirs).unwrap();
    let reversed = blob::merge(theirs, ours).unwrap();
    assert_eq!(
        load(Some(&merged)).unwrap().get_deep_value(),
        doc.get_deep_value()
    );
    assert_eq!(
        load(Some(&reversed)).unwrap().get_deep_value(),
        doc.get_deep_value()
    );
}

#[test]
fn only_snapshots_are_turned_into_updates() {
    let doc = load(None).unwrap();
    patched(
        &doc,
        json!({"title": "a", "body": "hello", "votes": {"increment": 2}}),
    );
    let update = doc.export(ExportMode::all_updates()).unwrap();
    assert_eq!(snapshot_as_update(&update), None);
    let converted = snapshot_as_update(&snapshot(&doc)).expect("a snapshot converts");
    let copy = load(None).unwrap();
    import(&copy, &converted).unwrap();
    assert_eq!(copy.get_deep_value(), doc.get_deep_value());
    assert_eq!(
        snapshot_as_update(b"not a loro blob at all, long enough"),
        None
    );
}

/// A log of writes by several peers, as `log` storage keeps it: each entry one write's update.
fn logged_writes(doc: &LoroDoc, writers: &[&LoroDoc], writes: usize) -> Vec<Vec<u8>> {
    let mut log: Vec<Vec<u8>> = Vec::new();
    for n in 0..writes {
        let writer = writers[n % writers.len()];
        let missed = updates_since(doc, &writer.oplog_vv()).unwrap();
        import(writer, &missed).unwrap();
        let before = writer.oplog_vv();
        patched(
            writer,
            json!({"title": format!("t{n}"), "votes": {"increment": 1}}),
        );
        let update = updates_since(writer, &before).unwrap();
        import(doc, &update).unwrap();
        log.push(update);
    }
    log
}

#[test]
fn a_doc_from_before_a_fold_catches_up_from_the_folded_entries_only_when_they_reach_it() {
    let (a, b) = (load(None).unwrap(), load(None).unwrap());
    let stored = load(None).unwrap();
    let earlier = logged_writes(&stored, &[&a, &b], 4);
    // A backend cached the doc after the first 4 writes; 6 more came, then a fold.
    let cached = || {
        let doc = load(None).unwrap();
        for entry in &earlier {
            import(&doc, entry).unwrap();
        }
        doc
    };
    let later = logged_writes(&stored, &[&a, &b], 6);
    let version = stored.oplog_vv().encode();
    let expected = project(&stored, &fields()).unwrap();

    let doc = cached();
    assert!(catch_up(&doc, &version, &later).unwrap());
    assert_eq!(project(&doc, &fields()).unwrap(), expected);
    // Entries the doc has already are harmless.
    let doc = cached();
    let with_known: Vec<Vec<u8>> = earlier.iter().chain(&later).cloned().collect();
    assert!(catch_up(&doc, &version, &with_known).unwrap());
    assert_eq!(doc.oplog_vv(), stored.oplog_vv());

    // The fold kept too few entries: the doc cannot reach the snapshot's version.
    let doc = cached();
    assert!(!catch_up(&doc, &version, &later[..3]).unwrap_or(false));
    let doc = cached();
    assert!(!catch_up(&doc, &version, &later[1..]).unwrap_or(false));
    // A doc holding ops the snapshot lacks is not from before this fold.
    let doc = cached();
    patched(&doc, json!({"title": "never stored"}));
    assert!(!catch_up(&doc, &version, &later).unwrap());
    // A version that is not one is an error, not a match.
    assert!(catch_up(&cached(), b"\xff", &later).is_err());
}
