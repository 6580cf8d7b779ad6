//! History you can ask about (issue 12): who changed a doc and when (`pylon_crdt_history`),
//! and the row as it was (`pylon_crdt_project_at`). The work is in `doc::history`; every
//! write stamps its changes with `current_author`.

use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::JsonB;

use crate::doc::{self, history, history::Author};
use crate::error::{OrRaise, RowRef};
use crate::materialize::EntityTable;
use crate::row::{self, Entity};
use crate::search_path::pinned;

/// Seconds between the Unix epoch and Postgres' (2000-01-01).
const POSTGRES_EPOCH: i64 = 946_684_800;

/// The author of this transaction's changes: the current role, the transaction's id and its
/// start time.
pub fn current_author() -> Author {
    unsafe {
        let role = pg_sys::GetUserNameFromId(pg_sys::GetUserId(), true);
        let role = if role.is_null() {
            String::new()
        } else {
            std::ffi::CStr::from_ptr(role)
                .to_string_lossy()
                .into_owned()
        };
        Author {
            role,
            xid: pg_sys::GetTopFullTransactionId().value,
            at: pg_sys::GetCurrentTransactionStartTimestamp() / 1_000_000 + POSTGRES_EPOCH,
        }
    }
}

fn unix_seconds(at: TimestampWithTimeZone) -> i64 {
    let micros: pg_sys::TimestampTz = at.into();
    micros.div_euclid(1_000_000) + POSTGRES_EPOCH
}

fn timestamp(unix: i64) -> Option<TimestampWithTimeZone> {
    if unix <= 0 {
        return None; // the peer recorded no time
    }
    TimestampWithTimeZone::try_from((unix - POSTGRES_EPOCH) * 1_000_000).ok()
}

/// The doc's changes in causal order: the peer and its op counters, the Lamport time, when
/// and by whom (role and transaction id, for changes this extension committed), the commit
/// message, and the fields the change touched.
#[pg_extern(stable, parallel_restricted)]
fn pylon_crdt_history(
    entity: &str,
    row_id: &str,
) -> TableIterator<
    'static,
    (
        name!(peer, String),
        name!(counter_start, i32),
        name!(counter_end, i32),
        name!(lamport, i64),
        name!(made_at, Option<TimestampWithTimeZone>),
        name!(role, Option<String>),
        name!(xid, Option<i64>),
        name!(message, Option<String>),
        name!(fields, Vec<String>),
    ),
> {
    let changes = pinned(|| {
        let row = RowRef { entity, row_id };
        row::read(row, EntityTable::resolve(entity).as_ref(), history::changes).or_raise(row)
    });
    TableIterator::new(changes.into_iter().map(|c| {
        (
            c.peer.to_string(),
            c.counter_start,
            c.counter_end,
            i64::from(c.lamport),
            timestamp(c.timestamp),
            c.role,
            c.xid.map(|x| x as i64),
            c.message,
            c.fields,
        )
    }))
}

/// When to look at a doc: a time, or a version vector.
enum At<'a> {
    Time(TimestampWithTimeZone),
    Version(&'a [u8]),
}

fn project_at(row: RowRef<'_>, entity: &Entity, at: At<'_>) -> JsonB {
    JsonB(
        row::read(row, entity.table.as_ref(), |d| {
            let version = match at {
                At::Time(t) => history::version_at(d, unix_seconds(t))?,
                At::Version(bytes) => doc::decode_version(bytes)?,
            };
            let then = history::doc_at(d, &version)?;
            doc::project(&then, &entity.fields)
        })
        .or_raise(row),
    )
}

/// The projection of a registered entity's row as it was at a time: every change made then
/// or before (an empty projection before the doc existed). The stored doc is untouched.
#[pg_extern(stable, parallel_restricted, name = "pylon_crdt_project_at")]
fn pylon_crdt_project_at_time(entity: &str, row_id: &str, at: TimestampWithTimeZone) -> JsonB {
    pinned(|| {
        let row = RowRef { entity, row_id };
        project_at(row, &Entity::registered(row), At::Time(at))
    })
}

/// The projection of a registered entity's row at a version (`pylon_crdt_version`'s format).
#[pg_extern(stable, parallel_restricted, name = "pylon_crdt_project_at")]
fn pylon_crdt_project_at_version(entity: &str, row_id: &str, version: &[u8]) -> JsonB {
    pinned(|| {
        let row = RowRef { entity, row_id };
        crate::api::check_size(row, "version vector", version.len());
        project_at(row, &Entity::registered(row), At::Version(version))
    })
}

/// `pylon_crdt_project_at` with a fields spec, for any entity.
#[pg_extern(stable, parallel_restricted, name = "pylon_crdt_project_at")]
fn pylon_crdt_project_at_time_fields(
    entity: &str,
    row_id: &str,
    fields: JsonB,
    at: TimestampWithTimeZone,
) -> JsonB {
    pinned(|| {
        let row = RowRef { entity, row_id };
        project_at(row, &Entity::with_fields(row, &fields.0), At::Time(at))
    })
}

#[pg_extern(stable, parallel_restricted, name = "pylon_crdt_project_at")]
fn pylon_crdt_project_at_version_fields(
    entity: &str,
    row_id: &str,
    fields: JsonB,
    version: &[u8],
) -> JsonB {
    pinned(|| {
        let row = RowRef { entity, row_id };
        crate::api::check_size(row, "version vector", version.len());
        project_at(
            row,
            &Entity::with_fields(row, &fields.0),
            At::Version(version),
        )
    })
}
