//! [`SimStore`]: an OSD's disk in the simulation — a [`MemStore`] that transactions reach only
//! after a seeded random "fsync" delay, and that loses every transaction not yet durable when
//! its host crashes.
//!
//! That is exactly the contract of [`ObjectStore`] that the replication protocol relies on:
//! a transaction is durable when its receiver resolves (and the OSD acknowledges nothing
//! before that); transactions become durable in submission order; reads see durable state
//! only; a crash keeps a prefix of the submitted transactions, each whole or not at all
//! (`RedbStore` gives the same: one redb commit per group of whole transactions).

use bytes::Bytes;
use cairn_store::{MemStore, ObjectMeta, ObjectStore, Transaction};
use cairn_types::{Error, ObjectId, PgId, Result, Version};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// How long the simulated disk takes to make a transaction durable.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiskTiming {
    /// Usual commit latency: uniform in `[0, max_delay]`.
    pub max_delay: Duration,
    /// Chance that one commit is slow (a stalled fsync) ...
    pub slow_chance: f64,
    /// ... taking up to this long (uniform in `[max_delay, slow_delay]`).
    pub slow_delay: Duration,
}

impl Default for DiskTiming {
    fn default() -> Self {
        DiskTiming {
            max_delay: Duration::from_millis(8),
            slow_chance: 0.05,
            slow_delay: Duration::from_millis(250),
        }
    }
}

/// Counters for the run's summary.
#[derive(Debug, Clone, Copy, Default)]
pub struct DiskStats {
    pub committed: u64,
    /// Transactions submitted but not durable when the host crashed.
    pub lost: u64,
}

/// One OSD's simulated disk; survives the OSD's crashes (the simulation owns it).
#[derive(Clone)]
pub struct SimStore {
    shared: Arc<Shared>,
}

struct Shared {
    durable: MemStore,
    timing: DiskTiming,
    inner: Mutex<Inner>,
}

struct Inner {
    rng: StdRng,
    queue: VecDeque<Pending>,
    /// Due time of the last queued transaction: later ones are never due earlier.
    last_due: Option<Instant>,
    /// Whether a flusher task of `generation` is running.
    flushing: bool,
    /// Bumped by every crash, so a flusher of an earlier life stops.
    generation: u64,
    stats: DiskStats,
}

struct Pending {
    txn: Transaction,
    due: Instant,
    done: oneshot::Sender<Result<()>>,
}

impl SimStore {
    pub fn new(seed: u64, timing: DiskTiming) -> SimStore {
        SimStore {
            shared: Arc::new(Shared {
                durable: MemStore::new(),
                timing,
                inner: Mutex::new(Inner {
                    rng: StdRng::seed_from_u64(seed),
                    queue: VecDeque::new(),
                    last_due: None,
                    flushing: false,
                    generation: 0,
                    stats: DiskStats::default(),
                }),
            }),
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.shared.inner.lock().expect("sim store lock")
    }

    /// The host crashed: every transaction not yet durable is gone. Returns how many.
    pub fn crash(&self) -> usize {
        let mut inner = self.inner();
        let lost = inner.queue.len();
        // Their receivers died with the host's tasks; dropping the senders wakes no one.
        inner.queue.clear();
        inner.last_due = None;
        inner.flushing = false;
        inner.generation += 1;
        inner.stats.lost += lost as u64;
        lost
    }

    /// What a crash right now would leave.
    pub fn durable(&self) -> &MemStore {
        &self.shared.durable
    }

    pub fn stats(&self) -> DiskStats {
        self.inner().stats
    }
}

fn commit_delay(t: &DiskTiming, rng: &mut StdRng) -> Duration {
    if t.slow_delay > t.max_delay && rng.gen_bool(t.slow_chance.clamp(0.0, 1.0)) {
        rng.gen_range(t.max_delay..=t.slow_delay)
    } else {
        rng.gen_range(Duration::ZERO..=t.max_delay)
    }
}

/// Applies due transactions in order until the queue is empty (or a crash ends this life).
async fn flush(store: SimStore, generation: u64) {
    loop {
        let due = {
            let mut inner = store.inner();
            if inner.generation != generation {
                return;
            }
            match inner.queue.front() {
                Some(p) => p.due,
                None => {
                    inner.flushing = false;
                    return;
                }
            }
        };
        tokio::time::sleep_until(due).await;
        let ready: Vec<Pending> = {
            let mut inner = store.inner();
            if inner.generation != generation {
                return;
            }
            let now = Instant::now();
            let mut ready = Vec::new();
            while inner.queue.front().is_some_and(|p| p.due <= now) {
                ready.extend(inner.queue.pop_front());
            }
            inner.stats.committed += ready.len() as u64;
            ready
        };
        for p in ready {
            // MemStore validates and applies at once; its receiver is already resolved.
            let result = match store.shared.durable.submit(p.txn).try_recv() {
                Ok(r) => r,
                Err(_) => Err(Error::eio("memstore did not answer")),
            };
            let _ = p.done.send(result);
        }
    }
}

impl ObjectStore for SimStore {
    fn submit(&self, txn: Transaction) -> oneshot::Receiver<Result<()>> {
        let (tx, rx) = oneshot::channel();
        let mut inner = self.inner();
        let delay = commit_delay(&self.shared.timing, &mut inner.rng);
        let now = Instant::now();
        let due = inner.last_due.map_or(now + delay, |last| last.max(now + delay));
        inner.last_due = Some(due);
        tracing::trace!(ops = txn.ops.len(), ?due, "submit");
        inner.queue.push_back(Pending { txn, due, done: tx });
        if !inner.flushing {
            inner.flushing = true;
            tokio::spawn(flush(self.clone(), inner.generation));
        }
        rx
    }

    fn stat(&self, pg: PgId, oid: &ObjectId) -> Result<Option<ObjectMeta>> {
        self.shared.durable.stat(pg, oid)
    }
    fn read(&self, pg: PgId, oid: &ObjectId, offset: u64, len: u64) -> Result<Bytes> {
        self.shared.durable.read(pg, oid, offset, len)
    }
    fn get_xattr(&self, pg: PgId, oid: &ObjectId, key: &str) -> Result<Bytes> {
        self.shared.durable.get_xattr(pg, oid, key)
    }
    fn list_xattrs(&self, pg: PgId, oid: &ObjectId) -> Result<Vec<(String, Bytes)>> {
        self.shared.durable.list_xattrs(pg, oid)
    }
    fn omap_get_header(&self, pg: PgId, oid: &ObjectId) -> Result<Bytes> {
        self.shared.durable.omap_get_header(pg, oid)
    }
    fn omap_get(&self, pg: PgId, oid: &ObjectId, keys: &[String]) -> Result<Vec<(String, Bytes)>> {
        self.shared.durable.omap_get(pg, oid, keys)
    }
    fn omap_list(
        &self,
        pg: PgId,
        oid: &ObjectId,
        start_after: &str,
        prefix: &str,
        max: usize,
    ) -> Result<Vec<(String, Bytes)>> {
        self.shared.durable.omap_list(pg, oid, start_after, prefix, max)
    }
    fn list_objects(
        &self,
        pg: PgId,
        start_after: Option<&ObjectId>,
        max: usize,
    ) -> Result<Vec<(ObjectId, ObjectMeta)>> {
        self.shared.durable.list_objects(pg, start_after, max)
    }
    fn log_entries(&self, pg: PgId, after: Version) -> Result<Vec<(Version, Bytes)>> {
        self.shared.durable.log_entries(pg, after)
    }
    fn pg_meta(&self, pg: PgId, key: &str) -> Result<Option<Bytes>> {
        self.shared.durable.pg_meta(pg, key)
    }
    fn list_pgs(&self) -> Result<Vec<PgId>> {
        self.shared.durable.list_pgs()
    }
    fn meta(&self, key: &str) -> Result<Option<Bytes>> {
        self.shared.durable.meta(key)
    }
    fn used_bytes(&self) -> Result<u64> {
        self.shared.durable.used_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_store::Op;

    fn pg() -> PgId {
        PgId { pool: 1, seed: 0 }
    }

    fn put(name: &str) -> Transaction {
        let mut t = Transaction::new();
        t.push(Op::Write { pg: pg(), oid: ObjectId::new(name), offset: 0, data: Bytes::from_static(b"x") });
        t
    }

    fn exists(store: &SimStore, name: &str) -> bool {
        store.stat(pg(), &ObjectId::new(name)).unwrap().is_some()
    }

    #[tokio::test(start_paused = true)]
    async fn commits_are_visible_once_durable_and_a_crash_loses_the_undurable_suffix() {
        let timing =
            DiskTiming { max_delay: Duration::from_millis(10), slow_chance: 0.0, slow_delay: Duration::ZERO };
        let store = SimStore::new(1, timing);
        let a = store.submit(put("a"));
        let b = store.submit(put("b"));
        assert!(!exists(&store, "a"), "not durable yet");
        a.await.unwrap().unwrap();
        b.await.unwrap().unwrap();
        assert!(exists(&store, "a") && exists(&store, "b"));
        let _c = store.submit(put("c"));
        assert_eq!(store.crash(), 1);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!exists(&store, "c"), "lost in the crash");
        assert_eq!(store.stats().lost, 1);
        store.submit(put("d")).await.unwrap().unwrap();
        assert!(exists(&store, "d"), "a new life commits again");
    }
}
