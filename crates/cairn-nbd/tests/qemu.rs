//! QEMU's own NBD client (qemu-img, qemu-io) against the in-process server.

mod common;

use cairn_nbd::{BlockDevice, MemDevice, Server, MEM_PAGE_BYTES};
use common::*;
use std::sync::Arc;

fn virtual_size(info_json: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(info_json).expect("qemu-img info JSON");
    v["virtual-size"].as_u64().expect("virtual-size")
}

/// A raw file with data regions, unaligned writes and holes.
fn sample_image(size: usize) -> Vec<u8> {
    let mut img = vec![0u8; size];
    for (offset, len, seed) in
        [(0usize, 70_000usize, 1u64), (1_234_567, 3_333, 2), (5 * MIB as usize, MIB as usize, 3)]
    {
        img[offset..offset + len].copy_from_slice(&pattern(len, seed));
    }
    let end = size - 10;
    img[end..].copy_from_slice(&[0xee; 10]);
    img
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_img_info_convert_compare_raw_and_qcow2() {
    if !have("qemu-img") || !have("qemu-io") {
        return;
    }
    let size = 32 * MIB;
    let raw_dev = Arc::new(MemDevice::new(size));
    let qcow_dev = Arc::new(MemDevice::new(size));
    let ts = start(vec![("disk", raw_dev.clone() as Arc<dyn BlockDevice>), ("q", qcow_dev.clone())]).await;
    let dir = tempfile::tempdir().expect("tempdir");

    // info: the virtual size is the export size.
    let info = run_ok("qemu-img", &["info", "--output=json", &ts.uri("disk")]).await;
    assert_eq!(virtual_size(&info), size);

    // raw file → NBD, then compare (qemu reads back through NBD) and check the device bytes.
    let raw = dir.path().join("src.raw");
    let img = sample_image(size as usize);
    std::fs::write(&raw, &img).expect("write raw");
    run_ok("qemu-img", &["convert", "-n", "-f", "raw", "-O", "raw", path_str(&raw), &ts.uri("disk")]).await;
    let out =
        run_ok("qemu-img", &["compare", "-f", "raw", "-F", "raw", path_str(&raw), &ts.uri("disk")]).await;
    assert!(out.contains("Images are identical"), "{out}");
    assert!(raw_dev.contents() == img, "device content differs from the source file");

    // qcow2 built with qemu-io → NBD reads back equal to its raw conversion.
    let qcow = dir.path().join("src.qcow2");
    let qcow_raw = dir.path().join("src-qcow.raw");
    run_ok("qemu-img", &["create", "-f", "qcow2", path_str(&qcow), "32M"]).await;
    let io = run_ok(
        "qemu-io",
        &[
            "-f",
            "qcow2",
            "-c",
            "write -P 0xab 1M 64k",
            "-c",
            "write -P 0x5c 5000 3000",
            "-c",
            "write -P 0x77 20M 3M",
            "-c",
            "write -z 21M 64k",
            path_str(&qcow),
        ],
    )
    .await;
    assert!(!io.contains("failed"), "{io}");
    run_ok("qemu-img", &["convert", "-f", "qcow2", "-O", "raw", path_str(&qcow), path_str(&qcow_raw)]).await;
    run_ok("qemu-img", &["convert", "-n", "-f", "qcow2", "-O", "raw", path_str(&qcow), &ts.uri("q")]).await;
    let out =
        run_ok("qemu-img", &["compare", "-f", "qcow2", "-F", "raw", path_str(&qcow), &ts.uri("q")]).await;
    assert!(out.contains("Images are identical"), "{out}");
    let expected = std::fs::read(&qcow_raw).expect("read converted raw");
    assert_eq!(expected.len() as u64, size);
    assert!(qcow_dev.contents() == expected, "NBD content differs from the qcow2's raw form");
    // The sparse source stayed sparse: most of the 32 MiB was never written.
    assert!((qcow_dev.allocated_pages() as u64) < 5 * MIB / MEM_PAGE_BYTES, "{}", qcow_dev.allocated_pages());

    ts.wait_idle().await;
}

/// One qemu-img map entry.
#[derive(Debug)]
struct MapEntry {
    start: u64,
    length: u64,
    data: bool,
    zero: bool,
}

fn map_entries(json: &str) -> Vec<MapEntry> {
    let v: serde_json::Value = serde_json::from_str(json).expect("map JSON");
    v.as_array()
        .expect("array")
        .iter()
        .map(|e| MapEntry {
            start: e["start"].as_u64().expect("start"),
            length: e["length"].as_u64().expect("length"),
            data: e["data"].as_bool().expect("data"),
            zero: e["zero"].as_bool().expect("zero"),
        })
        .collect()
}

fn at(map: &[MapEntry], offset: u64) -> (bool, bool) {
    let e = map.iter().find(|e| e.start <= offset && offset < e.start + e.length).expect("offset mapped");
    (e.data, e.zero)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_io_unaligned_writes_discard_write_zeroes_and_map() {
    if !have("qemu-io") || !have("qemu-img") {
        return;
    }
    let size = 8 * MIB;
    let dev = Arc::new(MemDevice::new(size));
    let ts = start(vec![("io", dev.clone() as Arc<dyn BlockDevice>)]).await;
    let uri = ts.uri("io");

    let cmds = [
        "write -P 0x11 1000 5000",
        "write -P 0x22 65536 131072",
        "write -P 0x33 1048575 3",
        "discard 65536 65536",
        "write -P 0x44 2M 64k",
        "write -z 2M 64k",
        "write -P 0x55 3M 128k",
        "write -z -u 3M 128k",
        "write -P 0x66 4M 4096",
        "write -P 0x67 4194305 100",
        "flush",
    ];
    let mut args: Vec<&str> = vec!["-f", "raw"];
    for c in &cmds {
        args.extend(["-c", c]);
    }
    args.push(&uri);
    let out = run_ok("qemu-io", &args).await;
    assert!(!out.contains("failed"), "{out}");
    assert_eq!(out.matches("wrote ").count(), 9, "{out}");

    let reads = [
        "read -P 0 0 1000",
        "read -P 0x11 1000 5000",
        "read -P 0 6000 59536",
        "read -P 0 65536 65536",
        "read -P 0x22 131072 65536",
        "read -P 0x33 1048575 3",
        "read -P 0 2M 64k",
        "read -P 0 3M 128k",
        "read -P 0x66 4M 1",
        "read -P 0x67 4194305 100",
        "read -P 0x66 4194405 3691",
        "read -P 0 7M 1M",
    ];
    let mut args: Vec<&str> = vec!["-f", "raw", "-r"];
    for c in &reads {
        args.extend(["-c", c]);
    }
    args.push(&uri);
    let out = run_ok("qemu-io", &args).await;
    assert!(!out.contains("Pattern verification failed") && !out.contains("failed"), "{out}");
    assert_eq!(out.matches("read ").count(), reads.len(), "{out}");

    // The device itself holds the bytes qemu wrote.
    let c = dev.contents();
    assert!(c[1000..6000].iter().all(|&b| b == 0x11));
    assert!(c[131072..196608].iter().all(|&b| b == 0x22));
    assert!(c[65536..131072].iter().all(|&b| b == 0));
    assert_eq!(&c[1048575..1048578], &[0x33; 3]);
    assert!(dev.flushes() >= 1, "qemu-io flush reached the device");

    // Allocation as qemu sees it through base:allocation.
    let map = map_entries(&run_ok("qemu-img", &["map", "--output=json", "-f", "raw", &uri]).await);
    assert_eq!(map.first().map(|e| e.start), Some(0));
    assert_eq!(map.iter().map(|e| e.length).sum::<u64>(), size);
    assert_eq!(at(&map, 0), (true, false), "written data");
    assert_eq!(at(&map, 65536), (false, true), "discarded → hole");
    assert_eq!(at(&map, 131072), (true, false));
    assert_eq!(at(&map, 1048576), (true, false));
    assert_eq!(at(&map, 2 * MIB), (true, true), "write -z → allocated zeroes");
    assert_eq!(at(&map, 3 * MIB), (false, true), "write -z -u → hole");
    assert_eq!(at(&map, 4 * MIB), (true, false));
    assert_eq!(at(&map, 6 * MIB), (false, true), "never written → hole");

    ts.wait_idle().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_over_unix_socket_and_default_export() {
    if !have("qemu-img") || !have("qemu-io") {
        return;
    }
    let dev = Arc::new(MemDevice::new(4 * MIB));
    let mut server = Server::new();
    server.add_export("vol", dev.clone()).expect("export");
    server.set_default_export("vol").expect("default");
    let server = Arc::new(server);
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("nbd.sock");
    let listener = tokio::net::UnixListener::bind(&sock).expect("bind unix");
    let task = tokio::spawn(server.clone().serve_unix(listener));

    let named = format!("nbd+unix:///vol?socket={}", path_str(&sock));
    let default = format!("nbd+unix:///?socket={}", path_str(&sock));
    let info = run_ok("qemu-img", &["info", "--output=json", &named]).await;
    assert_eq!(virtual_size(&info), 4 * MIB);
    let out = run_ok("qemu-io", &["-f", "raw", "-c", "write -P 0x42 512 1536", &default]).await;
    assert!(out.contains("wrote 1536/1536"), "{out}");
    let out = run_ok("qemu-io", &["-f", "raw", "-r", "-c", "read -P 0x42 512 1536", &named]).await;
    assert!(out.contains("read 1536/1536") && !out.contains("failed"), "{out}");
    assert!(dev.contents()[512..2048].iter().all(|&b| b == 0x42));

    server.shutdown();
    tokio::time::timeout(STEP_TIMEOUT, task).await.expect("listener stops").expect("join").expect("serve");
}
