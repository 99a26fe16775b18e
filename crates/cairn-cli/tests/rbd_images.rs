//! RBD images through the library against real daemons: create, I/O across objects, snapshots,
//! clones, flatten, diff, resize, removal rules, exclusive lock.

mod common;

use bytes::Bytes;
use cairn_rbd::{no_progress, CreateOptions, Image};
use cairn_types::errno;
use common::{payload, rt, Cluster};
use std::time::Duration;

const MIB: u64 = 1 << 20;

#[test]
fn image_lifecycle_snapshots_clones_and_flatten() {
    let c = Cluster::up(3, 1);
    c.ok(&["osd", "pool", "create", "rbd", "8"]);
    c.ok(&["osd", "pool", "create", "vms", "8"]);
    c.wait_clean(3, Duration::from_secs(60));
    rt().block_on(async {
        let rados = c.client().await;
        let io = rados.ioctx("rbd").unwrap();
        let vms = rados.ioctx("vms").unwrap();
        let opts = CreateOptions { order: Some(20), ..Default::default() }; // 1 MiB objects
        cairn_rbd::create(&io, "base", 8 * MIB, &opts).await.unwrap();
        assert_eq!(cairn_rbd::create(&io, "base", MIB, &opts).await.unwrap_err().errno, errno::EEXIST);
        assert_eq!(cairn_rbd::list(&io).await.unwrap(), ["base"]);
        let base = Image::open(&io, "base", None, false).await.unwrap();
        let v1 = payload(1, (3 * MIB) as usize);
        base.write(MIB / 2, v1.clone()).await.unwrap();
        assert!(base.read(MIB / 2, 3 * MIB).await.unwrap() == v1, "written data");
        assert_eq!(base.read(0, MIB / 2).await.unwrap(), Bytes::from(vec![0; (MIB / 2) as usize]));

        base.snap_create("s1").await.unwrap();
        let v2 = payload(2, MIB as usize);
        base.write(MIB, v2.clone()).await.unwrap();
        let at_s1 = Image::open(&io, "base", Some("s1"), true).await.unwrap();
        assert!(at_s1.read(MIB / 2, 3 * MIB).await.unwrap() == v1, "snapshot content");
        assert_eq!(at_s1.write(0, Bytes::from_static(b"x")).await.unwrap_err().errno, errno::EROFS);

        // Clone v1 needs a protected snapshot.
        let defaults = CreateOptions::default();
        let clone = |name: &'static str| cairn_rbd::clone(&io, "base", "s1", &vms, name, &defaults, false);
        assert_eq!(clone("vm1").await.unwrap_err().errno, errno::EINVAL);
        base.snap_set_protection("s1", true).await.unwrap();
        clone("vm1").await.unwrap();
        assert_eq!(base.children("s1").await.unwrap(), [("vms".to_string(), "vm1".to_string())]);
        assert_eq!(base.snap_set_protection("s1", false).await.unwrap_err().errno, errno::EBUSY);
        assert_eq!(base.snap_remove("s1").await.unwrap_err().errno, errno::EBUSY);

        let vm1 = Image::open(&vms, "vm1", None, false).await.unwrap();
        assert_eq!(vm1.parent_info().await.unwrap().image_name, "base");
        assert_eq!(base.parent_info().await.unwrap_err().errno, errno::ENOENT);
        assert!(vm1.read(MIB / 2, 3 * MIB).await.unwrap() == v1, "clone reads the parent's snapshot");
        let w = payload(3, 100);
        vm1.write(MIB + 10, w.clone()).await.unwrap();
        let mut expect = v1.to_vec();
        expect[(MIB / 2 + 10) as usize..][..100].copy_from_slice(&w);
        assert!(vm1.read(MIB / 2, 3 * MIB).await.unwrap() == expect, "copy-up kept the rest");
        assert!(at_s1.read(MIB / 2, 3 * MIB).await.unwrap() == v1, "parent unchanged");

        // Diff of the clone's own data since creation: only the copied-up object.
        let mut seen = Vec::new();
        vm1.diff_iterate(None, 0, vm1.size(), false, &mut |o, l, e| {
            seen.push((o, l, e));
            Ok(())
        })
        .await
        .unwrap();
        assert_eq!(seen, [(MIB, MIB, true)]);

        vm1.flatten(&no_progress).await.unwrap();
        assert!(base.children("s1").await.unwrap().is_empty());
        assert!(vm1.read(MIB / 2, 3 * MIB).await.unwrap() == expect, "flattened clone reads the same");
        assert_eq!(vm1.parent_info().await.unwrap_err().errno, errno::ENOENT);
        base.snap_set_protection("s1", false).await.unwrap();

        // Removal rules.
        base.close().await.unwrap();
        let e = cairn_rbd::remove(&io, "base", &no_progress).await.unwrap_err();
        assert_eq!((e.errno, e.message.as_str()), (errno::ENOTEMPTY, "image has snapshots - not removing"));
        let base = Image::open(&io, "base", None, false).await.unwrap();
        assert_eq!(
            cairn_rbd::remove(&io, "base", &no_progress).await.unwrap_err().errno,
            errno::EBUSY,
            "watched"
        );
        base.snap_remove("s1").await.unwrap();
        base.close().await.unwrap();
        cairn_rbd::remove(&io, "base", &no_progress).await.unwrap();
        assert!(cairn_rbd::list(&io).await.unwrap().is_empty());
        assert_eq!(Image::open(&io, "base", None, true).await.err().unwrap().errno, errno::ENOENT);

        // Resize.
        assert_eq!(vm1.resize(MIB, false, &no_progress).await.unwrap_err().errno, errno::EINVAL);
        vm1.resize(MIB + MIB / 2, true, &no_progress).await.unwrap();
        vm1.resize(4 * MIB, false, &no_progress).await.unwrap();
        let tail = vm1.read(MIB, 3 * MIB).await.unwrap();
        assert!(tail[..(MIB / 2) as usize] == expect[(MIB / 2) as usize..MIB as usize], "kept data intact");
        assert!(tail[(MIB / 2) as usize..].iter().all(|b| *b == 0), "shrunk data is gone");
        vm1.close().await.unwrap();
    });
}

#[test]
fn a_second_writer_is_refused_by_the_exclusive_lock() {
    let c = Cluster::up(3, 1);
    c.ok(&["osd", "pool", "create", "rbd", "8"]);
    c.wait_clean(3, Duration::from_secs(60));
    rt().block_on(async {
        let rados = c.client().await;
        let other = c.client().await;
        let io = rados.ioctx("rbd").unwrap();
        cairn_rbd::create(&io, "vol", 4 * MIB, &CreateOptions::default()).await.unwrap();
        let a = Image::open(&io, "vol", None, false).await.unwrap();
        a.write(0, Bytes::from_static(b"first")).await.unwrap();
        let b = Image::open(&other.ioctx("rbd").unwrap(), "vol", None, false).await.unwrap();
        assert_eq!(b.write(0, Bytes::from_static(b"second")).await.unwrap_err().errno, errno::EBUSY);
        assert_eq!(&a.read(0, 5).await.unwrap()[..], b"first");
        a.close().await.unwrap();
        b.write(0, Bytes::from_static(b"second")).await.unwrap();
        assert_eq!(&b.read(0, 6).await.unwrap()[..], b"second");
        b.close().await.unwrap();
    });
}

#[test]
fn clone_chain_of_depth_five_reads_through_and_flattens() {
    let c = Cluster::up(3, 1);
    c.ok(&["osd", "pool", "create", "rbd", "8"]);
    c.wait_clean(3, Duration::from_secs(60));
    rt().block_on(async {
        let rados = c.client().await;
        let io = rados.ioctx("rbd").unwrap();
        let opts = CreateOptions { order: Some(16), features: Some(1), ..Default::default() };
        cairn_rbd::create(&io, "img0", 512 << 10, &opts).await.unwrap();
        let mut expect = vec![0u8; 512 << 10];
        for level in 0..5usize {
            let name = format!("img{level}");
            let img = Image::open(&io, &name, None, false).await.unwrap();
            // Each level writes its own 10 KiB at its own offset (crossing an object boundary).
            let off = level * 60_000 + 60_000;
            let data = payload(level as u64, 10_000);
            img.write(off as u64, data.clone()).await.unwrap();
            expect[off..off + data.len()].copy_from_slice(&data);
            assert!(img.read(0, 512 << 10).await.unwrap() == expect, "level {level} reads its chain");
            img.snap_create("s").await.unwrap();
            img.snap_set_protection("s", true).await.unwrap();
            img.close().await.unwrap();
            cairn_rbd::clone(&io, &name, "s", &io, &format!("img{}", level + 1), &opts, false).await.unwrap();
            let parent = Image::open(&io, &name, None, true).await.unwrap();
            assert_eq!(
                parent.children("s").await.unwrap(),
                [("rbd".to_string(), format!("img{}", level + 1))]
            );
        }
        let leaf = Image::open(&io, "img5", None, false).await.unwrap();
        assert!(leaf.read(0, 512 << 10).await.unwrap() == expect, "depth 5 reads every ancestor");
        leaf.flatten(&no_progress).await.unwrap();
        assert_eq!(leaf.parent_info().await.unwrap_err().errno, errno::ENOENT);
        leaf.close().await.unwrap();
        // The leaf no longer needs img4: unprotect, remove its snapshot and the image itself.
        let img4 = Image::open(&io, "img4", None, false).await.unwrap();
        assert!(img4.children("s").await.unwrap().is_empty());
        img4.snap_set_protection("s", false).await.unwrap();
        img4.snap_remove("s").await.unwrap();
        img4.close().await.unwrap();
        cairn_rbd::remove(&io, "img4", &no_progress).await.unwrap();
        let leaf = Image::open(&io, "img5", None, true).await.unwrap();
        assert!(leaf.read(0, 512 << 10).await.unwrap() == expect, "flattened leaf is independent");
    });
}

#[test]
fn osd_killed_during_flatten_and_import_leaves_images_intact() {
    let c = Cluster::up(3, 1);
    c.ok(&["osd", "pool", "create", "rbd", "8"]);
    c.wait_clean(3, Duration::from_secs(60));
    rt().block_on(async {
        let rados = c.client().await;
        let io = rados.ioctx("rbd").unwrap();
        let opts = CreateOptions { order: Some(18), features: Some(1), ..Default::default() };
        let size = 24u64 << 20;
        cairn_rbd::create(&io, "base", size, &opts).await.unwrap();
        let base = Image::open(&io, "base", None, false).await.unwrap();
        let data = payload(9, size as usize);
        base.write(0, data.clone()).await.unwrap();
        base.snap_create("s").await.unwrap();
        base.snap_set_protection("s", true).await.unwrap();
        cairn_rbd::clone(&io, "base", "s", &io, "child", &opts, false).await.unwrap();
        let child = Image::open(&io, "child", None, false).await.unwrap();

        // Flatten while an OSD dies: the op resends and completes.
        let flatten = tokio::spawn({
            let child = child.clone();
            async move { child.flatten(&no_progress).await }
        });
        tokio::time::sleep(Duration::from_millis(150)).await;
        tokio::task::block_in_place(|| c.kill9("osd.1"));
        flatten.await.unwrap().unwrap();
        assert!(child.read(0, size).await.unwrap() == data, "flattened through an OSD failure");

        // An import-like sequential write while another OSD dies, then the first comes back.
        cairn_rbd::create(&io, "imported", size, &opts).await.unwrap();
        let imp = Image::open(&io, "imported", None, false).await.unwrap();
        let writer = tokio::spawn({
            let (imp, data) = (imp.clone(), data.clone());
            async move {
                for off in (0..size).step_by(1 << 20) {
                    imp.write(off, data.slice(off as usize..(off + (1 << 20)) as usize)).await?;
                }
                Ok::<(), cairn_types::Error>(())
            }
        });
        tokio::task::block_in_place(|| c.start("osd.1"));
        writer.await.unwrap().unwrap();
        assert!(imp.read(0, size).await.unwrap() == data, "imported through an OSD restart");
        child.close().await.unwrap();
        imp.close().await.unwrap();
    });
}

#[test]
fn rbd_cache_acknowledges_from_memory_and_flush_makes_writes_durable() {
    let c = Cluster::up(3, 1);
    c.ok(&["osd", "pool", "create", "rbd", "8"]);
    c.wait_clean(3, Duration::from_secs(60));
    rt().block_on(async {
        let base = std::fs::read_to_string(c.conf()).unwrap();
        let connect = |extra: &str| {
            let conf = cairn_types::conf::Conf::parse(&format!("{base}\n[client]\n{extra}\n")).unwrap();
            async move { cairn_client::Rados::connect_conf(&conf, "client.admin").await.unwrap() }
        };
        let writeback = connect(
            "rbd cache = true\nrbd cache writethrough until flush = false\nrbd cache max dirty = 4M\n\
             rbd cache target dirty = 4M\nrbd cache max dirty age = 600",
        )
        .await;
        let observer = c.client().await.ioctx("rbd").unwrap();
        let io = writeback.ioctx("rbd").unwrap();
        let opts = CreateOptions { features: Some(1), ..Default::default() };
        cairn_rbd::create(&io, "cached", 16 * MIB, &opts).await.unwrap();
        let img = Image::open(&io, "cached", None, false).await.unwrap();
        let other = Image::open(&observer, "cached", None, true).await.unwrap();
        let data = payload(5, MIB as usize);
        img.write(MIB, data.clone()).await.unwrap();
        assert!(img.read(MIB, MIB).await.unwrap() == data, "the writer reads its cached write");
        assert!(other.read(MIB, MIB).await.unwrap().iter().all(|b| *b == 0), "not written back yet");
        img.flush().await.unwrap();
        assert!(other.read(MIB, MIB).await.unwrap() == data, "durable after flush");
        // Past `max dirty`, the write itself waits for write-back.
        let big = payload(6, (5 * MIB) as usize);
        img.write(8 * MIB, big.clone()).await.unwrap();
        assert!(other.read(8 * MIB, 5 * MIB).await.unwrap() == big, "written back at max dirty");
        img.close().await.unwrap();

        // `writethrough until flush` (the default): straight to the cluster until a flush.
        let wt = connect("rbd cache = true").await.ioctx("rbd").unwrap();
        let img = Image::open(&wt, "cached", None, false).await.unwrap();
        img.write(0, payload(7, 4096)).await.unwrap();
        assert!(other.read(0, 4096).await.unwrap() == payload(7, 4096));
        img.flush().await.unwrap();
        img.write(0, payload(8, 4096)).await.unwrap();
        assert!(other.read(0, 4096).await.unwrap() == payload(7, 4096), "write-back after the first flush");
        img.close().await.unwrap();
        assert!(other.read(0, 4096).await.unwrap() == payload(8, 4096), "close writes back");

        // `rbd cache = false`: always write-through.
        let off = connect("rbd cache = false").await.ioctx("rbd").unwrap();
        let img = Image::open(&off, "cached", None, false).await.unwrap();
        img.flush().await.unwrap();
        img.write(0, payload(9, 4096)).await.unwrap();
        assert!(other.read(0, 4096).await.unwrap() == payload(9, 4096));
        img.close().await.unwrap();
    });
}
