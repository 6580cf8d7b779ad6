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

-- Schema changes to an enabled table. Renaming the table keeps working: the registration
-- follows the table, not its name.
CREATE TABLE shop (id text PRIMARY KEY, title text, votes int, tags jsonb, note text);
SELECT pylon_crdt_enable('shop', '{"title":"string","votes":{"type":"int","crdt":"counter"},"tags":{"type":"string","crdt":"list"},"draft":"string"}');
INSERT INTO shop VALUES ('s1', 'first', 1, '[]', 'plain column');
ALTER TABLE shop RENAME TO store;
UPDATE store SET votes = votes + 1;
SELECT relation, pylon_crdt_project('shop', 's1') FROM _pylon_crdt_registry WHERE entity = 'shop';

-- Columns that hold no field change freely; a field's type may change to one that still
-- holds its kind.
ALTER TABLE store RENAME COLUMN note TO remark;
ALTER TABLE store ADD COLUMN extra int, DROP COLUMN remark;
ALTER TABLE store ALTER COLUMN votes TYPE bigint;
UPDATE store SET votes = votes + 1;
SELECT votes, pylon_crdt_project('shop', 's1') ->> 'votes' AS doc FROM store;

-- What would break the registration is refused before it commits, with what to do instead.
SELECT expect_error($$ALTER TABLE store RENAME COLUMN title TO heading$$);
SELECT expect_error($$ALTER TABLE store DROP COLUMN votes$$);
SELECT expect_error($$ALTER TABLE store RENAME COLUMN id TO key$$);
SELECT expect_error($$ALTER TABLE store ALTER COLUMN votes TYPE text$$);
SELECT expect_error($$ALTER TABLE store ADD COLUMN draft text$$);
-- (Postgres itself refuses this one, 42P16, as the id is in the primary key: the guard's own
-- refusal of a dropped NOT NULL is on `keyed` below, whose id a unique index keeps.)
SELECT expect_error($$ALTER TABLE store ALTER COLUMN id DROP NOT NULL$$);
SELECT expect_error($$ALTER TABLE store DROP CONSTRAINT shop_pkey$$);
\set VERBOSITY default
ALTER TABLE store RENAME COLUMN title TO heading;
\set VERBOSITY terse
-- A unique index that stands in for the primary key may not go either.
CREATE TABLE keyed (id text NOT NULL, title text);
CREATE UNIQUE INDEX keyed_id ON keyed (id);
SELECT pylon_crdt_enable('keyed', '{"title":"string"}');
SELECT expect_error($$DROP INDEX keyed_id$$);
SELECT expect_error($$ALTER TABLE keyed ALTER COLUMN id DROP NOT NULL$$);
CREATE UNIQUE INDEX keyed_id_too ON keyed (id);
DROP INDEX keyed_id;
SELECT expect_error($$DROP INDEX keyed_id_too$$);

-- The way to change a field's column: disable (the docs stay), change, enable again, which
-- writes the docs' values into the columns.
SELECT pylon_crdt_disable('store');
ALTER TABLE store ADD COLUMN draft text;
SELECT pylon_crdt_apply_patch('shop', 's1', '{"title":"string","votes":{"type":"int","crdt":"counter"},"tags":{"type":"string","crdt":"list"},"draft":"string"}', '{"draft":"kept in the doc"}');
SELECT pylon_crdt_enable('store', '{"title":"string","votes":{"type":"int","crdt":"counter"},"tags":{"type":"string","crdt":"list"},"draft":"string"}', entity => 'shop');
SELECT title, votes, draft FROM store;

-- CREATE TABLE ... (LIKE ...) copies columns, constraints and indexes, never triggers: the copy
-- is a plain table with no docs until it is enabled itself.
CREATE TABLE store_copy (LIKE store INCLUDING ALL);
INSERT INTO store_copy SELECT * FROM store;
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'store_copy'::regclass;
SELECT count(*) AS registrations FROM _pylon_crdt_registry WHERE relation = 'store_copy'::regclass;

-- DROP EXTENSION is refused while tables are enabled (their triggers depend on it); disable
-- them first, or DROP EXTENSION ... CASCADE, which drops the triggers and the docs and leaves
-- the tables with their last values.
SELECT expect_error($$DROP EXTENSION pylon_crdt$$);
DROP TABLE store, store_copy, keyed;
