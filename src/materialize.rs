//! The entity's own table: finding it, checking the caller's rights on it, locking its row and
//! writing the projection into its columns (DESIGN 4 and 8).
//!
//! The table is the registered relation, or else a table named exactly like the entity on the
//! caller's search_path. It is always referred to through its regclass text, so names with
//! quotes, spaces or capitals are safe. Column writes run as the caller, so the table's own
//! privileges, row-level security and triggers apply to them; our own trigger is told to let
//! these writes through (`triggers::ExtensionWrite`), so nothing is applied twice.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use pgrx::prelude::*;
use pgrx::spi::quote_identifier;
use pgrx::JsonB;
use serde_json::{Map, Value};

use crate::error::{raise, RowRef};
use crate::search_path;
use crate::store::{self, as_owner, query_one};
use crate::triggers::ExtensionWrite;

#[derive(Clone)]
pub struct EntityTable {
    pub relid: pg_sys::Oid,
    /// `relid::regclass::text`: quoted and schema-qualified where needed.
    pub name: String,
    pub id_column: String,
    /// The fields spec when the table is registered with `pylon_crdt_enable`.
    pub fields: Option<Arc<Value>>,
    /// (name, SQL type) of every live column, in order.
    pub columns: Arc<Vec<(String, String)>>,
    /// The table's composite row type.
    pub rowtype: pg_sys::Oid,
    /// Whether the table has the statement trigger that stores docs its row triggers queued
    /// (`batch`); tables enabled before 0.3.0 get it on `ALTER EXTENSION … UPDATE`.
    pub flushes: bool,
    /// Whether changes to the docs are notified (`notify`): a registered table's setting.
    pub notify: bool,
}

/// What a lookup was for: entity tables are resolved on every call and trigger, so their
/// metadata is cached per backend and dropped on any catalog invalidation (see `init`).
#[derive(Clone, PartialEq, Eq, Hash)]
enum Lookup {
    Registered(String),
    /// By name on the caller's search path (its schemas' OIDs).
    Resolved {
        entity: String,
        path: Vec<pg_sys::Oid>,
    },
    Relation(pg_sys::Oid),
}

type Found = Option<(String, EntityTable)>;

thread_local! {
    static TABLES: RefCell<HashMap<Lookup, Found>> = RefCell::new(HashMap::new());
}

fn cached(key: Lookup, compute: impl FnOnce() -> Found) -> Found {
    if let Some(hit) = TABLES.with(|t| t.borrow().get(&key).cloned()) {
        return hit;
    }
    let value = compute();
    TABLES.with(|t| t.borrow_mut().insert(key, value.clone()));
    value
}

/// Forgets all table metadata: called on relcache and pg_class syscache invalidations,
/// which CREATE/ALTER/DROP TABLE and CREATE/DROP TRIGGER (so enable/disable) all send.
pub fn invalidate() {
    TABLES.with(|t| {
        if let Ok(mut tables) = t.try_borrow_mut() {
            tables.clear();
        }
    });
    crate::changes::forget_table();
}

/// Sets one column of a table's registration (`column` is one of ours, never user input) and
/// makes every backend reload it: other backends cache it with the table's metadata and drop
/// it when this commits; this one drops it now.
pub fn update_registration(relid: pg_sys::Oid, column: &str, value: pgrx::datum::DatumWithOid<'_>) {
    let registry = store::extension_table("_pylon_crdt_registry");
    as_owner(|| {
        Spi::run_with_args(
            &format!("UPDATE {registry} SET {column} = $2 WHERE relation = $1"),
            &[relid.into(), value],
        )
    })
    .expect("updating the registration");
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(relid) };
    invalidate();
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_relcache(_arg: pg_sys::Datum, _relid: pg_sys::Oid) {
    invalidate();
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_syscache(_arg: pg_sys::Datum, _cache: i32, _hash: u32) {
    invalidate();
}

pub fn init() {
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(on_relcache), pg_sys::Datum::from(0));
        for cache in [
            pg_sys::SysCacheIdentifier::RELOID,
            pg_sys::SysCacheIdentifier::RELNAMENSP,
        ] {
            pg_sys::CacheRegisterSyscacheCallback(
                cache as i32,
                Some(on_syscache),
                pg_sys::Datum::from(0),
            );
        }
    }
}

impl EntityTable {
    /// The registered table of `entity`, if any.
    pub fn registered(entity: &str) -> Option<EntityTable> {
        cached(Lookup::Registered(entity.to_owned()), || {
            Self::from_registry("entity = $1", entity.into())
        })
        .map(|(_, t)| t)
    }

    /// The registration of a table, by relation (used by triggers): (entity, table).
    pub fn registered_relation(relid: pg_sys::Oid) -> Option<(String, EntityTable)> {
        cached(Lookup::Relation(relid), || {
            Self::from_registry("relation = $1", relid.into())
        })
    }

    /// One registry row: (entity, table).
    fn from_registry(
        filter: &str,
        key: pgrx::datum::DatumWithOid<'_>,
    ) -> Option<(String, EntityTable)> {
        let query = format!(
            "SELECT jsonb_build_array(entity, relation::oid::int8, relation::text, id_column::text, fields,
                                      to_jsonb(r) -> 'notify')
               FROM {} AS r WHERE {filter}",
            store::extension_table("_pylon_crdt_registry")
        );
        let row = query_one::<JsonB>(&query, &[key])?;
        // `notify` is read from the row's JSON: a registry from before 0.5.0 (this library
        // loaded before `ALTER EXTENSION pylon_crdt UPDATE`) has no such column.
        let [entity, relid, name, id_column, fields, notify] =
            <[Value; 6]>::try_from(row.0.as_array()?.clone()).ok()?;
        let relid = pg_sys::Oid::from(relid.as_u64()? as u32);
        if unsafe { pg_sys::get_rel_relkind(relid) } == 0 {
            return None; // dropped while event triggers were off; pylon_crdt_verify reports it
        }
        let table = EntityTable {
            relid,
            name: name.as_str()?.to_owned(),
            id_column: id_column.as_str()?.to_owned(),
            fields: Some(Arc::new(fields)),
            columns: Arc::new(columns_of(relid)),
            rowtype: rowtype_of(relid),
            flushes: query_one::<bool>(
                "SELECT true FROM pg_catalog.pg_trigger WHERE tgrelid = $1 AND tgname = 'pylon_crdt_flush' AND tgenabled <> 'D'",
                &[relid.into()],
            )
            .is_some(),
            notify: notify.as_bool().unwrap_or(true),
        };
        Some((entity.as_str()?.to_owned(), table))
    }

    /// The registered table, else a table named exactly `entity` with an `id` column.
    pub fn resolve(entity: &str) -> Option<EntityTable> {
        let key = Lookup::Resolved {
            entity: entity.to_owned(),
            path: search_path::caller_namespaces(),
        };
        cached(key, || {
            Self::resolve_uncached(entity).map(|t| (entity.to_owned(), t))
        })
        .map(|(_, t)| t)
    }

    fn resolve_uncached(entity: &str) -> Option<EntityTable> {
        Self::registered(entity).or_else(|| {
            let relid = table_on_caller_path(entity)?;
            // Under the pinned search_path, regclass output is always schema-qualified.
            let name = query_one::<String>(
                "SELECT $1::pg_catalog.regclass::pg_catalog.text",
                &[relid.into()],
            )?;
            Some(EntityTable {
                relid,
                name,
                id_column: "id".into(),
                fields: None,
                columns: Arc::new(columns_of(relid)),
                rowtype: rowtype_of(relid),
                flushes: false,
                notify: false,
            })
        })
    }

    pub fn is_registered(&self) -> bool {
        self.fields.is_some()
    }

    fn id_type(&self, row: RowRef<'_>) -> &str {
        self.column_type(&self.id_column).unwrap_or_else(|| {
            raise(
                PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                format!(
                    "pylon_crdt: {row}: table {} has no id column \"{}\"",
                    self.name, self.id_column
                ),
            )
        })
    }

    pub fn column_type(&self, name: &str) -> Option<&str> {
        self.columns
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, ty)| ty.as_str())
    }

    /// `WHERE` clause matching the row by id (`$1` is the id as text).
    fn by_id(&self, row: RowRef<'_>, param: usize) -> String {
        format!(
            "t.{} = ${param}::{}",
            quote_identifier(&self.id_column),
            self.id_type(row)
        )
    }

    /// Locks the row as the caller (`FOR UPDATE`: needs UPDATE rights, applies row-level
    /// security) and returns whether it exists. See `row::write` for the lock order.
    pub fn lock_row(&self, row: RowRef<'_>) -> bool {
        self.seen_by_caller(
            row,
            "FOR UPDATE OF t",
            "does not let this role update the row",
        )
    }

    /// Refuses to read a doc whose row the caller's row-level security hides.
    pub fn check_visible(&self, row: RowRef<'_>) {
        self.seen_by_caller(row, "", "hides the row from this role");
    }

    /// Whether the caller's query finds the row. One that exists but is hidden from the
    /// caller by row-level security is an error (42501): a doc is never read or written past
    /// the table's policies.
    fn seen_by_caller(&self, row: RowRef<'_>, locking: &str, refusal: &str) -> bool {
        let query = format!(
            "SELECT true FROM {} AS t WHERE {} {locking}",
            self.name,
            self.by_id(row, 1)
        );
        let visible = query_one::<bool>(&query, &[row.row_id.into()]).unwrap_or(false);
        if !visible && self.row_exists(row) {
            raise(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                format!(
                    "pylon_crdt: {row}: row-level security on table {} {refusal}",
                    self.name
                ),
            );
        }
        visible
    }

    /// Whether the row exists at all, looked at past row-level security.
    pub fn row_exists(&self, row: RowRef<'_>) -> bool {
        let query = format!(
            "SELECT true FROM {} AS t WHERE {}",
            self.name,
            self.by_id(row, 1)
        );
        as_owner(|| query_one::<bool>(&query, &[row.row_id.into()])).unwrap_or(false)
    }

    /// Which of these rows the caller sees through the table (its privileges and row-level
    /// security apply: the query runs as the caller).
    pub fn visible_ids(&self, row_ids: &[&str]) -> std::collections::HashSet<String> {
        if row_ids.is_empty() {
            return Default::default();
        }
        let id = quote_identifier(&self.id_column);
        let query = format!(
            "SELECT t.{id}::text FROM {} AS t WHERE t.{id}::text = ANY ($1::text[])",
            self.name
        );
        crate::store::query_column::<String>(&query, &[row_ids.to_vec().into()])
            .into_iter()
            .collect()
    }

    /// The row's current values as JSON (column name to value), if the caller can see it.
    pub fn row_values(&self, row: RowRef<'_>) -> Option<Map<String, Value>> {
        let query = format!(
            "SELECT to_jsonb(t) FROM {} AS t WHERE {}",
            self.name,
            self.by_id(row, 1)
        );
        // timestamptz values in UTC, as the trigger reads rows (`search_path::in_utc`).
        match search_path::in_utc(|| query_one::<JsonB>(&query, &[row.row_id.into()]))?.0 {
            Value::Object(map) => Some(map),
            _ => None,
        }
    }

    /// The columns the projection writes: fields with a same-named column, id excluded.
    fn targets<'a>(&'a self, projection: &'a Value) -> impl Iterator<Item = &'a str> + 'a {
        let fields = projection.as_object().expect("a projection is an object");
        self.columns
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(move |name| *name != self.id_column && fields.contains_key(*name))
    }

    /// Writes the projected values into the row's columns; false when there was nothing to
    /// write or the caller's UPDATE found no row.
    pub fn update_columns(&self, row: RowRef<'_>, projection: &Value) -> bool {
        let targets: Vec<String> = self.targets(projection).map(quote_identifier).collect();
        if targets.is_empty() {
            return false;
        }
        let sources: Vec<String> = targets.iter().map(|c| format!("r.{c}")).collect();
        let query = format!(
            "UPDATE {rel} AS t SET ({list}) = (SELECT {src} FROM pg_catalog.jsonb_populate_record(NULL::{rel}, $1) AS r)
              WHERE {by_id} RETURNING true",
            rel = self.name,
            list = targets.join(", "),
            src = sources.join(", "),
            by_id = self.by_id(row, 2),
        );
        let _guard = ExtensionWrite::begin(self.relid, row.row_id);
        query_one::<bool>(
            &query,
            &[JsonB(projection.clone()).into(), row.row_id.into()],
        )
        .unwrap_or(false)
    }

    /// Deletes the row (its doc went on another node; see `replication`).
    pub fn delete_row(&self, row: RowRef<'_>) {
        let query = format!(
            "DELETE FROM {rel} AS t WHERE {by_id}",
            rel = self.name,
            by_id = self.by_id(row, 1)
        );
        let _guard = ExtensionWrite::begin(self.relid, row.row_id);
        store::run(&query, &[row.row_id.into()]);
    }

    /// Deletes every row (every doc of the entity went on another node; see `replication`).
    pub fn delete_all_rows(&self) {
        let _guard = ExtensionWrite::begin(self.relid, "");
        store::run(&format!("DELETE FROM {}", self.name), &[]);
    }

    /// Inserts the row with the projected values (a patch for a missing row of a registered
    /// entity). Constraint violations surface as their usual errors.
    pub fn insert_row(&self, row: RowRef<'_>, projection: &Value) {
        check_access(row, Some(self), Access::Insert);
        let mut targets: Vec<String> = self.targets(projection).map(quote_identifier).collect();
        targets.push(quote_identifier(&self.id_column));
        let mut values = projection.as_object().cloned().unwrap_or_default();
        values.insert(self.id_column.clone(), Value::String(row.row_id.to_owned()));
        let list = targets.join(", ");
        let query = format!(
            "INSERT INTO {rel} ({list}) SELECT {list} FROM pg_catalog.jsonb_populate_record(NULL::{rel}, $1)",
            rel = self.name
        );
        let _guard = ExtensionWrite::begin(self.relid, row.row_id);
        store::run(&query, &[JsonB(Value::Object(values)).into()]);
    }
}

/// The first permanent table named `name` in the schemas of the caller's search_path, by
/// catalog lookup (the path is pinned while the extension's SQL runs). Never a temporary
/// one: any role may create those, and pg_temp is searched first, so it could stand in for
/// the entity's real table and reach its docs.
fn table_on_caller_path(name: &str) -> Option<pg_sys::Oid> {
    if name.len() >= pg_sys::NAMEDATALEN as usize {
        return None; // no relation name is this long
    }
    let name = std::ffi::CString::new(name).ok()?;
    search_path::caller_namespaces()
        .into_iter()
        .find_map(|namespace| {
            let relid = unsafe { pg_sys::get_relname_relid(name.as_ptr(), namespace) };
            let table = relid != pg_sys::InvalidOid
                && matches!(
                    unsafe { pg_sys::get_rel_relkind(relid) } as u8,
                    pg_sys::RELKIND_RELATION | pg_sys::RELKIND_PARTITIONED_TABLE
                )
                && unsafe { pg_sys::get_rel_persistence(relid) } as u8
                    != pg_sys::RELPERSISTENCE_TEMP;
            table.then_some(relid)
        })
}

fn rowtype_of(relid: pg_sys::Oid) -> pg_sys::Oid {
    query_one::<pg_sys::Oid>(
        "SELECT reltype FROM pg_catalog.pg_class WHERE oid = $1",
        &[relid.into()],
    )
    .unwrap_or(pg_sys::Oid::INVALID)
}

/// (name, SQL type) of every live column of a relation.
pub fn columns_of(relid: pg_sys::Oid) -> Vec<(String, String)> {
    Spi::connect(|client| {
        client
            .select(
                "SELECT a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod)
                   FROM pg_catalog.pg_attribute a
                  WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
                  ORDER BY a.attnum",
                None,
                &[relid.into()],
            )?
            .map(|r| {
                Ok((
                    r.get::<String>(1)?.unwrap_or_default(),
                    r.get::<String>(2)?.unwrap_or_default(),
                ))
            })
            .collect::<Result<Vec<_>, pgrx::spi::Error>>()
    })
    .expect("reading pg_attribute")
}

/// What a call does to a doc, for privilege checks.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    Insert,
    Delete,
}

/// Refuses (42501) a call the role could not make through the entity's table; for an entity
/// without a table, its rights on `_pylon_crdt_snapshots` decide.
pub fn check_access(row: RowRef<'_>, table: Option<&EntityTable>, access: Access) {
    let sidecar = store::sidecar();
    let (relid, name) = match table {
        Some(t) => (t.relid, t.name.as_str()),
        None => (sidecar.oid, "_pylon_crdt_snapshots"),
    };
    let (mode, verb) = match access {
        Access::Read => (pg_sys::ACL_SELECT, "SELECT"),
        Access::Write => (pg_sys::ACL_UPDATE, "UPDATE"),
        Access::Insert => (pg_sys::ACL_INSERT, "INSERT"),
        Access::Delete => (pg_sys::ACL_DELETE, "DELETE"),
    };
    let allowed = unsafe {
        pg_sys::pg_class_aclcheck(relid, pg_sys::GetUserId(), mode as pg_sys::AclMode)
            == pg_sys::AclResult::ACLCHECK_OK
    };
    if !allowed {
        raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("pylon_crdt: {row}: permission denied: this role lacks {verb} on table {name}"),
        );
    }
}
