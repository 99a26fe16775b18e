//! The object storage daemon. An OSD stores PG replicas in its [`cairn_store::ObjectStore`],
//! serves client ops for the PGs it is primary of, replicates writes to the other members of
//! each PG's acting set, and peers and recovers PGs when their interval changes
//! (docs/replication.md).

mod admin;
pub mod auth;
mod backfill;
pub mod cls;
mod heartbeat;
pub mod lease;
pub mod ops;
mod osd;
mod peering;
pub mod pg;
mod primary;
mod replica;
mod service;
mod snaptrim;

pub use auth::OsdAuthConfig;
pub use osd::{run, Osd, OsdConfig};
