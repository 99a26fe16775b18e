//! Property tests: random bytes, random options and random (well-formed) request streams fed to
//! `Server::handle` over an in-memory pipe. The server must never panic or hang, every frame it
//! sends must be well formed, and every well-formed request before `NBD_CMD_DISC` must be answered
//! exactly once.

mod common;

use cairn_nbd::wire::*;
use cairn_nbd::{MemDevice, Server};
use common::{go_data, meta_data};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SIZE: u64 = 1 << 20;

fn server() -> Arc<Server> {
    static SERVER: OnceLock<Arc<Server>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            let mut s = Server::new();
            s.add_export("disk", Arc::new(MemDevice::new(SIZE))).expect("export");
            s.add_export("ro", Arc::new(MemDevice::new(SIZE).read_only(true))).expect("export");
            s.add_export("slow0", Arc::new(MemDevice::new(SIZE).fast_zero(false))).expect("export");
            s.set_default_export("disk").expect("default");
            Arc::new(s)
        })
        .clone()
}

/// Feeds `input` to a fresh connection, closes the client's sending side, and returns all the
/// server sent. Fails on a server panic or if the session does not end within 10 s.
fn session(input: Vec<u8>) -> Vec<u8> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async move {
        let (client, srv) = tokio::io::duplex(256 * 1024);
        let server = server();
        let handle = tokio::spawn(async move { server.handle(srv).await });
        let (mut rd, mut wr) = tokio::io::split(client);
        let send = async move {
            // The server may hang up early; a failed write is expected then.
            let _ = wr.write_all(&input).await;
            let _ = wr.shutdown().await;
        };
        let recv = async move {
            let mut out = Vec::new();
            let _ = rd.read_to_end(&mut out).await;
            out
        };
        let both = async { tokio::join!(send, recv).1 };
        let out = tokio::time::timeout(Duration::from_secs(10), both).await.expect("session ended in time");
        let joined = tokio::time::timeout(Duration::from_secs(10), handle).await.expect("handler returned");
        assert!(joined.is_ok(), "connection handler panicked: {joined:?}");
        out
    })
}

fn client_prefix() -> Vec<u8> {
    (FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES).to_be_bytes().to_vec()
}

fn option_frame(option: u32, data: &[u8]) -> Vec<u8> {
    let mut b = IHAVEOPT.to_be_bytes().to_vec();
    b.extend_from_slice(&option.to_be_bytes());
    b.extend_from_slice(&(data.len() as u32).to_be_bytes());
    b.extend_from_slice(data);
    b
}

/// A cursor over the server's output.
struct Out<'a> {
    b: &'a [u8],
}

impl Out<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.b.len() < n {
            return None;
        }
        let (head, tail) = self.b.split_at(n);
        self.b = tail;
        Some(head)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
}

/// Checks the greeting and, when the options sent are known, the replies to each in order.
/// Returns the rest of the output (the transmission phase, if any) and whether transmission began.
fn check_handshake_output<'a>(out: &'a [u8], sent: Option<&[u32]>) -> (&'a [u8], bool) {
    let mut o = Out { b: out };
    if out.is_empty() {
        return (out, false);
    }
    assert_eq!(o.u64(), Some(NBD_MAGIC));
    assert_eq!(o.u64(), Some(IHAVEOPT));
    assert_eq!(o.u16(), Some(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES));
    let Some(sent) = sent else { return (o.b, false) };
    for &option in sent {
        if o.b.is_empty() {
            // The server hung up (EXPORT_NAME of an unknown export, ABORT, a malformed option).
            return (o.b, false);
        }
        if option == OPT_EXPORT_NAME {
            // No option reply: size and transmission flags (no zeroes: we asked for none).
            assert_eq!(o.u64(), Some(SIZE), "export size");
            let flags = o.u16().expect("transmission flags");
            assert_ne!(flags & FLAG_HAS_FLAGS, 0);
            return (o.b, true);
        }
        loop {
            assert_eq!(o.u64(), Some(OPTION_REPLY_MAGIC), "option reply magic");
            assert_eq!(o.u32(), Some(option), "replies come in order, one option at a time");
            let kind = o.u32().expect("reply type");
            let len = o.u32().expect("length") as usize;
            let data = o.take(len).expect("reply data complete");
            let known = [REP_ACK, REP_SERVER, REP_INFO, REP_META_CONTEXT];
            assert!(known.contains(&kind) || kind & (1 << 31) != 0, "reply type {kind:#x}");
            if kind == REP_INFO {
                assert!(data.len() >= 2);
            }
            if kind == REP_ACK && option == OPT_GO {
                return (o.b, true);
            }
            if kind == REP_ACK || kind & (1 << 31) != 0 {
                break;
            }
        }
    }
    // Trailing random bytes are at most a partial option: nothing more is answered.
    assert!(o.b.is_empty(), "unexpected output after the last reply: {:?}", o.b);
    (o.b, false)
}

#[derive(Debug, Clone)]
struct Req {
    kind: u16,
    flags: u16,
    offset: u64,
    length: u32,
}

fn req_strategy() -> impl Strategy<Value = Req> {
    let kind = prop_oneof![8 => 0u16..8, 1 => any::<u16>()];
    let flags = prop_oneof![4 => Just(0u16), 4 => 0u16..32, 1 => any::<u16>()];
    let offset = prop_oneof![6 => 0u64..SIZE, 2 => (SIZE - 8192)..(SIZE + 8192), 1 => any::<u64>()];
    let length = prop_oneof![6 => 0u32..8192, 2 => 0u32..(2 << 20), 1 => any::<u32>()];
    (kind, flags, offset, length).prop_map(|(kind, flags, offset, length)| Req {
        kind,
        flags,
        offset,
        length,
    })
}

/// Encodes requests (cookie = index); WRITE lengths are capped so payloads stay small and whole.
fn encode_requests(reqs: &mut [Req]) -> Vec<u8> {
    let mut b = Vec::new();
    for (i, r) in reqs.iter_mut().enumerate() {
        if r.kind == CMD_WRITE {
            r.length %= 8193;
        }
        let h = RequestHeader {
            flags: r.flags,
            kind: r.kind,
            cookie: i as u64,
            offset: r.offset,
            length: r.length,
        };
        b.extend_from_slice(&encode_request(&h));
        if r.kind == CMD_WRITE {
            b.extend(std::iter::repeat_n(i as u8, r.length as usize));
        }
    }
    b
}

/// Parses transmission replies and checks them against the requests sent.
fn check_transmission_output(out: &[u8], reqs: &[Req], structured: bool) {
    let mut o = Out { b: out };
    let mut done: BTreeMap<u64, usize> = BTreeMap::new();
    while !o.b.is_empty() {
        match o.u32().expect("reply magic") {
            SIMPLE_REPLY_MAGIC => {
                let error = o.u32().expect("error");
                let cookie = o.u64().expect("cookie");
                let req = reqs.get(cookie as usize).expect("cookie of a sent request");
                if req.kind == CMD_READ {
                    assert!(!structured, "simple reply to a structured read");
                    if error == 0 {
                        o.take(req.length as usize).expect("read payload complete");
                    }
                }
                *done.entry(cookie).or_default() += 1;
            }
            STRUCTURED_REPLY_MAGIC => {
                assert!(structured, "structured reply without negotiation");
                let flags = o.u16().expect("flags");
                let kind = o.u16().expect("type");
                let cookie = o.u64().expect("cookie");
                let len = o.u32().expect("length") as usize;
                let payload = o.take(len).expect("chunk payload complete");
                let req = reqs.get(cookie as usize).expect("cookie of a sent request");
                match kind {
                    REPLY_TYPE_NONE => assert_eq!(len, 0),
                    REPLY_TYPE_OFFSET_DATA => {
                        assert_eq!(req.kind, CMD_READ);
                        assert_eq!(len - 8, req.length as usize, "one chunk covers the whole read");
                        assert_eq!(u64::from_be_bytes(payload[..8].try_into().expect("offset")), req.offset);
                    }
                    REPLY_TYPE_OFFSET_HOLE => {
                        assert_eq!((req.kind, len), (CMD_READ, 12));
                        assert_eq!(u32::from_be_bytes(payload[8..12].try_into().expect("size")), req.length);
                    }
                    REPLY_TYPE_BLOCK_STATUS => {
                        assert_eq!(req.kind, CMD_BLOCK_STATUS);
                        assert!(len >= 12 && (len - 4).is_multiple_of(8));
                        let total: u64 = payload[4..]
                            .chunks(8)
                            .map(|d| u32::from_be_bytes(d[..4].try_into().expect("len")) as u64)
                            .sum();
                        assert!(total > 0 && total <= req.length as u64);
                    }
                    REPLY_TYPE_ERROR => {
                        assert!(len >= 6);
                        assert_ne!(u32::from_be_bytes(payload[..4].try_into().expect("error")), 0);
                        let msg_len = u16::from_be_bytes(payload[4..6].try_into().expect("msg len")) as usize;
                        assert_eq!(msg_len, len - 6);
                    }
                    other => panic!("unexpected chunk type {other}"),
                }
                assert_eq!(flags & REPLY_FLAG_DONE, REPLY_FLAG_DONE, "every reply is one chunk");
                *done.entry(cookie).or_default() += 1;
            }
            other => panic!("bad reply magic {other:#x}"),
        }
    }
    // Every request up to DISC is answered exactly once (an oversized WRITE is never generated).
    let answered_until = reqs.iter().position(|r| r.kind == CMD_DISC).unwrap_or(reqs.len());
    for (i, r) in reqs.iter().enumerate().take(answered_until) {
        assert_eq!(done.get(&(i as u64)).copied(), Some(1), "request {i} {r:?} answered once");
    }
    assert!(done.keys().all(|&c| (c as usize) < answered_until), "no reply after DISC");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(prefix_ok in any::<bool>(), data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut input = if prefix_ok { client_prefix() } else { Vec::new() };
        input.extend(data);
        let out = session(input);
        let _ = check_handshake_output(&out, None);
    }

    #[test]
    fn random_options_get_well_formed_replies(
        opts in proptest::collection::vec(
            (prop_oneof![4 => 0u32..16, 1 => any::<u32>()],
             prop_oneof![
                 2 => proptest::collection::vec(any::<u8>(), 0..48),
                 1 => prop_oneof![Just("disk"), Just(""), Just("ro"), Just("x")]
                     .prop_map(|n| go_data(n, &[INFO_BLOCK_SIZE, INFO_NAME])),
                 1 => prop_oneof![Just("disk"), Just("nope")]
                     .prop_map(|n| meta_data(n, &["base:allocation", "base:"])),
             ]),
            0..8),
        tail in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut input = client_prefix();
        for (opt, data) in &opts {
            input.extend(option_frame(*opt, data));
        }
        input.extend(tail);
        let out = session(input);
        let sent: Vec<u32> = opts.iter().map(|(o, _)| *o).collect();
        let _ = check_handshake_output(&out, Some(&sent));
    }

    #[test]
    fn random_requests_are_each_answered_once(
        export in prop_oneof![Just("disk"), Just("ro"), Just("slow0")],
        structured in any::<bool>(),
        meta in any::<bool>(),
        mut reqs in proptest::collection::vec(req_strategy(), 0..24),
    ) {
        let mut input = client_prefix();
        let mut sent = Vec::new();
        if structured {
            input.extend(option_frame(OPT_STRUCTURED_REPLY, &[]));
            sent.push(OPT_STRUCTURED_REPLY);
        }
        if meta {
            input.extend(option_frame(OPT_SET_META_CONTEXT, &meta_data(export, &["base:allocation"])));
            sent.push(OPT_SET_META_CONTEXT);
        }
        input.extend(option_frame(OPT_GO, &go_data(export, &[])));
        sent.push(OPT_GO);
        input.extend(encode_requests(&mut reqs));
        let out = session(input);
        let (rest, entered) = check_handshake_output(&out, Some(&sent));
        prop_assert!(entered, "GO succeeded");
        check_transmission_output(rest, &reqs, structured);
    }
}
