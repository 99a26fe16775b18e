//! Messages. Every frame payload is one [`Envelope`]; requests and responses are both
//! [`Message`]s. Adding a variant at the end keeps old encodings valid; changing one needs a new
//! frame version.

use bytes::Bytes;
use cairn_types::stats::{OsdStat, PgStat};
use cairn_types::{ClusterMap, Epoch, Error, ObjectId, OsdId, PgId, PgInterval, Version};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    pub tid: u64,
    pub msg: Message,
}

/// Identifies a client request across resends, so a retried write is applied once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ReqId {
    pub client: u64,
    pub tid: u64,
}

/// One step of a compound object operation (Ceph's `OSDOp`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ObjOp {
    Read {
        offset: u64,
        len: u64,
    },
    Stat,
    Create {
        exclusive: bool,
    },
    Write {
        offset: u64,
        data: Bytes,
    },
    WriteFull {
        data: Bytes,
    },
    Append {
        data: Bytes,
    },
    Truncate {
        size: u64,
    },
    Zero {
        offset: u64,
        len: u64,
    },
    Remove,
    GetXattr {
        name: String,
    },
    GetXattrs,
    SetXattr {
        name: String,
        value: Bytes,
    },
    RmXattr {
        name: String,
    },
    OmapGetHeader,
    OmapSetHeader {
        header: Bytes,
    },
    OmapGetVals {
        start_after: String,
        prefix: String,
        max: u32,
    },
    OmapGetKeys {
        start_after: String,
        max: u32,
    },
    OmapGetValsByKeys {
        keys: Vec<String>,
    },
    OmapSet {
        entries: Vec<(String, Bytes)>,
    },
    OmapRmKeys {
        keys: Vec<String>,
    },
    OmapClear,
    /// The object's clones and head with their versions (`OpOut::Snaps`).
    ListSnaps,
    /// Makes the head's data what it was at snapshot `snap` (removes it if it did not exist).
    Rollback {
        snap: u64,
    },
    /// Runs an object-class method on the OSD, atomically with the rest of the op.
    Call(crate::cls::ClsCall),
    /// Drops clones that only removed snapshots needed (OSD-internal; harmless from a client).
    SnapTrim,
}

impl ObjOp {
    /// Whether the op changes the object (then the whole request is replicated).
    pub fn is_write(&self) -> bool {
        if let ObjOp::Call(call) = self {
            return call.is_write();
        }
        !matches!(
            self,
            ObjOp::Read { .. }
                | ObjOp::ListSnaps
                | ObjOp::Stat
                | ObjOp::GetXattr { .. }
                | ObjOp::GetXattrs
                | ObjOp::OmapGetHeader
                | ObjOp::OmapGetVals { .. }
                | ObjOp::OmapGetKeys { .. }
                | ObjOp::OmapGetValsByKeys { .. }
        )
    }
}

/// What one [`ObjOp`] returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OpOut {
    None,
    Data(Bytes),
    Stat { size: u64, mtime_ns: u64 },
    Pairs { entries: Vec<(String, Bytes)>, more: bool },
    Keys { keys: Vec<String>, more: bool },
    Snaps(crate::SnapList),
}

/// A change to one object as the primary decided it; replicas apply exactly this.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Mutation {
    Touch,
    Write {
        offset: u64,
        data: Bytes,
    },
    Zero {
        offset: u64,
        len: u64,
    },
    Truncate {
        size: u64,
    },
    Remove,
    SetXattr {
        name: String,
        value: Bytes,
    },
    RmXattr {
        name: String,
    },
    OmapSetHeader {
        header: Bytes,
    },
    OmapSet {
        entries: Vec<(String, Bytes)>,
    },
    OmapRm {
        keys: Vec<String>,
    },
    OmapClear,
    /// Preserve the head's data as clone `id` (before the rest of the write changes it).
    CloneHead {
        id: u64,
    },
    /// Make the head's data that of clone `id` (rollback).
    RestoreClone {
        id: u64,
    },
    RemoveClone {
        id: u64,
    },
}

/// The full state of one object, as pushed by recovery and backfill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectState {
    pub oid: ObjectId,
    pub version: Version,
    pub mtime_ns: u64,
    pub data: Bytes,
    pub xattrs: Vec<(String, Bytes)>,
    pub omap_header: Bytes,
    pub omap: Vec<(String, Bytes)>,
    /// The object's clones (their snapshot lists are in the head's snapset xattr).
    pub clones: Vec<CloneState>,
}

/// One clone's stored data, as recovery copies it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloneState {
    pub id: u64,
    pub version: Version,
    pub mtime_ns: u64,
    pub data: Bytes,
}

/// A replica's summary of one PG, answered during peering.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PgInfo {
    /// Newest log entry (default = empty PG).
    pub last_update: Version,
    /// Oldest version still covered by the log: entries after `log_tail` are all present.
    pub log_tail: Version,
    /// Interval the replica last completed recovery in (its data equals the log up to
    /// `last_update` for every object): `since` epoch of that interval.
    pub last_complete_since: Epoch,
    pub num_objects: u64,
}

/// One PG log entry as it travels between OSDs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub version: Version,
    pub oid: ObjectId,
    pub deleted: bool,
    pub reqid: ReqId,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Message {
    /// Generic failure reply.
    Error(Error),
    /// Generic success reply.
    Ok,

    // ---- monitors ----
    MonCommand {
        cmd: String,
    },
    MonCommandReply {
        rc: i32,
        status: String,
        data: Bytes,
    },
    /// Asks for the map if newer than `have_epoch`; waits up to `wait_ms` for one.
    GetMap {
        have_epoch: Epoch,
        wait_ms: u32,
    },
    Map(Box<ClusterMap>),
    /// A mon that is not the leader answers a leader-only request with this.
    NotLeader {
        leader_addr: Option<String>,
    },
    OsdBoot {
        id: OsdId,
        fsid: String,
        addr: String,
        host: String,
        capacity_bytes: u64,
    },
    OsdFailure {
        target: OsdId,
        reporter: OsdId,
        target_up_from: Epoch,
        immediate: bool,
    },
    PgActivated {
        pg: PgId,
        interval: PgInterval,
    },
    PgStats {
        osd: OsdId,
        epoch: Epoch,
        pgs: Vec<PgStat>,
        osd_stat: OsdStat,
    },
    Raft(Bytes),
    RaftReply(Bytes),

    // ---- client → primary OSD ----
    OsdOp {
        pg: PgId,
        oid: ObjectId,
        epoch: Epoch,
        reqid: ReqId,
        ops: Vec<ObjOp>,
        /// Writes: the writer's snapshot context.
        snapc: crate::SnapContext,
        /// Reads: the snapshot to read at (`None` = the head).
        snap: Option<u64>,
    },
    OsdOpReply {
        result: i32,
        message: String,
        outs: Vec<OpOut>,
        version: Version,
        epoch: Epoch,
    },
    PgList {
        pg: PgId,
        epoch: Epoch,
        start_after: Option<ObjectId>,
        max: u32,
    },
    PgListReply {
        objects: Vec<ObjectId>,
        done: bool,
    },

    // ---- OSD ↔ OSD ----
    Ping {
        from: OsdId,
        epoch: Epoch,
    },
    Pong {
        epoch: Epoch,
    },
    /// Primary → replica: apply one write of the current interval.
    /// `prev` is the version the primary wrote just before this one: a replica whose log does
    /// not end there refuses (it missed something) and the primary peers again.
    RepOp {
        pg: PgId,
        since: Epoch,
        prev: Version,
        entry: LogEntry,
        mtime_ns: u64,
        mutations: Vec<Mutation>,
    },
    /// Primary → member during peering: report your PG info and log after `log_after`.
    PgQuery {
        pg: PgId,
        epoch: Epoch,
        log_after: Version,
    },
    PgQueryReply {
        info: PgInfo,
        log: Vec<LogEntry>,
        objects: Option<Vec<(ObjectId, Version)>>,
    },
    /// Primary → member: list all objects with versions (backfill).
    PgScan {
        pg: PgId,
        epoch: Epoch,
        start_after: Option<ObjectId>,
        max: u32,
    },
    PgScanReply {
        objects: Vec<(ObjectId, Version)>,
        done: bool,
    },
    /// Member → primary: send me this object (primary pulls for itself from a peer too).
    PgPull {
        pg: PgId,
        epoch: Epoch,
        oid: ObjectId,
    },
    PgPullReply {
        state: Option<ObjectState>,
    },
    /// Primary → member: install these objects (None = delete), then these log entries.
    PgPush {
        pg: PgId,
        since: Epoch,
        objects: Vec<(ObjectId, Option<ObjectState>)>,
    },
    /// Primary → member: your log and info now equal the authoritative ones; drop entries
    /// after `rollback_after` that the primary does not have, then append `log`.
    PgActivate {
        pg: PgId,
        since: Epoch,
        rollback_after: Version,
        log: Vec<LogEntry>,
        log_tail: Version,
    },
    /// Any daemon: an admin command (`pg digest 1.0`, `status`), answered as JSON.
    Admin {
        command: String,
    },
    AdminReply {
        json: String,
    },

    // ---- background backfill (docs/replication.md, "Backfill in the background") ----
    /// Primary of interval `since` → mon leader: keep `acting` serving `pg` (its last active
    /// set) while the members of its up set are backfilled. Refused if `since` is not current.
    PgTempRequest {
        pg: PgId,
        since: Epoch,
        acting: Vec<OsdId>,
    },
    /// Primary of interval `since` → mon leader: backfill of `up` is complete; make it acting.
    PgTempClearRequest {
        pg: PgId,
        since: Epoch,
        up: Vec<OsdId>,
    },
    /// Primary → backfill target at the end of backfill: install this log as yours (your
    /// objects are at least as new as it says), without becoming an active member.
    PgBackfillLog {
        pg: PgId,
        since: Epoch,
        log: Vec<LogEntry>,
        log_tail: Version,
    },
    /// Member peering interval `since` → that PG's previous primary: answer `Ok` once you serve
    /// no reads of `pg` in an interval older than `since` (so the member need not outwait the
    /// read lease it granted you).
    PgReadsStopped {
        pg: PgId,
        since: Epoch,
    },

    // ---- authentication (docs/auth.md, "On the wire"): the first frames of every connection ----
    /// Server → client, first frame of a connection: which service this is, the methods it
    /// accepts from clients (`auth_service_required`) and from daemons (`auth_cluster_required`),
    /// and, when it accepts cephx, an encoded `cairn_auth::ServiceHello`.
    AuthServerHello {
        service: String,
        client_methods: Vec<crate::auth::AuthMethod>,
        daemon_methods: Vec<crate::auth::AuthMethod>,
        service_hello: Bytes,
    },
    /// Client → server: no authentication; `entity` is only a claim.
    AuthNone {
        entity: String,
    },
    /// Client → mon: cephx login, an encoded `cairn_auth::Hello`.
    AuthLogin {
        hello: Bytes,
    },
    /// Mon → client: an encoded `cairn_auth::Challenge`.
    AuthChallenge {
        challenge: Bytes,
    },
    /// Client → mon: an encoded `cairn_auth::ClientProof`.
    AuthProof {
        proof: Bytes,
    },
    /// Mon → client: an encoded `cairn_auth::AuthReply` (the tickets); the connection is
    /// authenticated.
    AuthTickets {
        reply: Bytes,
    },
    /// Client → service: an encoded `cairn_auth::Authorizer` (a ticket for this service).
    AuthAuthorize {
        authorizer: Bytes,
    },
    /// Service → client: an encoded `cairn_auth::AuthorizerReply`; the connection is
    /// authenticated.
    AuthAuthorized {
        reply: Bytes,
    },
    /// Daemon → any mon: the auth state daemons of its service need, if newer than
    /// `have_version` (waits up to `wait_ms`). The reply's keys are sealed for the asking
    /// daemon with `nonce`.
    AuthWatch {
        have_version: u64,
        wait_ms: u32,
        nonce: [u8; 16],
    },
    /// Mon → daemon: the service's ticket keys (sealed with `cairn_auth::seal_service_keys`;
    /// empty without cephx) and every entity's caps for that service.
    AuthView {
        version: u64,
        sealed_keys: Bytes,
        caps: Vec<(String, String)>,
    },
    /// A mon command with input data (Ceph's `inbuf`: `auth import -i FILE`).
    MonCommandWithInput {
        cmd: String,
        inbuf: Bytes,
    },
    /// Server → client, first frame of a connection instead of `AuthServerHello` when the server
    /// accepts an on-wire mode other than `crc` (docs/auth.md, "On-wire encryption"): the same
    /// fields, plus the modes it accepts from clients (`ms_service_mode`) and from daemons
    /// (`ms_cluster_mode`; at a mon `ms_mon_service_mode` / `ms_mon_cluster_mode`).
    AuthServerHelloModes {
        service: String,
        client_methods: Vec<crate::auth::AuthMethod>,
        daemon_methods: Vec<crate::auth::AuthMethod>,
        service_hello: Bytes,
        client_modes: Vec<crate::auth::ConnMode>,
        daemon_modes: Vec<crate::auth::ConnMode>,
    },
    /// Client → server, right after the client's last handshake message (`AuthNone`,
    /// `AuthProof` or `AuthAuthorize`) when the server sent `AuthServerHelloModes`: the mode the
    /// client chose and, with cephx, a MAC under the connection key over everything both ends
    /// negotiated, so nothing in between can steer the choice.
    AuthMode {
        mode: crate::auth::ConnMode,
        mac: Bytes,
    },
}

pub fn encode_envelope(env: &Envelope) -> Result<Vec<u8>, Error> {
    postcard::to_allocvec(env).map_err(|e| Error::einval(format!("encoding message: {e}")))
}

pub fn decode_envelope(payload: &[u8]) -> Result<Envelope, Error> {
    postcard::from_bytes(payload).map_err(|e| Error::einval(format!("malformed message: {e}")))
}
