#!/usr/bin/env bash
# The install script never resolves a function or operator through a schema that a
# non-superuser can create objects in (issue 15). CREATE EXTENSION runs with the extension's
# schema on the search_path, so a role with CREATE there could otherwise shadow a catalog
# function with a better-matching one (unnest(text[]) beats unnest(anyarray)) and have the
# superuser who installs the extension run it. The script also has no CREATE OR REPLACE or
# IF NOT EXISTS, which an object pre-created by such a role would satisfy.
source "$(dirname "$0")/lib.sh"

script_dir="$("$PGBIN/pg_config" --sharedir)/extension"
check "the install scripts have no CREATE OR REPLACE or IF NOT EXISTS" "" \
  "$(grep -il -E 'or replace|if not exists' "$script_dir"/pylon_crdt--*.sql || true)"

fresh_db ext_script
sql ext_script <<'SQL'
DROP ROLE IF EXISTS pylon_squatter;
CREATE ROLE pylon_squatter;
GRANT CREATE ON SCHEMA public TO pylon_squatter;
SET ROLE pylon_squatter;
CREATE TABLE public.calls (what text, as_role text);
GRANT SELECT, INSERT ON public.calls TO PUBLIC;
CREATE FUNCTION public.spy(what text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    RAISE WARNING 'shadow % ran as %', what, current_user;
    INSERT INTO public.calls VALUES (what, current_user);
    RETURN true;
END $$;
-- Better matches than the catalog's polymorphic or "any" functions the script could call.
CREATE FUNCTION public.unnest(a text[]) RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN PERFORM public.spy('unnest(text[])'); RETURN QUERY SELECT pg_catalog.unnest(a); END $$;
CREATE FUNCTION public.unnest(a name[]) RETURNS SETOF name LANGUAGE plpgsql AS $$
BEGIN PERFORM public.spy('unnest(name[])'); RETURN QUERY SELECT pg_catalog.unnest(a); END $$;
CREATE FUNCTION public.quote_ident(a name) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM public.spy('quote_ident(name)'); RETURN pg_catalog.quote_ident(a); END $$;
CREATE FUNCTION public.aclexplode(a aclitem[]) RETURNS TABLE (grantor oid, grantee oid, privilege_type text, is_grantable boolean)
LANGUAGE plpgsql AS $$
BEGIN PERFORM public.spy('aclexplode'); RETURN QUERY SELECT * FROM pg_catalog.aclexplode(a); END $$;
CREATE FUNCTION public.string_agg_step(s text, v name, d text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM public.spy('string_agg(name, text)'); RETURN pg_catalog.concat(s, d, v); END $$;
CREATE AGGREGATE public.string_agg(name, text) (SFUNC = public.string_agg_step, STYPE = text);
-- The catalog has no oid = regclass operator (it goes through a cast): an exact one wins.
CREATE FUNCTION public.oid_eq_regclass(a oid, b regclass) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM public.spy('oid = regclass'); RETURN a OPERATOR(pg_catalog.=) b; END $$;
CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = regclass, FUNCTION = public.oid_eq_regclass);
RESET ROLE;
SQL

sql ext_script -c "CREATE EXTENSION pylon_crdt" 2>&1 | grep -v '^$' || true
check "CREATE EXTENSION ran none of the squatter's functions" "0" \
  "$(sql ext_script -c "SELECT count(*) FROM public.calls")"
check "and the extension works" '{"title": "hi"}' \
  "$(sql ext_script -c "SELECT pylon_crdt_apply_patch('Note', 'n1', '{\"title\":\"string\"}', '{\"title\":\"hi\"}')")"

psql "$BASE/postgres" -X -q -c "DROP DATABASE ext_script WITH (FORCE)" -c "DROP ROLE pylon_squatter"
finish
