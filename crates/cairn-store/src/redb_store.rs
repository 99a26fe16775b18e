//! The on-disk [`ObjectStore`]: one redb file per OSD (`DIR/store.redb`), group-committed by one
//! committer thread. `docs/store.md` has the full picture; the essentials:
//!
//! **Layout.** Tables keyed so that one PG, and one object, is a contiguous key range
//! ([`keys`]): object metadata, object data in chunks of `chunk_bytes` (60 KiB by default, see docs/store.md) each
//! with its crc32c, xattrs, omap entries, omap headers, PG log, PG meta, OSD meta, and a small
//! `store` table (format version, chunk size, used bytes). An absent chunk, or the part of a
//! chunk past its stored length, reads as zeros: holes cost nothing and zeroing a whole chunk
//! deletes it.
//!
//! **Group commit.** `submit` puts the transaction on a bounded queue; the committer takes up to
//! [`MAX_BATCH_TXNS`] / [`MAX_BATCH_PAYLOAD_BYTES`] of them, applies them in order inside one redb
//! write transaction, commits it with `Durability::Immediate` (one fsync for the batch) and only
//! then resolves their receivers. Each transaction is checked against the batch-so-far state
//! before any of its ops is applied, so a rejected one is skipped and the rest commit. If applying
//! fails midway (I/O error, checksum mismatch in a read-modify-write), the redb transaction is
//! aborted, the failing transaction gets the error and the rest of the batch is replayed without
//! it. If the commit fails, every transaction of the batch fails with EIO and none is applied.
//!
//! **Crash safety.** We assume what redb assumes: `fsync` returning means the written pages are
//! on stable storage, and a crash may tear or drop any write not yet fsynced. redb writes new
//! pages copy-on-write, never overwriting pages of the last commit, and publishes a commit by
//! flipping to a checksummed commit slot; on open after a crash it uses the newest slot whose
//! checksum verifies (repairing the allocator state, which can take a while on a big file). So
//! the file always holds exactly the state after some whole number of committed batches:
//! a transaction is never half-visible, and since receivers resolve only after the commit's fsync
//! returned, every acknowledged transaction survives. Batches are applied in queue order, so what
//! survives is a prefix of the submission order.

mod keys;
mod queue;
mod records;
mod writer;

pub use queue::{MAX_BATCH_PAYLOAD_BYTES, MAX_BATCH_TXNS, MAX_QUEUED_PAYLOAD_BYTES, MAX_QUEUED_TXNS};

use crate::{ObjectMeta, ObjectStore, Transaction};
use bytes::Bytes;
use cairn_types::{errno, Error, ObjectId, PgId, Result, Version};
use keys::{object_key, pg_prefix, prefix_end, sub_key};
use queue::{Pending, SubmitQueue};
use redb::{ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::oneshot;

/// File name of the store inside the directory given to [`RedbStore::open`].
pub const STORE_FILE_NAME: &str = "store.redb";
/// On-disk format version, in the `store` table.
const FORMAT_VERSION: u32 = 1;
/// Chunk size of new stores: just under 64 KiB, so a chunk and its header fit one 64 KiB redb
/// page (a 64 KiB chunk would take a 128 KiB page); a 4 KiB write reads, patches and rewrites
/// one chunk (docs/store.md, "Why 60 KiB").
pub const DEFAULT_CHUNK_BYTES: u32 = 60 << 10;
/// Smallest and largest accepted chunk sizes (tiny chunks are for tests).
pub const MIN_CHUNK_BYTES: u32 = 8;
pub const MAX_CHUNK_BYTES: u32 = 1 << 20;
/// redb page cache of a store opened with default options.
pub const DEFAULT_CACHE_BYTES: usize = 256 << 20;

type Bin = &'static [u8];
/// `pg ‖ oid` → `ObjectMeta` record.
pub(crate) const OBJECTS: TableDefinition<Bin, Bin> = TableDefinition::new("objects");
/// `pg ‖ oid ‖ chunk index u64 BE` → chunk record (crc32c + data).
pub(crate) const CHUNKS: TableDefinition<Bin, Bin> = TableDefinition::new("chunks");
/// `pg ‖ oid ‖ key` → value.
pub(crate) const XATTRS: TableDefinition<Bin, Bin> = TableDefinition::new("xattrs");
/// `pg ‖ oid ‖ key` → value.
pub(crate) const OMAP: TableDefinition<Bin, Bin> = TableDefinition::new("omap");
/// `pg ‖ oid` → header.
pub(crate) const OMAP_HEADERS: TableDefinition<Bin, Bin> = TableDefinition::new("omap_headers");
/// `pg ‖ epoch ‖ seq` → entry.
pub(crate) const PG_LOG: TableDefinition<Bin, Bin> = TableDefinition::new("pg_log");
/// `pg ‖ key` → value.
pub(crate) const PG_META: TableDefinition<Bin, Bin> = TableDefinition::new("pg_meta");
/// `key` → value.
pub(crate) const OSD_META: TableDefinition<Bin, Bin> = TableDefinition::new("osd_meta");
/// The store's own bookkeeping: `format`, `chunk_bytes`, `used_bytes`.
pub(crate) const STORE_INFO: TableDefinition<Bin, Bin> = TableDefinition::new("store");

pub(crate) const INFO_FORMAT: &[u8] = b"format";
pub(crate) const INFO_CHUNK_BYTES: &[u8] = b"chunk_bytes";
pub(crate) const INFO_USED_BYTES: &[u8] = b"used_bytes";

/// Options of [`RedbStore::open_with`].
#[derive(Debug, Clone, Copy)]
pub struct RedbOptions {
    /// Chunk size of a *new* store; an existing store keeps the size it was created with.
    pub chunk_bytes: u32,
    /// redb page cache size.
    pub cache_bytes: usize,
}

impl Default for RedbOptions {
    fn default() -> Self {
        RedbOptions { chunk_bytes: DEFAULT_CHUNK_BYTES, cache_bytes: DEFAULT_CACHE_BYTES }
    }
}

/// Counters of the committer, for metrics and tests.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub batches: AtomicU64,
    pub txns_committed: AtomicU64,
    pub txns_failed: AtomicU64,
    pub replays: AtomicU64,
}

/// A snapshot of the committer's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommitStats {
    /// redb write transactions committed (fsyncs).
    pub batches: u64,
    pub txns_committed: u64,
    pub txns_failed: u64,
    /// Batches re-run after one of their transactions failed midway.
    pub replays: u64,
}

/// The redb-backed store. Dropping it stops the committer after it has committed everything
/// already submitted.
pub struct RedbStore {
    db: Arc<redb::Database>,
    queue: Arc<SubmitQueue>,
    counters: Arc<Counters>,
    committer: Option<std::thread::JoinHandle<()>>,
    chunk_bytes: u64,
    path: PathBuf,
}

/// Maps any redb error to EIO with what we were doing.
pub(crate) fn eio<E: std::fmt::Display>(context: impl std::fmt::Display) -> impl FnOnce(E) -> Error {
    move |e| Error::eio(format!("object store: {context}: {e}"))
}

fn no_object(pg: PgId, oid: &ObjectId) -> Error {
    Error::enoent(format!("object '{oid}' does not exist in pg {pg}"))
}

impl RedbStore {
    /// Opens (creating if needed) the store in directory `dir`.
    pub fn open(dir: &Path) -> Result<RedbStore> {
        Self::open_with(dir, RedbOptions::default())
    }

    pub fn open_with(dir: &Path, options: RedbOptions) -> Result<RedbStore> {
        if !(MIN_CHUNK_BYTES..=MAX_CHUNK_BYTES).contains(&options.chunk_bytes) {
            return Err(Error::einval(format!(
                "chunk size {} is outside {MIN_CHUNK_BYTES}..={MAX_CHUNK_BYTES}",
                options.chunk_bytes
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::new(e.raw_os_error().unwrap_or(errno::EIO), format!("creating {}: {e}", dir.display()))
        })?;
        let path = dir.join(STORE_FILE_NAME);
        let db =
            redb::Builder::new().set_cache_size(options.cache_bytes).create(&path).map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => {
                    Error::new(errno::EBUSY, format!("object store {} is already open", path.display()))
                }
                e => Error::eio(format!("opening object store {}: {e}", path.display())),
            })?;
        let chunk_bytes = writer::init_store(&db, options.chunk_bytes)?;
        let db = Arc::new(db);
        let queue = Arc::new(SubmitQueue::default());
        let counters = Arc::new(Counters::default());
        let committer = writer::spawn_committer(db.clone(), queue.clone(), counters.clone(), chunk_bytes)?;
        Ok(RedbStore { db, queue, counters, committer: Some(committer), chunk_bytes, path })
    }

    /// The chunk size this store was created with.
    pub fn chunk_bytes(&self) -> u64 {
        self.chunk_bytes
    }

    /// Size of the redb file (what the store takes on disk, free pages included).
    pub fn file_bytes(&self) -> Result<u64> {
        std::fs::metadata(&self.path)
            .map(|m| m.len())
            .map_err(|e| Error::eio(format!("stat {}: {e}", self.path.display())))
    }

    pub fn commit_stats(&self) -> CommitStats {
        let c = &self.counters;
        CommitStats {
            batches: c.batches.load(Ordering::Relaxed),
            txns_committed: c.txns_committed.load(Ordering::Relaxed),
            txns_failed: c.txns_failed.load(Ordering::Relaxed),
            replays: c.replays.load(Ordering::Relaxed),
        }
    }

    fn begin_read(&self) -> Result<ReadTransaction> {
        self.db.begin_read().map_err(eio("beginning a read transaction"))
    }

    /// Reads the object's metadata inside `rtx`; ENOENT if it does not exist.
    fn meta_in(&self, rtx: &ReadTransaction, pg: PgId, oid: &ObjectId) -> Result<(Vec<u8>, ObjectMeta)> {
        let objects = rtx.open_table(OBJECTS).map_err(eio("opening objects"))?;
        let okey = object_key(pg, oid);
        let meta = writer::get_meta(&objects, &okey, pg, oid)?.ok_or_else(|| no_object(pg, oid))?;
        Ok((okey, meta))
    }
}

/// `(key suffix, value)` pairs of `table` in `[lower, upper)` (keys decoded after
/// `prefix_len` bytes), at most `max`.
fn scan_sub_keys(
    table: &impl ReadableTable<Bin, Bin>,
    lower: Bound<&[u8]>,
    upper: Bound<&[u8]>,
    prefix_len: usize,
    max: usize,
) -> Result<Vec<(String, Bytes)>> {
    let mut out = Vec::new();
    for entry in table.range::<&[u8]>((lower, upper)).map_err(eio("scanning"))? {
        if out.len() >= max {
            break;
        }
        let (k, v) = entry.map_err(eio("scanning"))?;
        let key = keys::decode_sub_key(k.value(), prefix_len)?;
        out.push((key, Bytes::copy_from_slice(v.value())));
    }
    Ok(out)
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        self.queue.close("the store was dropped");
        if let Some(handle) = self.committer.take() {
            if handle.join().is_err() {
                tracing::error!(path = %self.path.display(), "object store committer panicked");
            }
        }
    }
}

/// The upper bound of the key range of everything starting with `prefix`.
fn end_bound(end: &Option<Vec<u8>>) -> Bound<&[u8]> {
    match end {
        Some(e) => Bound::Excluded(e.as_slice()),
        None => Bound::Unbounded,
    }
}

impl ObjectStore for RedbStore {
    fn submit(&self, txn: Transaction) -> oneshot::Receiver<Result<()>> {
        let (pending, rx) = Pending::new(txn);
        self.queue.push_all(vec![pending]);
        rx
    }

    fn submit_many(&self, txns: Vec<Transaction>) -> Vec<oneshot::Receiver<Result<()>>> {
        let (pending, receivers) = txns.into_iter().map(Pending::new).unzip();
        self.queue.push_all(pending);
        receivers
    }

    fn stat(&self, pg: PgId, oid: &ObjectId) -> Result<Option<ObjectMeta>> {
        let rtx = self.begin_read()?;
        let objects = rtx.open_table(OBJECTS).map_err(eio("opening objects"))?;
        writer::get_meta(&objects, &object_key(pg, oid), pg, oid)
    }

    fn read(&self, pg: PgId, oid: &ObjectId, offset: u64, len: u64) -> Result<Bytes> {
        let rtx = self.begin_read()?;
        let (okey, meta) = self.meta_in(&rtx, pg, oid)?;
        let end = offset.saturating_add(len).min(meta.size);
        if offset >= end {
            return Ok(Bytes::new());
        }
        let chunks = rtx.open_table(CHUNKS).map_err(eio("opening chunks"))?;
        let mut out = vec![0u8; (end - offset) as usize];
        writer::read_into(&chunks, &okey, self.chunk_bytes, offset, &mut out, pg, oid)?;
        Ok(Bytes::from(out))
    }

    fn get_xattr(&self, pg: PgId, oid: &ObjectId, key: &str) -> Result<Bytes> {
        let rtx = self.begin_read()?;
        let (okey, _) = self.meta_in(&rtx, pg, oid)?;
        let xattrs = rtx.open_table(XATTRS).map_err(eio("opening xattrs"))?;
        let value = xattrs.get(sub_key(&okey, key).as_slice()).map_err(eio("reading xattr"))?;
        value
            .map(|v| Bytes::copy_from_slice(v.value()))
            .ok_or_else(|| Error::new(errno::ENODATA, format!("no xattr '{key}' on '{oid}'")))
    }

    fn list_xattrs(&self, pg: PgId, oid: &ObjectId) -> Result<Vec<(String, Bytes)>> {
        let rtx = self.begin_read()?;
        let (okey, _) = self.meta_in(&rtx, pg, oid)?;
        let xattrs = rtx.open_table(XATTRS).map_err(eio("opening xattrs"))?;
        let end = prefix_end(&okey);
        scan_sub_keys(&xattrs, Bound::Included(&okey), end_bound(&end), okey.len(), usize::MAX)
    }

    fn omap_get_header(&self, pg: PgId, oid: &ObjectId) -> Result<Bytes> {
        let rtx = self.begin_read()?;
        let (okey, _) = self.meta_in(&rtx, pg, oid)?;
        let headers = rtx.open_table(OMAP_HEADERS).map_err(eio("opening omap headers"))?;
        let header = headers.get(okey.as_slice()).map_err(eio("reading omap header"))?;
        Ok(header.map(|h| Bytes::copy_from_slice(h.value())).unwrap_or_default())
    }

    fn omap_get(&self, pg: PgId, oid: &ObjectId, keys: &[String]) -> Result<Vec<(String, Bytes)>> {
        let rtx = self.begin_read()?;
        let (okey, _) = self.meta_in(&rtx, pg, oid)?;
        let omap = rtx.open_table(OMAP).map_err(eio("opening omap"))?;
        let mut out = Vec::new();
        for key in keys {
            if let Some(v) = omap.get(sub_key(&okey, key).as_slice()).map_err(eio("reading omap"))? {
                out.push((key.clone(), Bytes::copy_from_slice(v.value())));
            }
        }
        Ok(out)
    }

    fn omap_list(
        &self,
        pg: PgId,
        oid: &ObjectId,
        start_after: &str,
        prefix: &str,
        max: usize,
    ) -> Result<Vec<(String, Bytes)>> {
        let rtx = self.begin_read()?;
        let (okey, _) = self.meta_in(&rtx, pg, oid)?;
        let omap = rtx.open_table(OMAP).map_err(eio("opening omap"))?;
        let prefix_key = sub_key(&okey, prefix);
        let after_key = sub_key(&okey, start_after);
        // Keys > start_after and >= prefix: start from whichever bound is higher.
        let lower = if start_after >= prefix {
            Bound::Excluded(after_key.as_slice())
        } else {
            Bound::Included(prefix_key.as_slice())
        };
        let end = prefix_end(&prefix_key);
        scan_sub_keys(&omap, lower, end_bound(&end), okey.len(), max)
    }

    fn list_objects(
        &self,
        pg: PgId,
        start_after: Option<&ObjectId>,
        max: usize,
    ) -> Result<Vec<(ObjectId, ObjectMeta)>> {
        let rtx = self.begin_read()?;
        let objects = rtx.open_table(OBJECTS).map_err(eio("opening objects"))?;
        let prefix = pg_prefix(pg);
        let after = start_after.map(|oid| object_key(pg, oid));
        let lower = match &after {
            Some(k) => Bound::Excluded(k.as_slice()),
            None => Bound::Included(&prefix[..]),
        };
        let end = prefix_end(&prefix);
        let mut out = Vec::new();
        for entry in objects.range::<&[u8]>((lower, end_bound(&end))).map_err(eio("listing objects"))? {
            if out.len() >= max {
                break;
            }
            let (k, v) = entry.map_err(eio("listing objects"))?;
            let (_, oid, _) = keys::decode_object_key(k.value())?;
            let meta = records::decode_meta(v.value(), || format!("object '{oid}' in pg {pg}"))?;
            out.push((oid, meta));
        }
        Ok(out)
    }

    fn log_entries(&self, pg: PgId, after: Version) -> Result<Vec<(Version, Bytes)>> {
        let rtx = self.begin_read()?;
        let log = rtx.open_table(PG_LOG).map_err(eio("opening pg log"))?;
        let lower = keys::log_key(pg, after);
        let end = prefix_end(&pg_prefix(pg));
        let mut out = Vec::new();
        let range = log
            .range::<&[u8]>((Bound::Excluded(&lower[..]), end_bound(&end)))
            .map_err(eio("reading pg log"))?;
        for entry in range {
            let (k, v) = entry.map_err(eio("reading pg log"))?;
            let (_, version) = keys::decode_log_key(k.value())?;
            out.push((version, Bytes::copy_from_slice(v.value())));
        }
        Ok(out)
    }

    fn pg_meta(&self, pg: PgId, key: &str) -> Result<Option<Bytes>> {
        let rtx = self.begin_read()?;
        let meta = rtx.open_table(PG_META).map_err(eio("opening pg meta"))?;
        let value = meta.get(sub_key(&pg_prefix(pg), key).as_slice()).map_err(eio("reading pg meta"))?;
        Ok(value.map(|v| Bytes::copy_from_slice(v.value())))
    }

    fn list_pgs(&self) -> Result<Vec<PgId>> {
        let rtx = self.begin_read()?;
        let mut pgs = std::collections::BTreeSet::new();
        for table in [OBJECTS, PG_LOG, PG_META] {
            let table = rtx.open_table(table).map_err(eio("opening a pg table"))?;
            writer::collect_pgs(&table, &mut pgs)?;
        }
        Ok(pgs.into_iter().collect())
    }

    fn meta(&self, key: &str) -> Result<Option<Bytes>> {
        let rtx = self.begin_read()?;
        let meta = rtx.open_table(OSD_META).map_err(eio("opening osd meta"))?;
        let value = meta.get(key.as_bytes()).map_err(eio("reading osd meta"))?;
        Ok(value.map(|v| Bytes::copy_from_slice(v.value())))
    }

    fn used_bytes(&self) -> Result<u64> {
        let rtx = self.begin_read()?;
        let info = rtx.open_table(STORE_INFO).map_err(eio("opening store info"))?;
        writer::get_u64(&info, INFO_USED_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Op;

    const PG: PgId = PgId { pool: 1, seed: 2 };

    fn open(dir: &Path, chunk_bytes: u32) -> RedbStore {
        RedbStore::open_with(dir, RedbOptions { chunk_bytes, cache_bytes: 4 << 20 }).expect("open")
    }

    fn write(name: &str, offset: u64, data: &[u8]) -> Op {
        Op::Write { pg: PG, oid: ObjectId::new(name), offset, data: Bytes::copy_from_slice(data) }
    }

    fn commit(store: &RedbStore, ops: Vec<Op>) -> Result<()> {
        store.submit(Transaction { ops }).blocking_recv().expect("resolved")
    }

    fn stored_chunks(store: &RedbStore, name: &str) -> Vec<(u64, usize)> {
        let rtx = store.begin_read().expect("read txn");
        let chunks = rtx.open_table(CHUNKS).expect("chunks");
        let okey = object_key(PG, &ObjectId::new(name));
        let end = prefix_end(&okey);
        chunks
            .range::<&[u8]>((Bound::Included(okey.as_slice()), end_bound(&end)))
            .expect("range")
            .map(|e| {
                let (k, v) = e.expect("entry");
                let index = keys::chunk_index(k.value(), okey.len()).expect("index");
                (index, records::chunk_data_len(v.value()))
            })
            .collect()
    }

    #[test]
    fn corrupt_chunk_reads_as_eio_naming_object_and_chunk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path(), 32);
        commit(&store, vec![write("obj", 0, &[5u8; 100])]).expect("commit");
        writer::corrupt_chunk_for_test(&store.db, PG, &ObjectId::new("obj"), 1).expect("corrupt");
        let err = store.read(PG, &ObjectId::new("obj"), 0, 100).expect_err("corrupt chunk");
        assert_eq!(err.errno, errno::EIO);
        assert!(err.message.contains("'obj'") && err.message.contains("chunk 1"), "{}", err.message);
        assert!(err.message.contains("checksum mismatch"), "{}", err.message);
        // Chunks around it still read; metadata is intact.
        assert_eq!(store.read(PG, &ObjectId::new("obj"), 0, 32).expect("chunk 0"), vec![5u8; 32]);
        assert_eq!(store.read(PG, &ObjectId::new("obj"), 64, 36).expect("chunk 2+3"), vec![5u8; 36]);
        // A full-chunk overwrite does not read the old chunk, so it repairs it.
        commit(&store, vec![write("obj", 32, &[6u8; 32])]).expect("rewrite chunk");
        assert_eq!(store.read(PG, &ObjectId::new("obj"), 32, 32).expect("repaired"), vec![6u8; 32]);
    }

    #[test]
    fn transaction_failing_midway_is_dropped_and_the_batch_replayed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path(), 32);
        commit(&store, vec![write("bad", 0, &[1u8; 64])]).expect("commit");
        writer::corrupt_chunk_for_test(&store.db, PG, &ObjectId::new("bad"), 0).expect("corrupt");
        let txns = vec![
            Transaction { ops: vec![write("a", 0, b"first")] },
            // Passes validation; its partial overwrite must read the corrupt chunk and fails
            // after its first op was applied.
            Transaction { ops: vec![write("half", 0, b"x"), write("bad", 3, b"yy")] },
            Transaction { ops: vec![write("c", 0, b"third")] },
        ];
        let results: Vec<Option<i32>> = store
            .submit_many(txns)
            .into_iter()
            .map(|rx| rx.blocking_recv().expect("resolved").err().map(|e| e.errno))
            .collect();
        assert_eq!(results, [None, Some(errno::EIO), None]);
        assert_eq!(store.stat(PG, &ObjectId::new("half")).expect("stat"), None, "no half transaction");
        assert_eq!(store.read(PG, &ObjectId::new("a"), 0, 10).expect("a"), &b"first"[..]);
        assert_eq!(store.read(PG, &ObjectId::new("c"), 0, 10).expect("c"), &b"third"[..]);
        let stats = store.commit_stats();
        assert!(stats.replays >= 1, "{stats:?}");
        assert_eq!(stats.txns_failed, 1);
    }

    #[test]
    fn zero_and_truncate_leave_holes_not_zero_chunks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path(), 16);
        commit(&store, vec![write("o", 0, &[9u8; 64])]).expect("commit");
        assert_eq!(stored_chunks(&store, "o"), [(0, 16), (1, 16), (2, 16), (3, 16)]);
        let zero = |offset, len| Op::Zero { pg: PG, oid: ObjectId::new("o"), offset, len };
        commit(&store, vec![zero(16, 16)]).expect("zero one chunk");
        assert_eq!(stored_chunks(&store, "o"), [(0, 16), (2, 16), (3, 16)]);
        commit(&store, vec![zero(40, 100)]).expect("zero the tail");
        assert_eq!(stored_chunks(&store, "o"), [(0, 16), (2, 8)]);
        commit(&store, vec![zero(2, 4)]).expect("zero inside a chunk");
        assert_eq!(stored_chunks(&store, "o"), [(0, 16), (2, 8)]);
        let truncate = Op::Truncate { pg: PG, oid: ObjectId::new("o"), size: 10 };
        commit(&store, vec![truncate]).expect("truncate");
        assert_eq!(stored_chunks(&store, "o"), [(0, 10)]);
        let mut want = vec![9u8; 10];
        want[2..6].fill(0);
        assert_eq!(store.read(PG, &ObjectId::new("o"), 0, 100).expect("read"), want);
        // Sparse write: only the touched chunk is stored.
        commit(&store, vec![write("sparse", 1000, b"z")]).expect("sparse");
        assert_eq!(stored_chunks(&store, "sparse"), [(62, 9)]);
    }

    #[test]
    fn closed_store_keeps_data_of_transactions_queued_at_drop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let receivers = {
            let store = open(dir.path(), 64);
            (0..20u64)
                .map(|i| store.submit(Transaction { ops: vec![write(&format!("o{i}"), 0, b"x")] }))
                .collect::<Vec<_>>()
        };
        for rx in receivers {
            rx.blocking_recv().expect("resolved").expect("committed before close");
        }
        let store = open(dir.path(), 64);
        assert_eq!(store.list_objects(PG, None, 100).expect("list").len(), 20);
    }
}
