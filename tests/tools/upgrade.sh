#!/usr/bin/env bash
# Upgrades from every earlier release: install 0.1.0 (its install script is kept frozen in
# sql/), write docs through the functions and through the triggers of an enabled table,
# ALTER EXTENSION pylon_crdt UPDATE, and check that the docs, the registry and the triggers
# keep working and that the upgraded catalog equals a fresh install of this release.
# Every later release adds its upgrade script and its version to FROM_VERSIONS.
source "$(dirname "$0")/lib.sh"

FROM_VERSIONS=(0.1.0 0.2.0 0.3.0 0.4.0 0.5.0)
extdir="$("$PG_CONFIG" --sharedir)/extension"
current=$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$extdir/pylon_crdt.control")

# The extension's objects as the catalog describes them: every member with its definition,
# functions with their signature, volatility, parallel safety, strictness, security and
# settings, tables with columns, defaults, constraints, indexes, storage and privileges, and
# what pg_dump keeps.
describe() { # db
  sql "$1" <<'SQL'
SET search_path = pg_catalog, public;
WITH ext AS (SELECT oid FROM pg_extension WHERE extname = 'pylon_crdt'),
members AS (
  SELECT d.classid, d.objid FROM pg_depend d, ext
   WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e')
SELECT 'member ' || pg_describe_object(classid, objid, 0) FROM members
UNION ALL
SELECT format('function %s returns %s volatile=%s parallel=%s strict=%s secdef=%s leakproof=%s config=%s acl=%s lang=%s symbol=%s',
              p.oid::regprocedure, pg_get_function_result(p.oid), p.provolatile, p.proparallel, p.proisstrict,
              p.prosecdef, p.proleakproof, p.proconfig, p.proacl, l.lanname, p.prosrc)
  FROM members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
  JOIN pg_language l ON l.oid = p.prolang
UNION ALL
SELECT format('function %s argument defaults %s', p.oid::regprocedure, pg_get_function_arguments(p.oid))
  FROM members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
UNION ALL
SELECT format('relation %s kind=%s acl=%s options=%s', c.oid::regclass, c.relkind, c.relacl, c.reloptions)
  FROM pg_class c WHERE c.relnamespace = (SELECT extnamespace FROM pg_extension WHERE extname = 'pylon_crdt')
   AND c.relname LIKE '\_pylon\_crdt\_%'
UNION ALL
SELECT format('column %s.%s %s notnull=%s default=%s storage=%s', c.oid::regclass, a.attname,
              format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(ad.adbin, ad.adrelid), a.attstorage)
  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
 WHERE c.relnamespace = (SELECT extnamespace FROM pg_extension WHERE extname = 'pylon_crdt')
   AND c.relname LIKE '\_pylon\_crdt\_%' AND c.relkind = 'r'
UNION ALL
SELECT format('constraint %s %s', co.conrelid::regclass, pg_get_constraintdef(co.oid))
  FROM pg_constraint co JOIN pg_class c ON c.oid = co.conrelid
 WHERE c.relnamespace = (SELECT extnamespace FROM pg_extension WHERE extname = 'pylon_crdt')
   AND c.relname LIKE '\_pylon\_crdt\_%'
UNION ALL
SELECT 'index ' || pg_get_indexdef(i.indexrelid)
  FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
 WHERE c.relnamespace = (SELECT extnamespace FROM pg_extension WHERE extname = 'pylon_crdt')
   AND c.relname LIKE '\_pylon\_crdt\_%'
UNION ALL
SELECT format('dumped %s where %L', cfg::regclass, cond)
  FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS u(cfg, cond) WHERE e.extname = 'pylon_crdt'
ORDER BY 1;
SQL
}

for from in "${FROM_VERSIONS[@]}"; do
  install -m 644 "sql/pylon_crdt--$from.sql" "$extdir/"
  db="upgrade_from_${from//./_}"
  fresh_db "$db"
  sql "$db" -c "CREATE EXTENSION pylon_crdt VERSION '$from'" -c "$SAMPLE_DOCS_SQL" >/dev/null
  check "installed $from" "$from" "$(sql "$db" -c "SELECT extversion FROM pg_extension WHERE extname = 'pylon_crdt'")"
  sql "$db" -c "ALTER EXTENSION pylon_crdt UPDATE"
  check "$from updated to $current" "$current" "$(sql "$db" -c "SELECT extversion FROM pg_extension WHERE extname = 'pylon_crdt'")"
  check "$from: docs written before read back, pylon_crdt_verify finds nothing" "$SAMPLE_DOCS_READ" "$(read_sample_docs sql "$db")"
  check "$from: the enabled table has the statement trigger that stores queued docs" "pylon_crdt_flush" \
    "$(sql "$db" -c "SELECT tgname FROM pg_trigger WHERE tgrelid = 'task'::regclass AND tgname = 'pylon_crdt_flush'")"
  check_sample_writes "$from, updated" sql "$db"

  fresh_db upgrade_fresh
  sql upgrade_fresh -c "CREATE EXTENSION pylon_crdt"
  expected=$(describe upgrade_fresh)
  got=$(describe "$db")
  check "$from: the upgraded catalog equals a fresh $current install ($(wc -l <<<"$expected") lines)" "" \
    "$(diff <(echo "$expected") <(echo "$got") || true)"
  rm -f "$extdir/pylon_crdt--$from.sql"
  psql "$BASE/postgres" -X -q -c "DROP DATABASE \"$db\" WITH (FORCE)" -c "DROP DATABASE upgrade_fresh WITH (FORCE)"
done

# ALTER EXTENSION UPDATE refuses, as CREATE EXTENSION does, a sidecar that a non-superuser
# owns (0.1.0 -> 0.2.0 added the check): it would write every role's docs into that table as
# its owner. Nothing is updated; once a superuser owns the table, the update runs.
install -m 644 sql/pylon_crdt--0.1.0.sql "$extdir/"
fresh_db upgrade_owned
sql upgrade_owned -c "SET client_min_messages = warning" -c "DROP ROLE IF EXISTS pylon_sidecar_owner" -c "CREATE ROLE pylon_sidecar_owner" \
  -c "CREATE EXTENSION pylon_crdt VERSION '0.1.0'" -c "ALTER TABLE _pylon_crdt_snapshots OWNER TO pylon_sidecar_owner" >/dev/null
refusal=$(sql upgrade_owned -v VERBOSITY=verbose -c "ALTER EXTENSION pylon_crdt UPDATE" 2>&1 >/dev/null || true)
check "ALTER EXTENSION UPDATE refuses a sidecar a non-superuser owns (42501, naming the owner)" "yes" \
  "$(grep -q '^ERROR:  42501: .*owned by role pylon_sidecar_owner, which is not a superuser' <<<"$refusal" && echo yes || echo "$refusal")"
check "... and leaves the extension at 0.1.0" "0.1.0" \
  "$(sql upgrade_owned -c "SELECT extversion FROM pg_extension WHERE extname = 'pylon_crdt'")"
sql upgrade_owned -c "ALTER TABLE _pylon_crdt_snapshots OWNER TO postgres" -c "ALTER EXTENSION pylon_crdt UPDATE"
check "once a superuser owns it, the update runs" "$current" \
  "$(sql upgrade_owned -c "SELECT extversion FROM pg_extension WHERE extname = 'pylon_crdt'")"
rm -f "$extdir/pylon_crdt--0.1.0.sql"
psql "$BASE/postgres" -X -q -c "DROP DATABASE upgrade_owned WITH (FORCE)" -c "DROP ROLE pylon_sidecar_owner"
finish
