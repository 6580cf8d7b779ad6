-- Notifications on commit (issue 11). What a listener receives is checked over real
-- connections (tests/client/tests/notify.rs: psql prints the sender's process id with each
-- notification, so they cannot appear here); this file checks the channels and the switch.

-- One channel per entity, named after it; names past 63 bytes (Postgres' identifier limit)
-- are cut and end in a hash, so different long names stay apart.
SELECT pylon_crdt_channel('Note') AS short,
       pylon_crdt_channel('my entity "with" quotes') AS quoted,
       length(pylon_crdt_channel(repeat('x', 100))) AS long_length,
       pylon_crdt_channel(repeat('x', 100)) <> pylon_crdt_channel(repeat('x', 99)) AS long_names_differ,
       pylon_crdt_channel(repeat('é', 40)) AS multibyte;
-- A channel name LISTEN takes as it is.
LISTEN "pylon_crdt.Note";
UNLISTEN *;

-- Registered entities notify unless turned off; the switch lives in the registry, and a
-- re-enable keeps it.
CREATE TABLE nt_task (id text PRIMARY KEY, title text);
SELECT pylon_crdt_enable('nt_task', '{"title":"string"}');
SELECT notify FROM _pylon_crdt_registry WHERE entity = 'nt_task';
SELECT pylon_crdt_set_notify('nt_task', false);
SELECT notify FROM _pylon_crdt_registry WHERE entity = 'nt_task';
SELECT pylon_crdt_enable('nt_task', '{"title":"string"}');
SELECT notify FROM _pylon_crdt_registry WHERE entity = 'nt_task';
-- Writes go on either way.
INSERT INTO nt_task VALUES ('t1', 'quiet');
SELECT pylon_crdt_apply_patch('nt_task', 't1', '{"title":"still quiet"}') ->> 'title' AS title;
SELECT pylon_crdt_set_notify('nt_task', true);

-- Unregistered entities: by the setting (off by default), which only a superuser may set.
SHOW pylon_crdt.notify_unregistered;
SELECT expect_error($$SELECT pylon_crdt_set_notify('NoSuchEntity', true)$$);
CREATE ROLE nt_other;
GRANT SELECT, UPDATE ON nt_task TO nt_other;
SET ROLE nt_other;
SELECT expect_error($$SELECT pylon_crdt_set_notify('nt_task', false)$$);
SELECT expect_error($$SET pylon_crdt.notify_unregistered = on$$);
RESET ROLE;
BEGIN READ ONLY;
SELECT expect_error($$SELECT pylon_crdt_set_notify('nt_task', false)$$);
ROLLBACK;
SELECT notify FROM _pylon_crdt_registry WHERE entity = 'nt_task';

SELECT pylon_crdt_disable('nt_task');
DROP TABLE nt_task;
DROP ROLE nt_other;
