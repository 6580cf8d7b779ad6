# Shared by the tool-level tests: a fresh database on the local cluster of the Postgres
# PYLON_CRDT_PG picks (scripts/pg-env.sh), and assertions.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/pg-env.sh"
BASE="postgresql://postgres@127.0.0.1:$PORT"
PATH="$PGBIN:$PATH"
passed=0
failed=0

fresh_db() { # name
  psql "$BASE/postgres" -X -q -c "DROP DATABASE IF EXISTS \"$1\" WITH (FORCE)" -c "CREATE DATABASE \"$1\""
}

sql() { # db, sql... : prints unaligned, tuples only
  local db=$1; shift
  psql "$BASE/$db" -X -q -A -t -v ON_ERROR_STOP=1 "$@"
}

check() { # description, expected, actual
  if [ "$2" = "$3" ]; then
    passed=$((passed + 1)); echo "ok - $1"
  else
    failed=$((failed + 1)); echo "FAIL - $1"; echo "  expected: $2"; echo "  got:      $3"
  fi
}

finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" = 0 ]
}
