//! The monitors: `mon dump`, `quorum_status`, `mon_status`. Ranks are positions in the monmap
//! ordered by Raft node id; the Raft term stands in for Ceph's election epoch.

use super::args::Args;
use super::format::{legacy_addr, render, utime, v2_addr, Format};
use super::{reply, CommandContext, Plan};
use cairn_types::{MonInfo, Result};
use serde_json::{json, Value};

/// Cairn speaks Pacific's monitor dialect.
const MIN_MON_RELEASE: u32 = 16;
const MIN_MON_RELEASE_NAME: &str = "pacific";
/// The monmap's epoch: Cairn's membership is fixed at bootstrap.
const MONMAP_EPOCH: u64 = 1;

/// The monmap with the quorum laid over it.
pub(super) struct MonView<'a> {
    mons: Vec<&'a MonInfo>,
    ctx: &'a CommandContext<'a>,
}

impl<'a> MonView<'a> {
    pub fn new(ctx: &'a CommandContext<'a>) -> Self {
        let source = if ctx.map.mons.is_empty() { &ctx.quorum.members } else { &ctx.map.mons };
        let mut mons: Vec<&MonInfo> = source.iter().collect();
        mons.sort_by_key(|m| m.node_id);
        MonView { mons, ctx }
    }

    pub fn len(&self) -> usize {
        self.mons.len()
    }

    pub fn ranks(&self) -> impl Iterator<Item = (usize, &'a MonInfo)> + '_ {
        self.mons.iter().copied().enumerate()
    }

    pub fn in_quorum(&self, node_id: u64) -> bool {
        self.ctx.quorum.in_quorum.contains(&node_id)
    }

    pub fn quorum_ranks(&self) -> Vec<usize> {
        self.ranks().filter(|(_, m)| self.in_quorum(m.node_id)).map(|(r, _)| r).collect()
    }

    pub fn quorum_names(&self) -> Vec<String> {
        self.ranks().filter(|(_, m)| self.in_quorum(m.node_id)).map(|(_, m)| m.name.clone()).collect()
    }

    fn rank_of(&self, node_id: u64) -> Option<(usize, &'a MonInfo)> {
        self.ranks().find(|(_, m)| m.node_id == node_id)
    }

    fn leader_name(&self) -> String {
        let leader = self.ctx.quorum.leader.and_then(|id| self.rank_of(id));
        leader.map(|(_, m)| m.name.clone()).unwrap_or_default()
    }

    /// Ceph's `MonMap::dump`.
    pub fn monmap_json(&self) -> Value {
        let created = utime(self.ctx.map.created_secs);
        let mons: Vec<Value> = self.ranks().map(|(rank, m)| mon_json(rank, m)).collect();
        json!({
            "epoch": MONMAP_EPOCH,
            "fsid": self.ctx.map.fsid,
            "modified": created,
            "created": created,
            "min_mon_release": MIN_MON_RELEASE,
            "min_mon_release_name": MIN_MON_RELEASE_NAME,
            "election_strategy": 1,
            "disallowed_leaders: ": "",
            "stretch_mode": false,
            "tiebreaker_mon": "",
            "features": {"persistent": [], "optional": []},
            "mons": mons,
        })
    }

    /// Ceph's `MonMap::print`.
    fn monmap_plain(&self) -> String {
        let created = utime(self.ctx.map.created_secs);
        let mut out = format!(
            "epoch {MONMAP_EPOCH}\nfsid {}\nlast_changed {created}\ncreated {created}\nmin_mon_release {MIN_MON_RELEASE} ({MIN_MON_RELEASE_NAME})\nelection_strategy: 1\n",
            self.ctx.map.fsid
        );
        for (rank, m) in self.ranks() {
            out.push_str(&format!("{rank}: {} mon.{}\n", v2_addr(&m.addr), m.name));
        }
        out
    }
}

fn mon_json(rank: usize, m: &MonInfo) -> Value {
    let (host_port, nonce) = m.addr.split_once('/').unwrap_or((&m.addr, "0"));
    let nonce: u64 = nonce.parse().unwrap_or(0);
    json!({
        "rank": rank,
        "name": m.name,
        "public_addrs": {"addrvec": [{"type": "v2", "addr": host_port, "nonce": nonce}]},
        "addr": legacy_addr(&m.addr),
        "public_addr": legacy_addr(&m.addr),
        "priority": 0,
        "weight": 0,
        "crush_location": "{}",
    })
}

/// `mon dump`.
pub(super) fn dump(args: &Args, ctx: &CommandContext) -> Result<Plan> {
    let view = MonView::new(ctx);
    let data = render(args.format(), || view.monmap_json(), || view.monmap_plain());
    reply(&format!("dumped monmap epoch {MONMAP_EPOCH}"), data)
}

/// `quorum_status` (JSON even when plain is asked for, as in Ceph).
pub(super) fn quorum_status(args: &Args, ctx: &CommandContext) -> Result<Plan> {
    let view = MonView::new(ctx);
    let v = json!({
        "election_epoch": ctx.quorum.term,
        "quorum": view.quorum_ranks(),
        "quorum_names": view.quorum_names(),
        "quorum_leader_name": view.leader_name(),
        "quorum_age": 0,
        "monmap": view.monmap_json(),
    });
    let format = args.format_or(Format::JsonPretty);
    reply("", super::format::json_bytes(&v, format))
}

/// `mon_status`: this mon's own view (JSON even when plain is asked for, as in Ceph).
pub(super) fn mon_status(args: &Args, ctx: &CommandContext) -> Result<Plan> {
    let view = MonView::new(ctx);
    let q = ctx.quorum;
    let (rank, name) =
        view.rank_of(q.self_id).map_or((-1, String::new()), |(r, m)| (r as i64, m.name.clone()));
    let state = if q.leader == Some(q.self_id) {
        "leader"
    } else if view.in_quorum(q.self_id) {
        "peon"
    } else {
        "electing"
    };
    let v = json!({
        "name": name,
        "rank": rank,
        "state": state,
        "election_epoch": q.term,
        "quorum": view.quorum_ranks(),
        "quorum_age": 0,
        "features": {},
        "outside_quorum": [],
        "extra_probe_peers": [],
        "sync_provider": [],
        "monmap": view.monmap_json(),
        "feature_map": {},
        "stretch_mode": false,
    });
    let format = args.format_or(Format::JsonPretty);
    reply("", super::format::json_bytes(&v, format))
}
