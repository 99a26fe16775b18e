//! A real cluster for integration tests: `cairn up --daemon` in a temp dir, daemons as separate
//! processes on 127.0.0.1, killed with SIGKILL and restarted by the tests.

#![allow(dead_code)]

pub mod tap;

use bytes::Bytes;
use cairn_client::{IoCtx, Rados};
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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

impl From<Output> for CliOut {
    fn from(out: Output) -> CliOut {
        CliOut {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Runs `cairn -c CONF ARGS…` (a conf other than a cluster's own).
#[allow(dead_code)] // not every test binary uses it
pub fn with_conf(conf: &Path, args: &[&str]) -> CliOut {
    let out = Command::new(CAIRN).arg("-c").arg(conf).args(args).env_remove("CAIRN_CONF").output();
    CliOut::from(out.expect("run cairn"))
}

impl Cluster {
    /// Starts a new cluster and waits until it is healthy. Authentication is on (cephx): the
    /// conf `cairn up` writes points `[client] keyring` at `cairn.$name.keyring` next to it,
    /// where the admin keyring is, so the CLI and [`Cluster::client`] find the admin key.
    pub fn up(osds: u32, mons: u32) -> Cluster {
        Cluster::up_args(osds, mons, &[])
    }

    /// [`Cluster::up`] with more `cairn up` arguments (e.g. `--openstack`).
    pub fn up_args(osds: u32, mons: u32, extra: &[&str]) -> Cluster {
        let dir = tempfile::Builder::new().prefix("cairn-test-").tempdir().expect("tempdir");
        let c = Cluster { dir, children: Default::default() };
        let (osds, mons) = (osds.to_string(), mons.to_string());
        let mut args =
            vec!["up", "--daemon", "--osds", osds.as_str(), "--mons", mons.as_str(), "--dir", c.path_str()];
        args.extend_from_slice(extra);
        let out = c.run_raw(&args);
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
    /// `extra` goes first in `[global]`, and the last duplicate wins: options `cairn up` writes
    /// there itself (`auth … required`) must be replaced in the file instead.
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
        CliOut::from(self.run_raw(args))
    }

    /// A copy of the conf with `from` replaced by `to` (for clients with other settings), named
    /// `name` in the cluster's directory.
    #[allow(dead_code)] // not every test binary uses it
    pub fn conf_variant(&self, name: &str, from: &str, to: &str) -> PathBuf {
        let text = std::fs::read_to_string(self.conf()).unwrap();
        assert!(text.contains(from), "conf has no '{from}'");
        let path = self.path().join(name);
        std::fs::write(&path, text.replace(from, to)).unwrap();
        path
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
        self.client_as("client.admin").await.expect("connect")
    }

    /// A client as `entity`, with the key the conf finds for it (`cairn.ENTITY.keyring`).
    pub async fn client_as(&self, entity: &str) -> cairn_types::Result<Rados> {
        let conf = cairn_types::conf::Conf::load(&self.conf()).expect("conf");
        Rados::connect_conf(&conf, entity).await
    }

    /// Where the conf's `[client] keyring` looks for `entity`'s keyring.
    pub fn keyring_path(&self, entity: &str) -> PathBuf {
        self.path().join(format!("cairn.{entity}.keyring"))
    }

    /// Waits until `check` holds, polling; panics with `what` after `timeout`.
    pub fn wait_for(&self, what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
        let start = Instant::now();
        while !check() {
            assert!(start.elapsed() < timeout, "timed out waiting for {what}\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// All PGs reported active+clean with `osds` OSDs up, none remapped (no pg_temp entry left,
    /// every PG's reported acting set equals its up set, so no report from before a remap
    /// counts).
    pub fn wait_clean(&self, osds: u64, timeout: Duration) {
        self.wait_for("all pgs active+clean", timeout, || {
            let osd_dump = self.cli(&["osd", "dump", "--format", "json"]);
            let Ok(d) = serde_json::from_str::<serde_json::Value>(&osd_dump.stdout) else { return false };
            if !d["pg_temp"].as_array().is_some_and(|t| t.is_empty()) {
                return false;
            }
            let pg_dump = self.cli(&["pg", "dump", "--format", "json"]);
            let Ok(d) = serde_json::from_str::<serde_json::Value>(&pg_dump.stdout) else { return false };
            let stats = d["pg_map"]["pg_stats"].as_array().cloned().unwrap_or_default();
            if stats.iter().any(|p| p["up"] != p["acting"]) {
                return false;
            }
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

/// A runtime like the daemons': two worker threads.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// `len` pseudo-random bytes determined by `seed`.
pub fn payload(seed: u64, len: usize) -> Bytes {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut v = vec![0u8; len];
    rng.fill(&mut v[..]);
    Bytes::from(v)
}

/// Every PG's acting members report identical digests of their content.
pub fn assert_replicas_identical(c: &Cluster, map: &cairn_types::ClusterMap) {
    let mut digests: BTreeMap<u32, serde_json::Value> = BTreeMap::new();
    for id in map.osds.values().filter(|o| o.up).map(|o| o.id) {
        let out = c.ok(&["daemon", &format!("osd.{id}"), "pg", "digests"]);
        digests.insert(id, serde_json::from_str(&out).unwrap());
    }
    let mut compared = 0;
    for (pg, interval) in &map.intervals {
        let key = pg.to_string();
        let first = &digests[&interval.acting[0]][&key];
        for m in &interval.acting[1..] {
            assert_eq!(
                &digests[m][&key], first,
                "pg {pg}: osd.{m} differs from primary osd.{}",
                interval.acting[0]
            );
        }
        compared += 1;
    }
    assert!(compared > 0);
}

/// Waits until every PG is active+clean with `osds` OSDs up; returns the client's map then.
pub async fn wait_map_settled(rados: &Rados, c: &Cluster, osds: u64) -> Arc<cairn_types::ClusterMap> {
    let c_clean = || c.wait_clean(osds, Duration::from_secs(120));
    tokio::task::block_in_place(c_clean);
    rados.wait_for_newer_map(rados.map().epoch, Duration::from_millis(500)).await;
    rados.map()
}

/// The content writer() gives object `w-N`.
pub fn writer_payload(n: u64) -> Bytes {
    payload(n, 4096 + (n as usize % 7) * 1000)
}

/// Writes objects `w-N` in a loop, recording each acknowledged one and the longest gap between
/// acknowledgements.
pub async fn writer(
    io: IoCtx,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<u64>>>,
    max_gap: Arc<Mutex<Duration>>,
) {
    let mut last = Instant::now();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if io.write_full(&format!("w-{n}"), writer_payload(n)).await.is_ok() {
            acked.lock().unwrap().push(n);
            let gap = last.elapsed();
            let mut g = max_gap.lock().unwrap();
            *g = (*g).max(gap);
            last = Instant::now();
        }
        n += 1;
    }
}

/// Every acknowledged `w-N` reads back with its content.
pub async fn check_acked(io: &IoCtx, acked: &[u64]) {
    for n in acked {
        let got = io.read(&format!("w-{n}"), 0, 0).await.unwrap_or_else(|e| panic!("acked w-{n} lost: {e}"));
        assert!(got == writer_payload(*n), "acked w-{n} has wrong content");
    }
}
