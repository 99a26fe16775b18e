//! Operator commands against a real 3-OSD cluster: pools, objects and every bad input the issue
//! lists, each with its errno and Ceph's wording.

mod common;

use common::Cluster;
use std::io::{Read, Write};

#[test]
fn pools_objects_and_errors() {
    let c = Cluster::up(3, 1);

    // Pools.
    c.ok(&["osd", "pool", "create", "volumes", "16"]);
    c.ok(&["osd", "pool", "create", "images", "8"]);
    let dup = c.cli(&["osd", "pool", "create", "volumes", "16"]);
    assert_eq!(dup.code, libc::EEXIST, "{}", dup.stderr);
    assert!(dup.stderr.contains("pool 'volumes' already exists"), "{}", dup.stderr);
    for bad in ["0", "abc"] {
        let out = c.cli(&["osd", "pool", "create", "bad", bad]);
        assert_eq!(out.code, libc::EINVAL, "pg_num {bad}: {}", out.stderr);
        assert!(out.stderr.contains("pg_num"), "reason names pg_num: {}", out.stderr);
    }
    let rm = c.cli(&["osd", "pool", "rm", "images"]);
    assert_eq!(rm.code, libc::EPERM, "{}", rm.stderr);
    assert!(rm.stderr.contains("--yes-i-really-really-mean-it"), "{}", rm.stderr);
    let lspools = c.ok(&["osd", "lspools"]);
    assert!(lspools.contains("1 volumes") && lspools.contains("2 images"), "{lspools}");
    c.ok(&["osd", "pool", "rm", "images", "images", "--yes-i-really-really-mean-it"]);
    let get = c.cli(&["osd", "pool", "get", "images", "size"]);
    assert_eq!(get.code, libc::ENOENT, "{}", get.stderr);
    c.ok(&["osd", "pool", "application", "enable", "volumes", "rbd"]);
    c.wait_clean(3, std::time::Duration::from_secs(60));

    // Objects through the rados dialect.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&input, &payload).unwrap();
    c.ok(&["rados", "-p", "volumes", "put", "obj1", input.to_str().unwrap()]);
    let output = dir.path().join("out");
    c.ok(&["rados", "-p", "volumes", "get", "obj1", output.to_str().unwrap()]);
    assert_eq!(std::fs::read(&output).unwrap(), payload);
    let stat = c.ok(&["rados", "-p", "volumes", "stat", "obj1"]);
    assert!(stat.contains("size 3000000"), "{stat}");
    c.ok(&["rados", "-p", "volumes", "setxattr", "obj1", "color", "blue"]);
    assert_eq!(c.ok(&["rados", "-p", "volumes", "getxattr", "obj1", "color"]).trim(), "blue");
    assert!(c.ok(&["rados", "-p", "volumes", "listxattr", "obj1"]).contains("color"));
    c.ok(&["rados", "-p", "volumes", "setomapval", "obj1", "k1", "v1"]);
    c.ok(&["rados", "-p", "volumes", "setomapval", "obj1", "k2", "v2"]);
    assert_eq!(c.ok(&["rados", "-p", "volumes", "listomapkeys", "obj1"]), "k1\nk2\n");
    let v = c.ok(&["rados", "-p", "volumes", "getomapval", "obj1", "k2"]);
    assert!(v.contains("value (2 bytes)"), "{v}");
    assert_eq!(c.ok(&["rados", "-p", "volumes", "ls"]), "obj1\n");

    // stdin/stdout.
    let mut child = std::process::Command::new(common::CAIRN)
        .args(["rados", "-p", "volumes", "put", "greeting", "-"])
        .env("CAIRN_CONF", c.conf())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(c.ok(&["rados", "-p", "volumes", "get", "greeting", "-"]), "hello\n");

    // Missing object, missing pool, name too long, past the maximum object size.
    let missing = c.cli(&["rados", "-p", "volumes", "get", "nope", "-"]);
    assert_eq!(missing.code, libc::ENOENT, "{}", missing.stderr);
    assert!(missing.stderr.contains("(2) No such file or directory"), "{}", missing.stderr);
    let nopool = c.cli(&["rados", "-p", "nopool", "ls"]);
    assert_eq!(nopool.code, libc::ENOENT, "{}", nopool.stderr);
    let long = "x".repeat(cairn_types::MAX_OBJECT_NAME_BYTES + 1);
    let too_long = c.cli(&["rados", "-p", "volumes", "put", &long, input.to_str().unwrap()]);
    assert_eq!(too_long.code, libc::ENAMETOOLONG, "{}", too_long.stderr);
    let trunc = c.cli(&[
        "rados",
        "-p",
        "volumes",
        "truncate",
        "obj1",
        &format!("{}", cairn_types::MAX_OBJECT_SIZE_BYTES + 1),
    ]);
    assert_eq!(trunc.code, libc::EFBIG, "{}", trunc.stderr);

    // df JSON has Ceph's shape.
    let df = c.json(&["df"]);
    assert!(df["stats"]["total_bytes"].as_u64().unwrap() > 0);
    let pool = df["pools"].as_array().unwrap().iter().find(|p| p["name"] == "volumes").unwrap().clone();
    assert!(pool["stats"]["max_avail"].as_u64().is_some());
    assert!(pool["stats"]["bytes_used"].as_u64().is_some());
    assert!(pool["stats"]["stored"].as_u64().is_some());
}

#[test]
fn daemons_refuse_foreign_or_locked_data_dirs_and_survive_garbage() {
    let c = Cluster::up(1, 1);
    // A second OSD daemon on the same data directory: the lock is held.
    let out = c.cli(&["osd", "--id", "0"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("in use") && out.stderr.contains("lock"), "{}", out.stderr);

    // A data directory of another cluster: refused, naming the fsid it found.
    let other = Cluster::up(1, 1);
    let foreign = other.path().join("osd.0");
    other.ok(&["down", "--dir", other.path().to_str().unwrap()]);
    let out = c.cli(&["osd", "--id", "0", "--data", foreign.to_str().unwrap()]);
    assert_ne!(out.code, 0);
    let other_conf = std::fs::read_to_string(other.conf()).unwrap();
    let other_fsid = other_conf.lines().find_map(|l| l.strip_prefix("fsid = ")).unwrap().trim().to_string();
    assert!(out.stderr.contains(&other_fsid), "names the fsid it found: {}", out.stderr);

    // Garbage to the mon's and the OSD's ports: connection closed, daemons unaffected.
    let map = c.json(&["osd", "dump"]);
    // Ceph prints messenger addresses: `v2:127.0.0.1:6800/0`.
    let osd_addr = map["osds"][0]["public_addr"]
        .as_str()
        .unwrap()
        .trim_start_matches("v2:")
        .trim_end_matches("/0")
        .to_string();
    let conf = std::fs::read_to_string(c.conf()).unwrap();
    let mon_addr = conf.lines().find_map(|l| l.strip_prefix("mon host = ")).unwrap().trim().to_string();
    for addr in [osd_addr.as_str(), mon_addr.as_str()] {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"GET / HTTP/1.0\r\n\r\nthis is not a cairn frame at all").unwrap();
        let mut buf = Vec::new();
        s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let n = s.read_to_end(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "the daemon closes the connection without answering");
    }
    c.ok(&["osd", "pool", "create", "p", "4"]);
    c.ok(&["status"]);
}

#[test]
fn quota_bench_and_pool_settings() {
    let c = Cluster::up(3, 1);
    c.ok(&["osd", "pool", "create", "q", "8"]);
    c.ok(&["osd", "pool", "set-quota", "q", "max_objects", "5"]);
    let quota = c.json(&["osd", "pool", "get-quota", "q"]);
    assert_eq!(quota["quota_max_objects"].as_u64(), Some(5), "{quota}");
    c.wait_clean(3, std::time::Duration::from_secs(60));
    for i in 0..5 {
        c.ok(&["rados", "-p", "q", "create", &format!("o{i}")]);
    }
    // The mon marks the pool full from the OSDs' next stats report; then writes get EDQUOT.
    c.wait_for("EDQUOT on a full pool", std::time::Duration::from_secs(30), || {
        c.cli(&["rados", "-p", "q", "create", "extra"]).code == libc::EDQUOT
    });
    c.ok(&["rados", "-p", "q", "rm", "o0"]);

    c.ok(&["osd", "pool", "set", "q", "size", "2"]);
    assert_eq!(c.json(&["osd", "pool", "get", "q", "size"])["size"].as_u64(), Some(2));
    let bad = c.cli(&["osd", "pool", "set", "q", "min_size", "5"]);
    assert_eq!(bad.code, libc::EINVAL, "{}", bad.stderr);
    let split = c.cli(&["osd", "pool", "set", "q", "pg_num", "16"]);
    assert_eq!(split.code, libc::EOPNOTSUPP, "{}", split.stderr);

    c.ok(&["osd", "pool", "create", "b", "8"]);
    c.wait_clean(3, std::time::Duration::from_secs(60));
    let out = c.ok(&["rados", "bench", "-p", "b", "2", "write", "-b", "64K", "-t", "4", "--no-cleanup"]);
    assert!(out.contains("Bandwidth (MB/sec):") && out.contains("Average IOPS:"), "{out}");
    let seq = c.ok(&["rados", "bench", "-p", "b", "2", "seq", "-t", "4"]);
    assert!(seq.contains("Total reads made:"), "{seq}");
    let made: u64 =
        out.lines().find_map(|l| l.strip_prefix("Total writes made:")).unwrap().trim().parse().unwrap();
    assert!(made > 0);
}
