-- pylon_crdt 0.1.0 -> 0.2.0
--
-- The SQL objects are unchanged: 0.2.0's changes are in the library (every statement it runs
-- under a pinned search_path, issue 15) and in how CREATE EXTENSION adopts an existing
-- sidecar. An install that adopted a _pylon_crdt_snapshots owned by a non-superuser, or
-- granting TRIGGER to one, is refused here as CREATE EXTENSION now refuses it: the extension
-- writes every role's docs into that table as its owner. Every name is schema-qualified, as
-- in the install script.
DO $$
DECLARE
    sidecar   pg_catalog.oid;
    owner     pg_catalog.text;
    triggerer pg_catalog.text;
BEGIN
    SELECT c.oid INTO sidecar
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
     WHERE c.relname OPERATOR(pg_catalog.=) '_pylon_crdt_snapshots'
       AND n.nspname OPERATOR(pg_catalog.=) pg_catalog.current_schema();
    SELECT r.rolname INTO owner
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) c.relowner
     WHERE c.oid OPERATOR(pg_catalog.=) sidecar AND NOT r.rolsuper;
    IF owner IS NOT NULL THEN
        RAISE EXCEPTION 'table %._pylon_crdt_snapshots is owned by role %, which is not a superuser',
                pg_catalog.quote_ident(pg_catalog.current_schema()), pg_catalog.quote_ident(owner)
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'The extension writes every role''s docs into it as its owner. Check its triggers, rules, policies and defaults, then run ALTER TABLE ... OWNER TO a superuser and GRANT the runtime''s role SELECT, INSERT, UPDATE, DELETE on it.';
    END IF;
    SELECT pg_catalog.string_agg(pg_catalog.quote_ident(r.rolname), ', ') INTO triggerer
      FROM pg_catalog.pg_class c,
           LATERAL pg_catalog.aclexplode(c.relacl) AS a
           JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) a.grantee
     WHERE c.oid OPERATOR(pg_catalog.=) sidecar
       AND a.privilege_type OPERATOR(pg_catalog.=) 'TRIGGER' AND NOT r.rolsuper;
    IF triggerer IS NOT NULL THEN
        RAISE EXCEPTION 'table _pylon_crdt_snapshots grants TRIGGER to role(s) %, which are not superusers', triggerer
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'REVOKE TRIGGER ON _pylon_crdt_snapshots FROM those roles first.';
    END IF;
END
$$;
