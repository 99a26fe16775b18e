//! Background backfill: an OSD marked out moves its PGs to other OSDs while the PGs keep serving
//! I/O (the old acting set stays in place through `pg_temp` until the new members are filled),
//! with new objects written and the backfilled objects overwritten all along.

mod common;

use cairn_client::IoCtx;
use common::{assert_replicas_identical, check_acked, payload, rt, writer, Cluster};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const OBJECTS: u64 = 200;
const OBJECT_SIZE: usize = 64 << 10;

/// Whether every PG is active+clean with acting == up, and the map holds no pg_temp entry.
/// Also collects every PG state seen.
fn settled(c: &Cluster, seen: &mut BTreeSet<String>) -> bool {
    let dump = c.json(&["pg", "dump"]);
    let stats = dump["pg_map"]["pg_stats"].as_array().cloned().unwrap_or_default();
    let mut all_clean = !stats.is_empty();
    for p in &stats {
        let state = p["state"].as_str().unwrap_or("").to_string();
        all_clean &= state == "active+clean" && p["up"] == p["acting"];
        seen.insert(state);
    }
    let osd_dump = c.json(&["osd", "dump"]);
    let no_temp = osd_dump["pg_temp"].as_array().is_some_and(|a| a.is_empty());
    all_clean && no_temp
}

/// Overwrites the 64 KiB objects `o-N` in turn with new content, recording per object every
/// content it may have: the last acknowledged one, plus any attempted since (a write that
/// failed may still have been applied).
async fn overwriter(io: IoCtx, stop: Arc<AtomicBool>, possible: Arc<Mutex<Vec<Vec<u64>>>>) {
    let mut round = 1u64;
    while !stop.load(Ordering::Relaxed) {
        for i in 0..OBJECTS {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let seed = round * 1_000_000 + i;
            let ok = io.write_full(&format!("o-{i}"), payload(seed, OBJECT_SIZE)).await.is_ok();
            let mut p = possible.lock().unwrap();
            if ok {
                p[i as usize] = vec![seed];
            } else {
                p[i as usize].push(seed);
            }
        }
        round += 1;
    }
}

/// Every OSD's log.
fn osd_logs(c: &Cluster) -> String {
    let mut out = String::new();
    for e in std::fs::read_dir(c.path().join("log")).unwrap().flatten() {
        if e.file_name().to_string_lossy().starts_with("osd.") {
            out.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    out
}

#[test]
fn osd_out_backfills_in_the_background_while_io_continues() {
    let max_gap = move_off_osd3(false);
    assert!(max_gap < Duration::from_secs(2), "I/O paused for {max_gap:?} while PGs moved");
}

/// The OSD being drained (primary of many pg_temp intervals) dies in the middle: the PGs fall
/// back to the remaining members of their last active sets, which finish the backfill.
#[test]
fn osd_dying_during_background_backfill_loses_no_acknowledged_write() {
    move_off_osd3(true);
}

/// Writes data, marks osd.3 out with writers running (and kills it once backfill started),
/// waits until every PG is clean on its new home, and checks every acknowledged write and the
/// replicas. Returns the longest gap between acknowledged writes during the move.
fn move_off_osd3(kill_mid_backfill: bool) -> Duration {
    let c = Cluster::up(4, 1);
    c.ok(&["osd", "pool", "create", "data", "16"]);
    c.wait_clean(4, Duration::from_secs(60));
    rt().block_on(async {
        let rados = c.client().await;
        let io = rados.ioctx("data").unwrap();
        for i in 0..OBJECTS {
            io.write_full(&format!("o-{i}"), payload(i, OBJECT_SIZE)).await.unwrap();
        }
        let before = rados.map();
        assert!(before.intervals.values().any(|i| i.acting.contains(&3)));

        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let gap = Arc::new(Mutex::new(Duration::ZERO));
        let w = tokio::spawn(writer(io.clone(), stop.clone(), acked.clone(), gap.clone()));
        let possible = Arc::new(Mutex::new((0..OBJECTS).map(|i| vec![i]).collect::<Vec<_>>()));
        let ow = tokio::spawn(overwriter(io.clone(), stop.clone(), possible.clone()));
        tokio::time::sleep(Duration::from_secs(2)).await;
        let warmup_gap = std::mem::take(&mut *gap.lock().unwrap());
        let acked_before = acked.lock().unwrap().len();

        let out_at = Instant::now();
        tokio::task::block_in_place(|| c.ok(&["osd", "out", "3"]));
        if kill_mid_backfill {
            // As soon as some PG backfills in the background.
            let start = Instant::now();
            while !osd_logs(&c).contains("backfill started") && start.elapsed() < Duration::from_secs(20) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            tokio::task::block_in_place(|| c.kill9("osd.3"));
        }
        let mut seen = BTreeSet::new();
        tokio::task::block_in_place(|| {
            c.wait_for("pgs clean on their new homes", Duration::from_secs(120), || {
                settled(&c, &mut seen) && out_at.elapsed() > Duration::from_secs(3)
            })
        });
        let settle_time = out_at.elapsed();
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.store(true, Ordering::Relaxed);
        w.await.unwrap();
        ow.await.unwrap();
        let max_gap = *gap.lock().unwrap();
        let acked = acked.lock().unwrap().clone();
        eprintln!(
            "acked {} writes ({} during the move); longest I/O gap during the move {max_gap:?} \
             (warm-up {warmup_gap:?}); settled after {settle_time:?}; states seen {seen:?}",
            acked.len(),
            acked.len() - acked_before,
        );

        rados.wait_for_newer_map(rados.map().epoch, Duration::from_millis(500)).await;
        let map = rados.map();
        for (pg, i) in &map.intervals {
            assert_eq!(i.acting.len(), 3, "pg {pg} back to 3 replicas");
            assert!(!i.acting.contains(&3), "pg {pg} moved off osd.3");
        }
        check_acked(&io, &acked).await;
        let possible = possible.lock().unwrap().clone();
        for (i, seeds) in possible.iter().enumerate() {
            let got = io.read(&format!("o-{i}"), 0, 0).await.unwrap();
            assert!(seeds.iter().any(|s| got == payload(*s, OBJECT_SIZE)), "o-{i}: not one of {seeds:?}");
        }
        assert_replicas_identical(&c, &map);
        let logs = osd_logs(&c);
        let backfills = logs.matches("backfill complete").count();
        eprintln!("{backfills} pgs backfilled in the background");
        assert!(backfills > 0, "some PG moved through background backfill");
        max_gap
    })
}
