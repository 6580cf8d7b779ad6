//! Looks for inputs that make Loro panic, client-side, the way the extension uses a fresh
//! row's doc (import, read, export a snapshot): `cargo run --release --example panic_search --
//! FIRST_SEED COUNT OUT_DIR`. Each panicking input is saved as `<kind>-<seed>.bin`, where kind
//! says whether dropping the doc afterwards panics too (`poisoned`: inside a Postgres backend
//! that drop runs while the ERROR unwinds, and aborts the process) or not (`clean`). An input
//! whose allocation fails aborts this process; the last line printed names its seed. A fifth
//! argument `dump` saves every input as `input-<seed>.bin` before trying it.

use loro::{ExportMode, LoroDoc};
use pylon_crdt_client_tests::fuzz::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::panic::{catch_unwind, AssertUnwindSafe};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let first: u64 = args[1].parse().unwrap();
    let count: u64 = args[2].parse().unwrap();
    let out = std::path::PathBuf::from(&args[3]);
    std::fs::create_dir_all(&out).unwrap();
    std::panic::set_hook(Box::new(|info| {
        if let Some(l) = info.location() {
            println!(
                "  at {}:{}",
                l.file().rsplit("/src/").next().unwrap_or(""),
                l.line()
            );
        }
    }));
    let corpus = client_corpus(&mut StdRng::seed_from_u64(0x5eed));
    for seed in first..first + count {
        let mut rng = StdRng::seed_from_u64(seed);
        let bytes = mutate(&mut rng, &corpus.blobs);
        println!("seed {seed}");
        if args.get(4).map(String::as_str) == Some("dump") {
            std::fs::write(out.join(format!("input-{seed}.bin")), &bytes).unwrap();
        }
        let doc = LoroDoc::new();
        let r = catch_unwind(AssertUnwindSafe(|| {
            if doc.import(&bytes).is_ok() {
                doc.set_peer_id(7).unwrap();
                let _ = doc.get_map("row").get_deep_value();
                let _ = doc.export(ExportMode::Snapshot);
            }
        }));
        if r.is_err() {
            let dropped = catch_unwind(AssertUnwindSafe(move || drop(doc)));
            let kind = if dropped.is_err() {
                "poisoned"
            } else {
                "clean"
            };
            println!("PANIC {kind} seed {seed} len {}", bytes.len());
            std::fs::write(out.join(format!("{kind}-{seed}.bin")), &bytes).unwrap();
        }
    }
}
