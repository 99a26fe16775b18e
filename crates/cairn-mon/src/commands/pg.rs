//! Placement groups as the monitor sees them: the map's acting sets joined with the states their
//! primaries report (`unknown` until a report arrives, `stale+` once the reporting primary is
//! down, as in Ceph); `pg stat` and `pg dump`.

use super::args::Args;
use super::df::{usage, Usage};
use super::format::{self, bytes, id_list, render, Align, Table};
use super::{reply, CommandContext, Plan};
use cairn_types::stats::PgStat;
use cairn_types::{OsdId, PgId, PoolId, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// One PG: where the map puts it and what its primary last said.
pub(super) struct PgView<'a> {
    pub pg: PgId,
    pub pool_size: u32,
    pub state: String,
    pub up: Vec<OsdId>,
    pub acting: Vec<OsdId>,
    pub stat: Option<&'a PgStat>,
}

impl PgView<'_> {
    /// Whether one of the `+`-joined state words is `word`.
    pub fn has(&self, word: &str) -> bool {
        self.state.split('+').any(|s| s == word)
    }

    pub fn objects(&self) -> u64 {
        self.stat.map_or(0, |s| s.num_objects)
    }

    pub fn bytes(&self) -> u64 {
        self.stat.map_or(0, |s| s.num_bytes)
    }

    pub fn missing(&self) -> u64 {
        self.stat.map_or(0, |s| s.num_objects_missing)
    }

    /// Object copies still to backfill onto up members that are not acting yet (Ceph's
    /// misplaced: the acting set still has every copy).
    pub fn misplaced(&self) -> u64 {
        if self.has("remapped") {
            self.missing()
        } else {
            0
        }
    }

    /// Object copies still to recover onto acting members.
    pub fn degraded(&self) -> u64 {
        self.missing() - self.misplaced()
    }
}

/// Every PG of every pool, in pool then seed order.
pub(super) fn views<'a>(ctx: &CommandContext<'a>) -> Vec<PgView<'a>> {
    let map = ctx.map;
    let mut out = Vec::new();
    for pool in map.pools.values() {
        for pg in pool.pgs() {
            let up = map.interval(pg).map(|i| i.up.clone()).unwrap_or_default();
            let stat = ctx.pg_stats.get(&pg);
            let current = map.interval(pg);
            let (state, acting) = match stat {
                // A report from an earlier interval whose primary is still up: the new
                // interval's primary has not reported yet, so as far as anyone knows the PG is
                // peering. (A report whose primary is down reads `stale+…`, as in Ceph.)
                Some(s)
                    if current.is_some_and(|i| i.since != s.interval_since)
                        && !effective_state(s, ctx).starts_with("stale") =>
                {
                    ("peering".to_string(), current.map(|i| i.acting.clone()).unwrap_or_default())
                }
                Some(s) => (effective_state(s, ctx), s.acting.clone()),
                None => {
                    ("unknown".to_string(), map.interval(pg).map(|i| i.acting.clone()).unwrap_or_default())
                }
            };
            out.push(PgView { pg, pool_size: pool.size, state, up, acting, stat });
        }
    }
    out
}

/// The reported state, marked `stale` when the OSD that reported it is no longer up.
fn effective_state(stat: &PgStat, ctx: &CommandContext) -> String {
    let reporter_up = stat.acting.first().is_none_or(|id| ctx.map.osds.get(id).is_some_and(|o| o.up));
    if reporter_up || stat.state.split('+').any(|s| s == "stale") {
        stat.state.clone()
    } else {
        format!("stale+{}", stat.state)
    }
}

/// Cluster-wide PG counts and sums.
#[derive(Default)]
pub(super) struct PgTotals {
    pub num_pgs: u64,
    pub by_state: BTreeMap<String, u64>,
    pub num_objects: u64,
    pub num_bytes: u64,
    /// Object copies still to recover, and all object copies (Ceph's degraded ratio).
    pub degraded: u64,
    /// Object copies still to backfill onto members that are not acting yet.
    pub misplaced: u64,
    pub copies: u64,
    pub unknown: u64,
    pub active: u64,
}

pub(super) fn totals(views: &[PgView]) -> PgTotals {
    let mut t = PgTotals::default();
    for v in views {
        t.num_pgs += 1;
        *t.by_state.entry(v.state.clone()).or_default() += 1;
        t.num_objects += v.objects();
        t.num_bytes += v.bytes();
        t.degraded += v.degraded();
        t.misplaced += v.misplaced();
        t.copies += v.objects() * u64::from(v.pool_size);
        t.unknown += u64::from(v.state == "unknown");
        t.active += u64::from(v.has("active"));
    }
    t
}

impl PgTotals {
    /// States with their counts, most common first (as `ceph -s` lists them).
    pub fn states_by_count(&self) -> Vec<(&str, u64)> {
        let mut v: Vec<(&str, u64)> = self.by_state.iter().map(|(s, n)| (s.as_str(), *n)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(a.0)));
        v
    }

    /// `1/3 objects degraded (33.333%)`, when anything is degraded.
    pub fn degraded_line(&self) -> Option<String> {
        if self.degraded == 0 {
            return None;
        }
        let pct = 100.0 * self.degraded as f64 / self.copies.max(1) as f64;
        Some(format!("{}/{} objects degraded ({pct:.3}%)", self.degraded, self.copies))
    }

    /// `1/3 objects misplaced (33.333%)`, when anything is being backfilled.
    pub fn misplaced_line(&self) -> Option<String> {
        if self.misplaced == 0 {
            return None;
        }
        let pct = 100.0 * self.misplaced as f64 / self.copies.max(1) as f64;
        Some(format!("{}/{} objects misplaced ({pct:.3}%)", self.misplaced, self.copies))
    }

    pub fn misplaced_json(&self, out: &mut serde_json::Map<String, Value>) {
        if self.misplaced > 0 {
            out.insert("misplaced_objects".into(), json!(self.misplaced));
            out.insert("misplaced_total".into(), json!(self.copies));
            let ratio = self.misplaced as f64 / self.copies.max(1) as f64;
            out.insert("misplaced_ratio".into(), json!(ratio));
        }
    }

    pub fn degraded_json(&self, out: &mut serde_json::Map<String, Value>) {
        if self.degraded > 0 {
            out.insert("degraded_objects".into(), json!(self.degraded));
            out.insert("degraded_total".into(), json!(self.copies));
            let ratio = self.degraded as f64 / self.copies.max(1) as f64;
            out.insert("degraded_ratio".into(), json!(ratio));
        }
    }
}

/// Per-pool sums over the pool's PGs.
#[derive(Default, Clone, Copy)]
pub(super) struct PoolSums {
    pub num_pg: u64,
    pub objects: u64,
    pub bytes: u64,
    pub missing: u64,
    pub misplaced: u64,
    pub log: u64,
}

pub(super) fn pool_sums(views: &[PgView]) -> BTreeMap<PoolId, PoolSums> {
    let mut out: BTreeMap<PoolId, PoolSums> = BTreeMap::new();
    for v in views {
        let s = out.entry(v.pg.pool).or_default();
        s.num_pg += 1;
        s.objects += v.objects();
        s.bytes += v.bytes();
        s.missing += v.missing();
        s.misplaced += v.misplaced();
        s.log += v.stat.map_or(0, |s| s.log_size);
    }
    out
}

/// `pg stat`.
pub(super) fn stat(args: &Args, ctx: &CommandContext) -> Result<Plan> {
    let t = totals(&views(ctx));
    let u = usage(ctx);
    let data = render(args.format(), || stat_json(&t, &u), || stat_plain(&t, &u));
    reply("", data)
}

fn stat_plain(t: &PgTotals, u: &Usage) -> String {
    let states: Vec<String> = t.by_state.iter().map(|(s, n)| format!("{n} {s}")).collect();
    let mut out = format!(
        "{} pgs: {}; {} data, {} used, {} / {} avail",
        t.num_pgs,
        states.join(", "),
        bytes(t.num_bytes),
        bytes(u.used),
        bytes(u.avail),
        bytes(u.total)
    );
    for line in t.degraded_line().into_iter().chain(t.misplaced_line()) {
        out.push_str("; ");
        out.push_str(&line);
    }
    out + "\n"
}

fn stat_json(t: &PgTotals, u: &Usage) -> Value {
    let by_state: Vec<Value> = t.by_state.iter().map(|(s, n)| json!({"name": s, "num": n})).collect();
    let mut summary = serde_json::Map::new();
    summary.insert("num_pg_by_state".into(), json!(by_state));
    summary.insert("num_pgs".into(), json!(t.num_pgs));
    summary.insert("num_bytes".into(), json!(t.num_bytes));
    summary.insert("total_bytes".into(), json!(u.total));
    summary.insert("total_avail_bytes".into(), json!(u.avail));
    summary.insert("total_used_bytes".into(), json!(u.used));
    summary.insert("total_used_raw_bytes".into(), json!(u.used));
    t.degraded_json(&mut summary);
    t.misplaced_json(&mut summary);
    json!({"pg_ready": true, "pg_summary": summary})
}

/// `pg dump` (every section; `dumpcontents` is accepted and ignored).
pub(super) fn dump(args: &Args, ctx: &CommandContext) -> Result<Plan> {
    let views = views(ctx);
    let data = render(args.format(), || dump_json(&views, ctx), || dump_plain(&views, ctx));
    reply("dumped all", data)
}

/// `missing` counts every copy still to copy; of those, `misplaced` go to members that are not
/// acting yet (backfill), the rest are degraded.
fn stat_sum(objects: u64, bytes: u64, missing: u64, misplaced: u64) -> Value {
    json!({
        "num_bytes": bytes,
        "num_objects": objects,
        "num_object_copies": objects,
        "num_objects_missing_on_primary": 0,
        "num_objects_missing": missing,
        "num_objects_degraded": missing - misplaced,
        "num_objects_misplaced": misplaced,
        "num_objects_unfound": 0,
    })
}

fn pg_json(v: &PgView) -> Value {
    let (version, reported_epoch, log_size) = v
        .stat
        .map_or(("0'0".to_string(), 0, 0), |s| (s.last_update.to_string(), s.reported_epoch, s.log_size));
    json!({
        "pgid": v.pg.to_string(),
        "version": version,
        "reported_epoch": reported_epoch,
        "state": v.state,
        "stat_sum": stat_sum(v.objects(), v.bytes(), v.missing(), v.misplaced()),
        "up": v.up,
        "acting": v.acting,
        "up_primary": format::primary(&v.up),
        "acting_primary": format::primary(&v.acting),
        "log_size": log_size,
        "ondisk_log_size": log_size,
    })
}

fn dump_json(views: &[PgView], ctx: &CommandContext) -> Value {
    let t = totals(views);
    let pools: Vec<Value> = pool_sums(views)
        .iter()
        .map(|(id, s)| {
            json!({"poolid": id, "num_pg": s.num_pg, "stat_sum": stat_sum(s.objects, s.bytes, s.missing, s.misplaced), "log_size": s.log, "ondisk_log_size": s.log})
        })
        .collect();
    let osds: Vec<Value> = ctx.osd_stats.values().map(osd_stat_json).collect();
    let u = usage(ctx);
    json!({"pg_ready": true, "pg_map": {
        "version": ctx.map.epoch,
        "stamp": format::utime(ctx.now_secs),
        "last_osdmap_epoch": ctx.map.epoch,
        "last_pg_scan": ctx.map.epoch,
        "pg_stats_sum": {"stat_sum": stat_sum(t.num_objects, t.num_bytes, t.degraded + t.misplaced, t.misplaced)},
        "osd_stats_sum": {"kb": u.total / 1024, "kb_used": u.used / 1024, "kb_avail": u.avail / 1024,
            "statfs": {"total": u.total, "available": u.avail, "allocated": u.used}},
        "pg_stats": views.iter().map(pg_json).collect::<Vec<_>>(),
        "pool_stats": pools,
        "osd_stats": osds,
    }})
}

fn osd_stat_json(s: &cairn_types::stats::OsdStat) -> Value {
    json!({
        "osd": s.id,
        "num_pgs": s.num_pgs,
        "kb": s.total_bytes / 1024,
        "kb_used": s.used_bytes / 1024,
        "kb_avail": s.avail_bytes / 1024,
        "statfs": {"total": s.total_bytes, "available": s.avail_bytes, "allocated": s.used_bytes},
        "hb_peers": [],
    })
}

fn dump_plain(views: &[PgView], ctx: &CommandContext) -> String {
    let mut out = format!(
        "version {}\nstamp {}\nlast_osdmap_epoch {}\nlast_pg_scan {}\n",
        ctx.map.epoch,
        format::utime(ctx.now_secs),
        ctx.map.epoch,
        ctx.map.epoch
    );
    out.push_str(&pg_table(views).render());
    out.push('\n');
    out.push_str(&pool_table(views).render());
    out.push('\n');
    out.push_str(&osd_table(ctx, views).render());
    out
}

/// The count columns `pg dump` shows per PG and per pool, in Ceph's order.
const COUNT_COLUMNS: &[(&str, Align, Align)] = &[
    ("OBJECTS", Align::Left, Align::Right),
    ("MISSING_ON_PRIMARY", Align::Left, Align::Right),
    ("DEGRADED", Align::Left, Align::Right),
    ("MISPLACED", Align::Left, Align::Right),
    ("UNFOUND", Align::Left, Align::Right),
    ("BYTES", Align::Left, Align::Right),
    ("LOG", Align::Left, Align::Right),
    ("DISK_LOG", Align::Left, Align::Right),
];

fn pg_table(views: &[PgView]) -> Table {
    use Align::{Left as L, Right as R};
    let mut t = Table::new(
        &[
            &[("PG_STAT", L, L)][..],
            COUNT_COLUMNS,
            &[
                ("STATE", L, L),
                ("VERSION", L, R),
                ("REPORTED", L, R),
                ("UP", L, L),
                ("UP_PRIMARY", L, R),
                ("ACTING", L, L),
                ("ACTING_PRIMARY", L, R),
            ],
        ]
        .concat(),
    );
    for v in views {
        let (version, reported, log) = v
            .stat
            .map_or(("0'0".to_string(), 0, 0), |s| (s.last_update.to_string(), s.reported_epoch, s.log_size));
        t.row(vec![
            v.pg.to_string(),
            v.objects().to_string(),
            "0".into(),
            v.degraded().to_string(),
            v.misplaced().to_string(),
            "0".into(),
            v.bytes().to_string(),
            log.to_string(),
            log.to_string(),
            v.state.clone(),
            version,
            reported.to_string(),
            id_list(&v.up),
            format::primary(&v.up).to_string(),
            id_list(&v.acting),
            format::primary(&v.acting).to_string(),
        ]);
    }
    t
}

fn sums_row(label: String, s: &PoolSums) -> Vec<String> {
    let n = |v: u64| v.to_string();
    let degraded = s.missing - s.misplaced;
    vec![label, n(s.objects), n(0), n(degraded), n(s.misplaced), n(0), n(s.bytes), n(s.log), n(s.log)]
}

fn pool_table(views: &[PgView]) -> Table {
    use Align::Left as L;
    let mut t = Table::new(&[&[("POOLID", L, L)][..], COUNT_COLUMNS].concat());
    let mut total = PoolSums::default();
    for (id, s) in pool_sums(views) {
        t.row(sums_row(id.to_string(), &s));
        total.objects += s.objects;
        total.bytes += s.bytes;
        total.missing += s.missing;
        total.misplaced += s.misplaced;
        total.log += s.log;
    }
    t.row(sums_row("sum".into(), &total));
    t
}

fn osd_table(ctx: &CommandContext, views: &[PgView]) -> Table {
    use Align::{Left as L, Right as R};
    let mut t = Table::new(&[
        ("OSD_STAT", L, L),
        ("USED", L, R),
        ("AVAIL", L, R),
        ("USED_RAW", L, R),
        ("TOTAL", L, R),
        ("HB_PEERS", L, L),
        ("PG_SUM", L, R),
        ("PRIMARY_PG_SUM", L, R),
    ]);
    for (id, s) in ctx.osd_stats {
        let pgs = views.iter().filter(|v| v.acting.contains(id)).count();
        let primary = views.iter().filter(|v| v.acting.first() == Some(id)).count();
        let used = bytes(s.used_bytes);
        t.row(vec![
            id.to_string(),
            used.clone(),
            bytes(s.avail_bytes),
            used,
            bytes(s.total_bytes),
            "[]".into(),
            pgs.to_string(),
            primary.to_string(),
        ]);
    }
    let u = usage(ctx);
    let used = bytes(u.used);
    let row = vec!["sum".into(), used.clone(), bytes(u.avail), used, bytes(u.total)];
    t.row(row.into_iter().chain(["".into(), "".into(), "".into()]).collect());
    t
}
