//! Security over real connections as real roles (LOGIN roles, trust auth on 127.0.0.1):
//! privileges and row-level security of the entity table govern doc reads and writes, the
//! extension's own tables are closed to ordinary roles, a same-named table of the caller's
//! own cannot stand in for the real one, and hostile names round-trip.

use pylon_crdt_client_tests::*;
use serde_json::{json, Value};

use loro::{ExportMode, LoroDoc};

fn create_roles(admin: &mut Client, roles: &[&str]) {
    drop_roles(admin, roles);
    for r in roles {
        admin
            .batch_execute(&format!("CREATE ROLE {} LOGIN", quote_ident(r)))
            .unwrap();
    }
}

fn as_role(db_url: &str, role: &str) -> Client {
    let db = db_url.rsplit('/').next().unwrap();
    connect(&url_for(db, role))
}

fn stored(c: &mut Client, entity: &str, row_id: &str) -> Option<Vec<u8>> {
    c.query_opt(
        "SELECT snapshot FROM _pylon_crdt_snapshots WHERE entity = $1 AND row_id = $2",
        &[&entity, &row_id],
    )
    .unwrap()
    .map(|r| r.get(0))
}

/// A peer update that sets `title`, built on the server's current doc.
fn peer_update(c: &mut Client, entity: &str, row_id: &str, title: &str) -> Vec<u8> {
    let snapshot: Vec<u8> = c
        .query_one("SELECT pylon_crdt_snapshot($1, $2)", &[&entity, &row_id])
        .unwrap()
        .get(0);
    let doc = decode(&snapshot).unwrap();
    let vv = doc.oplog_vv();
    doc.get_map("row").insert("title", title).unwrap();
    doc.commit();
    doc.export(ExportMode::updates(&vv)).unwrap()
}

struct Calls<'a> {
    entity: &'a str,
    row_id: &'a str,
    fields: Value,
}

impl Calls<'_> {
    fn patch(&self, c: &mut Client, patch: Value) -> Result<Value, postgres::Error> {
        c.query_one(
            "SELECT pylon_crdt_apply_patch($1, $2, $3, $4)",
            &[&self.entity, &self.row_id, &self.fields, &patch],
        )
        .map(|r| r.get(0))
    }
    fn update(&self, c: &mut Client, bytes: &[u8]) -> Result<Value, postgres::Error> {
        c.query_one(
            "SELECT pylon_crdt_apply_update($1, $2, $3, $4)",
            &[&self.entity, &self.row_id, &self.fields, &bytes],
        )
        .map(|r| r.get(0))
    }
    fn reads(&self, c: &mut Client) -> Vec<(&'static str, Result<(), postgres::Error>)> {
        let (e, r, f) = (&self.entity, &self.row_id, &self.fields);
        let vv = LoroDoc::new().oplog_vv().encode();
        vec![
            (
                "snapshot",
                c.query_one("SELECT pylon_crdt_snapshot($1, $2)", &[e, r])
                    .map(|_| ()),
            ),
            (
                "version",
                c.query_one("SELECT pylon_crdt_version($1, $2)", &[e, r])
                    .map(|_| ()),
            ),
            (
                "project",
                c.query_one("SELECT pylon_crdt_project($1, $2, $3)", &[e, r, f])
                    .map(|_| ()),
            ),
            (
                "update_since",
                c.query_one("SELECT pylon_crdt_update_since($1, $2, $3)", &[e, r, &vv])
                    .map(|_| ()),
            ),
        ]
    }
    fn delete(&self, c: &mut Client) -> Result<bool, postgres::Error> {
        c.query_one(
            "SELECT pylon_crdt_delete($1, $2)",
            &[&self.entity, &self.row_id],
        )
        .map(|r| r.get(0))
    }
}

fn assert_denied<T: std::fmt::Debug>(r: Result<T, postgres::Error>, what: &str) {
    assert_eq!(expect_err(r, what), "42501", "{what}");
}

/// Writes need UPDATE on the entity's table, reads need SELECT, pylon_crdt_delete needs
/// DELETE; refused calls (42501) leave the doc byte-identical. An entity without a table is
/// governed by the caller's rights on `_pylon_crdt_snapshots`.
#[test]
fn table_privileges_govern_doc_reads_and_writes() {
    let url = fresh_db("sec_priv");
    let mut admin_db = connect(&url);
    let roles = [
        "pcc_priv_reader",
        "pcc_priv_writer",
        "pcc_priv_nobody",
        "pcc_priv_updonly",
    ];
    create_roles(&mut admin_db, &roles);
    admin_db
        .batch_execute(
            r#"CREATE TABLE "Secret" (id text PRIMARY KEY, title text, votes int);
               INSERT INTO "Secret" VALUES ('s1', NULL, NULL);
               GRANT SELECT ON "Secret" TO pcc_priv_reader;
               GRANT SELECT, UPDATE ON "Secret" TO pcc_priv_writer;
               GRANT UPDATE ON "Secret" TO pcc_priv_updonly;"#,
        )
        .unwrap();
    let calls = Calls {
        entity: "Secret",
        row_id: "s1",
        fields: json!({"title": "string", "votes": {"type": "int", "crdt": "counter"}}),
    };
    calls
        .patch(&mut admin_db, json!({"title": "classified", "votes": 1}))
        .unwrap();
    let update = peer_update(&mut admin_db, "Secret", "s1", "from a peer");
    let before = stored(&mut admin_db, "Secret", "s1").unwrap();

    // Reader: reads, cannot write or delete.
    let mut reader = as_role(&url, "pcc_priv_reader");
    for (what, r) in calls.reads(&mut reader) {
        r.unwrap_or_else(|e| panic!("reader {what}: {e}"));
    }
    assert_denied(
        calls.patch(&mut reader, json!({"title": "x"})),
        "reader apply_patch",
    );
    assert_denied(calls.update(&mut reader, &update), "reader apply_update");
    assert_denied(calls.delete(&mut reader), "reader delete");

    // Nobody: neither.
    let mut nobody = as_role(&url, "pcc_priv_nobody");
    for (what, r) in calls.reads(&mut nobody) {
        assert_denied(r, &format!("nobody {what}"));
    }
    assert_denied(
        calls.patch(&mut nobody, json!({"votes": {"increment": 1}})),
        "nobody apply_patch",
    );
    assert_denied(calls.update(&mut nobody, &update), "nobody apply_update");

    // UPDATE without SELECT: may not read, and a write (which returns the projection)
    // must not become a way to read.
    let mut updonly = as_role(&url, "pcc_priv_updonly");
    for (what, r) in calls.reads(&mut updonly) {
        assert_denied(r, &format!("update-only {what}"));
    }
    let r = calls.patch(&mut updonly, json!({}));
    assert!(
        r.as_ref()
            .map_or(true, |p| p.get("title").is_none_or(|t| t != "classified")),
        "a role without SELECT read the doc through apply_patch: {r:?}"
    );

    assert_eq!(
        stored(&mut admin_db, "Secret", "s1").unwrap(),
        before,
        "refused calls wrote"
    );

    // Writer: writes (doc and column), cannot delete without DELETE.
    let mut writer = as_role(&url, "pcc_priv_writer");
    let p = calls
        .patch(&mut writer, json!({"votes": {"increment": 1}}))
        .unwrap();
    assert_eq!(p["votes"].as_f64(), Some(2.0));
    let p = calls.update(&mut writer, &update).unwrap();
    assert_eq!(p["title"], "from a peer");
    let (title, votes): (String, i32) = admin_db
        .query_one(r#"SELECT title, votes FROM "Secret" WHERE id = 's1'"#, &[])
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!((title.as_str(), votes), ("from a peer", 2));
    assert_denied(calls.delete(&mut writer), "writer delete without DELETE");

    // An entity without a table: rights on _pylon_crdt_snapshots decide (none granted).
    let tableless = Calls {
        entity: "NoTable",
        row_id: "t1",
        fields: json!({"title": "string"}),
    };
    tableless
        .patch(&mut admin_db, json!({"title": "mine"}))
        .unwrap();
    assert_denied(
        tableless.patch(&mut writer, json!({"title": "x"})),
        "tableless write",
    );
    for (what, r) in tableless.reads(&mut writer) {
        assert_denied(r, &format!("tableless {what}"));
    }

    // Registered overloads follow the same rules.
    admin_db
        .batch_execute(
            r#"CREATE TABLE "RegSecret" (id text PRIMARY KEY, title text);
               INSERT INTO "RegSecret" VALUES ('r1', 'x');
               GRANT SELECT ON "RegSecret" TO pcc_priv_reader;
               SELECT pylon_crdt_enable('"RegSecret"', '{"title":"string"}');"#,
        )
        .unwrap();
    assert_denied(
        reader.query_one(
            "SELECT pylon_crdt_apply_patch('RegSecret', 'r1', '{\"title\":\"y\"}')",
            &[],
        ),
        "reader registered apply_patch",
    );
    reader
        .query_one("SELECT pylon_crdt_project('RegSecret', 'r1')", &[])
        .unwrap();
    assert_denied(
        nobody.query_one("SELECT pylon_crdt_project('RegSecret', 'r1')", &[]),
        "nobody registered project",
    );
    // Registering, unregistering or re-storing someone else's table is refused.
    assert_denied(
        nobody.query_one(
            "SELECT pylon_crdt_enable('\"Secret\"', '{\"title\":\"string\"}')",
            &[],
        ),
        "nobody enables a table it does not own",
    );
    assert_denied(
        nobody.query_one("SELECT pylon_crdt_disable('\"RegSecret\"')", &[]),
        "nobody disables a table it does not own",
    );
    assert_denied(
        nobody.query_one("SELECT pylon_crdt_set_storage('Secret', 'log')", &[]),
        "nobody switches the storage of an entity it cannot write",
    );
    assert_denied(
        nobody.query_one("SELECT pylon_crdt_compact('Secret', 's1', true)", &[]),
        "nobody trims the history of a doc it cannot write",
    );
    drop((reader, writer, nobody, updonly));
    drop_roles(&mut admin_db, &roles);
}

/// Row-level security of the entity table applies to doc reads and writes: a row the policy
/// hides is refused (42501) for reads and writes, a visible row whose UPDATE policy excludes
/// the caller is refused for writes, a WITH CHECK violation is refused, and refused calls
/// leave the docs byte-identical.
#[test]
fn row_level_security_applies_to_docs() {
    let url = fresh_db("sec_rls");
    let mut admin_db = connect(&url);
    let roles = ["pcc_rls_a", "pcc_rls_b"];
    create_roles(&mut admin_db, &roles);
    admin_db
        .batch_execute(
            r#"CREATE TABLE "Guarded" (id text PRIMARY KEY, owner text NOT NULL, title text);
               INSERT INTO "Guarded" VALUES ('g_a', 'pcc_rls_a', NULL), ('g_b', 'pcc_rls_b', NULL),
                                            ('g_pub', 'public', NULL);
               ALTER TABLE "Guarded" ENABLE ROW LEVEL SECURITY;
               CREATE POLICY sel ON "Guarded" FOR SELECT
                   USING (owner = current_user OR owner = 'public');
               CREATE POLICY upd ON "Guarded" FOR UPDATE
                   USING (owner = current_user) WITH CHECK (title IS DISTINCT FROM 'forbidden');
               GRANT SELECT, UPDATE ON "Guarded" TO pcc_rls_a, pcc_rls_b;"#,
        )
        .unwrap();
    let fields = json!({"title": "string"});
    let calls = |row_id: &'static str| Calls {
        entity: "Guarded",
        row_id,
        fields: fields.clone(),
    };
    for r in ["g_a", "g_b", "g_pub"] {
        calls(r)
            .patch(&mut admin_db, json!({"title": format!("seed {r}")}))
            .unwrap();
    }
    let snap = |c: &mut Client, r: &str| stored(c, "Guarded", r).unwrap();
    let (b_before, pub_before) = (snap(&mut admin_db, "g_b"), snap(&mut admin_db, "g_pub"));
    let update_b = peer_update(&mut admin_db, "Guarded", "g_b", "via update");

    let mut a = as_role(&url, "pcc_rls_a");
    // Own row: reads and writes work, and the column follows.
    for (what, r) in calls("g_a").reads(&mut a) {
        r.unwrap_or_else(|e| panic!("own row {what}: {e}"));
    }
    let p = calls("g_a")
        .patch(&mut a, json!({"title": "mine"}))
        .unwrap();
    assert_eq!(p["title"], "mine");
    // Hidden row: every call refused.
    for (what, r) in calls("g_b").reads(&mut a) {
        assert_denied(r, &format!("hidden row {what}"));
    }
    assert_denied(
        calls("g_b").patch(&mut a, json!({"title": "x"})),
        "hidden row apply_patch",
    );
    assert_denied(
        calls("g_b").update(&mut a, &update_b),
        "hidden row apply_update",
    );
    // Visible, but the UPDATE policy excludes it: reads work, writes refused.
    for (what, r) in calls("g_pub").reads(&mut a) {
        r.unwrap_or_else(|e| panic!("visible row {what}: {e}"));
    }
    assert_denied(
        calls("g_pub").patch(&mut a, json!({"title": "x"})),
        "read-only row apply_patch",
    );
    // WITH CHECK violation on its own row.
    let a_before = snap(&mut admin_db, "g_a");
    assert_denied(
        calls("g_a").patch(&mut a, json!({"title": "forbidden"})),
        "WITH CHECK",
    );
    assert_eq!(
        snap(&mut admin_db, "g_a"),
        a_before,
        "WITH CHECK refusal wrote the doc"
    );

    assert_eq!(
        snap(&mut admin_db, "g_b"),
        b_before,
        "a refused call wrote g_b's doc"
    );
    assert_eq!(
        snap(&mut admin_db, "g_pub"),
        pub_before,
        "a refused call wrote g_pub's doc"
    );
    let titles: Vec<(String, Option<String>)> = admin_db
        .query(r#"SELECT id, title FROM "Guarded" ORDER BY id"#, &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        titles,
        vec![
            ("g_a".into(), Some("mine".into())),
            ("g_b".into(), Some("seed g_b".into())),
            ("g_pub".into(), Some("seed g_pub".into())),
        ]
    );
    drop(a);
    drop_roles(&mut admin_db, &roles);
}

/// Ordinary roles cannot INSERT/UPDATE/DELETE/TRUNCATE the extension's tables (nor read the
/// snapshots directly), even with full rights on an entity table.
#[test]
fn extension_tables_are_closed_to_ordinary_roles() {
    let url = fresh_db("sec_sidecar");
    let mut admin_db = connect(&url);
    let roles = ["pcc_side_user"];
    create_roles(&mut admin_db, &roles);
    admin_db
        .batch_execute(
            r#"CREATE TABLE "Open" (id text PRIMARY KEY, title text);
               INSERT INTO "Open" VALUES ('o1', NULL);
               GRANT ALL ON "Open" TO pcc_side_user;
               SELECT pylon_crdt_apply_patch('Open', 'o1', '{"title":"string"}', '{"title":"t"}');"#,
        )
        .unwrap();
    let mut u = as_role(&url, "pcc_side_user");
    let snap = r"'\x00'::bytea";
    let mut statements = vec![
        format!("INSERT INTO _pylon_crdt_snapshots (entity, row_id, snapshot) VALUES ('Open', 'o2', {snap})"),
        format!("UPDATE _pylon_crdt_snapshots SET snapshot = {snap}"),
        "DELETE FROM _pylon_crdt_snapshots".into(),
        "TRUNCATE _pylon_crdt_snapshots".into(),
        "SELECT snapshot FROM _pylon_crdt_snapshots".into(),
        r#"INSERT INTO _pylon_crdt_registry (entity, relation, fields) VALUES ('Open', '"Open"', '{}')"#.into(),
        "UPDATE _pylon_crdt_registry SET fields = '{}'".into(),
        "DELETE FROM _pylon_crdt_registry".into(),
        "TRUNCATE _pylon_crdt_registry".into(),
    ];
    for (table, insert) in [
        ("_pylon_crdt_updates", format!("INSERT INTO _pylon_crdt_updates (entity, row_id, update) VALUES ('Open', 'o1', {snap})")),
        ("_pylon_crdt_storage", "INSERT INTO _pylon_crdt_storage (entity, mode) VALUES ('Open', 'log')".into()),
        ("_pylon_crdt_folds", format!("INSERT INTO _pylon_crdt_folds VALUES ('Open', 'o1', '', {snap}, '{{}}', '{{}}')")),
    ] {
        let exists: bool = admin_db
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
            .unwrap()
            .get(0);
        if exists {
            statements.push(insert);
            if table != "_pylon_crdt_storage" {
                // Storage modes are readable by all; logs and folds hold docs.
                statements.push(format!("SELECT * FROM {table}"));
            }
            statements.push(format!("DELETE FROM {table}"));
            statements.push(format!("TRUNCATE {table}"));
        }
    }
    for s in &statements {
        assert_denied(u.execute(s.as_str(), &[]), s);
    }
    let n: i64 = admin_db
        .query_one("SELECT count(*) FROM _pylon_crdt_snapshots", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "the sidecar changed");
    drop(u);
    drop_roles(&mut admin_db, &roles);
}

/// A role with no rights on an entity's table creates a TEMP table of the same name (TEMP is
/// granted to PUBLIC by default and pg_temp is searched first) and calls the functions: it
/// must not reach the real entity's docs. Same for an entity that has docs but no table.
#[test]
fn a_same_named_temp_table_cannot_stand_in_for_the_entity() {
    let url = fresh_db("sec_hijack");
    let mut admin_db = connect(&url);
    let roles = ["pcc_hijacker"];
    create_roles(&mut admin_db, &roles);
    admin_db
        .batch_execute(
            r#"CREATE TABLE "Vault" (id text PRIMARY KEY, title text);
               INSERT INTO "Vault" VALUES ('v1', NULL);
               SELECT pylon_crdt_apply_patch('Vault', 'v1', '{"title":"string"}', '{"title":"secret"}');
               SELECT pylon_crdt_apply_patch('Orphan', 'o1', '{"title":"string"}', '{"title":"orphan secret"}');"#,
        )
        .unwrap();
    let vault_before = stored(&mut admin_db, "Vault", "v1").unwrap();
    let orphan_before = stored(&mut admin_db, "Orphan", "o1").unwrap();

    let mut h = as_role(&url, "pcc_hijacker");
    h.batch_execute(
        r#"CREATE TEMP TABLE "Vault" (id text PRIMARY KEY, title text);
           INSERT INTO "Vault" VALUES ('v1', NULL);
           CREATE TEMP TABLE "Orphan" (id text PRIMARY KEY, title text);
           INSERT INTO "Orphan" VALUES ('o1', NULL);"#,
    )
    .unwrap();
    let mut findings = Vec::new();
    for (entity, row_id, secret) in [("Vault", "v1", "secret"), ("Orphan", "o1", "orphan secret")] {
        let calls = Calls {
            entity,
            row_id,
            fields: json!({"title": "string"}),
        };
        // Reads first: the doc must not leak.
        match h.query_one(
            "SELECT pylon_crdt_project($1, $2, '{\"title\":\"string\"}')",
            &[&entity, &row_id],
        ) {
            Ok(r) => {
                let p: Value = r.get(0);
                if p["title"] == secret {
                    findings.push(format!(
                        "{entity}: project through a temp table read the doc: {p}"
                    ));
                }
            }
            Err(e) if sqlstate(&e).as_deref() == Some("42501") => {}
            Err(e) => findings.push(format!("{entity}: project: unexpected {e}")),
        }
        match h.query_one("SELECT pylon_crdt_snapshot($1, $2)", &[&entity, &row_id]) {
            Ok(r) => {
                let b: Vec<u8> = r.get(0);
                let doc = doc_json(&decode(&b).unwrap());
                if doc["title"] == secret {
                    findings.push(format!(
                        "{entity}: snapshot through a temp table read the doc"
                    ));
                }
            }
            Err(e) if sqlstate(&e).as_deref() == Some("42501") => {}
            Err(e) => findings.push(format!("{entity}: snapshot: unexpected {e}")),
        }
        match calls.patch(&mut h, json!({"title": "pwned"})) {
            Ok(p) => findings.push(format!(
                "{entity}: apply_patch through a temp table succeeded: {p}"
            )),
            Err(e) if sqlstate(&e).as_deref() == Some("42501") => {}
            Err(e) => findings.push(format!("{entity}: apply_patch: unexpected {e}")),
        }
    }
    drop(h);
    if stored(&mut admin_db, "Vault", "v1").unwrap() != vault_before {
        findings.push("Vault/v1's doc was changed by the hijacker".into());
    }
    if stored(&mut admin_db, "Orphan", "o1").unwrap() != orphan_before {
        findings.push("Orphan/o1's doc was changed by the hijacker".into());
    }
    drop_roles(&mut admin_db, &roles);
    assert!(
        findings.is_empty(),
        "a same-named temp table reached another entity's docs:\n{}",
        findings.join("\n")
    );
}

/// Entity names and row ids with quotes, semicolons, spaces and unicode work, round-trip
/// exactly (projection, column, sidecar key, lock keys) and touch nothing else.
#[test]
fn hostile_names_round_trip() {
    let url = fresh_db("sec_names");
    let mut c = connect(&url);
    let entities = [
        "Qu\"ote's; DROP TABLE x; --",
        "with space",
        "naïve 表 🎉",
        "semi;colon",
        "UPPER lower",
    ];
    let rows = [
        "r'1\"; DELETE FROM _pylon_crdt_snapshots; --",
        " spaced ",
        "表🎉",
        "",
        "back\\slash",
    ];
    let fields = json!({"title": "string", "votes": {"type": "int", "crdt": "counter"}});
    for e in entities {
        c.batch_execute(&format!(
            "CREATE TABLE {} (id text PRIMARY KEY, title text, votes int)",
            quote_ident(e)
        ))
        .unwrap();
        for r in rows {
            c.execute(
                &format!("INSERT INTO {} (id) VALUES ($1)", quote_ident(e)),
                &[&r],
            )
            .unwrap();
        }
    }
    for e in entities {
        for r in rows {
            let title = format!("{e}|{r}");
            let p: Value = c
                .query_one(
                    "SELECT pylon_crdt_apply_patch($1, $2, $3, $4)",
                    &[
                        &e,
                        &r,
                        &fields,
                        &json!({"title": title, "votes": {"increment": 2}}),
                    ],
                )
                .unwrap_or_else(|err| panic!("apply_patch({e:?}, {r:?}): {err}"))
                .get(0);
            assert_eq!(p["title"], title.as_str());
            let column: String = c
                .query_one(
                    &format!("SELECT title FROM {} WHERE id = $1", quote_ident(e)),
                    &[&r],
                )
                .unwrap()
                .get(0);
            assert_eq!(column, title, "column of {e:?}/{r:?}");
            let doc =
                doc_json(&decode(&stored(&mut c, e, r).expect("sidecar key is exact")).unwrap());
            assert_eq!(doc["title"], title.as_str());
            let keys: (i32, i32) = c
                .query_one(
                    "SELECT pylon_crdt_lock_key($1), pylon_crdt_lock_key($2)",
                    &[&e, &r],
                )
                .map(|row| (row.get(0), row.get(1)))
                .unwrap();
            assert_eq!(keys, (advisory_key(e), advisory_key(r)));
        }
    }
    let n: i64 = c
        .query_one("SELECT count(*) FROM _pylon_crdt_snapshots", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        n as usize,
        entities.len() * rows.len(),
        "exactly one doc per (entity, row)"
    );
    for e in entities {
        let problems = check_entity_by_hand(&mut c, e, Some(e), &fields);
        assert!(problems.is_empty(), "{problems:#?}");
    }

    // The lock held by an open write is on exactly (key(entity), key(row)).
    let (e, r) = (entities[0], rows[0]);
    let mut w = connect(&url);
    w.batch_execute("BEGIN").unwrap();
    w.query_one(
        "SELECT pylon_crdt_apply_patch($1, $2, $3, $4)",
        &[&e, &r, &fields, &json!({"votes": {"increment": 1}})],
    )
    .unwrap();
    let pid: i32 = w.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let held: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = $1
               AND classid::int8 = $2 AND objid::int8 = $3 AND objsubid = 2",
            &[
                &pid,
                &(advisory_key(e) as u32 as i64),
                &(advisory_key(r) as u32 as i64),
            ],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        held, 1,
        "the write holds the advisory lock on (key(entity), key(row))"
    );
    w.batch_execute("ROLLBACK").unwrap();

    // Registered tables with such names.
    let name = "Reg \"quoted\"; 表";
    c.batch_execute(&format!(
        "CREATE TABLE {} (id text PRIMARY KEY, title text)",
        quote_ident(name)
    ))
    .unwrap();
    c.execute(
        "SELECT pylon_crdt_enable($1::text::regclass, '{\"title\":\"string\"}')",
        &[&quote_ident(name)],
    )
    .unwrap();
    let p: Value = c
        .query_one(
            "SELECT pylon_crdt_apply_patch($1, $2, '{\"title\":\"reg\"}')",
            &[&name, &rows[0]],
        )
        .unwrap()
        .get(0);
    assert_eq!(p["title"], "reg");
    let p: Value = c
        .query_one("SELECT pylon_crdt_project($1, $2)", &[&name, &rows[0]])
        .unwrap()
        .get(0);
    assert_eq!(p["title"], "reg");
}
