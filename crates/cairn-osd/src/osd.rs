//! The daemon: startup, map following, and the PG table.

use crate::auth::{AuthState, OsdAuthConfig};
use crate::pg::{Backfill, Pg, Phase};
use cairn_proto::monc::MonClient;
use cairn_proto::{ClientAuth, ConnPool, Listener, Message, Network};
use cairn_store::{ObjectStore, Op, Transaction};
use cairn_types::stats::{OsdStat, PgStat};
use cairn_types::{ClusterMap, Error, OsdId, PgId, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often an OSD reports PG states and usage to the mon leader.
const STATS_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct OsdConfig {
    pub id: OsdId,
    pub fsid: String,
    pub mons: Vec<String>,
    /// Address to advertise (the listener's address when empty).
    pub public_addr: String,
    pub host: String,
    pub capacity_bytes: u64,
    pub heartbeat_interval: Duration,
    /// `osd heartbeat grace`: a peer silent this long is reported failed.
    pub heartbeat_grace: Duration,
    /// How long a client op waits for its PG to become active before answering EAGAIN.
    pub op_wait: Duration,
    /// Timeout of OSD-to-OSD requests during peering and recovery.
    pub peer_timeout: Duration,
    /// How long a heartbeat reply lets the primary serve reads (see `lease`).
    pub read_lease: Duration,
    /// `auth_*_required` and this OSD's key.
    pub auth: OsdAuthConfig,
}

impl OsdConfig {
    pub fn new(id: OsdId, fsid: &str, mons: Vec<String>) -> Self {
        OsdConfig {
            id,
            fsid: fsid.into(),
            mons,
            public_addr: String::new(),
            host: "localhost".into(),
            capacity_bytes: 100 << 30,
            heartbeat_interval: Duration::from_secs(1),
            heartbeat_grace: Duration::from_secs(20),
            op_wait: Duration::from_secs(5),
            peer_timeout: Duration::from_secs(10),
            read_lease: Duration::from_secs(4),
            auth: OsdAuthConfig::none(),
        }
    }
}

pub struct Osd {
    pub id: OsdId,
    pub cfg: OsdConfig,
    pub store: Arc<dyn ObjectStore>,
    pub monc: MonClient,
    pub peers: ConnPool,
    /// Heartbeats get their own connections, so data traffic never delays them.
    pub hb_peers: ConnPool,
    pub leases: crate::lease::Leases,
    /// Wakes the stats reporter after a PG changed state, so `cairn -s` catches up at once.
    pub stats_now: tokio::sync::Notify,
    /// Background backfills this OSD leads at once (`backfill::MAX_BACKFILLS`).
    pub backfill_slots: tokio::sync::Semaphore,
    /// What the mons told this OSD about keys and caps (`auth`).
    pub auth_state: AuthState,
    pgs: Mutex<HashMap<PgId, Arc<Pg>>>,
    /// PGs whose `RemovePg` is submitted but not yet durable (count per PG). A PG needed again
    /// meanwhile must start empty: the store still shows the old content, but will apply the
    /// removal before anything the new PG submits (found by the simulator, seeds 85 and 210).
    removing: Arc<Mutex<HashMap<PgId, u32>>>,
}

/// Runs an OSD on `listener` until the process ends; it reaches the mons and its peers over
/// `net` (`cairn_proto::net::tcp()` for the daemon, a simulated network in `cairn-sim`).
pub async fn run(
    cfg: OsdConfig,
    store: Arc<dyn ObjectStore>,
    listener: impl Listener,
    net: Arc<dyn Network>,
) -> Result<()> {
    let addr =
        if cfg.public_addr.is_empty() { listener.local_addr()?.to_string() } else { cfg.public_addr.clone() };
    let entity = format!("osd.{}", cfg.id).parse().map_err(|e: Error| Error::einval(e.message))?;
    let (methods, modes) = (cfg.auth.settings.cluster.clone(), cfg.auth.settings.modes.clone());
    let auth = ClientAuth::with_modes(
        entity,
        cfg.auth.secret.clone(),
        methods,
        modes,
        cfg.mons.clone(),
        net.clone(),
    );
    let monc = MonClient::with_network(cfg.mons.clone(), net.clone(), auth.clone())?;
    let osd = Arc::new(Osd {
        id: cfg.id,
        cfg: cfg.clone(),
        store,
        monc: monc.clone(),
        peers: ConnPool::new(net.clone(), auth.clone()),
        hb_peers: ConnPool::new(net, auth),
        leases: crate::lease::Leases::new(cfg.read_lease),
        stats_now: tokio::sync::Notify::new(),
        backfill_slots: tokio::sync::Semaphore::new(crate::backfill::MAX_BACKFILLS),
        auth_state: AuthState::default(),
        pgs: Mutex::new(HashMap::new()),
        removing: Arc::default(),
    });
    osd.load_pgs()?;
    if cfg.auth.settings.uses_cephx() {
        tokio::spawn(osd.clone().follow_auth());
    }
    tokio::spawn(cairn_proto::rpc::serve(listener, osd.clone(), osd.clone()));
    let boot = Message::OsdBoot {
        id: cfg.id,
        fsid: cfg.fsid.clone(),
        addr: addr.clone(),
        host: cfg.host.clone(),
        capacity_bytes: cfg.capacity_bytes,
    };
    let mut up_from = send_boot(&monc, &boot, cfg.id).await?;
    tracing::info!(osd = cfg.id, %addr, "booted");
    tokio::spawn(monc.clone().follow_maps());
    tokio::spawn(crate::heartbeat::run(osd.clone()));
    tokio::spawn(osd.clone().report_stats());
    let mut maps = monc.subscribe();
    loop {
        let map = maps.borrow_and_update().clone();
        if map.is_initialized() {
            osd.handle_map(&map);
            // Marked down while alive (a partition, a missed heartbeat): say so, as Ceph's
            // "wrongly marked me down", by booting again.
            if map.osds.get(&cfg.id).is_some_and(|o| !o.up && o.up_from == up_from) {
                tracing::warn!(osd = cfg.id, "marked down while alive; booting again");
                up_from = send_boot(&monc, &boot, cfg.id).await?;
                continue;
            }
        }
        if maps.changed().await.is_err() {
            return Ok(());
        }
    }
}

/// Registers with the mons (retrying while a new cluster's map is not initialized); returns the
/// epoch this life of the OSD started in.
async fn send_boot(monc: &MonClient, boot: &Message, id: cairn_types::OsdId) -> Result<u64> {
    let start = tokio::time::Instant::now();
    loop {
        match monc.call_leader(boot.clone(), Duration::from_secs(60)).await? {
            Message::Map(map) => {
                let up_from = map.osds.get(&id).map_or(0, |o| o.up_from);
                monc.offer_map(*map);
                return Ok(up_from);
            }
            Message::Error(e)
                if e.errno == cairn_types::errno::EAGAIN && start.elapsed() < Duration::from_secs(60) =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Message::Error(e) => return Err(e),
            other => return Err(Error::eio(format!("unexpected boot reply {other:?}"))),
        }
    }
}

impl Osd {
    fn load_pgs(&self) -> Result<()> {
        let mut pgs = self.pgs.lock().expect("pgs lock");
        for id in self.store.list_pgs()? {
            pgs.insert(id, Arc::new(Pg::load(&*self.store, id)?));
        }
        tracing::info!(count = pgs.len(), "loaded pgs");
        Ok(())
    }

    pub fn all_pgs(&self) -> Vec<Arc<Pg>> {
        self.pgs.lock().expect("pgs lock").values().cloned().collect()
    }

    pub fn pg(&self, id: PgId) -> Option<Arc<Pg>> {
        self.pgs.lock().expect("pgs lock").get(&id).cloned()
    }

    /// The PG, created empty if this OSD has never held it.
    pub fn pg_or_create(&self, id: PgId) -> Result<Arc<Pg>> {
        let mut pgs = self.pgs.lock().expect("pgs lock");
        if let Some(pg) = pgs.get(&id) {
            return Ok(pg.clone());
        }
        let removal_pending = self.removing.lock().expect("removing lock").contains_key(&id);
        let pg =
            if removal_pending { Arc::new(Pg::empty(id)) } else { Arc::new(Pg::load(&*self.store, id)?) };
        pgs.insert(id, pg.clone());
        Ok(pg)
    }

    pub fn map(&self) -> Arc<ClusterMap> {
        self.monc.map()
    }

    /// Waits until this OSD has a map at least as new as `epoch` (or `wait` passes).
    pub async fn wait_for_epoch(&self, epoch: u64, wait: Duration) -> Arc<ClusterMap> {
        let mut rx = self.monc.subscribe();
        let _ = tokio::time::timeout(wait, async {
            loop {
                if rx.borrow_and_update().epoch >= epoch {
                    return;
                }
                if self.monc.map().epoch < epoch {
                    let _ = self.monc.fetch_map(self.monc.map().epoch, 500).await;
                }
                if rx.borrow().epoch >= epoch {
                    return;
                }
                let _ = tokio::time::timeout(Duration::from_millis(500), rx.changed()).await;
            }
        })
        .await;
        self.map()
    }

    /// Waits until everything this OSD submitted to its store is durable (transactions commit
    /// in submission order, so an empty one is a barrier).
    pub async fn store_barrier(&self) -> Result<()> {
        self.store.submit(Transaction::new()).await.map_err(|_| Error::eio("store shut down"))?
    }

    /// Brings every PG in line with `map`: new intervals restart peering (primary) or wait for
    /// activation (replica); backfill targets get the PG created to receive the primary's pushes;
    /// PGs this OSD no longer needs are deleted once safe.
    pub fn handle_map(self: &Arc<Self>, map: &ClusterMap) {
        for (pgid, interval) in &map.intervals {
            if !interval.acting.contains(&self.id) {
                if interval.up.contains(&self.id) {
                    if let Err(e) = self.pg_or_create(*pgid) {
                        tracing::error!(pg = %pgid, error = %e, "cannot load pg");
                    }
                }
                continue;
            }
            let pg = match self.pg_or_create(*pgid) {
                Ok(pg) => pg,
                Err(e) => {
                    tracing::error!(pg = %pgid, error = %e, "cannot load pg");
                    continue;
                }
            };
            let mut st = pg.lock();
            if st.interval.as_ref() == Some(interval) {
                continue;
            }
            st.enter_interval(Some(interval.clone()));
            let is_primary = interval.primary() == Some(self.id);
            st.phase = if is_primary { Phase::Peering } else { Phase::ReplicaWaiting };
            let generation = st.generation;
            drop(st);
            pg.activated.send_replace(generation);
            if is_primary {
                tokio::spawn(crate::peering::run(self.clone(), pg.clone(), generation));
            }
        }
        self.handle_strays(map);
        self.start_snap_trims(map);
    }

    /// A PG this OSD holds but is not acting for: keep it while it may be the only copy of
    /// acknowledged writes (it is in the PG's last active interval) or while it is a backfill
    /// target (in the interval's up set); delete it otherwise.
    fn handle_strays(&self, map: &ClusterMap) {
        let pgs: Vec<Arc<Pg>> = self.pgs.lock().expect("pgs lock").values().cloned().collect();
        for pg in pgs {
            let interval = map.intervals.get(&pg.id);
            if interval.is_some_and(|i| i.acting.contains(&self.id)) {
                continue;
            }
            let woken = {
                let mut st = pg.lock();
                if st.phase != Phase::Stray || st.interval.as_ref() != interval {
                    st.enter_interval(interval.cloned());
                    st.phase = Phase::Stray;
                    Some(st.generation)
                } else {
                    None
                }
            };
            if let Some(generation) = woken {
                // Client ops waiting for this PG to go active here learn it will not.
                pg.activated.send_replace(generation);
            }
            if interval.is_some_and(|i| i.up.contains(&self.id)) {
                continue; // A backfill target.
            }
            let pool_gone = !map.pools.contains_key(&pg.id.pool);
            let safe = pool_gone
                || map.history.get(&pg.id).is_some_and(|h| {
                    !h.last_active.acting.contains(&self.id)
                        && interval.is_some_and(|i| i.since <= h.last_active.since)
                });
            if safe {
                self.remove_pg(pg.id);
            }
        }
    }

    fn remove_pg(&self, id: PgId) {
        let mut pgs = self.pgs.lock().expect("pgs lock");
        pgs.remove(&id);
        *self.removing.lock().expect("removing lock").entry(id).or_insert(0) += 1;
        let mut txn = Transaction::new();
        txn.push(Op::RemovePg { pg: id });
        let rx = self.store.submit(txn);
        drop(pgs);
        let removing = self.removing.clone();
        tokio::spawn(async move {
            match rx.await {
                Ok(Ok(())) => tracing::info!(pg = %id, "removed stray pg"),
                other => tracing::warn!(pg = %id, ?other, "removing stray pg failed"),
            }
            let mut removing = removing.lock().expect("removing lock");
            if let Some(n) = removing.get_mut(&id) {
                *n -= 1;
                if *n == 0 {
                    removing.remove(&id);
                }
            }
        });
    }

    /// Reports PG states and usage to the mon leader every few seconds.
    async fn report_stats(self: Arc<Self>) {
        loop {
            // Every few seconds, and soon after a PG changes state (batched for 100 ms).
            if tokio::time::timeout(STATS_INTERVAL, self.stats_now.notified()).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let map = self.map();
            let pgs: Vec<PgStat> = {
                let table = self.pgs.lock().expect("pgs lock");
                table.values().filter_map(|pg| pg_stat(pg, &map)).collect()
            };
            let used = self.store.used_bytes().unwrap_or(0);
            let osd_stat = OsdStat {
                id: self.id,
                total_bytes: self.cfg.capacity_bytes,
                used_bytes: used,
                avail_bytes: self.cfg.capacity_bytes.saturating_sub(used),
                num_pgs: self.pgs.lock().expect("pgs lock").len() as u32,
            };
            let msg = Message::PgStats { osd: self.id, epoch: map.epoch, pgs, osd_stat };
            let _ = self.monc.call_leader(msg, Duration::from_secs(5)).await;
        }
    }
}

fn pg_stat(pg: &Pg, map: &ClusterMap) -> Option<PgStat> {
    let st = pg.lock();
    let interval = st.interval.as_ref()?;
    let size = map.pools.get(&pg.id.pool).map_or(0, |p| p.size as usize);
    let state = match st.phase {
        Phase::Active if interval.acting.len() < size && st.objects_missing > 0 => {
            "active+undersized+degraded+recovering".to_string()
        }
        Phase::Active if interval.acting.len() < size => "active+undersized+degraded".to_string(),
        Phase::Active if interval.is_remapped() => match st.backfill {
            Backfill::Running => "active+remapped+backfilling".to_string(),
            Backfill::Waiting => "active+remapped+backfill_wait".to_string(),
            Backfill::Idle | Backfill::Done => "active+remapped".to_string(),
        },
        Phase::Active if st.objects_missing > 0 => "active+recovering".to_string(),
        Phase::Active if st.snaptrim.is_some() => "active+clean+snaptrim".to_string(),
        Phase::Active => "active+clean".to_string(),
        Phase::Peering if st.objects_missing > 0 => "peering+recovering".to_string(),
        Phase::Peering => "peering".to_string(),
        Phase::Incomplete => "incomplete".to_string(),
        Phase::Undersized => "undersized+degraded+peered".to_string(),
        _ => return None,
    };
    Some(PgStat {
        pg: pg.id,
        state,
        acting: interval.acting.clone(),
        interval_since: interval.since,
        last_update: st.info.last_update,
        num_objects: st.num_objects,
        num_bytes: st.num_bytes,
        num_objects_missing: st.objects_missing,
        log_size: st.log.len() as u64,
        reported_epoch: map.epoch,
    })
}

/// A store transaction that changed a PG's in-memory log failed: memory and disk disagree, and
/// continuing could acknowledge a write that is not durable. Stop, as a replica that sees its
/// invariant broken must; a restart reloads the PG from the store.
pub fn fatal_store_error(what: &str, e: &dyn std::fmt::Debug) -> ! {
    tracing::error!(what, error = ?e, "store transaction failed; stopping the OSD");
    eprintln!("fatal: store transaction failed ({what}): {e:?}");
    std::process::abort();
}
