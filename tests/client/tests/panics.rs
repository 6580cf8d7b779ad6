//! Inputs that make Loro 1.17 panic or ask for an impossible allocation (found with
//! `examples/panic_search.rs`, saved in `fixtures/`), sent as peer updates to a fresh row:
//! the extension must answer with an ERROR (a panic is XX000) and the backend must stay up
//! (same pid, still answering, no crash in the server log).
//!
//! A crash here resets every connection of the cluster, so these tests take `exclusive()`.

use std::path::PathBuf;
use std::time::Duration;

use pylon_crdt_client_tests::fuzz::fuzz_fields;
use pylon_crdt_client_tests::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// Sends each fixture to a fresh row; returns (fixture, outcome) lines and whether all kept
/// the backend alive with the expected SQLSTATE.
fn replay(db: &str, fixtures: &[(&str, &[&str])]) -> (Vec<String>, bool) {
    let url = fresh_db(db);
    let fields = fuzz_fields();
    let mut outcomes = Vec::new();
    let mut all_ok = true;
    for (i, (name, want)) in fixtures.iter().enumerate() {
        let bytes = fixture(name);
        let mut c = connect_retry(&url, Duration::from_secs(60));
        let pid: i32 = c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
        let mark = log_mark();
        let row_id = format!("p{i}");
        let r = c.query_one(
            "SELECT pylon_crdt_apply_update('Hostile', $1, $2, $3)",
            &[&row_id, &fields, &bytes],
        );
        let outcome = match &r {
            Ok(_) => "accepted".to_string(),
            Err(e) => match e.as_db_error() {
                Some(db) => format!("ERROR {}: {}", db.code().code(), db.message()),
                None => format!("backend crashed ({e})"),
            },
        };
        let alive = c
            .query_one("SELECT pg_backend_pid()", &[])
            .map(|r| r.get::<_, i32>(0) == pid)
            .unwrap_or(false);
        if !alive {
            // A crash resets the cluster; wait until it accepts connections again (the
            // postmaster has logged the crash by then).
            let _ = connect_retry(&url, Duration::from_secs(60));
        }
        let crashes = crash_lines_since(&mark);
        let code_ok = match &r {
            Err(e) => sqlstate(e).is_some_and(|s| want.contains(&s.as_str())),
            Ok(_) => false,
        };
        if !(alive && crashes.is_empty() && code_ok) {
            all_ok = false;
        }
        outcomes.push(format!(
            "{name}: {outcome}; backend {}{}",
            if alive { "alive" } else { "gone" },
            crashes
                .iter()
                .map(|l| format!("\n    log: {l}"))
                .collect::<String>()
        ));
    }
    for o in &outcomes {
        println!("{o}");
    }
    (outcomes, all_ok)
}

/// Loro panics inside `import`/`export` on these updates, and leaves its internal mutex
/// poisoned, so dropping the doc panics again. The extension must still answer XX000 and keep
/// the backend: the doc must not be dropped while the ERROR unwinds (a panic during unwinding
/// aborts the process, and the postmaster then resets every connection of the cluster).
#[test]
fn loro_panics_are_xx000_and_the_backend_survives() {
    let _guard = exclusive();
    // The first three panic inside the extension's import; the last two panic in a plain
    // loro client only at a later step the extension does not reach (it stops at a decode
    // error or a pending update first).
    let (outcomes, ok) = replay(
        "panics",
        &[
            ("loro-panic-change_store-1414.bin", &["XX000"]),
            ("loro-panic-list_op-170.bin", &["XX000"]),
            ("loro-panic-diff_calc-1161.bin", &["XX000"]),
            ("loro-panic-block_meta_encode-229.bin", &["XX000", "22P03"]),
            ("loro-panic-oplog-1571.bin", &["XX000", "55000"]),
        ],
    );
    assert!(
        ok,
        "Loro panics must be XX000 with the backend alive:\n{}",
        outcomes.join("\n")
    );
}

/// These updates carry corrupt counts that make Loro call `Vec::with_capacity` with tens of
/// GB or TB. Rust aborts on a failed allocation (it cannot be caught), so the extension must
/// refuse them before Loro allocates; any ERROR will do, a crash will not.
#[test]
fn corrupt_counts_do_not_abort_the_backend() {
    let _guard = exclusive();
    let (outcomes, ok) = replay(
        "allocs",
        &[
            ("loro-alloc-17TB.bin", &["XX000", "22P03", "54000"]),
            ("loro-alloc-34GB.bin", &["XX000", "22P03", "54000"]),
        ],
    );
    assert!(
        ok,
        "corrupt counts must be an ERROR with the backend alive:\n{}",
        outcomes.join("\n")
    );
}
