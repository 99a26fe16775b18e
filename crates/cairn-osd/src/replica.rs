//! A member's side of replication and peering: apply the primary's writes in order, answer
//! queries about the PG, install recovered objects and the authoritative log.

use crate::ops;
use crate::osd::Osd;
use crate::pg::Phase;
use cairn_proto::{LogEntry, Message, Mutation, ObjectState, PgInfo, Responder};
use cairn_store::{Op, Transaction};
use cairn_types::{errno, Epoch, Error, ObjectId, OsdId, PgId, Result, Version};
use std::sync::Arc;
use std::time::Duration;

/// Most objects listed by one scan reply.
pub const MAX_SCAN_OBJECTS: u32 = 1024;

/// One replicated write as a replica receives it (`Message::RepOp`).
pub struct RepOp {
    pub pg: PgId,
    pub since: Epoch,
    pub prev: Version,
    pub entry: LogEntry,
    pub mtime_ns: u64,
    pub mutations: Vec<Mutation>,
}

impl Osd {
    /// Applies a primary's write. Runs on the connection's reading task, so writes are submitted
    /// to the store in the order the primary sent them.
    pub fn rep_op(self: &Arc<Self>, op: RepOp, responder: Responder) {
        let RepOp { pg: pgid, since, prev, entry, mtime_ns, mutations } = op;
        let submitted = (|| {
            let pg = self.pg(pgid).ok_or_else(|| stale(pgid, "pg not here"))?;
            let mut st = pg.lock();
            if st.phase != Phase::ReplicaActive || st.since() != Some(since) {
                return Err(stale(pgid, "not an active replica of that interval"));
            }
            if st.info.last_update != prev {
                return Err(stale(
                    pgid,
                    &format!("log ends at {}, write follows {prev}", st.info.last_update),
                ));
            }
            let mut txn = Transaction::new();
            ops::to_store_ops(pgid, &entry.oid, &mutations, &mut txn.ops);
            if !entry.deleted {
                txn.push(Op::SetMeta { pg: pgid, oid: entry.oid.clone(), version: entry.version, mtime_ns });
            }
            st.append_log(pgid, entry, &mut txn.ops);
            Ok(self.store.submit(txn))
        })();
        match submitted {
            Ok(rx) => {
                tokio::spawn(async move {
                    match rx.await {
                        Ok(Ok(())) => responder.reply(Message::Ok),
                        other => crate::osd::fatal_store_error("replica write", &other),
                    }
                });
            }
            Err(e) => responder.reply(Message::Error(e)),
        }
    }

    /// Reports this OSD's info and whole log of `pgid` (empty if it has never held it).
    pub async fn pg_query(self: &Arc<Self>, pgid: PgId, epoch: Epoch) -> Result<Message> {
        // Learn of the new interval first, so this OSD stops acting on the old one (no more
        // writes as primary or replica of it), then wait until what it already submitted is
        // durable: the answer then describes exactly what a crash would leave.
        let map = self.wait_for_epoch(epoch, Duration::from_secs(5)).await;
        if map.epoch < epoch {
            return Err(Error::eagain(format!("osd.{} has no map of epoch {epoch} yet", self.id)));
        }
        self.handle_map(&map);
        self.store_barrier().await?;
        // Do not help a newer interval go active while the last active interval's primary may
        // still serve reads under a lease this OSD granted it (lease.rs): wait until it says it
        // stopped, or until the lease expired (a whole lease after this OSD started, if it
        // started since: it forgot what it granted before).
        if let Some((reader, since)) = lease_reader(&map, pgid, self.id) {
            let expired = self.leases.wait_expired(Some(reader), since);
            let stopped = self.reads_stopped(reader, pgid, since);
            tokio::select! {
                _ = expired => {}
                _ = stopped => {}
            }
        }
        let Some(pg) = self.pg(pgid) else {
            return Ok(Message::PgQueryReply { info: PgInfo::default(), log: vec![], objects: None });
        };
        let st = pg.lock();
        let mut info = st.info.clone();
        info.num_objects = st.num_objects;
        Ok(Message::PgQueryReply { info, log: st.log.iter().cloned().collect(), objects: None })
    }

    /// Lists objects with their versions, for backfill.
    pub fn pg_scan(&self, pgid: PgId, start_after: Option<ObjectId>, max: u32) -> Result<Message> {
        let max = max.clamp(1, MAX_SCAN_OBJECTS) as usize;
        let list = self.store.list_objects(pgid, start_after.as_ref(), max)?;
        let done = list.len() < max;
        // Clones travel with their heads (whose version changes whenever a clone does).
        let last = list.last().map(|(oid, meta)| (oid.clone(), meta.version));
        let mut objects: Vec<_> = list
            .into_iter()
            .filter(|(oid, _)| !ops::is_clone(oid))
            .map(|(oid, meta)| (oid, meta.version))
            .collect();
        if !done && objects.last().map(|o| &o.0) != last.as_ref().map(|l| &l.0) {
            // The cursor must stay the last listed id: end the page with it, marked as a clone
            // the primary will skip.
            objects.extend(last);
        }
        Ok(Message::PgScanReply { objects, done })
    }

    pub fn pg_pull(&self, pgid: PgId, oid: &ObjectId) -> Result<Message> {
        Ok(Message::PgPullReply { state: ops::object_state(&*self.store, pgid, oid)? })
    }

    /// Returns once `prev` confirmed it serves no reads of `pgid` in an interval before `since`,
    /// or its port refuses connections (no process is left that could serve reads, as
    /// heartbeats assume too); never if it cannot be reached otherwise (then the caller's lease
    /// wait decides).
    async fn reads_stopped(self: &Arc<Self>, prev: OsdId, pgid: PgId, since: Epoch) {
        loop {
            // `prev` is another OSD (never answered locally, which would recurse).
            let msg = Message::PgReadsStopped { pg: pgid, since };
            let reply = match self.osd_addr(prev) {
                Ok(addr) => self.peers.call(&addr, msg, self.cfg.peer_timeout).await,
                Err(e) => Err(e),
            };
            match reply {
                Ok(Message::Ok) => return,
                Err(e) if e.errno == errno::ECONNREFUSED => {
                    self.leases.revoke(prev);
                    return;
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// Answers `Ok` once this OSD serves no reads of `pgid` in an interval older than `since`:
    /// it has a map that new and has applied it to its PGs (a read re-checks its PG's
    /// generation after reading, so none in flight returns old state after this answer).
    pub async fn pg_reads_stopped(self: &Arc<Self>, pgid: PgId, since: Epoch) -> Result<Message> {
        let map = self.wait_for_epoch(since, Duration::from_secs(5)).await;
        if map.epoch < since {
            return Err(Error::eagain(format!("osd.{} has no map of epoch {since} yet", self.id)));
        }
        self.handle_map(&map);
        if let Some(pg) = self.pg(pgid) {
            let st = pg.lock();
            if st.phase == Phase::Active && st.since().is_some_and(|s| s < since) {
                return Err(Error::eagain(format!("pg {pgid} is still active in an older interval")));
            }
        }
        Ok(Message::Ok)
    }

    /// Waits for a map of epoch `since` and, unless the PG is already in that interval here,
    /// applies it: a backfill target hears from the primary without a query first (which would
    /// have applied it), possibly before this OSD's map loop got to the new map.
    async fn enter_epoch(self: &Arc<Self>, pgid: PgId, since: Epoch) {
        let map = self.wait_for_epoch(since, Duration::from_secs(5)).await;
        if self.pg(pgid).is_none_or(|pg| pg.lock().since() != Some(since)) {
            self.handle_map(&map);
        }
    }

    /// Installs recovered objects (or their removal) sent by the primary of interval `since`,
    /// to an acting member or to a backfill target (in the interval's up set).
    pub async fn pg_push(
        self: &Arc<Self>,
        pgid: PgId,
        since: Epoch,
        objects: Vec<(ObjectId, Option<ObjectState>)>,
    ) -> Result<Message> {
        self.enter_epoch(pgid, since).await;
        let pg = self.pg_or_create(pgid)?;
        let rx = {
            let st = pg.lock();
            let member =
                st.interval.as_ref().is_some_and(|i| i.acting.contains(&self.id) || i.up.contains(&self.id));
            if st.since() != Some(since) || !member {
                return Err(stale(pgid, "push for another interval"));
            }
            let mut txn = Transaction::new();
            for (oid, state) in &objects {
                ops::install_ops(&*self.store, pgid, oid, state.as_ref(), &mut txn.ops)?;
            }
            self.store.submit(txn)
        };
        rx.await.map_err(|_| Error::eio("store shut down"))??;
        Ok(Message::Ok)
    }

    /// Makes this member's log the authoritative one and starts accepting the primary's writes.
    pub async fn pg_activate(
        self: &Arc<Self>,
        pgid: PgId,
        since: Epoch,
        log: Vec<LogEntry>,
        log_tail: Version,
    ) -> Result<Message> {
        self.wait_for_epoch(since, Duration::from_secs(5)).await;
        let pg = self.pg_or_create(pgid)?;
        let rx = {
            let mut st = pg.lock();
            let acting = st.interval.as_ref().is_some_and(|i| i.acting.contains(&self.id));
            if st.since() != Some(since) || !acting {
                return Err(stale(pgid, "activation for another interval"));
            }
            let mut txn = Transaction::new();
            st.replace_log(pgid, log, log_tail, since, &mut txn.ops);
            if st.phase == Phase::ReplicaWaiting || st.phase == Phase::ReplicaActive {
                st.phase = Phase::ReplicaActive;
            }
            self.store.submit(txn)
        };
        if let Ok(Err(e)) | Err(e) = rx.await.map_err(|_| Error::eio("store shut down")) {
            crate::osd::fatal_store_error("activation", &e);
        }
        self.recount(pgid)?;
        Ok(Message::Ok)
    }

    /// A backfill target's last step: the primary copied every object at least as new as `log`
    /// says; make it this PG's log, so the next peering recovers this OSD from the log. The PG
    /// stays a non-acting member (it serves nothing and applies no writes).
    pub async fn pg_backfill_log(
        self: &Arc<Self>,
        pgid: PgId,
        since: Epoch,
        log: Vec<LogEntry>,
        log_tail: Version,
    ) -> Result<Message> {
        self.enter_epoch(pgid, since).await;
        let pg = self.pg(pgid).ok_or_else(|| stale(pgid, "pg not here"))?;
        let rx = {
            let mut st = pg.lock();
            if st.since() != Some(since) || !st.is_backfill_target(self.id) {
                return Err(stale(pgid, "not a backfill target of that interval"));
            }
            let mut txn = Transaction::new();
            st.replace_log(pgid, log, log_tail, since, &mut txn.ops);
            self.store.submit(txn)
        };
        if let Ok(Err(e)) | Err(e) = rx.await.map_err(|_| Error::eio("store shut down")) {
            crate::osd::fatal_store_error("backfill log", &e);
        }
        self.recount(pgid)?;
        Ok(Message::Ok)
    }

    /// Recomputes a PG's object and byte counts from the store.
    pub fn recount(&self, pgid: PgId) -> Result<()> {
        let Some(pg) = self.pg(pgid) else { return Ok(()) };
        let (mut objects, mut bytes) = (0u64, 0u64);
        let mut after: Option<ObjectId> = None;
        loop {
            let batch = self.store.list_objects(pgid, after.as_ref(), 4096)?;
            for (oid, meta) in &batch {
                objects += u64::from(!ops::is_clone(oid));
                bytes += meta.size;
            }
            match batch.last() {
                Some((oid, _)) if batch.len() == 4096 => after = Some(oid.clone()),
                _ => break,
            }
        }
        let mut st = pg.lock();
        st.num_objects = objects;
        st.num_bytes = bytes;
        Ok(())
    }
}

/// Who may be serving reads of `pgid` under a lease `me` granted, and the interval that must not
/// get `me`'s help before those reads stopped: the primary of the PG's last active interval —
/// the only interval that can be serving reads (its activation outwaited the ones before) —
/// if `me` was another acting member of it and a newer interval has started.
fn lease_reader(map: &cairn_types::ClusterMap, pgid: PgId, me: OsdId) -> Option<(OsdId, Epoch)> {
    let last_active = &map.history.get(&pgid)?.last_active;
    let current = map.intervals.get(&pgid)?.since;
    let reader = last_active.primary()?;
    (last_active.acting.contains(&me) && reader != me && last_active.since < current)
        .then_some((reader, current))
}

fn stale(pgid: PgId, why: &str) -> Error {
    Error::new(errno::ESTALE, format!("pg {pgid}: {why}"))
}
