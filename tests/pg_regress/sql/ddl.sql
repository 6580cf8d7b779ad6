-- Tables that live (issue 16, first part): what pylon_crdt_enable asks of the id column, and
-- what dropping an enabled table does.
\set fields '{"title":"string","votes":{"type":"int","crdt":"counter"}}'

-- The id column must identify a row by itself: NOT NULL with a primary key or unique index on
-- exactly that column. Otherwise rows would share a doc, so enable refuses (42P10).
CREATE TABLE pairs (a text, b text, title text, votes int, PRIMARY KEY (a, b));
SELECT expect_error($$SELECT pylon_crdt_enable('pairs', '{"title":"string"}', id_column => 'a')$$);
CREATE TABLE loose (id text, title text, votes int);
SELECT expect_error($$SELECT pylon_crdt_enable('loose', '{"title":"string"}')$$);
CREATE UNIQUE INDEX loose_id ON loose (id);
SELECT expect_error($$SELECT pylon_crdt_enable('loose', '{"title":"string"}')$$);
ALTER TABLE loose ALTER COLUMN id SET NOT NULL;
SELECT pylon_crdt_enable('loose', :'fields');
SELECT entity, id_column FROM _pylon_crdt_registry WHERE entity = 'loose';

-- Dropping an enabled table drops its registration and its docs, as deleting its rows would:
-- a new table of that name starts from nothing, and pylon_crdt_verify stays clean.
INSERT INTO loose VALUES ('r1', 'first', 1), ('r2', 'second', 2);
SELECT count(*) AS docs FROM _pylon_crdt_snapshots WHERE entity = 'loose';
DROP TABLE loose;
SELECT count(*) AS registrations FROM _pylon_crdt_registry WHERE entity = 'loose';
SELECT count(*) AS docs FROM _pylon_crdt_snapshots WHERE entity = 'loose';
SELECT * FROM pylon_crdt_verify();
CREATE TABLE loose (id text PRIMARY KEY, title text, votes int);
SELECT pylon_crdt_enable('loose', :'fields');
INSERT INTO loose VALUES ('r1', 'new', 5);
SELECT pylon_crdt_project('loose', 'r1');

-- The owner may drop its own enabled table without any right on the extension's tables.
CREATE ROLE pylon_ddl_owner;
GRANT CREATE ON SCHEMA public TO pylon_ddl_owner;
SET ROLE pylon_ddl_owner;
CREATE TABLE owned (id text PRIMARY KEY, title text);
SELECT pylon_crdt_enable('owned', '{"title":"string"}');
INSERT INTO owned VALUES ('o1', 'mine');
DROP TABLE owned;
RESET ROLE;
SELECT count(*) AS registrations FROM _pylon_crdt_registry WHERE entity = 'owned';
SELECT count(*) AS docs FROM _pylon_crdt_snapshots WHERE entity = 'owned';

-- A registration left behind by a drop with event triggers off is reported by
-- pylon_crdt_verify, not an error, and the next drop of any table sweeps it.
ALTER EVENT TRIGGER _pylon_crdt_forget_dropped_tables DISABLE;
DROP TABLE loose;
ALTER EVENT TRIGGER _pylon_crdt_forget_dropped_tables ENABLE;
SELECT * FROM pylon_crdt_verify();
SELECT expect_error($$SELECT pylon_crdt_project('loose', 'r1')$$);
DROP TABLE pairs;
SELECT * FROM pylon_crdt_verify();
SELECT count(*) AS docs FROM _pylon_crdt_snapshots WHERE entity = 'loose';

REVOKE CREATE ON SCHEMA public FROM pylon_ddl_owner;
DROP ROLE pylon_ddl_owner;
