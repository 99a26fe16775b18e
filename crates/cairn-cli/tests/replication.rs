//! Replication with real daemons: many objects, an OSD killed with SIGKILL mid-write, the whole
//! cluster killed and restarted, a monitor leader killed, an OSD marked out.

mod common;

use bytes::Bytes;
use common::{assert_replicas_identical, check_acked, payload, rt, wait_map_settled, writer, Cluster};
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[test]
fn thousand_objects_of_random_sizes_read_back_identical() {
    let c = Cluster::up(3, 1);
    c.ok(&["osd", "pool", "create", "data", "32"]);
    c.wait_clean(3, Duration::from_secs(60));
    rt().block_on(async {
        let rados = c.client().await;
        let io = rados.ioctx("data").unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let sizes: Vec<usize> = (0..1000)
            .map(|i| if i % 10 == 0 { rng.gen_range(0..=4 << 20) } else { rng.gen_range(0..=256 << 10) })
            .collect();
        let mut tasks = Vec::new();
        for chunk in (0..1000usize).collect::<Vec<_>>().chunks(63) {
            let io = io.clone();
            let chunk = chunk.to_vec();
            let sizes = sizes.clone();
            tasks.push(tokio::spawn(async move {
                for i in chunk {
                    io.write_full(&format!("obj-{i}"), payload(i as u64, sizes[i])).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        for (i, size) in sizes.iter().enumerate() {
            let got = io.read(&format!("obj-{i}"), 0, 0).await.unwrap();
            assert!(got == payload(i as u64, *size), "obj-{i} differs");
        }
        assert_eq!(io.list_objects().await.unwrap().len(), 1000);
        let map = wait_map_settled(&rados, &c, 3).await;
        assert_replicas_identical(&c, &map);
    });
}

#[test]
fn kill9_one_osd_while_writing_then_it_catches_up() {
    let c = Cluster::up(3, 1);
    c.ok(&["osd", "pool", "create", "data", "16"]);
    c.wait_clean(3, Duration::from_secs(60));
    rt().block_on(async {
        let rados = c.client().await;
        let io = rados.ioctx("data").unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let gap = Arc::new(Mutex::new(Duration::ZERO));
        let w = tokio::spawn(writer(io.clone(), stop.clone(), acked.clone(), gap.clone()));
        tokio::time::sleep(Duration::from_secs(2)).await;
        let before = acked.lock().unwrap().len();
        tokio::task::block_in_place(|| c.kill9("osd.1"));
        tokio::time::sleep(Duration::from_secs(6)).await;
        let during = acked.lock().unwrap().len();
        assert!(during > before + 10, "writes continue with one OSD down ({before} → {during})");
        c.start("osd.1");
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.store(true, Ordering::Relaxed);
        w.await.unwrap();
        let max_gap = *gap.lock().unwrap();
        assert!(max_gap < Duration::from_secs(10), "I/O paused for {max_gap:?}");
        let map = wait_map_settled(&rados, &c, 3).await;
        let acked = acked.lock().unwrap().clone();
        check_acked(&io, &acked).await;
        assert_replicas_identical(&c, &map);
        eprintln!("acked {} writes; longest pause {max_gap:?}", acked.len());
    });
}

#[test]
fn kill9_every_daemon_then_restart_loses_no_acknowledged_write() {
    let c = Cluster::up(3, 1);
    c.ok(&["osd", "pool", "create", "data", "16"]);
    c.wait_clean(3, Duration::from_secs(60));
    let acked = Arc::new(Mutex::new(Vec::new()));
    rt().block_on(async {
        let rados = c.client().await;
        let io = rados.ioctx("data").unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let gap = Arc::new(Mutex::new(Duration::ZERO));
        let w = tokio::spawn(writer(io, stop.clone(), acked.clone(), gap));
        let wait_ms = rand::thread_rng().gen_range(1500..3500);
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        tokio::task::block_in_place(|| {
            for name in ["osd.0", "osd.1", "osd.2", "mon.a"] {
                c.kill9(name);
            }
        });
        stop.store(true, Ordering::Relaxed);
        w.abort();
    });
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 10, "the writer made progress before the crash");
    c.restart();
    rt().block_on(async {
        let rados = c.client().await;
        let io = rados.ioctx("data").unwrap();
        check_acked(&io, &acked).await;
    });
}

#[test]
fn three_mons_survive_the_leader_being_killed() {
    let c = Cluster::up(3, 3);
    let q = c.json(&["quorum_status"]);
    let leader = q["quorum_leader_name"].as_str().unwrap().to_string();
    c.ok(&["osd", "pool", "create", "data", "8"]);
    c.wait_clean(3, Duration::from_secs(60));
    c.kill9(&format!("mon.{leader}"));
    let mut new_q = serde_json::Value::Null;
    c.wait_for("a new leader with 2 of 3 in quorum", Duration::from_secs(30), || {
        let out = c.cli(&["quorum_status", "--format", "json"]);
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&out.stdout) else { return false };
        let ok = v["quorum_leader_name"].as_str().is_some_and(|l| l != leader)
            && v["quorum"].as_array().map(|a| a.len()) == Some(2);
        new_q = v;
        ok
    });
    assert_eq!(new_q["quorum_names"].as_array().unwrap().len(), 2, "{new_q}");
    c.ok(&["status"]);
    rt().block_on(async {
        let rados = c.client().await;
        let io = rados.ioctx("data").unwrap();
        io.write_full("after-failover", Bytes::from_static(b"still here")).await.unwrap();
        assert_eq!(&io.read("after-failover", 0, 0).await.unwrap()[..], b"still here");
    });
    c.ok(&["osd", "pool", "create", "after", "4"]);
}

#[test]
fn osd_marked_out_moves_its_pgs_and_data_stays_intact() {
    let c = Cluster::up(4, 1);
    c.ok(&["osd", "pool", "create", "data", "16"]);
    c.wait_clean(4, Duration::from_secs(60));
    rt().block_on(async {
        let rados = c.client().await;
        let io = rados.ioctx("data").unwrap();
        for i in 0..200u64 {
            io.write_full(&format!("o-{i}"), payload(i, 10_000)).await.unwrap();
        }
        let before = rados.map();
        let had_osd3 = before.intervals.values().filter(|i| i.acting.contains(&3)).count();
        assert!(had_osd3 > 0);
        tokio::task::block_in_place(|| c.ok(&["osd", "out", "3"]));
        rados.wait_for_newer_map(before.epoch, Duration::from_secs(5)).await;
        let map = wait_map_settled(&rados, &c, 4).await;
        for (pg, i) in &map.intervals {
            assert_eq!(i.acting.len(), 3, "pg {pg} back to 3 replicas");
            assert!(!i.acting.contains(&3), "pg {pg} moved off osd.3");
        }
        for i in 0..200u64 {
            assert!(io.read(&format!("o-{i}"), 0, 0).await.unwrap() == payload(i, 10_000));
        }
        assert_replicas_identical(&c, &map);
    });
}
