//! A PG whose only copy is on a dead OSD must wait (`incomplete`) rather than come up empty on
//! another OSD; when the dead OSD returns, the data moves to the new home intact. And a client
//! whose PG cannot be served times out with ETIMEDOUT.

mod common;

use common::Cluster;
use std::time::{Duration, Instant};

fn pg_states(c: &Cluster) -> Vec<String> {
    let dump = c.json(&["pg", "dump"]);
    dump["pg_map"]["pg_stats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["state"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn lone_copy_on_dead_osd_waits_incomplete_then_recovers_from_it() {
    let c = Cluster::up(2, 1);
    c.ok(&["osd", "pool", "create", "one", "1"]);
    c.ok(&["osd", "pool", "set", "one", "size", "1"]);
    c.ok(&["osd", "pool", "set", "one", "min_size", "1"]);
    c.wait_clean(2, Duration::from_secs(60));
    c.ok(&["rados", "-p", "one", "setxattr", "precious", "k", "v1"]);
    let dump = c.json(&["pg", "dump"]);
    let holder = dump["pg_map"]["pg_stats"][0]["acting"][0].as_u64().unwrap();
    let other = 1 - holder;

    // The only copy dies and is marked out: the PG maps to the other OSD, which has nothing.
    c.kill9(&format!("osd.{holder}"));
    c.ok(&["osd", "out", &holder.to_string()]);
    c.wait_for("the pg to be incomplete on the other osd", Duration::from_secs(30), || {
        let d = c.json(&["pg", "dump"]);
        let p = &d["pg_map"]["pg_stats"][0];
        p["acting"][0].as_u64() == Some(other) && p["state"] == "incomplete"
    });
    // Reads wait rather than answer "no such object" from an empty PG.
    let conf = std::fs::read_to_string(c.conf()).unwrap();
    let short = c.path().join("short.conf");
    std::fs::write(&short, format!("{conf}\n[client]\nrados osd op timeout = 3\n")).unwrap();
    let start = Instant::now();
    let out = c.run_raw(&["-c", short.to_str().unwrap(), "rados", "-p", "one", "getxattr", "precious", "k"]);
    assert_eq!(out.status.code(), Some(libc::ETIMEDOUT), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(start.elapsed() < Duration::from_secs(15));

    // The dead OSD comes back (still out): it serves again (pg_temp) while the new primary is
    // backfilled from it, then the PG moves to its new home.
    c.start(&format!("osd.{holder}"));
    c.wait_for("the pg active again", Duration::from_secs(60), || {
        pg_states(&c).iter().all(|s| s.starts_with("active"))
    });
    c.wait_for("the pg clean on its new home", Duration::from_secs(60), || {
        pg_states(&c).iter().all(|s| s == "active+clean")
    });
    assert_eq!(c.ok(&["rados", "-p", "one", "getxattr", "precious", "k"]).trim(), "v1");
    let d = c.json(&["pg", "dump"]);
    assert_eq!(
        d["pg_map"]["pg_stats"][0]["acting"][0].as_u64(),
        Some(other),
        "the data moved to its new home"
    );
}
