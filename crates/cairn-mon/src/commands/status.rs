//! `status` (`ceph -s`): cluster, services and data sections as Ceph 16 prints them.

use super::args::Args;
use super::df::{usage, Usage};
use super::format::{bytes, render, si};
use super::health::{health_checks, health_json, one_line, HealthChecks};
use super::mon::MonView;
use super::osd::{osd_counts, OsdCounts};
use super::pg::{totals, views, PgTotals};
use super::{reply, CommandContext, Plan};
use cairn_types::Result;
use serde_json::{json, Value};

/// Continuation indent of multi-line values (`health:` checks, `pgs:` states).
const HEALTH_INDENT: &str = "\n            ";
const PGS_INDENT: &str = "             ";

struct Status<'a> {
    ctx: &'a CommandContext<'a>,
    checks: HealthChecks,
    mons: MonView<'a>,
    osds: OsdCounts,
    pgs: PgTotals,
    usage: Usage,
}

pub(super) fn status(args: &Args, ctx: &CommandContext) -> Result<Plan> {
    let s = Status {
        ctx,
        checks: health_checks(ctx),
        mons: MonView::new(ctx),
        osds: osd_counts(ctx),
        pgs: totals(&views(ctx)),
        usage: usage(ctx),
    };
    reply("", render(args.format(), || s.json(), || s.plain()))
}

impl Status<'_> {
    fn plain(&self) -> String {
        let mut out = format!("  cluster:\n    id:     {}\n", self.ctx.map.fsid);
        out.push_str(&format!("    health: {}\n", one_line(&self.checks, HEALTH_INDENT, HEALTH_INDENT)));
        out.push_str(" \n  services:\n");
        let quorum = self.mons.quorum_names();
        out.push_str(&format!("    mon: {} daemons, quorum {}", self.mons.len(), quorum.join(",")));
        if quorum.len() != self.mons.len() {
            let out_of: Vec<String> = self
                .mons
                .ranks()
                .filter(|(_, m)| !self.mons.in_quorum(m.node_id))
                .map(|(_, m)| m.name.clone())
                .collect();
            out.push_str(&format!(", out of quorum: {}", out_of.join(", ")));
        }
        let o = &self.osds;
        out.push_str(&format!("\n    osd: {} osds: {} up, {} in", o.num, o.up, o.in_));
        if o.remapped > 0 {
            out.push_str(&format!("; {} remapped pgs", o.remapped));
        }
        out.push('\n');
        out.push_str(" \n  data:\n");
        out.push_str(&self.data_plain());
        out.push_str(" \n");
        out
    }

    fn data_plain(&self) -> String {
        let (p, u) = (&self.pgs, &self.usage);
        let mut out = format!("    pools:   {} pools, {} pgs\n", self.ctx.map.pools.len(), p.num_pgs);
        out.push_str(&format!("    objects: {} objects, {}\n", si(p.num_objects), bytes(p.num_bytes)));
        out.push_str(&format!(
            "    usage:   {} used, {} / {} avail\n",
            bytes(u.used),
            bytes(u.avail),
            bytes(u.total)
        ));
        out.push_str("    pgs:     ");
        let mut lines = Vec::new();
        if p.unknown > 0 {
            lines.push(format!("{:.3}% pgs unknown", 100.0 * p.unknown as f64 / p.num_pgs as f64));
        }
        let inactive = p.num_pgs - p.active - p.unknown;
        if inactive > 0 {
            lines.push(format!("{:.3}% pgs not active", 100.0 * inactive as f64 / p.num_pgs as f64));
        }
        lines.extend(p.degraded_line());
        lines.extend(p.misplaced_line());
        let states = p.states_by_count();
        let width = states.iter().map(|(_, n)| n.to_string().len()).max().unwrap_or(1);
        lines.extend(states.iter().map(|(s, n)| format!("{n:<width$} {s}")));
        out.push_str(&lines.join(&format!("\n{PGS_INDENT}")));
        out + "\n"
    }

    fn json(&self) -> Value {
        let (p, u, o) = (&self.pgs, &self.usage, &self.osds);
        let by_state: Vec<Value> =
            p.states_by_count().iter().map(|(s, n)| json!({"state_name": s, "count": n})).collect();
        let mut pgmap = serde_json::Map::new();
        pgmap.insert("pgs_by_state".into(), json!(by_state));
        pgmap.insert("num_pgs".into(), json!(p.num_pgs));
        pgmap.insert("num_pools".into(), json!(self.ctx.map.pools.len()));
        pgmap.insert("num_objects".into(), json!(p.num_objects));
        pgmap.insert("data_bytes".into(), json!(p.num_bytes));
        pgmap.insert("bytes_used".into(), json!(u.used));
        pgmap.insert("bytes_avail".into(), json!(u.avail));
        pgmap.insert("bytes_total".into(), json!(u.total));
        if p.unknown > 0 {
            pgmap.insert("unknown_pgs_ratio".into(), json!(p.unknown as f64 / p.num_pgs as f64));
        }
        p.degraded_json(&mut pgmap);
        p.misplaced_json(&mut pgmap);
        let health = health_json(&self.checks, false);
        json!({
            "fsid": self.ctx.map.fsid,
            "health": health,
            "election_epoch": self.ctx.quorum.term,
            "quorum": self.mons.quorum_ranks(),
            "quorum_names": self.mons.quorum_names(),
            "quorum_age": 0,
            "monmap": {"epoch": 1, "min_mon_release_name": "pacific", "num_mons": self.mons.len()},
            "osdmap": {
                "epoch": self.ctx.map.epoch,
                "num_osds": o.num,
                "num_up_osds": o.up,
                "osd_up_since": 0,
                "num_in_osds": o.in_,
                "osd_in_since": 0,
                "num_remapped_pgs": o.remapped,
            },
            "pgmap": pgmap,
            "fsmap": {"epoch": 1, "by_rank": [], "up:standby": 0},
            "mgrmap": {"available": true, "num_standbys": 0, "modules": [], "services": {}},
            "servicemap": {"epoch": 1, "modified": "0.000000", "services": {}},
            "progress_events": {},
        })
    }
}
