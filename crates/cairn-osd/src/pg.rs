//! One placement group on one OSD: its persistent info and log, and its in-memory role in the
//! current interval. The protocol is described in docs/replication.md.

use bytes::Bytes;
use cairn_proto::{LogEntry, PgInfo, ReqId};
use cairn_store::{ObjectStore, Op};
use cairn_types::{Epoch, Error, ObjectId, OsdId, PgId, PgInterval, Result, Version};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::{watch, Notify};

/// Log entries kept per PG; past this the oldest [`LOG_TRIM_BATCH`] are trimmed.
pub const LOG_MAX_ENTRIES: usize = 1000;
pub const LOG_TRIM_BATCH: usize = 200;
const INFO_KEY: &str = "info";
const RECORD_VERSION: u8 = 1;

/// The primary's background backfill of the interval's targets (`backfill.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backfill {
    /// Nothing to backfill, or not started.
    Idle,
    /// Waiting for a backfill slot on this OSD, or to retry after an error.
    Waiting,
    /// Copying objects to the targets.
    Running,
    /// Every target is filled; the pg_temp entry is being cleared.
    Done,
}

/// Where the PG stands in the current interval on this OSD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not an acting member of the current interval: keeps its data until it is safe to delete,
    /// or — a backfill target (in the interval's up set) — receives the primary's backfill.
    Stray,
    /// Primary, finding the authoritative log and recovering members.
    Peering,
    /// Primary, but no member of the last active interval answered: waiting, not losing writes.
    Incomplete,
    /// Primary with fewer members than `min_size`: peered but not serving I/O.
    Undersized,
    /// Primary, serving I/O.
    Active,
    /// Replica, not yet activated by the primary of this interval.
    ReplicaWaiting,
    /// Replica, applying the primary's writes.
    ReplicaActive,
}

pub struct PgState {
    pub interval: Option<PgInterval>,
    pub phase: Phase,
    pub info: PgInfo,
    pub log: VecDeque<LogEntry>,
    pub reqids: HashMap<ReqId, Version>,
    /// Bumped whenever the interval changes or peering restarts; stale peering tasks stop.
    pub generation: u64,
    pub num_objects: u64,
    pub num_bytes: u64,
    pub objects_missing: u64,
    pub backfill: Backfill,
    /// Snapshot trimming (snaptrim.rs): how many of the pool's removed snapshots this PG has
    /// been trimmed for in this interval, and the heads left in a running trim.
    pub trimmed_for: usize,
    pub snaptrim: Option<u64>,
}

pub struct Pg {
    pub id: PgId,
    pub state: Mutex<PgState>,
    /// Wakes requests waiting for the PG to become active (value: generation).
    pub activated: watch::Sender<u64>,
    /// Objects with a write in flight: readers and later writers wait for it.
    pub busy: Mutex<HashMap<ObjectId, Arc<Notify>>>,
}

impl Pg {
    /// Loads the PG's info and log from the store (empty for a new PG).
    pub fn load(store: &dyn ObjectStore, id: PgId) -> Result<Pg> {
        let info = match store.pg_meta(id, INFO_KEY)? {
            Some(bytes) => decode_info(&bytes)?,
            None => PgInfo::default(),
        };
        let mut log = VecDeque::new();
        for (_, bytes) in store.log_entries(id, Version::default())? {
            log.push_back(decode_entry(&bytes)?);
        }
        Ok(Pg::from_parts(id, info, log))
    }

    /// A PG this OSD holds nothing of.
    pub fn empty(id: PgId) -> Pg {
        Pg::from_parts(id, PgInfo::default(), VecDeque::new())
    }

    fn from_parts(id: PgId, info: PgInfo, log: VecDeque<LogEntry>) -> Pg {
        let reqids = log.iter().map(|e| (e.reqid, e.version)).collect();
        let (activated, _) = watch::channel(0);
        Pg {
            id,
            state: Mutex::new(PgState {
                interval: None,
                phase: Phase::Stray,
                info,
                log,
                reqids,
                generation: 0,
                num_objects: 0,
                num_bytes: 0,
                objects_missing: 0,
                backfill: Backfill::Idle,
                trimmed_for: 0,
                snaptrim: None,
            }),
            activated,
            busy: Mutex::new(HashMap::new()),
        }
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, PgState> {
        self.state.lock().expect("pg state lock poisoned")
    }

    /// Marks `oid` busy, waiting while another write holds it. The guard frees it.
    pub async fn lock_object(self: &Arc<Self>, oid: &ObjectId) -> ObjectGuard {
        loop {
            let wait = {
                let mut busy = self.busy.lock().expect("busy lock");
                match busy.get(oid) {
                    Some(n) => n.clone(),
                    None => {
                        busy.insert(oid.clone(), Arc::new(Notify::new()));
                        return ObjectGuard { pg: self.clone(), oid: oid.clone() };
                    }
                }
            };
            let notified = wait.notified();
            // The holder may have finished between our check and `notified()`.
            if !self.busy.lock().expect("busy lock").get(oid).is_some_and(|n| Arc::ptr_eq(n, &wait)) {
                continue;
            }
            notified.await;
        }
    }
}

pub struct ObjectGuard {
    pg: Arc<Pg>,
    oid: ObjectId,
}

impl Drop for ObjectGuard {
    fn drop(&mut self) {
        if let Some(n) = self.pg.busy.lock().expect("busy lock").remove(&self.oid) {
            n.notify_waiters();
        }
    }
}

impl PgState {
    pub fn since(&self) -> Option<Epoch> {
        self.interval.as_ref().map(|i| i.since)
    }

    /// Moves to a new interval (stale tasks of the old one stop on the generation).
    pub fn enter_interval(&mut self, interval: Option<PgInterval>) {
        self.interval = interval;
        self.generation += 1;
        self.backfill = Backfill::Idle;
        self.trimmed_for = 0;
        self.snaptrim = None;
    }

    /// This OSD is a backfill target of the current interval: in `up`, not acting.
    pub fn is_backfill_target(&self, me: OsdId) -> bool {
        self.interval.as_ref().is_some_and(|i| i.up.contains(&me) && !i.acting.contains(&me))
    }

    /// Appends `entry` to the log (and the store ops that persist it and the new info),
    /// trimming the oldest entries when the log is full.
    pub fn append_log(&mut self, pg: PgId, entry: LogEntry, ops: &mut Vec<Op>) {
        debug_assert!(entry.version > self.info.last_update, "log versions must grow");
        self.info.last_update = entry.version;
        ops.push(Op::LogAppend { pg, version: entry.version, entry: encode_entry(&entry) });
        self.reqids.insert(entry.reqid, entry.version);
        self.log.push_back(entry);
        if self.log.len() > LOG_MAX_ENTRIES {
            let mut upto = self.info.log_tail;
            for _ in 0..LOG_TRIM_BATCH {
                if let Some(old) = self.log.pop_front() {
                    self.reqids.remove(&old.reqid);
                    upto = old.version;
                }
            }
            self.info.log_tail = upto;
            ops.push(Op::LogTrim { pg, upto });
        }
        ops.push(self.info_op(pg));
    }

    /// Replaces the whole log with `log` (activation by the primary).
    pub fn replace_log(
        &mut self,
        pg: PgId,
        log: Vec<LogEntry>,
        tail: Version,
        since: Epoch,
        ops: &mut Vec<Op>,
    ) {
        ops.push(Op::LogTruncate { pg, after: Version::default() });
        for e in &log {
            ops.push(Op::LogAppend { pg, version: e.version, entry: encode_entry(e) });
        }
        self.info.last_update = log.last().map_or(tail, |e| e.version);
        self.info.log_tail = tail;
        self.info.last_complete_since = since;
        self.reqids = log.iter().map(|e| (e.reqid, e.version)).collect();
        self.log = log.into();
        ops.push(self.info_op(pg));
    }

    pub fn info_op(&self, pg: PgId) -> Op {
        Op::PgMetaSet { pg, key: INFO_KEY.into(), value: encode_info(&self.info) }
    }
}

fn encode_with_version<T: serde::Serialize>(value: &T) -> Bytes {
    let mut out = vec![RECORD_VERSION];
    out.extend(postcard::to_allocvec(value).expect("encoding to memory cannot fail"));
    Bytes::from(out)
}

fn decode_with_version<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    match bytes.split_first() {
        Some((&RECORD_VERSION, rest)) => {
            postcard::from_bytes(rest).map_err(|e| Error::eio(format!("corrupt {what} record: {e}")))
        }
        Some((v, _)) => Err(Error::eio(format!("{what} record has unknown version {v}"))),
        None => Err(Error::eio(format!("empty {what} record"))),
    }
}

pub fn encode_entry(e: &LogEntry) -> Bytes {
    encode_with_version(e)
}

pub fn decode_entry(bytes: &[u8]) -> Result<LogEntry> {
    decode_with_version(bytes, "pg log entry")
}

fn encode_info(i: &PgInfo) -> Bytes {
    encode_with_version(i)
}

fn decode_info(bytes: &[u8]) -> Result<PgInfo> {
    decode_with_version(bytes, "pg info")
}
