//! Soft state the OSDs report to the monitor leader: PG states and usage. Not part of the
//! Raft-replicated map (it changes too often); a new leader rebuilds it from the next reports.

use crate::ids::{Epoch, OsdId, PgId, Version};
use serde::{Deserialize, Serialize};

/// One PG as its primary sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PgStat {
    pub pg: PgId,
    /// Ceph-style state string: `active+clean`, `active+undersized+degraded`, `peering`,
    /// `incomplete`, `recovering`, `backfilling`, ...
    pub state: String,
    pub acting: Vec<OsdId>,
    pub interval_since: Epoch,
    pub last_update: Version,
    pub num_objects: u64,
    pub num_bytes: u64,
    /// Objects still to be recovered or backfilled onto some acting member.
    pub num_objects_missing: u64,
    pub log_size: u64,
    pub reported_epoch: Epoch,
}

/// One OSD's usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OsdStat {
    pub id: OsdId,
    pub total_bytes: u64,
    pub used_bytes: u64,
    pub avail_bytes: u64,
    pub num_pgs: u32,
}
