//! Monitor commands in Ceph's JSON dialect (`{"prefix": "osd pool create", "pool": "volumes",
//! "pg_num": 64, "format": "json"}`), the path `rados_mon_command` and the CLI share.
//!
//! [`plan`] checks a command against the current map and either answers it at once (reads:
//! `status`, `health`, `df`, `osd tree`, ...) or returns the [`MapCommand`] the leader proposes
//! through Raft (writes: `osd pool create`, `osd out`, ...). The status string after a proposal
//! commits is `ClusterMap::apply`'s message, passed through [`applied_status`].
//!
//! Output follows Ceph 16 (Pacific): plain text shaped like the `ceph` tool's, JSON with Ceph's
//! field names, errors with Ceph's errno and wording.

mod args;
pub mod auth;
mod df;
mod format;
mod health;
mod mon;
mod osd;
mod pg;
mod pool;
mod status;
#[cfg(test)]
mod tests;

pub use format::Format;
pub use health::{health_checks, overall as overall_health, HealthCheck, HealthChecks, Severity};

use args::Args;
use cairn_types::stats::{OsdStat, PgStat};
use cairn_types::{ClusterMap, Error, MapCommand, MonInfo, OsdId, PgId, Result};
use std::collections::BTreeMap;

/// The monitor quorum as this mon sees it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QuorumInfo {
    /// Raft node id of the leader, if one is known.
    pub leader: Option<u64>,
    /// Raft term (shown as Ceph's election epoch).
    pub term: u64,
    pub members: Vec<MonInfo>,
    /// Node ids of the mons in quorum.
    pub in_quorum: Vec<u64>,
    /// This mon's node id.
    pub self_id: u64,
}

/// Everything a command may read.
#[derive(Debug, Clone, Copy)]
pub struct CommandContext<'a> {
    pub map: &'a ClusterMap,
    pub pg_stats: &'a BTreeMap<PgId, PgStat>,
    pub osd_stats: &'a BTreeMap<OsdId, OsdStat>,
    pub quorum: &'a QuorumInfo,
    pub now_secs: u64,
}

/// A command's answer: Ceph's `outs` (status, printed to stderr by the CLI) and `outbl` (data,
/// printed to stdout).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandOutput {
    pub status: String,
    pub data: Vec<u8>,
}

/// What to do with a command.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Answer now, with return code 0.
    Reply(CommandOutput),
    /// Propose this change; answer with [`applied_status`] of what `apply` returns.
    Propose(MapCommand),
}

pub(crate) fn reply(status: &str, data: Vec<u8>) -> Result<Plan> {
    Ok(Plan::Reply(CommandOutput { status: status.to_string(), data }))
}

/// Validates a JSON command and either answers it from the context (reads) or returns the
/// MapCommand to propose (writes). Errors carry Ceph's errno and wording.
pub fn plan(cmd: &serde_json::Value, ctx: &CommandContext) -> Result<Plan, Error> {
    let args = Args::new(cmd)?;
    let prefix = args.prefix()?;
    match prefix {
        "status" => status::status(&args, ctx),
        "health" => health::health(&args, ctx),
        "df" => df::df(&args, ctx),
        "mon dump" => mon::dump(&args, ctx),
        "quorum_status" => mon::quorum_status(&args, ctx),
        "mon_status" => mon::mon_status(&args, ctx),
        "osd tree" => osd::tree_cmd(&args, ctx),
        "osd dump" => osd::dump(&args, ctx),
        "osd stat" => osd::stat(&args, ctx),
        "osd down" => osd::mark("down", &args, ctx),
        "osd out" => osd::mark("out", &args, ctx),
        "osd in" => osd::mark("in", &args, ctx),
        "osd lspools" => pool::lspools(&args, ctx),
        "osd pool ls" => pool::ls(&args, ctx),
        "osd pool create" => pool::create(&args, ctx),
        "osd pool rm" | "osd pool delete" => pool::delete(&args, ctx),
        "osd pool set" => pool::set(&args, ctx),
        "osd pool get" => pool::get(&args, ctx),
        "osd pool application enable" => pool::app_enable(&args, ctx),
        "osd pool application get" => pool::app_get(&args, ctx),
        "osd pool get-quota" => pool::get_quota(&args, ctx),
        "osd pool set-quota" => pool::set_quota(&args, ctx),
        "osd pool selfmanaged-snap create" => pool::selfmanaged_snap_create(&args, ctx),
        "osd pool selfmanaged-snap rm" => pool::selfmanaged_snap_rm(&args, ctx),
        "pg stat" => pg::stat(&args, ctx),
        "pg dump" => pg::dump(&args, ctx),
        other => Err(Error::einval(format!("unrecognized command '{other}'"))),
    }
}

/// Whether a command only reads (its caps need `r`; every other command needs `rw`, as Ceph's
/// command table says). Unknown commands count as changing ones.
pub fn is_read_only(prefix: &str) -> bool {
    auth::is_read_only(prefix)
        || matches!(
            prefix,
            "status"
                | "health"
                | "df"
                | "mon dump"
                | "quorum_status"
                | "mon_status"
                | "osd tree"
                | "osd dump"
                | "osd stat"
                | "osd lspools"
                | "osd pool ls"
                | "osd pool get"
                | "osd pool application get"
                | "osd pool get-quota"
                | "pg stat"
                | "pg dump"
        )
}

/// The data to send back once a proposed command has been applied (empty for most).
pub fn applied_data(cmd: &MapCommand, applied: &str) -> Vec<u8> {
    match cmd {
        MapCommand::PoolSnapCreate { .. } => applied.as_bytes().to_vec(),
        _ => Vec::new(),
    }
}

/// The status to send back once a proposed command has been applied: `apply`'s message, except
/// where Ceph words it differently (`marked down osd.1. marked down osd.2. `).
pub fn applied_status(cmd: &MapCommand, applied: &str) -> String {
    match cmd {
        MapCommand::OsdDown { ids, .. } => osd::marked_status("down", ids),
        MapCommand::OsdOut { ids, .. } => osd::marked_status("out", ids),
        MapCommand::OsdIn { ids, .. } => osd::marked_status("in", ids),
        MapCommand::PoolSnapCreate { .. } => format!("created snap {applied}"),
        _ => applied.to_string(),
    }
}
