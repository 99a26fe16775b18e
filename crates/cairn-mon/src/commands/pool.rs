//! Pools: `osd pool create|ls|rm|set|get|application|get-quota|set-quota` and `osd lspools`.
//! Checks that need only the command and the current map are made here, with Ceph's wording;
//! `ClusterMap::apply` re-checks what depends on the state at commit time.

use super::args::Args;
use super::format::{bytes, json_bytes, render, si, Format};
use super::pg::{pool_sums, views, PoolSums};
use super::{reply, CommandContext, Plan};
use cairn_types::{errno, Error, MapCommand, Pool, Result, MAX_PG_NUM};
use serde_json::{json, Value};

/// The one CRUSH rule Cairn has, under Ceph's default name.
const DEFAULT_RULE: &str = "replicated_rule";
/// Longest application name (Ceph's `MAX_POOL_APPLICATION_LENGTH`).
const MAX_APP_NAME_BYTES: usize = 128;

fn pool_named<'a>(ctx: &CommandContext<'a>, name: &str) -> Result<&'a Pool> {
    ctx.map.pool_by_name(name).ok_or_else(|| Error::enoent(format!("unrecognized pool '{name}'")))
}

fn sums_of(ctx: &CommandContext, pool: &Pool) -> PoolSums {
    pool_sums(&views(ctx)).get(&pool.id).copied().unwrap_or_default()
}

/// Ceph's pool flags: `hashpspool`, plus `full,full_quota` once the leader marked the pool full.
fn pool_flags(p: &Pool) -> (u64, &'static str) {
    if p.full {
        (1 | 1 << 1 | 1 << 10, "hashpspool,full,full_quota")
    } else {
        (1, "hashpspool")
    }
}

/// Ceph's `pg_pool_t` line: `replicated size 3 min_size 2 crush_rule 0 ...`, after `pool 1 'x' `.
pub(super) fn pool_line(p: &Pool) -> String {
    let mut out = format!(
        "pool {} '{}' replicated size {} min_size {} crush_rule 0 object_hash rjenkins pg_num {} pgp_num {} autoscale_mode off last_change {} flags {}",
        p.id, p.name, p.size, p.min_size, p.pg_num, p.pgp_num, p.created_epoch, pool_flags(p).1
    );
    if p.quota_max_bytes > 0 {
        out.push_str(&format!(" max_bytes {}", p.quota_max_bytes));
    }
    if p.quota_max_objects > 0 {
        out.push_str(&format!(" max_objects {}", p.quota_max_objects));
    }
    out.push_str(" stripe_width 0");
    if !p.applications.is_empty() {
        let apps: Vec<&str> = p.applications.iter().map(String::as_str).collect();
        out.push_str(&format!(" application {}", apps.join(",")));
    }
    out
}

/// Ceph's `pg_pool_t::dump`, with `pool` and `pool_name` first as `osd dump` has them.
pub(super) fn pool_json(p: &Pool) -> Value {
    let apps: serde_json::Map<String, Value> =
        p.applications.iter().map(|a| (a.clone(), json!({}))).collect();
    json!({
        "pool": p.id,
        "pool_name": p.name,
        "flags": pool_flags(p).0,
        "flags_names": pool_flags(p).1,
        "type": 1,
        "size": p.size,
        "min_size": p.min_size,
        "crush_rule": 0,
        "object_hash": 2,
        "pg_autoscale_mode": "off",
        "pg_num": p.pg_num,
        "pg_placement_num": p.pgp_num,
        "pg_placement_num_target": p.pgp_num,
        "pg_num_target": p.pg_num,
        "pg_num_pending": p.pg_num,
        "last_change": p.created_epoch.to_string(),
        "snap_mode": "selfmanaged",
        "quota_max_bytes": p.quota_max_bytes,
        "quota_max_objects": p.quota_max_objects,
        "stripe_width": 0,
        "fast_read": false,
        "options": {},
        "application_metadata": apps,
    })
}

/// `osd lspools`: `1 volumes` per line; JSON `[{"poolnum", "poolname"}]`.
pub(super) fn lspools(args: &Args, ctx: &CommandContext) -> Result<Plan> {
    let pools = ctx.map.pools.values();
    let data = render(
        args.format(),
        || json!(pools.clone().map(|p| json!({"poolnum": p.id, "poolname": p.name})).collect::<Vec<_>>()),
        // `1 volumes,2 images,` as the guides show it (Ceph before Luminous).
        || pools.clone().map(|p| format!("{} {},", p.id, p.name)).collect::<String>() + "\n",
    );
    reply("", data)
}

/// `osd pool ls [detail]`.
pub(super) fn ls(args: &Args, ctx: &CommandContext) -> Result<Plan> {
    let detail = args.choice_is("detail", "detail");
    let pools = ctx.map.pools.values();
    let json = || {
        let items = pools.clone().map(|p| {
            if !detail {
                return json!(p.name);
            }
            let mut v = pool_json(p);
            v["pool_id"] = json!(p.id);
            v
        });
        json!(items.collect::<Vec<_>>())
    };
    let plain = || {
        if detail {
            pools.clone().map(|p| pool_line(p) + "\n").collect::<String>() + "\n"
        } else {
            pools.clone().map(|p| format!("{}\n", p.name)).collect()
        }
    };
    reply("", render(args.format(), json, plain))
}

/// `osd pool create <pool> [pg_num] [pgp_num] [replicated] [rule] ... [size]`.
pub(super) fn create(args: &Args, ctx: &CommandContext) -> Result<Plan> {
    let name = args.str("pool")?;
    let pg_num = args.opt_u32("pg_num")?;
    let pgp_num = args.opt_u32("pgp_num")?;
    let size = args.opt_u32("size")?;
    if args.opt_str("pool_type")?.is_some_and(|t| t != "replicated") {
        return Err(Error::new(errno::EOPNOTSUPP, "erasure-coded pools are not supported by Cairn"));
    }
    // For replicated pools Ceph reads the positional after `replicated` as the rule name.
    let rule = args.opt_str("rule")?.or(args.opt_str("erasure_code_profile")?);
    if let Some(rule) = rule.filter(|r| *r != DEFAULT_RULE) {
        return Err(Error::enoent(format!("specified rule '{rule}' doesn't exist")));
    }
    if pg_num.is_some_and(|n| n == 0 || n > MAX_PG_NUM) {
        return Err(Error::einval(format!(
            "'pg_num' must be greater than 0 and less than or equal to {MAX_PG_NUM} (you may adjust 'mon max pool pg num' for higher values)"
        )));
    }
    // Ceph 16 answers 0 here; Cairn says EEXIST so scripts can tell "created" from "was there".
    if ctx.map.pool_by_name(name).is_some() {
        return Err(Error::eexist(format!("pool '{name}' already exists")));
    }
    let cmd = MapCommand::PoolCreate { name: name.into(), pg_num, pgp_num, size, now_secs: ctx.now_secs };
    Ok(Plan::Propose(cmd))
}

/// `osd pool rm|delete <pool> <pool> --yes-i-really-really-mean-it`.
pub(super) fn delete(args: &Args, ctx: &CommandContext) -> Result<Plan> {
    let name = args.str("pool")?;
    if ctx.map.pool_by_name(name).is_none() {
        return Err(Error::enoent(format!("pool '{name}' does not exist")));
    }
    let sure =
        args.flag("yes_i_really_really_mean_it")? || args.flag("yes_i_really_really_mean_it_not_faking")?;
    if args.opt_str("pool2")? != Some(name) || !sure {
        return Err(Error::eperm(format!(
            "WARNING: this will *PERMANENTLY DESTROY* all data stored in pool {name}.  If you are *ABSOLUTELY CERTAIN* that is what you want, pass the pool name *twice*, followed by --yes-i-really-really-mean-it."
        )));
    }
    if !ctx.map.settings.allow_pool_delete {
        return Err(Error::eperm(
            "pool deletion is disabled; you must first set the mon_allow_pool_delete config option to true before you can destroy a pool",
        ));
    }
    Ok(Plan::Propose(MapCommand::PoolDelete { name: name.into(), now_secs: ctx.now_secs }))
}

/// `osd pool set <pool> <var> <val>`; `ClusterMap::apply` validates the value.
pub(super) fn set(args: &Args, ctx: &CommandContext) -> Result<Plan> {
    let name = args.str("pool")?;
    let key = args.str("var")?;
    let value = args.str_or_number("val")?;
    pool_named(ctx, name)?;
    let cmd = MapCommand::PoolSet { name: name.into(), key: key.into(), value, now_secs: ctx.now_secs };
    Ok(Plan::Propose(cmd))
}

use cairn_types::map::POOL_GET_VARS as GET_VARS;

/// One variable as (plain text, JSON value).
fn get_var(p: &Pool, var: &str) -> (String, Value) {
    match var {
        "size" => (p.size.to_string(), json!(p.size)),
        "min_size" => (p.min_size.to_string(), json!(p.min_size)),
        "pg_num" => (p.pg_num.to_string(), json!(p.pg_num)),
        "pgp_num" => (p.pgp_num.to_string(), json!(p.pgp_num)),
        "crush_rule" => (DEFAULT_RULE.into(), json!(DEFAULT_RULE)),
        "hashpspool" => ("true".into(), json!(true)),
        "fast_read" => ("0".into(), json!(false)),
        "pg_autoscale_mode" => ("off".into(), json!("off")),
        _ => ("false".into(), json!(false)),
    }
}

/// `osd pool get <pool> <var|all>`.
pub(super) fn get(args: &Args, ctx: &CommandContext) -> Result<Plan> {
    let name = args.str("pool")?;
    let var = args.str("var")?;
    let pool = pool_named(ctx, name)?;
    let vars: Vec<&str> = match var {
        "all" => GET_VARS.to_vec(),
        v if GET_VARS.contains(&v) => vec![v],
        v => return Err(Error::einval(format!("unrecognized variable '{v}'"))),
    };
    let json = || {
        let mut obj = serde_json::Map::new();
        obj.insert("pool".into(), json!(name));
        obj.insert("pool_id".into(), json!(pool.id));
        obj.extend(vars.iter().map(|v| (v.to_string(), get_var(pool, v).1)));
        Value::Object(obj)
    };
    let plain = || vars.iter().map(|v| format!("{v}: {}\n", get_var(pool, v).0)).collect();
    reply("", render(args.format(), json, plain))
}

/// `osd pool application enable <pool> <app> [--yes-i-really-mean-it]`.
/// `osd pool selfmanaged-snap create` (what librados' `selfmanaged_snap_create` sends): allocates
/// the pool's next snapshot id; the reply's data is the id in decimal.
pub(super) fn selfmanaged_snap_create(args: &Args, ctx: &CommandContext) -> Result<Plan> {
    let pool = pool_named(ctx, args.str("pool")?)?;
    Ok(Plan::Propose(MapCommand::PoolSnapCreate { pool: pool.id, now_secs: ctx.now_secs }))
}

/// `osd pool selfmanaged-snap rm`: marks a snapshot id removed so the OSDs trim its clones.
pub(super) fn selfmanaged_snap_rm(args: &Args, ctx: &CommandContext) -> Result<Plan> {
    let pool = pool_named(ctx, args.str("pool")?)?;
    let snap = args.str_or_number("snapid")?;
    let snap = snap.parse::<u64>().map_err(|_| Error::einval(format!("invalid snapid '{snap}'")))?;
    if pool.removed_snaps.binary_search(&snap).is_ok() {
        return reply(&format!("removed snap {snap} of pool '{}'", pool.name), Vec::new());
    }
    Ok(Plan::Propose(MapCommand::PoolSnapRemove { pool: pool.id, snap, now_secs: ctx.now_secs }))
}

pub(super) fn app_enable(args: &Args, ctx: &CommandContext) -> Result<Plan> {
    let name = args.str("pool")?;
    let app = args.str("app")?;
    let force = args.flag("yes_i_really_mean_it")?;
    let pool = pool_named(ctx, name)?;
    if app.is_empty() {
        return Err(Error::einval("application name must be provided"));
    }
    if app.len() > MAX_APP_NAME_BYTES {
        return Err(Error::einval(format!(
            "application name '{app}' too long; max length {MAX_APP_NAME_BYTES}"
        )));
    }
    if pool.applications.contains(app) {
        return reply(&format!("enabled application '{app}' on pool '{name}'"), Vec::new());
    }
    if !pool.applications.is_empty() && !force {
        return Err(Error::eperm(format!(
            "Are you SURE? Pool '{name}' already has an enabled application; pass --yes-i-really-mean-it to proceed anyway"
        )));
    }
    let cmd =
        MapCommand::PoolApplicationEnable { name: name.into(), app: app.into(), now_secs: ctx.now_secs };
    Ok(Plan::Propose(cmd))
}

fn apps_json(p: &Pool) -> Value {
    let apps: serde_json::Map<String, Value> =
        p.applications.iter().map(|a| (a.clone(), json!({}))).collect();
    Value::Object(apps)
}

/// `osd pool application get [pool] [app] [key]` (JSON even when plain is asked for).
pub(super) fn app_get(args: &Args, ctx: &CommandContext) -> Result<Plan> {
    let format = args.format_or(Format::JsonPretty);
    let Some(name) = args.opt_str("pool")? else {
        let all: serde_json::Map<String, Value> =
            ctx.map.pools.values().map(|p| (p.name.clone(), apps_json(p))).collect();
        return reply("", json_bytes(&Value::Object(all), format));
    };
    let pool = pool_named(ctx, name)?;
    let Some(app) = args.opt_str("app")? else {
        return reply("", json_bytes(&apps_json(pool), format));
    };
    if !pool.applications.contains(app) {
        return Err(Error::enoent(format!("pool '{name}' has no application '{app}'")));
    }
    if let Some(key) = args.opt_str("key")? {
        return Err(Error::enoent(format!("application '{app}' on pool '{name}' does not have key '{key}'")));
    }
    reply("", json_bytes(&json!({}), format))
}

/// `osd pool get-quota <pool>`.
pub(super) fn get_quota(args: &Args, ctx: &CommandContext) -> Result<Plan> {
    let name = args.str("pool")?;
    let pool = pool_named(ctx, name)?;
    let sums = sums_of(ctx, pool);
    let json = || {
        json!({
            "pool_name": name,
            "pool_id": pool.id,
            "quota_max_objects": pool.quota_max_objects,
            "current_num_objects": sums.objects,
            "quota_max_bytes": pool.quota_max_bytes,
            "current_num_bytes": sums.bytes,
        })
    };
    reply("", render(args.format(), json, || quota_plain(pool, &sums)))
}

fn quota_plain(pool: &Pool, sums: &PoolSums) -> String {
    let objects = match pool.quota_max_objects {
        0 => "N/A".to_string(),
        n => format!("{} objects  (current num objects: {} objects)", si(n), sums.objects),
    };
    let max_bytes = match pool.quota_max_bytes {
        0 => "N/A".to_string(),
        n => format!("{}  (current num bytes: {} bytes)", bytes(n), sums.bytes),
    };
    format!("quotas for pool '{}':\n  max objects: {objects}\n  max bytes  : {max_bytes}\n", pool.name)
}

/// `osd pool set-quota <pool> max_objects|max_bytes <val>`; bytes take `K`/`M`/`G`/... suffixes
/// (powers of 1024), objects take SI suffixes (powers of 1000), as in Ceph.
pub(super) fn set_quota(args: &Args, ctx: &CommandContext) -> Result<Plan> {
    let name = args.str("pool")?;
    let field = args.str("field")?;
    let val = args.str_or_number("val")?;
    pool_named(ctx, name)?;
    let parsed = match field {
        "max_objects" => parse_si(&val),
        "max_bytes" => parse_iec(&val),
        other => {
            return Err(Error::einval(format!(
                "unrecognized field '{other}'; should be 'max_bytes' or 'max_objects'"
            )))
        }
    };
    let value = parsed.map_err(|e| Error::einval(format!("error parsing value '{val}': {e}")))?;
    let cmd =
        MapCommand::PoolSetQuota { name: name.into(), field: field.into(), value, now_secs: ctx.now_secs };
    Ok(Plan::Propose(cmd))
}

fn parse_integer(digits: &str) -> std::result::Result<u64, String> {
    if digits.starts_with('-') {
        return Err("value should not be negative".into());
    }
    digits
        .trim_start_matches('+')
        .parse::<u64>()
        .map_err(|_| format!("Expected option value to be integer, got '{digits}'"))
}

/// Ceph's `strict_iec_cast`: `10G`, `10Gi`, `512K`, `100`.
pub(super) fn parse_iec(s: &str) -> std::result::Result<u64, String> {
    if s.is_empty() {
        return Err("strict_iecstrtoll: value not specified".into());
    }
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '-' || c == '+')).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    if unit.len() > 2 {
        return Err("strict_iecstrtoll: illegal prefix (length > 2)".into());
    }
    let shift = match unit.chars().next() {
        None | Some('B') if !unit.ends_with('i') => 0,
        Some('K') => 10,
        Some('M') => 20,
        Some('G') => 30,
        Some('T') => 40,
        Some('P') => 50,
        Some('E') => 60,
        _ => return Err("strict_iecstrtoll: unit prefix not recognized".into()),
    };
    let n = parse_integer(digits)?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| "strict_iecstrtoll: the specified value is too large".to_string())
}

/// Ceph's `strict_si_cast`: `10K` = 10000, `1M` = 1000000.
pub(super) fn parse_si(s: &str) -> std::result::Result<u64, String> {
    let (digits, exp) = match s.chars().last() {
        None => return Err("empty string".into()),
        Some('K') => (&s[..s.len() - 1], 3),
        Some('M') => (&s[..s.len() - 1], 6),
        Some('G') => (&s[..s.len() - 1], 9),
        Some('T') => (&s[..s.len() - 1], 12),
        Some('P') => (&s[..s.len() - 1], 15),
        Some('E') => (&s[..s.len() - 1], 18),
        Some(_) => (s, 0),
    };
    let n = parse_integer(digits)?;
    n.checked_mul(10u64.pow(exp)).ok_or_else(|| "strict_sistrtoll: value out of range".to_string())
}
