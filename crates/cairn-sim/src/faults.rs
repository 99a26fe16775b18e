//! The fault schedule of one run: a Poisson process per fault kind, drawn from the seed, applied
//! to the turmoil world between steps during the workload phase, and the heal at its end.

use crate::net::SimNetwork;
use crate::run::exp_delay;
use crate::store::SimStore;
use crate::workload::Shared;
use crate::SimConfig;
use rand::rngs::StdRng;
use rand::Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The fault schedule: a Poisson process per fault kind, drawn from the seed.
pub struct Faults {
    rng: StdRng,
    mons: Vec<String>,
    osds: Vec<String>,
    osd_crash: Next,
    mon_crash: Next,
    partition: Next,
    conn_reset: Next,
    spike: Next,
    /// Crashed hosts and when they restart.
    down: BTreeMap<String, Duration>,
    /// Held links (host pairs, ordered) with how many partitions hold each.
    held: BTreeMap<(String, String), usize>,
    /// Partitions in force: when each ends and the links it holds.
    partitions: Vec<(Duration, Vec<(String, String)>)>,
    /// Slowed links and when they recover.
    slow: Vec<(Duration, (String, String))>,
    max_osds_down: usize,
    down_for: Duration,
    partition_for: Duration,
    spike_latency: Duration,
    max_latency: Duration,
}

/// The next firing time of one fault kind (`None`: never).
struct Next {
    rate_per_sec: f64,
    at: Option<Duration>,
}

impl Next {
    fn due(&mut self, now: Duration, rng: &mut StdRng) -> bool {
        if self.rate_per_sec <= 0.0 {
            return false;
        }
        match self.at {
            None => {
                self.at = Some(now + exp_delay(rng, self.rate_per_sec));
                false
            }
            Some(at) if now >= at => {
                self.at = Some(now + exp_delay(rng, self.rate_per_sec));
                true
            }
            Some(_) => false,
        }
    }
}

fn next(per_min: f64) -> Next {
    Next { rate_per_sec: per_min / 60.0, at: None }
}

fn pair(a: &str, b: &str) -> (String, String) {
    if a < b {
        (a.to_string(), b.to_string())
    } else {
        (b.to_string(), a.to_string())
    }
}

impl Faults {
    pub fn new(cfg: &SimConfig, mons: &[String], osds: &[String], rng: StdRng) -> Faults {
        let f = &cfg.faults;
        Faults {
            rng,
            mons: mons.to_vec(),
            osds: osds.to_vec(),
            osd_crash: next(f.osd_crash_per_min),
            mon_crash: next(f.mon_crash_per_min),
            partition: next(f.partition_per_min),
            conn_reset: next(f.conn_reset_per_min),
            spike: next(f.latency_spike_per_min),
            down: BTreeMap::new(),
            held: BTreeMap::new(),
            partitions: Vec::new(),
            slow: Vec::new(),
            max_osds_down: f.max_osds_down,
            down_for: f.down_for,
            partition_for: f.partition_for,
            spike_latency: f.spike_latency,
            max_latency: cfg.max_latency,
        }
    }

    fn all_hosts(&self) -> Vec<String> {
        let mut v: Vec<String> = self.mons.iter().chain(self.osds.iter()).cloned().collect();
        v.push("client".into());
        v
    }

    fn pick(&mut self, from: &[String]) -> String {
        from[self.rng.gen_range(0..from.len())].clone()
    }

    fn duration_up_to(&mut self, max: Duration) -> Duration {
        let min = Duration::from_millis(500);
        if max <= min {
            return min;
        }
        self.rng.gen_range(min..=max)
    }

    pub fn tick(
        &mut self,
        sim: &mut turmoil::Sim<'_>,
        now: Duration,
        stores: &[SimStore],
        net: &SimNetwork,
        shared: &Shared,
    ) {
        self.restart_due(sim, now, stores, shared);
        self.end_partitions(sim, now, shared, false);
        self.end_spikes(sim, now, false);
        if self.osd_crash.due(now, &mut self.rng) {
            self.crash_osd(sim, now, stores, shared);
        }
        if self.mon_crash.due(now, &mut self.rng) {
            self.crash_mon(sim, now, shared);
        }
        if self.partition.due(now, &mut self.rng) {
            self.start_partition(sim, now, shared);
        }
        if self.conn_reset.due(now, &mut self.rng) {
            let hosts = self.all_hosts();
            let a = self.pick(&hosts);
            let b = self.pick(&hosts);
            if a != b {
                let n = net.reset_connections(sim.lookup(a.as_str()), sim.lookup(b.as_str()));
                shared.event_at(now, format!("reset connections {a} <-> {b} ({n} ends)"));
            }
        }
        if self.spike.due(now, &mut self.rng) {
            let hosts = self.all_hosts();
            let a = self.pick(&hosts);
            let b = self.pick(&hosts);
            if a != b {
                let latency = self.rng.gen_range(self.max_latency..=self.spike_latency.max(self.max_latency));
                sim.set_link_max_message_latency(a.as_str(), b.as_str(), latency);
                let until = now + self.duration_up_to(Duration::from_secs(5));
                shared.event_at(now, format!("slow link {a} <-> {b} (up to {latency:?})"));
                self.slow.push((until, (a, b)));
            }
        }
    }

    fn crash_osd(&mut self, sim: &mut turmoil::Sim<'_>, now: Duration, stores: &[SimStore], shared: &Shared) {
        let down = self.osds.iter().filter(|o| self.down.contains_key(*o)).count();
        if down >= self.max_osds_down {
            return;
        }
        let up: Vec<String> = self.osds.iter().filter(|o| !self.down.contains_key(*o)).cloned().collect();
        if up.is_empty() {
            return;
        }
        let name = self.pick(&up);
        let i: usize = name.trim_start_matches("osd").parse().unwrap_or(0);
        if sim.is_host_running(name.as_str()) {
            sim.crash(name.as_str());
        }
        let lost = stores[i].crash();
        let restart = now + self.duration_up_to(self.down_for);
        shared.event_at(
            now,
            format!(
                "crash osd.{i} ({lost} unsynced transactions lost), restart at {:.3}s",
                restart.as_secs_f64()
            ),
        );
        self.down.insert(name, restart);
    }

    fn crash_mon(&mut self, sim: &mut turmoil::Sim<'_>, now: Duration, shared: &Shared) {
        // Keep a majority of a 3-mon group; a single mon may go down (the cluster then waits).
        let down = self.mons.iter().filter(|m| self.down.contains_key(*m)).count();
        let allowed = if self.mons.len() == 1 { 1 } else { (self.mons.len() - 1) / 2 };
        if down >= allowed {
            return;
        }
        let up: Vec<String> = self.mons.iter().filter(|m| !self.down.contains_key(*m)).cloned().collect();
        let name = self.pick(&up);
        if sim.is_host_running(name.as_str()) {
            sim.crash(name.as_str());
        }
        let restart = now + self.duration_up_to(self.down_for);
        shared.event_at(now, format!("crash {name}, restart at {:.3}s", restart.as_secs_f64()));
        self.down.insert(name, restart);
    }

    fn restart(
        &self,
        sim: &mut turmoil::Sim<'_>,
        now: Duration,
        name: &str,
        stores: &[SimStore],
        shared: &Shared,
    ) {
        if let Some(i) = name.strip_prefix("osd").and_then(|n| n.parse::<usize>().ok()) {
            stores[i].crash();
        }
        sim.bounce(name);
        shared.event_at(now, format!("restart {name}"));
    }

    fn restart_due(
        &mut self,
        sim: &mut turmoil::Sim<'_>,
        now: Duration,
        stores: &[SimStore],
        shared: &Shared,
    ) {
        let due: Vec<String> =
            self.down.iter().filter(|(_, at)| **at <= now).map(|(n, _)| n.clone()).collect();
        for name in due {
            self.down.remove(&name);
            self.restart(sim, now, &name, stores, shared);
        }
    }

    fn start_partition(&mut self, sim: &mut turmoil::Sim<'_>, now: Duration, shared: &Shared) {
        let hosts = self.all_hosts();
        let kind = self.rng.gen_range(0..4);
        let (what, links): (String, Vec<(String, String)>) = match kind {
            // One host cut off from everyone.
            0 => {
                let a = self.pick(&hosts);
                let links = hosts.iter().filter(|h| **h != a).map(|h| pair(&a, h)).collect();
                (format!("isolate {a}"), links)
            }
            // An OSD cut off from the mons (it keeps talking to its peers and the client).
            1 => {
                let osds = self.osds.clone();
                let a = self.pick(&osds);
                let links = self.mons.iter().map(|m| pair(&a, m)).collect();
                (format!("partition {a} from the mons"), links)
            }
            // Two OSDs, or any two hosts.
            _ => {
                let pool = if kind == 2 { self.osds.clone() } else { hosts.clone() };
                let a = self.pick(&pool);
                let b = self.pick(&pool);
                if a == b {
                    return;
                }
                (format!("partition {a} <-> {b}"), vec![pair(&a, &b)])
            }
        };
        for link in &links {
            let count = self.held.entry(link.clone()).or_insert(0);
            if *count == 0 {
                sim.hold(link.0.as_str(), link.1.as_str());
            }
            *count += 1;
        }
        let until = now + self.duration_up_to(self.partition_for);
        shared.event_at(now, format!("{what} until {:.3}s", until.as_secs_f64()));
        self.partitions.push((until, links));
    }

    fn end_partitions(&mut self, sim: &mut turmoil::Sim<'_>, now: Duration, shared: &Shared, all: bool) {
        let (ended, kept): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.partitions).into_iter().partition(|(until, _)| all || *until <= now);
        self.partitions = kept;
        for (_, links) in ended {
            for link in links {
                let count = self.held.entry(link.clone()).or_insert(1);
                *count -= 1;
                if *count == 0 {
                    self.held.remove(&link);
                    sim.release(link.0.as_str(), link.1.as_str());
                }
            }
            if !all {
                shared.event_at(now, "a partition healed".into());
            }
        }
    }

    fn end_spikes(&mut self, sim: &mut turmoil::Sim<'_>, now: Duration, all: bool) {
        let max = self.max_latency;
        self.slow.retain(|(until, (a, b))| {
            if all || *until <= now {
                sim.set_link_max_message_latency(a.as_str(), b.as_str(), max);
                false
            } else {
                true
            }
        });
    }

    /// End of the workload phase: every partition and slow link ends, every daemon runs.
    pub fn heal(&mut self, sim: &mut turmoil::Sim<'_>, now: Duration, stores: &[SimStore], shared: &Shared) {
        self.end_partitions(sim, now, shared, true);
        self.end_spikes(sim, now, true);
        let names: BTreeSet<String> = self.mons.iter().chain(self.osds.iter()).cloned().collect();
        for name in names {
            if self.down.remove(&name).is_some() || !sim.is_host_running(name.as_str()) {
                self.restart(sim, now, &name, stores, shared);
            }
        }
        shared.event_at(now, "heal: network repaired, every daemon running".into());
    }
}
