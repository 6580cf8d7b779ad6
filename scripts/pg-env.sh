# Sourced by the scripts and tool tests: which Postgres they work against. PYLON_CRDT_PG picks
# the major (default 15, the apt one; 14, 16, 17 and 18 come from scripts/postgres-versions.sh).
# Each major has a local cluster of its own (port and data directory), so they can run side
# by side:
#   PG_MAJOR PG_CONFIG PGBIN   the server's tools
#   PORT DATA                  the local cluster (PYLON_CRDT_PORT overrides the port)
#   WORK                       where clusters live ($PYLON_CRDT_WORK, /var/tmp/pylon_crdt)
_pg_env_scripts="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PG_MAJOR="${PYLON_CRDT_PG:-15}"
PG_CONFIG="$("$_pg_env_scripts/postgres-versions.sh" --print-pg-config "$PG_MAJOR")"
WORK="${PYLON_CRDT_WORK:-/var/tmp/pylon_crdt}"
if [ "$PG_MAJOR" = 15 ]; then
  PORT="${PYLON_CRDT_PORT:-54329}"
  DATA="$WORK/cluster"
else
  PORT="${PYLON_CRDT_PORT:-544$PG_MAJOR}"
  DATA="$WORK/cluster-$PG_MAJOR"
fi
PGBIN="$(dirname "$PG_CONFIG")"
# pg_regress ships with pgxs: <pkglibdir>/pgxs/src/test/regress/pg_regress.
PG_REGRESS="$(dirname "$("$PG_CONFIG" --pgxs 2>/dev/null || echo /nonexistent/x)")/../test/regress/pg_regress"
unset _pg_env_scripts
