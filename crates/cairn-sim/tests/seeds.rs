//! The simulation gate: many seeds of the whole cluster under faults (each in its own process of
//! the `cairn-sim` binary, as `cargo run -p cairn-sim -- --seeds N` does), and a check that a
//! seed replays identically. `CAIRN_SIM_SEEDS` / `CAIRN_SIM_START` change the range.

use std::process::Command;

fn sim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cairn-sim"))
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// 200 seeds (about a minute on two cores in a debug build): every acknowledged write survives,
/// every read is linearizable, replicas are identical after quiescence, and the healed cluster
/// becomes clean. A failure prints each failing seed with its faults and replay command.
#[test]
fn two_hundred_seeds_keep_acknowledged_writes_linearizable_and_replicas_identical() {
    let seeds = env_u64("CAIRN_SIM_SEEDS", 200);
    let start = env_u64("CAIRN_SIM_START", 0);
    let out = sim()
        .args(["--seeds", &seeds.to_string(), "--start", &start.to_string()])
        .output()
        .expect("running cairn-sim");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let failures: Vec<&str> =
        stdout.lines().filter(|l| l.contains(": FAIL") || l.starts_with("  ")).collect();
    assert!(
        out.status.success(),
        "simulation failures (replay each with the command shown):\n{}\n{}",
        failures.join("\n"),
        stdout.lines().rev().take(6).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    let summary = stdout.lines().find(|l| l.contains(" seeds in ")).unwrap_or_default();
    assert!(summary.contains(&format!("{seeds} passed")), "unexpected summary: {summary}");
}

/// Same seed, same run: a 1-mon and a 3-mon seed simulated twice in separate processes give the
/// same trace hash (client history, fault log, final replica contents).
#[test]
fn a_seed_replays_identically() {
    for seed in [1u64, 2] {
        let out = sim().args(["--seed", &seed.to_string(), "--twice"]).output().expect("running cairn-sim");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("(identical)"), "seed {seed} did not replay identically:\n{stdout}");
    }
}
