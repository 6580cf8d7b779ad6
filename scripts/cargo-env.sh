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
# Cargo decides that a crate is built by comparing its files' mtimes with its last build, and
# records those files relative to the crate: files of another checkout that are older than the
# last build from here (edited before it, say) would look built, and the tests would run that
# build. So when the checkout using the directory changes, this project's own crates (never the
# dependencies) are cleaned once and build again from this checkout.
_pylon_crdt_checkout="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
if [ "$(cat "$CARGO_TARGET_DIR/.pylon_crdt_checkout" 2>/dev/null)" != "$_pylon_crdt_checkout" ]; then
  for _pylon_crdt_crate in .:pylon_crdt tests/client:pylon_crdt_client_tests bench:pylon_crdt_bench; do
    cargo clean --quiet --manifest-path "$_pylon_crdt_checkout/${_pylon_crdt_crate%%:*}/Cargo.toml" \
      -p "${_pylon_crdt_crate#*:}" 2>/dev/null || true
  done
  echo "$_pylon_crdt_checkout" >"$CARGO_TARGET_DIR/.pylon_crdt_checkout"
fi
unset _pylon_crdt_checkout _pylon_crdt_crate
# cargo-pgrx adds `-Wl,--no-gc-sections` to the rustflags of its library builds, which gives
# every dependency a second build apart from `cargo test`'s; build.rs passes the flag to this
# crate's library link alone instead.
export CARGO_PGRX_DISABLE_GC_SECTIONS_WORKAROUND=1
