//! `cairn-sim`: run simulated seeds. `cargo run -p cairn-sim -- --seeds 1000` explores, `--seed S`
//! replays one (add `--verbose` for every daemon's log, `--history` for the client's operations).
//!
//! Each seed of a `--seeds` run is simulated in a child process (`--seed S` of this binary), so
//! a batch run and a replay start from the same process state (tokio seeds its runtimes from a
//! process-wide counter) and a daemon that aborts takes down only its seed.

use cairn_sim::{FaultRates, SimConfig};
use clap::Parser;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

cairn_sim::deterministic_getrandom!();

#[derive(Parser, Debug)]
#[command(name = "cairn-sim", about = "Deterministic simulation of a Cairn cluster under faults")]
struct Args {
    /// Run this one seed (and print its details).
    #[arg(long)]
    seed: Option<u64>,
    /// How many seeds to run, from --start.
    #[arg(long, default_value_t = 200)]
    seeds: u64,
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Simulations at once (default: the number of CPUs).
    #[arg(long)]
    threads: Option<usize>,
    /// 1 or 3 mons (default: the seed chooses, one seed in three runs 3).
    #[arg(long)]
    mons: Option<usize>,
    #[arg(long)]
    osds: Option<usize>,
    #[arg(long)]
    pg_num: Option<u32>,
    #[arg(long)]
    objects: Option<usize>,
    #[arg(long)]
    workers: Option<usize>,
    /// Simulated seconds of workload (faults happen during it).
    #[arg(long)]
    workload_secs: Option<u64>,
    /// Simulated seconds the healed cluster has to become clean.
    #[arg(long)]
    quiesce_secs: Option<u64>,
    #[arg(long)]
    tick_ms: Option<u64>,
    #[arg(long)]
    max_latency_ms: Option<u64>,
    #[arg(long)]
    osd_crash_per_min: Option<f64>,
    #[arg(long)]
    mon_crash_per_min: Option<f64>,
    #[arg(long)]
    partition_per_min: Option<f64>,
    #[arg(long)]
    conn_reset_per_min: Option<f64>,
    #[arg(long)]
    latency_spike_per_min: Option<f64>,
    #[arg(long)]
    map_change_per_min: Option<f64>,
    #[arg(long)]
    max_osds_down: Option<usize>,
    /// No faults at all.
    #[arg(long)]
    no_faults: bool,
    /// Every daemon's tracing output on stderr, with simulated time (filter: CAIRN_LOG).
    #[arg(long)]
    verbose: bool,
    /// Print the client's operations of a --seed run.
    #[arg(long)]
    history: bool,
    /// With --seed: simulate it a second time in a new process and compare the trace hashes.
    /// With --seeds: do that for every seed.
    #[arg(long)]
    twice: bool,
}

fn config(a: &Args) -> SimConfig {
    let mut c = SimConfig { mons: a.mons, verbose: a.verbose, ..SimConfig::default() };
    if a.no_faults {
        c.faults = FaultRates::none();
    }
    let f = &mut c.faults;
    macro_rules! set {
        ($field:expr, $arg:expr) => {
            if let Some(v) = $arg {
                $field = v;
            }
        };
    }
    set!(f.osd_crash_per_min, a.osd_crash_per_min);
    set!(f.mon_crash_per_min, a.mon_crash_per_min);
    set!(f.partition_per_min, a.partition_per_min);
    set!(f.conn_reset_per_min, a.conn_reset_per_min);
    set!(f.latency_spike_per_min, a.latency_spike_per_min);
    set!(f.map_change_per_min, a.map_change_per_min);
    set!(f.max_osds_down, a.max_osds_down);
    set!(c.osds, a.osds);
    set!(c.pg_num, a.pg_num);
    set!(c.objects, a.objects);
    set!(c.workers, a.workers);
    set!(c.workload, a.workload_secs.map(Duration::from_secs));
    set!(c.quiesce_timeout, a.quiesce_secs.map(Duration::from_secs));
    set!(c.tick, a.tick_ms.map(Duration::from_millis));
    set!(c.max_latency, a.max_latency_ms.map(Duration::from_millis));
    c
}

fn main() -> ExitCode {
    let args = Args::parse();
    let base = config(&args);
    if !cairn_sim::entropy::hooked() {
        eprintln!("warning: getrandom is not hooked; runs of one seed may differ");
    }
    match args.seed {
        Some(seed) => one_seed(&args, SimConfig { seed, ..base }),
        None => many_seeds(&args, &base),
    }
}

/// Simulates one seed in this process and prints its details.
fn one_seed(args: &Args, cfg: SimConfig) -> ExitCode {
    let report = cairn_sim::run_seed(&cfg);
    println!("{}", report.details());
    if args.history {
        for op in &report.history {
            println!("  obj-{} {op}", op.obj);
        }
    }
    if args.twice {
        let again = child(&cfg);
        let hash = trace_hash(&again.output);
        let same = hash == Some(report.trace_hash);
        println!(
            "second run (new process): trace {} ({})",
            hash.map_or("?".into(), |h| format!("{h:016x}")),
            if same { "identical" } else { "DIFFERENT" }
        );
        if !same {
            return ExitCode::FAILURE;
        }
    }
    if report.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// What a child process said about one seed.
struct ChildRun {
    seed: u64,
    passed: bool,
    output: String,
    /// Whether a second run (with --twice) gave the same trace hash.
    replayed_identically: Option<bool>,
}

fn child(cfg: &SimConfig) -> ChildRun {
    let exe = std::env::current_exe().expect("the path of this program");
    let args: Vec<String> = cfg.replay_args().split_whitespace().map(String::from).collect();
    match Command::new(exe).args(&args).output() {
        Ok(out) => {
            let mut output = String::from_utf8_lossy(&out.stdout).trim_end().to_string();
            let passed = out.status.success();
            if out.status.code().is_none() || (!passed && output.is_empty()) {
                let stderr = String::from_utf8_lossy(&out.stderr);
                let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
                output = format!(
                    "seed {:>5}: FAIL (the simulation process died: {})\n{}\n  replay: cargo run -p cairn-sim -- {}",
                    cfg.seed,
                    out.status,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
                    cfg.replay_args()
                );
            }
            ChildRun { seed: cfg.seed, passed, output, replayed_identically: None }
        }
        Err(e) => ChildRun {
            seed: cfg.seed,
            passed: false,
            output: format!("seed {:>5}: FAIL (cannot start a simulation process: {e})", cfg.seed),
            replayed_identically: None,
        },
    }
}

fn trace_hash(output: &str) -> Option<u64> {
    let at = output.find(", trace ")? + ", trace ".len();
    u64::from_str_radix(output.get(at..at + 16)?, 16).ok()
}

/// Simulates `--seeds` seeds, `--threads` child processes at a time.
fn many_seeds(args: &Args, base: &SimConfig) -> ExitCode {
    let threads =
        args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(args.start));
    let end = args.start + args.seeds;
    let (tx, rx) = mpsc::channel::<ChildRun>();
    let mut workers = Vec::new();
    for _ in 0..threads {
        let (tx, next, base, twice) = (tx.clone(), next.clone(), base.clone(), args.twice);
        workers.push(std::thread::spawn(move || loop {
            let seed = next.fetch_add(1, Ordering::Relaxed);
            if seed >= end {
                return;
            }
            let cfg = SimConfig { seed, ..base.clone() };
            let mut run = child(&cfg);
            if twice {
                let again = child(&cfg);
                run.replayed_identically = Some(
                    trace_hash(&again.output).is_some()
                        && trace_hash(&again.output) == trace_hash(&run.output),
                );
            }
            if tx.send(run).is_err() {
                return;
            }
        }));
    }
    drop(tx);
    let mut runs: Vec<ChildRun> = Vec::new();
    for run in rx {
        if run.passed {
            println!("{}", run.output.lines().next().unwrap_or_default());
        } else {
            println!("{}", run.output);
        }
        if run.replayed_identically == Some(false) {
            println!("  seed {}: a second run gave a DIFFERENT trace", run.seed);
        }
        runs.push(run);
    }
    for w in workers {
        let _ = w.join();
    }
    runs.sort_by_key(|r| r.seed);
    let failed: Vec<&ChildRun> = runs.iter().filter(|r| !r.passed).collect();
    println!(
        "\n{} seeds in {:.1}s: {} passed, {} failed",
        runs.len(),
        started.elapsed().as_secs_f64(),
        runs.len() - failed.len(),
        failed.len()
    );
    if args.twice {
        let same = runs.iter().filter(|r| r.replayed_identically == Some(true)).count();
        println!("determinism: {same} of {} seeds gave identical traces in two processes", runs.len());
    }
    for r in &failed {
        println!(
            "  failed: cargo run -p cairn-sim -- {}",
            SimConfig { seed: r.seed, ..base.clone() }.replay_args()
        );
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
