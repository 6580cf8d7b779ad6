-- Issue 15 (the class of CVE-2018-1058): a role that can create a schema shadows, first on its
-- search_path, every operator, function, aggregate and type name the extension's SQL uses,
-- then calls every SQL function and drives every trigger path; then a superuser does the same
-- with that path. The shadows call evil.spy(), which warns, records the call and tries to make
-- the attacker a superuser. Expected: no warning below, no recorded call, no new privilege.
-- This file's own statements qualify every operator and cast, so only the extension's SQL
-- could reach a shadow.

CREATE ROLE pylon_attacker LOGIN;
DO $$ BEGIN EXECUTE pg_catalog.format('GRANT CREATE ON DATABASE %I TO pylon_attacker', pg_catalog.current_database()); END $$;

-- A superuser's own tables, created before any shadow exists.
CREATE TABLE public.secret (id text PRIMARY KEY, title text);
INSERT INTO public.secret VALUES ('s1', 'classified');
SELECT pylon_crdt_enable('public.secret', '{"title":"string"}');
CREATE TABLE public.su_task (id text PRIMARY KEY, title text, notes text, votes integer, tags jsonb);
CREATE TABLE public."SuNote" (id text PRIMARY KEY, title text, body text);
INSERT INTO public."SuNote" VALUES ('n1', NULL, NULL);

-- Statements that may fail report their SQLSTATE; no operator inside, so no shadow is hit.
CREATE FUNCTION public.sqlstate_of(statement text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE statement;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END
$$;

SET ROLE pylon_attacker;
CREATE SCHEMA evil;
GRANT USAGE ON SCHEMA evil TO PUBLIC;
CREATE TABLE evil.calls (what text, as_role text);
GRANT SELECT, INSERT ON evil.calls TO PUBLIC;
CREATE FUNCTION evil.spy(what text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    RAISE WARNING 'shadow % ran as %', what, current_user;
    BEGIN INSERT INTO evil.calls VALUES (what, current_user); EXCEPTION WHEN OTHERS THEN NULL; END;
    BEGIN EXECUTE 'ALTER ROLE pylon_attacker SUPERUSER'; EXCEPTION WHEN OTHERS THEN NULL; END;
    RETURN true;
END
$$;
GRANT EXECUTE ON FUNCTION evil.spy(text) TO PUBLIC;

-- The attacker's own entity tables: one resolved by name, one enabled.
CREATE TABLE evil."Memo" (id text PRIMARY KEY, title text, body text);
INSERT INTO evil."Memo" VALUES ('n1', 'x', NULL);
CREATE TABLE evil.task (id text PRIMARY KEY, title text, notes text, votes integer, tags jsonb);
INSERT INTO evil.task VALUES ('t0', 'before enable', NULL, 1, NULL);
SELECT pylon_crdt_enable('evil.task', '{"title":"string","notes":"richtext","votes":{"type":"int","crdt":"counter"},"tags":{"type":"string","crdt":"list"}}');

-- Operators: comparisons on every type pair the extension's SQL compares, ||, and jsonb's.
DO $gen$
DECLARE
    pair text[];
    op text;
    n int := 0;
BEGIN
    FOREACH pair SLICE 1 IN ARRAY ARRAY[
        ['text','text'], ['bytea','bytea'], ['oid','oid'], ['bigint','bigint'], ['integer','integer'],
        ['smallint','smallint'], ['smallint','integer'], ['bigint','integer'], ['integer','bigint'],
        ['name','name'], ['name','text'], ['text','name'], ['regclass','oid'], ['oid','regclass'],
        ['boolean','boolean'], ['jsonb','jsonb'], ['timestamptz','timestamptz'], ['"char"','"char"']]
    LOOP
        FOREACH op IN ARRAY ARRAY['=', '<>', '<', '>', '<=', '>=']
        LOOP
            n := n + 1;
            EXECUTE pg_catalog.format(
                'CREATE FUNCTION evil.op%s(a %s, b %s) RETURNS boolean LANGUAGE plpgsql AS %L',
                n, pair[1], pair[2],
                pg_catalog.format('BEGIN PERFORM evil.spy(%L); RETURN a OPERATOR(pg_catalog.%s) b; END',
                                  pair[1] || ' ' || op || ' ' || pair[2], op));
            EXECUTE pg_catalog.format('CREATE OPERATOR evil.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = evil.op%s)',
                                      op, pair[1], pair[2], n);
        END LOOP;
    END LOOP;
    FOREACH pair SLICE 1 IN ARRAY ARRAY[
        ['||','text','text','text'], ['||','bytea','bytea','bytea'], ['||','jsonb','jsonb','jsonb'],
        ['||','text','anynonarray','text'], ['||','anynonarray','text','text'],
        ['->','jsonb','text','jsonb'], ['->','jsonb','integer','jsonb'], ['->>','jsonb','text','text'],
        ['->>','jsonb','integer','text'], ['@>','jsonb','jsonb','boolean'], ['?','jsonb','text','boolean'],
        ['-','jsonb','text','jsonb'], ['#>','jsonb','text[]','jsonb'], ['#>>','jsonb','text[]','text']]
    LOOP
        n := n + 1;
        EXECUTE pg_catalog.format(
            'CREATE FUNCTION evil.op%s(a %s, b %s) RETURNS %s LANGUAGE plpgsql AS %L',
            n, pair[2], pair[3], pair[4],
            pg_catalog.format('BEGIN PERFORM evil.spy(%L); RETURN a OPERATOR(pg_catalog.%s) b; END',
                              pair[2] || ' ' || pair[1] || ' ' || pair[3], pair[1]));
        EXECUTE pg_catalog.format('CREATE OPERATOR evil.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = evil.op%s)',
                                  pair[1], pair[2], pair[3], n);
    END LOOP;
END
$gen$;

-- Functions: every one the extension's SQL calls, with the catalog's signature or one that
-- matches its arguments better (an exact type beats "any" or a polymorphic one).
DO $gen$
DECLARE
    f text[];
BEGIN
    FOREACH f SLICE 1 IN ARRAY ARRAY[
        ['now', '', 'timestamptz', 'pg_catalog.now()'],
        ['length', 'a text', 'integer', 'pg_catalog.length(a)'],
        ['length', 'a bytea', 'integer', 'pg_catalog.length(a)'],
        ['octet_length', 'a text', 'integer', 'pg_catalog.octet_length(a)'],
        ['octet_length', 'a bytea', 'integer', 'pg_catalog.octet_length(a)'],
        ['textcat', 'a text, b text', 'text', 'pg_catalog.textcat(a, b)'],
        ['jsonb_build_array', 'a text, b bigint, c text, d text, e jsonb', 'jsonb', 'pg_catalog.jsonb_build_array(a, b, c, d, e)'],
        ['jsonb_build_array', 'a text, b text', 'jsonb', 'pg_catalog.jsonb_build_array(a, b)'],
        ['to_jsonb', 'a anyelement', 'jsonb', 'pg_catalog.to_jsonb(a)'],
        ['to_jsonb', 'a record', 'jsonb', 'pg_catalog.to_jsonb(a)'],
        ['jsonb_populate_record', 'a anyelement, b jsonb', 'anyelement', 'pg_catalog.jsonb_populate_record(a, b)'],
        ['cardinality', 'a anyarray', 'integer', 'pg_catalog.cardinality(a)'],
        ['cardinality', 'a text[]', 'integer', 'pg_catalog.cardinality(a)'],
        ['array_position', 'a smallint[], b smallint', 'integer', 'pg_catalog.array_position(a, b)'],
        ['array_position', 'a anycompatiblearray, b anycompatible', 'integer', 'pg_catalog.array_position(a, b)'],
        ['format_type', 'a oid, b integer', 'text', 'pg_catalog.format_type(a, b)'],
        ['pg_has_role', 'a oid, b text', 'boolean', 'pg_catalog.pg_has_role(a, b)'],
        ['to_regclass', 'a text', 'regclass', 'pg_catalog.to_regclass(a)'],
        ['nextval', 'a regclass', 'bigint', 'pg_catalog.nextval(a)'],
        ['current_schemas', 'a boolean', 'name[]', 'pg_catalog.current_schemas(a)'],
        ['current_schema', '', 'name', 'pg_catalog.current_schema()'],
        ['current_database', '', 'name', 'pg_catalog.current_database()'],
        ['quote_ident', 'a text', 'text', 'pg_catalog.quote_ident(a)'],
        ['format', 'a text, b text', 'text', 'pg_catalog.format(a, b)'],
        ['pg_advisory_xact_lock', 'a integer, b integer', 'void', 'pg_catalog.pg_advisory_xact_lock(a, b)'],
        ['set_config', 'a text, b text, c boolean', 'text', 'pg_catalog.set_config(a, b, c)'],
        ['pg_extension_config_dump', 'a regclass, b text', 'void', 'pg_catalog.pg_extension_config_dump(a, b)']]
    LOOP
        EXECUTE pg_catalog.format(
            'CREATE FUNCTION evil.%I(%s) RETURNS %s LANGUAGE plpgsql AS %L',
            f[1], f[2], f[3],
            pg_catalog.format('BEGIN PERFORM evil.spy(%L); RETURN %s; END', f[1] || '(' || f[2] || ')',
                              CASE WHEN f[3] = 'void' THEN '' ELSE f[4] END));
    END LOOP;
END
$gen$;
CREATE FUNCTION evil.unnest(a text[]) RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.spy('unnest(text[])'); RETURN QUERY SELECT pg_catalog.unnest(a); END $$;
CREATE FUNCTION evil.unnest(a anyarray) RETURNS SETOF anyelement LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.spy('unnest(anyarray)'); RETURN QUERY SELECT pg_catalog.unnest(a); END $$;
CREATE FUNCTION evil.aclexplode(a aclitem[]) RETURNS TABLE (grantor oid, grantee oid, privilege_type text, is_grantable boolean)
LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.spy('aclexplode'); RETURN QUERY SELECT * FROM pg_catalog.aclexplode(a); END $$;

-- Aggregates.
CREATE FUNCTION evil.count_step(s bigint) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.spy('count(*)'); RETURN s OPERATOR(pg_catalog.+) 1; END $$;
CREATE AGGREGATE evil.count(*) (SFUNC = evil.count_step, STYPE = bigint, INITCOND = '0');
CREATE FUNCTION evil.bool_or_step(s boolean, v boolean) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.spy('bool_or'); RETURN s OR v; END $$;
CREATE AGGREGATE evil.bool_or(boolean) (SFUNC = evil.bool_or_step, STYPE = boolean);
CREATE FUNCTION evil.agg_step(s anycompatiblearray, v anycompatible) RETURNS anycompatiblearray LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.spy('array_agg'); RETURN pg_catalog.array_append(s, v); END $$;
CREATE AGGREGATE evil.array_agg(smallint) (SFUNC = evil.agg_step, STYPE = smallint[]);
CREATE AGGREGATE evil.array_agg(oid) (SFUNC = evil.agg_step, STYPE = oid[]);
CREATE FUNCTION evil.string_agg_step(s text, v text, d text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.spy('string_agg'); RETURN pg_catalog.concat(s, d, v); END $$;
CREATE AGGREGATE evil.string_agg(text, text) (SFUNC = evil.string_agg_step, STYPE = text);

-- Type names last (from here on, this file's own DDL would resolve them too): a domain named
-- like each type the extension's SQL casts to, whose check calls the spy.
DO $gen$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['text', 'bytea', 'jsonb', 'json', 'oid', 'int8', 'int4', 'int2', 'regclass', 'name', 'bool', 'timestamptz']
    LOOP
        EXECUTE pg_catalog.format('CREATE DOMAIN evil.%I AS pg_catalog.%I CHECK (evil.spy(%L))', t, t, 'domain ' || t);
    END LOOP;
END
$gen$;

-- The attack: the hostile schema first on the path, then every SQL function and trigger path.
SET search_path = evil, pg_catalog, public;
SELECT pylon_crdt_apply_patch('Memo', 'n1', '{"title":"string","body":"richtext"}', '{"title":"hi","body":"hello"}');
SELECT pylon_crdt_project('Memo', 'n1', '{"title":"string","body":"richtext"}');
SELECT pylon_crdt_snapshot('Memo', 'n1') IS NOT NULL AS snapshot;
SELECT pylon_crdt_version('Memo', 'n1') IS NOT NULL AS version;
SELECT pylon_crdt_update_since('Memo', 'n1', pylon_crdt_version('Memo', 'n1')) IS NOT NULL AS update_since;
SELECT pylon_crdt_apply_update('Memo', 'n2', '{"title":"string","body":"richtext"}', pylon_crdt_snapshot('Memo', 'n1'));
SELECT pylon_crdt_lock_key('Memo');
INSERT INTO task (id, title, notes, votes, tags) VALUES ('t1', 'Write', 'Draft', 1, '["a"]');
UPDATE task SET votes = votes OPERATOR(pg_catalog.+) 1, notes = 'Draft it', tags = '{"push":"b"}'
 WHERE id OPERATOR(pg_catalog.=) 't1';
INSERT INTO task (id, title) VALUES ('t1', 'upserted') ON CONFLICT (id) DO UPDATE SET title = excluded.title;
COPY task (id, title, votes) FROM stdin;
t2	copied	5
\.
SELECT pylon_crdt_apply_patch('task', 't1', '{"votes":{"increment":10}}');
SELECT pylon_crdt_apply_patch('task', 't3', '{"title":"made by a patch"}');
SELECT pylon_crdt_apply_update('task', 't2', pylon_crdt_snapshot('task', 't1'));
SELECT pylon_crdt_project('task', 't1');
SELECT pylon_crdt_set_storage('task', 'log');
SELECT pylon_crdt_apply_patch('task', 't1', '{"notes":"Draft it again"}');
SELECT pylon_crdt_compact('task', 't1') OPERATOR(pg_catalog.>) 0 AS compacted;
SELECT pylon_crdt_compact('task', 't1', trim_history => true) OPERATOR(pg_catalog.>) 0 AS trimmed;
SELECT pylon_crdt_set_storage('task', 'snapshot');
SELECT * FROM pylon_crdt_verify('task');
SELECT cached_docs OPERATOR(pg_catalog.>) 0 AS cached FROM pylon_crdt_stats();
DELETE FROM task WHERE id OPERATOR(pg_catalog.=) 't2';
SELECT pylon_crdt_delete('Memo', 'n2');
TRUNCATE task;
SELECT pylon_crdt_disable('task', drop_docs => true);
-- Dropping an enabled table runs the extension's sql_drop event trigger.
CREATE TABLE doomed (id pg_catalog.text PRIMARY KEY, title pg_catalog.text);
SELECT pylon_crdt_enable('doomed', '{"title":"string"}');
INSERT INTO doomed VALUES ('d1', 'gone soon');
DROP TABLE doomed;
SELECT pg_catalog.count(*) AS doomed_registrations FROM public._pylon_crdt_registry
 WHERE entity OPERATOR(pg_catalog.=) 'doomed';
-- Privileges hold with the hostile path too: another role's docs and the sidecar stay closed.
SELECT public.sqlstate_of($$SELECT pylon_crdt_project('secret', 's1')$$) AS read_secret;
SELECT public.sqlstate_of($$SELECT pylon_crdt_apply_patch('secret', 's1', '{"title":"mine"}')$$) AS write_secret;
SELECT public.sqlstate_of($$SELECT pylon_crdt_snapshot('secret', 's1')$$) AS snapshot_secret;
SELECT public.sqlstate_of($$SELECT pylon_crdt_delete('secret', 's1')$$) AS delete_secret;
SELECT public.sqlstate_of($$SELECT pylon_crdt_disable('public.secret')$$) AS disable_secret;
SELECT public.sqlstate_of($$INSERT INTO public._pylon_crdt_snapshots VALUES ('secret', 's9', '\x00', pg_catalog.now())$$) AS write_sidecar;
SELECT pylon_crdt_delete('Memo', 'n1');
RESET search_path;
RESET ROLE;

-- The same as a superuser whose path starts with the hostile schema, on the superuser's tables.
SET search_path = evil, pg_catalog, public;
SELECT pylon_crdt_enable('public.su_task', '{"title":"string","notes":"richtext","votes":{"type":"int","crdt":"counter"},"tags":{"type":"string","crdt":"list"}}');
INSERT INTO public.su_task (id, title, notes, votes, tags) VALUES ('t1', 'Write', 'Draft', 1, '["a"]');
UPDATE public.su_task SET votes = votes OPERATOR(pg_catalog.+) 1, notes = 'Draft it', tags = '{"push":"b"}'
 WHERE id OPERATOR(pg_catalog.=) 't1';
INSERT INTO public.su_task (id, title) VALUES ('t1', 'upserted') ON CONFLICT (id) DO UPDATE SET title = excluded.title;
COPY public.su_task (id, title, votes) FROM stdin;
t2	copied	5
\.
SELECT pylon_crdt_apply_patch('su_task', 't1', '{"votes":{"increment":10}}');
SELECT pylon_crdt_apply_patch('su_task', 't3', '{"title":"made by a patch"}');
SELECT pylon_crdt_apply_update('su_task', 't2', pylon_crdt_snapshot('su_task', 't1'));
SELECT pylon_crdt_project('su_task', 't1');
SELECT pylon_crdt_apply_patch('SuNote', 'n1', '{"title":"string","body":"richtext"}', '{"title":"hi","body":"hello"}');
SELECT pylon_crdt_project('SuNote', 'n1', '{"title":"string","body":"richtext"}');
SELECT pylon_crdt_snapshot('SuNote', 'n1') IS NOT NULL AS snapshot;
SELECT pylon_crdt_update_since('SuNote', 'n1', pylon_crdt_version('SuNote', 'n1')) IS NOT NULL AS update_since;
SELECT pylon_crdt_apply_update('SuNote', 'n1', '{"title":"string","body":"richtext"}', pylon_crdt_snapshot('SuNote', 'n1'));
SELECT pylon_crdt_set_storage('su_task', 'log');
SELECT pylon_crdt_apply_patch('su_task', 't1', '{"notes":"Draft it again"}');
SELECT pylon_crdt_compact('su_task', 't1', trim_history => true) OPERATOR(pg_catalog.>) 0 AS trimmed;
SELECT pylon_crdt_set_storage('su_task', 'snapshot');
SELECT * FROM pylon_crdt_verify();
DELETE FROM public.su_task WHERE id OPERATOR(pg_catalog.=) 't2';
SELECT pylon_crdt_delete('SuNote', 'n1');
TRUNCATE public.su_task;
SELECT pylon_crdt_disable('public.su_task', drop_docs => true);
RESET search_path;

-- Nothing of the attacker's ran, as any role, and the attacker gained nothing.
SELECT count(*) AS shadow_calls FROM evil.calls;
SELECT rolsuper AS attacker_is_superuser FROM pg_roles WHERE rolname = 'pylon_attacker';

DROP SCHEMA evil CASCADE;
SELECT pylon_crdt_disable('public.secret', drop_docs => true);
DROP TABLE public.secret, public.su_task, public."SuNote";
DROP FUNCTION public.sqlstate_of(text);
DO $$ BEGIN EXECUTE pg_catalog.format('REVOKE CREATE ON DATABASE %I FROM pylon_attacker', pg_catalog.current_database()); END $$;
DROP ROLE pylon_attacker;
