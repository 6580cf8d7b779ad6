//! The extension's own SQL never resolves a name through the caller's `search_path`
//! (DESIGN 8; the class of CVE-2018-1058).
//!
//! Much of that SQL runs as the sidecar's owner (`store::as_owner`), usually the superuser who
//! ran `CREATE EXTENSION`. If it resolved `=`, `||`, `now()` or a type through a path that
//! starts with a schema the caller can create objects in, the caller's function would run
//! with the owner's rights. So every entry point (each SQL function and the trigger) runs its
//! body under `pinned`: `search_path` is `pg_catalog, pg_temp` for the whole call, in a GUC
//! nest level of its own, as Postgres does for a function's `SET` clause and for its own
//! maintenance commands (`RestrictSearchPath()` in Postgres 17). With `pg_temp` last, a
//! temporary object never shadows a catalog one, and functions and operators are never looked
//! up there at all. The extension's tables are schema-qualified, and entity tables, once
//! resolved, are named by their OID-derived qualified names.
//!
//! The one name resolved through the caller's path is an unregistered entity's table (the
//! README's documented lookup): the path is captured before pinning (`caller_namespaces`)
//! and searched by catalog lookup, without SQL.
//!
//! Triggers and functions of the caller's own that the extension's writes fire (a trigger on
//! the entity table) see the pinned path too, as under a `SECURITY DEFINER` function with a
//! `SET search_path` clause.
//!
//! Cost: about 2 µs per call (`bench/pin_cost.sql`), inside the noise of a
//! write of about 600 µs (benchmark cells (g) and (h)). A call whose path is already pinned
//! (the trigger during the extension's own UPDATE) skips it.

use std::cell::RefCell;
use std::ffi::CStr;

use pgrx::pg_sys;

/// The pinned value: the catalog first, temporary objects last.
pub const SAFE_SEARCH_PATH: &CStr = c"pg_catalog, pg_temp";

thread_local! {
    // The caller's search path (namespace OIDs, implicit ones left out), captured by the
    // outermost pinned call; nested calls (a user trigger that calls us from inside our own
    // write) keep the outermost caller's.
    static CALLER_PATH: RefCell<Option<Vec<pg_sys::Oid>>> = const { RefCell::new(None) };
}

/// Settings changed for as long as it lives, in a GUC nest level of its own (what a
/// function's `SET` clause does); dropping it restores them. On an error the transaction (or
/// savepoint) abort restores them instead.
pub struct Settings(i32);

impl Settings {
    pub fn set(settings: &[(&CStr, &CStr)]) -> Settings {
        unsafe {
            let level = pg_sys::NewGUCNestLevel();
            for (name, value) in settings {
                pg_sys::set_config_option(
                    name.as_ptr(),
                    value.as_ptr(),
                    pg_sys::GucContext::PGC_USERSET,
                    pg_sys::GucSource::PGC_S_SESSION,
                    pg_sys::GucAction::GUC_ACTION_SAVE,
                    true,
                    0,
                    false,
                );
            }
            Settings(level)
        }
    }
}

/// Runs `f` with `TimeZone` set to UTC. Rows read as JSON (the trigger's `row_to_json`, the
/// `to_jsonb` reads) then render `timestamptz` values in one canonical form, whatever the
/// writer's session time zone: two sessions writing one instant write one value, not two
/// strings that conflict as LWW values and differ for every peer.
pub fn in_utc<R>(f: impl FnOnce() -> R) -> R {
    let _utc = Settings::set(&[(c"TimeZone", c"UTC")]);
    f()
}

impl Drop for Settings {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            unsafe { pg_sys::AtEOXact_GUC(true, self.0) };
        }
    }
}

/// Runs `f` with `search_path` pinned to `SAFE_SEARCH_PATH`, restoring the caller's value
/// afterwards. On an error the transaction (or savepoint) abort restores it.
pub fn pinned<R>(f: impl FnOnce() -> R) -> R {
    struct ForgetCaller(bool);
    impl Drop for ForgetCaller {
        fn drop(&mut self) {
            if self.0 {
                CALLER_PATH.with(|p| p.borrow_mut().take());
            }
        }
    }
    let outermost = CALLER_PATH.with(|p| {
        let mut path = p.borrow_mut();
        let capture = path.is_none();
        if capture {
            *path = Some(current_namespaces());
        }
        capture
    });
    let _forget = ForgetCaller(outermost);
    // Dropped before `_forget`: settings restored first, as before.
    let _settings = (!is_pinned()).then(|| Settings::set(&[(c"search_path", SAFE_SEARCH_PATH)]));
    f()
}

/// Whether `search_path` is the pinned value right now.
pub fn is_pinned() -> bool {
    let current = unsafe { pg_sys::namespace_search_path };
    !current.is_null() && unsafe { CStr::from_ptr(current) } == SAFE_SEARCH_PATH
}

/// The schemas of the caller's `search_path`, in order (implicit `pg_catalog` and `pg_temp`
/// left out), as captured by the outermost `pinned` call; the current path outside one.
pub fn caller_namespaces() -> Vec<pg_sys::Oid> {
    CALLER_PATH
        .with(|p| p.borrow().clone())
        .unwrap_or_else(current_namespaces)
}

fn current_namespaces() -> Vec<pg_sys::Oid> {
    unsafe {
        let list = pg_sys::fetch_search_path(false);
        if list.is_null() {
            return Vec::new();
        }
        let namespaces = (0..(*list).length as usize)
            .map(|i| (*(*list).elements.add(i)).oid_value)
            .collect();
        pg_sys::list_free(list);
        namespaces
    }
}
