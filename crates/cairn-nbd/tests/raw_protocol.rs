//! Protocol conformance over raw TCP: handshake options, structured replies, block status,
//! write-zeroes flags, FUA/flush, pipelining and out-of-order replies, disconnects, shutdown and
//! limits.

mod common;

use cairn_nbd::wire::*;
use cairn_nbd::{BlockDevice, Limits, MemDevice};
use common::*;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

const SIZE: u64 = 4 * MIB;

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// (length, flags) descriptors of a block-status chunk.
fn descriptors(chunk: &Chunk) -> Vec<(u32, u32)> {
    assert_eq!(chunk.kind, REPLY_TYPE_BLOCK_STATUS);
    assert_eq!(u32_at(&chunk.payload, 0), META_ID_BASE_ALLOCATION);
    chunk.payload[4..].chunks(8).map(|d| (u32_at(d, 0), u32_at(d, 4))).collect()
}

#[tokio::test]
async fn export_name_honours_no_zeroes_and_closes_on_unknown_export() {
    let dev = Arc::new(MemDevice::new(SIZE));
    let ts = start(vec![("disk", dev as Arc<dyn BlockDevice>)]).await;
    for no_zeroes in [true, false] {
        let mut c = RawClient::connect(ts.port).await;
        c.greeting().await;
        let flags = FLAG_C_FIXED_NEWSTYLE | if no_zeroes { FLAG_C_NO_ZEROES } else { 0 };
        c.send(&flags.to_be_bytes()).await;
        c.send_option(OPT_EXPORT_NAME, b"disk").await;
        assert_eq!(c.s.read_u64().await.expect("size"), SIZE);
        let tflags = c.s.read_u16().await.expect("flags");
        assert_ne!(tflags & FLAG_HAS_FLAGS, 0);
        assert_eq!(tflags & FLAG_SEND_DF, 0, "no DF without structured replies");
        if !no_zeroes {
            assert_eq!(c.read_exact(EXPORT_NAME_ZEROES).await, vec![0u8; EXPORT_NAME_ZEROES]);
        }
        // The next bytes are the reply to our first request: nothing else in between.
        c.request(0, CMD_FLUSH, 77, 0, 0).await;
        assert_eq!(c.read_simple().await, (0, 77));
    }
    let mut c = RawClient::hello(ts.port).await;
    c.send_option(OPT_EXPORT_NAME, b"missing").await;
    assert!(c.expect_closed().await.is_empty());
    ts.wait_idle().await;
}

#[tokio::test]
async fn list_info_go_and_meta_contexts() {
    let disk = Arc::new(MemDevice::new(SIZE).description("the disk").block_size(1 << 22));
    let other = Arc::new(MemDevice::new(MIB).block_size(100));
    let ts = start(vec![("disk", disk as Arc<dyn BlockDevice>), ("other", other)]).await;
    let mut c = RawClient::hello(ts.port).await;

    let r = c.option(OPT_LIST, &[]).await;
    assert_eq!(r.len(), 3);
    assert_eq!(r[0].kind, REP_SERVER);
    assert_eq!(u32_at(&r[0].data, 0), 4);
    assert_eq!(&r[0].data[4..], b"diskthe disk", "name then description");
    assert_eq!(&r[1].data[4..], b"other");
    assert_eq!(r[2].kind, REP_ACK);

    // INFO answers the requested items (unknown ones ignored) and stays in negotiation.
    let r = c.option(OPT_INFO, &go_data("disk", &[INFO_NAME, INFO_DESCRIPTION, INFO_BLOCK_SIZE, 0x99])).await;
    let infos: Vec<(u16, &[u8])> = r
        .iter()
        .filter(|x| x.kind == REP_INFO)
        .map(|x| (u16::from_be_bytes([x.data[0], x.data[1]]), &x.data[2..]))
        .collect();
    assert_eq!(infos.len(), 4, "{infos:?}");
    let export = infos.iter().find(|i| i.0 == INFO_EXPORT).expect("INFO_EXPORT").1;
    assert_eq!(u64_at(export, 0), SIZE);
    let tflags = u16::from_be_bytes([export[8], export[9]]);
    let want = FLAG_HAS_FLAGS
        | FLAG_SEND_FLUSH
        | FLAG_SEND_FUA
        | FLAG_SEND_TRIM
        | FLAG_SEND_WRITE_ZEROES
        | FLAG_SEND_FAST_ZERO
        | FLAG_SEND_CACHE
        | FLAG_CAN_MULTI_CONN;
    assert_eq!(tflags, want);
    assert_eq!(infos.iter().find(|i| i.0 == INFO_NAME).expect("name").1, b"disk");
    assert_eq!(infos.iter().find(|i| i.0 == INFO_DESCRIPTION).expect("description").1, b"the disk");
    let bs = infos.iter().find(|i| i.0 == INFO_BLOCK_SIZE).expect("block size").1;
    assert_eq!((u32_at(bs, 0), u32_at(bs, 4), u32_at(bs, 8)), (1, 1 << 22, 32 << 20));
    assert_eq!(r.last().map(|x| x.kind), Some(REP_ACK));
    // A preferred size that is not a power of two is rounded up (at least 512).
    let r = c.option(OPT_INFO, &go_data("other", &[INFO_BLOCK_SIZE])).await;
    let bs = &r
        .iter()
        .find(|x| x.kind == REP_INFO && x.data[..2] == INFO_BLOCK_SIZE.to_be_bytes())
        .expect("bs")
        .data;
    assert_eq!(u32_at(bs, 6), 512);

    // Meta contexts.
    assert_eq!(c.option(OPT_STRUCTURED_REPLY, &[]).await[0].kind, REP_ACK);
    for queries in [&[][..], &["base:"][..], &["base:allocation", "x-foo:bar"][..]] {
        let r = c.option(OPT_LIST_META_CONTEXT, &meta_data("disk", queries)).await;
        assert_eq!(r.len(), 2, "{queries:?}: {r:?}");
        assert_eq!(r[0].kind, REP_META_CONTEXT);
        assert_eq!(&r[0].data[4..], b"base:allocation");
    }
    let r = c.option(OPT_LIST_META_CONTEXT, &meta_data("disk", &["qemu:dirty-bitmap:b"])).await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].kind, REP_ACK, "unknown namespaces are ignored");
    assert_eq!(
        c.option(OPT_SET_META_CONTEXT, &meta_data("nope", &["base:allocation"])).await[0].kind,
        REP_ERR_UNKNOWN
    );
    let r = c.option(OPT_SET_META_CONTEXT, &meta_data("disk", &["base:"])).await;
    assert_eq!((r.len(), r[0].kind), (1, REP_ACK), "base: selects nothing in SET");
    let r = c.option(OPT_SET_META_CONTEXT, &meta_data("disk", &["base:allocation"])).await;
    assert_eq!(r[0].kind, REP_META_CONTEXT);
    assert_eq!(u32_at(&r[0].data, 0), META_ID_BASE_ALLOCATION);
    assert_eq!(r[1].kind, REP_ACK);

    // GO enters transmission; DF is advertised now that replies are structured.
    let r = c.option(OPT_GO, &go_data("disk", &[])).await;
    assert_eq!(r.last().map(|x| x.kind), Some(REP_ACK));
    let export = &r.iter().find(|x| x.kind == REP_INFO).expect("info").data;
    assert_eq!(u16::from_be_bytes([export[10], export[11]]), want | FLAG_SEND_DF);
    c.request(0, CMD_BLOCK_STATUS, 1, 0, 4096).await;
    assert_eq!(descriptors(&c.read_chunk().await), vec![(4096, STATE_HOLE | STATE_ZERO)]);

    drop(c);

    // ABORT is acknowledged, then the server closes.
    let mut a = RawClient::hello(ts.port).await;
    assert_eq!(a.option(OPT_ABORT, &[]).await[0].kind, REP_ACK);
    assert!(a.expect_closed().await.is_empty());
    ts.wait_idle().await;
}

#[tokio::test]
async fn structured_reads_block_status_write_zeroes_fua_and_flush() {
    let dev = Arc::new(MemDevice::with_contents(SIZE, &pattern(4096, 5)));
    let slow_zero = Arc::new(MemDevice::with_contents(SIZE, &[3u8; 8192]).fast_zero(false));
    let ts =
        start(vec![("disk", dev.clone() as Arc<dyn BlockDevice>), ("slowzero", slow_zero.clone())]).await;
    let (mut c, _, flags) = RawClient::open(ts.port, "disk", true, true).await;
    assert_ne!(flags & FLAG_SEND_DF, 0);

    // Data comes as one OFFSET_DATA chunk marked DONE.
    c.request(0, CMD_READ, 1, 0, 8192).await;
    let ch = c.read_chunk().await;
    assert_eq!((ch.kind, ch.flags, ch.cookie), (REPLY_TYPE_OFFSET_DATA, REPLY_FLAG_DONE, 1));
    assert_eq!(u64_at(&ch.payload, 0), 0);
    assert_eq!(&ch.payload[8..8 + 4096], &pattern(4096, 5)[..]);
    assert_eq!(&ch.payload[8 + 4096..], &[0u8; 4096][..]);
    // Zeroes come as a hole chunk, also with DF.
    c.request(CMD_FLAG_DF, CMD_READ, 2, 65536, 65536).await;
    let ch = c.read_chunk().await;
    assert_eq!((ch.kind, ch.flags), (REPLY_TYPE_OFFSET_HOLE, REPLY_FLAG_DONE));
    assert_eq!((u64_at(&ch.payload, 0), u32_at(&ch.payload, 8)), (65536, 65536));
    // A zero-length read is just a final NONE chunk.
    c.request(0, CMD_READ, 3, 0, 0).await;
    let ch = c.read_chunk().await;
    assert_eq!((ch.kind, ch.flags, ch.payload.len()), (REPLY_TYPE_NONE, REPLY_FLAG_DONE, 0));

    // Block status, with and without REQ_ONE, and past the end.
    c.request(0, CMD_BLOCK_STATUS, 4, 0, MIB as u32).await;
    assert_eq!(
        descriptors(&c.read_chunk().await),
        vec![(4096, 0), (MIB as u32 - 4096, STATE_HOLE | STATE_ZERO)]
    );
    c.request(CMD_FLAG_REQ_ONE, CMD_BLOCK_STATUS, 5, 0, MIB as u32).await;
    assert_eq!(descriptors(&c.read_chunk().await), vec![(4096, 0)]);
    c.request(CMD_FLAG_REQ_ONE, CMD_BLOCK_STATUS, 6, 100, 50).await;
    assert_eq!(descriptors(&c.read_chunk().await), vec![(50, 0)], "never longer than the request");
    c.request(0, CMD_BLOCK_STATUS, 7, SIZE - 4096, 8192).await;
    let ch = c.read_chunk().await;
    assert_eq!((ch.kind, ch.flags, ch.cookie), (REPLY_TYPE_ERROR, REPLY_FLAG_DONE, 7));
    assert_eq!(u32_at(&ch.payload, 0), NBD_EINVAL);
    let msg_len = u16::from_be_bytes([ch.payload[4], ch.payload[5]]) as usize;
    assert!(String::from_utf8_lossy(&ch.payload[6..6 + msg_len]).contains("exceeds the export size"));

    // WRITE_ZEROES: NO_HOLE keeps the range allocated, otherwise it becomes a hole.
    c.write(0, 8, 65536, &[7u8; 131072]).await;
    assert_eq!(c.read_simple().await, (0, 8));
    c.request(CMD_FLAG_NO_HOLE | CMD_FLAG_FUA, CMD_WRITE_ZEROES, 9, 65536, 65536).await;
    assert_eq!(c.read_simple().await, (0, 9));
    c.request(CMD_FLAG_FAST_ZERO, CMD_WRITE_ZEROES, 10, 131072, 65536).await;
    assert_eq!(c.read_simple().await, (0, 10));
    c.request(0, CMD_BLOCK_STATUS, 11, 65536, 131072).await;
    assert_eq!(
        descriptors(&c.read_chunk().await),
        vec![(65536, STATE_ZERO), (65536, STATE_HOLE | STATE_ZERO)]
    );
    assert!(dev.contents()[65536..196608].iter().all(|&b| b == 0));

    // TRIM, CACHE, FUA writes and FLUSH reach the device.
    c.request(0, CMD_TRIM, 12, 0, 4096).await;
    assert_eq!(c.read_simple().await, (0, 12));
    c.request(0, CMD_CACHE, 13, 0, 65536).await;
    assert_eq!(c.read_simple().await, (0, 13));
    let fua_before = dev.fua_ops();
    c.write(CMD_FLAG_FUA, 14, 300, &[1u8; 100]).await;
    assert_eq!(c.read_simple().await, (0, 14));
    assert_eq!(dev.fua_ops(), fua_before + 1);
    let flushes = dev.flushes();
    c.request(0, CMD_FLUSH, 15, 0, 0).await;
    assert_eq!(c.read_simple().await, (0, 15));
    assert_eq!(dev.flushes(), flushes + 1);
    let mut want = vec![0u8; 4096];
    want[300..400].fill(1);
    assert_eq!(&dev.contents()[..4096], &want[..]);

    // FAST_ZERO on an export that cannot zero fast: ENOTSUP, and the data is untouched.
    let (mut s, _, _) = RawClient::open(ts.port, "slowzero", true, false).await;
    s.request(CMD_FLAG_FAST_ZERO, CMD_WRITE_ZEROES, 1, 0, 8192).await;
    let ch = s.read_chunk().await;
    assert_eq!((ch.kind, u32_at(&ch.payload, 0)), (REPLY_TYPE_ERROR, NBD_ENOTSUP));
    assert_eq!(&slow_zero.contents()[..8192], &[3u8; 8192][..]);
    s.request(0, CMD_WRITE_ZEROES, 2, 0, 8192).await;
    assert_eq!(s.read_simple().await, (0, 2));
    assert!(slow_zero.contents()[..8192].iter().all(|&b| b == 0));
    drop((c, s));
    ts.wait_idle().await;
}

#[tokio::test]
async fn device_errors_are_mapped_and_panics_answer_eio() {
    let mut dev = TestDevice::new(MemDevice::new(SIZE));
    dev.fail_read_at = Some((4096, cairn_types::errno::EDQUOT));
    dev.panic_read_at = Some(8192);
    let ts = start(vec![("disk", Arc::new(dev) as Arc<dyn BlockDevice>)]).await;
    let (mut c, _, _) = RawClient::open(ts.port, "disk", false, false).await;
    c.request(0, CMD_READ, 1, 4096, 512).await;
    assert_eq!(c.read_simple().await, (NBD_ENOSPC, 1), "EDQUOT maps to ENOSPC");
    c.request(0, CMD_READ, 2, 8192, 512).await;
    assert_eq!(c.read_simple().await, (NBD_EIO, 2), "a panicking device op answers EIO");
    c.request(0, CMD_READ, 3, 0, 512).await;
    assert_eq!(c.read_simple().await, (0, 3), "and the connection keeps working");
    assert_eq!(c.read_exact(512).await, vec![0u8; 512]);
    drop(c);
    ts.wait_idle().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_pipelined_and_replies_come_out_of_order() {
    let mut dev = TestDevice::new(MemDevice::new(SIZE));
    dev.slow_offset = Some(0);
    dev.delay = Duration::from_millis(400);
    let dev = Arc::new(dev);
    let ts = start(vec![("disk", dev.clone() as Arc<dyn BlockDevice>)]).await;
    let (mut c, _, _) = RawClient::open(ts.port, "disk", false, false).await;

    // The slow read is sent first, the fast one second: the fast one is answered first.
    c.request(0, CMD_READ, 1, 0, 4096).await;
    c.request(0, CMD_READ, 2, 4096, 4096).await;
    assert_eq!(c.read_simple().await, (0, 2));
    c.read_exact(4096).await;
    assert_eq!(c.read_simple().await, (0, 1));
    c.read_exact(4096).await;

    // 64 writes in one burst, then all replies; then read everything back.
    let mut burst = Vec::new();
    for i in 0..64u64 {
        let h = RequestHeader {
            flags: 0,
            kind: CMD_WRITE,
            cookie: 1000 + i,
            offset: 8192 + i * 4096,
            length: 4096,
        };
        burst.extend_from_slice(&encode_request(&h));
        burst.extend_from_slice(&pattern(4096, i));
    }
    c.send(&burst).await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..64 {
        let (err, cookie) = c.read_simple().await;
        assert_eq!(err, 0);
        assert!(seen.insert(cookie), "cookie {cookie} answered twice");
    }
    assert_eq!(seen, (1000..1064).collect());
    for i in 0..64u64 {
        c.request(0, CMD_READ, 2000 + i, 8192 + i * 4096, 4096).await;
    }
    let mut got = std::collections::BTreeMap::new();
    for _ in 0..64 {
        let (err, cookie) = c.read_simple().await;
        assert_eq!(err, 0);
        got.insert(cookie, c.read_exact(4096).await);
    }
    for i in 0..64u64 {
        assert_eq!(got[&(2000 + i)], pattern(4096, i), "block {i}");
    }
    drop(c);
    ts.wait_idle().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disc_answers_in_flight_requests_before_closing() {
    let mut dev = TestDevice::new(MemDevice::new(SIZE));
    dev.slow_offset = Some(0);
    dev.delay = Duration::from_millis(300);
    let dev = Arc::new(dev);
    let ts = start(vec![("disk", dev.clone() as Arc<dyn BlockDevice>)]).await;
    let (mut c, _, _) = RawClient::open(ts.port, "disk", false, false).await;
    c.write(0, 1, 0, &[0x5a; 4096]).await;
    c.request(0, CMD_DISC, 2, 0, 0).await;
    let rest = c.expect_closed().await;
    assert_eq!(rest.len(), 16, "exactly the write's reply, then close: {rest:?}");
    assert_eq!(u32_at(&rest, 0), SIMPLE_REPLY_MAGIC);
    assert_eq!((u32_at(&rest, 4), u64_at(&rest, 8)), (0, 1));
    assert_eq!(&dev.inner.contents()[..4096], &[0x5a; 4096][..]);
    ts.wait_idle().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_vanishing_mid_request_leaves_nothing_hanging() {
    let mut dev = TestDevice::new(MemDevice::new(SIZE));
    dev.delay = Duration::from_millis(200);
    let dev = Arc::new(dev);
    let ts = start(vec![("disk", dev.clone() as Arc<dyn BlockDevice>)]).await;
    for round in 0..3 {
        let (mut c, _, _) = RawClient::open(ts.port, "disk", round % 2 == 1, false).await;
        for i in 0..20u64 {
            c.request(0, CMD_READ, i, i * 65536, 65536).await;
        }
        // Half a write: header and part of the payload.
        c.request(0, CMD_WRITE, 99, 0, 65536).await;
        c.send(&[1u8; 1000]).await;
        drop(c);
    }
    ts.wait_idle().await;
    wait_until("device operations finished", || dev.in_flight() == 0).await;
    assert!(dev.started.load(Ordering::SeqCst) > 0);
    assert_good_client(ts.port, "disk").await;
    ts.wait_idle().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_requests_are_bounded() {
    let mut dev = TestDevice::new(MemDevice::new(SIZE));
    dev.delay = Duration::from_millis(50);
    let dev = Arc::new(dev);
    let limits = Limits { max_in_flight_requests: 3, ..Limits::default() };
    let ts = start_with(limits, vec![("disk", dev.clone() as Arc<dyn BlockDevice>)]).await;
    let (mut c, _, _) = RawClient::open(ts.port, "disk", false, false).await;
    for i in 0..24u64 {
        c.request(0, CMD_READ, i, i * 4096, 4096).await;
    }
    for _ in 0..24 {
        assert_eq!(c.read_simple().await.0, 0);
        c.read_exact(4096).await;
    }
    let peak = dev.peak.load(Ordering::SeqCst);
    assert!((2..=3).contains(&peak), "peak concurrency {peak} should reach but not pass the bound 3");
    drop(c);
    ts.wait_idle().await;
}

#[tokio::test]
async fn handshake_timeout_drops_idle_clients() {
    let limits = Limits { handshake_timeout: Duration::from_millis(300), ..Limits::default() };
    let ts = start_with(limits, vec![("disk", Arc::new(MemDevice::new(SIZE)) as Arc<dyn BlockDevice>)]).await;
    let t0 = Instant::now();
    let mut c = RawClient::hello(ts.port).await;
    c.expect_closed().await;
    assert!(t0.elapsed() >= Duration::from_millis(250));
    ts.wait_idle().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_work_and_refuses_new_options() {
    let mut dev = TestDevice::new(MemDevice::new(SIZE));
    dev.slow_offset = Some(0);
    dev.delay = Duration::from_millis(300);
    let dev = Arc::new(dev);
    let ts = start(vec![("disk", dev.clone() as Arc<dyn BlockDevice>)]).await;
    let mut negotiating = RawClient::hello(ts.port).await;
    let (mut c, _, _) = RawClient::open(ts.port, "disk", false, false).await;
    c.write(0, 1, 0, &[0x33; 4096]).await;
    wait_until("write reached the device", || dev.started.load(Ordering::SeqCst) == 1).await;
    ts.server.shutdown();
    // The write in flight completes and is answered, then the connection closes.
    let rest = c.expect_closed().await;
    assert_eq!(rest.len(), 16);
    assert_eq!((u32_at(&rest, 4), u64_at(&rest, 8)), (0, 1));
    assert_eq!(&dev.inner.contents()[..4096], &[0x33; 4096][..]);
    // A client still negotiating gets NBD_REP_ERR_SHUTDOWN, and may abort.
    let r = negotiating.option(OPT_LIST, &[]).await;
    assert_eq!(r[0].kind, REP_ERR_SHUTDOWN);
    assert_eq!(negotiating.option(OPT_ABORT, &[]).await[0].kind, REP_ACK);
    // The accept loop has returned and nothing listens any more.
    let task = tokio::time::timeout(Duration::from_secs(5), ts.task).await.expect("serve_tcp returns");
    task.expect("join").expect("serve_tcp result");
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", ts.port)).await.is_err());
    drop(negotiating);
    wait_until("connections closed", || ts.server.connections() == 0).await;
}

#[tokio::test]
async fn default_export_and_write_then_read_over_export_name() {
    let dev = Arc::new(MemDevice::new(SIZE));
    let mut server = cairn_nbd::Server::new();
    server.add_export("vol", dev.clone()).expect("export");
    assert_eq!(server.add_export("vol", dev.clone()).map_err(|e| e.errno), Err(libc::EEXIST));
    assert_eq!(server.add_export("", dev.clone()).map_err(|e| e.errno), Err(libc::EINVAL));
    assert_eq!(server.set_default_export("nope").map_err(|e| e.errno), Err(libc::ENOENT));
    server.set_default_export("vol").expect("default");
    let server = Arc::new(server);
    let (client, srv) = tokio::io::duplex(1 << 20);
    let task = tokio::spawn({
        let server = server.clone();
        async move { server.handle(srv).await }
    });
    let mut c = client;
    use tokio::io::AsyncWriteExt;
    let mut greet = [0u8; 18];
    c.read_exact(&mut greet).await.expect("greeting");
    c.write_all(&(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES).to_be_bytes()).await.expect("flags");
    let mut opt = IHAVEOPT.to_be_bytes().to_vec();
    opt.extend_from_slice(&OPT_EXPORT_NAME.to_be_bytes());
    opt.extend_from_slice(&0u32.to_be_bytes());
    c.write_all(&opt).await.expect("export name");
    assert_eq!(c.read_u64().await.expect("size"), SIZE);
    c.read_u16().await.expect("flags");
    let h = RequestHeader { flags: 0, kind: CMD_WRITE, cookie: 1, offset: 10, length: 5 };
    c.write_all(&encode_request(&h)).await.expect("write");
    c.write_all(b"hello").await.expect("payload");
    let h = RequestHeader { flags: 0, kind: CMD_DISC, cookie: 2, offset: 0, length: 0 };
    c.write_all(&encode_request(&h)).await.expect("disc");
    let mut reply = Vec::new();
    c.read_to_end(&mut reply).await.expect("reply then EOF");
    assert_eq!(reply.len(), 16);
    assert_eq!(u32_at(&reply, 4), 0);
    task.await.expect("join").expect("clean close");
    assert_eq!(&dev.contents()[10..15], b"hello");
}
