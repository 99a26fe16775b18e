//! On-wire encryption against real daemons (issue 5; docs/auth.md, "On-wire encryption"): a
//! cluster whose daemons and clients all require `secure` works end to end (CLI, library,
//! replication between OSDs); a recorded secure connection holds none of a written object's
//! bytes while a crc one holds all of them; a secure-only cluster refuses a crc-only client with
//! a clear error; a cluster that accepts both serves each client the mode it asks for.

mod common;

use bytes::Bytes;
use cairn_client::Rados;
use cairn_proto::frame::{self, HEADER_BYTES};
use cairn_proto::msg::decode_envelope;
use cairn_proto::Message;
use cairn_types::errno;
use common::tap::RecordingNet;
use common::{rt, Cluster};
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const SECURE: &str = "ms cluster mode = secure\nms service mode = secure\nms client mode = secure";

/// The frames of one direction of a recorded connection: whether each is sealed, and its
/// message when it is not.
fn walk(mut bytes: &[u8]) -> Vec<(bool, Option<Message>)> {
    let mut out = Vec::new();
    while bytes.len() >= HEADER_BYTES {
        let h = frame::decode_header(&bytes[..HEADER_BYTES]).unwrap();
        let Some(payload) = bytes.get(HEADER_BYTES..HEADER_BYTES + h.payload_len) else { break };
        out.push((h.sealed(), (!h.sealed()).then(|| decode_envelope(payload).unwrap().msg)));
        bytes = &bytes[HEADER_BYTES + h.payload_len..];
    }
    out
}

fn is_handshake(m: &Message) -> bool {
    matches!(
        m,
        Message::AuthServerHello { .. }
            | Message::AuthServerHelloModes { .. }
            | Message::AuthLogin { .. }
            | Message::AuthChallenge { .. }
            | Message::AuthProof { .. }
            | Message::AuthTickets { .. }
            | Message::AuthAuthorize { .. }
            | Message::AuthAuthorized { .. }
            | Message::AuthMode { .. }
    )
}

/// How many of `plain`'s 16-byte blocks appear anywhere in `hay`.
fn blocks_found(hay: &[u8], plain: &[u8]) -> usize {
    let windows: HashSet<&[u8]> = hay.windows(16).collect();
    plain.chunks_exact(16).filter(|b| windows.contains(b)).count()
}

/// What the recorded bytes of one client's connections show.
#[derive(Debug, Default)]
struct Capture {
    conns: usize,
    bytes: usize,
    /// Blocks of the written object found in the bytes (sent and received).
    plaintext_blocks: usize,
    sealed_frames: usize,
    /// Unsealed frames that are not part of the handshake.
    plain_frames: usize,
    /// Connections whose server offered on-wire modes.
    offered_modes: usize,
}

/// Connects as client.admin with `conf`'s settings over a recording network, writes `data` to
/// `pool`/`name` and reads it back; reports what the recorded bytes show.
fn capture(conf: &Path, pool: &str, name: &str, data: &Bytes) -> Capture {
    rt().block_on(async {
        let conf = cairn_types::conf::Conf::load(conf).unwrap();
        let creds = cairn_client::Credentials::from_conf(&conf, "client.admin").unwrap();
        let hosts = conf.get("client.admin", "mon host").unwrap();
        let mons = cairn_types::conf::parse_mon_hosts(&hosts).unwrap();
        let net = Arc::new(RecordingNet::default());
        let t = Duration::from_secs(30);
        let rados = Rados::connect_with(net.clone(), mons, creds, t, t).await.unwrap();
        let io = rados.ioctx(pool).unwrap();
        io.write_full(name, data.clone()).await.unwrap();
        assert!(io.read(name, 0, 0).await.unwrap() == *data, "read back differs");
        let mut c = Capture::default();
        for rec in net.recorded() {
            let r = rec.lock().unwrap();
            c.conns += 1;
            let received = walk(&r.received);
            if matches!(received.first(), Some((_, Some(Message::AuthServerHelloModes { .. })))) {
                c.offered_modes += 1;
            }
            for dir in [&r.sent, &r.received] {
                c.bytes += dir.len();
                c.plaintext_blocks += blocks_found(dir, data);
                for (sealed, msg) in walk(dir) {
                    match msg {
                        _ if sealed => c.sealed_frames += 1,
                        Some(m) if is_handshake(&m) => {}
                        _ => c.plain_frames += 1,
                    }
                }
            }
        }
        c
    })
}

#[test]
fn secure_mode_end_to_end_and_on_the_wire() {
    let c = Cluster::up_with(3, 1, SECURE);
    c.ok(&["osd", "pool", "create", "sec", "8"]);
    c.wait_clean(3, Duration::from_secs(120));

    // 1. Everything works with every connection sealed: the CLI, and a size-3 write read back.
    let file = c.path().join("in.txt");
    std::fs::write(&file, b"sealed on the wire").unwrap();
    c.ok(&["rados", "-p", "sec", "put", "o1", file.to_str().unwrap()]);
    assert_eq!(c.ok(&["rados", "-p", "sec", "get", "o1", "-"]), "sealed on the wire");
    let data = common::payload(42, 64 << 10);
    let blocks = data.len() / 16;
    let secure = capture(&c.conf(), "sec", "wire-secure", &data);
    eprintln!("secure-only cluster, secure client: {secure:?}");
    assert!(secure.conns >= 2 && secure.sealed_frames >= 4, "{secure:?}");
    assert_eq!(secure.offered_modes, secure.conns, "{secure:?}");
    // 2. Nothing of the object crosses the wire in the clear, nor any unsealed request.
    assert_eq!((secure.plaintext_blocks, secure.plain_frames), (0, 0), "{secure:?}");
    rt().block_on(async {
        let rados = c.client().await;
        // The replicas (reached over sealed OSD-to-OSD connections) hold the same content.
        let map = common::wait_map_settled(&rados, &c, 3).await;
        common::assert_replicas_identical(&c, &map);
        assert!(rados.ioctx("sec").unwrap().read("wire-secure", 0, 0).await.unwrap() == data);
    });

    // 3. A client that only does crc is refused, naming both sides' settings.
    let crc = c.conf_variant("crc-client.conf", "ms client mode = secure", "ms client mode = crc");
    let out = common::with_conf(&crc, &["-s"]);
    assert_eq!(out.code, errno::EACCES, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "requires secure on-wire mode (ms_service_mode / ms_mon_service_mode), but client.admin is \
             configured for crc (ms_client_mode)"
        ),
        "{}",
        out.stderr
    );

    // A cluster that accepts both serves each client the mode it asks for.
    c.ok(&["down", "--dir", c.path().to_str().unwrap()]);
    let text = std::fs::read_to_string(c.conf()).unwrap();
    let text = text.replace("ms service mode = secure\n", "ms service mode = secure crc\n");
    std::fs::write(c.conf(), text).unwrap();
    c.restart();
    // (The crc client's conf again, from the changed one.)
    let crc = c.conf_variant("crc-client.conf", "ms client mode = secure", "ms client mode = crc");
    let out = common::with_conf(&crc, &["rados", "-p", "sec", "get", "o1", "-"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "sealed on the wire"), "{}", out.stderr);
    // 2. The crc connection carries the object in the clear; the secure one still does not.
    let plain = capture(&crc, "sec", "wire-crc", &data);
    eprintln!("secure crc cluster, crc client: {plain:?}");
    assert_eq!(plain.sealed_frames, 0, "{plain:?}");
    assert!(plain.plaintext_blocks >= 2 * blocks, "write and read in the clear: {plain:?}");
    let secure = capture(&c.conf(), "sec", "wire-secure-2", &data);
    eprintln!("secure crc cluster, secure client: {secure:?}");
    assert_eq!((secure.plaintext_blocks, secure.plain_frames), (0, 0), "{secure:?}");
    assert!(secure.sealed_frames >= 4, "{secure:?}");

    // No daemon saw a frame that failed to open.
    let logs = std::fs::read_dir(c.path().join("log")).unwrap();
    for entry in logs.flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        assert!(!text.contains("frame failed authentication"), "{}: {text}", entry.path().display());
    }
}
