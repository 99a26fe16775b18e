//! Failure detection through OSD-to-OSD heartbeats: a hung (not dead) OSD is marked down after the
//! heartbeat grace, and out after the down-out interval; its PGs move and data stays intact.

mod common;

use common::Cluster;
use std::time::{Duration, Instant};

fn osd_state(c: &Cluster, id: u64) -> (bool, bool) {
    let dump = c.json(&["osd", "dump"]);
    let osd =
        dump["osds"].as_array().unwrap().iter().find(|o| o["osd"].as_u64() == Some(id)).unwrap().clone();
    (osd["up"].as_u64() == Some(1) || osd["up"] == true, osd["in"].as_u64() == Some(1) || osd["in"] == true)
}

#[test]
fn hung_osd_is_marked_down_then_out_and_its_pgs_move() {
    let c = Cluster::up_with(4, 1, "osd heartbeat grace = 3\nmon osd down out interval = 4");
    c.ok(&["osd", "pool", "create", "data", "16"]);
    c.wait_clean(4, Duration::from_secs(60));
    for i in 0..20 {
        c.ok(&["rados", "-p", "data", "setomapval", &format!("o{i}"), "k", &format!("v{i}")]);
    }
    // SIGSTOP: the process and its port stay, only heartbeats go unanswered.
    let pid = c.pid("osd.3").unwrap();
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let stopped = Instant::now();
    c.wait_for("osd.3 marked down", Duration::from_secs(30), || !osd_state(&c, 3).0);
    let down_after = stopped.elapsed();
    assert!(down_after >= Duration::from_secs(3), "not before the grace: {down_after:?}");
    c.wait_for("osd.3 marked out", Duration::from_secs(30), || !osd_state(&c, 3).1);
    c.wait_clean(3, Duration::from_secs(90));
    for i in 0..20 {
        let v = c.ok(&["rados", "-p", "data", "listomapvals", &format!("o{i}")]);
        assert!(v.contains(&format!("v{i}")), "o{i}: {v}");
    }
    let health = c.ok(&["health"]);
    assert!(health.contains("osds down") || health.contains("HEALTH_WARN"), "{health}");
    unsafe { libc::kill(pid, libc::SIGCONT) };
    eprintln!("marked down after {down_after:?}");
}
