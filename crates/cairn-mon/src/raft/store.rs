//! The mon's Raft storage: log, vote, applied state and last snapshot in one redb file,
//! `DIR/mon.redb`.
//!
//! Tables (every value is a record: one version byte, then postcard):
//! - `raft_log`: log index (u64) → `Entry` (the command, membership change or blank entry).
//! - `raft_meta`: `"vote"` → `Vote`; `"purged"` → last purged `LogId`; `"committed"` → last
//!   committed `LogId` known here;
//!   `"sm"` → applied state (last applied `LogId`, membership, the whole `ClusterMap` and the
//!   `AuthDb`); `"snapshot"` → last snapshot (`SnapshotMeta` + the serialized map and auth db).
//!
//! Disk assumptions (redb's): a commit with `Durability::Immediate` is atomic and durable when
//! `commit()` returns. Every write here except the commit index commits that way, so:
//! - `save_vote` returns, and `append` fires its flush callback, only after the data is on disk
//!   (openraft's correctness rule for votes and acknowledged entries);
//! - the applied state (map + auth db + last applied id + membership) is saved whole after each applied
//!   batch, so a restart resumes from exactly the last applied entry, never from a half-applied
//!   batch; entries committed but not yet applied are re-applied at open (up to the saved commit
//!   index, see `save_committed`) or once the node learns the commit index again;
//! - purging the log and recording the purge point are one commit, so the log never has a hole.
//!
//! Blocking redb calls that write (and fsync) run on tokio's blocking pool; reads (small, mostly
//! cached) run inline.
//!
//! Schema: `Entry<MapCommand>`, `ClusterMap` and `AuthDb` are stored with postcard, which is not
//! self-describing. A change to their serde layout in `cairn-types` must come with a new
//! `RECORD_VERSION` and a migration arm in [`decode_record`] (or, for the applied state and
//! snapshots, in [`decode_sm`] / [`decode_snapshot_state`]), or old stores stop loading.

use super::{ApplyOutcome, NodeId, TypeConfig};
use cairn_types::auth::AuthDb;
use cairn_types::{ClusterMap, MapCommand};
use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, LogState, OptionalSend, RaftLogReader,
    RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::watch;

/// Version byte leading every record this module writes. Version 2: `ClusterMap` gained
/// `pg_temp` and `PgInterval` gained `up` (background backfill). Version 3: `Pool` gained
/// `snap_seq` and `removed_snaps` (self-managed snapshots). Version 4: the applied state and
/// snapshots carry the auth database after the map (`MapCommand` gained `Auth` at its end, so
/// version-3 log entries, votes and ids decode unchanged; a version-3 applied state or snapshot
/// migrates to an empty auth database, which the leader then initializes). Versions 1 and 2 are
/// not migrated (no cluster with them exists outside tests); they are refused with a clear error.
pub(crate) const RECORD_VERSION: u8 = 4;
/// The previous version, whose records still load (see [`RECORD_VERSION`]).
const RECORD_VERSION_V3: u8 = 3;
/// Name of the database file inside the mon's data directory.
pub const DB_FILE_NAME: &str = "mon.redb";

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

const KEY_VOTE: &str = "vote";
const KEY_PURGED: &str = "purged";
const KEY_COMMITTED: &str = "committed";
const KEY_SM: &str = "sm";
const KEY_SNAPSHOT: &str = "snapshot";

type Sto = StorageError<NodeId>;
type Membership = StoredMembership<NodeId, BasicNode>;

/// Errors of this module, converted to openraft's `StorageError` at the trait boundary.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("redb: {0}")]
    Redb(#[from] redb::Error),
    #[error("corrupt {what} record: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("cannot encode {what}: {detail}")]
    Encode { what: &'static str, detail: String },
    #[error("mon store is closed")]
    Closed,
    #[error("mon store task failed: {0}")]
    Task(String),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Redb(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

impl From<StoreError> for cairn_types::Error {
    fn from(e: StoreError) -> Self {
        cairn_types::Error::eio(format!("mon store: {e}"))
    }
}

/// Encodes `value` as a record: version byte, then postcard.
pub(crate) fn encode_record<T: Serialize + ?Sized>(
    what: &'static str,
    value: &T,
) -> Result<Vec<u8>, StoreError> {
    postcard::to_extend(value, vec![RECORD_VERSION])
        .map_err(|e| StoreError::Encode { what, detail: e.to_string() })
}

/// Decodes a record written by [`encode_record`]. A later version adds a match arm that reads
/// the old layout and migrates it.
pub(crate) fn decode_record<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&(RECORD_VERSION | RECORD_VERSION_V3), body)) => {
            postcard::from_bytes(body).map_err(|e| StoreError::Corrupt { what, detail: e.to_string() })
        }
        Some((v @ (1 | 2), _)) => Err(StoreError::Corrupt {
            what,
            detail: format!("version {v} (written before snapshots; this mon store cannot be migrated)"),
        }),
        Some((v, _)) => Err(StoreError::Corrupt { what, detail: format!("unknown version {v}") }),
        None => Err(StoreError::Corrupt { what, detail: "empty record".into() }),
    }
}

/// The open database. `close` drops it (releasing redb's file lock) once no operation is in
/// flight; tasks openraft leaves behind after shutdown then get [`StoreError::Closed`].
pub(crate) struct Db {
    inner: RwLock<Option<Database>>,
}

impl Db {
    /// Opens (or creates) `dir/mon.redb` and makes sure both tables exist.
    pub(crate) fn open(dir: &Path) -> Result<Db, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Redb(redb::Error::Io(e)))?;
        let db = Database::create(dir.join(DB_FILE_NAME))?;
        let txn = db.begin_write()?;
        {
            txn.open_table(LOG)?;
            txn.open_table(META)?;
        }
        txn.commit()?;
        Ok(Db { inner: RwLock::new(Some(db)) })
    }

    fn with<T>(&self, f: impl FnOnce(&Database) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let guard = self.inner.read().map_err(|_| StoreError::Task("lock poisoned".into()))?;
        match guard.as_ref() {
            Some(db) => f(db),
            None => Err(StoreError::Closed),
        }
    }

    /// Runs a (writing, fsyncing) operation on the blocking pool — inline on a current-thread
    /// runtime (see [`super::runs_inline`]).
    async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = Arc::clone(self);
        if super::runs_inline() {
            return db.with(f);
        }
        tokio::task::spawn_blocking(move || db.with(f)).await.map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Commits `f`'s writes durably (fsync before returning).
    async fn write<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.write_with(redb::Durability::Immediate, f).await
    }

    async fn write_with<T: Send + 'static>(
        self: &Arc<Self>,
        durability: redb::Durability,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.blocking(move |db| {
            let mut txn = db.begin_write()?;
            txn.set_durability(durability)?;
            let out = f(&txn)?;
            txn.commit()?;
            Ok(out)
        })
        .await
    }

    fn read_meta_raw(&self, key: &'static str) -> Result<Option<Vec<u8>>, StoreError> {
        self.with(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(META)?;
            let value = table.get(key)?;
            Ok(value.map(|v| v.value().to_vec()))
        })
    }

    fn read_meta<T: DeserializeOwned>(&self, key: &'static str) -> Result<Option<T>, StoreError> {
        self.with(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(META)?;
            let value = table.get(key)?;
            value.map(|v| decode_record(key, v.value())).transpose()
        })
    }

    /// Drops the database once in-flight operations finish.
    pub(crate) async fn close(self: &Arc<Self>) {
        let db = Arc::clone(self);
        let closed = tokio::task::spawn_blocking(move || match db.inner.write() {
            Ok(mut guard) => guard.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        })
        .await;
        drop(closed);
    }
}

// ---------------------------------------------------------------------------------------------
// Log store
// ---------------------------------------------------------------------------------------------

/// Raft log + vote. Cloned as the log reader of replication tasks.
#[derive(Clone)]
pub(crate) struct LogStore {
    db: Arc<Db>,
}

impl LogStore {
    pub(crate) fn new(db: Arc<Db>) -> Self {
        LogStore { db }
    }

    fn read_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<Vec<Entry<TypeConfig>>, StoreError> {
        self.db.with(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(LOG)?;
            let mut out = Vec::new();
            for item in table.range::<u64>((start, end))? {
                let (_, value) = item?;
                out.push(decode_record("log entry", value.value())?);
            }
            Ok(out)
        })
    }

    fn last_entry_id(&self) -> Result<Option<LogId<NodeId>>, StoreError> {
        self.db.with(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(LOG)?;
            let last = table.last()?;
            match last {
                Some((_, value)) => {
                    let entry: Entry<TypeConfig> = decode_record("log entry", value.value())?;
                    Ok(Some(entry.log_id))
                }
                None => Ok(None),
            }
        })
    }
}

fn read_logs_err(e: StoreError) -> Sto {
    StorageIOError::read_logs(AnyError::new(&e)).into()
}

fn write_logs_err(e: StoreError) -> Sto {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, Sto> {
        self.read_range(range.start_bound().cloned(), range.end_bound().cloned()).map_err(read_logs_err)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, Sto> {
        let purged: Option<LogId<NodeId>> = self.db.read_meta(KEY_PURGED).map_err(read_logs_err)?;
        let last = self.last_entry_id().map_err(read_logs_err)?;
        Ok(LogState { last_purged_log_id: purged, last_log_id: last.or(purged) })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), Sto> {
        let record = encode_record("vote", vote).map_err(|e| vote_err(&e))?;
        self.db
            .write(move |txn| {
                txn.open_table(META)?.insert(KEY_VOTE, record.as_slice())?;
                Ok(())
            })
            .await
            .map_err(|e| vote_err(&e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, Sto> {
        self.db.read_meta(KEY_VOTE).map_err(|e| StorageIOError::read_vote(AnyError::new(&e)).into())
    }

    /// Remembered so a restart re-applies committed-but-unapplied entries before serving. Not
    /// fsync'd: the next durable commit (the apply that follows) carries it; losing it only
    /// means a restart applies those entries later, once the commit index is learned again.
    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), Sto> {
        let record = encode_record("committed", &committed).map_err(write_logs_err)?;
        self.db
            .write_with(redb::Durability::None, move |txn| {
                txn.open_table(META)?.insert(KEY_COMMITTED, record.as_slice())?;
                Ok(())
            })
            .await
            .map_err(write_logs_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, Sto> {
        let committed: Option<Option<LogId<NodeId>>> =
            self.db.read_meta(KEY_COMMITTED).map_err(read_logs_err)?;
        Ok(committed.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), Sto>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut records = Vec::new();
        for entry in entries {
            records.push((entry.log_id.index, encode_record("log entry", &entry).map_err(write_logs_err)?));
        }
        let res = self
            .db
            .write(move |txn| {
                let mut table = txn.open_table(LOG)?;
                for (index, record) in &records {
                    table.insert(*index, record.as_slice())?;
                }
                Ok(())
            })
            .await;
        // The commit above was durable: only now may openraft count these entries as flushed.
        match res {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(write_logs_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), Sto> {
        tracing::debug!(%log_id, "mon raft log: truncate");
        self.db
            .write(move |txn| {
                let mut table = txn.open_table(LOG)?;
                table.retain_in::<u64, _>(log_id.index.., |_, _| false)?;
                Ok(())
            })
            .await
            .map_err(write_logs_err)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), Sto> {
        tracing::debug!(%log_id, "mon raft log: purge");
        let record = encode_record("purged", &log_id).map_err(write_logs_err)?;
        self.db
            .write(move |txn| {
                txn.open_table(LOG)?.retain_in::<u64, _>(..=log_id.index, |_, _| false)?;
                txn.open_table(META)?.insert(KEY_PURGED, record.as_slice())?;
                Ok(())
            })
            .await
            .map_err(write_logs_err)
    }
}

fn vote_err(e: &StoreError) -> Sto {
    StorageIOError::write_vote(AnyError::new(e)).into()
}

// ---------------------------------------------------------------------------------------------
// State machine
// ---------------------------------------------------------------------------------------------

/// What `"sm"` holds: everything applied so far.
#[derive(Serialize, Deserialize)]
struct SmRecord {
    last_applied: Option<LogId<NodeId>>,
    membership: Membership,
    map: ClusterMap,
    auth: AuthDb,
}

/// [`SmRecord`] as version 3 wrote it (before the auth database).
#[derive(Deserialize)]
struct SmRecordV3 {
    last_applied: Option<LogId<NodeId>>,
    membership: Membership,
    map: ClusterMap,
}

/// The same layout as [`SmRecord`], borrowed, to write without cloning the map.
#[derive(Serialize)]
struct SmRecordRef<'a> {
    last_applied: &'a Option<LogId<NodeId>>,
    membership: &'a Membership,
    map: &'a ClusterMap,
    auth: &'a AuthDb,
}

/// A snapshot's data: the map and the auth database.
#[derive(Serialize, Deserialize)]
struct SnapshotState {
    map: ClusterMap,
    auth: AuthDb,
}

#[derive(Serialize)]
struct SnapshotStateRef<'a> {
    map: &'a ClusterMap,
    auth: &'a AuthDb,
}

fn corrupt(what: &'static str, e: postcard::Error) -> StoreError {
    StoreError::Corrupt { what, detail: e.to_string() }
}

/// Decodes the applied state, migrating a version-3 record (no auth database).
fn decode_sm(bytes: &[u8]) -> Result<SmRecord, StoreError> {
    const WHAT: &str = "applied state";
    match bytes.split_first() {
        Some((&RECORD_VERSION_V3, body)) => {
            let old: SmRecordV3 = postcard::from_bytes(body).map_err(|e| corrupt(WHAT, e))?;
            let SmRecordV3 { last_applied, membership, map } = old;
            Ok(SmRecord { last_applied, membership, map, auth: AuthDb::default() })
        }
        _ => decode_record(WHAT, bytes),
    }
}

/// Decodes a snapshot's data, migrating a version-3 snapshot (the map alone).
fn decode_snapshot_state(bytes: &[u8]) -> Result<SnapshotState, StoreError> {
    const WHAT: &str = "snapshot state";
    match bytes.split_first() {
        Some((&RECORD_VERSION_V3, body)) => {
            let map: ClusterMap = postcard::from_bytes(body).map_err(|e| corrupt(WHAT, e))?;
            Ok(SnapshotState { map, auth: AuthDb::default() })
        }
        _ => decode_record(WHAT, bytes),
    }
}

/// What `"snapshot"` holds: the last snapshot built or installed.
#[derive(Serialize, Deserialize)]
struct SnapshotRecord {
    meta: SnapshotMeta<NodeId, BasicNode>,
    /// The snapshot data as sent to followers: a record of the `ClusterMap`.
    data: Vec<u8>,
}

/// The state machine: the cluster map, applied entry by entry with `ClusterMap::apply`, and
/// beside it the auth database (`MapCommand::Auth` entries, applied with `AuthDb::apply`).
pub(crate) struct StateMachine {
    db: Arc<Db>,
    last_applied: Option<LogId<NodeId>>,
    membership: Membership,
    map: Arc<ClusterMap>,
    map_tx: watch::Sender<Arc<ClusterMap>>,
    auth: Arc<AuthDb>,
    auth_tx: watch::Sender<Arc<AuthDb>>,
}

/// Receivers of what the state machine applies.
pub(crate) struct Applied {
    pub map: watch::Receiver<Arc<ClusterMap>>,
    pub auth: watch::Receiver<Arc<AuthDb>>,
}

static SNAPSHOT_SEQ: AtomicU64 = AtomicU64::new(0);

impl StateMachine {
    /// Loads the applied state saved by the last run (or an empty one).
    pub(crate) fn load(db: Arc<Db>) -> Result<(StateMachine, Applied), StoreError> {
        let record = db.read_meta_raw(KEY_SM)?.map(|b| decode_sm(&b)).transpose()?;
        let (last_applied, membership, map, auth) = match record {
            Some(r) => (r.last_applied, r.membership, r.map, r.auth),
            None => (None, Membership::default(), ClusterMap::default(), AuthDb::default()),
        };
        let map = Arc::new(map);
        let auth = Arc::new(auth);
        let (map_tx, map_rx) = watch::channel(Arc::clone(&map));
        let (auth_tx, auth_rx) = watch::channel(Arc::clone(&auth));
        let sm = StateMachine { db, last_applied, membership, map, map_tx, auth, auth_tx };
        Ok((sm, Applied { map: map_rx, auth: auth_rx }))
    }

    fn sm_record(&self) -> Result<Vec<u8>, StoreError> {
        let r = SmRecordRef {
            last_applied: &self.last_applied,
            membership: &self.membership,
            map: &self.map,
            auth: &self.auth,
        };
        encode_record("applied state", &r)
    }
}

fn sm_write_err(e: StoreError) -> Sto {
    StorageIOError::write_state_machine(AnyError::new(&e)).into()
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId<NodeId>>, Membership), Sto> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ApplyOutcome>, Sto>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut outcomes = Vec::new();
        let epoch_before = self.map.epoch;
        let auth_before = self.auth.version;
        for entry in entries {
            debug_assert!(Some(entry.log_id) > self.last_applied, "apply out of order");
            self.last_applied = Some(entry.log_id);
            let outcome = match entry.payload {
                EntryPayload::Blank => Ok(String::new()),
                EntryPayload::Normal(MapCommand::Auth(cmd)) => Arc::make_mut(&mut self.auth).apply(&cmd),
                EntryPayload::Normal(cmd) => Arc::make_mut(&mut self.map).apply(&cmd),
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), m);
                    Ok(String::new())
                }
            };
            outcomes.push(outcome);
        }
        let record = self.sm_record().map_err(sm_write_err)?;
        self.db
            .write(move |txn| {
                txn.open_table(META)?.insert(KEY_SM, record.as_slice())?;
                Ok(())
            })
            .await
            .map_err(sm_write_err)?;
        // ClusterMap::apply bumps the epoch exactly when the map changes (AuthDb::apply its
        // version).
        if self.map.epoch != epoch_before {
            self.map_tx.send_replace(Arc::clone(&self.map));
        }
        if self.auth.version != auth_before {
            self.auth_tx.send_replace(Arc::clone(&self.auth));
        }
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            db: Arc::clone(&self.db),
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            map: Arc::clone(&self.map),
            auth: Arc::clone(&self.auth),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, Sto> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), Sto> {
        let data = snapshot.into_inner();
        let snap_err = |e: &StoreError| -> Sto {
            StorageIOError::write_snapshot(Some(meta.signature()), AnyError::new(e)).into()
        };
        let state = decode_snapshot_state(&data).map_err(|e| snap_err(&e))?;
        tracing::info!(snapshot = %meta, epoch = state.map.epoch, "mon raft: installing snapshot");
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.map = Arc::new(state.map);
        self.auth = Arc::new(state.auth);
        let sm = self.sm_record().map_err(|e| snap_err(&e))?;
        let snap = encode_record("snapshot", &SnapshotRecord { meta: meta.clone(), data })
            .map_err(|e| snap_err(&e))?;
        self.db
            .write(move |txn| {
                let mut table = txn.open_table(META)?;
                table.insert(KEY_SM, sm.as_slice())?;
                table.insert(KEY_SNAPSHOT, snap.as_slice())?;
                Ok(())
            })
            .await
            .map_err(|e| snap_err(&e))?;
        self.map_tx.send_replace(Arc::clone(&self.map));
        self.auth_tx.send_replace(Arc::clone(&self.auth));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, Sto> {
        let record: Option<SnapshotRecord> = self
            .db
            .read_meta(KEY_SNAPSHOT)
            .map_err(|e| StorageIOError::read_snapshot(None, AnyError::new(&e)))?;
        Ok(record.map(|r| Snapshot { meta: r.meta, snapshot: Box::new(Cursor::new(r.data)) }))
    }
}

/// A frozen copy of the state machine (the map and auth db are `Arc`s, so taking it is cheap).
pub(crate) struct SnapshotBuilder {
    db: Arc<Db>,
    last_applied: Option<LogId<NodeId>>,
    membership: Membership,
    map: Arc<ClusterMap>,
    auth: Arc<AuthDb>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, Sto> {
        let seq = SNAPSHOT_SEQ.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match self.last_applied {
            Some(id) => format!("{}-{}-{}-{seq}", id.leader_id.term, id.leader_id.node_id, id.index),
            None => format!("none-{seq}"),
        };
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
            snapshot_id,
        };
        let err = |e: &StoreError| -> Sto {
            StorageIOError::write_snapshot(Some(meta.signature()), AnyError::new(e)).into()
        };
        let state = SnapshotStateRef { map: &self.map, auth: &self.auth };
        let data = encode_record("snapshot state", &state).map_err(|e| err(&e))?;
        let record = encode_record("snapshot", &SnapshotRecord { meta: meta.clone(), data: data.clone() })
            .map_err(|e| err(&e))?;
        let last = meta.last_log_id;
        // Builds run concurrently with installs: never replace a newer stored snapshot.
        self.db
            .write(move |txn| {
                let mut table = txn.open_table(META)?;
                let newer_stored = match table.get(KEY_SNAPSHOT)? {
                    Some(v) => {
                        let stored: SnapshotRecord = decode_record("snapshot", v.value())?;
                        stored.meta.last_log_id > last
                    }
                    None => false,
                };
                if !newer_stored {
                    table.insert(KEY_SNAPSHOT, record.as_slice())?;
                }
                Ok(())
            })
            .await
            .map_err(|e| err(&e))?;
        tracing::info!(snapshot = %meta, epoch = self.map.epoch, "mon raft: built snapshot");
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

/// Test hook: drops the saved applied state, as if the mon had crashed after entries were
/// committed but before any of them was applied.
#[cfg(test)]
pub(crate) fn forget_applied_state(dir: &Path) -> Result<(), StoreError> {
    let db = Db::open(dir)?;
    db.with(|db| {
        let txn = db.begin_write()?;
        txn.open_table(META)?.remove(KEY_SM)?;
        txn.commit()?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_carry_a_version_byte() {
        let vote = Vote::<NodeId>::new(3, 2);
        let bytes = encode_record("vote", &vote).expect("encode");
        assert_eq!(bytes[0], RECORD_VERSION);
        let back: Vote<NodeId> = decode_record("vote", &bytes).expect("decode");
        assert_eq!(back, vote);

        let mut wrong = bytes.clone();
        wrong[0] = 9;
        assert!(decode_record::<Vote<NodeId>>("vote", &wrong).is_err());
        assert!(decode_record::<Vote<NodeId>>("vote", &[]).is_err());
        assert!(decode_record::<Vote<NodeId>>("vote", &bytes[..2]).is_err());
    }

    #[test]
    fn version_3_applied_state_and_snapshots_migrate() {
        #[derive(Serialize)]
        struct V3<'a> {
            last_applied: Option<LogId<NodeId>>,
            membership: Membership,
            map: &'a ClusterMap,
        }
        let map = ClusterMap { fsid: "f".into(), epoch: 7, ..Default::default() };
        let mut old = vec![RECORD_VERSION_V3];
        let v3 = V3 { last_applied: None, membership: Membership::default(), map: &map };
        old.extend(postcard::to_allocvec(&v3).unwrap());
        let sm = decode_sm(&old).unwrap();
        assert_eq!((sm.map.epoch, sm.auth.is_initialized()), (7, false));
        let mut snap = vec![RECORD_VERSION_V3];
        snap.extend(postcard::to_allocvec(&map).unwrap());
        assert_eq!(decode_snapshot_state(&snap).unwrap().map, map);
        // Current records round-trip with their auth database.
        let auth = AuthDb { version: 3, ..Default::default() };
        let r =
            SmRecordRef { last_applied: &None, membership: &Membership::default(), map: &map, auth: &auth };
        let sm = decode_sm(&encode_record("applied state", &r).unwrap()).unwrap();
        assert_eq!(sm.auth.version, 3);
    }
}
