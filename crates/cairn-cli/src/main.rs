//! `cairn`: one binary for the daemons, the local cluster, and the operator commands in Ceph's
//! dialect (`cairn osd pool create …` as `ceph osd pool create …`, `cairn rados …` as `rados …`).

mod args;
mod bench;
mod daemon;
mod moncmd;
mod nbd;
mod output;
mod rados;
mod rbd;
mod up;

use args::Global;
use cairn_types::Error;
use std::process::ExitCode;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let (global, words) = match args::split_global(argv) {
        Ok(x) => x,
        Err(e) => return output::fail(&e),
    };
    match run(global, words) {
        Ok(code) => code,
        Err(e) => output::fail(&e),
    }
}

fn run(global: Global, words: Vec<String>) -> Result<ExitCode, Error> {
    let first = words.first().map(String::as_str).unwrap_or("");
    match first {
        "" | "help" | "--help" | "-h" => {
            print!("{}", args::USAGE);
            println!("\nBlock images (as `rbd ...`): cairn rbd help");
            println!("\nMonitor commands:\n{}", moncmd::help_text());
            Ok(ExitCode::SUCCESS)
        }
        "--version" | "version" => {
            println!("cairn version {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        // `cairn mon --id a` runs a daemon; `cairn mon dump` is a command.
        "mon" | "osd" if words.get(1).is_none_or(|w| w.starts_with('-')) => {
            if first == "mon" {
                daemon::run_mon(&global, &words[1..])
            } else {
                daemon::run_osd(&global, &words[1..])
            }
        }
        "up" => up::up(&global, &words[1..]),
        "down" => up::down(&global, &words[1..]),
        "rados" => rados::main(&global, &words[1..]),
        "rbd" => Ok(rbd::main(&global, &words[1..])),
        "nbd" => nbd::main(&global, &words[1..]),
        "daemon" => rados::admin_command(&global, &words[1..]),
        _ => output::mon_command(&global, &words),
    }
}
