//! OSDs: `osd tree`, `osd dump`, `osd stat`, and marking OSDs `down` / `out` / `in`. Cairn's
//! hierarchy is Ceph's default one: `root default`, one `host` bucket per OSD host.

use super::args::{parse_osd_id, Args};
use super::format::{fixed_16_16, float_g, legacy_addr, render, utime, v2_addr, weight, Align, Table};
use super::pool::{pool_json, pool_line};
use super::{reply, CommandContext, Plan};
use cairn_types::{ClusterMap, Error, MapCommand, OsdId, OsdInfo, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// CRUSH type ids of Ceph's default hierarchy.
const TYPE_ID_OSD: u32 = 0;
const TYPE_ID_HOST: u32 = 1;
const TYPE_ID_ROOT: u32 = 11;
const ROOT_ID: i64 = -1;
const OSDMAP_FLAGS: [&str; 4] = ["sortbitwise", "recovery_deletes", "purged_snapdirs", "pglog_hardlimit"];

pub(super) struct OsdCounts {
    pub num: usize,
    pub up: usize,
    pub in_: usize,
    /// PGs whose acting set is held apart from their up set by a pg_temp entry.
    pub remapped: usize,
}

pub(super) fn osd_counts(ctx: &CommandContext) -> OsdCounts {
    let osds = ctx.map.osds.values();
    OsdCounts {
        num: ctx.map.osds.len(),
        up: osds.clone().filter(|o| o.up).count(),
        in_: osds.filter(|o| o.in_cluster).count(),
        remapped: ctx.map.intervals.values().filter(|i| i.is_remapped()).count(),
    }
}

/// `osd stat`.
pub(super) fn stat(args: &Args, ctx: &CommandContext) -> Result<Plan> {
    let c = osd_counts(ctx);
    let epoch = ctx.map.epoch;
    let data = render(
        args.format(),
        || {
            json!({"epoch": epoch, "num_osds": c.num, "num_up_osds": c.up, "osd_up_since": 0,
                   "num_in_osds": c.in_, "osd_in_since": 0, "num_remapped_pgs": c.remapped})
        },
        || format!("{} osds: {} up, {} in; epoch: e{epoch}\n", c.num, c.up, c.in_),
    );
    reply("", data)
}

/// The hierarchy: hosts (with their bucket ids) and OSDs that have no host (Ceph's strays).
struct Tree<'a> {
    hosts: Vec<(i64, &'a str, Vec<&'a OsdInfo>)>,
    stray: Vec<&'a OsdInfo>,
}

fn tree(map: &ClusterMap) -> Tree<'_> {
    let mut by_host: BTreeMap<&str, Vec<&OsdInfo>> = BTreeMap::new();
    let mut stray = Vec::new();
    for o in map.osds.values() {
        if o.host.is_empty() {
            stray.push(o);
        } else {
            by_host.entry(o.host.as_str()).or_default().push(o);
        }
    }
    // Bucket ids are the map's (the ones placement hashes with); a host without one, which
    // apply never leaves, gets the next free id rather than a clash.
    let mut next_free = map.host_ids.values().min().map_or(-2, |m| i64::from(*m) - 1);
    let mut hosts: Vec<(i64, &str, Vec<&OsdInfo>)> = by_host
        .into_iter()
        .map(|(h, osds)| {
            let id = map.host_ids.get(h).map(|id| i64::from(*id)).unwrap_or_else(|| {
                next_free -= 1;
                next_free + 1
            });
            (id, h, osds)
        })
        .collect();
    hosts.sort_by_key(|h| std::cmp::Reverse(h.0));
    Tree { hosts, stray }
}

fn crush_weight(osds: &[&OsdInfo]) -> f64 {
    osds.iter().map(|o| fixed_16_16(o.crush_weight)).sum()
}

fn status_word(o: &OsdInfo) -> &'static str {
    if o.up {
        "up"
    } else {
        "down"
    }
}

/// `osd tree`.
pub(super) fn tree_cmd(args: &Args, ctx: &CommandContext) -> Result<Plan> {
    let t = tree(ctx.map);
    reply("", render(args.format(), || tree_json(&t), || tree_plain(&t)))
}

fn tree_plain(t: &Tree) -> String {
    use Align::{Left as L, Right as R};
    let mut tbl = Table::new(&[
        ("ID", L, R),
        ("CLASS", L, R),
        ("WEIGHT", L, R),
        ("TYPE NAME", L, L),
        ("STATUS", L, R),
        ("REWEIGHT", L, R),
        ("PRI-AFF", L, R),
    ]);
    let all: Vec<&OsdInfo> = t.hosts.iter().flat_map(|h| h.2.iter().copied()).collect();
    let bucket = |id: i64, w: f64, name: String| {
        vec![id.to_string(), "".into(), weight(w), name, "".into(), "".into(), "".into()]
    };
    tbl.row(bucket(ROOT_ID, crush_weight(&all), "root default".into()));
    for (id, host, osds) in &t.hosts {
        tbl.row(bucket(*id, crush_weight(osds), format!("    host {host}")));
        for o in osds {
            tbl.row(osd_row(o, "        "));
        }
    }
    for o in &t.stray {
        tbl.row(osd_row(o, ""));
    }
    tbl.render()
}

fn osd_row(o: &OsdInfo, indent: &str) -> Vec<String> {
    vec![
        o.id.to_string(),
        String::new(),
        weight(fixed_16_16(o.crush_weight)),
        format!("{indent}osd.{}", o.id),
        status_word(o).into(),
        weight(fixed_16_16(o.reweight)),
        weight(1.0),
    ]
}

fn tree_json(t: &Tree) -> Value {
    let host_ids: Vec<i64> = t.hosts.iter().rev().map(|h| h.0).collect();
    let mut nodes = vec![
        json!({"id": ROOT_ID, "name": "default", "type": "root", "type_id": TYPE_ID_ROOT, "children": host_ids}),
    ];
    for (id, host, osds) in &t.hosts {
        let children: Vec<OsdId> = osds.iter().rev().map(|o| o.id).collect();
        nodes.push(json!({"id": id, "name": host, "type": "host", "type_id": TYPE_ID_HOST, "pool_weights": {}, "children": children}));
        nodes.extend(osds.iter().map(|o| osd_node(o, 2)));
    }
    let stray: Vec<Value> = t.stray.iter().map(|o| osd_node(o, 0)).collect();
    json!({"nodes": nodes, "stray": stray})
}

fn osd_node(o: &OsdInfo, depth: u32) -> Value {
    json!({
        "id": o.id,
        "name": format!("osd.{}", o.id),
        "type": "osd",
        "type_id": TYPE_ID_OSD,
        "crush_weight": fixed_16_16(o.crush_weight),
        "depth": depth,
        "pool_weights": {},
        "exists": 1,
        "status": status_word(o),
        "reweight": fixed_16_16(o.reweight),
        "primary_affinity": 1.0,
    })
}

/// `osd dump`.
pub(super) fn dump(args: &Args, ctx: &CommandContext) -> Result<Plan> {
    let map = ctx.map;
    let data = render(args.format(), || dump_json(map), || dump_plain(map));
    reply("", data)
}

fn max_osd(map: &ClusterMap) -> u32 {
    map.osds.keys().next_back().map_or(0, |id| id + 1)
}

fn dump_plain(map: &ClusterMap) -> String {
    let mut out = format!(
        "epoch {}\nfsid {}\ncreated {}\nmodified {}\nflags {}\ncrush_version 1\n",
        map.epoch,
        map.fsid,
        utime(map.created_secs),
        utime(map.modified_secs),
        OSDMAP_FLAGS.join(",")
    );
    out.push_str("full_ratio 0.95\nbackfillfull_ratio 0.9\nnearfull_ratio 0.85\n");
    out.push_str("require_min_compat_client luminous\nmin_compat_client jewel\n");
    out.push_str("require_osd_release pacific\nstretch_mode_enabled false\n\n");
    for pool in map.pools.values() {
        out.push_str(&pool_line(pool));
        out.push('\n');
    }
    out.push_str(&format!("\nmax_osd {}\n", max_osd(map)));
    for o in map.osds.values() {
        out.push_str(&osd_line(o));
        out.push('\n');
    }
    if !map.pg_temp.is_empty() {
        out.push('\n');
    }
    for (pg, osds) in &map.pg_temp {
        out.push_str(&format!(
            "pg_temp {pg} [{}]\n",
            osds.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",")
        ));
    }
    out + "\n"
}

/// Ceph's `print_osd_line`.
fn osd_line(o: &OsdInfo) -> String {
    let addr = format!("[{}]", v2_addr(&o.addr));
    format!(
        "osd.{} {} {} weight {} up_from {} up_thru 0 down_at {} last_clean_interval [0,0) {addr} {addr} {}",
        o.id,
        if o.up { "up  " } else { "down" },
        if o.in_cluster { "in " } else { "out" },
        float_g(fixed_16_16(o.reweight)),
        o.up_from,
        o.down_at,
        if o.up { "exists,up" } else { "exists" },
    )
}

fn addrvec(addr: &str) -> Value {
    let (host_port, _) = addr.split_once('/').unwrap_or((addr, "0"));
    json!({"addrvec": [{"type": "v2", "addr": host_port, "nonce": 0}]})
}

fn osd_json(o: &OsdInfo) -> Value {
    let legacy = legacy_addr(&o.addr);
    let mut state = vec!["exists"];
    if o.up {
        state.push("up");
    }
    json!({
        "osd": o.id,
        "uuid": "00000000-0000-0000-0000-000000000000",
        "up": u8::from(o.up),
        "in": u8::from(o.in_cluster),
        "weight": fixed_16_16(o.reweight),
        "primary_affinity": 1.0,
        "last_clean_begin": 0,
        "last_clean_end": 0,
        "up_from": o.up_from,
        "up_thru": 0,
        "down_at": o.down_at,
        "lost_at": 0,
        "public_addrs": addrvec(&o.addr),
        "cluster_addrs": addrvec(&o.addr),
        "public_addr": legacy,
        "cluster_addr": legacy,
        "heartbeat_back_addr": legacy,
        "heartbeat_front_addr": legacy,
        "state": state,
    })
}

fn dump_json(map: &ClusterMap) -> Value {
    json!({
        "epoch": map.epoch,
        "fsid": map.fsid,
        "created": utime(map.created_secs),
        "modified": utime(map.modified_secs),
        "last_up_change": "0.000000",
        "last_in_change": "0.000000",
        "flags": OSDMAP_FLAGS.join(","),
        "flags_set": OSDMAP_FLAGS,
        "crush_version": 1,
        "full_ratio": 0.95,
        "backfillfull_ratio": 0.9,
        "nearfull_ratio": 0.85,
        "cluster_snapshot": "",
        "pool_max": map.pools.keys().next_back().copied().unwrap_or(0),
        "max_osd": max_osd(map),
        "require_min_compat_client": "luminous",
        "min_compat_client": "jewel",
        "require_osd_release": "pacific",
        "pools": map.pools.values().map(pool_json).collect::<Vec<_>>(),
        "osds": map.osds.values().map(osd_json).collect::<Vec<_>>(),
        "osd_xinfo": [],
        "pg_upmap": [],
        "pg_upmap_items": [],
        "pg_temp": map
            .pg_temp
            .iter()
            .map(|(pg, osds)| json!({"pgid": pg.to_string(), "osds": osds}))
            .collect::<Vec<_>>(),
        "primary_temp": [],
        "blocklist": {},
        "erasure_code_profiles": {},
    })
}

/// `osd down|out|in <ids>`: proposes only the OSDs whose state changes; when none does,
/// answers at once with Ceph's "is already" note.
pub(super) fn mark(verb: &str, args: &Args, ctx: &CommandContext) -> Result<Plan> {
    let words = args.str_list("ids")?;
    let wildcard = words.first().is_some_and(|w| is_wildcard(w));
    let ids = resolve_ids(&words, ctx.map)?;
    let (changing, already): (Vec<OsdId>, Vec<OsdId>) = ids.into_iter().partition(|id| {
        let o = &ctx.map.osds[id];
        match verb {
            "down" => o.up,
            "out" => o.in_cluster,
            _ => !o.in_cluster,
        }
    });
    if changing.is_empty() {
        let notes = if wildcard { Vec::new() } else { already };
        let status: String = notes.iter().map(|id| format!("osd.{id} is already {verb}. ")).collect();
        return reply(&status, Vec::new());
    }
    let now_secs = ctx.now_secs;
    let cmd = match verb {
        "down" => MapCommand::OsdDown { ids: changing, now_secs },
        "out" => MapCommand::OsdOut { ids: changing, by_operator: true, now_secs },
        _ => MapCommand::OsdIn { ids: changing, now_secs },
    };
    Ok(Plan::Propose(cmd))
}

fn is_wildcard(word: &str) -> bool {
    matches!(word, "any" | "all" | "*")
}

/// OSD ids from `3` / `osd.3` / `all`; every one must exist.
fn resolve_ids(words: &[String], map: &ClusterMap) -> Result<Vec<OsdId>> {
    if words.first().is_some_and(|w| is_wildcard(w)) {
        return Ok(map.osds.keys().copied().collect());
    }
    let mut ids = Vec::new();
    for w in words {
        let id = parse_osd_id(w)?;
        if !map.osds.contains_key(&id) {
            return Err(Error::enoent(format!("osd.{id} does not exist")));
        }
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// Ceph's status for a committed mark: `marked down osd.1. marked down osd.2. `.
pub(super) fn marked_status(verb: &str, ids: &[OsdId]) -> String {
    ids.iter().map(|id| format!("marked {verb} osd.{id}. ")).collect()
}
