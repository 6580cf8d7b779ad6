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
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pg-env.sh

as_postgres() {
  if [ "$(id -u)" = 0 ]; then sudo -u postgres "$@"; else "$@"; fi
}

case "${1:-}" in
  start)
    install -d -m 755 "$WORK"
    if [ ! -f "$DATA/PG_VERSION" ]; then
      if [ "$(id -u)" = 0 ]; then install -d -o postgres -g postgres -m 700 "$DATA"; else install -d -m 700 "$DATA"; fi
      as_postgres "$PGBIN/initdb" -D "$DATA" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-instructions >/dev/null
    fi
    # The wheel builds' contrib modules that use libpq (dblink) carry the builder's RUNPATH
    # (/opt/postgresql/lib) and would load the system's older libpq: point them at their own.
    libs=()
    [ "$PG_MAJOR" = 15 ] || libs=(env "LD_LIBRARY_PATH=$("$PG_CONFIG" --libdir)")
    if ! as_postgres "$PGBIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
      as_postgres "${libs[@]}" "$PGBIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w \
        -o "-p $PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=''" start >/dev/null
    fi
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
  *)
    echo "usage: $0 start|stop|install|url" >&2
    exit 2
    ;;
esac
