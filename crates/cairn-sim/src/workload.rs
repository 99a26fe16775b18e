//! The client host: sets up a pool, runs concurrent writers and readers on a few objects while
//! the driver injects faults (and itself marks OSDs out and in through the mons), then waits for
//! the healed cluster to be clean and reads every object one last time.

use crate::history::{Kind, Op, FINAL_READER};
use crate::net::SimNetwork;
use crate::SimConfig;
use bytes::Bytes;
use cairn_client::{IoCtx, Rados};
use cairn_types::{errno, ClusterMap};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

pub const POOL: &str = "sim";

/// What the client host and the driver share.
#[derive(Default)]
pub struct Shared {
    /// Simulated time (since the start) at which the workload phase began.
    pub workload_start: Mutex<Option<Duration>>,
    pub history: Mutex<Vec<Op>>,
    /// Fault and map-change log: (simulated ms, what).
    pub events: Mutex<Vec<(u64, String)>>,
    /// Why the run could not finish (setup or quiescence never completed).
    pub stuck: Mutex<Option<String>>,
    /// The map after quiescence, for the replica check.
    pub final_map: Mutex<Option<Arc<ClusterMap>>>,
    /// Daemons that stopped on an error.
    pub host_errors: Mutex<Vec<String>>,
}

impl Shared {
    /// Logs an event from inside a host (at the current simulated time).
    pub fn event(&self, what: String) {
        self.event_at(turmoil::sim_elapsed().unwrap_or_default(), what);
    }

    /// Logs an event from the driver, at `now`.
    pub fn event_at(&self, now: Duration, what: String) {
        self.events.lock().expect("events lock").push((now.as_millis() as u64, what));
    }

    fn stuck(&self, why: String) {
        self.stuck.lock().expect("stuck lock").get_or_insert(why);
    }
}

/// The client's clock: microseconds since it started.
#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn us(&self) -> u64 {
        self.0.elapsed().as_micros() as u64
    }
}

pub async fn client_main(
    cfg: SimConfig,
    mons: Vec<String>,
    net: Arc<SimNetwork>,
    shared: Arc<Shared>,
) -> turmoil::Result {
    let clock = Clock(Instant::now());
    let Some(rados) = connect(&cfg, mons, net).await else {
        shared.stuck("the client could not get a map from the mons".into());
        return Ok(());
    };
    if let Err(e) = create_pool(&rados, &cfg).await {
        shared.stuck(format!("creating the pool failed: {e}"));
        return Ok(());
    }
    if let Err(status) = wait_clean(&rados, cfg.osds, Duration::from_secs(90)).await {
        shared.stuck(format!("the new cluster never became clean: {status}"));
        return Ok(());
    }
    let io = match rados.ioctx(POOL) {
        Ok(io) => io,
        Err(e) => {
            shared.stuck(format!("no ioctx: {e}"));
            return Ok(());
        }
    };
    let start = turmoil::sim_elapsed().unwrap_or_default();
    *shared.workload_start.lock().expect("start lock") = Some(start);
    let end = Instant::now() + cfg.workload;
    let mut tasks = Vec::new();
    for worker in 0..cfg.workers {
        let rng = StdRng::seed_from_u64(cfg.seed.wrapping_mul(1000).wrapping_add(worker as u64));
        tasks.push(tokio::spawn(worker_loop(
            io.clone(),
            cfg.clone(),
            worker,
            rng,
            end,
            clock,
            shared.clone(),
        )));
    }
    let chaos_rng = StdRng::seed_from_u64(cfg.seed ^ 0xC4A0_5000);
    tasks.push(tokio::spawn(map_changes(rados.clone(), cfg.clone(), chaos_rng, end, shared.clone())));
    for t in tasks {
        let _ = t.await;
    }
    // The driver heals the network and restarts every daemon at `end`; bring every OSD back in.
    let ids: Vec<String> = (0..cfg.osds).map(|i| i.to_string()).collect();
    if let Err(e) = mon_command(&rados, json!({"prefix": "osd in", "ids": ids})).await {
        shared.stuck(format!("marking every OSD in failed: {e}"));
    }
    if let Err(status) = wait_clean(&rados, cfg.osds, cfg.quiesce_timeout).await {
        shared.stuck(format!(
            "the healed cluster did not become clean within {:?}: {status}",
            cfg.quiesce_timeout
        ));
        return Ok(());
    }
    for obj in 0..cfg.objects {
        if !final_read(&io, obj, clock, &shared).await {
            shared.stuck(format!("the final read of obj-{obj} did not succeed"));
            return Ok(());
        }
    }
    *shared.final_map.lock().expect("map lock") = Some(rados.map());
    Ok(())
}

async fn connect(cfg: &SimConfig, mons: Vec<String>, net: Arc<SimNetwork>) -> Option<Rados> {
    for _ in 0..20 {
        let creds = cairn_client::Credentials::none("client.admin".parse().ok()?);
        match Rados::connect_with(net.clone(), mons.clone(), creds, cfg.op_timeout, Duration::from_secs(10))
            .await
        {
            Ok(r) => return Some(r),
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
    None
}

async fn mon_command(rados: &Rados, cmd: serde_json::Value) -> Result<String, String> {
    match rados.mon_command(&cmd).await {
        Ok(r) if r.rc == 0 => Ok(String::from_utf8_lossy(&r.data).into_owned()),
        Ok(r) => Err(format!("rc {}: {}", r.rc, r.status)),
        Err(e) => Err(e.to_string()),
    }
}

async fn create_pool(rados: &Rados, cfg: &SimConfig) -> Result<(), String> {
    let cmd = json!({"prefix": "osd pool create", "pool": POOL, "pg_num": cfg.pg_num});
    let mut last = String::new();
    for _ in 0..20 {
        match mon_command(rados, cmd.clone()).await {
            Ok(_) => break,
            Err(e) if e.contains("already exists") => break,
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for _ in 0..50 {
        if rados.map().pool_by_name(POOL).is_some() {
            return Ok(());
        }
        rados.wait_for_newer_map(rados.map().epoch, Duration::from_millis(500)).await;
    }
    Err(format!("pool never appeared in the map (last error: {last})"))
}

/// Waits until every PG is active+clean on all `osds` (up and in), seen twice in a row on the
/// same map epoch (PG stats arrive every 2 s), or `timeout` passes (Err: the last status).
async fn wait_clean(rados: &Rados, osds: usize, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut last;
    let mut clean_at: Option<u64> = None;
    loop {
        match mon_command(rados, json!({"prefix": "status", "format": "json"})).await {
            Ok(text) => {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                let pgs = v["pgmap"]["num_pgs"].as_u64().unwrap_or(0);
                let states = v["pgmap"]["pgs_by_state"].as_array().cloned().unwrap_or_default();
                let clean: u64 = states
                    .iter()
                    .filter(|s| s["state_name"] == "active+clean")
                    .filter_map(|s| s["count"].as_u64())
                    .sum();
                let up = v["osdmap"]["num_up_osds"].as_u64().unwrap_or(0);
                let inn = v["osdmap"]["num_in_osds"].as_u64().unwrap_or(0);
                let epoch = v["osdmap"]["epoch"].as_u64().unwrap_or(0);
                last = format!(
                    "epoch {epoch}: {up} up, {inn} in, {clean}/{pgs} pgs active+clean, states {}",
                    v["pgmap"]["pgs_by_state"]
                );
                let ok = pgs > 0 && clean == pgs && up == osds as u64 && inn == osds as u64;
                match (ok, clean_at) {
                    (true, Some(e)) if e == epoch => return Ok(()),
                    (true, _) => clean_at = Some(epoch),
                    (false, _) => clean_at = None,
                }
            }
            Err(e) => last = format!("status failed: {e}"),
        }
        if Instant::now() >= deadline {
            return Err(format!("{last}; not clean: {}", unclean_pgs(rados).await));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The PGs that are not active+clean, from `pg dump`: "pgid state acting" each.
async fn unclean_pgs(rados: &Rados) -> String {
    let Ok(text) = mon_command(rados, json!({"prefix": "pg dump", "format": "json"})).await else {
        return "(pg dump failed)".into();
    };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let stats = v["pg_map"]["pg_stats"].as_array().cloned().unwrap_or_default();
    let unclean: Vec<String> = stats
        .iter()
        .filter(|s| s["state"] != "active+clean")
        .map(|s| {
            format!(
                "pg {} {} acting {}",
                s["pgid"].as_str().unwrap_or("?"),
                s["state"].as_str().unwrap_or("?"),
                s["acting"]
            )
        })
        .collect();
    unclean.join(", ")
}

fn object_name(obj: usize) -> String {
    format!("obj-{obj}")
}

/// A value no other write uses, padded to a random length so objects change size.
fn value_for(obj: usize, worker: usize, n: u64, rng: &mut StdRng) -> String {
    let pad = rng.gen_range(0..200);
    format!("obj-{obj} w{worker} #{n} {}", ".".repeat(pad))
}

async fn worker_loop(
    io: IoCtx,
    cfg: SimConfig,
    worker: usize,
    mut rng: StdRng,
    end: Instant,
    clock: Clock,
    shared: Arc<Shared>,
) {
    let mut n = 0u64;
    while Instant::now() < end {
        let obj = rng.gen_range(0..cfg.objects);
        let name = object_name(obj);
        let start_us = clock.us();
        if rng.gen_bool(0.5) {
            n += 1;
            let value = value_for(obj, worker, n, &mut rng);
            let result = io.write_full(&name, Bytes::from(value.clone())).await;
            let acked = result.is_ok();
            let end_us = acked.then(|| clock.us());
            record(
                &shared,
                Op { obj, worker, kind: Kind::Write { value, acked }, start_us, end_us, final_read: false },
            );
        } else if let Some(value) = read(&io, &name).await {
            record(
                &shared,
                Op {
                    obj,
                    worker,
                    kind: Kind::Read { value },
                    start_us,
                    end_us: Some(clock.us()),
                    final_read: false,
                },
            );
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..50))).await;
    }
}

/// `Some(None)`: the object does not exist; `None`: the read failed (not recorded).
async fn read(io: &IoCtx, name: &str) -> Option<Option<String>> {
    match io.read(name, 0, 0).await {
        Ok(bytes) => Some(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.errno == errno::ENOENT => Some(None),
        Err(_) => None,
    }
}

async fn final_read(io: &IoCtx, obj: usize, clock: Clock, shared: &Shared) -> bool {
    for _ in 0..5 {
        let start_us = clock.us();
        if let Some(value) = read(io, &object_name(obj)).await {
            record(
                shared,
                Op {
                    obj,
                    worker: FINAL_READER,
                    kind: Kind::Read { value },
                    start_us,
                    end_us: Some(clock.us()),
                    final_read: true,
                },
            );
            return true;
        }
    }
    false
}

fn record(shared: &Shared, op: Op) {
    shared.history.lock().expect("history lock").push(op);
}

/// Marks a random OSD out, or the one that is out back in, at random times.
async fn map_changes(rados: Rados, cfg: SimConfig, mut rng: StdRng, end: Instant, shared: Arc<Shared>) {
    let rate_per_sec = cfg.faults.map_change_per_min / 60.0;
    if rate_per_sec <= 0.0 {
        return;
    }
    let mut out: Option<usize> = None;
    loop {
        let wait = crate::run::exp_delay(&mut rng, rate_per_sec);
        if Instant::now() + wait >= end {
            return;
        }
        tokio::time::sleep(wait).await;
        let (verb, id) = match out {
            Some(id) => ("in", id),
            None => ("out", rng.gen_range(0..cfg.osds)),
        };
        let result =
            mon_command(&rados, json!({"prefix": format!("osd {verb}"), "ids": [id.to_string()]})).await;
        if result.is_ok() {
            out = (verb == "out").then_some(id);
        }
        shared
            .event(format!("map change: osd {verb} {id} -> {}", result.map_or_else(|e| e, |_| "ok".into())));
    }
}
