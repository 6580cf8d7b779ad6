//! History you can ask about (issue 12): who changed a doc and when (`pylon_crdt_history`),
//! and the row as it was (`pylon_crdt_project_at`). The work is in `doc::history`; every
//! write stamps its changes with `current_author`.

use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::JsonB;

use crate::doc::history::{self, Author, When};
use crate::doc::{self};
use crate::error::{OrRaise, RowRef};
use crate::materialize::EntityTable;
use crate::row::{self, Change, Entity};
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
#[allow(clippy::type_complexity)] // a table's columns, as pgrx spells them
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

fn project_at(row: RowRef<'_>, entity: &Entity, when: When<'_>) -> JsonB {
    JsonB(
        row::read(row, entity.table.as_ref(), |d| {
            let then = history::doc_at(d, &history::resolve(d, when)?)?;
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
        project_at(row, &Entity::registered(row), When::Time(unix_seconds(at)))
    })
}

/// The projection of a registered entity's row at a version (`pylon_crdt_version`'s format).
#[pg_extern(stable, parallel_restricted, name = "pylon_crdt_project_at")]
fn pylon_crdt_project_at_version(entity: &str, row_id: &str, version: &[u8]) -> JsonB {
    pinned(|| {
        let row = RowRef { entity, row_id };
        crate::api::check_size(row, "version vector", version.len());
        project_at(row, &Entity::registered(row), When::Version(version))
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
        project_at(
            row,
            &Entity::with_fields(row, &fields.0),
            When::Time(unix_seconds(at)),
        )
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
            When::Version(version),
        )
    })
}

/// What changed in each field of the doc between two versions (`pylon_crdt_version`'s
/// format): see `doc::history::diff`.
#[pg_extern(stable, parallel_restricted, name = "pylon_crdt_diff")]
fn pylon_crdt_diff_versions(entity: &str, row_id: &str, from: &[u8], to: &[u8]) -> JsonB {
    pinned(|| {
        let row = RowRef { entity, row_id };
        crate::api::check_size(row, "version vector", from.len().max(to.len()));
        diff(row, When::Version(from), When::Version(to))
    })
}

/// What changed in each field of the doc between two times.
#[pg_extern(stable, parallel_restricted, name = "pylon_crdt_diff")]
fn pylon_crdt_diff_times(
    entity: &str,
    row_id: &str,
    from: TimestampWithTimeZone,
    to: TimestampWithTimeZone,
) -> JsonB {
    pinned(|| {
        let row = RowRef { entity, row_id };
        diff(
            row,
            When::Time(unix_seconds(from)),
            When::Time(unix_seconds(to)),
        )
    })
}

fn diff(row: RowRef<'_>, from: When<'_>, to: When<'_>) -> JsonB {
    JsonB(
        row::read(row, EntityTable::resolve(row.entity).as_ref(), |d| {
            history::diff(d, &history::resolve(d, from)?, &history::resolve(d, to)?)
        })
        .or_raise(row),
    )
}

/// Brings a registered entity's row back to its state at a time: a new change that undoes
/// what came after (history is kept; peers merge it like any other change), stored and
/// written to the row's columns as any write is. Returns the projection.
#[pg_extern(volatile, parallel_unsafe, name = "pylon_crdt_restore")]
fn pylon_crdt_restore_time(entity: &str, row_id: &str, at: TimestampWithTimeZone) -> JsonB {
    crate::error::check_writable("pylon_crdt_restore");
    pinned(|| {
        let row = RowRef { entity, row_id };
        let change = Change::Restore(When::Time(unix_seconds(at)));
        JsonB(row::write(row, &Entity::registered(row), change))
    })
}

/// `pylon_crdt_restore` to a version.
#[pg_extern(volatile, parallel_unsafe, name = "pylon_crdt_restore")]
fn pylon_crdt_restore_version(entity: &str, row_id: &str, version: &[u8]) -> JsonB {
    crate::error::check_writable("pylon_crdt_restore");
    pinned(|| {
        let row = RowRef { entity, row_id };
        crate::api::check_size(row, "version vector", version.len());
        let change = Change::Restore(When::Version(version));
        JsonB(row::write(row, &Entity::registered(row), change))
    })
}

/// `pylon_crdt_restore` with a fields spec, for any entity.
#[pg_extern(volatile, parallel_unsafe, name = "pylon_crdt_restore")]
fn pylon_crdt_restore_time_fields(
    entity: &str,
    row_id: &str,
    fields: JsonB,
    at: TimestampWithTimeZone,
) -> JsonB {
    crate::error::check_writable("pylon_crdt_restore");
    pinned(|| {
        let row = RowRef { entity, row_id };
        let change = Change::Restore(When::Time(unix_seconds(at)));
        JsonB(row::write(
            row,
            &Entity::with_fields(row, &fields.0),
            change,
        ))
    })
}

#[pg_extern(volatile, parallel_unsafe, name = "pylon_crdt_restore")]
fn pylon_crdt_restore_version_fields(
    entity: &str,
    row_id: &str,
    fields: JsonB,
    version: &[u8],
) -> JsonB {
    crate::error::check_writable("pylon_crdt_restore");
    pinned(|| {
        let row = RowRef { entity, row_id };
        crate::api::check_size(row, "version vector", version.len());
        let change = Change::Restore(When::Version(version));
        JsonB(row::write(
            row,
            &Entity::with_fields(row, &fields.0),
            change,
        ))
    })
}
