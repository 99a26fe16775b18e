//! The monitor daemon: answers map requests, runs commands through Raft, and — on the leader —
//! turns OSD reports into map changes (failures → down, long down → out, quota → full).

use crate::auth::MonAuthConfig;
use crate::commands::{self, CommandContext, Plan, QuorumInfo};
use crate::raft::{MonRaft, NodeId, ProposeError, RaftTransport};
use bytes::Bytes;
use cairn_proto::{ClientAuth, ConnPool, Handler, Message, Network, Responder, Session};
use cairn_types::stats::{OsdStat, PgStat};
use cairn_types::{ClusterMap, Error, MapCommand, MapSettings, MonInfo, OsdId, PgId, Result};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// Longest a `GetMap` long-poll may wait.
pub const MAX_MAP_WAIT: Duration = Duration::from_secs(30);

/// A long poll: waits up to `wait` until the watched value is initialized and its version (by
/// `version`) is past `have`, then returns the latest value (which may still be neither).
pub(crate) async fn wait_newer<T>(
    mut rx: tokio::sync::watch::Receiver<Arc<T>>,
    have: u64,
    wait: Duration,
    version: impl Fn(&T) -> u64,
    initialized: impl Fn(&T) -> bool,
) -> Arc<T> {
    let _ = tokio::time::timeout(wait, async {
        loop {
            {
                let v = rx.borrow_and_update();
                if version(&v) > have && initialized(&v) {
                    return;
                }
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    })
    .await;
    let latest = rx.borrow().clone();
    latest
}

#[derive(Debug, Clone)]
pub struct MonConfig {
    pub node_id: NodeId,
    pub fsid: String,
    pub mons: Vec<MonInfo>,
    pub settings: MapSettings,
    /// `mon osd min down reporters`.
    pub min_down_reporters: usize,
    /// `mon osd report timeout`: an up OSD that sends no stats this long is marked down.
    pub osd_report_timeout: Duration,
    /// `auth_*_required`, the ticket lifetime and the mon keyring.
    pub auth: MonAuthConfig,
}

pub struct Mon {
    pub cfg: MonConfig,
    pub raft: MonRaft,
    soft: Mutex<SoftState>,
    /// Ticket keys for `mon.` logins before the auth database exists (those tickets are never
    /// presented anywhere).
    pub(crate) bootstrap_keys: cairn_auth::ServiceKeys,
}

/// What the leader learns from OSD reports; rebuilt by a new leader from the next reports.
#[derive(Default)]
struct SoftState {
    pg_stats: BTreeMap<PgId, PgStat>,
    osd_stats: BTreeMap<OsdId, OsdStat>,
    last_report: HashMap<OsdId, Instant>,
    /// target → reporter → when reported.
    failures: HashMap<OsdId, HashMap<OsdId, Instant>>,
}

/// Raft RPCs between mons over Cairn connections (TCP, or the network given to
/// [`TcpRaftTransport::with_network`]).
pub struct TcpRaftTransport {
    pool: ConnPool,
}

impl TcpRaftTransport {
    /// Over real TCP, authenticated as `auth` (the shared `mon.` key).
    pub fn new(auth: Arc<ClientAuth>) -> Arc<Self> {
        TcpRaftTransport::with_network(cairn_proto::net::tcp(), auth)
    }

    pub fn with_network(net: Arc<dyn Network>, auth: Arc<ClientAuth>) -> Arc<Self> {
        Arc::new(TcpRaftTransport { pool: ConnPool::new(net, auth) })
    }
}

impl RaftTransport for TcpRaftTransport {
    fn call(
        &self,
        _target: NodeId,
        addr: &str,
        request: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<u8>>> + Send>> {
        let pool = self.pool.clone();
        let addr = addr.to_string();
        Box::pin(async move {
            let msg = Message::Raft(Bytes::from(request));
            match pool.call(&addr, msg, Duration::from_secs(10)).await {
                Ok(Message::RaftReply(b)) => Ok(b.to_vec()),
                Ok(other) => Err(std::io::Error::other(format!("unexpected reply {other:?}"))),
                Err(e) => {
                    pool.forget(&addr).await;
                    Err(std::io::Error::other(e.message))
                }
            }
        })
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Mon {
    pub fn new(cfg: MonConfig, raft: MonRaft) -> Arc<Mon> {
        let bootstrap_keys = cairn_auth::ServiceKeys::generate();
        Arc::new(Mon { cfg, raft, soft: Mutex::new(SoftState::default()), bootstrap_keys })
    }

    fn soft(&self) -> std::sync::MutexGuard<'_, SoftState> {
        self.soft.lock().expect("mon soft state lock")
    }

    fn map(&self) -> Arc<ClusterMap> {
        self.raft.map().borrow().clone()
    }

    fn not_leader(&self) -> Message {
        Message::NotLeader { leader_addr: self.raft.leader().map(|(_, addr)| addr) }
    }

    /// Proposes a command; maps "not leader" to the forwarding reply.
    async fn propose(&self, cmd: MapCommand) -> std::result::Result<Result<String>, Message> {
        match self.raft.propose(cmd).await {
            Ok(outcome) => Ok(outcome),
            Err(ProposeError::NotLeader { leader_addr, .. }) => Err(Message::NotLeader { leader_addr }),
            Err(ProposeError::Other(e)) => Ok(Err(e)),
        }
    }

    async fn handle_async(self: Arc<Self>, session: Arc<Session>, msg: Message) -> Message {
        if let Err(e) = self.authorize(&session, &msg) {
            return match msg {
                Message::MonCommand { .. } | Message::MonCommandWithInput { .. } => command_error(e),
                _ => Message::Error(e),
            };
        }
        match msg {
            Message::GetMap { have_epoch, wait_ms } => self.get_map(have_epoch, wait_ms).await,
            Message::Raft(bytes) => Message::RaftReply(Bytes::from(self.raft.handle_rpc(&bytes).await)),
            Message::AuthWatch { have_version, wait_ms, nonce } => {
                self.auth_watch(&session, have_version, wait_ms, nonce).await
            }
            _ if !self.raft.is_leader() => self.not_leader(),
            Message::MonCommand { cmd } => self.command(&session, &cmd, &[]).await,
            Message::MonCommandWithInput { cmd, inbuf } => self.command(&session, &cmd, &inbuf).await,
            Message::OsdBoot { id, fsid, addr, host, capacity_bytes } => {
                if fsid != self.cfg.fsid {
                    return Message::Error(Error::einval(format!(
                        "osd.{id} belongs to cluster {fsid}, this is {}",
                        self.cfg.fsid
                    )));
                }
                self.soft().last_report.insert(id, Instant::now());
                let cmd = MapCommand::OsdBoot { id, addr, host, capacity_bytes, now_secs: now_secs() };
                match self.propose(cmd).await {
                    // The map that includes this boot: the OSD learns the epoch its life began.
                    Ok(Ok(_)) => Message::Map(Box::new((*self.map()).clone())),
                    other => reply_of(other),
                }
            }
            Message::OsdFailure { target, reporter, target_up_from, immediate } => {
                self.failure_report(target, reporter, target_up_from, immediate).await
            }
            Message::PgActivated { pg, interval } => {
                reply_of(self.propose(MapCommand::PgActivated { pg, interval }).await)
            }
            Message::PgTempRequest { pg, since, acting } => {
                if let Err(e) = self.check_current(pg, since) {
                    return Message::Error(e);
                }
                reply_of(self.propose(MapCommand::PgTemp { pg, acting, now_secs: now_secs() }).await)
            }
            Message::PgTempClearRequest { pg, since, up } => {
                if let Err(e) = self.check_current(pg, since) {
                    return Message::Error(e);
                }
                reply_of(self.propose(MapCommand::PgTempClear { pg, up, now_secs: now_secs() }).await)
            }
            Message::PgStats { osd, pgs, osd_stat, .. } => {
                self.stats_report(osd, pgs, osd_stat);
                Message::Ok
            }
            Message::Admin { command } => self.admin(&command),
            other => Message::Error(Error::einval(format!("a monitor cannot handle {other:?}"))),
        }
    }

    /// A pg_temp request comes from the primary of `pg`'s interval `since`; one from an older
    /// interval is refused (it would only undo a newer primary's decision).
    fn check_current(&self, pg: PgId, since: u64) -> Result<()> {
        match self.map().interval(pg) {
            Some(i) if i.since == since => Ok(()),
            _ => Err(Error::new(
                cairn_types::errno::ESTALE,
                format!("pg {pg}: interval since {since} is no longer current"),
            )),
        }
    }

    async fn get_map(&self, have: u64, wait_ms: u32) -> Message {
        let wait = Duration::from_millis(wait_ms as u64).min(MAX_MAP_WAIT);
        let map = wait_newer(self.raft.map(), have, wait, |m| m.epoch, ClusterMap::is_initialized).await;
        if !map.is_initialized() {
            return Message::Error(Error::eagain("the cluster map is not initialized yet"));
        }
        Message::Map(Box::new((*map).clone()))
    }

    async fn command(&self, session: &Session, text: &str, inbuf: &[u8]) -> Message {
        let cmd: serde_json::Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => return command_error(Error::einval(format!("command is not valid JSON: {e}"))),
        };
        if let Err(e) = self.check_command(session, &cmd) {
            return command_error(e);
        }
        if let Err(e) = self.raft.read_barrier().await {
            return match e {
                ProposeError::NotLeader { leader_addr, .. } => Message::NotLeader { leader_addr },
                ProposeError::Other(e) => command_error(e),
            };
        }
        let is_auth = cmd.get("prefix").and_then(|p| p.as_str()).is_some_and(|p| p.starts_with("auth "));
        if is_auth {
            return self.auth_command(&cmd, inbuf).await;
        }
        let map = self.map();
        let plan = {
            let soft = self.soft();
            let quorum = self.quorum_info();
            let ctx = CommandContext {
                map: &map,
                pg_stats: &soft.pg_stats,
                osd_stats: &soft.osd_stats,
                quorum: &quorum,
                now_secs: now_secs(),
            };
            commands::plan(&cmd, &ctx)
        };
        match plan {
            Err(e) => command_error(e),
            Ok(Plan::Reply(out)) => {
                Message::MonCommandReply { rc: 0, status: out.status, data: Bytes::from(out.data) }
            }
            Ok(Plan::Propose(map_cmd)) => match self.propose(map_cmd.clone()).await {
                Ok(Ok(applied)) => {
                    let status = commands::applied_status(&map_cmd, &applied);
                    let data = Bytes::from(commands::applied_data(&map_cmd, &applied));
                    Message::MonCommandReply { rc: 0, status, data }
                }
                Ok(Err(e)) => command_error(e),
                Err(not_leader) => not_leader,
            },
        }
    }

    async fn auth_command(&self, cmd: &serde_json::Value, inbuf: &[u8]) -> Message {
        let plan = commands::auth::plan(cmd, &self.auth_db(), inbuf);
        match plan {
            Err(e) => command_error(e),
            Ok(Plan::Reply(out)) => {
                Message::MonCommandReply { rc: 0, status: out.status, data: Bytes::from(out.data) }
            }
            Ok(Plan::Propose(map_cmd)) => match self.propose(map_cmd.clone()).await {
                Ok(Ok(status)) => {
                    let MapCommand::Auth(applied) = &map_cmd else {
                        return command_error(Error::eio("not auth"));
                    };
                    let out = commands::auth::applied_output(cmd, applied, &status, &self.auth_db());
                    Message::MonCommandReply { rc: 0, status: out.status, data: Bytes::from(out.data) }
                }
                Ok(Err(e)) => command_error(e),
                Err(not_leader) => not_leader,
            },
        }
    }

    pub fn quorum_info(&self) -> QuorumInfo {
        let st = self.raft.status();
        let in_quorum = st.heard_from.clone().unwrap_or_else(|| st.leader.into_iter().collect());
        QuorumInfo {
            leader: st.leader,
            term: st.term,
            members: self.cfg.mons.clone(),
            in_quorum,
            self_id: self.cfg.node_id,
        }
    }

    async fn failure_report(&self, target: OsdId, reporter: OsdId, up_from: u64, immediate: bool) -> Message {
        let map = self.map();
        let Some(osd) = map.osds.get(&target) else { return Message::Ok };
        if !osd.up || osd.up_from != up_from {
            return Message::Ok; // Already down, or about an earlier life of the OSD.
        }
        let up_others = map.osds.values().filter(|o| o.up && o.id != target).count();
        let needed = self.cfg.min_down_reporters.min(up_others).max(1);
        let reporters = {
            let mut soft = self.soft();
            let now = Instant::now();
            let entry = soft.failures.entry(target).or_default();
            entry.insert(reporter, now);
            entry.retain(|_, t| now.duration_since(*t) < Duration::from_secs(60));
            entry.len()
        };
        if immediate || reporters >= needed {
            tracing::warn!(osd = target, reporters, immediate, "marking osd down");
            self.soft().failures.remove(&target);
            let _ = self.propose(MapCommand::OsdFailed { id: target, up_from, now_secs: now_secs() }).await;
        }
        Message::Ok
    }

    fn stats_report(&self, osd: OsdId, pgs: Vec<PgStat>, osd_stat: OsdStat) {
        let map = self.map();
        let mut soft = self.soft();
        soft.last_report.insert(osd, Instant::now());
        soft.osd_stats.insert(osd, osd_stat);
        for stat in pgs {
            // Only the current primary's view counts.
            let current = map
                .intervals
                .get(&stat.pg)
                .is_some_and(|i| i.primary() == Some(osd) && i.since == stat.interval_since);
            if current {
                soft.pg_stats.insert(stat.pg, stat);
            }
        }
        soft.pg_stats.retain(|pg, _| map.intervals.contains_key(pg));
    }

    fn admin(&self, command: &str) -> Message {
        match command.trim() {
            "status" => {
                let status = self.raft.status();
                Message::AdminReply { json: serde_json::to_string(&status).unwrap_or_default() }
            }
            other => Message::Error(Error::einval(format!("unknown admin command '{other}' (try: status)"))),
        }
    }

    /// Leader duties, once a second: bootstrap the map, mark silent OSDs down, long-down OSDs
    /// out, and pools over quota full.
    pub async fn tick(self: Arc<Self>) {
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        loop {
            ticker.tick().await;
            if !self.raft.is_leader() {
                self.soft().last_report.clear();
                continue;
            }
            let map = self.map();
            if !map.is_initialized() {
                let init = MapCommand::Init {
                    fsid: self.cfg.fsid.clone(),
                    mons: self.cfg.mons.clone(),
                    settings: self.cfg.settings.clone(),
                    now_secs: now_secs(),
                };
                if let Ok(Err(e)) = self.propose(init).await {
                    tracing::warn!(error = %e, "initializing the map failed");
                }
                continue;
            }
            if let Some(cmd) = self.auth_duty() {
                if let Ok(Err(e)) = self.propose(cmd).await {
                    tracing::warn!(error = %e, "auth database update failed");
                }
            }
            if map.settings != self.cfg.settings {
                let cmd =
                    MapCommand::SetSettings { settings: self.cfg.settings.clone(), now_secs: now_secs() };
                let _ = self.propose(cmd).await;
                continue;
            }
            for cmd in self.leader_duties(&map) {
                let _ = self.propose(cmd).await;
            }
        }
    }

    fn leader_duties(&self, map: &ClusterMap) -> Vec<MapCommand> {
        let now = now_secs();
        let mut cmds = Vec::new();
        let mut soft = self.soft();
        let instant = Instant::now();
        for o in map.osds.values().filter(|o| o.up) {
            let seen = *soft.last_report.entry(o.id).or_insert(instant);
            if instant.duration_since(seen) > self.cfg.osd_report_timeout {
                cmds.push(MapCommand::OsdFailed { id: o.id, up_from: o.up_from, now_secs: now });
            }
        }
        let out: Vec<OsdId> = map
            .osds
            .values()
            .filter(|o| !o.up && o.in_cluster)
            .filter(|o| o.down_since_secs.is_some_and(|t| now >= t + map.settings.down_out_interval_secs))
            .map(|o| o.id)
            .collect();
        if !out.is_empty() {
            cmds.push(MapCommand::OsdOut { ids: out, by_operator: false, now_secs: now });
        }
        for pool in map.pools.values() {
            let (mut bytes, mut objects) = (0u64, 0u64);
            for s in soft.pg_stats.values().filter(|s| s.pg.pool == pool.id) {
                bytes += s.num_bytes;
                objects += s.num_objects;
            }
            let full = (pool.quota_max_bytes > 0 && bytes >= pool.quota_max_bytes)
                || (pool.quota_max_objects > 0 && objects >= pool.quota_max_objects);
            if full != pool.full {
                cmds.push(MapCommand::PoolSetFull { pool: pool.id, full, now_secs: now });
            }
        }
        cmds
    }
}

fn reply_of(r: std::result::Result<Result<String>, Message>) -> Message {
    match r {
        Ok(Ok(_)) => Message::Ok,
        Ok(Err(e)) => Message::Error(e),
        Err(not_leader) => not_leader,
    }
}

fn command_error(e: Error) -> Message {
    Message::MonCommandReply { rc: e.errno, status: e.message, data: Bytes::new() }
}

impl Handler for Mon {
    fn handle(self: &Arc<Self>, session: &Arc<Session>, msg: Message, responder: Responder) {
        let mon = self.clone();
        let session = session.clone();
        tokio::spawn(async move {
            let reply = mon.handle_async(session, msg).await;
            responder.reply(reply);
        });
    }
}
