//! Self-managed snapshots as they travel on the wire and sit in an object's metadata (Ceph's
//! `SnapContext` and `SnapSet`). Snapshot ids come from the mons, per pool, and only grow.

use cairn_types::Version;
use serde::{Deserialize, Serialize};

/// What a writer knows of the snapshots of the thing it writes (an RBD image): the newest
/// snapshot id it has seen and the ids of the snapshots that exist, newest first. The OSD keeps
/// an object's old content on the first write after a snapshot it has not seen yet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapContext {
    pub seq: u64,
    pub snaps: Vec<u64>,
}

impl SnapContext {
    /// Ceph's `SnapContext::is_valid`: snapshots newest first, none newer than `seq`.
    pub fn is_valid(&self) -> bool {
        self.snaps.first().is_none_or(|s| *s <= self.seq) && self.snaps.windows(2).all(|w| w[0] > w[1])
    }
}

/// One preserved copy of an object: its content as of the snapshots in `snaps`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloneInfo {
    /// The newest snapshot id the writer knew when the clone was made.
    pub id: u64,
    /// The snapshots this clone serves, newest first (trimmed as snapshots are removed).
    pub snaps: Vec<u64>,
    pub size: u64,
    /// The object's version when it was cloned: two reads at snapshots whose clones (or head)
    /// have the same version saw the same content (what `diff` relies on).
    pub version: Version,
}

/// An object's snapshot bookkeeping, kept with its head.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapSet {
    /// The newest snapshot id any write of this object carried.
    pub seq: u64,
    /// Oldest first.
    pub clones: Vec<CloneInfo>,
}

/// Where a read at snapshot `snap` finds the object's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapTarget {
    Head,
    Clone(u64),
    /// The object did not exist at that snapshot.
    Missing,
}

impl SnapSet {
    /// Ceph's rule: a snapshot newer than every write's context reads the head; otherwise the
    /// oldest clone made at or after it, if that clone serves it.
    pub fn resolve(&self, snap: u64) -> SnapTarget {
        if snap > self.seq {
            return SnapTarget::Head;
        }
        match self.clones.iter().find(|c| c.id >= snap) {
            Some(c) if c.snaps.contains(&snap) => SnapTarget::Clone(c.id),
            _ => SnapTarget::Missing,
        }
    }
}

/// Answer to `ObjOp::ListSnaps`: the clones and the head (if it exists) with their versions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapList {
    pub seq: u64,
    pub clones: Vec<CloneInfo>,
    /// Size and version of the head, `None` if it does not exist.
    pub head: Option<(u64, Version)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clone(id: u64, snaps: &[u64]) -> CloneInfo {
        CloneInfo { id, snaps: snaps.to_vec(), size: 0, version: Version::default() }
    }

    #[test]
    fn resolve_follows_cephs_rules() {
        // Snapshots 2 and 3 taken before the first write after them (clone 3), snapshot 5
        // before another (clone 5); snapshot 4 was removed and trimmed from clone 5.
        let set = SnapSet { seq: 6, clones: vec![clone(3, &[3, 2]), clone(5, &[5])] };
        assert_eq!(set.resolve(2), SnapTarget::Clone(3));
        assert_eq!(set.resolve(3), SnapTarget::Clone(3));
        assert_eq!(set.resolve(4), SnapTarget::Missing);
        assert_eq!(set.resolve(5), SnapTarget::Clone(5));
        assert_eq!(set.resolve(6), SnapTarget::Missing, "object created after snapshot 6's context");
        assert_eq!(set.resolve(7), SnapTarget::Head);
        assert_eq!(SnapSet::default().resolve(1), SnapTarget::Head);
    }

    #[test]
    fn snap_context_validity() {
        assert!(SnapContext { seq: 5, snaps: vec![5, 3, 1] }.is_valid());
        assert!(SnapContext::default().is_valid());
        assert!(!SnapContext { seq: 4, snaps: vec![5] }.is_valid());
        assert!(!SnapContext { seq: 5, snaps: vec![1, 3] }.is_valid());
    }
}
