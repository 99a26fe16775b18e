//! Golden tests against Ceph's own `ceph-authtool` (Debian/Ubuntu package `ceph-common`): keys and
//! keyrings must be byte-identical in both directions. Skipped, with a note, where it is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use cairn_auth::{caps, CryptoKey, Keyring, KeyringEntry};

fn authtool(args: &[&str]) -> Option<String> {
    match Command::new("ceph-authtool").args(args).output() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("ceph-authtool: {e}"),
        Ok(out) => {
            assert!(out.status.success(), "ceph-authtool {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            Some(String::from_utf8(out.stdout).unwrap())
        }
    }
}

fn have_authtool() -> bool {
    let found = Command::new("ceph-authtool").arg("--help").output().is_ok();
    if !found {
        eprintln!("ceph-authtool not installed (apt-get install ceph-common): golden test skipped");
    }
    found
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("cairn-auth-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn file(&self, name: &str) -> (PathBuf, String) {
        let p = self.0.join(name);
        let s = p.to_str().unwrap().to_string();
        (p, s)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

#[test]
fn keyrings_made_by_ceph_authtool_parse_and_reencode_identically() {
    if !have_authtool() {
        return;
    }
    let dir = TempDir::new("from-ceph");
    let (path, f) = dir.file("ceph.client.x.keyring");
    authtool(&["--create-keyring", &f, "--gen-key", "-n", "client.x"]).unwrap();
    let text = read(&path);
    let k = Keyring::parse(&text).unwrap();
    let entry = &k.entries[&"client.x".parse().unwrap()];
    let printed = authtool(&[&f, "-p", "-n", "client.x"]).unwrap();
    assert_eq!(entry.key.to_base64(), printed.trim());
    assert_eq!(k.to_text(), text);

    // Caps and more entities added by Ceph, including the seed guides' caps.
    let glance_osd = "allow class-read object_prefix rbd_children, allow rwx pool=images";
    authtool(&[&f, "-n", "client.x", "--cap", "mon", "allow r", "--cap", "osd", glance_osd]).unwrap();
    authtool(&[
        &f,
        "--gen-key",
        "-n",
        "osd.10",
        "--cap",
        "osd",
        "allow *",
        "--cap",
        "mon",
        "allow profile osd",
    ])
    .unwrap();
    authtool(&[&f, "--gen-key", "-n", "mon."]).unwrap();
    authtool(&[&f, "--gen-key", "-n", "mgr.a", "--cap", "mon", "allow command \"osd pool ls\""]).unwrap();
    let text = read(&path);
    let k = Keyring::parse(&text).unwrap();
    assert_eq!(k.to_text(), text);
    assert_eq!(authtool(&["-l", &f]).unwrap(), text);
    let x = &k.entries[&"client.x".parse().unwrap()];
    assert_eq!(x.caps["osd"], glance_osd);
    for (service, cap) in k.entries.values().flat_map(|e| &e.caps) {
        caps::validate(service, cap).unwrap();
    }
    assert_eq!(
        k.entries.keys().map(|n| n.to_string()).collect::<Vec<_>>(),
        ["mon.", "osd.10", "client.x", "mgr.a"]
    );

    for _ in 0..20 {
        let key = authtool(&["--gen-print-key"]).unwrap();
        assert_eq!(CryptoKey::from_base64(&key).unwrap().to_base64(), key.trim());
    }
}

#[test]
fn keyrings_written_by_cairn_are_listed_identically_by_ceph_authtool() {
    if !have_authtool() {
        return;
    }
    let dir = TempDir::new("to-ceph");
    let (path, f) = dir.file("cairn.keyring");
    let mut k = Keyring::default();
    for (name, caps) in [
        (
            "client.glance",
            vec![
                ("mon", "allow r"),
                ("osd", "allow class-read object_prefix rbd_children, allow rwx pool=images"),
            ],
        ),
        (
            "client.cinder",
            vec![
                ("mon", "profile rbd"),
                ("osd", "profile rbd pool=volumes, profile rbd-read-only pool=images"),
            ],
        ),
        ("client.admin", vec![("mon", "allow *"), ("osd", "allow *"), ("mgr", "allow *")]),
        ("client.q", vec![("mon", "allow command \"auth get\" with entity=\"client.x\"")]),
        ("osd.0", vec![("mon", "allow profile osd"), ("osd", "allow *")]),
        ("mon.", vec![("mon", "allow *")]),
        ("mgr.x", vec![]),
    ] {
        let mut e = KeyringEntry::new(CryptoKey::generate());
        e.caps = caps.into_iter().map(|(s, c)| (s.to_string(), c.to_string())).collect();
        k.entries.insert(name.parse().unwrap(), e);
    }
    k.save(&path).unwrap();
    assert_eq!(authtool(&["-l", &f]).unwrap(), k.to_text());
    for (name, e) in &k.entries {
        assert_eq!(authtool(&[&f, "-p", "-n", &name.to_string()]).unwrap().trim(), e.key.to_base64());
    }

    // Ceph imports our key and writes the same text.
    let key = CryptoKey::generate();
    let (path2, f2) = dir.file("imported.keyring");
    authtool(&["--create-keyring", &f2, "-n", "client.y", "--add-key", &key.to_base64()]).unwrap();
    let back = Keyring::parse(&read(&path2)).unwrap();
    assert_eq!(back.entries[&"client.y".parse().unwrap()].key, key);
}
