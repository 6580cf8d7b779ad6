#!/usr/bin/env bash
# pg_dump then pg_restore into a fresh database keeps the registry, the triggers and every
# doc, and writes after the restore still merge. Uses the real tools against the local cluster.
source "$(dirname "$0")/lib.sh"

fresh_db dump_src
sql dump_src <<'SQL'
CREATE EXTENSION pylon_crdt;
SET pylon_crdt.publish = registered;
CREATE TABLE "Card" (id text PRIMARY KEY, title text, body text, votes int);
SELECT pylon_crdt_enable('"Card"', '{"title":"string","body":"richtext","votes":{"type":"int","crdt":"counter"}}');
INSERT INTO "Card" VALUES ('a', 'Alpha', 'first body', 1), ('b', 'Beta', 'second body', 2);
UPDATE "Card" SET votes = votes + 5, body = 'first body, edited' WHERE id = 'a';
SELECT pylon_crdt_apply_patch('Loose', 'x', '{"n":{"type":"int","crdt":"counter"}}', '{"n":3}');
SQL

dump=$(mktemp)
trap 'rm -f "$dump"' EXIT
"$PGBIN/pg_dump" -Fc -d "$BASE/dump_src" -f "$dump"
fresh_db dump_dst
"$PGBIN/pg_restore" --exit-on-error -d "$BASE/dump_dst" "$dump"

docs="SELECT string_agg(entity || '/' || row_id || '=' || md5(snapshot), ' ' ORDER BY entity, row_id) FROM _pylon_crdt_snapshots"
check "every doc restored byte for byte" "$(sql dump_src -c "$docs")" "$(sql dump_dst -c "$docs")"
registry="SELECT string_agg(entity || ':' || relation::text || ':' || id_column || ':' || fields::text, ' ') FROM _pylon_crdt_registry"
check "registry restored" "$(sql dump_src -c "$registry")" "$(sql dump_dst -c "$registry")"
triggers="SELECT string_agg(tgname, ' ' ORDER BY tgname) FROM pg_trigger WHERE tgrelid = '\"Card\"'::regclass"
check "triggers restored" "$(sql dump_src -c "$triggers")" "$(sql dump_dst -c "$triggers")"

# The changes feed is not dumped (transaction ids mean nothing in another database's
# history): the restored feed is empty, and a reader starts over from 0 and gets what is
# written after the restore.
feed="SELECT count(*) FROM pylon_crdt_changes('Card', 0)"
check "the feed is not dumped: 2 changed rows before, none restored" "2|0" \
  "$(sql dump_src -c "$feed")|$(sql dump_dst -c "$feed")"
sql dump_dst -c "ALTER DATABASE dump_dst SET pylon_crdt.publish = registered"

# Writes after the restore still go through the docs and merge.
sql dump_dst -c "UPDATE \"Card\" SET votes = votes + 10, body = 'first body, edited again' WHERE id = 'a'" >/dev/null
check "plain UPDATE after restore merges" "16|first body, edited again" "$(sql dump_dst -c "SELECT votes, body FROM \"Card\" WHERE id = 'a'")"
check "doc agrees after restore" '{"body": "first body, edited again", "title": "Alpha", "votes": 16}' \
  "$(sql dump_dst -c "SELECT pylon_crdt_project('Card', 'a')")"
check "function write after restore" "5" \
  "$(sql dump_dst -c "SELECT pylon_crdt_apply_patch('Loose', 'x', '{\"n\":{\"type\":\"int\",\"crdt\":\"counter\"}}', '{\"n\":{\"increment\":2}}') ->> 'n'")"
check "registered patch after restore" "Beta v2" \
  "$(sql dump_dst -c "SELECT pylon_crdt_apply_patch('Card', 'b', '{\"title\":\"Beta v2\"}') ->> 'title'")"

check "a reader starting over from 0 gets the writes made after the restore" "a,b" \
  "$(sql dump_dst -c "SELECT string_agg(row_id, ',' ORDER BY row_id) FROM pylon_crdt_changes('Card', 0)")"

psql "$BASE/postgres" -X -q -c "DROP DATABASE dump_src WITH (FORCE)" -c "DROP DATABASE dump_dst WITH (FORCE)"
finish
