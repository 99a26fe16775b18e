//! `cairn rbd …` against a real 3-OSD cluster: Ceph 16's own export-diff streams applied and
//! reproduced byte for byte, diff chains, sparse import/export, du, and Ceph's errors.
//!
//! The fixtures in tests/fixtures were made by a real Ceph 16.2.15 cluster with
//! `make-ceph-diff-fixture.sh` (see its header): `ceph-s1.diff` is `rbd export-diff fx@s1`,
//! `ceph-s1-s2.diff` is `rbd export-diff --from-snap s1 fx@s2`, `SHA256SUMS` holds the
//! sha256 of `rbd export fx@s1` and `fx@s2`.

mod common;

use common::{CliOut, Cluster};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// `SHA256SUMS` entry for `name`.
fn ceph_sha256(name: &str) -> String {
    let sums = std::fs::read_to_string(fixture("SHA256SUMS")).unwrap();
    let line = sums.lines().find(|l| l.ends_with(name)).unwrap_or_else(|| panic!("{name} in SHA256SUMS"));
    line.split_whitespace().next().unwrap().to_string()
}

fn cluster_with_rbd_pool() -> Cluster {
    let c = Cluster::up(3, 1);
    c.ok(&["osd", "pool", "create", "rbd", "8"]);
    c.wait_clean(3, Duration::from_secs(60));
    c
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `rbd export SPEC` into a new file; its bytes.
fn export(c: &Cluster, dir: &Path, spec: &str) -> Vec<u8> {
    let out = dir.join(format!("export-{}", spec.replace(['/', '@'], "_")));
    let _ = std::fs::remove_file(&out);
    c.ok(&["rbd", "export", "--no-progress", spec, p(&out)]);
    std::fs::read(&out).unwrap()
}

fn export_diff(c: &Cluster, dir: &Path, from: Option<&str>, spec: &str) -> PathBuf {
    let out = dir.join(format!("diff-{}-{}", from.unwrap_or("none"), spec.replace(['/', '@'], "_")));
    let _ = std::fs::remove_file(&out);
    let mut args = vec!["rbd", "export-diff", spec, p(&out)];
    if let Some(f) = from {
        args.extend(["--from-snap", f]);
    }
    c.ok(&args);
    out
}

fn parse_diff(bytes: &[u8]) -> Vec<cairn_rbd::diff::Record> {
    common::rt().block_on(cairn_rbd::diff::parse(bytes)).expect("a valid diff stream")
}

/// Ours must equal Ceph's byte for byte; records are compared first for a readable failure.
fn assert_same_stream(ours: &Path, ceph: &Path) {
    let (a, b) = (std::fs::read(ours).unwrap(), std::fs::read(ceph).unwrap());
    assert_eq!(parse_diff(&a), parse_diff(&b), "records of {} and {}", ours.display(), ceph.display());
    assert!(a == b, "{} is not byte-identical to {}", ours.display(), ceph.display());
}

fn assert_fails(out: &CliOut, errno: i32, message: &str) {
    assert_eq!(out.code, errno, "exit status; stderr: {}", out.stderr);
    assert!(out.stderr.contains(message), "stderr lacks {message:?}: {}", out.stderr);
}

#[test]
fn ceph_diff_streams_apply_and_reproduce_byte_for_byte() {
    assert_eq!(cairn_rbd::diff::EBADMSG, libc::EBADMSG);
    let c = cluster_with_rbd_pool();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // Ceph's streams applied to an empty image rebuild Ceph's image at both snapshots.
    c.ok(&["rbd", "create", "--size", "8M", "--object-size", "4K", "fx"]);
    c.ok(&["rbd", "import-diff", p(&fixture("ceph-s1.diff")), "fx"]);
    c.ok(&["rbd", "import-diff", "--no-progress", p(&fixture("ceph-s1-s2.diff")), "rbd/fx"]);
    let s1 = export(&c, d, "fx@s1");
    let s2 = export(&c, d, "rbd/fx@s2");
    assert_eq!(s1.len(), 8 << 20);
    assert_eq!(s2.len(), 12 << 20, "the diff grew the image to its 's' record");
    assert_eq!(sha256_hex(&s1), ceph_sha256("s1.raw"));
    assert_eq!(sha256_hex(&s2), ceph_sha256("s2.raw"));

    // Every change in the fixture covers whole 4 KiB objects, so Ceph's sub-object diff and
    // Cairn's object-granular one agree: our streams are Ceph's, byte for byte.
    assert_same_stream(&export_diff(&c, d, None, "fx@s1"), &fixture("ceph-s1.diff"));
    assert_same_stream(&export_diff(&c, d, Some("s1"), "fx@s2"), &fixture("ceph-s1-s2.diff"));

    // `rbd diff` and `rbd du` print what Ceph printed for this image.
    let diff = c.ok(&["rbd", "diff", "--from-snap", "s1", "fx@s2"]);
    assert_eq!(
        diff,
        "Offset    Length  Type\n0         4096    data\n4096      4096    data\n8192      4096    data\n\
         12288     4096    data\n409600    4096    data\n819200    4096    data\n823296    4096    data\n\
         2048000   4096    zero\n4100096   4096    zero\n4104192   4096    zero\n10240000  4096    data\n"
    );
    let du = c.ok(&["rbd", "du", "fx"]);
    assert_eq!(
        du,
        "NAME     PROVISIONED  USED  \nfx@s1          8 MiB  52 KiB\nfx@s2         12 MiB  32 KiB\n\
         fx            12 MiB     0 B\n<TOTAL>       12 MiB  84 KiB\n"
    );
    let json = c.json(&["rbd", "diff", "--from-snap", "s1", "fx@s2"]);
    assert_eq!(json[7], serde_json::json!({"offset": 2048000, "length": 4096, "exists": "false"}));

    // Ceph's rules: the start snapshot must exist, the end snapshot must not.
    c.ok(&["rbd", "create", "--size", "8M", "--object-size", "4K", "other"]);
    let no_start = c.cli(&["rbd", "import-diff", p(&fixture("ceph-s1-s2.diff")), "other"]);
    assert_fails(&no_start, libc::EINVAL, "start snapshot 's1' does not exist in the image, aborting");
    let again = c.cli(&["rbd", "import-diff", p(&fixture("ceph-s1.diff")), "fx"]);
    assert_fails(&again, libc::EEXIST, "end snapshot 's1' already exists, aborting");
    assert!(again.stderr.contains("rbd: import-diff failed: (17) File exists"), "{}", again.stderr);

    diff_chain(&c, d);
}

/// A full diff, then two incrementals, rebuild the source at every snapshot; a truncated
/// stream is refused whole and leaves the target as it was.
fn diff_chain(c: &Cluster, d: &Path) {
    let base: Vec<u8> =
        (0..(16u32 << 20)).map(|i| if (i >> 20) % 3 == 1 { (i % 251) as u8 } else { 0 }).collect();
    let base_path = d.join("base.raw");
    std::fs::write(&base_path, &base).unwrap();
    c.ok(&["rbd", "import", p(&base_path), "rbd/src"]);
    c.ok(&["rbd", "snap", "create", "src@s1"]);
    let bench = |total: &str| {
        let args =
            ["rbd", "bench", "--io-type", "write", "--io-size", "4K", "--io-total", total, "--io-pattern"];
        c.ok(&[&args[..], &["rand", "src"]].concat())
    };
    let printed = bench("512K");
    assert!(printed.contains("elapsed:") && printed.contains("ops: 128"), "{printed}");
    c.ok(&["rbd", "snap", "create", "src@s2"]);
    c.ok(&["rbd", "resize", "--size", "20M", "src"]);
    bench("1M");
    c.ok(&["rbd", "snap", "create", "src@s3"]);

    let full = export_diff(c, d, None, "src@s1");
    let inc1 = export_diff(c, d, Some("s1"), "src@s2");
    let inc2 = export_diff(c, d, Some("s2"), "src@s3");
    c.ok(&["rbd", "create", "--size", "1M", "dst"]);
    c.ok(&["rbd", "import-diff", p(&full), "dst"]);
    assert_eq!(export(c, d, "dst@s1"), base);
    // From stdin this time.
    let mut child = std::process::Command::new(common::CAIRN)
        .args(["rbd", "import-diff", "-", "dst"])
        .env("CAIRN_CONF", c.conf())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&std::fs::read(&inc1).unwrap()).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(export(c, d, "dst@s2"), export(c, d, "src@s2"));

    // Truncated anywhere: EBADMSG (Ceph's "Bad message"), nothing applied, no s3.
    let whole = std::fs::read(&inc2).unwrap();
    let before = export(c, d, "dst");
    for cut in [12, whole.len() / 2, whole.len() - 1] {
        let t = d.join(format!("truncated-{cut}"));
        std::fs::write(&t, &whole[..cut]).unwrap();
        let out = c.cli(&["rbd", "import-diff", p(&t), "dst"]);
        assert_fails(&out, libc::EBADMSG, "rbd: import-diff failed: (74) Bad message");
        assert_eq!(export(c, d, "dst"), before, "a refused stream (cut at {cut}) changed the image");
    }
    assert!(!c.ok(&["rbd", "snap", "ls", "dst"]).contains("s3"));
    c.ok(&["rbd", "import-diff", p(&inc2), "dst"]);
    let s3 = export(c, d, "src@s3");
    assert_eq!(s3.len(), 20 << 20);
    assert_eq!(export(c, d, "dst@s3"), s3);
    assert_eq!(export(c, d, "dst"), s3);
}

#[test]
fn sparse_import_export_du_and_cephs_errors() {
    let c = cluster_with_rbd_pool();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // A 256 MiB file with holes: exported back byte-identical, the export sparse as well.
    let src = d.join("disk.raw");
    let file = std::fs::File::create(&src).unwrap();
    file.set_len(256 << 20).unwrap();
    let chunks: [(u64, usize); 4] =
        [(0, 70_000), (5 << 20, 4096), ((100 << 20) - 100_000, 300_000), ((256 << 20) - 4096, 4096)];
    for (i, (off, len)) in chunks.iter().enumerate() {
        let data = common::payload(i as u64, *len);
        std::os::unix::fs::FileExt::write_all_at(&file, &data, *off).unwrap();
    }
    drop(file);
    c.ok(&["rbd", "import", "--no-progress", p(&src), "rbd/disk"]);
    let info = c.ok(&["rbd", "info", "disk"]);
    assert!(
        info.starts_with("rbd image 'disk':\n\tsize 256 MiB in 64 objects\n\torder 22 (4 MiB objects)\n"),
        "{info}"
    );
    assert!(info.contains(
        "\tformat: 2\n\tfeatures: layering, exclusive-lock, object-map, fast-diff, deep-flatten\n"
    ));
    let out = d.join("disk.out");
    c.ok(&["rbd", "export", "disk", p(&out)]);
    assert!(std::fs::read(&out).unwrap() == std::fs::read(&src).unwrap(), "export differs from the import");
    let blocks = std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(&out).unwrap());
    assert!(blocks * 512 < 8 << 20, "the export is sparse ({blocks} blocks)");
    // Provisioned vs used: five 4 MiB objects hold data (the third range spans two).
    assert_eq!(c.ok(&["rbd", "du", "disk"]), "NAME  PROVISIONED  USED  \ndisk      256 MiB  20 MiB\n");
    let du = c.json(&["rbd", "du", "disk"]);
    assert_eq!(du["images"][0]["provisioned_size"], 256u64 << 20);
    assert_eq!(du["images"][0]["used_size"], 20u64 << 20);
    assert_eq!(c.ok(&["rbd", "ls"]), "disk\n");

    // Errors: Ceph's lines, the errno as exit status (rbd returns abs(r)).
    let missing = c.cli(&["rbd", "info", "vol1"]);
    assert_fails(&missing, libc::ENOENT, "rbd: error opening image vol1: (2) No such file or directory");
    let exists = c.cli(&["rbd", "create", "--size", "1G", "disk"]);
    assert_fails(&exists, libc::EEXIST, "rbd: create error: (17) File exists");
    let shrink = c.cli(&["rbd", "resize", "--size", "10M", "disk"]);
    assert_fails(
        &shrink,
        libc::EINVAL,
        "rbd: shrinking an image is only allowed with the --allow-shrink flag",
    );
    assert!(c.ok(&["rbd", "info", "disk"]).contains("size 256 MiB"), "a refused shrink changed nothing");
    c.ok(&["rbd", "snap", "create", "disk@before"]);
    let with_snaps = c.cli(&["rbd", "rm", "disk"]);
    assert_fails(
        &with_snaps,
        libc::ENOTEMPTY,
        "rbd: image has snapshots - these must be deleted with 'rbd snap purge'",
    );
    let no_size = c.cli(&["rbd", "create", "x"]);
    assert_fails(&no_size, libc::EINVAL, "rbd: must specify --size <M/G/T>");
    let no_pool = c.cli(&["rbd", "ls", "nopool"]);
    assert_fails(&no_pool, libc::ENOENT, "rbd: error opening pool 'nopool': (2) No such file or directory");
    let bad_opt = c.cli(&["rbd", "ls", "--bogus"]);
    assert_fails(&bad_opt, 1, "rbd: unrecognised option '--bogus'");
    c.ok(&["rbd", "resize", "--size", "128M", "--allow-shrink", "disk"]);
    c.ok(&["rbd", "snap", "purge", "disk"]);
    c.ok(&["rbd", "rm", "disk"]);
    assert_eq!(c.ok(&["rbd", "ls"]), "");
}
