# Sourced by the scripts and tool tests: which Postgres they work against. PYLON_CRDT_PG picks
# the major (default 15, the apt one; 14, 16, 17 and 18 come from scripts/postgres-versions.sh).
# Each major has a local cluster of its own (port and data directory), so they can run side
# by side:
#   PG_MAJOR PG_CONFIG PGBIN   the server's tools
#   PORT DATA                  the local cluster (PYLON_CRDT_PORT overrides the port)
#   WORK                       where clusters live ($PYLON_CRDT_WORK, /var/tmp/pylon_crdt)
# and the functions that make and start a test cluster (as_postgres, init_server,
# start_server), shared by scripts/cluster.sh and the tool tests' own clusters.
_pg_env_scripts="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PG_MAJOR="${PYLON_CRDT_PG:-15}"
PG_CONFIG="$("$_pg_env_scripts/postgres-versions.sh" --print-pg-config "$PG_MAJOR")"
WORK="${PYLON_CRDT_WORK:-/var/tmp/pylon_crdt}"
# Every test port is below Linux's ephemeral range (32768-60999): a port in it can be held by
# the TIME_WAIT of one of the many client connections the tests make (closed by the client, so
# kept 60 s on its side), and a server cannot bind it then (CI once failed so: "could not start
# server"). 288NN for major NN; tests add 300 (standby) and 400/401 (active-active nodes).
if [ "$PG_MAJOR" = 15 ]; then
  PORT="${PYLON_CRDT_PORT:-28815}"
  DATA="$WORK/cluster"
else
  PORT="${PYLON_CRDT_PORT:-288$PG_MAJOR}"
  DATA="$WORK/cluster-$PG_MAJOR"
fi
PGBIN="$(dirname "$PG_CONFIG")"
# pg_regress ships with pgxs: <pkglibdir>/pgxs/src/test/regress/pg_regress.
PG_REGRESS="$(dirname "$("$PG_CONFIG" --pgxs 2>/dev/null || echo /nonexistent/x)")/../test/regress/pg_regress"
unset _pg_env_scripts

# Postgres refuses to run as root: its tools run as the `postgres` OS user.
as_postgres() {
  if [ "$(id -u)" = 0 ]; then sudo -u postgres "$@"; else "$@"; fi
}

init_server() { # bindir, data directory: initdb as `postgres` unless it holds a cluster
  [ ! -f "$2/PG_VERSION" ] || return 0
  if [ "$(id -u)" = 0 ]; then install -d -o postgres -g postgres -m 700 "$2"; else install -d -m 700 "$2"; fi
  as_postgres "$1/initdb" -D "$2" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-instructions >/dev/null
}

# Starts the cluster (initdb first if needed) unless it runs: TCP on 127.0.0.1 only, trust
# auth, a test cluster; its log is <data>/server.log.
start_server() { # bindir, data directory, port
  init_server "$1" "$2"
  ! as_postgres "$1/pg_ctl" -D "$2" status >/dev/null 2>&1 || return 0
  # The wheel builds' contrib modules that use libpq (dblink) carry the builder's RUNPATH
  # (/opt/postgresql/lib) and would load the system's older libpq: point them at their own.
  as_postgres env "LD_LIBRARY_PATH=$("$1/pg_config" --libdir)" "$1/pg_ctl" -D "$2" -l "$2/server.log" -w \
    -o "-p $3 -c listen_addresses=127.0.0.1 -c unix_socket_directories=''" start >/dev/null || {
    echo "start_server: the server in $2 did not start on port $3; the end of its log:" >&2
    tail -n 20 "$2/server.log" >&2 || true
    return 1
  }
}
