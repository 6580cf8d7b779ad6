#!/usr/bin/env bash
# loro-crdt in JS against pylon_crdt (issue 12): blobs made by two JS peers are merged and
# read by the stateless loro_* functions and taken in as peer updates; the extension's
# history shows the JS peers' changes with their messages and times, and a JS peer reads the
# stored doc, the extension's change with its author included. Node comes from
# scripts/setup.sh, loro-crdt from tests/js (npm ci: the version package-lock.json pins).
source "$(dirname "$0")/lib.sh"
js="$(cd "$(dirname "$0")/../js" && pwd)"
[ -d "$js/node_modules/loro-crdt" ] || npm ci --prefix "$js" --no-audit --no-fund >/dev/null

fresh_db js_interop
sql js_interop -c "CREATE EXTENSION pylon_crdt" >/dev/null
fields='{"title":"string","body":"richtext","votes":{"type":"int","crdt":"counter"}}'
made=$(node "$js/interop.mjs" make)
# psql reads the statements from stdin, where :'made' and :'fields' are interpolated.
q() { sql js_interop -v made="$made" -v fields="$fields" "${@:2}" <<< "$1" | paste -sd'|'; }

check "loro_merge of two JS peers' blobs projects as the JS peers merged it" "t" \
  "$(q "SELECT loro_project(loro_merge(decode(:'made'::jsonb->>'a', 'hex'), decode(:'made'::jsonb->>'b', 'hex')), :'fields')
          = (:'made'::jsonb->'merged');")"
check "the loro_merge aggregate over a column of JS blobs, in either order" "t|t" \
  "$(q "CREATE TABLE blobs AS SELECT 1 AS n, decode(:'made'::jsonb->>'a', 'hex') AS doc
                    UNION ALL SELECT 2, decode(:'made'::jsonb->>'b', 'hex');
        SELECT loro_project(loro_merge(doc ORDER BY n), :'fields') = (:'made'::jsonb->'merged') FROM blobs;
        SELECT loro_value(loro_merge(doc ORDER BY n DESC)) -> 'row' = (:'made'::jsonb->'merged') FROM blobs;")"
check "a JS blob's version, as JSON, names its two peers" "2" \
  "$(q "SELECT count(*) FROM jsonb_object_keys((SELECT loro_version_json(loro_version(loro_merge(doc))) FROM blobs));")"

# The JS peers' blobs as peer updates to a stored doc, then a write through SQL.
q "SELECT pylon_crdt_apply_update('JsNote', 'j1', :'fields', decode(:'made'::jsonb->>'a', 'hex'));" >/dev/null
check "the JS peers' updates applied to a stored doc" "t" \
  "$(q "SELECT pylon_crdt_apply_update('JsNote', 'j1', :'fields', decode(:'made'::jsonb->>'b', 'hex'))
               = (:'made'::jsonb->'merged');")"
q "SELECT pylon_crdt_apply_patch('JsNote', 'j1', :'fields', '{\"title\":\"from sql\",\"votes\":{\"increment\":10}}');" >/dev/null
check "the history shows the JS peers' messages and times, and the SQL write's author" \
  "js peer a||t|{body,title,votes}|js peer a again||t|{title}|js peer b||t|{body,votes}||postgres|t|{title,votes}" \
  "$(q "SELECT CASE WHEN role IS NULL THEN message END, role, made_at > now() - interval '1 hour', fields
          FROM pylon_crdt_history('JsNote', 'j1')
         ORDER BY lamport, message;")"  # A's second change and B's are concurrent: same Lamport time

# A JS peer reads what the extension stored.
snapshot=$(q "SELECT encode(pylon_crdt_snapshot('JsNote', 'j1'), 'hex');")
read=$(node "$js/interop.mjs" read "$snapshot")
check "a JS peer reads the stored doc as the extension projects it" "t" \
  "$(q "SELECT (:'read'::jsonb->'row') = pylon_crdt_project('JsNote', 'j1', :'fields');" -v read="$read")"
check "and sees the extension's change, the last, with its author and time" "postgres|t|t" \
  "$(q "SELECT (c->>'message')::jsonb->>'role', (c->>'timestamp')::bigint > 0,
               (c->>'lamport')::int = (SELECT max((l->>'lamport')::int) FROM jsonb_array_elements(:'read'::jsonb->'changes') l)
          FROM jsonb_array_elements(:'read'::jsonb->'changes') c
         WHERE c->>'message' LIKE '{%';" -v read="$read")"

# Docs the extension creates now hold mergeable fields (issue 17): a JS peer edits them, and
# a doc a JS client made for the same row on its own merges with the stored one.
q "SELECT pylon_crdt_apply_patch('JsNote', 'm1', :'fields', '{\"body\":\"from sql\",\"votes\":{\"increment\":5}}');" >/dev/null
edited=$(node "$js/interop.mjs" edit "$(q "SELECT encode(pylon_crdt_snapshot('JsNote', 'm1'), 'hex');")")
check "a JS peer's edit of a doc with mergeable fields, applied, projects as the JS peer sees it" "js: from sql|6|t" \
  "$(q "SELECT p->>'body', p->>'votes', p - 'title' = (:'edited'::jsonb->'row')
          FROM pylon_crdt_apply_update('JsNote', 'm1', :'fields', decode(:'edited'::jsonb->>'update', 'hex')) p;" -v edited="$edited")"
fresh=$(node "$js/interop.mjs" fresh)
check "a doc a JS client created for the row on its own merges: counters add, both texts stay" "13|t|t" \
  "$(q "SELECT p->>'votes', p->>'body' LIKE '%js: from sql%', p->>'body' LIKE '%from a js client%'
          FROM pylon_crdt_apply_update('JsNote', 'm1', :'fields', decode(:'fresh', 'hex')) p;" -v fresh="$fresh")"

psql "$BASE/postgres" -X -q -c "DROP DATABASE js_interop WITH (FORCE)"
finish
