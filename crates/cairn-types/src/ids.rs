//! Identifiers: pools, placement groups, OSDs, objects and versions.

use serde::{Deserialize, Serialize};
use std::fmt;

pub type PoolId = u32;
pub type OsdId = u32;
pub type Epoch = u64;

/// Longest object name accepted (Ceph's `osd_max_object_name_len`).
pub const MAX_OBJECT_NAME_BYTES: usize = 2048;
/// Longest namespace accepted (Ceph's `osd_max_object_namespace_len`).
pub const MAX_NAMESPACE_BYTES: usize = 256;
/// Largest object (Ceph's `osd_max_object_size`, 128 MiB).
pub const MAX_OBJECT_SIZE_BYTES: u64 = 128 << 20;
/// Largest single write or read payload accepted in one op (Ceph's `osd_max_write_size`, 90 MiB).
pub const MAX_OP_PAYLOAD_BYTES: u64 = 90 << 20;
/// Largest xattr value.
pub const MAX_XATTR_VALUE_BYTES: usize = 64 << 10;

/// A placement group: pool and seed (`pg = stable_mod(hash(name), pg_num)`), printed `1.1f` as in Ceph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PgId {
    pub pool: PoolId,
    pub seed: u32,
}

impl fmt::Display for PgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:x}", self.pool, self.seed)
    }
}

impl std::str::FromStr for PgId {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || crate::Error::einval(format!("invalid pgid '{s}'"));
        let (pool, seed) = s.split_once('.').ok_or_else(bad)?;
        Ok(PgId {
            pool: pool.parse().map_err(|_| bad())?,
            seed: u32::from_str_radix(seed, 16).map_err(|_| bad())?,
        })
    }
}

/// An object's name within a pool. The namespace is reserved room for Ceph's pool namespaces
/// (empty = default namespace).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectId {
    pub namespace: String,
    pub name: String,
}

impl ObjectId {
    pub fn new(name: impl Into<String>) -> Self {
        ObjectId { namespace: String::new(), name: name.into() }
    }

    /// Checks name and namespace lengths; Ceph answers ENAMETOOLONG for over-long names.
    pub fn validate(&self) -> crate::Result<()> {
        if self.name.is_empty() {
            return Err(crate::Error::einval("object name is empty"));
        }
        if self.name.len() > MAX_OBJECT_NAME_BYTES {
            return Err(crate::Error::new(
                crate::errno::ENAMETOOLONG,
                format!(
                    "object name is {} bytes, longer than the limit of {MAX_OBJECT_NAME_BYTES}",
                    self.name.len()
                ),
            ));
        }
        if self.namespace.len() > MAX_NAMESPACE_BYTES {
            return Err(crate::Error::new(
                crate::errno::ENAMETOOLONG,
                format!("namespace is longer than the limit of {MAX_NAMESPACE_BYTES} bytes"),
            ));
        }
        Ok(())
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// A write's place in a PG's history: the epoch its interval started in, then a sequence number
/// that only grows within the PG. Ordered lexicographically; unique per PG (see docs/replication.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Version {
    pub epoch: Epoch,
    pub seq: u64,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}'{}", self.epoch, self.seq)
    }
}
