#!/usr/bin/env bash
# Sets up everything on a fresh Debian 12 machine, starts a local Postgres 15 cluster with
# pylon_crdt installed (as the `postgres` user, port ${PYLON_CRDT_PORT:-54329}), and runs a
# short demo of two writers' edits to one row merging.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
scripts/cluster.sh install >/dev/null
url=$(scripts/cluster.sh start)
psql "$url" -X -q -f sql/demo.sql
echo
echo "pylon_crdt is installed and the cluster is running: psql $url"
