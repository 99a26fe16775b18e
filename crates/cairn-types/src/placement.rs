//! Placement: object name → PG, PG → ordered set of OSDs, the way Ceph does it.
//!
//! - `object_hash` is Ceph's `ceph_str_hash_rjenkins` of the object locator (`pg_pool_t::hash_key`).
//! - `pg_seed` folds a hash onto `pg_num` PGs with `ceph_stable_mod`.
//! - `choose_osds` runs CRUSH's `take root; chooseleaf firstn 0 type {host|osd}; emit` over a
//!   straw2 hierarchy root → one bucket per host → that host's OSDs, with the jewel-and-later
//!   tunables (`choose_total_tries 50`, `chooseleaf_descend_once 1`, `chooseleaf_vary_r 1`,
//!   `chooseleaf_stable 1`, no local retries) and a hashpspool input
//!   `x = crush_hash32_rjenkins1_2(seed, pool)`.
//!
//! Bucket ids follow what a Ceph map built the same way gets: root −1, hosts −2, −3, … in host
//! name order (or ids persisted by the caller, `Hierarchy::with_host_ids`); within a host, OSDs
//! are in id order. Build a `Hierarchy` once to map many PGs.
//!
//! Fidelity to Ceph, checked against Ceph 16.2.15's `crushtool`/`osdmaptool` (see
//! `tests/placement.rs`): the hashes, the firstn retry logic, `is_out` and the straw2 draw are
//! Ceph's. The one unavoidable difference is `crush_ln`: its tables are generated from their
//! formulas (see `ln_table`), while Ceph ships hand-made tables whose fine part deviates from the
//! formula in most entries. Both order all 16-bit draws identically (ties included), so a straw2
//! choice among items of *equal* weight is bit-identical to Ceph's; between items of different
//! weights a near tie can resolve differently (≈2.5·10^-6 per pairwise comparison; 4 of 8192 PGs
//! in two 40-OSD maps with mixed weights, 0 of ≈34000 in eleven other maps). A second, deliberate
//! difference: a bucket whose items all have weight 0 yields nothing here, where Ceph would fall
//! back to its first item.

mod ln_table;
mod rjenkins;

use crate::error::{Error, Result};
use crate::ids::{OsdId, PoolId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use ln_table::crush_ln;

/// Which level of the hierarchy replicas must not share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum FailureDomain {
    Osd,
    #[default]
    Host,
}

/// An OSD that placement may choose. `weight` is 16.16 fixed point (0x10000 = 1.0); 0 = never chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: OsdId,
    pub host: String,
    pub weight: u32,
}

/// A reweight (Ceph's per-OSD "in" weight, `ceph osd reweight`) that leaves an OSD fully in.
pub const REWEIGHT_IN: u32 = 0x10000;

/// CRUSH tunable `choose_total_tries` (jewel+ default). Ceph's mapper adds one: it was counted
/// as retries, and the mapper counts tries.
const CHOOSE_TOTAL_TRIES: u32 = 50;
const CHOOSE_TRIES: u32 = CHOOSE_TOTAL_TRIES + 1;
/// `chooseleaf_descend_once = 1`: the descent from a host to a leaf gets one try.
const CHOOSELEAF_TRIES: u32 = 1;
/// straw2 draws: `ln(u) − 2^48 ≤ 0`, divided by the weight.
const LN_ONE: i64 = 1 << 48;

/// Ceph's `ceph_str_hash_rjenkins` of the object's locator (namespace, name): the name alone in
/// the default namespace, else `namespace + '\x1f' + name` (`pg_pool_t::hash_key`).
pub fn object_hash(namespace: &str, name: &str) -> u32 {
    if namespace.is_empty() {
        return rjenkins::str_hash(name.as_bytes());
    }
    let mut key = Vec::with_capacity(namespace.len() + 1 + name.len());
    key.extend_from_slice(namespace.as_bytes());
    key.push(0x1f);
    key.extend_from_slice(name.as_bytes());
    rjenkins::str_hash(&key)
}

/// Ceph's `ceph_stable_mod`.
pub fn stable_mod(x: u32, b: u32, bmask: u32) -> u32 {
    if (x & bmask) < b {
        x & bmask
    } else {
        x & (bmask >> 1)
    }
}

/// Ceph's `pg_num_mask`: the smallest `2^k − 1` that is ≥ `pg_num − 1`.
pub fn pg_num_mask(pg_num: u32) -> u32 {
    match pg_num {
        0 => 0,
        n => n.checked_next_power_of_two().map_or(u32::MAX, |p| p - 1),
    }
}

/// The PG seed of an object hash in a pool with `pg_num` PGs (0 when the pool has none).
pub fn pg_seed(hash: u32, pg_num: u32) -> u32 {
    if pg_num == 0 {
        return 0;
    }
    stable_mod(hash, pg_num, pg_num_mask(pg_num))
}

/// CRUSH's input for a PG: Ceph's hashpspool `pps = crush_hash32_rjenkins1_2(seed, pool)`, where
/// `seed` is already folded onto `pgp_num`.
pub fn placement_input(pool: PoolId, seed: u32) -> u32 {
    rjenkins::hash32_2(seed, pool)
}

/// Chooses up to `size` distinct OSDs for PG `seed` of `pool`, first = primary; no two in the same
/// failure domain. Deterministic; fewer than `size` when not enough domains have weight.
pub fn choose_osds(
    pool: PoolId,
    seed: u32,
    size: usize,
    candidates: &[Candidate],
    domain: FailureDomain,
) -> Vec<OsdId> {
    Hierarchy::new(candidates).choose_osds(pool, seed, size, domain, |_| REWEIGHT_IN)
}

/// `choose_osds` with Ceph's separate per-OSD reweight (16.16, `REWEIGHT_IN` = fully in): an OSD
/// with reweight `w < 1.0` stays in the hierarchy with its full weight but is rejected for a PG
/// with probability `1 − w`, after which CRUSH retries, as Ceph's `is_out` does.
pub fn choose_osds_reweighted(
    pool: PoolId,
    seed: u32,
    size: usize,
    candidates: &[Candidate],
    domain: FailureDomain,
    reweight: impl Fn(OsdId) -> u32,
) -> Vec<OsdId> {
    Hierarchy::new(candidates).choose_osds(pool, seed, size, domain, reweight)
}

/// One straw2 bucket item: the id CRUSH hashes (OSD id, or a negative bucket id) and its weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Item {
    id: i64,
    weight: u32,
}

/// A host bucket: its CRUSH id (−2, −3, …) and its OSDs in id order.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostBucket {
    id: i64,
    osds: Vec<Item>,
}

/// The CRUSH hierarchy built from a candidate list, reusable across many PGs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// The root's items: one per host, weight = sum of its OSDs' weights.
    root: Vec<Item>,
    hosts: Vec<HostBucket>,
    /// How many hosts / OSDs have non-zero weight: no PG can get more replicas than this.
    weighted_hosts: usize,
    weighted_osds: usize,
}

impl Hierarchy {
    /// Builds root → hosts → OSDs (sorted by id), numbering hosts −2, −3, … in name order. An OSD
    /// id listed twice keeps its first entry.
    ///
    /// The numbering depends on the *set* of host names: a host that disappears from
    /// `candidates`, or a new one that sorts before others, renumbers the hosts after it and so
    /// remaps nearly every PG. Keep out OSDs in the list (weight 0, or via
    /// `choose_osds_reweighted`) so their hosts stay, or persist ids with `with_host_ids`.
    pub fn new(candidates: &[Candidate]) -> Self {
        let by_host = group_by_host(candidates);
        let ids = (0..by_host.len()).map(|i| -2 - i as i64);
        Self::from_hosts(by_host.into_values().zip(ids).collect())
    }

    /// Like `new`, but with each host's CRUSH bucket id given (as Ceph persists them, assigned
    /// once when the host first appears), so hosts coming and going never renumber the others.
    /// Ids must be distinct and ≤ −2 (−1 is the root); the root lists hosts in decreasing id
    /// order, which is their creation order in Ceph.
    pub fn with_host_ids(candidates: &[Candidate], host_ids: &BTreeMap<String, i32>) -> Result<Self> {
        let by_host = group_by_host(candidates);
        let mut hosts = Vec::with_capacity(by_host.len());
        let mut seen = BTreeMap::new();
        for (name, osds) in by_host {
            let id = *host_ids
                .get(name)
                .ok_or_else(|| Error::einval(format!("no CRUSH bucket id for host '{name}'")))?;
            if id > -2 {
                return Err(Error::einval(format!("host '{name}' has bucket id {id}, not ≤ -2")));
            }
            if let Some(other) = seen.insert(id, name) {
                return Err(Error::einval(format!("hosts '{other}' and '{name}' share id {id}")));
            }
            hosts.push((osds, i64::from(id)));
        }
        hosts.sort_by_key(|&(_, id)| std::cmp::Reverse(id));
        Ok(Self::from_hosts(hosts))
    }

    fn from_hosts(hosts: Vec<(Vec<Item>, i64)>) -> Self {
        let hosts: Vec<HostBucket> = hosts.into_iter().map(|(osds, id)| HostBucket { id, osds }).collect();
        let root: Vec<Item> = hosts
            .iter()
            .map(|h| {
                // Ceph refuses maps whose bucket weights overflow 32 bits; saturate instead.
                let sum: u64 = h.osds.iter().map(|o| u64::from(o.weight)).sum();
                Item { id: h.id, weight: u32::try_from(sum).unwrap_or(u32::MAX) }
            })
            .collect();
        let weighted_hosts = root.iter().filter(|i| i.weight > 0).count();
        let weighted_osds = hosts.iter().flat_map(|h| &h.osds).filter(|o| o.weight > 0).count();
        Hierarchy { root, hosts, weighted_hosts, weighted_osds }
    }

    /// Up to `size` OSDs for PG `seed` of `pool`, first = primary, with `reweight` as in
    /// `choose_osds_reweighted`.
    pub fn choose_osds(
        &self,
        pool: PoolId,
        seed: u32,
        size: usize,
        domain: FailureDomain,
        reweight: impl Fn(OsdId) -> u32,
    ) -> Vec<OsdId> {
        let x = placement_input(pool, seed);
        let reachable = match domain {
            FailureDomain::Host => self.weighted_hosts,
            FailureDomain::Osd => self.weighted_osds,
        };
        let mut chosen = Chosen::default();
        // crush_choose_firstn: one pass per replica slot `rep`; a slot that exhausts its tries is
        // skipped, and later slots still run with their own `rep`.
        for rep in 0..size {
            // Once every weighted domain is used, no later slot can succeed: stop early.
            if chosen.osds.len() == reachable {
                break;
            }
            if let Some((host, osd)) = self.choose_slot(x, rep as u32, domain, &chosen, &reweight) {
                chosen.hosts.push(host);
                chosen.osds.push(osd);
            }
        }
        debug_assert!(chosen.osds.len() <= size);
        chosen.osds
    }

    /// One replica slot: up to `CHOOSE_TRIES` descents from the root with `r = rep + ftotal`.
    fn choose_slot(
        &self,
        x: u32,
        rep: u32,
        domain: FailureDomain,
        chosen: &Chosen,
        reweight: &impl Fn(OsdId) -> u32,
    ) -> Option<(usize, OsdId)> {
        (0..CHOOSE_TRIES).find_map(|ftotal| {
            let r = rep.wrapping_add(ftotal);
            match domain {
                FailureDomain::Host => self.try_host(x, r, chosen, reweight),
                FailureDomain::Osd => self.try_osd(x, r, chosen, reweight),
            }
        })
    }

    /// `chooseleaf … type host`: pick a host at the root; reject it if already used, else
    /// descend into it (`chooseleaf_stable`: the nested choose runs slot 0 with `parent_r = r`,
    /// `vary_r = 1`) for one leaf.
    fn try_host(
        &self,
        x: u32,
        r: u32,
        chosen: &Chosen,
        reweight: &impl Fn(OsdId) -> u32,
    ) -> Option<(usize, OsdId)> {
        let host = straw2_choose(&self.root, x, r)?;
        if chosen.hosts.contains(&host) {
            return None;
        }
        let osds = &self.hosts[host].osds;
        let osd = (0..CHOOSELEAF_TRIES).find_map(|ftotal| {
            let osd = osd_id(osds[straw2_choose(osds, x, r.wrapping_add(ftotal))?]);
            let usable = !chosen.osds.contains(&osd) && !is_out(x, osd, reweight);
            usable.then_some(osd)
        })?;
        Some((host, osd))
    }

    /// `chooseleaf … type osd`: descend root → host → OSD with the same `r`; the OSD itself is
    /// the failure domain.
    fn try_osd(
        &self,
        x: u32,
        r: u32,
        chosen: &Chosen,
        reweight: &impl Fn(OsdId) -> u32,
    ) -> Option<(usize, OsdId)> {
        let host = straw2_choose(&self.root, x, r)?;
        let osds = &self.hosts[host].osds;
        let osd = osd_id(osds[straw2_choose(osds, x, r)?]);
        if chosen.osds.contains(&osd) || is_out(x, osd, reweight) {
            return None;
        }
        Some((host, osd))
    }
}

/// Candidates grouped by host name, each host's OSDs in id order; the first entry of a
/// duplicated OSD id wins.
fn group_by_host(candidates: &[Candidate]) -> BTreeMap<&str, Vec<Item>> {
    let mut by_id: BTreeMap<OsdId, &Candidate> = BTreeMap::new();
    for c in candidates {
        by_id.entry(c.id).or_insert(c);
    }
    let mut by_host: BTreeMap<&str, Vec<Item>> = BTreeMap::new();
    for c in by_id.values() {
        let item = Item { id: i64::from(c.id), weight: c.weight };
        by_host.entry(c.host.as_str()).or_default().push(item);
    }
    by_host
}

/// What a PG has so far: the host index and OSD of each filled slot, in order.
#[derive(Debug, Default)]
struct Chosen {
    hosts: Vec<usize>,
    osds: Vec<OsdId>,
}

fn osd_id(item: Item) -> OsdId {
    debug_assert!(item.id >= 0, "leaf items are OSDs");
    item.id as OsdId
}

/// Ceph's `bucket_straw2_choose`: every item draws `ln(hash(x, id, r) & 0xffff) / weight` and the
/// highest draw wins (the earliest item on a tie). Weight-0 items never draw; `None` if all are 0.
fn straw2_choose(items: &[Item], x: u32, r: u32) -> Option<usize> {
    let mut best: Option<(usize, i64)> = None;
    for (index, item) in items.iter().enumerate() {
        if item.weight == 0 {
            continue;
        }
        // CRUSH hashes the item id as the bit pattern of a C `int`.
        let u = rjenkins::hash32_3(x, item.id as i32 as u32, r) & 0xffff;
        let ln = crush_ln(u) as i64 - LN_ONE;
        // C's 64-bit signed division truncates toward zero, as Rust's does.
        let draw = ln / i64::from(item.weight);
        if best.is_none_or(|(_, high)| draw > high) {
            best = Some((index, draw));
        }
    }
    best.map(|(index, _)| index)
}

/// Ceph's `is_out`: an OSD with reweight below 1.0 is rejected for input `x` unless a hash of
/// (x, osd) falls under its reweight.
fn is_out(x: u32, osd: OsdId, reweight: &impl Fn(OsdId) -> u32) -> bool {
    match reweight(osd) {
        w if w >= REWEIGHT_IN => false,
        0 => true,
        w => rjenkins::hash32_2(x, osd) & 0xffff >= w,
    }
}
