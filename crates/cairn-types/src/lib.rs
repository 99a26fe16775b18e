//! Cairn's shared vocabulary: identifiers, errors, the cluster map and placement.

pub mod auth;
pub mod conf;
pub mod error;
pub mod ids;
pub mod map;
pub mod placement;
pub mod stats;

pub use error::{errno, Error, Result};
pub use ids::*;
pub use map::*;
