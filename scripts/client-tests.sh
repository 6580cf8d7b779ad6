#!/usr/bin/env bash
# Client-side tests over real connections (tests/client, a crate of its own): concurrency,
# interlock with the pylon runtime's lock, crash recovery (kill -9 of a backend and of the
# postmaster), hostile input, panics and security. They run against a DEDICATED cluster
# (port 28839, data under /var/tmp/pylon_crdt_client), started here and stopped at the end,
# so the demo/regress cluster on 28815 is never touched. The extension must be installed in
# the system Postgres (`scripts/cluster.sh install`; pass --install to do it here).
#
#   scripts/client-tests.sh                  run everything
#   scripts/client-tests.sh --install        install the extension (debug build) first
#   scripts/client-tests.sh -- security      extra arguments go to `cargo test` (a filter)
#
# Knobs (environment): PYLON_CRDT_CLIENT_CONNECTIONS (16) and PYLON_CRDT_CLIENT_INCREMENTS
# (500) for the counter test, PYLON_CRDT_CLIENT_TEXT_ROUNDS (40), PYLON_CRDT_CLIENT_MIXED_OPS
# (100), PYLON_CRDT_CLIENT_FUZZ_INPUTS (100000), PYLON_CRDT_CLIENT_FUZZ_CONNECTIONS (4).
set -euo pipefail
cd "$(dirname "$0")/.."
# The shared target directory of the main work directory, chosen before WORK changes below.
source scripts/cargo-env.sh

export PYLON_CRDT_PORT=28839
export PYLON_CRDT_WORK=/var/tmp/pylon_crdt_client

cargo_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --install) scripts/cluster.sh install; shift ;;
    --) shift; cargo_args=("$@"); break ;;
    *) cargo_args+=("$1"); shift ;;
  esac
done

# Build first, so the cluster is not left running for a compile error.
cargo test --manifest-path tests/client/Cargo.toml --no-run

export PYLON_CRDT_URL
PYLON_CRDT_URL=$(scripts/cluster.sh start | tail -n 1)
trap 'scripts/cluster.sh stop' EXIT
# Inputs saved by an earlier hostile-input run that lost connections.
rm -rf "$PYLON_CRDT_WORK/crash-inputs"

# One test at a time: the crash and panic tests reset every connection of the cluster, and
# the load tests want the machine to themselves. Test files run one after another anyway.
cargo test --manifest-path tests/client/Cargo.toml --no-fail-fast "${cargo_args[@]}" -- --test-threads=1 --nocapture
