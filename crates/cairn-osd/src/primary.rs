//! The primary's side of client I/O: order ops per object, give each write a version, commit it
//! locally and on every other acting member, and answer once all have it durably.

use crate::ops;
use crate::osd::Osd;
use crate::pg::{Pg, Phase};
use cairn_proto::{LogEntry, Message, ObjOp, ReqId, SnapContext};
use cairn_store::{Op, Transaction};
use cairn_types::{errno, Epoch, Error, ObjectId, OsdId, PgId, Result, Version};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub struct OpReply {
    pub result: Result<(Vec<cairn_proto::OpOut>, Version)>,
    pub epoch: Epoch,
}

/// A client's `Message::OsdOp`, unpacked.
pub struct ClientOp {
    pub pg: PgId,
    pub oid: ObjectId,
    pub epoch: Epoch,
    pub reqid: ReqId,
    pub ops: Vec<ObjOp>,
    pub snapc: SnapContext,
    pub snap: Option<u64>,
    /// The sender's OSD caps, when they are enforced (cephx).
    pub caps: Option<(Arc<cairn_auth::OsdCaps>, cairn_auth::EntityName)>,
}

impl Osd {
    /// Handles one client op end to end.
    pub async fn client_op(self: &Arc<Self>, op: ClientOp) -> OpReply {
        let ClientOp { pg: pgid, oid, epoch, reqid, ops: op_list, snapc, snap, caps } = op;
        let map = self.wait_for_epoch(epoch, Duration::from_secs(2)).await;
        let result = async {
            oid.validate()?;
            if let Some((caps, entity)) = &caps {
                crate::auth::check_op(caps, entity, &map, pgid.pool, &oid, &op_list, snap)?;
            }
            if ops::is_clone(&oid) {
                return Err(Error::einval("namespaces starting with NUL are reserved"));
            }
            let pg = self.active_primary_pg(pgid).await?;
            let _guard = pg.lock_object(&oid).await;
            if op_list.iter().any(ObjOp::is_write) && snap.is_none() {
                self.write(&pg, &oid, reqid, &op_list, &snapc).await
            } else {
                let generation = self.wait_read_lease(&pg).await?;
                let outs = match snap {
                    Some(snap) => ops::read_at_snap(&*self.store, pgid, &oid, &op_list, snap)?,
                    None => ops::plan(&*self.store, pgid, &oid, &op_list, &ops::WriteCtx::none())?.outs,
                };
                // Answer only if the PG was still active in the same interval after the read:
                // once it moved on, a newer interval may be told it serves no more reads
                // (`pg_reads_stopped`).
                let st = pg.lock();
                if st.phase != Phase::Active || st.generation != generation {
                    return Err(Error::eagain(format!("pg {pgid} is no longer active")));
                }
                Ok((outs, st.info.last_update))
            }
        }
        .await;
        OpReply { result, epoch: map.epoch }
    }

    /// The PG if this OSD is its active primary, waiting a little for peering to finish.
    pub async fn active_primary_pg(&self, pgid: PgId) -> Result<Arc<Pg>> {
        let not_primary = || Error::eagain(format!("osd.{} is not the active primary of pg {pgid}", self.id));
        let pg = self.pg(pgid).ok_or_else(not_primary)?;
        let mut rx = pg.activated.subscribe();
        let wait = tokio::time::timeout(self.cfg.op_wait, async {
            loop {
                match pg.lock().phase {
                    Phase::Active => return Ok(()),
                    Phase::Peering | Phase::Incomplete | Phase::Undersized => {}
                    _ => return Err(not_primary()),
                }
                if rx.changed().await.is_err() {
                    return Err(not_primary());
                }
            }
        });
        match wait.await {
            Ok(Ok(())) => Ok(pg),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::eagain(format!("pg {pgid} is not active yet"))),
        }
    }

    /// Waits until every other acting member's read lease covers this OSD (lease.rs), so a read
    /// can never miss a write of a newer interval this OSD has not heard of. Returns the PG's
    /// generation the leases cover.
    async fn wait_read_lease(self: &Arc<Self>, pg: &Arc<Pg>) -> Result<u64> {
        let deadline = tokio::time::Instant::now() + self.cfg.op_wait;
        loop {
            let (acting, epoch, generation) = {
                let st = pg.lock();
                if st.phase != Phase::Active {
                    return Err(Error::eagain(format!("pg {} is no longer active", pg.id)));
                }
                let acting = st.interval.as_ref().map(|i| i.acting[1..].to_vec()).unwrap_or_default();
                (acting, self.map().epoch, st.generation)
            };
            let mut newer = None;
            let covered = acting.iter().all(|m| match self.leases.check_held(*m, epoch) {
                Ok(()) => true,
                Err(crate::lease::NoLease::NewerEpoch(e)) => {
                    newer = Some(e);
                    false
                }
                Err(crate::lease::NoLease::Lapsed) => false,
            });
            if covered {
                return Ok(generation);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::eagain(format!("pg {}: no read lease from every replica", pg.id)));
            }
            match newer {
                Some(e) => {
                    self.wait_for_epoch(e, Duration::from_millis(500)).await;
                }
                None => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    pub(crate) async fn write(
        self: &Arc<Self>,
        pg: &Arc<Pg>,
        oid: &ObjectId,
        reqid: ReqId,
        op_list: &[ObjOp],
        snapc: &SnapContext,
    ) -> Result<(Vec<cairn_proto::OpOut>, Version)> {
        if let Some(v) = pg.lock().reqids.get(&reqid) {
            // A resend of a write that is already in the log: applied once, answered again.
            return Ok((vec![], *v));
        }
        let map = self.map();
        let pool = map
            .pools
            .get(&pg.id.pool)
            .ok_or_else(|| Error::enoent(format!("pool {} is gone", pg.id.pool)))?;
        check_quota(pool, op_list)?;
        let ctx = ops::WriteCtx { snapc, removed_snaps: &pool.removed_snaps };
        let planned = ops::plan(&*self.store, pg.id, oid, op_list, &ctx)?;
        let before = self.store.stat(pg.id, oid)?;
        let replicas: Vec<OsdId> = {
            let st = pg.lock();
            st.interval.as_ref().map(|i| i.acting[1..].to_vec()).unwrap_or_default()
        };
        let mut conns = Vec::with_capacity(replicas.len());
        for r in &replicas {
            let addr = self.osd_addr(*r)?;
            // A replica that cannot be reached is down or restarting: the map will change and
            // the client's resend finds the new interval.
            let conn = self.peers.get(&addr).await.map_err(|e| {
                Error::eagain(format!("pg {}: replica osd.{r} unreachable: {}", pg.id, e.message))
            })?;
            conns.push(conn);
        }
        let mtime_ns = now_ns();
        // Version assignment, local submit and replica sends happen under the PG lock, so every
        // member receives this PG's writes in version order.
        let (local, remote, version) = {
            let mut st = pg.lock();
            let since = match (&st.phase, st.since()) {
                (Phase::Active, Some(since)) => since,
                _ => return Err(Error::eagain(format!("pg {} is no longer active", pg.id))),
            };
            let prev = st.info.last_update;
            let version = Version { epoch: since, seq: prev.seq + 1 };
            let entry = LogEntry { version, oid: oid.clone(), deleted: !planned.exists_after, reqid };
            let mut txn = Transaction::new();
            ops::to_store_ops(pg.id, oid, &planned.mutations, &mut txn.ops);
            if planned.exists_after {
                txn.push(Op::SetMeta { pg: pg.id, oid: oid.clone(), version, mtime_ns });
            }
            st.append_log(pg.id, entry.clone(), &mut txn.ops);
            match (before.is_some(), planned.exists_after) {
                (false, true) => st.num_objects += 1,
                (true, false) => st.num_objects = st.num_objects.saturating_sub(1),
                _ => {}
            }
            let old_size = before.map_or(0, |m| m.size);
            st.num_bytes = (st.num_bytes + planned.size_after).saturating_sub(old_size);
            let local = self.store.submit(txn);
            let mut remote = Vec::with_capacity(conns.len());
            for conn in &conns {
                let msg = Message::RepOp {
                    pg: pg.id,
                    since,
                    prev,
                    entry: entry.clone(),
                    mtime_ns,
                    mutations: planned.mutations.clone(),
                };
                remote.push(conn.start_call(msg));
            }
            (local, remote, version)
        };
        match local.await {
            Ok(Ok(())) => {}
            other => crate::osd::fatal_store_error("primary write", &other),
        }
        let mut all_ok = true;
        for r in remote {
            let ok = match r {
                Ok(rx) => match tokio::time::timeout(self.cfg.peer_timeout, rx).await {
                    Ok(Ok(Message::Ok)) => true,
                    other => {
                        tracing::debug!(pg = %pg.id, ?other, "replica did not apply write");
                        false
                    }
                },
                Err(_) => false,
            };
            all_ok &= ok;
        }
        if !all_ok {
            // Some member does not have this write: it must not be acknowledged. Peer again
            // (same interval) so every member converges; the client's resend is then answered
            // from the log.
            self.restart_peering(pg);
            return Err(Error::eagain(format!("pg {}: replication failed; retry", pg.id)));
        }
        Ok((planned.outs, version))
    }

    pub fn osd_addr(&self, id: OsdId) -> Result<String> {
        self.map()
            .osds
            .get(&id)
            .map(|o| o.addr.clone())
            .ok_or_else(|| Error::enoent(format!("osd.{id} is not in the map")))
    }

    /// Drops the PG back to peering within its current interval.
    pub fn restart_peering(self: &Arc<Self>, pg: &Arc<Pg>) {
        let generation = {
            let mut st = pg.lock();
            if st.phase != Phase::Active {
                return;
            }
            st.phase = Phase::Peering;
            st.generation += 1;
            st.generation
        };
        pg.activated.send_replace(generation);
        tokio::spawn(crate::peering::run(self.clone(), pg.clone(), generation));
    }
}

/// Ceph's behaviour: once the mon marks a pool full (its quota is reached), writes that add
/// data fail with EDQUOT; removals still work so space can be freed.
fn check_quota(pool: &cairn_types::Pool, op_list: &[ObjOp]) -> Result<()> {
    let only_removes = op_list.iter().all(|op| {
        matches!(
            op,
            ObjOp::Remove
                | ObjOp::Truncate { .. }
                | ObjOp::Zero { .. }
                | ObjOp::OmapRmKeys { .. }
                | ObjOp::OmapClear
                | ObjOp::RmXattr { .. }
        )
    });
    if pool.full && !only_removes {
        return Err(Error::new(errno::EDQUOT, format!("pool '{}' is full (quota reached)", pool.name)));
    }
    Ok(())
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}
