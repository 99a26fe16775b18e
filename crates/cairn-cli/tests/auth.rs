//! Authentication and caps against real daemons (issue 5, docs/auth.md): the seeds' `auth`
//! command lines and what the users they create may do; refusals (wrong key, unknown, removed,
//! reduced caps, expired ticket) that change nothing; no secret on the wire and no replay; auth
//! `none` clusters, and the two modes refusing each other.

mod common;

use bytes::Bytes;
use cairn_auth::{CryptoKey, Keyring, KeyringEntry};
use cairn_client::Rados;
use cairn_proto::cls::ClsCall;
use cairn_proto::frame::{self, FrameType, HEADER_BYTES};
use cairn_proto::msg::{decode_envelope, Envelope};
use cairn_proto::net::Network;
use cairn_proto::{ClientAuth, Conn, Message};
use cairn_rbd::{CreateOptions, Image};
use cairn_types::errno;
use common::tap::{Recorded, RecordingNet};
use common::{rt, Cluster};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIB: u64 = 1 << 20;
/// Seed 000 (Mitaka and later) / 003, verbatim.
const GLANCE_OSD: &str = "allow class-read object_prefix rbd_children, allow rwx pool=images";
const BACKUP_OSD: &str = "allow class-read object_prefix rbd_children, allow rwx pool=backups";
const CINDER_OSD: &str =
    "allow class-read object_prefix rbd_children, allow rwx pool=volumes, allow rwx pool=vms, allow rx pool=images";
/// Seed 000's other `client.cinder` line (rwx on images).
const CINDER_OSD_RWX: &str =
    "allow class-read object_prefix rbd_children, allow rwx pool=volumes, allow rwx pool=vms, allow rwx pool=images";

fn caps_of(keyring_text: &str, entity: &str) -> Vec<(String, String)> {
    let k = Keyring::parse(keyring_text).unwrap_or_else(|e| panic!("not a keyring ({e}): {keyring_text}"));
    let e = k.get(&entity.parse().unwrap()).unwrap_or_else(|| panic!("no {entity} in {keyring_text}"));
    e.caps.iter().map(|(a, b)| (a.clone(), b.clone())).collect()
}

fn caps(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

fn key_of(keyring_text: &str, entity: &str) -> CryptoKey {
    Keyring::parse(keyring_text).unwrap().get(&entity.parse().unwrap()).unwrap().key.clone()
}

/// A keyring file holding a random (wrong) key for `entity`.
fn random_keyring(dir: &Path, entity: &str) -> PathBuf {
    let mut k = Keyring::default();
    k.entries.insert(entity.parse().unwrap(), KeyringEntry::new(CryptoKey::generate()));
    let path = dir.join(format!("random.{entity}.keyring"));
    k.save(&path).unwrap();
    path
}

fn pools(c: &Cluster, names: &[&str]) {
    for p in names {
        c.ok(&["osd", "pool", "create", p, "8"]);
    }
    c.wait_clean(3, Duration::from_secs(120));
}

fn input_file(c: &Cluster, name: &str, content: &[u8]) -> String {
    let p = c.path().join(name);
    std::fs::write(&p, content).unwrap();
    p.display().to_string()
}

/// Writes `PREFIX0`, `PREFIX1`, … every 50 ms until one is refused (at most 20 s); returns the
/// refusal, how long it took, and the refused object's name.
async fn until_refused(io: &cairn_client::IoCtx, prefix: &str) -> (cairn_types::Error, Duration, String) {
    let start = Instant::now();
    for n in 0.. {
        let name = format!("{prefix}{n}");
        if let Err(e) = io.write_full(&name, Bytes::from_static(b"x")).await {
            return (e, start.elapsed(), name);
        }
        assert!(start.elapsed() < Duration::from_secs(20), "still allowed after 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    unreachable!()
}

// -------------------------------------------------------------------------------------------
// 1. The seeds' command lines, and what the users they make may do.

#[test]
fn seed_auth_commands_make_users_whose_caps_hold() {
    let c = Cluster::up(3, 1);
    pools(&c, &["images", "volumes", "vms", "backups"]);

    let glance = c.ok(&["auth", "get-or-create", "client.glance", "mon", "allow r", "osd", GLANCE_OSD]);
    assert!(glance.starts_with("[client.glance]\n\tkey = AQ"), "{glance}");
    assert!(
        glance.ends_with(&format!("\tcaps mon = \"allow r\"\n\tcaps osd = \"{GLANCE_OSD}\"\n")),
        "{glance}"
    );
    let backup =
        c.ok(&["auth", "get-or-create", "client.cinder-backup", "mon", "allow r", "osd", BACKUP_OSD]);
    assert_eq!(caps_of(&backup, "client.cinder-backup"), caps(&[("mon", "allow r"), ("osd", BACKUP_OSD)]));
    let cinder = c.ok(&["auth", "get-or-create", "client.cinder", "mon", "allow r", "osd", CINDER_OSD]);
    assert_eq!(caps_of(&cinder, "client.cinder"), caps(&[("mon", "allow r"), ("osd", CINDER_OSD)]));
    // The other line for an existing user with other caps is refused, as by Ceph.
    let out = c.cli(&["auth", "get-or-create", "client.cinder", "mon", "allow r", "osd", CINDER_OSD_RWX]);
    assert_eq!(out.code, errno::EINVAL, "{}", out.stderr);
    assert!(out.stderr.contains("key for client.cinder exists but cap osd does not match"), "{}", out.stderr);
    // `ceph auth get-or-create client.glance | sudo tee …`: the same keyring again.
    assert_eq!(c.ok(&["auth", "get-or-create", "client.glance"]), glance);
    // `ceph auth get-key client.cinder | ssh … tee client.cinder.key`.
    assert_eq!(
        c.ok(&["auth", "get-key", "client.cinder"]).trim(),
        key_of(&cinder, "client.cinder").to_base64()
    );
    // Bad caps are refused with the position and the reason; nothing is created.
    let out = c.cli(&["auth", "get-or-create", "client.typo", "osd", "allow rwx pool=images, alow r"]);
    assert_eq!(out.code, errno::EINVAL);
    assert!(out.stderr.contains("bad osd cap at 23: expected 'allow' or 'profile'"), "{}", out.stderr);
    assert_eq!(c.cli(&["auth", "get", "client.typo"]).code, errno::ENOENT);

    // Seed 004: create bare, set caps, export with -o.
    let nova = c.ok(&["auth", "get-or-create", "client.nova"]);
    assert!(caps_of(&nova, "client.nova").is_empty());
    let out = c.cli(&["auth", "caps", "client.nova", "mon", "allow r", "osd", "allow rwx pool=vms"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("updated caps for client.nova"), "{}", out.stderr);
    let nova_path = c.keyring_path("client.nova");
    let out = c.cli(&["auth", "get", "client.nova", "-o", nova_path.to_str().unwrap()]);
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{}", out.stderr);
    assert!(out.stderr.contains("exported keyring for client.nova"), "{}", out.stderr);
    let saved = std::fs::read_to_string(&nova_path).unwrap();
    assert_eq!(caps_of(&saved, "client.nova"), caps(&[("mon", "allow r"), ("osd", "allow rwx pool=vms")]));
    assert_eq!(std::fs::metadata(&nova_path).unwrap().permissions().mode() & 0o777, 0o600);
    let ls = c.ok(&["auth", "ls"]);
    assert!(
        ls.contains("client.nova\n\tkey: AQ") && ls.contains("\tcaps: [osd] allow rwx pool=vms\n"),
        "{ls}"
    );

    for (name, text) in [("client.glance", &glance), ("client.cinder", &cinder)] {
        std::fs::write(c.keyring_path(name), text).unwrap();
    }
    glance_may_use_images_only(&c, &glance);
    cinder_reads_images_and_clones_into_volumes(&c);
    object_prefix_grants_only_that_prefix(&c);
}

fn glance_may_use_images_only(c: &Cluster, glance: &str) {
    let file = input_file(c, "g.in", b"glance data");
    c.ok(&["--id", "glance", "rados", "-p", "images", "put", "g1", &file]);
    assert_eq!(c.ok(&["--id", "glance", "rados", "-p", "images", "get", "g1", "-"]), "glance data");
    let out = c.cli(&["--id", "glance", "rados", "-p", "volumes", "put", "g1", &file]);
    assert_eq!(out.code, errno::EPERM, "{}", out.stderr);
    assert!(out.stderr.contains("error putting volumes/g1: (1) Operation not permitted"), "{}", out.stderr);
    let out = c.cli(&["--id", "glance", "osd", "pool", "create", "glance-pool", "8"]);
    assert_eq!(out.code, errno::EACCES, "{}", out.stderr);
    assert!(out.stderr.contains("Error EACCES: access denied"), "{}", out.stderr);
    let out = c.cli(&["--id", "glance", "auth", "caps", "client.glance", "mon", "allow *", "osd", "allow *"]);
    assert_eq!(out.code, errno::EACCES, "{}", out.stderr);
    // Nothing changed, as the admin sees it.
    assert!(!c.ok(&["osd", "lspools"]).contains("glance-pool"));
    assert_eq!(c.ok(&["auth", "get", "client.glance"]), glance);
    assert_eq!(c.cli(&["rados", "-p", "volumes", "stat", "g1"]).code, errno::ENOENT);
    // `allow r` on the mon still reads the maps.
    assert!(c.ok(&["--id", "glance", "osd", "lspools"]).contains("images"));
}

fn cinder_reads_images_and_clones_into_volumes(c: &Cluster) {
    let file = input_file(c, "c.in", b"cinder data");
    assert_eq!(c.ok(&["--id", "cinder", "rados", "-p", "images", "get", "g1", "-"]), "glance data");
    let out = c.cli(&["--id", "cinder", "rados", "-p", "images", "put", "c1", &file]);
    assert_eq!(out.code, errno::EPERM, "{}", out.stderr);
    c.ok(&["--id", "cinder", "rados", "-p", "volumes", "put", "c1", &file]);
    assert_eq!(c.cli(&["rados", "-p", "images", "stat", "c1"]).code, errno::ENOENT);
    rt().block_on(async {
        // Glance uploads an image and protects a snapshot of it ...
        let glance = c.client_as("client.glance").await.unwrap();
        let images = glance.ioctx("images").unwrap();
        let opts = CreateOptions { order: Some(20), ..Default::default() };
        cairn_rbd::create(&images, "base", 4 * MIB, &opts).await.unwrap();
        let base = Image::open(&images, "base", None, false).await.unwrap();
        let data = common::payload(7, MIB as usize);
        base.write(MIB, data.clone()).await.unwrap();
        base.snap_create("snap").await.unwrap();
        base.snap_set_protection("snap", true).await.unwrap();
        base.close().await.unwrap();
        // ... Cinder clones it into volumes and writes there, but cannot write the image.
        let cinder = c.client_as("client.cinder").await.unwrap();
        let (ci, cv) = (cinder.ioctx("images").unwrap(), cinder.ioctx("volumes").unwrap());
        cairn_rbd::clone(&ci, "base", "snap", &cv, "vol1", &opts, false).await.unwrap();
        let vol = Image::open(&cv, "vol1", None, false).await.unwrap();
        assert!(vol.read(MIB, MIB).await.unwrap() == data, "the clone reads the parent");
        vol.write(0, Bytes::from_static(b"volume")).await.unwrap();
        vol.close().await.unwrap();
        let e = cinder.ioctx("images").unwrap().write_full("rbd_data.x", Bytes::from_static(b"x")).await;
        assert_eq!(e.unwrap_err().errno, errno::EPERM);
        let img = Image::open(&ci, "base", None, true).await.unwrap();
        assert!(img.read(MIB, MIB).await.unwrap() == data);
    });
}

fn object_prefix_grants_only_that_prefix(c: &Cluster) {
    rt().block_on(async {
        // Glance's `allow class-read object_prefix rbd_children` reaches every pool, but only
        // objects with that prefix, only class methods, and only ones that read.
        let glance = c.client_as("client.glance").await.unwrap();
        let vols = glance.ioctx("volumes").unwrap();
        let info = || ClsCall::LockInfo { name: "l".into() };
        let r = vols.call("rbd_children", info()).await;
        assert!(r.as_ref().map_or_else(|e| e.errno != errno::EPERM, |_| true), "{r:?}");
        assert_eq!(vols.call("rbd_header.1234", info()).await.unwrap_err().errno, errno::EPERM);
        assert_eq!(vols.call("xrbd_children", info()).await.unwrap_err().errno, errno::EPERM);
        let remove = ClsCall::WatchRemove { cookie: 1 };
        assert_eq!(vols.call("rbd_children", remove).await.unwrap_err().errno, errno::EPERM);
        assert_eq!(vols.read("rbd_children", 0, 0).await.unwrap_err().errno, errno::EPERM);
    });
}

// -------------------------------------------------------------------------------------------
// 2. Refusals: clear, within seconds, and nothing written.

#[test]
fn refusals_are_clear_and_write_nothing() {
    // Short tickets: renewal, rotation and expiry all happen within the test.
    let c = Cluster::up_with(3, 1, "auth service ticket ttl = 5");
    pools(&c, &["images"]);
    for (name, osd) in
        [("client.glance", "allow rwx pool=images"), ("client.cinder", "allow rwx pool=images")]
    {
        let text = c.ok(&["auth", "get-or-create", name, "mon", "allow r", "osd", osd]);
        std::fs::write(c.keyring_path(name), text).unwrap();
    }
    let file = input_file(&c, "w.in", b"data");

    // A wrong key and an unknown entity: refused at login with the reason.
    let bad = random_keyring(c.path(), "client.glance");
    let out = c.cli(&[
        "--id",
        "glance",
        "--keyring",
        bad.to_str().unwrap(),
        "rados",
        "-p",
        "images",
        "put",
        "w1",
        &file,
    ]);
    assert_eq!(out.code, errno::EACCES, "{}", out.stderr);
    assert!(out.stderr.contains("authentication failed for client.glance: bad proof"), "{}", out.stderr);
    let nobody = random_keyring(c.path(), "client.nobody");
    let out = c.cli(&["--name", "client.nobody", "--keyring", nobody.to_str().unwrap(), "-s"]);
    assert_eq!(out.code, errno::EACCES, "{}", out.stderr);
    assert!(out.stderr.contains("authentication failed for client.nobody: no such entity"), "{}", out.stderr);
    // No keyring at all: a clear local error.
    let out = c.cli(&["--id", "cinder-volume", "-s"]);
    assert_eq!(out.code, errno::ENOENT, "{}", out.stderr);
    assert!(out.stderr.contains("no keyring found for client.cinder-volume"), "{}", out.stderr);
    assert_eq!(c.cli(&["rados", "-p", "images", "stat", "w1"]).code, errno::ENOENT);

    rt().block_on(async {
        let glance = c.client_as("client.glance").await.unwrap();
        let cinder = c.client_as("client.cinder").await.unwrap();
        let (gio, cio) = (glance.ioctx("images").unwrap(), cinder.ioctx("images").unwrap());
        // Connected clients keep working across several ticket lifetimes and key rotations.
        let start = Instant::now();
        let mut n = 0;
        while start.elapsed() < Duration::from_secs(14) {
            gio.write_full(&format!("renew-{n}"), Bytes::from_static(b"x")).await.unwrap();
            cio.read(&format!("renew-{n}"), 0, 0).await.unwrap();
            n += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        // Caps reduced while connected: refused within seconds, reads still allowed.
        tokio::task::block_in_place(|| {
            c.ok(&["auth", "caps", "client.cinder", "mon", "allow r", "osd", "allow r pool=images"]);
        });
        let (e, took, refused) = until_refused(&cio, "after-caps-").await;
        assert_eq!(e.errno, errno::EPERM, "{e}");
        assert!(e.message.contains("client.cinder may not write images/after-caps-"), "{e}");
        assert!(took < Duration::from_secs(5), "refused only after {took:?}");
        assert_eq!(gio.stat(&refused).await.unwrap_err().errno, errno::ENOENT, "the refused write happened");
        cio.read("renew-0", 0, 0).await.unwrap();

        // `auth rm` while connected: refused within seconds, at the OSDs and the mons.
        tokio::task::block_in_place(|| c.ok(&["auth", "rm", "client.glance"]));
        let (e, took, refused) = until_refused(&gio, "after-rm-").await;
        assert_eq!(e.errno, errno::EACCES, "{e}");
        assert!(e.message.contains("client.glance"), "{e}");
        assert!(took < Duration::from_secs(5), "refused only after {took:?}");
        assert_eq!(cio.stat(&refused).await.unwrap_err().errno, errno::ENOENT, "the refused write happened");
        let reply = glance.mon_command(&serde_json::json!({"prefix": "osd lspools"})).await;
        assert!(reply.is_err() || reply.as_ref().unwrap().rc == errno::EACCES, "{reply:?}");

        // An expired ticket, presented after it ran out. Taken fresh just after a key rotation,
        // so that its key generation is normally still accepted then (current or previous: the
        // mons rotate once per 5 s lifetime) and the refusal is about the expiry itself.
        let generation = |a: &ClientAuth| a.session().unwrap().tickets["osd"].key_generation().unwrap();
        let before = generation(cinder.auth());
        let start = Instant::now();
        while generation(cinder.auth()) == before {
            assert!(start.elapsed() < Duration::from_secs(15), "no key rotation");
            tokio::time::sleep(Duration::from_millis(100)).await;
            cinder.auth().login_at_any_mon().await.unwrap();
        }
        let stale_session = cinder.auth().session().unwrap();
        let expires = stale_session.tickets["osd"].expires;
        let now = cairn_proto::auth::now_secs();
        tokio::time::sleep(Duration::from_secs(expires.saturating_sub(now) + 1)).await;
        let map = cinder.map();
        let osd = map.osds.values().find(|o| o.up).unwrap();
        let stale = ClientAuth::with_session(stale_session, cairn_proto::net::tcp());
        let e = Conn::connect(&cairn_proto::net::TcpNetwork, &osd.addr, &stale).await.err().unwrap();
        assert_eq!(e.errno, errno::EACCES, "{e}");
        // On a loaded machine the mons may have rotated twice by now, retiring the ticket's key
        // generation as well; either refusal is about the ticket's age (the expiry check alone is
        // covered by cairn-auth's unit tests).
        let stale_refusal = e.message.contains("ticket for client.cinder expired")
            || e.message.contains("which is no longer valid");
        assert!(stale_refusal, "{e}");
    });
    // Glance cannot log in again either.
    let out = c.cli(&["--id", "glance", "-s"]);
    assert_eq!(out.code, errno::EACCES, "{}", out.stderr);
}

// -------------------------------------------------------------------------------------------
// 3. No secret on the wire; replayed handshakes fail. `cairn up --openstack` made the users.

fn contains_window(hay: &[u8], needle: &[u8]) -> bool {
    needle.windows(8).any(|w| hay.windows(8).any(|h| h == w))
}

/// Splits a byte stream into messages (a trailing partial frame is dropped).
fn frames(mut bytes: &[u8]) -> Vec<Message> {
    let mut out = Vec::new();
    while bytes.len() >= HEADER_BYTES {
        let h = frame::decode_header(&bytes[..HEADER_BYTES]).unwrap();
        if bytes.len() < HEADER_BYTES + h.payload_len {
            break;
        }
        out.push(decode_envelope(&bytes[HEADER_BYTES..HEADER_BYTES + h.payload_len]).unwrap().msg);
        bytes = &bytes[HEADER_BYTES + h.payload_len..];
    }
    out
}

/// Sends recorded client bytes to `addr` on a new connection; returns what the server answered
/// before it closed the connection.
async fn replay(addr: &str, client_bytes: &[u8]) -> Vec<Message> {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut got = Vec::new();
    // Read the server's hello first, then replay everything the client sent.
    let mut header = [0u8; HEADER_BYTES];
    s.read_exact(&mut header).await.unwrap();
    let h = frame::decode_header(&header).unwrap();
    let mut payload = vec![0u8; h.payload_len];
    s.read_exact(&mut payload).await.unwrap();
    got.extend_from_slice(&header);
    got.extend_from_slice(&payload);
    let _ = s.write_all(client_bytes).await;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
    frames(&got)
}

#[test]
fn no_secret_on_the_wire_and_replays_fail() {
    let c = Cluster::up_args(3, 1, &["--openstack"]);
    // --openstack: the pools, and a 0600 keyring per service user with the seeds' caps.
    let lspools = c.ok(&["osd", "lspools"]);
    for p in ["images", "volumes", "vms", "backups"] {
        assert!(lspools.contains(p), "{lspools}");
    }
    for (user, osd) in
        [("client.glance", GLANCE_OSD), ("client.cinder", CINDER_OSD), ("client.cinder-backup", BACKUP_OSD)]
    {
        let path = c.keyring_path(user);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(caps_of(&text, user), caps(&[("mon", "allow r"), ("osd", osd)]));
    }
    assert!(c.keyring_path("client.nova").exists());
    assert_eq!(
        std::fs::metadata(c.keyring_path("client.admin")).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let secret = key_of(&std::fs::read_to_string(c.keyring_path("client.glance")).unwrap(), "client.glance");

    rt().block_on(async {
        let conf = cairn_types::conf::Conf::load(&c.conf()).unwrap();
        let creds = cairn_client::Credentials::from_conf(&conf, "client.glance").unwrap();
        let mons =
            cairn_types::conf::parse_mon_hosts(&conf.get("client.glance", "mon host").unwrap()).unwrap();
        let net = Arc::new(RecordingNet::default());
        let glance =
            Rados::connect_with(net.clone(), mons, creds, Duration::from_secs(30), Duration::from_secs(30))
                .await
                .unwrap();
        let io = glance.ioctx("images").unwrap();
        io.write_full("replay-me", Bytes::from_static(b"first")).await.unwrap();
        assert_eq!(&io.read("replay-me", 0, 0).await.unwrap()[..], b"first");
        let status = glance.mon_command(&serde_json::json!({"prefix": "osd lspools"})).await.unwrap();
        assert_eq!(status.rc, 0);

        // Neither the key nor any session key crosses the wire.
        let session = glance.auth().session().unwrap();
        let mut keys: Vec<Vec<u8>> = vec![secret.secret.expose().to_vec(), secret.to_base64().into_bytes()];
        keys.extend(session.tickets.values().map(|t| t.session_key().expose().to_vec()));
        let conns: Vec<Arc<Mutex<Recorded>>> = net.conns.lock().unwrap().clone();
        let mut total = 0;
        for rec in &conns {
            let rec = rec.lock().unwrap();
            total += rec.sent.len() + rec.received.len();
            for k in &keys {
                assert!(
                    !contains_window(&rec.sent, k) && !contains_window(&rec.received, k),
                    "key material on the wire"
                );
            }
        }
        assert!(total > 1000, "nothing recorded");

        // Replays of recorded connections are refused, and the replayed write does not happen.
        let admin = c.client().await;
        admin.ioctx("images").unwrap().remove("replay-me").await.unwrap();
        let map = glance.map();
        let osd_addrs: Vec<&str> = map.osds.values().map(|o| o.addr.as_str()).collect();
        let mut replayed = (0, 0);
        for rec in &conns {
            let (addr, sent) = {
                let r = rec.lock().unwrap();
                (r.addr.clone(), r.sent.clone())
            };
            let recorded = frames(&sent);
            let to_osd = osd_addrs.contains(&addr.as_str());
            if !recorded.iter().any(|m| matches!(m, Message::OsdOp { .. } | Message::MonCommand { .. })) {
                continue;
            }
            let answers = replay(&addr, &sent).await;
            assert!(matches!(answers.first(), Some(Message::AuthServerHello { .. })), "{answers:?}");
            let refusal = answers.iter().find_map(|m| match m {
                Message::Error(e) => Some(e.clone()),
                _ => None,
            });
            let e = refusal.unwrap_or_else(|| panic!("replay to {addr} was not refused: {answers:?}"));
            assert_eq!(e.errno, errno::EACCES, "{e}");
            let why = if to_osd { "does not authenticate" } else { "bad proof" };
            assert!(e.message.contains(why), "{e}");
            assert!(
                !answers
                    .iter()
                    .any(|m| matches!(m, Message::OsdOpReply { .. } | Message::MonCommandReply { .. })),
                "a replayed request was served: {answers:?}"
            );
            if to_osd {
                replayed.0 += 1;
            } else {
                replayed.1 += 1;
            }
        }
        assert!(replayed.0 > 0 && replayed.1 > 0, "replayed {replayed:?} (osd, mon) connections");
        assert_eq!(admin.ioctx("images").unwrap().stat("replay-me").await.unwrap_err().errno, errno::ENOENT);
    });
}

// -------------------------------------------------------------------------------------------
// 4. auth none, and the two modes refusing each other.

#[test]
fn auth_none_works_and_the_modes_refuse_each_other() {
    let c = Cluster::up(3, 1);
    // A client configured for none, against a cephx cluster.
    let none_client =
        c.conf_variant("none-client.conf", "auth client required = cephx", "auth client required = none");
    let out = common::with_conf(&none_client, &["-s"]);
    assert_eq!(out.code, errno::EACCES, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "requires cephx authentication (auth_service_required), but client.admin is configured for none \
             (auth_client_required)"
        ),
        "{}",
        out.stderr
    );
    // One that claims `none` anyway is refused by the daemon.
    let conf = cairn_types::conf::Conf::load(&c.conf()).unwrap();
    let mon = cairn_types::conf::parse_mon_hosts(&conf.get("client.admin", "mon host").unwrap()).unwrap();
    rt().block_on(async {
        let mut s = tokio::net::TcpStream::connect(&mon[0]).await.unwrap();
        let msg = Message::AuthNone { entity: "client.admin".into() };
        let env = Envelope { tid: 0, msg };
        let mut bytes = bytes::BytesMut::new();
        frame::encode_frame(
            FrameType::Request,
            &cairn_proto::msg::encode_envelope(&env).unwrap(),
            &mut bytes,
        );
        s.write_all(&bytes).await.unwrap();
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await;
        let answers = frames(&got);
        let Some(Message::Error(e)) = answers.get(1) else { panic!("not refused: {answers:?}") };
        assert_eq!(e.errno, errno::EACCES);
        assert!(
            e.message.contains(
                "authentication method none refused; this cluster requires cephx (auth_service_required)"
            ),
            "{e}"
        );
    });

    // The whole cluster without authentication.
    c.ok(&["down", "--dir", c.path().to_str().unwrap()]);
    let text = std::fs::read_to_string(c.conf()).unwrap();
    std::fs::write(c.conf(), text.replace("required = cephx", "required = none")).unwrap();
    c.restart();
    c.ok(&["osd", "pool", "create", "plain", "8"]);
    let file = input_file(&c, "n.in", b"no auth");
    // Any name works: `none` checks nothing.
    c.ok(&["--id", "anyone", "rados", "-p", "plain", "put", "o", &file]);
    assert_eq!(c.ok(&["rados", "-p", "plain", "get", "o", "-"]), "no auth");
    assert!(c.ok(&["auth", "ls"]).contains("client.admin"));
    // A client that insists on cephx refuses the none cluster.
    let cephx_client =
        c.conf_variant("cephx-client.conf", "auth client required = none", "auth client required = cephx");
    let out = common::with_conf(&cephx_client, &["-s"]);
    assert_eq!(out.code, errno::EACCES, "{}", out.stderr);
    assert!(out.stderr.contains("requires none authentication (auth_service_required)"), "{}", out.stderr);
}

// -------------------------------------------------------------------------------------------
// Measurements (not a test: `cargo test -p cairn-cli --test auth -- --ignored --nocapture`).

async fn connect_times(
    net: Arc<dyn Network>,
    creds: cairn_client::Credentials,
    mon: &str,
    osd: &str,
    n: u32,
) -> (Duration, Duration) {
    let auth = ClientAuth::new(creds.entity, creds.secret, creds.methods, vec![mon.to_string()], net.clone());
    // Warm up (the first OSD connection logs in for a ticket).
    Conn::connect(&*net, osd, &auth).await.unwrap();
    let start = Instant::now();
    for _ in 0..n {
        Conn::connect(&*net, mon, &auth).await.unwrap();
    }
    let mon_t = start.elapsed() / n;
    let start = Instant::now();
    for _ in 0..n {
        Conn::connect(&*net, osd, &auth).await.unwrap();
    }
    (mon_t, start.elapsed() / n)
}

fn bench_iops(c: &Cluster, id: &str, pool: &str) -> f64 {
    let out = c.ok(&["--id", id, "rados", "bench", "-p", pool, "10", "write", "-b", "4096", "-t", "16"]);
    let line = out.lines().find(|l| l.starts_with("Average IOPS")).unwrap_or_else(|| panic!("{out}"));
    line.split(':').nth(1).unwrap().trim().parse().unwrap()
}

/// A cluster with a `bench` pool and a `client.bench` user with glance-like caps on it.
fn bench_cluster(auth_none: bool) -> Cluster {
    let c = Cluster::up(3, 1);
    if auth_none {
        c.ok(&["down", "--dir", c.path().to_str().unwrap()]);
        let text = std::fs::read_to_string(c.conf()).unwrap();
        std::fs::write(c.conf(), text.replace("required = cephx", "required = none")).unwrap();
        c.restart();
    }
    c.ok(&["osd", "pool", "create", "bench", "32"]);
    let caps = "allow class-read object_prefix rbd_children, allow rwx pool=bench";
    let text = c.ok(&["auth", "get-or-create", "client.bench", "mon", "allow r", "osd", caps]);
    std::fs::write(c.keyring_path("client.bench"), text).unwrap();
    c.wait_clean(3, Duration::from_secs(120));
    c
}

fn connect_costs(c: &Cluster, n: u32) -> (Duration, Duration) {
    let conf = cairn_types::conf::Conf::load(&c.conf()).unwrap();
    let mon = cairn_types::conf::parse_mon_hosts(&conf.get("client.bench", "mon host").unwrap()).unwrap()[0]
        .clone();
    let creds = cairn_client::Credentials::from_conf(&conf, "client.bench").unwrap();
    rt().block_on(async {
        let admin = c.client().await;
        let osd = admin.map().osds.values().next().unwrap().addr.clone();
        connect_times(cairn_proto::net::tcp(), creds, &mon, &osd, n).await
    })
}

/// Two clusters, cephx and none, measured in turns so that other load on the machine hits both.
#[test]
#[ignore]
fn measure_handshake_and_caps_cost() {
    let cephx = bench_cluster(false);
    let none = bench_cluster(true);
    let (mut ci, mut ni) = (Vec::new(), Vec::new());
    let (mut cc, mut nc) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        cc.push(connect_costs(&cephx, 300));
        nc.push(connect_costs(&none, 300));
        ci.push(bench_iops(&cephx, "bench", "bench"));
        ni.push(bench_iops(&none, "bench", "bench"));
    }
    println!("connect (mon, osd) cephx: {cc:?}");
    println!("connect (mon, osd) none:  {nc:?}");
    println!("4 KiB write IOPS (client.bench, 16 in flight, 10 s) cephx: {ci:?}");
    println!("4 KiB write IOPS (client.bench, 16 in flight, 10 s) none:  {ni:?}");
}
