//! Capacity: raw usage summed over the OSDs that are `in`, and per-pool usage and `MAX AVAIL`
//! the way Ceph's `PGMap::get_rule_avail` projects it; the `df` command.

use super::args::Args;
use super::format::{bytes, fixed_16_16, percent, render, si, Align, Table};
use super::pg::{pool_sums, views, PoolSums};
use super::{reply, CommandContext, Plan};
use cairn_types::{Pool, Result};
use serde_json::{json, Value};

/// Ceph's `mon_osd_full_ratio`: the part of each OSD that placement may fill.
pub(super) const FULL_RATIO: f64 = 0.95;
/// Ceph's `mon_osd_nearfull_ratio`.
pub(super) const NEARFULL_RATIO: f64 = 0.85;

/// Raw capacity of the OSDs that are in (what `ceph df`'s RAW STORAGE shows).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Usage {
    pub total: u64,
    pub used: u64,
    pub avail: u64,
    pub num_osds: u64,
}

pub(super) fn usage(ctx: &CommandContext) -> Usage {
    let mut u = Usage::default();
    for s in ctx.osd_stats.values() {
        if !ctx.map.osds.get(&s.id).is_some_and(|o| o.in_cluster) {
            continue;
        }
        u.total += s.total_bytes;
        u.used += s.used_bytes;
        u.avail += s.avail_bytes;
        u.num_osds += 1;
    }
    u
}

/// How much raw data can still be written before the first OSD (in proportion to its weight)
/// reaches the full ratio.
pub(super) fn raw_avail(ctx: &CommandContext) -> u64 {
    let weights: Vec<(u32, f64)> = ctx
        .map
        .osds
        .values()
        .filter(|o| o.in_cluster && o.reweight > 0)
        .map(|o| (o.id, fixed_16_16(o.crush_weight) * fixed_16_16(o.reweight)))
        .collect();
    let sum: f64 = weights.iter().map(|w| w.1).sum();
    let mut min: Option<f64> = None;
    for (id, w) in weights {
        let Some(s) = ctx.osd_stats.get(&id) else {
            continue;
        };
        if s.total_bytes == 0 || w <= 0.0 {
            continue;
        }
        let unusable = s.total_bytes as f64 * (1.0 - FULL_RATIO);
        let avail = (s.avail_bytes as f64 - unusable).max(0.0);
        let proj = avail / (w / sum);
        min = Some(min.map_or(proj, |m| m.min(proj)));
    }
    min.unwrap_or(0.0) as u64
}

/// One pool's numbers as `ceph df` reports them.
struct PoolDf<'a> {
    pool: &'a Pool,
    sums: PoolSums,
    used: u64,
    max_avail: u64,
    percent_used: f64,
}

fn pool_dfs<'a>(ctx: &'a CommandContext) -> Vec<PoolDf<'a>> {
    let sums = pool_sums(&views(ctx));
    let raw = raw_avail(ctx);
    ctx.map
        .pools
        .values()
        .map(|pool| {
            let s = sums.get(&pool.id).copied().unwrap_or_default();
            let size = u64::from(pool.size.max(1));
            let used = s.bytes * size;
            let raw_avail = raw / size * size;
            let denom = used + raw_avail;
            let percent_used = if denom == 0 { 0.0 } else { used as f64 / denom as f64 };
            PoolDf { pool, sums: s, used, max_avail: raw / size, percent_used }
        })
        .collect()
}

/// `df` and `df detail`.
pub(super) fn df(args: &Args, ctx: &CommandContext) -> Result<Plan> {
    let detail = args.choice_is("detail", "detail");
    let u = usage(ctx);
    let pools = pool_dfs(ctx);
    let data = render(args.format(), || df_json(&u, &pools, detail), || df_plain(&u, &pools, detail));
    reply("", data)
}

fn df_json(u: &Usage, pools: &[PoolDf], detail: bool) -> Value {
    let ratio = if u.total == 0 { 0.0 } else { u.used as f64 / u.total as f64 };
    let pools: Vec<Value> = pools.iter().map(|p| pool_json(p, detail)).collect();
    json!({
        "stats": {
            "total_bytes": u.total,
            "total_avail_bytes": u.avail,
            "total_used_bytes": u.used,
            "total_used_raw_bytes": u.used,
            "total_used_raw_ratio": ratio,
            "num_osds": u.num_osds,
            "num_per_pool_osds": u.num_osds,
            "num_per_pool_omap_osds": u.num_osds,
        },
        "stats_by_class": {},
        "pools": pools,
    })
}

fn pool_json(p: &PoolDf, detail: bool) -> Value {
    let mut stats = json!({
        "stored": p.sums.bytes,
        "objects": p.sums.objects,
        "kb_used": p.used.div_ceil(1024),
        "bytes_used": p.used,
        "percent_used": p.percent_used,
        "max_avail": p.max_avail,
    });
    if detail {
        let extra = json!({
            "stored_data": p.sums.bytes,
            "stored_omap": 0,
            "data_bytes_used": p.used,
            "omap_bytes_used": 0,
            "quota_objects": p.pool.quota_max_objects,
            "quota_bytes": p.pool.quota_max_bytes,
            "dirty": 0,
            "rd": 0,
            "rd_bytes": 0,
            "wr": 0,
            "wr_bytes": 0,
            "compress_bytes_used": 0,
            "compress_under_bytes": 0,
            "stored_raw": p.used,
            "avail_raw": p.max_avail * u64::from(p.pool.size),
        });
        if let (Some(s), Some(e)) = (stats.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
    }
    json!({"name": p.pool.name, "id": p.pool.id, "stats": stats})
}

fn df_plain(u: &Usage, pools: &[PoolDf], detail: bool) -> String {
    let mut out = String::from("--- RAW STORAGE ---\n");
    out.push_str(&raw_table(u).render());
    out.push_str("\n--- POOLS ---\n");
    out.push_str(&pools_table(pools, detail).render());
    out
}

fn raw_table(u: &Usage) -> Table {
    use Align::{Left as L, Right as R};
    let mut t = Table::new(&[
        ("CLASS", L, L),
        ("SIZE", R, R),
        ("AVAIL", R, R),
        ("USED", R, R),
        ("RAW USED", R, R),
        ("%RAW USED", R, R),
    ]);
    let pct = if u.total == 0 { 0.0 } else { 100.0 * u.used as f64 / u.total as f64 };
    t.row(vec!["TOTAL".into(), bytes(u.total), bytes(u.avail), bytes(u.used), bytes(u.used), percent(pct)]);
    t
}

fn pools_table(pools: &[PoolDf], detail: bool) -> Table {
    let mut t = Table::new(&pool_columns(detail));
    for p in pools {
        let mut row = vec![p.pool.name.clone(), p.pool.id.to_string(), p.pool.pg_num.to_string()];
        row.push(bytes(p.sums.bytes));
        if detail {
            row.extend([bytes(p.sums.bytes), bytes(0)]);
        }
        row.extend([si(p.sums.objects), bytes(p.used)]);
        if detail {
            row.extend([bytes(p.used), bytes(0)]);
        }
        row.extend([percent(100.0 * p.percent_used), bytes(p.max_avail)]);
        if detail {
            row.extend(quota_cells(p.pool));
            row.extend(["N/A".into(), bytes(0), bytes(0)]);
        }
        t.row(row);
    }
    t
}

fn pool_columns(detail: bool) -> Vec<(&'static str, Align, Align)> {
    use Align::{Left as L, Right as R};
    let mut cols = vec![("POOL", L, L), ("ID", R, R), ("PGS", R, R), ("STORED", R, R)];
    if detail {
        cols.extend([("(DATA)", R, R), ("(OMAP)", R, R)]);
    }
    cols.extend([("OBJECTS", R, R), ("USED", R, R)]);
    if detail {
        cols.extend([("(DATA)", R, R), ("(OMAP)", R, R)]);
    }
    cols.extend([("%USED", R, R), ("MAX AVAIL", R, R)]);
    if detail {
        cols.extend([
            ("QUOTA OBJECTS", R, R),
            ("QUOTA BYTES", R, R),
            ("DIRTY", R, R),
            ("USED COMPR", R, R),
            ("UNDER COMPR", R, R),
        ]);
    }
    cols
}

/// `N/A` or the quota, as `df detail` and `get-quota` show it.
fn quota_cells(pool: &Pool) -> [String; 2] {
    let objects = match pool.quota_max_objects {
        0 => "N/A".to_string(),
        n => si(n),
    };
    let bytes_quota = match pool.quota_max_bytes {
        0 => "N/A".to_string(),
        n => bytes(n),
    };
    [objects, bytes_quota]
}
