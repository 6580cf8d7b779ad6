#!/usr/bin/env bash
# Sets up everything on a fresh Debian 12 machine, starts a local Postgres cluster with
# pylon_crdt installed (as the `postgres` user; Postgres 15 on port 28815 unless
# PYLON_CRDT_PG picks another major, see scripts/pg-env.sh), and runs a short demo of two
# writers' edits to one row merging.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
scripts/cluster.sh install >/dev/null
url=$(scripts/cluster.sh start)
source scripts/pg-env.sh
"$PGBIN/psql" "$url" -X -q -f sql/demo.sql
echo
echo "pylon_crdt is installed and the Postgres $PG_MAJOR cluster is running: $PGBIN/psql $url"
