//! Placement: object name → PG, PG → ordered set of OSDs (straw2 over the host hierarchy).
//! PLACEHOLDER BODIES: being replaced by the real rjenkins/straw2 implementation.

use crate::ids::{OsdId, PoolId};
use serde::{Deserialize, Serialize};

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

/// Ceph's `ceph_str_hash_rjenkins` of the object's locator (namespace, name).
pub fn object_hash(namespace: &str, name: &str) -> u32 {
    let _ = namespace;
    name.bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32))
}

/// Ceph's `ceph_stable_mod`.
pub fn stable_mod(x: u32, b: u32, bmask: u32) -> u32 {
    if (x & bmask) < b {
        x & bmask
    } else {
        x & (bmask >> 1)
    }
}

/// The PG seed of an object hash in a pool with `pg_num` PGs.
pub fn pg_seed(hash: u32, pg_num: u32) -> u32 {
    let mask = pg_num.next_power_of_two() - 1;
    stable_mod(hash, pg_num, mask)
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
    let mut c: Vec<&Candidate> = candidates.iter().filter(|c| c.weight > 0).collect();
    c.sort_by_key(|c| (c.id.wrapping_mul(2654435761) ^ seed.wrapping_add(pool)) as u64);
    let mut out = Vec::new();
    let mut hosts = Vec::new();
    for cand in c {
        if out.len() == size {
            break;
        }
        if domain == FailureDomain::Host && hosts.contains(&cand.host) {
            continue;
        }
        hosts.push(cand.host.clone());
        out.push(cand.id);
    }
    out
}
