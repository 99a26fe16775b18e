//! Health checks with Ceph's codes and wording (`OSD_DOWN`, `MON_DOWN`, `PG_AVAILABILITY`,
//! `PG_DEGRADED`, `POOL_APP_NOT_ENABLED`, `POOL_FULL`, ...), and the `health` command.

use super::args::Args;
use super::df::{FULL_RATIO, NEARFULL_RATIO};
use super::format::{bytes, id_list, render, v2_addr};
use super::mon::MonView;
use super::pg::{pool_sums, totals, views, PgView, PoolSums};
use super::{reply, CommandContext, Plan};
use cairn_types::{Pool, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Most detail lines kept per check (Ceph's `mon_health_max_detail`).
const MAX_DETAIL_LINES: usize = 50;
/// Fraction of a pool quota at which `POOL_NEAR_FULL` is raised.
const QUOTA_NEARFULL_RATIO: f64 = 0.8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Ok,
    Warn,
    Err,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Ok => "HEALTH_OK",
            Severity::Warn => "HEALTH_WARN",
            Severity::Err => "HEALTH_ERR",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Severity::Ok => "OK",
            Severity::Warn => "WRN",
            Severity::Err => "ERR",
        }
    }
}

/// One raised check: Ceph's `health_check_t`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub severity: Severity,
    pub summary: String,
    pub count: u64,
    pub detail: Vec<String>,
}

/// Raised checks by code, in code order (as Ceph prints them).
pub type HealthChecks = BTreeMap<&'static str, HealthCheck>;

impl HealthCheck {
    fn new(severity: Severity, summary: String, count: usize, detail: Vec<String>) -> Self {
        HealthCheck { severity, summary, count: count as u64, detail }
    }

    /// A warning counting one thing per detail line.
    fn warn(summary: String, detail: Vec<String>) -> Self {
        let count = detail.len();
        HealthCheck::new(Severity::Warn, summary, count, detail)
    }

    fn cap_detail(&mut self) {
        if self.detail.len() > MAX_DETAIL_LINES {
            let more = self.detail.len() - MAX_DETAIL_LINES;
            self.detail.truncate(MAX_DETAIL_LINES);
            self.detail.push(format!("... and {more} more"));
        }
    }
}

/// Every check that is currently raised.
pub fn health_checks(ctx: &CommandContext) -> HealthChecks {
    let mut checks = HealthChecks::new();
    mon_checks(ctx, &mut checks);
    osd_down_checks(ctx, &mut checks);
    subtree_down_checks(ctx, &mut checks);
    osd_usage_checks(ctx, &mut checks);
    let views = views(ctx);
    pg_checks(&views, &mut checks);
    pool_checks(ctx, &views, &mut checks);
    checks.values_mut().for_each(HealthCheck::cap_detail);
    checks
}

/// The worst severity raised, `HEALTH_OK` when none.
pub fn overall(checks: &HealthChecks) -> Severity {
    checks.values().map(|c| c.severity).max().unwrap_or(Severity::Ok)
}

fn mon_checks(ctx: &CommandContext, checks: &mut HealthChecks) {
    let mons = MonView::new(ctx);
    let down: Vec<String> = mons
        .ranks()
        .filter(|(_, m)| !mons.in_quorum(m.node_id))
        .map(|(rank, m)| {
            let addr = v2_addr(&m.addr);
            format!("mon.{} (rank {rank}) addr {addr} is down (out of quorum)", m.name)
        })
        .collect();
    if !down.is_empty() {
        let quorum = mons.quorum_names().join(",");
        let summary = format!("{}/{} mons down, quorum {quorum}", down.len(), mons.len());
        checks.insert("MON_DOWN", HealthCheck::warn(summary, down));
    }
}

/// `OSD_DOWN` (OSDs down but still in) and `TOO_FEW_OSDS`.
fn osd_down_checks(ctx: &CommandContext, checks: &mut HealthChecks) {
    let osds = &ctx.map.osds;
    let down: Vec<String> = osds
        .values()
        .filter(|o| !o.up && o.in_cluster)
        .map(|o| format!("osd.{} (root=default,host={}) is down", o.id, o.host))
        .collect();
    if !down.is_empty() {
        let summary = format!("{} osds down", down.len());
        checks.insert("OSD_DOWN", HealthCheck::warn(summary, down));
    }
    let wanted = ctx.map.settings.default_size as usize;
    if osds.len() < wanted {
        let summary = format!("OSD count {} < osd_pool_default_size {wanted}", osds.len());
        let check = HealthCheck::new(Severity::Warn, summary, wanted - osds.len(), vec![]);
        checks.insert("TOO_FEW_OSDS", check);
    }
}

/// `OSD_HOST_DOWN` / `OSD_ROOT_DOWN`: every OSD of a host (of the root) is down.
fn subtree_down_checks(ctx: &CommandContext, checks: &mut HealthChecks) {
    let osds = &ctx.map.osds;
    let mut hosts: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for o in osds.values().filter(|o| !o.host.is_empty()) {
        let (total, down) = hosts.entry(o.host.as_str()).or_default();
        *total += 1;
        *down += usize::from(!o.up);
    }
    let down_hosts: Vec<(&str, usize)> =
        hosts.into_iter().filter(|(_, (n, d))| n == d).map(|(h, (n, _))| (h, n)).collect();
    if !down_hosts.is_empty() {
        let n_osds: usize = down_hosts.iter().map(|h| h.1).sum();
        let plural = if down_hosts.len() > 1 { "s" } else { "" };
        let summary = format!("{} host{plural} ({n_osds} osds) down", down_hosts.len());
        let detail = down_hosts
            .iter()
            .rev()
            .map(|(h, n)| format!("host {h} (root=default) ({n} osds) is down"))
            .collect();
        checks.insert("OSD_HOST_DOWN", HealthCheck::warn(summary, detail));
    }
    if !osds.is_empty() && osds.values().all(|o| !o.up) {
        let n = osds.len();
        let detail = vec![format!("root default ({n} osds) is down")];
        checks.insert("OSD_ROOT_DOWN", HealthCheck::warn(format!("1 root ({n} osds) down"), detail));
    }
}

fn osd_usage_checks(ctx: &CommandContext, checks: &mut HealthChecks) {
    let (mut full, mut near) = (Vec::new(), Vec::new());
    for s in ctx.osd_stats.values() {
        if s.total_bytes == 0 || !ctx.map.osds.get(&s.id).is_some_and(|o| o.up) {
            continue;
        }
        let ratio = s.used_bytes as f64 / s.total_bytes as f64;
        if ratio >= FULL_RATIO {
            full.push(format!("osd.{} is full", s.id));
        } else if ratio >= NEARFULL_RATIO {
            near.push(format!("osd.{} is near full", s.id));
        }
    }
    if !full.is_empty() {
        let summary = format!("{} full osd(s)", full.len());
        let n = full.len();
        checks.insert("OSD_FULL", HealthCheck::new(Severity::Err, summary, n, full));
    }
    if !near.is_empty() {
        let summary = format!("{} nearfull osd(s)", near.len());
        checks.insert("OSD_NEARFULL", HealthCheck::warn(summary, near));
    }
}

/// Which state words raise which check, in the order Ceph lists them (by state bit).
const PG_PROBLEMS: [(&str, &str); 8] = [
    ("inactive", "PG_AVAILABILITY"),
    ("down", "PG_AVAILABILITY"),
    ("degraded", "PG_DEGRADED"),
    ("inconsistent", "PG_DAMAGED"),
    ("peering", "PG_AVAILABILITY"),
    ("incomplete", "PG_AVAILABILITY"),
    ("stale", "PG_AVAILABILITY"),
    ("undersized", "PG_DEGRADED"),
];

fn pg_has_problem(v: &PgView, word: &str) -> bool {
    match word {
        "inactive" => !v.has("active"),
        w => v.has(w),
    }
}

fn pg_checks(views: &[PgView], checks: &mut HealthChecks) {
    for (code, severity, lead) in [
        ("PG_AVAILABILITY", Severity::Warn, "Reduced data availability: "),
        ("PG_DEGRADED", Severity::Warn, "Degraded data redundancy: "),
        ("PG_DAMAGED", Severity::Err, "Possible data damage: "),
    ] {
        let problems: Vec<&str> = PG_PROBLEMS.iter().filter(|(_, c)| *c == code).map(|(w, _)| *w).collect();
        let hit: Vec<&PgView> =
            views.iter().filter(|v| problems.iter().any(|w| pg_has_problem(v, w))).collect();
        if hit.is_empty() {
            continue;
        }
        let mut parts = Vec::new();
        if code == "PG_DEGRADED" {
            parts.extend(totals(views).degraded_line());
        }
        for word in problems {
            let n = hit.iter().filter(|v| pg_has_problem(v, word)).count();
            if n > 0 {
                parts.push(format!("{n} pg{} {word}", if n > 1 { "s" } else { "" }));
            }
        }
        let detail = hit
            .iter()
            .map(|v| format!("pg {} is {}, acting {}", v.pg, v.state, id_list(&v.acting)))
            .collect();
        let summary = format!("{lead}{}", parts.join(", "));
        checks.insert(code, HealthCheck::new(severity, summary, hit.len(), detail));
    }
}

/// What a pool's quotas say: full, near full (the detail line), or fine.
fn quota_state(pool: &Pool, sums: &PoolSums) -> (bool, Option<String>) {
    let (objs, max_objs) = (sums.objects, pool.quota_max_objects);
    let (used, max_bytes) = (sums.bytes, pool.quota_max_bytes);
    let over = (max_objs > 0 && objs >= max_objs) || (max_bytes > 0 && used >= max_bytes);
    if pool.full || over {
        return (true, None);
    }
    let near = |v: u64, max: u64| max > 0 && v as f64 >= max as f64 * QUOTA_NEARFULL_RATIO;
    let line = if near(objs, max_objs) {
        Some(format!("pool '{}' has {objs} objects (max {max_objs})", pool.name))
    } else if near(used, max_bytes) {
        Some(format!("pool '{}' has {} (max {})", pool.name, bytes(used), bytes(max_bytes)))
    } else {
        None
    };
    (false, line)
}

/// `POOL_APP_NOT_ENABLED`, `POOL_FULL`, `POOL_NEAR_FULL`.
fn pool_checks(ctx: &CommandContext, views: &[PgView], checks: &mut HealthChecks) {
    let sums = pool_sums(views);
    let (mut no_app, mut full, mut near) = (Vec::new(), Vec::new(), Vec::new());
    for pool in ctx.map.pools.values() {
        if pool.applications.is_empty() {
            no_app.push(format!("application not enabled on pool '{}'", pool.name));
        }
        match quota_state(pool, &sums.get(&pool.id).copied().unwrap_or_default()) {
            (true, _) => full.push(format!("pool '{}' is full (running out of quota)", pool.name)),
            (false, Some(line)) => near.push(line),
            (false, None) => {}
        }
    }
    if !no_app.is_empty() {
        let n = no_app.len();
        let summary = format!("application not enabled on {n} pool(s)");
        no_app.push(APP_TIP.into());
        let check = HealthCheck::new(Severity::Warn, summary, n, no_app);
        checks.insert("POOL_APP_NOT_ENABLED", check);
    }
    if !full.is_empty() {
        let summary = format!("{} pool(s) full", full.len());
        checks.insert("POOL_FULL", HealthCheck::warn(summary, full));
    }
    if !near.is_empty() {
        let summary = format!("{} pools nearfull", near.len());
        checks.insert("POOL_NEAR_FULL", HealthCheck::warn(summary, near));
    }
}

const APP_TIP: &str = "use 'cairn osd pool application enable <pool-name> <app-name>', where <app-name> is 'cephfs', 'rbd', 'rgw', or freeform for custom applications.";

/// Ceph's `health` JSON object: status, checks (with details when asked), mutes.
pub(super) fn health_json(checks: &HealthChecks, detail: bool) -> Value {
    let mut map = serde_json::Map::new();
    for (code, c) in checks {
        let mut v = json!({
            "severity": c.severity.name(),
            "summary": {"message": c.summary, "count": c.count},
            "muted": false,
        });
        if detail {
            let lines: Vec<Value> = c.detail.iter().map(|d| json!({"message": d})).collect();
            v["detail"] = json!(lines);
        }
        map.insert(code.to_string(), v);
    }
    json!({"status": overall(checks).name(), "checks": map, "mutes": []})
}

/// `HEALTH_WARN` followed by the summaries, joined with `sep`.
pub(super) fn one_line(checks: &HealthChecks, sep1: &str, sep2: &str) -> String {
    let summaries: Vec<&str> = checks.values().map(|c| c.summary.as_str()).collect();
    let mut out = overall(checks).name().to_string();
    if !summaries.is_empty() {
        out.push_str(sep1);
        out.push_str(&summaries.join(sep2));
    }
    out
}

fn detail_plain(checks: &HealthChecks) -> String {
    let mut out = String::new();
    for (code, c) in checks {
        out.push_str(&format!("[{}] {code}: {}\n", c.severity.short(), c.summary));
        for d in &c.detail {
            out.push_str(&format!("    {d}\n"));
        }
    }
    out
}

/// `health` and `health detail`.
pub(super) fn health(args: &Args, ctx: &CommandContext) -> Result<Plan> {
    let detail = args.choice_is("detail", "detail");
    let checks = health_checks(ctx);
    let data = render(
        args.format(),
        || health_json(&checks, detail),
        || {
            let mut out = one_line(&checks, " ", "; ") + "\n";
            if detail {
                out.push_str(&detail_plain(&checks));
            }
            out
        },
    );
    reply("", data)
}
