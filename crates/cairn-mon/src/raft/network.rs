//! openraft's network side: one client per peer mon, sending [`RaftRpc`]s through the
//! [`RaftTransport`] and recording when each peer last answered (for `quorum_status`).

use super::wire::{decode_reply, encode_rpc, RaftRpc, RaftRpcReply};
use super::{NodeId, RaftTransport, TypeConfig};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{AnyError, BasicNode, RPCTypes};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// When each peer last answered an RPC of ours.
#[derive(Default)]
pub(crate) struct AckTracker {
    last: Mutex<BTreeMap<NodeId, Instant>>,
}

impl AckTracker {
    fn record(&self, peer: NodeId) {
        if let Ok(mut last) = self.last.lock() {
            last.insert(peer, Instant::now());
        }
    }

    /// Peers that answered within `window`.
    pub(crate) fn heard_within(&self, window: Duration) -> Vec<NodeId> {
        match self.last.lock() {
            Ok(last) => last.iter().filter(|(_, at)| at.elapsed() <= window).map(|(id, _)| *id).collect(),
            Err(_) => Vec::new(),
        }
    }
}

pub(crate) struct NetworkFactory {
    pub(crate) node_id: NodeId,
    pub(crate) transport: Arc<dyn RaftTransport>,
    /// Addresses from the configuration; they win over those recorded in the Raft membership.
    pub(crate) members: Arc<BTreeMap<NodeId, String>>,
    pub(crate) acks: Arc<AckTracker>,
    /// Pause after a peer was found unreachable.
    pub(crate) backoff: Duration,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        let addr = self.members.get(&target).cloned().unwrap_or_else(|| node.addr.clone());
        PeerClient {
            node_id: self.node_id,
            target,
            addr,
            transport: Arc::clone(&self.transport),
            acks: Arc::clone(&self.acks),
            backoff: self.backoff,
        }
    }
}

pub(crate) struct PeerClient {
    node_id: NodeId,
    target: NodeId,
    addr: String,
    transport: Arc<dyn RaftTransport>,
    acks: Arc<AckTracker>,
    backoff: Duration,
}

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

fn network_err<E: std::error::Error>(msg: impl ToString) -> RpcErr<E> {
    RPCError::Network(NetworkError::new(&AnyError::error(msg)))
}

impl PeerClient {
    async fn call<E: std::error::Error>(
        &self,
        rpc: RaftRpc,
        action: RPCTypes,
        option: &RPCOption,
    ) -> Result<RaftRpcReply, RpcErr<E>> {
        let request = encode_rpc(&rpc).map_err(network_err)?;
        let call = self.transport.call(self.target, &self.addr, request);
        let ttl = option.hard_ttl();
        let bytes = match tokio::time::timeout(ttl, call).await {
            Err(_) => {
                return Err(RPCError::Timeout(Timeout {
                    action,
                    id: self.node_id,
                    target: self.target,
                    timeout: ttl,
                }))
            }
            Ok(Err(io)) => return Err(RPCError::Unreachable(Unreachable::new(&io))),
            Ok(Ok(bytes)) => bytes,
        };
        let reply = decode_reply(&bytes).map_err(network_err)?;
        self.acks.record(self.target);
        Ok(reply)
    }

    fn remote<E: std::error::Error>(&self, e: RaftError<NodeId, E>) -> RpcErr<E> {
        RPCError::RemoteError(RemoteError::new(self.target, e))
    }
}

fn unexpected<E: std::error::Error>(reply: RaftRpcReply) -> RpcErr<E> {
    match reply {
        RaftRpcReply::Rejected(why) => network_err(format!("peer rejected raft rpc: {why}")),
        other => network_err(format!("unexpected raft reply: {other:?}")),
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        match self.call(RaftRpc::AppendEntries(rpc), RPCTypes::AppendEntries, &option).await? {
            RaftRpcReply::AppendEntries(Ok(r)) => Ok(r),
            RaftRpcReply::AppendEntries(Err(e)) => Err(self.remote(e)),
            other => Err(unexpected(other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        match self.call(RaftRpc::InstallSnapshot(rpc), RPCTypes::InstallSnapshot, &option).await? {
            RaftRpcReply::InstallSnapshot(Ok(r)) => Ok(r),
            RaftRpcReply::InstallSnapshot(Err(e)) => Err(self.remote(e)),
            other => Err(unexpected(other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr> {
        match self.call(RaftRpc::Vote(rpc), RPCTypes::Vote, &option).await? {
            RaftRpcReply::Vote(Ok(r)) => Ok(r),
            RaftRpcReply::Vote(Err(e)) => Err(self.remote(e)),
            other => Err(unexpected(other)),
        }
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(self.backoff))
    }
}

/// Serves one request from a peer: decode, hand to openraft, encode the answer.
pub(crate) async fn serve(raft: &openraft::Raft<TypeConfig>, request: &[u8]) -> Vec<u8> {
    use super::wire::{decode_rpc, encode_reply};
    let reply = match decode_rpc(request) {
        Err(why) => {
            tracing::warn!(%why, "mon raft: rejecting malformed rpc");
            RaftRpcReply::Rejected(why)
        }
        Ok(RaftRpc::AppendEntries(req)) => RaftRpcReply::AppendEntries(raft.append_entries(req).await),
        Ok(RaftRpc::Vote(req)) => RaftRpcReply::Vote(raft.vote(req).await),
        Ok(RaftRpc::InstallSnapshot(req)) => RaftRpcReply::InstallSnapshot(raft.install_snapshot(req).await),
    };
    encode_reply(&reply)
}
