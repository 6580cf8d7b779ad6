//! One place that turns failures into Postgres errors with fitting SQLSTATEs (DESIGN 7).
//! Every message names the entity and row, and the field when there is one.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

use crate::doc::DocError;

/// The row a call is about, for error messages (an empty row id: the entity as a whole).
#[derive(Clone, Copy)]
pub struct RowRef<'a> {
    pub entity: &'a str,
    pub row_id: &'a str,
}

impl std::fmt::Display for RowRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.row_id {
            "" => write!(f, "entity \"{}\"", self.entity),
            row_id => write!(f, "entity \"{}\" row \"{row_id}\"", self.entity),
        }
    }
}

/// Raises an ERROR; the transaction aborts, so nothing a failed call did is kept.
pub fn raise(code: PgSqlErrorCode, message: String) -> ! {
    report(ErrorReport::new(code, message, "pylon_crdt"))
}

/// `raise` with a HINT saying what to do.
pub fn raise_with_hint(code: PgSqlErrorCode, message: String, hint: &str) -> ! {
    report(ErrorReport::new(code, message, "pylon_crdt").set_hint(hint))
}

fn report(error: ErrorReport) -> ! {
    error.report(PgLogLevel::ERROR);
    unreachable!("an ERROR report does not return")
}

/// Refuses (42501) a caller who is not a superuser: for functions that read or send every
/// doc, past the entity tables' privileges. `function` names the call, `why` what it does.
pub fn require_superuser(function: &str, why: &str) {
    if !unsafe { pgrx::pg_sys::superuser() } {
        raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("pylon_crdt: {function} {why}: only a superuser may call it"),
        );
    }
}

/// Refuses a write before any work (25006) on a read-only server (a hot standby, where
/// Postgres would otherwise fail deep inside with an internal error) or in a read-only
/// transaction.
pub fn check_writable(function: &str) {
    if unsafe { pgrx::pg_sys::RecoveryInProgress() } {
        raise_with_hint(
            PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION,
            format!("pylon_crdt: cannot run {function}: the server is read-only (a hot standby in recovery)"),
            "Write on the primary. A standby serves the read functions: pylon_crdt_project, pylon_crdt_snapshot, pylon_crdt_version, pylon_crdt_update_since, pylon_crdt_verify and pylon_crdt_stats.",
        );
    }
    if unsafe { pgrx::pg_sys::XactReadOnly } {
        raise(
            PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION,
            format!("pylon_crdt: cannot run {function} in a read-only transaction"),
        );
    }
}

pub fn sqlstate_of(err: &DocError) -> PgSqlErrorCode {
    match err {
        DocError::Fields(_) | DocError::Patch { .. } => {
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE
        }
        DocError::Bytes(_) => PgSqlErrorCode::ERRCODE_INVALID_BINARY_REPRESENTATION,
        DocError::Pending(_) => PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        DocError::Limit(_) => PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
        DocError::Unsupported(_) => PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        DocError::Panic(_) => PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
    }
}

/// Raises a core error with the row it concerns.
pub fn raise_doc(row: RowRef<'_>, err: DocError) -> ! {
    raise(sqlstate_of(&err), format!("pylon_crdt: {row}: {err}"))
}

pub trait OrRaise<T> {
    /// Unwraps, or raises the error as a Postgres ERROR naming `row`.
    fn or_raise(self, row: RowRef<'_>) -> T;
}

impl<T> OrRaise<T> for Result<T, DocError> {
    fn or_raise(self, row: RowRef<'_>) -> T {
        self.unwrap_or_else(|e| raise_doc(row, e))
    }
}
