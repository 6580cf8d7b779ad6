-- Bulk writes (issue 16): one statement over many rows into an enabled table, beside the same
-- statement on a plain table of the same shape, in one run. Prints rows per second for each
-- and the enabled table's cost per row as a multiple of the plain table's.
--   psql -v rows=100000 -f bench/bulk.sql     (rows defaults to 100,000)
\set ON_ERROR_STOP 1
\if :{?rows}
\else
\set rows 100000
\endif
SET client_min_messages = warning;
DROP TABLE IF EXISTS bulk_plain, bulk_crdt, bulk_backfill;
DELETE FROM _pylon_crdt_snapshots WHERE entity IN ('bulk_crdt', 'bulk_backfill');
CREATE TABLE bulk_plain (id text PRIMARY KEY, title text, body text, votes int NOT NULL DEFAULT 0);
CREATE TABLE bulk_crdt (LIKE bulk_plain INCLUDING ALL);
CREATE TABLE bulk_backfill (LIKE bulk_plain INCLUDING ALL);
SELECT pylon_crdt_enable('bulk_crdt', '{"title":"string","body":"richtext","votes":{"type":"int","crdt":"counter"}}');
\o /dev/null
CREATE TEMP TABLE timings (n serial, step text, tbl text, seconds float8);

CREATE FUNCTION pg_temp.timed(step text, tbl text, statement text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    started timestamptz := clock_timestamp();
BEGIN
    EXECUTE statement;
    INSERT INTO timings (step, tbl, seconds) VALUES (step, tbl, extract(epoch FROM clock_timestamp() - started));
END
$$;

-- Each statement runs on both tables, plain first; CHECKPOINT between them so neither pays
-- for the other's dirty buffers.
CREATE FUNCTION pg_temp.both(step text, statement text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_temp.timed(step, 'plain', format(statement, 'bulk_plain'));
    PERFORM pg_temp.timed(step, 'crdt', format(statement, 'bulk_crdt'));
END
$$;

SELECT pg_temp.both('INSERT ... SELECT',
    'INSERT INTO %I SELECT ''r'' || i, ''title '' || i, ''body of row '' || i, i %% 7 FROM generate_series(1, ' || :rows || ') AS i');
CHECKPOINT;
SELECT pg_temp.both('UPDATE counter +1', 'UPDATE %I SET votes = votes + 1');
CHECKPOINT;
SELECT pg_temp.both('UPDATE text', 'UPDATE %I SET body = body || ''!''');
CHECKPOINT;
SELECT pg_temp.both('DELETE', 'DELETE FROM %I');
CHECKPOINT;
-- Enabling a populated table, beside copying the same rows into a plain table.
INSERT INTO bulk_backfill SELECT 'r' || i, 'title ' || i, 'body of row ' || i, i % 7 FROM generate_series(1, :rows) AS i;
CHECKPOINT;
SELECT pg_temp.timed('enable populated', 'plain', 'INSERT INTO bulk_plain SELECT * FROM bulk_backfill');
SELECT pg_temp.timed('enable populated', 'crdt',
    'SELECT pylon_crdt_enable(''bulk_backfill'', ''{"title":"string","body":"richtext","votes":{"type":"int","crdt":"counter"}}'')');
CHECKPOINT;
-- A backfill through the function, one statement over every row, beside an UPDATE.
SELECT pg_temp.timed('apply_patch backfill', 'plain', 'UPDATE bulk_plain SET title = ''t'' || id');
SELECT pg_temp.timed('apply_patch backfill', 'crdt',
    'SELECT count(pylon_crdt_apply_patch(''bulk_backfill'', id, jsonb_build_object(''title'', ''t'' || id))) FROM bulk_backfill');

\o
SELECT format('| %s | %s | %s | %s |', step,
              to_char(round(:rows / max(seconds) FILTER (WHERE tbl = 'plain')), 'FM9,999,999'),
              to_char(round(:rows / max(seconds) FILTER (WHERE tbl = 'crdt')), 'FM9,999,999'),
              round((max(seconds) FILTER (WHERE tbl = 'crdt') / max(seconds) FILTER (WHERE tbl = 'plain'))::numeric, 1) || '×')
  FROM timings GROUP BY step ORDER BY min(n);
