-- History (issue 12): how long pylon_crdt_history and pylon_crdt_project_at take on a doc of
-- 10,000 changes (each write its own transaction, so each its own Loro change). Run by
-- scripts/bench.sh in a database of its own; prints markdown rows.
--   psql -v changes=10000 -f bench/history.sql
\set ON_ERROR_STOP 1
\if :{?changes}
\else
\set changes 10000
\endif
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pylon_crdt;
DROP TABLE IF EXISTS history_bench;
CREATE TABLE history_bench (id text PRIMARY KEY, title text, body text, votes int);
SELECT pylon_crdt_enable('history_bench', '{"title":"string","body":"richtext","votes":{"type":"int","crdt":"counter"}}') IS NULL AS enabled \gset
INSERT INTO history_bench VALUES ('h', 'start', '', 0);
CREATE PROCEDURE pg_temp.edits(n int) LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..n LOOP
        PERFORM pylon_crdt_apply_patch('history_bench', 'h',
            CASE i % 3 WHEN 0 THEN jsonb_build_object('title', 'title ' || i)
                       WHEN 1 THEN jsonb_build_object('body', 'body ' || i)
                       ELSE '{"votes":{"increment":1}}' END);
        COMMIT;
    END LOOP;
END $$;
CALL pg_temp.edits(:changes - 1);
SELECT now() - interval '1 second' AS past \gset
\c
SELECT clock_timestamp() AS t0 \gset
SELECT count(*) AS listed FROM pylon_crdt_history('history_bench', 'h') \gset
SELECT format('| pylon_crdt_history, a doc of %s changes (a new session: decoded, then listed) | %s ms |', :listed,
              round(extract(epoch FROM clock_timestamp() - :'t0'::timestamptz)::numeric * 1000));
SELECT clock_timestamp() AS t0 \gset
SELECT pylon_crdt_project_at('history_bench', 'h', :'past'::timestamptz) IS NOT NULL AS projected \gset
SELECT format('| pylon_crdt_project_at a time, the same doc | %s ms |',
              round(extract(epoch FROM clock_timestamp() - :'t0'::timestamptz)::numeric * 1000));
DROP TABLE history_bench;
