//! The entity's own table: finding it, checking the caller's rights on it, and writing the
//! projection into its columns (DESIGN 4 and 8).
//!
//! The table is the registered relation, or else a table named exactly like the entity on the
//! caller's search_path. It is always referred to through its regclass text, so names with
//! quotes, spaces or capitals are safe. Column writes run as the caller, so the table's own
//! privileges, row-level security and triggers apply to them.

use pgrx::prelude::*;
use pgrx::spi::quote_identifier;
use serde_json::Value;

use crate::error::{raise, RowRef};
use crate::store::{self, as_owner, query_one};

pub struct EntityTable {
    pub relid: pg_sys::Oid,
    /// `relid::regclass::text`: quoted and schema-qualified where needed.
    pub name: String,
    pub id_column: String,
    /// The fields spec when the table is registered with `pylon_crdt_enable`.
    pub fields: Option<Value>,
}

impl EntityTable {
    /// The registered table of `entity`, if any.
    pub fn registered(entity: &str) -> Option<EntityTable> {
        let query = format!(
            "SELECT jsonb_build_array(relation::oid::int8, relation::text, id_column::text, fields)
               FROM {} WHERE entity = $1",
            store::extension_table("_pylon_crdt_registry")
        );
        let row = query_one::<pgrx::JsonB>(&query, &[entity.into()])?;
        let [relid, name, id_column, fields] =
            <[Value; 4]>::try_from(row.0.as_array()?.clone()).ok()?;
        Some(EntityTable {
            relid: pg_sys::Oid::from(relid.as_u64()? as u32),
            name: name.as_str()?.to_owned(),
            id_column: id_column.as_str()?.to_owned(),
            fields: Some(fields),
        })
    }

    /// The registered table, else a table named exactly `entity` with an `id` column.
    pub fn resolve(entity: &str) -> Option<EntityTable> {
        Self::registered(entity).or_else(|| {
            let relid = query_one::<pg_sys::Oid>(
                "SELECT c.oid FROM pg_catalog.pg_class c
                  WHERE c.oid = pg_catalog.to_regclass(pg_catalog.quote_ident($1))
                    AND c.relkind IN ('r', 'p')",
                &[entity.into()],
            )?;
            let name = query_one::<String>("SELECT $1::regclass::text", &[relid.into()])?;
            Some(EntityTable {
                relid,
                name,
                id_column: "id".into(),
                fields: None,
            })
        })
    }

    /// Writes the projected values of the fields that have a same-named column into the row.
    /// Returns false when the caller sees no such row (it does not exist, or row-level
    /// security hides it; the latter is an error).
    pub fn write_columns(&self, row: RowRef<'_>, projection: &Value) -> bool {
        let columns = self.columns();
        let id_type = columns
            .iter()
            .find(|(name, _)| *name == self.id_column)
            .map(|(_, ty)| ty.clone())
            .unwrap_or_else(|| {
                raise(
                    PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                    format!(
                        "pylon_crdt: {row}: table {} has no id column \"{}\"",
                        self.name, self.id_column
                    ),
                )
            });
        let fields = projection.as_object().expect("a projection is an object");
        let targets: Vec<String> = columns
            .iter()
            .filter(|(name, _)| *name != self.id_column && fields.contains_key(name))
            .map(|(name, _)| quote_identifier(name))
            .collect();
        let id = quote_identifier(&self.id_column);
        let query = if targets.is_empty() {
            // Nothing to write, but the caller must still be allowed to update this row.
            format!("SELECT true FROM {rel} AS t WHERE t.{id} = $2::{id_type} AND $1 IS NOT NULL FOR UPDATE", rel = self.name)
        } else {
            let list = targets.join(", ");
            let sources: Vec<String> = targets.iter().map(|c| format!("r.{c}")).collect();
            format!(
                "UPDATE {rel} AS t SET ({list}) = (SELECT {src} FROM pg_catalog.jsonb_populate_record(NULL::{rel}, $1) AS r)
                  WHERE t.{id} = $2::{id_type} RETURNING true",
                rel = self.name,
                src = sources.join(", ")
            )
        };
        let updated = query_one::<bool>(
            &query,
            &[pgrx::JsonB(projection.clone()).into(), row.row_id.into()],
        )
        .unwrap_or(false);
        if !updated && self.row_exists(row, &id_type) {
            raise(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                format!("pylon_crdt: {row}: row-level security on table {} does not let this role update the row", self.name),
            );
        }
        updated
    }

    /// Whether the row is visible to the caller; an existing row hidden by row-level security
    /// is an error, so a doc is never read past the table's policies.
    pub fn check_visible(&self, row: RowRef<'_>) {
        let id_type = self.id_type();
        let query = format!(
            "SELECT true FROM {rel} AS t WHERE t.{id} = $1::{id_type}",
            rel = self.name,
            id = quote_identifier(&self.id_column)
        );
        let visible = query_one::<bool>(&query, &[row.row_id.into()]).unwrap_or(false);
        if !visible && self.row_exists(row, &id_type) {
            raise(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                format!("pylon_crdt: {row}: row-level security on table {} hides the row from this role", self.name),
            );
        }
    }

    /// Whether the row exists at all, looked at past row-level security.
    pub fn row_exists(&self, row: RowRef<'_>, id_type: &str) -> bool {
        let query = format!(
            "SELECT true FROM {rel} AS t WHERE t.{id} = $1::{id_type}",
            rel = self.name,
            id = quote_identifier(&self.id_column)
        );
        as_owner(|| query_one::<bool>(&query, &[row.row_id.into()])).unwrap_or(false)
    }

    pub fn id_type(&self) -> String {
        self.columns()
            .into_iter()
            .find(|(name, _)| *name == self.id_column)
            .map(|(_, ty)| ty)
            .unwrap_or_else(|| "text".into())
    }

    /// (name, SQL type) of every live column.
    fn columns(&self) -> Vec<(String, String)> {
        Spi::connect(|client| {
            client
                .select(
                    "SELECT a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod)
                       FROM pg_catalog.pg_attribute a
                      WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
                      ORDER BY a.attnum",
                    None,
                    &[self.relid.into()],
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
}

/// What a call does to a doc, for privilege checks.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
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
