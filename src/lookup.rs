//! Index lookups on the extension's own tables without SPI, for the read every write starts
//! with (`store::fetch`). An SPI statement costs an executor start and end; at 8 writers on
//! 2 cores the three statements of a write took a fifth of the machine, and this read is the
//! one that needs no executor: three primary-key probes.
//!
//! Visibility is what an SPI query in the calling (volatile) function would see: the command
//! counter is advanced first (the transaction's own earlier writes show), and the snapshot is
//! `GetTransactionSnapshot()`, which in READ COMMITTED is new, so a writer that has just
//! waited for a row's lock sees what the previous holder committed.

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::spi::Spi;

/// A table with a unique index whose key columns are the text columns `keys`.
pub struct Probe {
    pub table: pg_sys::Oid,
    index: pg_sys::Oid,
    /// (heap attribute number, index collation) of each key column, in `keys` order.
    keys: Vec<(i16, pg_sys::Oid)>,
}

/// Finds `table`'s unique index on exactly `keys` (in any order, as the heap columns named),
/// with the attribute numbers and collations a scan key needs.
pub fn probe(table: pg_sys::Oid, keys: &[&str]) -> Option<Probe> {
    let found = Spi::connect(|client| {
        let rows = client.select(
            "SELECT ix.indexrelid,
                    array_agg(a.attnum ORDER BY k.ord),
                    array_agg(ix.indcollation[array_position(ix.indkey::int2[], a.attnum)] ORDER BY k.ord)
               FROM pg_catalog.pg_index ix
               JOIN unnest($2::text[]) WITH ORDINALITY AS k(name, ord) ON true
               JOIN pg_catalog.pg_attribute a ON a.attrelid = ix.indrelid AND a.attname = k.name
              WHERE ix.indrelid = $1 AND ix.indisunique AND ix.indisvalid AND ix.indpred IS NULL
                AND ix.indexprs IS NULL AND ix.indnkeyatts = cardinality($2::text[])
                AND a.attnum = ANY (ix.indkey::int2[])
              GROUP BY ix.indexrelid
             HAVING count(*) = cardinality($2::text[])
              ORDER BY bool_or(ix.indisprimary) DESC, ix.indexrelid
              LIMIT 1",
            Some(1),
            &[table.into(), keys.to_vec().into()],
        )?;
        if rows.is_empty() {
            return Ok(None);
        }
        // indkey and indcollation are both subscripted from 0, so a key's position in one is
        // its subscript in the other.
        let row = rows.first();
        Ok::<_, pgrx::spi::Error>(Some((
            row.get::<pg_sys::Oid>(1)?,
            row.get::<Vec<i16>>(2)?,
            row.get::<Vec<pg_sys::Oid>>(3)?,
        )))
    })
    .ok()??;
    let (Some(index), Some(attnums), Some(collations)) = found else {
        return None;
    };
    Some(Probe {
        table,
        index,
        keys: attnums.into_iter().zip(collations).collect(),
    })
}

/// A registered snapshot for the lookups of one call, released on drop (and by the resource
/// owner if the call errors out).
pub struct CallSnapshot(pg_sys::Snapshot);

impl CallSnapshot {
    pub fn take() -> CallSnapshot {
        unsafe {
            pg_sys::CommandCounterIncrement();
            CallSnapshot(pg_sys::RegisterSnapshot(pg_sys::GetTransactionSnapshot()))
        }
    }
}

impl Drop for CallSnapshot {
    fn drop(&mut self) {
        unsafe { pg_sys::UnregisterSnapshot(self.0) };
    }
}

/// Where a tuple is: its xmin and ctid, as `xmin::text || ':' || ctid::text` prints them.
pub fn tuple_stamp(tuple: &pg_sys::HeapTupleData) -> String {
    // pgrx's own (Postgres 18 also declares the C inline, which is no symbol).
    let xmin = unsafe { pg_sys::submodules::htup::HeapTupleHeaderGetRawXmin(tuple.t_data) };
    let tid = tuple.t_self;
    let block = (u32::from(tid.ip_blkid.bi_hi) << 16) | u32::from(tid.ip_blkid.bi_lo);
    format!("{}:({},{})", u32::from(xmin), block, tid.ip_posid)
}

/// Runs `read` on the first tuple the probe finds for `values`, in index order (the last when
/// `last` is set: the highest trailing column of a prefix match). `values` may be a prefix of
/// the probe's keys.
pub fn first<R>(
    probe: &Probe,
    values: &[&str],
    last: bool,
    snapshot: &CallSnapshot,
    read: impl FnOnce(&mut pg_sys::HeapTupleData, pg_sys::TupleDesc) -> R,
) -> Option<R> {
    let mut read = Some(read);
    let mut result = None;
    scan(probe, values, None, last, snapshot, |tuple, desc| {
        result = read.take().map(|read| read(tuple, desc));
        false
    });
    result
}

/// Runs `read` on each tuple the probe finds for `values` (a prefix of its keys) whose next
/// key column, an int8, is greater than `after`, in index order, while `read` returns true.
pub fn each_after(
    probe: &Probe,
    values: &[&str],
    after: i64,
    snapshot: &CallSnapshot,
    read: impl FnMut(&mut pg_sys::HeapTupleData, pg_sys::TupleDesc) -> bool,
) {
    scan(probe, values, Some(after), false, snapshot, read);
}

fn scan(
    probe: &Probe,
    values: &[&str],
    after: Option<i64>,
    last: bool,
    snapshot: &CallSnapshot,
    mut read: impl FnMut(&mut pg_sys::HeapTupleData, pg_sys::TupleDesc) -> bool,
) {
    const LOCK: pg_sys::LOCKMODE = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
    let direction = if last {
        pg_sys::ScanDirection::BackwardScanDirection
    } else {
        pg_sys::ScanDirection::ForwardScanDirection
    };
    unsafe {
        let mut keys: Vec<pg_sys::ScanKeyData> = Vec::with_capacity(values.len() + 1);
        for ((attnum, collation), value) in probe.keys.iter().zip(values) {
            let mut key = std::mem::zeroed::<pg_sys::ScanKeyData>();
            pg_sys::ScanKeyEntryInitialize(
                &mut key,
                0,
                *attnum,
                pg_sys::BTEqualStrategyNumber as pg_sys::StrategyNumber,
                pg_sys::InvalidOid,
                *collation,
                pg_sys::F_TEXTEQ.into(),
                value.into_datum().expect("text datum"),
            );
            keys.push(key);
        }
        if let (Some(after), Some((attnum, _))) = (after, probe.keys.get(values.len())) {
            let mut key = std::mem::zeroed::<pg_sys::ScanKeyData>();
            pg_sys::ScanKeyEntryInitialize(
                &mut key,
                0,
                *attnum,
                pg_sys::BTGreaterStrategyNumber as pg_sys::StrategyNumber,
                pg_sys::InvalidOid,
                pg_sys::InvalidOid,
                pg_sys::F_INT8GT.into(),
                after.into_datum().expect("int8 datum"),
            );
            keys.push(key);
        }
        let heap = pg_sys::table_open(probe.table, LOCK);
        let index = pg_sys::index_open(probe.index, LOCK);
        let scan = pg_sys::systable_beginscan_ordered(
            heap,
            index,
            snapshot.0,
            keys.len() as i32,
            keys.as_mut_ptr(),
        );
        loop {
            let tuple = pg_sys::systable_getnext_ordered(scan, direction);
            if tuple.is_null() || !read(&mut *tuple, (*heap).rd_att) {
                break;
            }
        }
        pg_sys::systable_endscan_ordered(scan);
        pg_sys::index_close(index, LOCK);
        pg_sys::table_close(heap, LOCK);
    }
}

/// Column `attnum` of `tuple` as stored (None when NULL): a pointer into the tuple.
fn raw_column(
    tuple: &mut pg_sys::HeapTupleData,
    desc: pg_sys::TupleDesc,
    attnum: i16,
) -> Option<pg_sys::Datum> {
    let mut isnull = false;
    let datum = unsafe { pg_sys::heap_getattr(tuple, i32::from(attnum), desc, &mut isnull) };
    (!isnull).then_some(datum)
}

/// Column `attnum` of `tuple` as `T` (None when NULL). Detoasts; the value is a copy.
pub fn column<T: FromDatum>(
    tuple: &mut pg_sys::HeapTupleData,
    desc: pg_sys::TupleDesc,
    attnum: i16,
) -> Option<T> {
    raw_column(tuple, desc, attnum).and_then(|datum| unsafe { T::from_datum(datum, false) })
}

/// Size in bytes of a varlena column's value, without detoasting it (`octet_length`).
pub fn column_size(
    tuple: &mut pg_sys::HeapTupleData,
    desc: pg_sys::TupleDesc,
    attnum: i16,
) -> Option<i64> {
    raw_column(tuple, desc, attnum).map(|datum| unsafe {
        pg_sys::toast_raw_datum_size(datum) as i64 - pg_sys::VARHDRSZ as i64
    })
}

/// The heap attribute number of `table`'s column `name`.
pub fn attnum(table: pg_sys::Oid, name: &str) -> Option<i16> {
    crate::store::query_one::<i16>(
        "SELECT attnum FROM pg_catalog.pg_attribute WHERE attrelid = $1 AND attname = $2 AND NOT attisdropped",
        &[table.into(), name.into()],
    )
}
