//! A mixed soak (issue 14), exact to the increment: 16 connections run a fixed number of
//! transactions each, mixing the function path, plain UPDATEs through the trigger, peer
//! updates (made here with loro), savepoints rolled back and released, whole transactions
//! rolled back, prepared transactions committed and rolled back, text edits, `log` storage
//! rows with concurrent `pylon_crdt_compact` and `pylon_crdt_set_storage` switches, and reads.
//!
//! Every increment is counted on the client side only once its transaction's commit returned
//! (a savepoint rolled back takes its increments along), so the count is exact: every counter
//! must end at exactly what committed, the enabled table's columns must equal its docs,
//! `pylon_crdt_verify` must be clean, and a streaming standby that followed the primary the
//! whole time must end with the same docs. Its length is `PYLON_CRDT_SOAK_TXNS` transactions
//! per connection (the README states a ten-minute run's figures).

use std::collections::BTreeMap;
use std::thread;
use std::time::{Duration, Instant};

use loro::{ExportMode, LoroDoc, ValueOrContainer};
use postgres::Transaction;
use pylon_crdt_client_tests::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const ROWS: usize = 6;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn doc_fields() -> Value {
    json!({"n": {"type": "int", "crdt": "counter"}, "body": "richtext"})
}

/// Where an increment lands: (entity, row id).
type Target = (&'static str, String);

/// What a connection saw: increments that committed per target, and how transactions ended.
#[derive(Default)]
struct Tally {
    committed: BTreeMap<Target, i64>,
    outcomes: BTreeMap<String, usize>,
}

/// A peer's update that adds 1 to the row's counter `field`, made with loro from the doc as
/// the transaction sees it.
fn peer_increment(tx: &mut Transaction<'_>, entity: &str, row: &str, field: &str) -> Vec<u8> {
    let snapshot: Vec<u8> = tx
        .query_one("SELECT pylon_crdt_snapshot($1, $2)", &[&entity, &row])
        .unwrap()
        .get(0);
    let doc = LoroDoc::from_snapshot(&snapshot).expect("the snapshot decodes");
    doc.set_peer_id(rand::random::<u64>() % (u64::MAX - 1))
        .unwrap();
    let base = doc.oplog_vv();
    match doc.get_map("row").get(field) {
        Some(ValueOrContainer::Container(loro::Container::Counter(c))) => c.increment(1.0).unwrap(),
        other => panic!("{entity}/{row}: {field} is not a counter: {other:?}"),
    }
    doc.commit();
    doc.export(ExportMode::updates(&base)).unwrap()
}

/// One operation inside a transaction; returns the target it added 1 to, if any.
fn operation(
    tx: &mut Transaction<'_>,
    rng: &mut StdRng,
    fields: &Value,
) -> Result<Option<Target>, postgres::Error> {
    let row = rng.gen_range(0..ROWS);
    let item = format!("i{row}");
    let doc = format!("d{row}");
    let log = format!("l{}", row % 3);
    Ok(match rng.gen_range(0..100) {
        0..=14 => {
            tx.execute(
                "UPDATE soak_items SET votes = votes + 1 WHERE id = $1",
                &[&item],
            )?;
            Some(("soak_items", item))
        }
        15..=24 => {
            tx.execute(
                "SELECT pylon_crdt_apply_patch('soak_items', $1, '{\"votes\":{\"increment\":1}}')",
                &[&item],
            )?;
            Some(("soak_items", item))
        }
        25..=31 => {
            let update = peer_increment(tx, "soak_items", &item, "votes");
            tx.execute(
                "SELECT pylon_crdt_apply_update('soak_items', $1, $2)",
                &[&item, &update],
            )?;
            Some(("soak_items", item))
        }
        32..=39 => {
            let text = format!("{}", rng.gen_range(0..10));
            tx.execute(
                "UPDATE soak_items SET note = note || $2 WHERE id = $1",
                &[&item, &text],
            )?;
            None
        }
        op @ 40..=77 => {
            // A table-less doc, or one in `log` storage: through the function, or as a peer's
            // update.
            let (entity, id) = if op < 60 {
                ("SoakDoc", doc)
            } else {
                ("SoakLog", log)
            };
            if matches!(op, 52..=59 | 72..=77) {
                let update = peer_increment(tx, entity, &id, "n");
                tx.execute(
                    "SELECT pylon_crdt_apply_update($1, $2, $3, $4)",
                    &[&entity, &id, fields, &update],
                )?;
            } else {
                tx.execute(
                    "SELECT pylon_crdt_apply_patch($1, $2, $3, '{\"n\":{\"increment\":1}}')",
                    &[&entity, &id, fields],
                )?;
            }
            Some((entity, id))
        }
        78..=81 => {
            tx.execute("SELECT pylon_crdt_compact('SoakLog', $1)", &[&log])?;
            None
        }
        82..=83 => {
            let mode = if rng.gen_bool(0.5) { "log" } else { "snapshot" };
            tx.execute("SELECT pylon_crdt_set_storage('SoakLog', $1)", &[&mode])?;
            None
        }
        _ => {
            tx.query_one(
                "SELECT pylon_crdt_project('SoakDoc', $1, $2), length(pylon_crdt_snapshot('SoakLog', $3)),
                        pylon_crdt_project('soak_items', $4)",
                &[&doc, fields, &log, &item],
            )?;
            None
        }
    })
}

/// Runs `txns` transactions and counts what committed.
fn soak_connection(url: &str, id: usize, txns: usize) -> Tally {
    let mut c = connect(url);
    let mut rng = StdRng::seed_from_u64(1400 + id as u64);
    let fields = doc_fields();
    let mut tally = Tally::default();
    for n in 0..txns {
        let ending = match rng.gen_range(0..100) {
            0..=59 => "commit",
            60..=74 => "rollback",
            75..=89 => "prepare, commit prepared",
            _ => "prepare, rollback prepared",
        };
        let gid = format!("soak-{id}-{n}");
        let mut pending: Vec<Target> = Vec::new();
        let result = (|| -> Result<(), postgres::Error> {
            let mut tx = c.transaction()?;
            for _ in 0..rng.gen_range(1..=4) {
                if rng.gen_bool(0.3) {
                    // A savepoint around the operation, released or rolled back.
                    let mut sp = tx.savepoint("op")?;
                    let target = operation(&mut sp, &mut rng, &fields)?;
                    if rng.gen_bool(0.5) {
                        sp.commit()?; // RELEASE
                        pending.extend(target);
                    } else {
                        sp.rollback()?; // ROLLBACK TO, then RELEASE
                    }
                } else {
                    pending.extend(operation(&mut tx, &mut rng, &fields)?);
                }
            }
            match ending {
                "commit" => tx.commit(),
                "rollback" => {
                    pending.clear();
                    tx.rollback()
                }
                _ => {
                    tx.batch_execute(&format!("PREPARE TRANSACTION '{gid}'"))?;
                    // The transaction object must not roll back what is now prepared.
                    std::mem::forget(tx);
                    Ok(())
                }
            }
        })();
        let result = result.and_then(|()| match ending {
            "prepare, commit prepared" => c.batch_execute(&format!("COMMIT PREPARED '{gid}'")),
            "prepare, rollback prepared" => {
                pending.clear();
                c.batch_execute(&format!("ROLLBACK PREPARED '{gid}'"))
            }
            _ => Ok(()),
        });
        let outcome = match result {
            Ok(()) => {
                for target in pending {
                    *tally.committed.entry(target).or_default() += 1;
                }
                ending.to_string()
            }
            Err(e) => {
                // The transaction rolled back (a deadlock between writers that lock rows in
                // different orders is the expected kind); nothing of it counts.
                let code =
                    sqlstate(&e).unwrap_or_else(|| panic!("connection {id}: no SQLSTATE: {e}"));
                assert!(
                    matches!(code.as_str(), "40P01" | "40001"),
                    "connection {id}, transaction {n}: unexpected error {code}: {e:?}"
                );
                // A failed PREPARE leaves nothing prepared; make sure the session is idle.
                let _ = c.batch_execute("ROLLBACK");
                format!("failed {code}")
            }
        };
        *tally.outcomes.entry(outcome).or_default() += 1;
    }
    tally
}

fn counter_of(projection: &Value, field: &str) -> i64 {
    projection[field].as_f64().unwrap_or(0.0) as i64
}

/// Waits until `standby` has replayed everything `primary` has written.
fn wait_for_replay(primary: &mut Client, standby: &mut Client) {
    let lsn: String = primary
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .unwrap()
        .get(0);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done: bool = standby
            .query_one(
                "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                &[&lsn],
            )
            .unwrap()
            .get(0);
        if done {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the standby did not replay up to {lsn}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn mixed_soak_counts_every_committed_increment_once() {
    let conns = env_usize("PYLON_CRDT_SOAK_CONNECTIONS", 16);
    let txns = env_usize("PYLON_CRDT_SOAK_TXNS", 40);
    let mut admin = admin();
    let prepared: String = admin
        .query_one("SHOW max_prepared_transactions", &[])
        .unwrap()
        .get(0);
    if prepared.parse::<usize>().unwrap_or(0) < conns {
        // Prepared transactions are off by default; the setting needs a restart.
        admin
            .batch_execute(&format!(
                "ALTER SYSTEM SET max_prepared_transactions = {}",
                conns * 2
            ))
            .unwrap();
        drop(admin);
        cluster("stop");
        cluster("start");
    }
    let url = fresh_db("soak");
    let mut c = connect(&url);
    let fields = doc_fields();
    c.batch_execute(
        "CREATE TABLE soak_items (id text PRIMARY KEY, votes int NOT NULL DEFAULT 0, note text NOT NULL DEFAULT '');
         SELECT pylon_crdt_enable('soak_items', '{\"votes\":{\"type\":\"int\",\"crdt\":\"counter\"},\"note\":\"richtext\"}');
         SELECT pylon_crdt_set_storage('SoakLog', 'log');",
    )
    .unwrap();
    for row in 0..ROWS {
        c.execute(
            "INSERT INTO soak_items (id) VALUES ($1)",
            &[&format!("i{row}")],
        )
        .unwrap();
        for entity in ["SoakDoc", "SoakLog"] {
            c.execute(
                "SELECT pylon_crdt_apply_patch($1, $2, $3, '{\"n\":0,\"body\":\"\"}')",
                &[
                    &entity,
                    &format!("{}{row}", &entity[4..5].to_lowercase()),
                    &fields,
                ],
            )
            .unwrap();
        }
    }
    // A standby follows the primary through the whole soak.
    cluster("standby");
    let standby_url = url.replace(&format!(":{}/", port()), &format!(":{}/", port() + 300));
    let mut standby = connect_retry(&standby_url, Duration::from_secs(30));

    let start = Instant::now();
    let handles: Vec<_> = (0..conns)
        .map(|id| {
            let url = url.clone();
            thread::spawn(move || soak_connection(&url, id, txns))
        })
        .collect();
    let mut committed: BTreeMap<Target, i64> = BTreeMap::new();
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for handle in handles {
        let tally = handle.join().expect("soak connection");
        for (target, n) in tally.committed {
            *committed.entry(target).or_default() += n;
        }
        for (outcome, n) in tally.outcomes {
            *outcomes.entry(outcome).or_default() += n;
        }
    }
    let elapsed = start.elapsed();
    println!(
        "soak: {conns} connections x {txns} transactions in {elapsed:.1?}: {outcomes:?}; {} increments committed",
        committed.values().sum::<i64>()
    );
    let prepared_left: i64 = c
        .query_one("SELECT count(*) FROM pg_prepared_xacts", &[])
        .unwrap()
        .get(0);
    assert_eq!(prepared_left, 0, "no prepared transaction is left behind");

    // Every counter ends at exactly what committed: in the docs, and in the enabled table's
    // columns.
    let mut problems = Vec::new();
    for row in 0..ROWS {
        for (entity, id) in [
            ("soak_items", format!("i{row}")),
            ("SoakDoc", format!("d{row}")),
            ("SoakLog", format!("l{row}")),
        ] {
            let field = if entity == "soak_items" { "votes" } else { "n" };
            let projection: Value = if entity == "soak_items" {
                c.query_one("SELECT pylon_crdt_project($1, $2)", &[&entity, &id])
                    .unwrap()
                    .get(0)
            } else {
                c.query_one(
                    "SELECT pylon_crdt_project($1, $2, $3)",
                    &[&entity, &id, &fields],
                )
                .unwrap()
                .get(0)
            };
            let want = committed.get(&(entity, id.clone())).copied().unwrap_or(0);
            if counter_of(&projection, field) != want {
                problems.push(format!("{entity}/{id}: doc {projection}, committed {want}"));
            }
            if entity == "soak_items" {
                let column: i32 = c
                    .query_one("SELECT votes FROM soak_items WHERE id = $1", &[&id])
                    .unwrap()
                    .get(0);
                if column as i64 != want {
                    problems.push(format!("{entity}/{id}: column {column}, committed {want}"));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "counts are not exact:\n{}",
        problems.join("\n")
    );
    let verified = verify(&mut c, None);
    assert!(verified.is_empty(), "pylon_crdt_verify: {verified:?}");

    // The standby ends with the same docs, byte for byte, and reads them the same.
    wait_for_replay(&mut c, &mut standby);
    let docs = "SELECT string_agg(entity || '/' || row_id || '=' || md5(snapshot), ' ' ORDER BY entity, row_id)
                  FROM _pylon_crdt_snapshots";
    let logs = "SELECT count(*) FROM _pylon_crdt_updates";
    let reads = "SELECT string_agg(pylon_crdt_project('soak_items', id)::text, ' ' ORDER BY id) FROM soak_items";
    for query in [docs, logs, reads] {
        let on_primary: Option<String> = c
            .query_one(&format!("SELECT ({query})::text"), &[])
            .unwrap()
            .get(0);
        let on_standby: Option<String> = standby
            .query_one(&format!("SELECT ({query})::text"), &[])
            .unwrap()
            .get(0);
        assert_eq!(
            on_standby, on_primary,
            "the standby differs from the primary: {query}"
        );
    }
    let standby_problems: i64 = standby
        .query_one("SELECT count(*) FROM pylon_crdt_verify()", &[])
        .unwrap()
        .get(0);
    assert_eq!(standby_problems, 0, "pylon_crdt_verify on the standby");
    drop(standby);
    cluster("standby-stop");
}
