//! Self-managed snapshots in the OSD with real daemons: clone on first write after a snapshot,
//! reads at a snapshot, whiteouts, rollback, recovery carrying clones, and trimming after the
//! snapshot is removed.

mod common;

use bytes::Bytes;
use cairn_proto::{ObjOp, SnapContext};
use cairn_types::errno;
use common::{assert_replicas_identical, rt, wait_map_settled, Cluster};
use std::time::Duration;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

#[test]
fn writes_after_a_snapshot_keep_the_old_content_until_the_snapshot_is_trimmed() {
    let c = Cluster::up(3, 1);
    c.ok(&["osd", "pool", "create", "data", "8"]);
    c.wait_clean(3, Duration::from_secs(60));
    rt().block_on(async {
        let rados = c.client().await;
        let mut io = rados.ioctx("data").unwrap();
        io.write_full("a", b("a-before")).await.unwrap();
        io.write_full("gone", b("gone-before")).await.unwrap();

        let s1 = io.selfmanaged_snap_create().await.unwrap();
        io.snapc = SnapContext { seq: s1, snaps: vec![s1] };
        io.write_full("a", b("a-after-s1")).await.unwrap();
        io.write_full("born", b("born-after-s1")).await.unwrap();
        io.remove("gone").await.unwrap();

        let s2 = io.selfmanaged_snap_create().await.unwrap();
        assert!(s2 > s1);
        io.snapc = SnapContext { seq: s2, snaps: vec![s2, s1] };
        io.write("a", 0, b("A")).await.unwrap();

        // Heads.
        assert_eq!(io.read("a", 0, 0).await.unwrap(), b("A-after-s1"));
        assert_eq!(io.stat("gone").await.unwrap_err().errno, errno::ENOENT);
        let mut names = io.list_objects().await.unwrap();
        names.sort();
        assert_eq!(names, ["a", "born"], "the whiteout of 'gone' is not listed");

        // Reads at each snapshot.
        let mut at = io.clone();
        at.read_snap = Some(s1);
        assert_eq!(at.read("a", 0, 0).await.unwrap(), b("a-before"));
        assert_eq!(at.read("gone", 0, 0).await.unwrap(), b("gone-before"));
        assert_eq!(at.read("born", 0, 0).await.unwrap_err().errno, errno::ENOENT);
        assert_eq!(at.write("a", 0, b("x")).await.unwrap_err().errno, errno::EROFS);
        at.read_snap = Some(s2);
        assert_eq!(at.read("a", 0, 0).await.unwrap(), b("a-after-s1"));
        assert_eq!(at.read("born", 0, 0).await.unwrap(), b("born-after-s1"));
        assert_eq!(at.read("gone", 0, 0).await.unwrap_err().errno, errno::ENOENT);

        let snaps = io.list_snaps("a").await.unwrap();
        assert_eq!(snaps.clones.iter().map(|c| c.snaps.clone()).collect::<Vec<_>>(), [vec![s1], vec![s2]]);

        // Every replica holds the clones.
        let map = wait_map_settled(&rados, &c, 3).await;
        assert_replicas_identical(&c, &map);

        // Rollback of the head to s1 (itself a write that preserves the current content for s2).
        io.operate("a", vec![ObjOp::Rollback { snap: s1 }]).await.unwrap();
        assert_eq!(io.read("a", 0, 0).await.unwrap(), b("a-before"));
        at.read_snap = Some(s2);
        assert_eq!(at.read("a", 0, 0).await.unwrap(), b("a-after-s1"));
        io.operate("born", vec![ObjOp::Rollback { snap: s1 }]).await.unwrap();
        assert_eq!(io.stat("born").await.unwrap_err().errno, errno::ENOENT, "born did not exist at s1");

        // Removing s1 trims the clones only it needed; s2's stay.
        io.selfmanaged_snap_remove(s1).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let a = io.list_snaps("a").await.unwrap();
            let gone = io.list_snaps("gone").await.unwrap();
            if a.clones.iter().all(|c| !c.snaps.contains(&s1)) && gone.clones.is_empty() {
                assert_eq!(a.clones.len(), 1, "only the clone serving s2 is left");
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "clones of s1 not trimmed: {a:?} {gone:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        at.read_snap = Some(s2);
        assert_eq!(at.read("a", 0, 0).await.unwrap(), b("a-after-s1"));
        at.read_snap = Some(s1);
        assert_eq!(at.read("a", 0, 0).await.unwrap_err().errno, errno::ENOENT);
        let map = wait_map_settled(&rados, &c, 3).await;
        assert_replicas_identical(&c, &map);
    });
}

#[test]
fn a_restarted_osd_recovers_clones_it_missed() {
    let c = Cluster::up(3, 1);
    c.ok(&["osd", "pool", "create", "data", "4"]);
    c.wait_clean(3, Duration::from_secs(60));
    rt().block_on(async {
        let rados = c.client().await;
        let mut io = rados.ioctx("data").unwrap();
        for i in 0..20 {
            io.write_full(&format!("o{i}"), b(&format!("v0-{i}"))).await.unwrap();
        }
        c.kill9("osd.2");
        let s1 = io.selfmanaged_snap_create().await.unwrap();
        io.snapc = SnapContext { seq: s1, snaps: vec![s1] };
        for i in 0..20 {
            io.write_full(&format!("o{i}"), b(&format!("v1-{i}"))).await.unwrap();
        }
        c.start("osd.2");
        c.wait_clean(3, Duration::from_secs(60));
        let map = wait_map_settled(&rados, &c, 3).await;
        assert_replicas_identical(&c, &map);
        let mut at = io.clone();
        at.read_snap = Some(s1);
        for i in 0..20 {
            assert_eq!(at.read(&format!("o{i}"), 0, 0).await.unwrap(), b(&format!("v0-{i}")));
        }
    });
}
