//! The knobs of one simulated run. Every field has a default chosen so that one seed takes well
//! under a second of real time in a debug build; [`SimConfig::replay_args`] prints the
//! command line that reproduces a run.

use crate::store::DiskTiming;
use std::time::Duration;

/// How often each fault starts, per simulated minute of the workload phase, and how long it
/// lasts.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRates {
    /// Kill an OSD (losing its unsynced transactions); it restarts after `down_for`.
    pub osd_crash_per_min: f64,
    /// Kill a mon (its redb files survive: see docs/simulation.md); it restarts after `down_for`.
    pub mon_crash_per_min: f64,
    /// Partition two hosts, or one host from everyone, for up to `partition_for`.
    pub partition_per_min: f64,
    /// Break every established connection between two hosts.
    pub conn_reset_per_min: f64,
    /// Make one link slow (up to `spike_latency`) for a few seconds.
    pub latency_spike_per_min: f64,
    /// Mark an OSD out (or an out OSD back in) through the mons: the PGs remap and backfill.
    pub map_change_per_min: f64,
    /// Most OSDs crashed at once.
    pub max_osds_down: usize,
    /// How long a crashed daemon stays down (uniform in 0.5 s ..= this).
    pub down_for: Duration,
    /// How long a partition lasts (uniform in 0.5 s ..= this).
    pub partition_for: Duration,
    pub spike_latency: Duration,
}

impl Default for FaultRates {
    fn default() -> Self {
        FaultRates {
            osd_crash_per_min: 6.0,
            mon_crash_per_min: 2.0,
            partition_per_min: 6.0,
            conn_reset_per_min: 4.0,
            latency_spike_per_min: 4.0,
            map_change_per_min: 3.0,
            max_osds_down: 2,
            down_for: Duration::from_secs(8),
            partition_for: Duration::from_secs(10),
            spike_latency: Duration::from_millis(800),
        }
    }
}

impl FaultRates {
    /// No faults at all (a smoke run).
    pub fn none() -> Self {
        FaultRates {
            osd_crash_per_min: 0.0,
            mon_crash_per_min: 0.0,
            partition_per_min: 0.0,
            conn_reset_per_min: 0.0,
            latency_spike_per_min: 0.0,
            map_change_per_min: 0.0,
            ..FaultRates::default()
        }
    }
}

/// One simulated run.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    pub seed: u64,
    /// 1 or 3 mons; `None`: the seed chooses (one seed in three runs 3).
    pub mons: Option<usize>,
    pub osds: usize,
    pub pg_num: u32,
    /// Objects the client writes and reads.
    pub objects: usize,
    /// Concurrent client tasks (several may work on one object at once).
    pub workers: usize,
    /// Simulated length of the workload phase, during which faults happen.
    pub workload: Duration,
    /// After healing: longest wait for every PG to be active+clean on all OSDs.
    pub quiesce_timeout: Duration,
    /// The client's `rados osd op timeout`.
    pub op_timeout: Duration,
    /// turmoil's step: every host runs this much simulated time per step.
    pub tick: Duration,
    /// Every message's latency is drawn from turmoil's exponential distribution, capped at this
    /// (so messages on different connections overtake each other).
    pub max_latency: Duration,
    pub faults: FaultRates,
    pub disk: DiskTiming,
    /// `osd heartbeat grace`: how long a silent OSD takes to be reported.
    pub heartbeat_grace: Duration,
    /// Log every daemon's tracing output to stderr (filter from `CAIRN_LOG`, default info).
    pub verbose: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 0,
            mons: None,
            osds: 4,
            pg_num: 8,
            objects: 6,
            workers: 3,
            workload: Duration::from_secs(20),
            quiesce_timeout: Duration::from_secs(120),
            op_timeout: Duration::from_secs(15),
            tick: Duration::from_millis(1),
            max_latency: Duration::from_millis(20),
            faults: FaultRates::default(),
            disk: DiskTiming::default(),
            heartbeat_grace: Duration::from_secs(6),
            verbose: false,
        }
    }
}

impl SimConfig {
    /// The number of mons this run uses.
    pub fn mon_count(&self) -> usize {
        self.mons.unwrap_or(if self.seed % 3 == 2 { 3 } else { 1 })
    }

    /// Arguments to `cargo run -p cairn-sim --` that replay this exact run.
    pub fn replay_args(&self) -> String {
        let d = SimConfig::default();
        let f = &self.faults;
        let no_faults = *f == FaultRates::none();
        let df = if no_faults { f } else { &d.faults };
        let mut out = format!("--seed {}", self.seed);
        if no_faults {
            out.push_str(" --no-faults");
        }
        let mut opt = |name: &str, differs: bool, value: String| {
            if differs {
                out.push_str(&format!(" --{name} {value}"));
            }
        };
        opt("mons", self.mons != d.mons, self.mons.map_or(String::new(), |m| m.to_string()));
        opt("osds", self.osds != d.osds, self.osds.to_string());
        opt("pg-num", self.pg_num != d.pg_num, self.pg_num.to_string());
        opt("objects", self.objects != d.objects, self.objects.to_string());
        opt("workers", self.workers != d.workers, self.workers.to_string());
        opt("workload-secs", self.workload != d.workload, self.workload.as_secs().to_string());
        opt(
            "quiesce-secs",
            self.quiesce_timeout != d.quiesce_timeout,
            self.quiesce_timeout.as_secs().to_string(),
        );
        opt("tick-ms", self.tick != d.tick, self.tick.as_millis().to_string());
        opt("max-latency-ms", self.max_latency != d.max_latency, self.max_latency.as_millis().to_string());
        opt(
            "osd-crash-per-min",
            f.osd_crash_per_min != df.osd_crash_per_min,
            f.osd_crash_per_min.to_string(),
        );
        opt(
            "mon-crash-per-min",
            f.mon_crash_per_min != df.mon_crash_per_min,
            f.mon_crash_per_min.to_string(),
        );
        opt(
            "partition-per-min",
            f.partition_per_min != df.partition_per_min,
            f.partition_per_min.to_string(),
        );
        opt(
            "conn-reset-per-min",
            f.conn_reset_per_min != df.conn_reset_per_min,
            f.conn_reset_per_min.to_string(),
        );
        opt(
            "latency-spike-per-min",
            f.latency_spike_per_min != df.latency_spike_per_min,
            f.latency_spike_per_min.to_string(),
        );
        opt(
            "map-change-per-min",
            f.map_change_per_min != df.map_change_per_min,
            f.map_change_per_min.to_string(),
        );
        opt("max-osds-down", f.max_osds_down != df.max_osds_down, f.max_osds_down.to_string());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_args_name_only_what_differs_from_the_defaults() {
        assert_eq!(SimConfig { seed: 5, ..SimConfig::default() }.replay_args(), "--seed 5");
        let quiet = SimConfig { seed: 6, faults: FaultRates::none(), ..SimConfig::default() };
        assert_eq!(quiet.replay_args(), "--seed 6 --no-faults");
        let mut custom =
            SimConfig { seed: 7, mons: Some(3), workload: Duration::from_secs(40), ..SimConfig::default() };
        custom.faults.partition_per_min = 12.0;
        assert_eq!(custom.replay_args(), "--seed 7 --mons 3 --workload-secs 40 --partition-per-min 12");
    }
}
