#!/usr/bin/env bash
# The .deb that scripts/package.sh builds installs into the system Postgres 15 with dpkg and
# works from its own files alone (no Rust, no cargo-pgrx): CREATE EXTENSION, a write, the
# sidecar. Runs on the apt Postgres 15 only. It packages the dev-profile build that
# `scripts/cluster.sh install` made a moment ago (nothing compiles again): what is tested here is
# the package, whose files and layout are the same whichever profile built the library. The
# release build (fat LTO) is `scripts/package.sh 15`'s default, and the benchmark's.
source "$(dirname "$0")/lib.sh"
[ "$PG_MAJOR" = 15 ] || { echo "skip - the .deb is tested on the apt Postgres 15"; exit 0; }

deb=$(scripts/package.sh --profile dev 15 | tail -n 1)
pkglibdir=$("$PG_CONFIG" --pkglibdir)
extdir="$("$PG_CONFIG" --sharedir)/extension"
# Only the package's files may serve CREATE EXTENSION: drop what `cargo pgrx install` put there.
rm -f "$pkglibdir/pylon_crdt.so" "$extdir"/pylon_crdt*
dpkg -i "$deb" >/dev/null
check "the package installed" "install ok installed" \
  "$(dpkg-query -W -f='${Status}' postgresql-15-pylon-crdt)"
check "it owns the library" "postgresql-15-pylon-crdt: $pkglibdir/pylon_crdt.so" "$(dpkg -S "$pkglibdir/pylon_crdt.so")"
fresh_db package_deb
check "CREATE EXTENSION and a write work from the package" '{"title": "from a .deb"}|1' \
  "$(sql package_deb -c "CREATE EXTENSION pylon_crdt" \
       -c "SELECT pylon_crdt_apply_patch('Note', 'n1', '{\"title\":\"string\"}', '{\"title\":\"from a .deb\"}')" \
       -c "SELECT count(*) FROM _pylon_crdt_snapshots" | paste -sd'|')"
psql "$BASE/postgres" -X -q -c "DROP DATABASE package_deb WITH (FORCE)"
dpkg -r postgresql-15-pylon-crdt >/dev/null
# The tests that follow use the debug build again.
scripts/cluster.sh install >/dev/null
finish
