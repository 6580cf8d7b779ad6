#!/usr/bin/env bash
# A local PostgreSQL cluster for the demo, the SQL regression files, client tests and
# benchmarks: run as the unprivileged `postgres` user (Postgres refuses root), on a port of its
# own, with a data directory of its own under $PYLON_CRDT_WORK (not under the checkout, which
# that user may not be able to enter). TCP on 127.0.0.1 only, trust auth: a test cluster.
# PYLON_CRDT_PG picks the Postgres major (default 15); each has its own port and data
# directory (scripts/pg-env.sh).
#
#   scripts/cluster.sh start     initdb if needed, start, print the connection string
#   scripts/cluster.sh stop
#   scripts/cluster.sh install   build and install pylon_crdt into that Postgres
#   scripts/cluster.sh url       print the connection string
#   scripts/cluster.sh standby   a new streaming hot standby of the (running) cluster, made
#                                with pg_basebackup -R, on port PORT+300: print its string
#   scripts/cluster.sh standby-stop   stop it and remove its data directory
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/cargo-env.sh
source scripts/pg-env.sh

case "${1:-}" in
  start)
    install -d -m 755 "$WORK"
    start_server "$PGBIN" "$DATA" "$PORT"
    echo "postgresql://postgres@127.0.0.1:$PORT/postgres"
    ;;
  stop)
    as_postgres "$PGBIN/pg_ctl" -D "$DATA" -m fast stop >/dev/null 2>&1 || true
    ;;
  install)
    # Debug build: fast to build; `cargo pgrx install --release` for benchmarks.
    # Unlink the old library first: cargo-pgrx copies over it in place, which would pull the
    # pages from under running backends that have it mapped.
    rm -f "$("$PG_CONFIG" --pkglibdir)/pylon_crdt.so"
    cargo pgrx install --pg-config "$PG_CONFIG" "${@:2}"
    ;;
  url)
    echo "postgresql://postgres@127.0.0.1:$PORT/postgres"
    ;;
  standby)
    as_postgres "$PGBIN/pg_ctl" -D "$DATA-standby" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$DATA-standby"
    if [ "$(id -u)" = 0 ]; then install -d -o postgres -g postgres -m 700 "$DATA-standby"; else install -d -m 700 "$DATA-standby"; fi
    as_postgres "$PGBIN/pg_basebackup" -h 127.0.0.1 -p "$PORT" -U postgres -D "$DATA-standby" -R -X stream -c fast
    start_server "$PGBIN" "$DATA-standby" "$((PORT + 300))"
    echo "postgresql://postgres@127.0.0.1:$((PORT + 300))/postgres"
    ;;
  standby-stop)
    as_postgres "$PGBIN/pg_ctl" -D "$DATA-standby" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$DATA-standby"
    ;;
  *)
    echo "usage: $0 start|stop|install|url|standby|standby-stop" >&2
    exit 2
    ;;
esac
