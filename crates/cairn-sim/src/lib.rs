//! Deterministic simulation of a whole Cairn cluster — 1 or 3 mons, 4 OSDs and a client — in one
//! process and one thread, with crashes that lose unsynced data, restarts, partitions, message
//! delay and reordering, broken connections and map changes. After each run it checks that no
//! acknowledged write was lost, that every read returned a linearizable value (per object), and
//! that the acting members of every PG hold identical objects. Every failure prints its seed and
//! the command that replays it. `docs/simulation.md` is the user's guide.
//!
//! # Why turmoil, and what stands in for its filesystem
//!
//! [turmoil](https://docs.rs/turmoil) runs every host as its own single-threaded tokio runtime
//! on paused, simulated time, over a simulated TCP that keeps each connection's bytes in order
//! but gives every message a seeded random latency (so messages on different connections are
//! reordered), and that can hold traffic between hosts (a partition), crash a host (dropping
//! all its tasks and sockets) and restart it. The daemons run unchanged: they only needed their
//! network to be a parameter (`cairn_proto::net::Network`), which [`net::SimNetwork`] implements
//! over `turmoil::net`.
//!
//! turmoil's own simulated filesystem (`unstable-fs`) would need the stores to do their I/O
//! through it; instead each OSD gets a [`store::SimStore`]: Cairn's in-memory store behind a
//! seeded random commit delay that forgets, on a crash, every transaction not yet durable. That
//! is the exact fault the replication protocol must survive — a store loses an unsynced suffix
//! of its transactions, never part of one — at the level of the `ObjectStore` contract, without
//! simulating redb's pages. The mons keep their real redb files in a per-run temporary directory;
//! a simulated mon crash drops the process but not the files, so for the mons a crash behaves as
//! if every commit was synced (their Raft log is openraft's business, not the protocol under
//! test).
//!
//! # Determinism
//!
//! A seed fixes turmoil's RNG (latencies), the fault schedule, the disks' delays, the client's
//! operations and the mons' election timeouts. Two more sources are pinned here: std's hash-map
//! keys and tokio's runtime seeds come from libc `getrandom`, which a binary that runs
//! simulations replaces with [`deterministic_getrandom!`] (see [`entropy`]); and each seed runs on
//! a fresh thread. What remains outside the seed: tokio's `select!` branch choice (its per-runtime
//! RNG is drawn from a process-wide counter; building with `--cfg tokio_unstable` lets turmoil
//! seed it), the order in which the mons' redb work on tokio's blocking threads finishes relative
//! to other ready tasks, and wall-clock timestamps (mtimes, which no check looks at).
//! `a_seed_replays_identically` in the tests checks the result: same seed, same trace hash.

pub mod config;
pub mod entropy;
mod faults;
pub mod history;
pub mod net;
mod replicas;
mod run;
pub mod store;
mod workload;

pub use config::{FaultRates, SimConfig};
pub use run::{run_seed, SimReport};
