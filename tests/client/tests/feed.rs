//! The changes feed (issue 11) over real connections: no change is ever skipped, even when
//! transactions commit in another order than they took their transaction ids (the outbox
//! bug), and every committed change appears exactly once across pulls.

use std::collections::{BTreeMap, BTreeSet};

use pylon_crdt_client_tests::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn setup(name: &str) -> (String, Client) {
    let url = fresh_db(name);
    let mut c = connect(&url);
    c.batch_execute(
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET pylon_crdt.publish = registered', current_database()); END $$",
    )
    .unwrap();
    c.batch_execute(
        "CREATE TABLE feed (id text PRIMARY KEY, votes int);
         SELECT pylon_crdt_enable('feed', '{\"votes\":{\"type\":\"int\",\"crdt\":\"counter\"}}');",
    )
    .unwrap();
    (url, c)
}

/// One pull: (row id, cursor) pairs in feed order, and the cursor to pull from next.
fn pull(reader: &mut Client, since: i64, limit: i32) -> (Vec<(String, i64)>, i64) {
    let rows = reader
        .query(
            "SELECT row_id, cursor FROM pylon_crdt_changes('feed', $1, $2)",
            &[&since, &limit],
        )
        .unwrap();
    let events: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let next = events.last().map_or(since, |(_, cursor)| *cursor);
    (events, next)
}

/// A writer takes its transaction id first, then later writers commit, and a reader pulls
/// again and again meanwhile: it gets the later changes only once the held writer is done,
/// and then the held writer's change too. Nothing is skipped, nothing comes twice.
#[test]
fn a_held_writer_is_never_skipped() {
    let (url, mut reader) = setup("feed_held");
    let mut held = connect(&url);
    let mut held_tx = held.transaction().unwrap();
    let held_xid: String = held_tx
        .query_one("SELECT pg_current_xact_id()::text", &[])
        .unwrap()
        .get(0);
    let mut writer = connect(&url);
    let mut seen: Vec<(String, i64)> = Vec::new();
    let mut cursor = 0;
    for i in 0..20 {
        writer
            .execute("INSERT INTO feed VALUES ($1, 1)", &[&format!("later{i}")])
            .unwrap();
        let (events, next) = pull(&mut reader, cursor, 5);
        seen.extend(events);
        cursor = next;
    }
    // The held writer's xid is below every later writer's: while it is open, nothing past it
    // may be handed out, or a reader would move its cursor beyond the held change.
    assert!(
        seen.is_empty(),
        "changes above an open transaction were handed out: {seen:?}"
    );
    held_tx
        .execute("INSERT INTO feed VALUES ('held', 1)", &[])
        .unwrap();
    held_tx.commit().unwrap();
    loop {
        let (events, next) = pull(&mut reader, cursor, 5);
        if events.is_empty() {
            break;
        }
        seen.extend(events);
        cursor = next;
    }
    let rows: Vec<&str> = seen.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(rows.len(), 21, "every change once: {rows:?}");
    assert_eq!(
        rows[0], "held",
        "the held writer's change comes first (lowest xid)"
    );
    assert_eq!(seen[0].1.to_string(), held_xid);
    let distinct: BTreeSet<&str> = rows.iter().copied().collect();
    assert_eq!(distinct.len(), 21, "no change twice: {rows:?}");
}

/// Random interleavings of begin, write (through the trigger or the function), commit and
/// rollback across six connections, some taking their transaction id before they write,
/// with a reader pulling pages of random size at random moments: across all pulls every
/// committed change appears exactly once, in cursor order, and nothing rolled back appears.
#[test]
fn random_interleavings_skip_nothing_and_repeat_nothing() {
    let (url, mut reader) = setup("feed_random");
    let mut rng = StdRng::seed_from_u64(11);
    let mut writers: Vec<Client> = (0..6).map(|_| connect(&url)).collect();
    // Per connection: the rows its open transaction wrote (None when idle).
    let mut open: Vec<Option<Vec<String>>> = vec![None; writers.len()];
    let mut committed: BTreeSet<String> = BTreeSet::new();
    let mut rolled_back: BTreeSet<String> = BTreeSet::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut cursors: Vec<i64> = Vec::new();
    let mut cursor = 0;
    let mut next_row = 0;
    for _ in 0..3000 {
        let i = rng.gen_range(0..writers.len());
        let c = &mut writers[i];
        match &mut open[i] {
            None => {
                c.batch_execute("BEGIN").unwrap();
                if rng.gen_bool(0.5) {
                    c.batch_execute("SELECT pg_current_xact_id()").unwrap();
                }
                open[i] = Some(Vec::new());
            }
            Some(rows) => match rng.gen_range(0..10) {
                0..=5 => {
                    let row = format!("r{next_row}");
                    next_row += 1;
                    if rng.gen_bool(0.5) {
                        c.execute("INSERT INTO feed VALUES ($1, 1)", &[&row])
                            .unwrap();
                    } else {
                        c.execute(
                            "SELECT pylon_crdt_apply_patch('feed', $1, '{\"votes\":1}')",
                            &[&row],
                        )
                        .unwrap();
                    }
                    rows.push(row);
                }
                6..=8 => {
                    c.batch_execute("COMMIT").unwrap();
                    committed.extend(open[i].take().unwrap());
                }
                _ => {
                    c.batch_execute("ROLLBACK").unwrap();
                    rolled_back.extend(open[i].take().unwrap());
                }
            },
        }
        if rng.gen_bool(0.2) {
            let (events, next) = pull(&mut reader, cursor, rng.gen_range(1..20));
            for (row, at) in events {
                *seen.entry(row).or_default() += 1;
                cursors.push(at);
            }
            cursor = next;
        }
    }
    for (i, rows) in open.iter_mut().enumerate() {
        if let Some(rows) = rows.take() {
            writers[i].batch_execute("COMMIT").unwrap();
            committed.extend(rows);
        }
    }
    loop {
        let (events, next) = pull(&mut reader, cursor, 50);
        if events.is_empty() {
            break;
        }
        for (row, at) in events {
            *seen.entry(row).or_default() += 1;
            cursors.push(at);
        }
        cursor = next;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "changes seen more than once: {twice:?}");
    let seen_rows: BTreeSet<String> = seen.keys().cloned().collect();
    let missed: Vec<_> = committed.difference(&seen_rows).collect();
    assert!(
        missed.is_empty(),
        "committed changes never seen: {missed:?}"
    );
    let phantom: Vec<_> = seen_rows.intersection(&rolled_back).collect();
    assert!(phantom.is_empty(), "rolled-back changes seen: {phantom:?}");
    assert!(
        cursors.windows(2).all(|w| w[0] <= w[1]),
        "cursors go forward"
    );
    println!(
        "feed: {} committed and {} rolled-back changes, each committed one seen once",
        committed.len(),
        rolled_back.len()
    );
}
