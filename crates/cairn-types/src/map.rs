//! The cluster map: what the monitors agree on through Raft. Every change is a [`MapCommand`]
//! applied deterministically by [`ClusterMap::apply`]; each applied change bumps `epoch`.

use crate::error::{Error, Result};
use crate::ids::{Epoch, OsdId, PgId, PoolId};
use crate::placement::{self, Candidate, FailureDomain};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Variables `osd pool get` answers, in Ceph's order (shared by the mon and the CLI parser).
pub const POOL_GET_VARS: [&str; 15] = [
    "size",
    "min_size",
    "pg_num",
    "pgp_num",
    "crush_rule",
    "hashpspool",
    "nodelete",
    "nopgchange",
    "nosizechange",
    "write_fadvise_dontneed",
    "noscrub",
    "nodeep-scrub",
    "fast_read",
    "pg_autoscale_mode",
    "bulk",
];

/// Largest pg_num a pool may have (Ceph's `mon_max_pool_pg_num`).
pub const MAX_PG_NUM: u32 = 65536;
/// Largest replica count.
pub const MAX_POOL_SIZE: u32 = 10;
/// Default OSD weight: 1.0 in 16.16 fixed point.
pub const WEIGHT_ONE: u32 = 0x10000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonInfo {
    /// Raft node id (rank + 1, never 0).
    pub node_id: u64,
    pub name: String,
    pub addr: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OsdInfo {
    pub id: OsdId,
    pub addr: String,
    pub host: String,
    pub up: bool,
    pub in_cluster: bool,
    /// 16.16 fixed point; 0 for `out`.
    pub reweight: u32,
    /// Placement weight (capacity, TiB in 16.16), as CRUSH weight.
    pub crush_weight: u32,
    pub up_from: Epoch,
    pub down_at: Epoch,
    /// Unix seconds at which the OSD was marked down (drives `mon osd down out interval`).
    pub down_since_secs: Option<u64>,
    /// Whether the OSD was marked out by an operator (then it stays out until `osd in`).
    pub out_by_operator: bool,
    pub capacity_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pool {
    pub id: PoolId,
    pub name: String,
    pub size: u32,
    pub min_size: u32,
    pub pg_num: u32,
    pub pgp_num: u32,
    pub failure_domain: FailureDomain,
    pub applications: BTreeSet<String>,
    pub quota_max_bytes: u64,
    pub quota_max_objects: u64,
    /// Set by the mon leader when usage reaches a quota; writes then fail with EDQUOT.
    pub full: bool,
    pub created_epoch: Epoch,
    /// Newest self-managed snapshot id allocated in this pool (0 = none yet).
    pub snap_seq: u64,
    /// Self-managed snapshot ids deleted by their owners, ascending: OSDs trim the object
    /// clones that only these snapshots needed.
    pub removed_snaps: Vec<u64>,
}

impl Pool {
    pub fn pgs(&self) -> impl Iterator<Item = PgId> + '_ {
        (0..self.pg_num).map(move |seed| PgId { pool: self.id, seed })
    }
}

/// A PG's current interval: its acting set (first = primary) and up set, both fixed since epoch
/// `since`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PgInterval {
    pub since: Epoch,
    /// The members that serve I/O: the PG's `pg_temp` entry when it has one, else `up`.
    pub acting: Vec<OsdId>,
    /// Where placement puts the PG: the CRUSH result minus down OSDs. Members of `up` that are
    /// not in `acting` are backfill targets, filled in the background by the primary.
    pub up: Vec<OsdId>,
}

impl PgInterval {
    pub fn primary(&self) -> Option<OsdId> {
        self.acting.first().copied()
    }

    /// Members of `up` that are not acting yet (the primary backfills them in the background).
    pub fn backfill_targets(&self) -> Vec<OsdId> {
        self.up.iter().copied().filter(|id| !self.acting.contains(id)).collect()
    }

    /// Whether a `pg_temp` entry holds an acting set other than `up` in place.
    pub fn is_remapped(&self) -> bool {
        self.acting != self.up
    }
}

/// The last interval that went active: every write acknowledged so far is on every member of it
/// (docs/replication.md, invariant I2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PgHistory {
    pub last_active: PgInterval,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MapSettings {
    pub default_failure_domain: FailureDomain,
    pub default_size: u32,
    pub default_min_size: u32,
    pub default_pg_num: u32,
    pub down_out_interval_secs: u64,
    pub allow_pool_delete: bool,
}

impl Default for MapSettings {
    fn default() -> Self {
        MapSettings {
            default_failure_domain: FailureDomain::Host,
            default_size: 3,
            default_min_size: 2,
            default_pg_num: 32,
            down_out_interval_secs: 600,
            allow_pool_delete: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ClusterMap {
    pub fsid: String,
    pub epoch: Epoch,
    pub created_secs: u64,
    pub modified_secs: u64,
    pub mons: Vec<MonInfo>,
    pub osds: BTreeMap<OsdId, OsdInfo>,
    pub pools: BTreeMap<PoolId, Pool>,
    pub next_pool_id: PoolId,
    pub settings: MapSettings,
    pub intervals: BTreeMap<PgId, PgInterval>,
    pub history: BTreeMap<PgId, PgHistory>,
    /// CRUSH bucket id of every host ever seen (−2, −3, … in order of first appearance), kept
    /// so hosts coming and going never renumber the others (which would remap most PGs).
    pub host_ids: BTreeMap<String, i32>,
    /// Acting sets that override placement while a PG's new members are backfilled in the
    /// background (Ceph's `pg_temp`). An entry lives until its primary clears it, or until it
    /// becomes invalid (an OSD in it is down or gone, its pool is gone, it equals `up`).
    pub pg_temp: BTreeMap<PgId, Vec<OsdId>>,
}

/// A change to the map. Applied identically on every monitor; anything time-dependent carries its
/// time in the command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MapCommand {
    /// First entry of a new cluster.
    Init {
        fsid: String,
        mons: Vec<MonInfo>,
        settings: MapSettings,
        now_secs: u64,
    },
    OsdBoot {
        id: OsdId,
        addr: String,
        host: String,
        capacity_bytes: u64,
        now_secs: u64,
    },
    OsdDown {
        ids: Vec<OsdId>,
        now_secs: u64,
    },
    /// Failure detection: marks `id` down only if it is still the life that started at
    /// `up_from` (a report about an earlier life must not down a freshly booted OSD).
    OsdFailed {
        id: OsdId,
        up_from: Epoch,
        now_secs: u64,
    },
    OsdOut {
        ids: Vec<OsdId>,
        by_operator: bool,
        now_secs: u64,
    },
    OsdIn {
        ids: Vec<OsdId>,
        now_secs: u64,
    },
    OsdReweight {
        id: OsdId,
        reweight: u32,
        now_secs: u64,
    },
    PoolCreate {
        name: String,
        pg_num: Option<u32>,
        pgp_num: Option<u32>,
        size: Option<u32>,
        now_secs: u64,
    },
    PoolDelete {
        name: String,
        now_secs: u64,
    },
    PoolSet {
        name: String,
        key: String,
        value: String,
        now_secs: u64,
    },
    PoolApplicationEnable {
        name: String,
        app: String,
        now_secs: u64,
    },
    PoolSetQuota {
        name: String,
        field: String,
        value: u64,
        now_secs: u64,
    },
    /// The leader's configuration (pool defaults, down-out interval) changed.
    SetSettings {
        settings: MapSettings,
        now_secs: u64,
    },
    /// The mon leader's verdict on a pool's quota usage.
    PoolSetFull {
        pool: PoolId,
        full: bool,
        now_secs: u64,
    },
    /// A primary reports that `pg` went active with `interval` (docs/replication.md, step A).
    PgActivated {
        pg: PgId,
        interval: PgInterval,
    },
    /// Keep `acting` serving `pg` while its up set is backfilled (docs/replication.md,
    /// "Backfill in the background"). Every OSD must exist and be up.
    PgTemp {
        pg: PgId,
        acting: Vec<OsdId>,
        now_secs: u64,
    },
    /// Backfill is done: drop `pg`'s pg_temp entry, so acting becomes `up` — only if the PG's up
    /// set is still `up` (otherwise the targets that were filled are no longer the up set).
    PgTempClear {
        pg: PgId,
        up: Vec<OsdId>,
        now_secs: u64,
    },
    /// Allocates the next self-managed snapshot id of `pool` (applied message: the id).
    PoolSnapCreate {
        pool: PoolId,
        now_secs: u64,
    },
    /// Marks self-managed snapshot `snap` of `pool` removed; OSDs trim its clones.
    PoolSnapRemove {
        pool: PoolId,
        snap: u64,
        now_secs: u64,
    },
    /// A change to the auth database, which the mons keep beside the map (never in it: it holds
    /// secrets). `ClusterMap::apply` refuses it; the mon's state machine routes it to
    /// [`crate::auth::AuthDb::apply`].
    Auth(crate::auth::AuthCommand),
}

/// What an applied command says back (Ceph's status string, e.g. "pool 'x' created").
pub type Applied = String;

impl ClusterMap {
    pub fn is_initialized(&self) -> bool {
        !self.fsid.is_empty()
    }

    pub fn pool_by_name(&self, name: &str) -> Option<&Pool> {
        self.pools.values().find(|p| p.name == name)
    }

    pub fn pool_named(&self, name: &str) -> Result<&Pool> {
        self.pool_by_name(name).ok_or_else(|| Error::enoent(format!("pool '{name}' does not exist")))
    }

    /// The PG an object of `pool` maps to.
    pub fn object_pg(&self, pool: &Pool, namespace: &str, name: &str) -> PgId {
        let hash = placement::object_hash(namespace, name);
        PgId { pool: pool.id, seed: placement::pg_seed(hash, pool.pg_num) }
    }

    pub fn interval(&self, pg: PgId) -> Option<&PgInterval> {
        self.intervals.get(&pg)
    }

    /// Applies one command. On error the map is unchanged.
    pub fn apply(&mut self, cmd: &MapCommand) -> Result<Applied> {
        if !self.is_initialized() && !matches!(cmd, MapCommand::Init { .. }) {
            return Err(Error::eagain("cluster map not initialized yet"));
        }
        let mut next = self.clone();
        let (msg, now) = next.apply_inner(cmd)?;
        if next == *self {
            return Ok(msg);
        }
        // An OSD that boots again while still marked up lost its in-memory state: its PGs must
        // peer again, so they start a new interval as if it had been down in between.
        let rebooted = match cmd {
            MapCommand::OsdBoot { id, .. } => self.osds.get(id).filter(|o| o.up).map(|o| o.id),
            _ => None,
        };
        next.epoch += 1;
        next.modified_secs = now;
        next.recompute_intervals(rebooted);
        // A pg_temp entry that recomputing dropped again (it equals up) changed nothing.
        let unchanged = next.intervals == self.intervals
            && ClusterMap { epoch: self.epoch, modified_secs: self.modified_secs, ..next.clone() } == *self;
        if !unchanged {
            *self = next;
        }
        Ok(msg)
    }

    fn apply_inner(&mut self, cmd: &MapCommand) -> Result<(Applied, u64)> {
        use MapCommand::*;
        Ok(match cmd {
            Init { fsid, mons, settings, now_secs } => {
                if self.is_initialized() {
                    return Ok(("already initialized".into(), self.modified_secs));
                }
                self.fsid = fsid.clone();
                self.mons = mons.clone();
                self.settings = settings.clone();
                self.created_secs = *now_secs;
                self.next_pool_id = 1;
                ("initialized".into(), *now_secs)
            }
            OsdBoot { id, addr, host, capacity_bytes, now_secs } => {
                let epoch = self.epoch + 1;
                let crush_weight = weight_for_capacity(*capacity_bytes);
                let osd = self.osds.entry(*id).or_insert_with(|| OsdInfo {
                    id: *id,
                    addr: String::new(),
                    host: String::new(),
                    up: false,
                    in_cluster: true,
                    reweight: WEIGHT_ONE,
                    crush_weight,
                    up_from: 0,
                    down_at: 0,
                    down_since_secs: None,
                    out_by_operator: false,
                    capacity_bytes: *capacity_bytes,
                });
                osd.addr = addr.clone();
                osd.host = host.clone();
                if !self.host_ids.contains_key(host) {
                    let next = self.host_ids.values().min().map_or(-2, |m| m - 1);
                    self.host_ids.insert(host.clone(), next);
                }
                osd.up = true;
                osd.up_from = epoch;
                osd.down_since_secs = None;
                osd.capacity_bytes = *capacity_bytes;
                if !osd.in_cluster && !osd.out_by_operator {
                    // Marked out automatically while down: coming back brings it in again.
                    osd.in_cluster = true;
                    osd.reweight = WEIGHT_ONE;
                }
                (format!("osd.{id} booted"), *now_secs)
            }
            OsdDown { ids, now_secs } => {
                let epoch = self.epoch + 1;
                for id in ids {
                    let osd = self.osd_mut(*id)?;
                    if osd.up {
                        osd.up = false;
                        osd.down_at = epoch;
                        osd.down_since_secs = Some(*now_secs);
                    }
                }
                (format!("marked down osd.{}", join_ids(ids)), *now_secs)
            }
            OsdFailed { id, up_from, now_secs } => {
                let epoch = self.epoch + 1;
                let osd = self.osd_mut(*id)?;
                if osd.up && osd.up_from == *up_from {
                    osd.up = false;
                    osd.down_at = epoch;
                    osd.down_since_secs = Some(*now_secs);
                }
                (format!("osd.{id} failed"), *now_secs)
            }
            OsdOut { ids, by_operator, now_secs } => {
                for id in ids {
                    let osd = self.osd_mut(*id)?;
                    osd.in_cluster = false;
                    osd.reweight = 0;
                    osd.out_by_operator = *by_operator;
                }
                (format!("marked out osd.{}", join_ids(ids)), *now_secs)
            }
            OsdIn { ids, now_secs } => {
                for id in ids {
                    let osd = self.osd_mut(*id)?;
                    osd.in_cluster = true;
                    osd.reweight = WEIGHT_ONE;
                    osd.out_by_operator = false;
                }
                (format!("marked in osd.{}", join_ids(ids)), *now_secs)
            }
            OsdReweight { id, reweight, now_secs } => {
                let osd = self.osd_mut(*id)?;
                osd.reweight = (*reweight).min(WEIGHT_ONE);
                osd.in_cluster = osd.reweight > 0;
                (format!("reweighted osd.{id}"), *now_secs)
            }
            PoolCreate { name, pg_num, pgp_num, size, now_secs } => {
                (self.pool_create(name, *pg_num, *pgp_num, *size)?, *now_secs)
            }
            PoolDelete { name, now_secs } => {
                let Some(id) = self.pool_by_name(name).map(|p| p.id) else {
                    return Ok((format!("pool '{name}' does not exist"), *now_secs));
                };
                self.pools.remove(&id);
                self.history.retain(|pg, _| pg.pool != id);
                (format!("pool '{name}' removed"), *now_secs)
            }
            PoolSet { name, key, value, now_secs } => (self.pool_set(name, key, value)?, *now_secs),
            PoolApplicationEnable { name, app, now_secs } => {
                let pool = self.pool_mut(name)?;
                pool.applications.insert(app.clone());
                (format!("enabled application '{app}' on pool '{name}'"), *now_secs)
            }
            PoolSetQuota { name, field, value, now_secs } => {
                let pool = self.pool_mut(name)?;
                match field.as_str() {
                    "max_bytes" => pool.quota_max_bytes = *value,
                    "max_objects" => pool.quota_max_objects = *value,
                    other => {
                        return Err(Error::einval(format!(
                            "unrecognized quota field '{other}' (max_bytes or max_objects)"
                        )))
                    }
                }
                (format!("set-quota {field} = {value} for pool {name}"), *now_secs)
            }
            SetSettings { settings, now_secs } => {
                self.settings = settings.clone();
                ("settings updated".into(), *now_secs)
            }
            PoolSetFull { pool, full, now_secs } => {
                if let Some(p) = self.pools.get_mut(pool) {
                    p.full = *full;
                }
                (format!("pool {pool} full={full}"), *now_secs)
            }
            PgActivated { pg, interval } => {
                if self.intervals.get(pg) != Some(interval) {
                    return Err(Error::new(
                        crate::errno::ESTALE,
                        format!("pg {pg}: interval since {} is no longer current", interval.since),
                    ));
                }
                self.history.insert(*pg, PgHistory { last_active: interval.clone() });
                (format!("pg {pg} active"), self.modified_secs)
            }
            PgTemp { pg, acting, now_secs } => {
                if self.pools.get(&pg.pool).is_none_or(|p| pg.seed >= p.pg_num) {
                    return Err(Error::enoent(format!("pg {pg} does not exist")));
                }
                if acting.is_empty() {
                    return Err(Error::einval(format!("pg_temp for {pg} must not be empty")));
                }
                if acting.iter().collect::<BTreeSet<_>>().len() != acting.len() {
                    return Err(Error::einval(format!("pg_temp for {pg} names an OSD twice")));
                }
                for id in acting {
                    if !self.osds.get(id).is_some_and(|o| o.up) {
                        return Err(Error::new(
                            crate::errno::ESTALE,
                            format!("pg_temp for {pg}: osd.{id} does not exist or is down"),
                        ));
                    }
                }
                self.pg_temp.insert(*pg, acting.clone());
                (format!("set pg {pg} pg_temp to [{}]", join_plain(acting)), *now_secs)
            }
            PgTempClear { pg, up, now_secs } => {
                let current = self.intervals.get(pg).map(|i| &i.up);
                if current != Some(up) {
                    return Err(Error::new(
                        crate::errno::ESTALE,
                        format!("pg {pg}: up set is no longer [{}]", join_plain(up)),
                    ));
                }
                self.pg_temp.remove(pg);
                (format!("cleared pg {pg} pg_temp"), *now_secs)
            }
            PoolSnapCreate { pool, now_secs } => {
                let p = self.pool_by_id_mut(*pool)?;
                p.snap_seq += 1;
                (p.snap_seq.to_string(), *now_secs)
            }
            PoolSnapRemove { pool, snap, now_secs } => {
                let p = self.pool_by_id_mut(*pool)?;
                if *snap == 0 || *snap > p.snap_seq {
                    return Err(Error::enoent(format!(
                        "snapshot {snap} of pool '{}' does not exist",
                        p.name
                    )));
                }
                if let Err(at) = p.removed_snaps.binary_search(snap) {
                    p.removed_snaps.insert(at, *snap);
                }
                (format!("removed snap {snap} of pool '{}'", p.name), *now_secs)
            }
            Auth(_) => return Err(Error::einval("auth commands apply to the auth database, not the map")),
        })
    }

    fn osd_mut(&mut self, id: OsdId) -> Result<&mut OsdInfo> {
        self.osds.get_mut(&id).ok_or_else(|| Error::enoent(format!("osd.{id} does not exist")))
    }

    fn pool_by_id_mut(&mut self, id: PoolId) -> Result<&mut Pool> {
        self.pools.get_mut(&id).ok_or_else(|| Error::enoent(format!("pool {id} does not exist")))
    }

    fn pool_mut(&mut self, name: &str) -> Result<&mut Pool> {
        self.pools
            .values_mut()
            .find(|p| p.name == name)
            .ok_or_else(|| Error::enoent(format!("unrecognized pool '{name}'")))
    }

    fn pool_create(
        &mut self,
        name: &str,
        pg_num: Option<u32>,
        pgp_num: Option<u32>,
        size: Option<u32>,
    ) -> Result<Applied> {
        if self.pool_by_name(name).is_some() {
            return Err(Error::eexist(format!("pool '{name}' already exists")));
        }
        validate_pool_name(name)?;
        let pg_num = pg_num.unwrap_or(self.settings.default_pg_num);
        check_pg_num(pg_num)?;
        let pgp_num = pgp_num.unwrap_or(pg_num);
        if pgp_num == 0 || pgp_num > pg_num {
            return Err(Error::einval(format!(
                "specified pgp_num {pgp_num} must be > 0 and <= pg_num {pg_num}"
            )));
        }
        let size = size.unwrap_or(self.settings.default_size);
        check_size(size)?;
        let min_size = self.settings.default_min_size.min(size).max(1);
        let id = self.next_pool_id.max(1);
        self.next_pool_id = id + 1;
        self.pools.insert(
            id,
            Pool {
                id,
                name: name.to_string(),
                size,
                min_size,
                pg_num,
                pgp_num,
                failure_domain: self.settings.default_failure_domain,
                applications: BTreeSet::new(),
                quota_max_bytes: 0,
                quota_max_objects: 0,
                full: false,
                created_epoch: self.epoch + 1,
                snap_seq: 0,
                removed_snaps: Vec::new(),
            },
        );
        Ok(format!("pool '{name}' created"))
    }

    fn pool_set(&mut self, name: &str, key: &str, value: &str) -> Result<Applied> {
        let pool = self.pool_mut(name)?;
        let num = || -> Result<u32> {
            value.parse::<u32>().map_err(|_| Error::einval(format!("error parsing integer value '{value}'")))
        };
        match key {
            "size" => {
                let size = num()?;
                check_size(size)?;
                pool.size = size;
                pool.min_size = pool.min_size.min(size);
            }
            "min_size" => {
                let min = num()?;
                if min == 0 || min > pool.size {
                    return Err(Error::einval(format!(
                        "pool min_size must be between 1 and size, which is set to {}",
                        pool.size
                    )));
                }
                pool.min_size = min;
            }
            "pg_num" => {
                let n = num()?;
                check_pg_num(n)?;
                if n < pool.pg_num {
                    return Err(Error::new(
                        crate::errno::EOPNOTSUPP,
                        "decreasing pg_num (PG merging) is not supported by Cairn yet",
                    ));
                }
                if n > pool.pg_num {
                    return Err(Error::new(
                        crate::errno::EOPNOTSUPP,
                        "increasing pg_num (PG splitting) is not supported by Cairn yet",
                    ));
                }
            }
            "pgp_num" => {
                let n = num()?;
                if n == 0 || n > pool.pg_num {
                    return Err(Error::einval(format!(
                        "specified pgp_num {n} must be > 0 and <= pg_num {}",
                        pool.pg_num
                    )));
                }
                pool.pgp_num = n;
            }
            other => {
                return Err(Error::einval(format!(
                    "unrecognized variable '{other}' (settable: size, min_size, pg_num, pgp_num)"
                )))
            }
        }
        Ok(format!("set pool {} {key} to {value}", pool.id))
    }

    /// Every OSD with its CRUSH weight; `out` and reweight are applied per PG, as Ceph does.
    fn candidates(&self) -> Vec<Candidate> {
        self.osds
            .values()
            .map(|o| Candidate { id: o.id, host: o.host.clone(), weight: o.crush_weight })
            .collect()
    }

    fn reweight(&self, id: OsdId) -> u32 {
        self.osds.get(&id).map_or(0, |o| if o.in_cluster { o.reweight } else { 0 })
    }

    /// Recomputes every PG's up and acting sets; a PG whose sets changed starts a new interval at
    /// `epoch`. As in Ceph, a down OSD stays in the placement (the PG runs degraded) until it is
    /// out. Drops pg_temp entries that became invalid: an OSD in them is down or gone, the PG is
    /// gone, or the entry equals up. (An `out` OSD that is still up may stay in one: that is how
    /// an OSD being drained keeps serving until its replacement is filled.)
    fn recompute_intervals(&mut self, rebooted: Option<OsdId>) {
        let candidates = self.candidates();
        let hierarchy = match placement::Hierarchy::with_host_ids(&candidates, &self.host_ids) {
            Ok(h) => h,
            // Unreachable while every booted OSD's host has an id; fall back rather than panic.
            Err(_) => placement::Hierarchy::new(&candidates),
        };
        let mut next = BTreeMap::new();
        let mut temps = BTreeMap::new();
        for pool in self.pools.values() {
            for pg in pool.pgs() {
                let placement_seed = placement::pg_seed(pg.seed, pool.pgp_num);
                let raw = hierarchy.choose_osds(
                    pool.id,
                    placement_seed,
                    pool.size as usize,
                    pool.failure_domain,
                    |id| self.reweight(id),
                );
                let up: Vec<OsdId> =
                    raw.into_iter().filter(|id| self.osds.get(id).is_some_and(|o| o.up)).collect();
                let temp = self.pg_temp.get(&pg).filter(|t| {
                    !t.is_empty() && **t != up && t.iter().all(|id| self.osds.get(id).is_some_and(|o| o.up))
                });
                if let Some(t) = temp {
                    temps.insert(pg, t.clone());
                }
                let acting = temp.cloned().unwrap_or_else(|| up.clone());
                let member_rebooted = |old: &PgInterval| {
                    rebooted.is_some_and(|id| old.acting.contains(&id) || old.up.contains(&id))
                };
                let interval = match self.intervals.get(&pg) {
                    Some(old) if old.acting == acting && old.up == up && !member_rebooted(old) => old.clone(),
                    _ => PgInterval { since: self.epoch, acting, up },
                };
                next.insert(pg, interval);
            }
        }
        self.intervals = next;
        self.pg_temp = temps;
    }
}

fn weight_for_capacity(capacity_bytes: u64) -> u32 {
    // CRUSH weight is capacity in TiB; keep a floor so tiny test OSDs still get data.
    let tib_16_16 = (capacity_bytes as u128 * WEIGHT_ONE as u128 / (1u128 << 40)) as u32;
    tib_16_16.max(WEIGHT_ONE / 100)
}

fn join_plain(ids: &[OsdId]) -> String {
    ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",")
}

fn join_ids(ids: &[OsdId]) -> String {
    ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", osd.")
}

fn validate_pool_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 256 || name.contains(['/', '@', ' ']) {
        return Err(Error::einval(format!(
            "invalid pool name '{name}': 1-256 bytes, without '/', '@' or spaces"
        )));
    }
    Ok(())
}

fn check_pg_num(pg_num: u32) -> Result<()> {
    if pg_num == 0 || pg_num > MAX_PG_NUM {
        return Err(Error::einval(format!(
            "'pg_num' must be greater than 0 and less than or equal to {MAX_PG_NUM} (you may adjust 'mon max pool pg num' for higher values)"
        )));
    }
    Ok(())
}

fn check_size(size: u32) -> Result<()> {
    if size == 0 || size > MAX_POOL_SIZE {
        return Err(Error::einval(format!("pool size must be between 1 and {MAX_POOL_SIZE}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Four OSDs on four hosts, pool `data` (size 3, 8 PGs).
    fn cluster() -> ClusterMap {
        let mut map = ClusterMap::default();
        let init = MapCommand::Init {
            fsid: "f".into(),
            mons: vec![],
            settings: MapSettings::default(),
            now_secs: 1,
        };
        map.apply(&init).unwrap();
        for id in 0..4 {
            let boot = MapCommand::OsdBoot {
                id,
                addr: format!("127.0.0.1:{}", 7000 + id),
                host: format!("h{id}"),
                capacity_bytes: 1 << 40,
                now_secs: 2,
            };
            map.apply(&boot).unwrap();
        }
        let create = MapCommand::PoolCreate {
            name: "data".into(),
            pg_num: Some(8),
            pgp_num: None,
            size: None,
            now_secs: 3,
        };
        map.apply(&create).unwrap();
        map
    }

    /// A PG of the pool, and an acting set for it that differs from its up set.
    fn remap(map: &ClusterMap) -> (PgId, Vec<OsdId>) {
        let (pg, interval) = map.intervals.iter().next().unwrap();
        let spare = (0..4).find(|id| !interval.up.contains(id)).unwrap();
        let mut temp = interval.up.clone();
        temp[2] = spare;
        (*pg, temp)
    }

    #[test]
    fn without_pg_temp_acting_is_up() {
        let map = cluster();
        for i in map.intervals.values() {
            assert_eq!(i.up.len(), 3);
            assert_eq!(i.acting, i.up);
            assert!(i.backfill_targets().is_empty());
        }
    }

    #[test]
    fn pg_temp_overrides_acting_and_starts_an_interval() {
        let mut map = cluster();
        let (pg, temp) = remap(&map);
        let before = map.intervals[&pg].clone();
        let other = *map.intervals.keys().nth(1).unwrap();
        let other_before = map.intervals[&other].clone();
        map.apply(&MapCommand::PgTemp { pg, acting: temp.clone(), now_secs: 4 }).unwrap();
        let i = &map.intervals[&pg];
        assert_eq!(i.acting, temp);
        assert_eq!(i.up, before.up);
        assert_eq!(i.since, map.epoch, "a new interval");
        assert!(i.is_remapped());
        assert_eq!(i.backfill_targets(), vec![before.up[2]]);
        assert_eq!(map.intervals[&other], other_before, "other PGs keep their interval");
        assert_eq!(map.pg_temp[&pg], temp);

        // Setting the same entry again changes nothing (no new epoch).
        let epoch = map.epoch;
        map.apply(&MapCommand::PgTemp { pg, acting: temp, now_secs: 5 }).unwrap();
        assert_eq!(map.epoch, epoch);
    }

    #[test]
    fn pg_temp_is_validated() {
        let mut map = cluster();
        let (pg, temp) = remap(&map);
        let missing = PgId { pool: pg.pool, seed: 99 };
        assert!(map.apply(&MapCommand::PgTemp { pg: missing, acting: temp.clone(), now_secs: 4 }).is_err());
        assert!(map.apply(&MapCommand::PgTemp { pg, acting: vec![], now_secs: 4 }).is_err());
        assert!(map.apply(&MapCommand::PgTemp { pg, acting: vec![0, 0], now_secs: 4 }).is_err());
        assert!(map.apply(&MapCommand::PgTemp { pg, acting: vec![0, 9], now_secs: 4 }).is_err());
        map.apply(&MapCommand::OsdDown { ids: vec![temp[2]], now_secs: 4 }).unwrap();
        let e = map.apply(&MapCommand::PgTemp { pg, acting: temp, now_secs: 5 }).unwrap_err();
        assert_eq!(e.errno, crate::errno::ESTALE);
        assert!(map.pg_temp.is_empty());
    }

    #[test]
    fn pg_temp_equal_to_up_is_not_kept() {
        let mut map = cluster();
        let (pg, _) = remap(&map);
        let epoch = map.epoch;
        let up = map.intervals[&pg].up.clone();
        map.apply(&MapCommand::PgTemp { pg, acting: up, now_secs: 4 }).unwrap();
        assert!(map.pg_temp.is_empty());
        assert_eq!(map.epoch, epoch, "nothing changed");
    }

    #[test]
    fn invalid_pg_temp_entries_are_dropped() {
        // An OSD in the entry goes down: the entry goes, acting falls back to up.
        let mut map = cluster();
        let (pg, temp) = remap(&map);
        map.apply(&MapCommand::PgTemp { pg, acting: temp.clone(), now_secs: 4 }).unwrap();
        map.apply(&MapCommand::OsdDown { ids: vec![temp[2]], now_secs: 5 }).unwrap();
        assert!(map.pg_temp.is_empty());
        let i = &map.intervals[&pg];
        assert_eq!(i.acting, i.up);
        assert_eq!(i.since, map.epoch);

        // An OSD in the entry is marked out but stays up: the entry stays (it is being drained).
        let mut map = cluster();
        let (pg, temp) = remap(&map);
        map.apply(&MapCommand::PgTemp { pg, acting: temp.clone(), now_secs: 4 }).unwrap();
        map.apply(&MapCommand::OsdOut { ids: vec![temp[0]], by_operator: true, now_secs: 5 }).unwrap();
        assert_eq!(map.pg_temp.get(&pg), Some(&temp));
        assert_eq!(map.intervals[&pg].acting, temp);
        assert!(!map.intervals[&pg].up.contains(&temp[0]));

        // The pool goes: so does the entry.
        map.apply(&MapCommand::PoolDelete { name: "data".into(), now_secs: 6 }).unwrap();
        assert!(map.pg_temp.is_empty());
    }

    #[test]
    fn pg_temp_becoming_equal_to_up_is_dropped() {
        let mut map = cluster();
        let (pg, _) = remap(&map);
        let up = map.intervals[&pg].up.clone();
        // Keep the old acting set while osd up[2] is out; bring it back in: up equals the entry.
        map.apply(&MapCommand::PgTemp { pg, acting: up.clone(), now_secs: 4 }).unwrap();
        map.apply(&MapCommand::OsdOut { ids: vec![up[2]], by_operator: true, now_secs: 5 }).unwrap();
        map.apply(&MapCommand::PgTemp { pg, acting: up.clone(), now_secs: 6 }).unwrap();
        assert_eq!(map.intervals[&pg].acting, up);
        assert_ne!(map.intervals[&pg].up, up);
        map.apply(&MapCommand::OsdIn { ids: vec![up[2]], now_secs: 7 }).unwrap();
        assert!(map.pg_temp.is_empty());
        assert_eq!(map.intervals[&pg].up, up);
        assert_eq!(map.intervals[&pg].acting, up);
    }

    #[test]
    fn clear_is_refused_when_up_changed() {
        let mut map = cluster();
        let (pg, temp) = remap(&map);
        map.apply(&MapCommand::PgTemp { pg, acting: temp.clone(), now_secs: 4 }).unwrap();
        let up = map.intervals[&pg].up.clone();
        // A change of up alone starts a new interval (the primary's backfill targets changed).
        let since = map.intervals[&pg].since;
        map.apply(&MapCommand::OsdOut { ids: vec![up[1]], by_operator: true, now_secs: 5 }).unwrap();
        let i = map.intervals[&pg].clone();
        assert_eq!(i.acting, temp);
        assert_ne!(i.up, up);
        assert!(i.since > since);
        let e = map.apply(&MapCommand::PgTempClear { pg, up: up.clone(), now_secs: 6 }).unwrap_err();
        assert_eq!(e.errno, crate::errno::ESTALE);
        assert_eq!(map.pg_temp.get(&pg), Some(&temp));
        // With the current up set it clears, and acting becomes up in a new interval.
        map.apply(&MapCommand::PgTempClear { pg, up: i.up.clone(), now_secs: 7 }).unwrap();
        assert!(map.pg_temp.is_empty());
        assert_eq!(map.intervals[&pg].acting, i.up);
        assert_eq!(map.intervals[&pg].since, map.epoch);
    }

    #[test]
    fn activation_must_name_the_current_up_set_too() {
        let mut map = cluster();
        let (pg, temp) = remap(&map);
        map.apply(&MapCommand::PgTemp { pg, acting: temp, now_secs: 4 }).unwrap();
        let mut stale = map.intervals[&pg].clone();
        stale.up = stale.acting.clone();
        assert!(map.apply(&MapCommand::PgActivated { pg, interval: stale }).is_err());
        let current = map.intervals[&pg].clone();
        map.apply(&MapCommand::PgActivated { pg, interval: current.clone() }).unwrap();
        assert_eq!(map.history[&pg].last_active, current);
    }
}
