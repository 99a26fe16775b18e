//! One seed: build the turmoil world (mons, OSDs, the client), step it while injecting faults,
//! heal, and check the outcome.

use crate::faults::Faults;
use crate::history::{self, Op, Violation};
use crate::net::SimNetwork;
use crate::replicas;
use crate::store::SimStore;
use crate::workload::{self, Shared};
use crate::SimConfig;
use cairn_mon::raft::{MonRaft, RaftTiming};
use cairn_mon::service::{Mon, MonConfig, TcpRaftTransport};
use cairn_osd::OsdConfig;
use cairn_proto::Network;
use cairn_store::ObjectStore;
use cairn_types::placement::FailureDomain;
use cairn_types::{MapSettings, MonInfo};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

const FSID: &str = "00000000-0000-4000-8000-00000000c41a";
const MON_PORT: u16 = 6789;
const OSD_PORT: u16 = 6800;
/// Simulated time allowed for cluster setup before the workload starts.
const SETUP_LIMIT: Duration = Duration::from_secs(200);

/// What one seed did and found.
#[derive(Debug, Clone)]
pub struct SimReport {
    pub config: SimConfig,
    pub mons: usize,
    pub violations: Vec<Violation>,
    /// PGs whose acting members hold different objects after quiescence.
    pub replica_mismatches: Vec<String>,
    /// The run never reached the end (setup or recovery did not finish): a liveness problem.
    pub stuck: Option<String>,
    /// Panics and daemons that stopped on an error.
    pub errors: Vec<String>,
    pub history: Vec<Op>,
    pub events: Vec<(u64, String)>,
    /// Hash of the history, the fault log and the final replica contents: equal for two runs
    /// of one seed when the simulation is deterministic.
    pub trace_hash: u64,
    pub simulated: Duration,
    pub real: Duration,
    pub lost_unsynced_txns: u64,
}

impl SimReport {
    /// A safety problem (lost write, non-linearizable read, diverged replicas) or a crash.
    pub fn unsafe_outcome(&self) -> bool {
        !self.violations.is_empty() || !self.replica_mismatches.is_empty() || !self.errors.is_empty()
    }

    pub fn failed(&self) -> bool {
        self.unsafe_outcome() || self.stuck.is_some()
    }

    /// One line.
    pub fn summary(&self) -> String {
        let writes = self
            .history
            .iter()
            .filter(|o| matches!(o.kind, history::Kind::Write { acked: true, .. }))
            .count();
        let failed = self
            .history
            .iter()
            .filter(|o| matches!(o.kind, history::Kind::Write { acked: false, .. }))
            .count();
        let reads = self.history.len() - writes - failed;
        let verdict = if !self.failed() {
            "ok".to_string()
        } else {
            let mut parts = Vec::new();
            parts.extend(self.violations.iter().map(|v| v.kind().to_string()));
            if !self.replica_mismatches.is_empty() {
                parts.push(format!("{} diverged pgs", self.replica_mismatches.len()));
            }
            if !self.errors.is_empty() {
                parts.push(format!("{} daemon errors", self.errors.len()));
            }
            if self.stuck.is_some() {
                parts.push("stuck".into());
            }
            format!("FAIL ({})", parts.join(", "))
        };
        format!(
            "seed {:>5}: {verdict}; {} mon(s), {writes} acked writes, {failed} unacked, {reads} reads, {} faults, {} unsynced txns lost, {:.0}s simulated in {:.2}s, trace {:016x}",
            self.config.seed,
            self.mons,
            self.events.len(),
            self.lost_unsynced_txns,
            self.simulated.as_secs_f64(),
            self.real.as_secs_f64(),
            self.trace_hash
        )
    }

    /// Everything needed to understand a failure, ending with the replay command.
    pub fn details(&self) -> String {
        let mut out = format!("{}\n", self.summary());
        for v in &self.violations {
            out.push_str(&format!("  {v}\n"));
        }
        for m in &self.replica_mismatches {
            out.push_str(&format!("  diverged replicas: {m}\n"));
        }
        for e in &self.errors {
            out.push_str(&format!("  error: {e}\n"));
        }
        if let Some(s) = &self.stuck {
            out.push_str(&format!("  stuck: {s}\n"));
        }
        out.push_str("  faults (simulated time):\n");
        for (ms, what) in &self.events {
            out.push_str(&format!("    {:>8.3}s {what}\n", *ms as f64 / 1000.0));
        }
        out.push_str(&format!("  replay: cargo run -p cairn-sim -- {}\n", self.config.replay_args()));
        out
    }
}

/// An exponentially distributed wait for an event of `rate_per_sec` (a Poisson process).
pub fn exp_delay(rng: &mut StdRng, rate_per_sec: f64) -> Duration {
    let u: f64 = rng.gen_range(f64::EPSILON..1.0);
    Duration::from_secs_f64((-u.ln() / rate_per_sec).min(1e6))
}

thread_local! {
    static PANICS: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
    static SEED: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

/// Runs one seed on a fresh thread (fresh thread-locals: std's hash keys, tokio's context) and
/// returns its report.
pub fn run_seed(cfg: &SimConfig) -> SimReport {
    install_hooks();
    let cfg = cfg.clone();
    let seed = cfg.seed;
    // Built here, not on the simulation thread: its hash maps must not draw from that thread's
    // hash keys, or turning logging on would change the daemons' hash-map order (and the run).
    let subscriber = cfg.verbose.then(|| {
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG").unwrap_or_else(|_| "info".into()),
            )
            .with_timer(SimTime)
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .finish()
    });
    let handle = std::thread::Builder::new()
        .name(format!("sim-seed-{seed}"))
        .stack_size(16 << 20)
        .spawn(move || {
            crate::entropy::seed_thread(Some(seed));
            SEED.with(|s| s.set(Some(seed)));
            let report = match subscriber {
                Some(subscriber) => {
                    tracing::subscriber::with_default(subscriber, || run_on_this_thread(&cfg))
                }
                None => run_on_this_thread(&cfg),
            };
            SEED.with(|s| s.set(None));
            report
        })
        .expect("spawning a simulation thread");
    match handle.join() {
        Ok(report) => report,
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
            panic!("the simulator itself panicked on seed {seed}: {what:?}\nreplay: cargo run -p cairn-sim -- --seed {seed}");
        }
    }
}

/// Prints simulated time in log lines.
struct SimTime;

impl tracing_subscriber::fmt::time::FormatTime for SimTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        let t = turmoil::sim_elapsed().unwrap_or_default();
        write!(w, "{:>9.3}s", t.as_secs_f64())
    }
}

/// A panic hook that records panics on simulation threads (they are failures of the run), and
/// a SIGABRT handler that names the seed when a daemon aborts (an OSD stops the process when a
/// store transaction fails).
fn install_hooks() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let on_sim = SEED.try_with(|s| s.get().is_some()).unwrap_or(false);
            if on_sim {
                let at =
                    info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
                let msg = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panic".into());
                let _ = PANICS.try_with(|p| p.borrow_mut().push(format!("panic{at}: {msg}")));
            }
            previous(info);
        }));
        // SAFETY: installing a handler that only calls async-signal-safe functions (write).
        unsafe {
            libc::signal(libc::SIGABRT, on_abort as *const () as libc::sighandler_t);
        }
    });
}

extern "C" fn on_abort(_signal: libc::c_int) {
    let seed = SEED.try_with(|s| s.get()).ok().flatten();
    let mut buf = [0u8; 160];
    let mut n = 0;
    let mut put = |bytes: &[u8]| {
        for b in bytes {
            if n < buf.len() {
                buf[n] = *b;
                n += 1;
            }
        }
    };
    match seed {
        Some(seed) => {
            put(b"\ncairn-sim: aborted while simulating seed ");
            let mut digits = [0u8; 20];
            let mut i = digits.len();
            let mut v = seed;
            loop {
                i -= 1;
                digits[i] = b'0' + (v % 10) as u8;
                v /= 10;
                if v == 0 {
                    break;
                }
            }
            put(&digits[i..]);
            put(b"; replay: cargo run -p cairn-sim -- --seed ");
            put(&digits[i..]);
            put(b" (plus any non-default options)\n");
        }
        None => put(b"\ncairn-sim: aborted\n"),
    }
    // SAFETY: write(2) is async-signal-safe; buf is valid for n bytes.
    unsafe {
        libc::write(2, buf.as_ptr().cast(), n);
        libc::signal(libc::SIGABRT, libc::SIG_DFL);
    }
}

struct Names {
    mons: Vec<String>,
    osds: Vec<String>,
}

fn names(cfg: &SimConfig) -> Names {
    Names {
        mons: (1..=cfg.mon_count()).map(|i| format!("mon{i}")).collect(),
        osds: (0..cfg.osds).map(|i| format!("osd{i}")).collect(),
    }
}

fn run_on_this_thread(cfg: &SimConfig) -> SimReport {
    let started = Instant::now();
    let _ = PANICS.try_with(|p| p.borrow_mut().clear());
    let names = names(cfg);
    let tmp = temp_dir();
    let net = SimNetwork::new();
    let shared = Arc::new(Shared::default());
    let stores: Vec<SimStore> = (0..cfg.osds)
        .map(|i| SimStore::new(cfg.seed.wrapping_mul(31).wrapping_add(i as u64), cfg.disk))
        .collect();

    let limit =
        SETUP_LIMIT + cfg.workload + cfg.op_timeout * 2 + cfg.quiesce_timeout + Duration::from_secs(60);
    let mut builder = turmoil::Builder::new();
    builder
        .rng_seed(cfg.seed)
        .simulation_duration(limit)
        .tick_duration(cfg.tick)
        .min_message_latency(Duration::ZERO)
        .max_message_latency(cfg.max_latency)
        .tcp_capacity(1 << 16)
        .epoch(std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000));
    let mut sim = builder.build();

    let mut rng = StdRng::seed_from_u64(cfg.seed ^ 0xD21_7E5);
    let mon_addrs: Vec<String> = names.mons.iter().map(|m| format!("{m}:{MON_PORT}")).collect();
    add_mons(&mut sim, cfg, &names, &tmp, &net, &shared, &mut rng);
    add_osds(&mut sim, cfg, &names, &mon_addrs, &stores, &net, &shared);
    sim.client("client", workload::client_main(cfg.clone(), mon_addrs, net.clone(), shared.clone()));

    let mut faults = Faults::new(cfg, &names.mons, &names.osds, rng);
    let outcome = drive(&mut sim, cfg, &mut faults, &stores, &net, &shared);
    let simulated = sim.elapsed();
    drop(sim);
    let mut errors = PANICS.try_with(|p| std::mem::take(&mut *p.borrow_mut())).unwrap_or_default();
    errors.extend(shared.host_errors.lock().expect("errors lock").drain(..));
    let mut stuck = shared.stuck.lock().expect("stuck lock").clone();
    if let Err(e) = outcome {
        stuck.get_or_insert(format!("simulation ended: {e}"));
    }
    let history = shared.history.lock().expect("history lock").clone();
    let events = shared.events.lock().expect("events lock").clone();
    let violations = history::check(&history);
    let final_map = shared.final_map.lock().expect("map lock").clone();
    let (replica_mismatches, contents) = match (&final_map, &stuck) {
        (Some(map), None) => replicas::compare(map, &stores),
        _ => (Vec::new(), Vec::new()),
    };
    let trace_hash = replicas::trace_hash(&history, &events, &contents);
    SimReport {
        config: cfg.clone(),
        mons: names.mons.len(),
        violations,
        replica_mismatches,
        stuck,
        errors,
        history,
        events,
        trace_hash,
        simulated,
        real: started.elapsed(),
        lost_unsynced_txns: stores.iter().map(|s| s.stats().lost).sum(),
    }
}

/// A scratch directory for the mons' redb files (in memory when /dev/shm exists).
fn temp_dir() -> tempfile::TempDir {
    let shm = PathBuf::from("/dev/shm");
    let builder = {
        let mut b = tempfile::Builder::new();
        b.prefix("cairn-sim-");
        b
    };
    if shm.is_dir() {
        if let Ok(d) = builder.tempdir_in(&shm) {
            return d;
        }
    }
    builder.tempdir().expect("creating a temporary directory")
}

fn add_mons(
    sim: &mut turmoil::Sim<'_>,
    cfg: &SimConfig,
    names: &Names,
    tmp: &tempfile::TempDir,
    net: &Arc<SimNetwork>,
    shared: &Arc<Shared>,
    rng: &mut StdRng,
) {
    let infos: Vec<MonInfo> = names
        .mons
        .iter()
        .enumerate()
        .map(|(i, name)| MonInfo {
            node_id: i as u64 + 1,
            name: ((b'a' + i as u8) as char).to_string(),
            addr: format!("{name}:{MON_PORT}"),
        })
        .collect();
    let settings = MapSettings {
        default_failure_domain: FailureDomain::Host,
        default_size: 3,
        default_min_size: 2,
        default_pg_num: cfg.pg_num,
        down_out_interval_secs: 600,
        allow_pool_delete: true,
    };
    // openraft draws each election timeout from [min, max) with the thread's RNG, which the
    // simulation cannot seed; a one-millisecond range makes it deterministic, and the seed
    // spreads the mons apart so elections still race differently per seed.
    let mut bases: Vec<u64> =
        (0..infos.len() as u64).map(|i| 700 + 350 * i + rng.gen_range(0..300)).collect();
    bases.rotate_left(rng.gen_range(0..infos.len().max(1)));
    for (i, info) in infos.iter().enumerate() {
        let host = MonHost {
            cfg: MonConfig {
                node_id: info.node_id,
                fsid: FSID.into(),
                mons: infos.clone(),
                settings: settings.clone(),
                min_down_reporters: 2,
                osd_report_timeout: Duration::from_secs(900),
                // The simulation runs without authentication (its RNG-free determinism would not
                // survive random nonces and wall-clock ticket expiry).
                auth: cairn_mon::auth::MonAuthConfig::none(),
            },
            timing: RaftTiming {
                heartbeat_ms: 200,
                election_timeout_min_ms: bases[i],
                election_timeout_max_ms: bases[i] + 1,
            },
            dir: tmp.path().join(&names.mons[i]),
            net: net.clone(),
            shared: shared.clone(),
        };
        sim.host(names.mons[i].as_str(), move || host.clone().run());
    }
}

#[derive(Clone)]
struct MonHost {
    cfg: MonConfig,
    timing: RaftTiming,
    dir: PathBuf,
    net: Arc<SimNetwork>,
    shared: Arc<Shared>,
}

impl MonHost {
    async fn run(self) -> turmoil::Result {
        let id = self.cfg.node_id;
        if let Err(e) = self.serve().await {
            self.shared.host_errors.lock().expect("errors lock").push(format!("mon {id} stopped: {e}"));
        }
        Ok(())
    }

    async fn serve(&self) -> Result<(), String> {
        let net: Arc<dyn Network> = self.net.clone();
        std::fs::create_dir_all(&self.dir).map_err(|e| e.to_string())?;
        let listener = net.bind(&format!("0.0.0.0:{MON_PORT}")).await.map_err(|e| e.to_string())?;
        let peers: BTreeMap<u64, String> =
            self.cfg.mons.iter().map(|m| (m.node_id, m.addr.clone())).collect();
        let raft = MonRaft::open(
            self.cfg.node_id,
            &self.dir,
            peers,
            TcpRaftTransport::with_network(
                net.clone(),
                cairn_proto::ClientAuth::none(
                    "mon.".parse().map_err(|e: cairn_types::Error| e.to_string())?,
                    net.clone(),
                ),
            ),
            self.timing,
        )
        .await
        .map_err(|e| e.to_string())?;
        let mon = Mon::new(self.cfg.clone(), raft.clone());
        tokio::spawn(cairn_proto::rpc::serve(listener, mon.clone(), mon.clone()));
        raft.bootstrap_if_fresh().await.map_err(|e| e.to_string())?;
        tokio::spawn(mon.tick());
        std::future::pending::<()>().await;
        Ok(())
    }
}

fn add_osds(
    sim: &mut turmoil::Sim<'_>,
    cfg: &SimConfig,
    names: &Names,
    mon_addrs: &[String],
    stores: &[SimStore],
    net: &Arc<SimNetwork>,
    shared: &Arc<Shared>,
) {
    for (i, name) in names.osds.iter().enumerate() {
        let mut osd_cfg = OsdConfig::new(i as u32, FSID, mon_addrs.to_vec());
        osd_cfg.public_addr = format!("{name}:{OSD_PORT}");
        osd_cfg.host = name.clone();
        osd_cfg.capacity_bytes = 10 << 30;
        osd_cfg.heartbeat_interval = Duration::from_secs(1);
        osd_cfg.heartbeat_grace = cfg.heartbeat_grace;
        let host =
            OsdHost { cfg: osd_cfg, store: stores[i].clone(), net: net.clone(), shared: shared.clone() };
        sim.host(name.as_str(), move || host.clone().run());
    }
}

#[derive(Clone)]
struct OsdHost {
    cfg: OsdConfig,
    store: SimStore,
    net: Arc<SimNetwork>,
    shared: Arc<Shared>,
}

impl OsdHost {
    async fn run(self) -> turmoil::Result {
        let id = self.cfg.id;
        let net: Arc<dyn Network> = self.net.clone();
        let result = match net.bind(&format!("0.0.0.0:{OSD_PORT}")).await {
            Ok(listener) => {
                let store: Arc<dyn ObjectStore> = Arc::new(self.store.clone());
                cairn_osd::run(self.cfg.clone(), store, listener, net).await.map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = result {
            // Not a failure of the run by itself (an OSD gives up booting after a long mon
            // outage, as the real daemon does); it is restarted when the run heals.
            self.shared.event(format!("osd.{id} exited: {e}"));
        }
        Ok(())
    }
}

/// Steps the world until the client finishes, injecting faults during the workload phase and
/// healing everything at its end.
fn drive(
    sim: &mut turmoil::Sim<'_>,
    cfg: &SimConfig,
    faults: &mut Faults,
    stores: &[SimStore],
    net: &SimNetwork,
    shared: &Shared,
) -> Result<(), String> {
    let mut healed = false;
    loop {
        let done = sim.step().map_err(|e| e.to_string())?;
        if done {
            return Ok(());
        }
        let now = sim.elapsed();
        let Some(start) = *shared.workload_start.lock().expect("start lock") else {
            if now > SETUP_LIMIT {
                return Err("setup did not finish".into());
            }
            continue;
        };
        if now < start + cfg.workload {
            faults.tick(sim, now, stores, net, shared);
        } else if !healed {
            healed = true;
            faults.heal(sim, now, stores, shared);
        }
    }
}
