//! The monitors' Raft group: one openraft (0.9, storage v2) group of 1, 3 or 5 mons whose state
//! machine is the [`ClusterMap`], persisted in one redb file per mon (`DIR/mon.redb`, see
//! [`store`](self) module docs for the layout).
//!
//! - Every map change is a [`MapCommand`] proposed on the leader ([`MonRaft::propose`]) and
//!   applied on every mon by `ClusterMap::apply` — deterministic, nothing else.
//! - Followers answer [`ProposeError::NotLeader`] with the leader they know; the caller forwards.
//! - RPCs between mons are opaque byte strings ([`MonRaft::handle_rpc`] on the receiving side, a
//!   [`RaftTransport`] on the sending side); their format is in the `wire` module.
//! - [`MemNetwork`] is an in-memory transport for tests and simulations.
//!
//! Known limits: proposals carry no client id, so a proposal retried after a timeout or a leader
//! change may apply twice (map commands are written to be harmless when repeated: a second
//! `PoolCreate` answers EEXIST); membership is fixed at bootstrap (no add/remove mon yet).

mod mem_transport;
mod network;
mod store;
mod wire;

#[cfg(test)]
mod tests;

pub use mem_transport::{MemNetwork, MemTransport};
pub use store::DB_FILE_NAME;
pub use wire::{MAX_RPC_BYTES, WIRE_VERSION};

use cairn_types::auth::AuthDb;
use cairn_types::{errno, ClusterMap, Error, MapCommand};
use network::{AckTracker, NetworkFactory};
use openraft::error::{CheckIsLeaderError, ClientWriteError, Fatal, InitializeError, RaftError};
use openraft::{BasicNode, Config, LogIdOptionExt, Raft, RaftMetrics, ServerState, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::future::Future;
use std::io::Cursor;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use store::{Db, LogStore, StateMachine};
use tokio::sync::watch;

/// A mon's Raft node id (its rank + 1; see `cairn_types::MonInfo::node_id`).
pub type NodeId = u64;

/// What applying one command returned: `ClusterMap::apply`'s message, or its refusal (in which
/// case the map is unchanged).
pub type ApplyOutcome = Result<String, Error>;

openraft::declare_raft_types!(
    /// openraft's type configuration for the mon group.
    pub TypeConfig:
        D = MapCommand,
        R = ApplyOutcome,
        NodeId = NodeId,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// Take a snapshot after this many applied entries since the last one.
pub const SNAPSHOT_EVERY_LOGS: u64 = 1000;
/// Entries kept in the log behind the last snapshot, so slightly lagging mons catch up from the
/// log rather than by snapshot.
pub const LOGS_KEPT_BEHIND_SNAPSHOT: u64 = 1000;

/// How Raft RPCs reach other mons. The daemon implements it over Cairn's TCP protocol; tests use
/// [`MemNetwork`].
pub trait RaftTransport: Send + Sync + 'static {
    /// Sends one serialized request to mon `target` (at `addr`) and returns the serialized reply
    /// its [`MonRaft::handle_rpc`] produced. An error means the peer was not reached; the caller
    /// applies its own timeout (the heartbeat interval for AppendEntries), so the future may be
    /// dropped early.
    fn call(
        &self,
        target: NodeId,
        addr: &str,
        request: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<u8>>> + Send>>;
}

/// Raft timing, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftTiming {
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
}

impl Default for RaftTiming {
    fn default() -> Self {
        RaftTiming { heartbeat_ms: 250, election_timeout_min_ms: 1000, election_timeout_max_ms: 2000 }
    }
}

impl RaftTiming {
    pub fn validate(&self) -> Result<(), Error> {
        if self.heartbeat_ms == 0
            || self.heartbeat_ms >= self.election_timeout_min_ms
            || self.election_timeout_min_ms >= self.election_timeout_max_ms
        {
            return Err(Error::einval(format!(
                "invalid raft timing: need 0 < heartbeat ({}) < election timeout min ({}) < max ({})",
                self.heartbeat_ms, self.election_timeout_min_ms, self.election_timeout_max_ms
            )));
        }
        Ok(())
    }

    /// How long a proposal or read barrier may wait (for a quorum, a commit) before ETIMEDOUT.
    pub fn op_timeout(&self) -> Duration {
        Duration::from_millis(self.election_timeout_max_ms.saturating_mul(10))
    }

    fn raft_config(&self) -> Result<Config, Error> {
        let config = Config {
            cluster_name: "cairn-mon".into(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            // Per chunk; generous next to a heartbeat since a chunk is up to 1 MiB.
            install_snapshot_timeout: self.election_timeout_max_ms.max(1000),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(SNAPSHOT_EVERY_LOGS),
            max_in_snapshot_log_to_keep: LOGS_KEPT_BEHIND_SNAPSHOT,
            snapshot_max_chunk_size: wire::SNAPSHOT_CHUNK_BYTES,
            ..Default::default()
        };
        config.validate().map_err(|e| Error::einval(format!("invalid raft config: {e}")))
    }
}

/// Why a proposal (or read barrier) did not go through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// This mon is not the leader; forward to `leader_id` at `leader_addr` (None while an
    /// election is under way: retry shortly).
    #[error("mon is not the leader (leader: {leader_id:?} at {leader_addr:?})")]
    NotLeader { leader_id: Option<NodeId>, leader_addr: Option<String> },
    #[error(transparent)]
    Other(Error),
}

impl From<ProposeError> for Error {
    fn from(e: ProposeError) -> Self {
        match e {
            ProposeError::NotLeader { .. } => Error::eagain(e.to_string()),
            ProposeError::Other(e) => e,
        }
    }
}

/// A mon's Raft role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MonState {
    Leader,
    Follower,
    Candidate,
    Learner,
    Shutdown,
}

impl From<ServerState> for MonState {
    fn from(s: ServerState) -> Self {
        match s {
            ServerState::Leader => MonState::Leader,
            ServerState::Follower => MonState::Follower,
            ServerState::Candidate => MonState::Candidate,
            ServerState::Learner => MonState::Learner,
            ServerState::Shutdown => MonState::Shutdown,
        }
    }
}

/// Quorum information for `quorum_status` / `mon_status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftStatus {
    pub node_id: NodeId,
    pub state: MonState,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    /// On the leader: the voters (itself included) that answered an RPC within the last election
    /// timeout — the mons "in quorum". None elsewhere (only the leader knows).
    pub heard_from: Option<Vec<NodeId>>,
    /// On the leader: the last log index known replicated on each member.
    pub matched_index: Option<BTreeMap<NodeId, Option<u64>>>,
    /// On the leader: milliseconds since a quorum last acknowledged it.
    pub millis_since_quorum_ack: Option<u64>,
    pub last_log_index: Option<u64>,
    pub last_applied_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
}

/// Whether store I/O runs inline rather than on tokio's blocking pool: on a current-thread
/// runtime, as in the deterministic simulation (`cairn-sim`), where a blocking thread finishing
/// at a real-time-dependent moment would reorder the mon's tasks and make two runs of one seed
/// differ. Daemons run multi-threaded runtimes and keep the blocking pool.
fn runs_inline() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread)
}

/// One mon's member of the Raft group. Cheap to clone.
#[derive(Clone)]
pub struct MonRaft {
    inner: Arc<Inner>,
}

struct Inner {
    node_id: NodeId,
    raft: Raft<TypeConfig>,
    members: Arc<BTreeMap<NodeId, String>>,
    map_rx: watch::Receiver<Arc<ClusterMap>>,
    auth_rx: watch::Receiver<Arc<AuthDb>>,
    acks: Arc<AckTracker>,
    timing: RaftTiming,
    db: Arc<Db>,
}

fn fatal_error(f: &Fatal<NodeId>) -> Error {
    match f {
        Fatal::Stopped => Error::new(errno::ENOTCONN, "mon raft is stopped"),
        other => Error::eio(format!("mon raft failed: {other}")),
    }
}

impl MonRaft {
    /// Opens (or creates) the store in `dir` and starts Raft. `members` = all mons (node id →
    /// addr) from the configuration; it must contain `node_id`.
    pub async fn open(
        node_id: NodeId,
        dir: &Path,
        members: BTreeMap<NodeId, String>,
        transport: Arc<dyn RaftTransport>,
        config: RaftTiming,
    ) -> Result<MonRaft, Error> {
        config.validate()?;
        if !members.contains_key(&node_id) {
            return Err(Error::einval(format!("mon {node_id} is not among the configured mons")));
        }
        let raft_config = Arc::new(config.raft_config()?);
        let dir_owned = dir.to_path_buf();
        let opened = if runs_inline() {
            Db::open(&dir_owned)
        } else {
            tokio::task::spawn_blocking(move || Db::open(&dir_owned))
                .await
                .map_err(|e| Error::eio(format!("mon store open task failed: {e}")))?
        };
        let db =
            opened.map_err(|e| Error::eio(format!("cannot open mon store in {}: {e}", dir.display())))?;
        let db = Arc::new(db);
        let (sm, applied) = StateMachine::load(Arc::clone(&db))?;
        let (map_rx, auth_rx) = (applied.map, applied.auth);
        let members = Arc::new(members);
        let acks = Arc::new(AckTracker::default());
        let network = NetworkFactory {
            node_id,
            transport,
            members: Arc::clone(&members),
            acks: Arc::clone(&acks),
            backoff: Duration::from_millis(config.heartbeat_ms.saturating_mul(2)),
        };
        let log = LogStore::new(Arc::clone(&db));
        let raft = match Raft::new(node_id, raft_config, network, log, sm).await {
            Ok(raft) => raft,
            Err(e) => {
                db.close().await;
                return Err(Error::eio(format!("cannot start mon raft: {e}")));
            }
        };
        tracing::info!(node_id, epoch = map_rx.borrow().epoch, "mon raft started");
        let inner = Inner { node_id, raft, members, map_rx, auth_rx, acks, timing: config, db };
        Ok(MonRaft { inner: Arc::new(inner) })
    }

    pub fn node_id(&self) -> NodeId {
        self.inner.node_id
    }

    /// Called on every mon at start: if this store was never initialized and this mon has the
    /// lowest id among the members, initializes the group with all members as voters; the
    /// others wait for the leader to contact them. Idempotent.
    pub async fn bootstrap_if_fresh(&self) -> Result<(), Error> {
        let raft = &self.inner.raft;
        if raft.is_initialized().await.map_err(|f| fatal_error(&f))? {
            return Ok(());
        }
        if self.inner.members.keys().next() != Some(&self.inner.node_id) {
            return Ok(());
        }
        let nodes: BTreeMap<NodeId, BasicNode> =
            self.inner.members.iter().map(|(id, addr)| (*id, BasicNode::new(addr))).collect();
        tracing::info!(node_id = self.inner.node_id, voters = ?nodes.keys(), "mon raft: bootstrapping");
        match raft.initialize(nodes).await {
            Ok(()) => Ok(()),
            // Initialized meanwhile (contacted by a leader): nothing to do.
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(RaftError::APIError(InitializeError::NotInMembers(e))) => {
                Err(Error::einval(format!("mon raft bootstrap: {e}")))
            }
            Err(RaftError::Fatal(f)) => Err(fatal_error(&f)),
        }
    }

    /// Proposes a command. `Ok(Ok(msg))`: applied; `Ok(Err(e))`: applied and refused by
    /// `ClusterMap::apply` (map unchanged); `Err(NotLeader)`: forward to the leader;
    /// `Err(Other)`: the mon stopped, its store failed, or no commit within
    /// [`RaftTiming::op_timeout`] (ETIMEDOUT: the command may still be applied later).
    pub async fn propose(&self, cmd: MapCommand) -> Result<ApplyOutcome, ProposeError> {
        let write = self.inner.raft.client_write(cmd);
        match tokio::time::timeout(self.inner.timing.op_timeout(), write).await {
            Err(_) => Err(ProposeError::Other(Error::timed_out("mon proposal timed out"))),
            Ok(Ok(resp)) => Ok(resp.data),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                Err(self.not_leader(f.leader_id, f.leader_node))
            }
            Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => {
                Err(ProposeError::Other(Error::einval(e.to_string())))
            }
            Ok(Err(RaftError::Fatal(f))) => Err(ProposeError::Other(fatal_error(&f))),
        }
    }

    /// The applied map, updated after every applied batch and on snapshot install.
    pub fn map(&self) -> watch::Receiver<Arc<ClusterMap>> {
        self.inner.map_rx.clone()
    }

    /// The applied auth database (kept beside the map; never sent with it).
    pub fn auth(&self) -> watch::Receiver<Arc<AuthDb>> {
        self.inner.auth_rx.clone()
    }

    /// Linearizable read barrier: Ok once this mon is confirmed leader by a quorum and has
    /// applied everything committed before the call.
    pub async fn read_barrier(&self) -> Result<(), ProposeError> {
        let check = self.inner.raft.ensure_linearizable();
        match tokio::time::timeout(self.inner.timing.op_timeout(), check).await {
            Err(_) => Err(ProposeError::Other(Error::timed_out("mon read barrier timed out"))),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
                Err(self.not_leader(f.leader_id, f.leader_node))
            }
            Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)))) => {
                Err(ProposeError::Other(Error::eagain(format!("mon has no quorum: {q}"))))
            }
            Ok(Err(RaftError::Fatal(f))) => Err(ProposeError::Other(fatal_error(&f))),
        }
    }

    /// The leader this mon knows of, with its address (from the configuration, else from the
    /// Raft membership; empty if neither knows it).
    pub fn leader(&self) -> Option<(NodeId, String)> {
        let metrics = self.metrics();
        let id = metrics.current_leader?;
        Some((id, self.addr_of(id, &metrics).unwrap_or_default()))
    }

    /// Whether this mon believes it leads. A deposed leader may believe so briefly; use
    /// [`MonRaft::read_barrier`] where that matters.
    pub fn is_leader(&self) -> bool {
        let m = self.inner.raft.metrics();
        let m = m.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.inner.node_id)
    }

    pub fn status(&self) -> RaftStatus {
        let m = self.metrics();
        let voters: Vec<NodeId> = m.membership_config.membership().voter_ids().collect();
        let learners: Vec<NodeId> = m.membership_config.membership().learner_ids().collect();
        let leading = m.state == ServerState::Leader;
        let heard_from = leading.then(|| {
            let window = Duration::from_millis(self.inner.timing.election_timeout_max_ms);
            let recent = self.inner.acks.heard_within(window);
            voters.iter().copied().filter(|v| *v == self.inner.node_id || recent.contains(v)).collect()
        });
        let matched_index = m
            .replication
            .as_ref()
            .filter(|_| leading)
            .map(|r| r.iter().map(|(id, matched)| (*id, matched.index())).collect::<BTreeMap<_, _>>());
        RaftStatus {
            node_id: self.inner.node_id,
            state: m.state.into(),
            term: m.current_term,
            leader: m.current_leader,
            voters,
            learners,
            heard_from,
            matched_index,
            millis_since_quorum_ack: m.millis_since_quorum_ack.filter(|_| leading),
            last_log_index: m.last_log_index,
            last_applied_index: m.last_applied.index(),
            snapshot_index: m.snapshot.index(),
            purged_index: m.purged.index(),
        }
    }

    /// Handles one serialized Raft RPC from another mon and returns the serialized reply.
    /// Malformed input gets an error reply, never a panic.
    pub async fn handle_rpc(&self, request: &[u8]) -> Vec<u8> {
        network::serve(&self.inner.raft, request).await
    }

    /// Snapshots the applied map now and purges the log up to the snapshot (as `ceph mon
    /// compact`). Returns the index the log is purged up to; the leader purges once no
    /// replication still reads those entries, so `status().purged_index` may lag a little.
    pub async fn compact(&self) -> Result<Option<u64>, Error> {
        let Some(applied) = self.metrics().last_applied.index() else {
            return Ok(None);
        };
        let raft = &self.inner.raft;
        raft.trigger().snapshot().await.map_err(|f| fatal_error(&f))?;
        let m = raft
            .wait(Some(self.inner.timing.op_timeout()))
            .metrics(|m| m.snapshot.index() >= Some(applied), "snapshot built")
            .await
            .map_err(|e| Error::timed_out(format!("mon snapshot: {e}")))?;
        let upto = m.snapshot.index().unwrap_or(applied);
        raft.trigger().purge_log(upto).await.map_err(|f| fatal_error(&f))?;
        Ok(Some(upto))
    }

    /// Stops Raft and closes the store (the directory can then be opened again).
    pub async fn shutdown(&self) {
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(error = %e, "mon raft shutdown");
        }
        self.inner.db.close().await;
        tracing::info!(node_id = self.inner.node_id, "mon raft stopped");
    }

    fn metrics(&self) -> RaftMetrics<NodeId, BasicNode> {
        self.inner.raft.metrics().borrow().clone()
    }

    fn addr_of(&self, id: NodeId, metrics: &RaftMetrics<NodeId, BasicNode>) -> Option<String> {
        self.inner
            .members
            .get(&id)
            .cloned()
            .or_else(|| metrics.membership_config.membership().get_node(&id).map(|n| n.addr.clone()))
    }

    fn not_leader(&self, leader_id: Option<NodeId>, leader_node: Option<BasicNode>) -> ProposeError {
        let leader_addr = leader_id
            .and_then(|id| self.inner.members.get(&id).cloned().or_else(|| leader_node.map(|n| n.addr)));
        ProposeError::NotLeader { leader_id, leader_addr }
    }
}
