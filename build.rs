//! Keeps pgrx's schema section in the extension's library without changing how anything else
//! is compiled.
//!
//! `cargo pgrx install` and `package` read the SQL schema from the `.pgrxsc` section of the
//! linked library, which the linker's `--gc-sections` may drop. cargo-pgrx guards against that
//! by adding `-Wl,--no-gc-sections` to the rustflags of every crate in its library builds; as
//! rustflags are part of an artifact's identity, every dependency then compiled twice per
//! Postgres major, once for `cargo test` and once for the library. Passing the flag to this
//! crate's own library link keeps the section just the same and lets the test harness and the
//! library share their dependencies; `scripts/cargo-env.sh` turns cargo-pgrx's injection off.
fn main() {
    let family = std::env::var("CARGO_CFG_TARGET_FAMILY").unwrap_or_default();
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    // The same targets as cargo-pgrx's own `cfg(all(target_family = "unix", not(target_os =
    // "macos")))`: GNU-ld-style linkers; macOS's ld64 has no such flag.
    if family.split(',').any(|f| f == "unix") && os != "macos" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,--no-gc-sections");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
