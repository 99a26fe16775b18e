//! A real cluster for integration tests: `cairn up --daemon` in a temp dir, daemons as separate
//! processes on 127.0.0.1, killed with SIGKILL and restarted by the tests.

#![allow(dead_code)]

use cairn_client::Rados;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");

pub struct Cluster {
    pub dir: tempfile::TempDir,
    /// Daemons this test started itself (reaped when the cluster is dropped).
    children: std::sync::Mutex<Vec<std::process::Child>>,
}

pub struct CliOut {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Cluster {
    /// Starts a new cluster and waits until it is healthy.
    pub fn up(osds: u32, mons: u32) -> Cluster {
        let dir = tempfile::Builder::new().prefix("cairn-test-").tempdir().expect("tempdir");
        let c = Cluster { dir, children: Default::default() };
        let out = c.run_raw(&[
            "up",
            "--daemon",
            "--osds",
            &osds.to_string(),
            "--mons",
            &mons.to_string(),
            "--dir",
            c.path_str(),
        ]);
        assert!(
            out.status.success(),
            "cairn up failed:\n{}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            c.logs()
        );
        c
    }

    /// Starts a cluster, then restarts it with `extra` appended to `[global]` (test timings).
    pub fn up_with(osds: u32, mons: u32, extra: &str) -> Cluster {
        let c = Cluster::up(osds, mons);
        c.ok(&["down", "--dir", c.path_str()]);
        let conf = std::fs::read_to_string(c.conf()).expect("conf");
        let conf = conf.replacen("[global]\n", &format!("[global]\n{extra}\n"), 1);
        std::fs::write(c.conf(), conf).expect("write conf");
        c.restart();
        c
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn path_str(&self) -> &str {
        self.dir.path().to_str().expect("utf-8 temp path")
    }

    pub fn conf(&self) -> PathBuf {
        self.path().join("cairn.conf")
    }

    /// Restarts whatever is not running (same data), waiting for health.
    pub fn restart(&self) {
        let out = self.run_raw(&["up", "--daemon", "--dir", self.path_str()]);
        assert!(
            out.status.success(),
            "cairn up (restart) failed:\n{}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
    }

    /// Starts one daemon (e.g. "osd.1") in the background without waiting for health.
    pub fn start(&self, name: &str) {
        let (kind, id) = name.split_once('.').expect("daemon name");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path().join("log").join(format!("{name}.out")))
            .expect("log");
        let child = Command::new(CAIRN)
            .args([kind, "--id", id, "-c"])
            .arg(self.conf())
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn daemon");
        self.children.lock().unwrap().push(child);
    }

    pub fn pid(&self, name: &str) -> Option<i32> {
        std::fs::read_to_string(self.path().join("run").join(format!("{name}.pid"))).ok()?.trim().parse().ok()
    }

    /// SIGKILLs a daemon and waits until it is gone.
    pub fn kill9(&self, name: &str) {
        let pid = self.pid(name).unwrap_or_else(|| panic!("no pid file for {name}"));
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let start = Instant::now();
        while Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid) {
            assert!(start.elapsed() < Duration::from_secs(10), "{name} did not die");
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_file(self.path().join("run").join(format!("{name}.pid")));
    }

    pub fn run_raw(&self, args: &[&str]) -> Output {
        Command::new(CAIRN).args(args).env("CAIRN_CONF", self.conf()).output().expect("run cairn")
    }

    /// Runs a `cairn` command with this cluster's conf.
    pub fn cli(&self, args: &[&str]) -> CliOut {
        let out = self.run_raw(args);
        CliOut {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs a command that must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert_eq!(out.code, 0, "cairn {args:?} failed: {}\n{}", out.stderr, out.stdout);
        out.stdout
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.extend(["--format", "json"]);
        let out = self.ok(&a);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("cairn {args:?}: not JSON ({e}): {out}"))
    }

    pub async fn client(&self) -> Rados {
        let conf = cairn_types::conf::Conf::load(&self.conf()).expect("conf");
        Rados::connect_conf(&conf, "client.admin").await.expect("connect")
    }

    /// Waits until `check` holds, polling; panics with `what` after `timeout`.
    pub fn wait_for(&self, what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
        let start = Instant::now();
        while !check() {
            assert!(start.elapsed() < timeout, "timed out waiting for {what}\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// All PGs reported active+clean with `osds` OSDs up.
    pub fn wait_clean(&self, osds: u64, timeout: Duration) {
        self.wait_for("all pgs active+clean", timeout, || {
            let out = self.cli(&["status", "--format", "json"]);
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&out.stdout) else { return false };
            let pgs = v["pgmap"]["num_pgs"].as_u64().unwrap_or(0);
            let states = v["pgmap"]["pgs_by_state"].as_array().cloned().unwrap_or_default();
            let clean: u64 = states
                .iter()
                .filter(|s| s["state_name"] == "active+clean")
                .map(|s| s["count"].as_u64().unwrap_or(0))
                .sum();
            v["osdmap"]["num_up_osds"].as_u64() == Some(osds) && clean == pgs
        });
    }

    /// Tails of every log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        if let Ok(entries) = std::fs::read_dir(self.path().join("log")) {
            for e in entries.flatten() {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                out.push_str(&format!("--- {} ---\n", e.path().display()));
                for l in tail.into_iter().rev() {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        out
    }
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().starts_with('Z')))
        .unwrap_or(true)
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(CAIRN).args(["down", "--dir", self.path_str()]).output();
        for mut child in self.children.lock().unwrap().drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
