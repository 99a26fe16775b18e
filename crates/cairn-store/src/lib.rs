//! The object store of one OSD: objects grouped in collections (one per PG), changed only by
//! atomic transactions that are durable when [`ObjectStore::submit`]'s receiver resolves.
//!
//! Transactions commit in submission order (the replication protocol relies on it: a replica's
//! PG log is always a prefix of its primary's). Reads see committed state only.

use bytes::Bytes;
use cairn_types::{ObjectId, PgId, Result, Version};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

pub mod datadir;
pub mod mem;
pub mod redb_store;
pub mod validate;

pub use mem::MemStore;
pub use redb_store::RedbStore;

/// Metadata kept for every object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ObjectMeta {
    pub size: u64,
    pub mtime_ns: u64,
    /// Version of the last write that changed the object.
    pub version: Version,
}

/// One change inside a transaction. Ops on an object that does not exist create it (except
/// `Remove`, `RmXattr`, `OmapRm`, which are no-ops then).
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Creates the object empty if it does not exist.
    Touch {
        pg: PgId,
        oid: ObjectId,
    },
    /// Writes `data` at `offset`, growing the object if needed (the gap reads as zeros). An empty
    /// write creates the object but does not change its size. EFBIG past
    /// `cairn_types::MAX_OBJECT_SIZE_BYTES`.
    Write {
        pg: PgId,
        oid: ObjectId,
        offset: u64,
        data: Bytes,
    },
    /// Zeros `[offset, offset+len)`; never changes the size (the part past the end is ignored,
    /// as Ceph's zero op). Zeroed ranges should be stored as holes.
    Zero {
        pg: PgId,
        oid: ObjectId,
        offset: u64,
        len: u64,
    },
    /// Sets the size; shrinking discards data past it, growing reads as zeros. EFBIG past
    /// `cairn_types::MAX_OBJECT_SIZE_BYTES`.
    Truncate {
        pg: PgId,
        oid: ObjectId,
        size: u64,
    },
    /// Removes the object with its data, xattrs and omap.
    Remove {
        pg: PgId,
        oid: ObjectId,
    },
    /// Makes `dst`'s data equal to `src`'s: size, bytes (holes stay holes), version and mtime;
    /// `dst`'s xattrs and omap are left alone. Creates `dst` if needed; a missing `src` counts
    /// as empty. (Snapshots: a clone keeps an object's pre-snapshot data; rollback restores it.)
    CloneData {
        pg: PgId,
        src: ObjectId,
        dst: ObjectId,
    },
    /// Sets the object's version and mtime (every replicated write ends with one).
    SetMeta {
        pg: PgId,
        oid: ObjectId,
        version: Version,
        mtime_ns: u64,
    },
    SetXattr {
        pg: PgId,
        oid: ObjectId,
        key: String,
        value: Bytes,
    },
    RmXattr {
        pg: PgId,
        oid: ObjectId,
        key: String,
    },
    OmapSet {
        pg: PgId,
        oid: ObjectId,
        entries: Vec<(String, Bytes)>,
    },
    OmapRm {
        pg: PgId,
        oid: ObjectId,
        keys: Vec<String>,
    },
    /// Removes every omap entry and the omap header.
    OmapClear {
        pg: PgId,
        oid: ObjectId,
    },
    /// Sets the omap header blob.
    OmapSetHeader {
        pg: PgId,
        oid: ObjectId,
        header: Bytes,
    },
    /// Appends an entry to the PG log under `version` (versions strictly increase per PG; an
    /// append not after the PG's last entry fails the transaction with EINVAL).
    LogAppend {
        pg: PgId,
        version: Version,
        entry: Bytes,
    },
    /// Drops log entries with version <= `upto`.
    LogTrim {
        pg: PgId,
        upto: Version,
    },
    /// Drops log entries with version > `after` (divergent entries being rolled back).
    LogTruncate {
        pg: PgId,
        after: Version,
    },
    /// Sets a per-PG metadata key (e.g. the PG info).
    PgMetaSet {
        pg: PgId,
        key: String,
        value: Bytes,
    },
    /// Removes a whole PG: every object, its log and metadata.
    RemovePg {
        pg: PgId,
    },
    /// Sets an OSD-wide metadata key (superblock, ...).
    MetaSet {
        key: String,
        value: Bytes,
    },
}

/// An atomic group of ops: all or none are applied, on crash too.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Transaction {
    pub ops: Vec<Op>,
}

impl Transaction {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn push(&mut self, op: Op) -> &mut Self {
        self.ops.push(op);
        self
    }
}

/// A store of PG collections. Implementations: [`RedbStore`] (on disk, group-committed) and
/// [`MemStore`] (tests and simulation).
pub trait ObjectStore: Send + Sync + 'static {
    /// Queues a transaction. The receiver resolves once it is durable (or failed, and then
    /// nothing of it was applied). Transactions commit in submission order.
    fn submit(&self, txn: Transaction) -> oneshot::Receiver<Result<()>>;

    /// Queues several transactions back to back (contiguous in the commit order, and for
    /// [`RedbStore`] likely in one group commit). One receiver per transaction, same order.
    fn submit_many(&self, txns: Vec<Transaction>) -> Vec<oneshot::Receiver<Result<()>>> {
        txns.into_iter().map(|txn| self.submit(txn)).collect()
    }

    /// `None` if the object does not exist.
    fn stat(&self, pg: PgId, oid: &ObjectId) -> Result<Option<ObjectMeta>>;
    /// Reads up to `len` bytes at `offset` (short at the end of the object; empty past it).
    /// ENOENT if the object does not exist; EIO if a checksum does not match.
    fn read(&self, pg: PgId, oid: &ObjectId, offset: u64, len: u64) -> Result<Bytes>;
    /// ENODATA if the xattr is not set, ENOENT if the object does not exist.
    fn get_xattr(&self, pg: PgId, oid: &ObjectId, key: &str) -> Result<Bytes>;
    fn list_xattrs(&self, pg: PgId, oid: &ObjectId) -> Result<Vec<(String, Bytes)>>;
    fn omap_get_header(&self, pg: PgId, oid: &ObjectId) -> Result<Bytes>;
    /// Values of the given keys that exist.
    fn omap_get(&self, pg: PgId, oid: &ObjectId, keys: &[String]) -> Result<Vec<(String, Bytes)>>;
    /// Up to `max` entries with key > `start_after` and starting with `prefix`, in key order.
    fn omap_list(
        &self,
        pg: PgId,
        oid: &ObjectId,
        start_after: &str,
        prefix: &str,
        max: usize,
    ) -> Result<Vec<(String, Bytes)>>;
    /// Up to `max` objects of `pg` ordered by id, strictly after `start_after` if given.
    fn list_objects(
        &self,
        pg: PgId,
        start_after: Option<&ObjectId>,
        max: usize,
    ) -> Result<Vec<(ObjectId, ObjectMeta)>>;
    /// Log entries of `pg` with version > `after`, in version order.
    fn log_entries(&self, pg: PgId, after: Version) -> Result<Vec<(Version, Bytes)>>;
    fn pg_meta(&self, pg: PgId, key: &str) -> Result<Option<Bytes>>;
    /// Every PG that has objects, log entries or metadata.
    fn list_pgs(&self) -> Result<Vec<PgId>>;
    fn meta(&self, key: &str) -> Result<Option<Bytes>>;
    /// Bytes used by the store (for `df`).
    fn used_bytes(&self) -> Result<u64>;
}
