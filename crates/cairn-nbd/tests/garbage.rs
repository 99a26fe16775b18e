//! Malformed input over raw TCP: every case gets an error reply or a closed connection, and a
//! fresh, well-behaved client is served afterwards.

mod common;

use cairn_nbd::wire::*;
use cairn_nbd::{BlockDevice, MemDevice, DEFAULT_MAX_PAYLOAD_BYTES, MAX_OPTION_DATA_BYTES};
use common::*;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

const SIZE: u64 = 4 * MIB;

async fn server() -> TestServer {
    let disk: Arc<dyn BlockDevice> = Arc::new(MemDevice::new(SIZE));
    let ro: Arc<dyn BlockDevice> = Arc::new(MemDevice::with_contents(SIZE, &[9u8; 8192]).read_only(true));
    start(vec![("disk", disk), ("ro", ro)]).await
}

async fn still_serving(ts: &TestServer) {
    assert_good_client(ts.port, "disk").await;
    ts.wait_idle().await;
}

#[tokio::test]
async fn bad_client_flags_close_the_connection() {
    let ts = server().await;
    // Unknown client flag bits.
    let mut c = RawClient::connect(ts.port).await;
    c.greeting().await;
    c.send(&0xdead_beefu32.to_be_bytes()).await;
    assert!(c.expect_closed().await.is_empty());
    // A client without fixed newstyle is refused.
    let mut c = RawClient::connect(ts.port).await;
    c.greeting().await;
    c.send(&0u32.to_be_bytes()).await;
    assert!(c.expect_closed().await.is_empty());
    // Something that is not NBD at all.
    let mut c = RawClient::connect(ts.port).await;
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let got = c.expect_closed().await;
    assert_eq!(got.len(), 18, "only the greeting: {got:?}");
    still_serving(&ts).await;
}

#[tokio::test]
async fn bad_option_magic_closes() {
    let ts = server().await;
    let mut c = RawClient::hello(ts.port).await;
    c.send(&[0x42u8; 16]).await;
    assert!(c.expect_closed().await.is_empty());
    still_serving(&ts).await;
}

#[tokio::test]
async fn short_option_then_disconnect_frees_the_connection() {
    let ts = server().await;
    let mut c = RawClient::hello(ts.port).await;
    let mut b = IHAVEOPT.to_be_bytes().to_vec();
    b.extend_from_slice(&OPT_GO.to_be_bytes());
    b.extend_from_slice(&100u32.to_be_bytes());
    b.extend_from_slice(&[0u8; 10]);
    c.send(&b).await;
    c.s.shutdown().await.expect("half-close");
    assert!(c.expect_closed().await.is_empty());
    // Truncated option header too.
    let mut c = RawClient::hello(ts.port).await;
    c.send(&IHAVEOPT.to_be_bytes()[..5]).await;
    drop(c);
    still_serving(&ts).await;
}

#[tokio::test]
async fn option_data_over_the_limit_is_refused() {
    let ts = server().await;
    for len in [MAX_OPTION_DATA_BYTES + 1, u32::MAX] {
        let mut c = RawClient::hello(ts.port).await;
        let mut b = IHAVEOPT.to_be_bytes().to_vec();
        b.extend_from_slice(&OPT_GO.to_be_bytes());
        b.extend_from_slice(&len.to_be_bytes());
        c.send(&b).await;
        let got = c.expect_closed().await;
        // The refusal is NBD_REP_ERR_TOO_BIG, then the server hangs up.
        assert!(got.len() >= 20, "{got:?}");
        assert_eq!(&got[..8], &OPTION_REPLY_MAGIC.to_be_bytes());
        assert_eq!(&got[12..16], &REP_ERR_TOO_BIG.to_be_bytes());
    }
    still_serving(&ts).await;
}

#[tokio::test]
async fn unknown_and_invalid_options_get_errors_and_the_session_continues() {
    let ts = server().await;
    let mut c = RawClient::hello(ts.port).await;
    let r = c.option(0x1234, b"hello").await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].kind, REP_ERR_UNSUP);
    assert!(String::from_utf8_lossy(&r[0].data).contains("not supported"));
    assert_eq!(c.option(OPT_STARTTLS, &[]).await[0].kind, REP_ERR_UNSUP);
    assert_eq!(c.option(11 /* EXTENDED_HEADERS */, &[]).await[0].kind, REP_ERR_UNSUP);
    assert_eq!(c.option(OPT_LIST, b"x").await[0].kind, REP_ERR_INVALID);
    assert_eq!(c.option(OPT_STRUCTURED_REPLY, b"x").await[0].kind, REP_ERR_INVALID);
    // Name length beyond the data, truncated info list, trailing bytes.
    assert_eq!(c.option(OPT_INFO, &[0, 0, 0, 200, b'd', 0, 0]).await[0].kind, REP_ERR_INVALID);
    let mut d = go_data("disk", &[INFO_NAME]);
    d.pop();
    assert_eq!(c.option(OPT_GO, &d).await[0].kind, REP_ERR_INVALID);
    let mut d = go_data("disk", &[]);
    d.push(0);
    assert_eq!(c.option(OPT_INFO, &d).await[0].kind, REP_ERR_INVALID);
    // Unknown export, and the empty name without a default export.
    assert_eq!(c.option(OPT_GO, &go_data("nope", &[])).await[0].kind, REP_ERR_UNKNOWN);
    assert_eq!(c.option(OPT_INFO, &go_data("", &[])).await[0].kind, REP_ERR_UNKNOWN);
    // Meta contexts before structured replies, and malformed meta requests.
    assert_eq!(
        c.option(OPT_SET_META_CONTEXT, &meta_data("disk", &["base:allocation"])).await[0].kind,
        REP_ERR_INVALID
    );
    assert_eq!(c.option(OPT_STRUCTURED_REPLY, &[]).await[0].kind, REP_ACK);
    assert_eq!(
        c.option(OPT_LIST_META_CONTEXT, &meta_data("disk", &["nocolon"])).await[0].kind,
        REP_ERR_INVALID
    );
    assert_eq!(c.option(OPT_LIST_META_CONTEXT, &[0, 0, 0, 4, b'd']).await[0].kind, REP_ERR_INVALID);
    // After all that, the same session still enters transmission and reads.
    let r = c.option(OPT_GO, &go_data("disk", &[])).await;
    assert_eq!(r.last().map(|r| r.kind), Some(REP_ACK));
    c.request(0, CMD_READ, 5, 0, 512).await;
    let chunk = c.read_chunk().await;
    assert_eq!((chunk.kind, chunk.flags, chunk.cookie), (REPLY_TYPE_OFFSET_HOLE, REPLY_FLAG_DONE, 5));
    assert_eq!(chunk.payload, [0u64.to_be_bytes().as_slice(), &512u32.to_be_bytes()].concat());
    drop(c);
    still_serving(&ts).await;
}

#[tokio::test]
async fn bad_request_magic_closes() {
    let ts = server().await;
    let (mut c, _, _) = RawClient::open(ts.port, "disk", false, false).await;
    c.send(&[0x17u8; REQUEST_HEADER_BYTES]).await;
    assert!(c.expect_closed().await.is_empty());
    // A request header cut short by a disconnect.
    let (mut c, _, _) = RawClient::open(ts.port, "disk", false, false).await;
    c.send(&REQUEST_MAGIC.to_be_bytes()).await;
    drop(c);
    still_serving(&ts).await;
}

#[tokio::test]
async fn lengths_over_the_maximum_payload() {
    let ts = server().await;
    let over = DEFAULT_MAX_PAYLOAD_BYTES + 1;
    // A READ over the maximum fails with EINVAL (simple replies) and the session goes on.
    let (mut c, _, _) = RawClient::open(ts.port, "disk", false, false).await;
    c.request(0, CMD_READ, 1, 0, over).await;
    assert_eq!(c.read_simple().await, (NBD_EINVAL, 1));
    c.request(0, CMD_READ, 2, 0, u32::MAX).await;
    assert_eq!(c.read_simple().await, (NBD_EINVAL, 2));
    c.request(0, CMD_FLUSH, 3, 0, 0).await;
    assert_eq!(c.read_simple().await, (0, 3));
    // With structured replies it is EOVERFLOW ("retry smaller"), in an error chunk.
    let (mut s, _, _) = RawClient::open(ts.port, "disk", true, false).await;
    s.request(0, CMD_READ, 4, 0, over).await;
    let chunk = s.read_chunk().await;
    assert_eq!((chunk.kind, chunk.flags, chunk.cookie), (REPLY_TYPE_ERROR, REPLY_FLAG_DONE, 4));
    assert_eq!(&chunk.payload[..4], &NBD_EOVERFLOW.to_be_bytes());
    // A WRITE over the maximum cannot be skipped: the server hangs up.
    c.request(0, CMD_WRITE, 5, 0, over).await;
    c.send(&[0u8; 4096]).await;
    assert!(c.expect_closed().await.is_empty());
    drop(s);
    still_serving(&ts).await;
}

#[tokio::test]
async fn out_of_range_read_only_unknown_commands_and_flags() {
    let ts = server().await;
    let (mut c, size, _) = RawClient::open(ts.port, "disk", false, false).await;
    assert_eq!(size, SIZE);
    let cases: &[(u16, u16, u64, u32, u32)] = &[
        // (flags, command, offset, length, expected NBD error)
        (0, CMD_READ, SIZE - 100, 200, NBD_EINVAL),
        (0, CMD_READ, u64::MAX - 10, 100, NBD_EINVAL),
        (0, CMD_TRIM, SIZE, 1, NBD_EINVAL),
        (0, CMD_CACHE, SIZE + 4096, 4096, NBD_EINVAL),
        (0, CMD_WRITE_ZEROES, SIZE - 4096, 8192, NBD_ENOSPC),
        (0, 99, 0, 0, NBD_EINVAL),
        (CMD_FLAG_NO_HOLE, CMD_READ, 0, 512, NBD_EINVAL),
        (0x8000, CMD_READ, 0, 512, NBD_EINVAL),
        (CMD_FLAG_DF, CMD_READ, 0, 512, NBD_EINVAL),
        (CMD_FLAG_REQ_ONE, CMD_TRIM, 0, 512, NBD_EINVAL),
        (0, CMD_BLOCK_STATUS, 0, 4096, NBD_EINVAL),
    ];
    for (i, &(flags, kind, offset, len, want)) in cases.iter().enumerate() {
        c.request(flags, kind, 100 + i as u64, offset, len).await;
        assert_eq!(c.read_simple().await, (want, 100 + i as u64), "case {i}");
    }
    // A write past the end: its payload is consumed, then ENOSPC; the stream stays in sync.
    c.write(0, 7, SIZE - 512, &[1u8; 1024]).await;
    assert_eq!(c.read_simple().await, (NBD_ENOSPC, 7));
    c.request(0, CMD_READ, 8, SIZE - 512, 512).await;
    assert_eq!(c.read_simple().await, (0, 8));
    assert_eq!(c.read_exact(512).await, vec![0u8; 512]);

    // Read-only export: every kind of write is EPERM, reads still work.
    let (mut r, _, flags) = RawClient::open(ts.port, "ro", false, false).await;
    assert_ne!(flags & FLAG_READ_ONLY, 0);
    assert_eq!(flags & (FLAG_SEND_TRIM | FLAG_SEND_WRITE_ZEROES | FLAG_SEND_FUA), 0);
    r.write(0, 1, 0, &[5u8; 4096]).await;
    assert_eq!(r.read_simple().await, (NBD_EPERM, 1));
    r.request(0, CMD_TRIM, 2, 0, 4096).await;
    assert_eq!(r.read_simple().await, (NBD_EPERM, 2));
    r.request(0, CMD_WRITE_ZEROES, 3, 0, 4096).await;
    assert_eq!(r.read_simple().await, (NBD_EPERM, 3));
    r.request(0, CMD_READ, 4, 4096, 4096).await;
    assert_eq!(r.read_simple().await, (0, 4));
    assert_eq!(r.read_exact(4096).await, vec![9u8; 4096], "read-only data untouched");
    drop((c, r));
    still_serving(&ts).await;
}
