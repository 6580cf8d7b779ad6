# Sourced by every script that builds: one cargo target directory per machine, shared by every
# checkout and clone on it, so a fresh clone (the way CI runs) compiles only this project's
# own crates and reuses pgrx, Loro and the rest from the last build. Outside the checkout, under
# $PYLON_CRDT_WORK (default /var/tmp/pylon_crdt), beside the clusters; a caller's own
# CARGO_TARGET_DIR wins. Cargo locks the directory while it builds, and the workspace members'
# artifact hashes are relative to their workspace root, so clones at different paths reuse (and
# overwrite) one set of this crate's artifacts instead of piling up their own.
#   PYLON_CRDT_TARGET_WARM   "warm" when the directory held an earlier build, else "cold"
if [ -z "${CARGO_TARGET_DIR:-}" ]; then
  export CARGO_TARGET_DIR="${PYLON_CRDT_WORK:-/var/tmp/pylon_crdt}/target"
fi
if [ -z "${PYLON_CRDT_TARGET_WARM:-}" ]; then
  if [ -d "$CARGO_TARGET_DIR/debug/deps" ]; then
    export PYLON_CRDT_TARGET_WARM=warm
  else
    export PYLON_CRDT_TARGET_WARM=cold
  fi
fi
mkdir -p "$CARGO_TARGET_DIR"
# cargo-pgrx adds `-Wl,--no-gc-sections` to the rustflags of its library builds, which gives
# every dependency a second build apart from `cargo test`'s; build.rs passes the flag to this
# crate's library link alone instead.
export CARGO_PGRX_DISABLE_GC_SECTIONS_WORKAROUND=1
