-- A million rows through every bulk path of an enabled table, with default settings, each
-- checked exactly (issue 16). Fails (ON_ERROR_STOP) at the first wrong count.
--   psql -v rows=1000000 -f bench/million.sql
\set ON_ERROR_STOP 1
\if :{?rows}
\else
\set rows 1000000
\endif
\timing on
SET client_min_messages = warning;
DROP TABLE IF EXISTS million, million_populated;
CREATE TABLE million (id text PRIMARY KEY, title text, body text, votes int NOT NULL DEFAULT 0);
SELECT pylon_crdt_enable('million', '{"title":"string","body":"richtext","votes":{"type":"int","crdt":"counter"}}');
CREATE FUNCTION pg_temp.expect(what text, got bigint, want bigint) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    IF got IS DISTINCT FROM want THEN
        RAISE EXCEPTION '%: got %, want %', what, got, want;
    END IF;
    RETURN format('%s: %s', what, got);
END $$;

BEGIN;
INSERT INTO million SELECT 'r' || i, 'title ' || i, 'body ' || i, 1 FROM generate_series(1, :rows) AS i;
UPDATE million SET votes = votes + 1;
COMMIT;
SELECT pg_temp.expect('docs after INSERT and UPDATE', (SELECT count(*) FROM _pylon_crdt_snapshots WHERE entity = 'million'), :rows);
SELECT pg_temp.expect('counter total in the docs',
    (SELECT sum((pylon_crdt_project('million', id) ->> 'votes')::int) FROM million), 2 * :rows);
DELETE FROM million WHERE id LIKE 'r1%';
SELECT pg_temp.expect('docs equal rows after DELETE',
    (SELECT count(*) FROM _pylon_crdt_snapshots WHERE entity = 'million'), (SELECT count(*) FROM million));
DROP TABLE million;

CREATE TABLE million_populated (id int PRIMARY KEY, title text, votes int);
INSERT INTO million_populated SELECT i, 'row ' || i, 0 FROM generate_series(1, :rows) AS i;
SELECT pylon_crdt_enable('million_populated', '{"title":"string","votes":{"type":"int","crdt":"counter"}}');
SELECT pg_temp.expect('docs after enabling a populated table',
    (SELECT count(*) FROM _pylon_crdt_snapshots WHERE entity = 'million_populated'), :rows);
SELECT count(pylon_crdt_apply_patch('million_populated', id::text, '{"votes":{"increment":1}}')) FROM million_populated;
SELECT pg_temp.expect('backfill increments in the columns', (SELECT sum(votes) FROM million_populated), :rows);
SELECT pg_temp.expect('pylon_crdt_verify problems', (SELECT count(*) FROM pylon_crdt_verify('million_populated')), 0);
-- A schema change of every doc: title renamed to name and made a text, votes made an LWW
-- number again.
SELECT pg_temp.expect('rows migrated by pylon_crdt_alter',
    pylon_crdt_alter('million_populated', '{"name":"richtext","votes":"int"}', '{"title":"name"}'), :rows);
SELECT pg_temp.expect('names kept through the rename',
    (SELECT count(*) FROM million_populated WHERE name = 'row ' || id), :rows);
UPDATE million_populated SET votes = votes + 1;
SELECT pg_temp.expect('votes in the docs after the conversion',
    (SELECT sum((pylon_crdt_project('million_populated', id::text) ->> 'votes')::int) FROM million_populated), 2 * :rows);
SELECT pg_temp.expect('pylon_crdt_verify problems after the alter', (SELECT count(*) FROM pylon_crdt_verify('million_populated')), 0);
DROP TABLE million_populated;
