#!/usr/bin/env bash
# Idempotent setup for a fresh Debian 12 machine (run as root): the system Postgres 15,
# its server headers, libclang for bindgen, sudo (pgrx's test runner uses `sudo -u`),
# cargo-pgrx pinned to the pgrx version in Cargo.toml, and `cargo pgrx init` against the
# system pg_config. Nothing downloads a Postgres build. Safe to run again: each step is
# skipped when already done.
set -euo pipefail

PGRX_VERSION="0.18.1"
PG_CONFIG="/usr/lib/postgresql/15/bin/pg_config"
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

# Debian starts a default cluster on 5432 when postgresql-15 is installed; our clusters use
# their own ports and data directories, so the default one is left alone.

if ! cargo pgrx --version 2>/dev/null | grep -q "cargo-pgrx ${PGRX_VERSION}\$"; then
  echo "setup: installing cargo-pgrx ${PGRX_VERSION} (takes a few minutes)"
  cargo install --locked cargo-pgrx --version "${PGRX_VERSION}"
fi

# Rewriting ~/.pgrx/config.toml forces a rebuild of pgrx-pg-sys, so only init when needed.
if ! grep -qs "pg15 = \"${PG_CONFIG}\"" "${HOME}/.pgrx/config.toml"; then
  echo "setup: cargo pgrx init --pg15 ${PG_CONFIG}"
  cargo pgrx init --pg15 "${PG_CONFIG}"
fi

echo "setup: done"
