//! Wire format of the mons' Raft RPCs, carried as opaque byte strings by a [`super::RaftTransport`].
//!
//! Request: `WIRE_VERSION` byte, then postcard of [`RaftRpc`]. Reply: `WIRE_VERSION` byte, then
//! postcard of [`RaftRpcReply`]. Postcard writes a `Vec<u8>` (snapshot chunks) as a varint length
//! and the raw bytes, so binary fields cost no more than their length. Decoding treats input as
//! hostile: bounded size, checked version, and sanity checks that keep malformed-but-decodable
//! requests away from openraft's internal assertions.

use super::{NodeId, TypeConfig};
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::LogIdOptionExt;
use serde::{Deserialize, Serialize};

/// Version byte leading every request and reply.
pub const WIRE_VERSION: u8 = 1;
/// Largest request or reply accepted (a snapshot chunk is at most [`SNAPSHOT_CHUNK_BYTES`]).
pub const MAX_RPC_BYTES: usize = 16 << 20;
/// Snapshot chunk size handed to openraft.
pub const SNAPSHOT_CHUNK_BYTES: u64 = 1 << 20;
/// Largest snapshot a mon accepts (offset + chunk), so a bad offset cannot make it allocate
/// without bound.
pub const MAX_SNAPSHOT_BYTES: u64 = 1 << 30;
/// Most entries accepted in one AppendEntries (openraft sends at most `max_payload_entries`).
pub const MAX_ENTRIES_PER_APPEND: usize = 4096;

/// One Raft RPC from another mon.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum RaftRpc {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
}

/// The answer to a [`RaftRpc`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum RaftRpcReply {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    /// The request was malformed (or this mon cannot serve it); the text says why.
    Rejected(String),
}

pub(crate) fn encode_rpc(rpc: &RaftRpc) -> Result<Vec<u8>, String> {
    let bytes = postcard::to_extend(rpc, vec![WIRE_VERSION]).map_err(|e| e.to_string())?;
    if bytes.len() > MAX_RPC_BYTES {
        return Err(format!("raft rpc of {} bytes exceeds {MAX_RPC_BYTES}", bytes.len()));
    }
    Ok(bytes)
}

pub(crate) fn encode_reply(reply: &RaftRpcReply) -> Vec<u8> {
    match postcard::to_extend(reply, vec![WIRE_VERSION]) {
        Ok(bytes) => bytes,
        Err(e) => {
            let rejected = RaftRpcReply::Rejected(format!("cannot encode reply: {e}"));
            // A reply of just the version byte fails to decode at the caller: still an error.
            postcard::to_extend(&rejected, vec![WIRE_VERSION]).unwrap_or_else(|_| vec![WIRE_VERSION])
        }
    }
}

fn strip_version<'a>(bytes: &'a [u8], what: &str) -> Result<&'a [u8], String> {
    if bytes.len() > MAX_RPC_BYTES {
        return Err(format!("{what} of {} bytes exceeds {MAX_RPC_BYTES}", bytes.len()));
    }
    match bytes.split_first() {
        Some((&WIRE_VERSION, body)) => Ok(body),
        Some((v, _)) => Err(format!("{what}: unsupported version {v}")),
        None => Err(format!("{what}: empty")),
    }
}

pub(crate) fn decode_reply(bytes: &[u8]) -> Result<RaftRpcReply, String> {
    let body = strip_version(bytes, "raft reply")?;
    postcard::from_bytes(body).map_err(|e| format!("raft reply: {e}"))
}

/// Decodes and sanity-checks a request.
pub(crate) fn decode_rpc(bytes: &[u8]) -> Result<RaftRpc, String> {
    let body = strip_version(bytes, "raft rpc")?;
    let rpc: RaftRpc = postcard::from_bytes(body).map_err(|e| format!("raft rpc: {e}"))?;
    validate(&rpc)?;
    Ok(rpc)
}

fn validate(rpc: &RaftRpc) -> Result<(), String> {
    match rpc {
        RaftRpc::AppendEntries(req) => {
            if req.entries.len() > MAX_ENTRIES_PER_APPEND {
                return Err(format!("append entries: {} entries", req.entries.len()));
            }
            let term = req.vote.leader_id().term;
            let first = req.prev_log_id.next_index();
            for (expect, entry) in (first..).zip(req.entries.iter()) {
                if entry.log_id.index != expect {
                    return Err(format!(
                        "append entries: entry index {} where {expect} expected",
                        entry.log_id.index
                    ));
                }
                if entry.log_id.leader_id.term > term {
                    return Err("append entries: entry from a term above the leader's".into());
                }
            }
            Ok(())
        }
        RaftRpc::Vote(_) => Ok(()),
        RaftRpc::InstallSnapshot(req) => {
            let end = req.offset.checked_add(req.data.len() as u64);
            match end {
                Some(end) if end <= MAX_SNAPSHOT_BYTES => Ok(()),
                _ => Err(format!("install snapshot: chunk at offset {} too far", req.offset)),
            }
        }
    }
}
