//! What each write changes, and the row histories the cells start from.
//!
//! Write `n` sets `title(n)`, `body(n)` and the votes. `body(n)` is one fixed paragraph with a
//! marker `#n` at a position that moves with `n`, so any two consecutive writes differ by a
//! small edit (one marker out, one in) whichever client makes them: the text diff stays small
//! also when several clients write one row.

use loro::{
    ContainerTrait, ExportMode, LoroCounter, LoroDoc, LoroMap, LoroResult, LoroText, LoroValue,
    ValueOrContainer,
};

use crate::Result;

/// The fields spec of every CRDT table in the benchmark.
pub const FIELDS: &str =
    r#"{"title":"string","body":"richtext","votes":{"type":"int","crdt":"counter"}}"#;

/// ASCII, so byte and character positions agree.
const PARAGRAPH: &str = "Meeting notes. We agreed to ship the sync rewrite behind a flag, \
    keep the old snapshot format readable for one more release, and measure write latency on \
    large documents before turning it on for everyone. Open questions: history trimming, \
    cache size, and who owns the migration.";

pub fn title(n: u64) -> String {
    format!("Title {n}")
}

pub fn body(n: u64) -> String {
    let at = (n as usize).wrapping_mul(7919) % (PARAGRAPH.len() + 1);
    format!("{}#{n}{}", &PARAGRAPH[..at], &PARAGRAPH[at..])
}

/// A row's projected column values.
#[derive(Clone, Debug)]
pub struct Row {
    pub title: String,
    pub body: String,
    pub votes: i32,
}

/// How a doc's fields are written; the two shapes build different histories.
#[derive(Clone, Copy, Debug)]
pub enum Shape {
    /// pylon_crdt: text through a minimal diff (`LoroText::update`), votes a `LoroCounter`
    /// incremented by one per write.
    Extension,
    /// The pylon runtime: text deleted and inserted whole, votes an LWW number.
    Runtime,
}

/// The root map every field lives in (the pylon doc shape).
fn root(doc: &LoroDoc) -> LoroMap {
    doc.get_map("row")
}

fn child<C: ContainerTrait>(row: &LoroMap, key: &str, fresh: C) -> LoroResult<C> {
    if let Some(ValueOrContainer::Container(c)) = row.get(key) {
        if let Some(c) = C::try_from_container(c) {
            return Ok(c);
        }
    }
    row.insert_container(key, fresh)
}

/// A peer id this doc has never seen, as both writers use per load (Loro reserves u64::MAX).
pub fn fresh_peer(doc: &LoroDoc) -> LoroResult<()> {
    doc.set_peer_id(rand::random::<u64>() % (u64::MAX - 1))
}

/// Write `n` as one commit under a fresh peer id.
pub fn apply_write(doc: &LoroDoc, shape: Shape, n: u64) -> Result<()> {
    fresh_peer(doc)?;
    let row = root(doc);
    row.insert("title", title(n))?;
    let text = child(&row, "body", LoroText::new())?;
    match shape {
        Shape::Extension => {
            text.update(&body(n), Default::default())?;
            child(&row, "votes", LoroCounter::new())?.increment(1.0)?;
        }
        Shape::Runtime => {
            text.delete(0, text.len_unicode())?;
            text.insert(0, &body(n))?;
            row.insert("votes", n as i64)?;
        }
    }
    doc.commit();
    Ok(())
}

/// The row's column values, read back from the doc.
pub fn project(doc: &LoroDoc) -> Row {
    let row = root(doc);
    let title = match row.get("title") {
        Some(ValueOrContainer::Value(LoroValue::String(s))) => s.to_string(),
        _ => String::new(),
    };
    let body = match row.get("body") {
        Some(ValueOrContainer::Container(c)) => LoroText::try_from_container(c)
            .map(|t| t.to_string())
            .unwrap_or_default(),
        _ => String::new(),
    };
    let votes = match row.get("votes") {
        Some(ValueOrContainer::Value(LoroValue::I64(v))) => v as i32,
        Some(ValueOrContainer::Container(c)) => LoroCounter::try_from_container(c)
            .map(|c| c.get_value() as i32)
            .unwrap_or_default(),
        _ => 0,
    };
    Row { title, body, votes }
}

/// A row's doc after writes `0..=edits`, each its own commit under its own fresh peer id, so
/// the history is what `edits + 1` separate loads and writes leave behind. Built in memory:
/// through SQL it would cost O(edits²) time and WAL (every write rewrites the whole snapshot).
pub fn history(shape: Shape, edits: u64) -> Result<(Vec<u8>, Row)> {
    let doc = LoroDoc::new();
    for n in 0..=edits {
        apply_write(&doc, shape, n)?;
    }
    Ok((doc.export(ExportMode::Snapshot)?, project(&doc)))
}

/// The extension's text patch for an edit in one place: cut the common prefix and suffix,
/// replace what is left (the extension diffs that rest; here it is one region).
fn splice_changed_middle(text: &LoroText, new: &str) -> LoroResult<()> {
    let old: Vec<char> = text.to_string().chars().collect();
    let new: Vec<char> = new.chars().collect();
    let prefix = old.iter().zip(&new).take_while(|(a, b)| a == b).count();
    let suffix = old[prefix..]
        .iter()
        .rev()
        .zip(new[prefix..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    text.delete(prefix, old.len() - suffix - prefix)?;
    text.insert(
        prefix,
        &new[prefix..new.len() - suffix].iter().collect::<String>(),
    )
}

/// Mean in-process cost of the CRDT work in one extension write, without any database: apply
/// the write, export the full snapshot (snapshot storage) or only the delta (log storage).
pub struct LoroCosts {
    pub apply: std::time::Duration,
    pub snapshot: std::time::Duration,
    pub delta: std::time::Duration,
}

/// One extension-shaped write `n`: title set, body edited over its changed middle, votes +1.
fn extension_write(doc: &LoroDoc, n: u64) -> Result<()> {
    let row = root(doc);
    row.insert("title", title(n))?;
    splice_changed_middle(&child(&row, "body", LoroText::new())?, &body(n))?;
    child(&row, "votes", LoroCounter::new())?.increment(1.0)?;
    doc.commit();
    Ok(())
}

/// Times `writes` consecutive writes on the doc stored as `snapshot`, under one peer as the
/// extension's writes of a row from one backend are. A warm loop: a lower bound for the same
/// work inside a backend between network waits.
pub fn loro_costs(snapshot: &[u8], writes: u64) -> Result<LoroCosts> {
    use std::time::{Duration, Instant};
    let doc = LoroDoc::new();
    doc.import(snapshot)?;
    fresh_peer(&doc)?;
    let (mut apply, mut full, mut delta) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for n in 0..writes {
        let before = doc.oplog_vv();
        let t = Instant::now();
        extension_write(&doc, n)?;
        let applied = Instant::now();
        doc.export(ExportMode::Snapshot)?;
        let exported = Instant::now();
        doc.export(ExportMode::updates(&before))?;
        apply += applied - t;
        full += exported - applied;
        delta += exported.elapsed();
    }
    let per = |d: Duration| d / writes.max(1) as u32;
    Ok(LoroCosts {
        apply: per(apply),
        snapshot: per(full),
        delta: per(delta),
    })
}

/// What catching up costs a writer of a hot row in Loro alone (see `catch_up_costs`).
pub struct CatchUp {
    /// Mean time of one writer's catch-up on the changes the others made since its last turn.
    pub per_turn: std::time::Duration,
    /// The same per missed change.
    pub per_change: std::time::Duration,
    /// Mean time of the first import into a doc just decoded from the row's snapshot (of 5),
    /// as after a cache miss or a `log` fold.
    pub after_decode: std::time::Duration,
    /// The row's snapshot at the end.
    pub snapshot_bytes: usize,
}

/// How a writer takes in the changes it missed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum CatchUpBy {
    /// One import per missed change, as `log` storage does.
    EachChange,
    /// One import of all of them, exported as one update by a doc that holds them.
    OneBlob,
}

/// `writers` docs of one row take `turns` turns each, as `log` storage's writers do: take in
/// the changes the others made since this writer's last turn, then write. Each writer keeps
/// its peer for `peer_every` writes (0: for good).
pub fn catch_up_costs(
    writers: usize,
    turns: usize,
    peer_every: u64,
    by: CatchUpBy,
) -> Result<CatchUp> {
    use std::time::{Duration, Instant};
    let docs: Vec<LoroDoc> = (0..writers).map(|_| LoroDoc::new()).collect();
    let everything = LoroDoc::new();
    let mut seen = vec![0usize; writers];
    let mut log: Vec<Vec<u8>> = Vec::new();
    let (mut importing, mut catch_ups, mut changes) = (Duration::ZERO, 0u32, 0u32);
    let mut n = 0u64;
    for turn in 0..turns as u64 {
        for (w, doc) in docs.iter().enumerate() {
            let missed = &log[seen[w]..];
            if !missed.is_empty() {
                let blob = match by {
                    CatchUpBy::OneBlob => {
                        Some(everything.export(ExportMode::updates(&doc.oplog_vv()))?)
                    }
                    CatchUpBy::EachChange => None,
                };
                let t = Instant::now();
                match &blob {
                    Some(blob) => {
                        doc.import(blob)?;
                    }
                    None => {
                        for update in missed {
                            doc.import(update)?;
                        }
                    }
                }
                importing += t.elapsed();
                catch_ups += 1;
                changes += missed.len() as u32;
            }
            if turn == 0 || (peer_every > 0 && turn % peer_every == 0) {
                fresh_peer(doc)?;
            }
            let before = doc.oplog_vv();
            extension_write(doc, n)?;
            n += 1;
            let update = doc.export(ExportMode::updates(&before))?;
            everything.import(&update)?;
            log.push(update);
            seen[w] = log.len();
        }
    }
    // Docs decoded from the snapshot of all but the last change, then given that change.
    let (last, older) = log.split_last().ok_or("no writes")?;
    let base = LoroDoc::new();
    for update in older {
        base.import(update)?;
    }
    let snapshot = base.export(ExportMode::Snapshot)?;
    const DECODES: u32 = 5;
    let mut after_decode = Duration::ZERO;
    for _ in 0..DECODES {
        let decoded = LoroDoc::new();
        decoded.import(&snapshot)?;
        let t = Instant::now();
        decoded.import(last)?;
        after_decode += t.elapsed();
    }
    Ok(CatchUp {
        per_turn: importing / catch_ups.max(1),
        per_change: importing / changes.max(1),
        after_decode: after_decode / DECODES,
        snapshot_bytes: snapshot.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_bodies_differ_by_a_small_edit() {
        for n in 1..100 {
            let (a, b) = (body(n - 1), body(n));
            let common_prefix = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
            assert!(common_prefix < a.len());
            assert!(b.len() - PARAGRAPH.len() <= 4);
        }
    }

    #[test]
    fn catching_up_imports_every_missed_change() {
        for by in [CatchUpBy::EachChange, CatchUpBy::OneBlob] {
            let c = catch_up_costs(3, 4, 2, by).unwrap();
            assert!(c.per_turn >= c.per_change);
            assert!(c.per_change > std::time::Duration::ZERO);
            assert!(c.snapshot_bytes > 0);
        }
    }

    #[test]
    fn history_projects_the_last_write() {
        for shape in [Shape::Extension, Shape::Runtime] {
            let (snapshot, row) = history(shape, 20).unwrap();
            assert_eq!(row.title, title(20));
            assert_eq!(row.body, body(20));
            let doc = LoroDoc::new();
            doc.import(&snapshot).unwrap();
            assert_eq!(project(&doc).body, body(20));
        }
        assert_eq!(history(Shape::Extension, 20).unwrap().1.votes, 21);
        assert_eq!(history(Shape::Runtime, 20).unwrap().1.votes, 20);
    }
}
