//! Shared helpers: an in-process server on a free port, external-tool runners, a raw NBD client
//! for protocol tests, and devices that misbehave on purpose.
#![allow(dead_code)]

use bytes::Bytes;
use cairn_nbd::wire::*;
use cairn_nbd::{BlockDevice, BoxFuture, Extent, Limits, MemDevice, Server, ZeroFlags};
use cairn_types::Result;
use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub const MIB: u64 = 1024 * 1024;
/// Deadline for any single external tool run or protocol step.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(120);

pub struct TestServer {
    pub server: Arc<Server>,
    pub port: u16,
    pub task: JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    pub fn uri(&self, export: &str) -> String {
        format!("nbd://127.0.0.1:{}/{}", self.port, export)
    }

    /// Waits until every connection is closed (proves no connection task is left hanging).
    pub async fn wait_idle(&self) {
        wait_until("all connections closed", || self.server.connections() == 0).await;
    }
}

/// Starts a server with `exports` on 127.0.0.1 and a free port.
pub async fn start(exports: Vec<(&str, Arc<dyn BlockDevice>)>) -> TestServer {
    start_with(Limits::default(), exports).await
}

pub async fn start_with(limits: Limits, exports: Vec<(&str, Arc<dyn BlockDevice>)>) -> TestServer {
    let mut server = Server::with_limits(limits).expect("valid limits");
    for (name, dev) in exports {
        server.add_export(name, dev).expect("add export");
    }
    let server = Arc::new(server);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(server.clone().serve_tcp(listener));
    TestServer { server, port, task }
}

pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// True if `tool` is on PATH; otherwise prints why the test is skipped.
pub fn have(tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    if !found {
        eprintln!("skipping: `{tool}` is not installed");
    }
    found
}

/// Runs a program to completion (killed after [`STEP_TIMEOUT`]) and returns its output.
pub async fn run(program: &str, args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).kill_on_drop(true).stdin(std::process::Stdio::null());
    let out = tokio::time::timeout(STEP_TIMEOUT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{program} {args:?} timed out"))
        .unwrap_or_else(|e| panic!("{program} failed to start: {e}"));
    let shown = |b: &[u8]| {
        let s = String::from_utf8_lossy(b);
        let s = s.trim_end();
        // Keep logs readable: fio's JSON alone is hundreds of lines.
        let cut = s.char_indices().nth(3000).map_or(s.len(), |(i, _)| i);
        format!("{}{}", &s[..cut], if cut < s.len() { " …" } else { "" })
    };
    eprintln!(
        "$ {program} {}\n  exit={:?}\n  stdout: {}\n  stderr: {}",
        args.join(" "),
        out.status.code(),
        shown(&out.stdout),
        shown(&out.stderr)
    );
    out
}

/// Runs a program and asserts it succeeded; returns stdout.
pub async fn run_ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args).await;
    assert!(out.status.success(), "{program} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8 output")
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A deterministic pseudo-random byte pattern (xorshift), so failures are reproducible.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

// --- Raw client ----------------------------------------------------------------------------------

/// A minimal hand-driven NBD client over TCP for protocol and garbage tests.
pub struct RawClient {
    pub s: TcpStream,
}

#[derive(Debug)]
pub struct OptReply {
    pub option: u32,
    pub kind: u32,
    pub data: Vec<u8>,
}

#[derive(Debug)]
pub struct Chunk {
    pub flags: u16,
    pub kind: u16,
    pub cookie: u64,
    pub payload: Vec<u8>,
}

/// One structured-reply chunk or simple reply, as read off the wire.
#[derive(Debug)]
pub enum AnyReply {
    Simple { error: u32, cookie: u64 },
    Chunk(Chunk),
}

impl RawClient {
    pub async fn connect(port: u16) -> Self {
        let s = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
        s.set_nodelay(true).expect("nodelay");
        RawClient { s }
    }

    /// Reads the server greeting and checks it; returns the handshake flags.
    pub async fn greeting(&mut self) -> u16 {
        assert_eq!(self.s.read_u64().await.expect("magic"), NBD_MAGIC);
        assert_eq!(self.s.read_u64().await.expect("ihaveopt"), IHAVEOPT);
        self.s.read_u16().await.expect("handshake flags")
    }

    /// Greeting plus client flags (fixed newstyle and no-zeroes).
    pub async fn hello(port: u16) -> Self {
        let mut c = Self::connect(port).await;
        let flags = c.greeting().await;
        assert_eq!(flags, FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES);
        c.send(&(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES).to_be_bytes()).await;
        c
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.expect("send");
    }

    pub async fn send_option(&mut self, option: u32, data: &[u8]) {
        let mut b = IHAVEOPT.to_be_bytes().to_vec();
        b.extend_from_slice(&option.to_be_bytes());
        b.extend_from_slice(&(data.len() as u32).to_be_bytes());
        b.extend_from_slice(data);
        self.send(&b).await;
    }

    pub async fn read_option_reply(&mut self) -> OptReply {
        let f = async {
            assert_eq!(self.s.read_u64().await.expect("reply magic"), OPTION_REPLY_MAGIC);
            let option = self.s.read_u32().await.expect("option");
            let kind = self.s.read_u32().await.expect("type");
            let len = self.s.read_u32().await.expect("len");
            let mut data = vec![0u8; len as usize];
            self.s.read_exact(&mut data).await.expect("data");
            OptReply { option, kind, data }
        };
        tokio::time::timeout(STEP_TIMEOUT, f).await.expect("option reply in time")
    }

    /// Sends an option and collects replies up to the final (ACK or error) one.
    pub async fn option(&mut self, option: u32, data: &[u8]) -> Vec<OptReply> {
        self.send_option(option, data).await;
        let mut out = Vec::new();
        loop {
            let r = self.read_option_reply().await;
            assert_eq!(r.option, option);
            let last = r.kind == REP_ACK || r.kind & (1 << 31) != 0;
            out.push(r);
            if last {
                return out;
            }
        }
    }

    /// Full handshake to transmission with `NBD_OPT_GO`; returns (size, transmission flags).
    pub async fn open(port: u16, export: &str, structured: bool, meta: bool) -> (Self, u64, u16) {
        let mut c = Self::hello(port).await;
        if structured {
            let r = c.option(OPT_STRUCTURED_REPLY, &[]).await;
            assert_eq!(r[0].kind, REP_ACK);
        }
        if meta {
            let r = c.option(OPT_SET_META_CONTEXT, &meta_data(export, &["base:allocation"])).await;
            assert_eq!(r.len(), 2, "{r:?}");
            assert_eq!(r[0].kind, REP_META_CONTEXT);
        }
        let r = c.option(OPT_GO, &go_data(export, &[INFO_BLOCK_SIZE])).await;
        let last = r.last().expect("reply");
        assert_eq!(last.kind, REP_ACK, "GO failed: {r:?}");
        let export_info = r.iter().find(|i| i.data[..2] == INFO_EXPORT.to_be_bytes()).expect("INFO_EXPORT");
        let size = u64::from_be_bytes(export_info.data[2..10].try_into().expect("size"));
        let flags = u16::from_be_bytes(export_info.data[10..12].try_into().expect("flags"));
        (c, size, flags)
    }

    pub async fn request(&mut self, flags: u16, kind: u16, cookie: u64, offset: u64, length: u32) {
        let h = RequestHeader { flags, kind, cookie, offset, length };
        self.send(&encode_request(&h)).await;
    }

    pub async fn write(&mut self, flags: u16, cookie: u64, offset: u64, data: &[u8]) {
        self.request(flags, CMD_WRITE, cookie, offset, data.len() as u32).await;
        self.send(data).await;
    }

    pub async fn read_simple(&mut self) -> (u32, u64) {
        let f = async {
            assert_eq!(self.s.read_u32().await.expect("magic"), SIMPLE_REPLY_MAGIC);
            (self.s.read_u32().await.expect("error"), self.s.read_u64().await.expect("cookie"))
        };
        tokio::time::timeout(STEP_TIMEOUT, f).await.expect("reply in time")
    }

    pub async fn read_exact(&mut self, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        tokio::time::timeout(STEP_TIMEOUT, self.s.read_exact(&mut buf))
            .await
            .expect("in time")
            .expect("read");
        buf
    }

    /// Reads one reply of either kind (the caller knows whether a simple read has a payload).
    pub async fn read_any(&mut self) -> AnyReply {
        let f = async {
            match self.s.read_u32().await.expect("magic") {
                SIMPLE_REPLY_MAGIC => AnyReply::Simple {
                    error: self.s.read_u32().await.expect("error"),
                    cookie: self.s.read_u64().await.expect("cookie"),
                },
                STRUCTURED_REPLY_MAGIC => {
                    let flags = self.s.read_u16().await.expect("flags");
                    let kind = self.s.read_u16().await.expect("type");
                    let cookie = self.s.read_u64().await.expect("cookie");
                    let len = self.s.read_u32().await.expect("len");
                    let mut payload = vec![0u8; len as usize];
                    self.s.read_exact(&mut payload).await.expect("payload");
                    AnyReply::Chunk(Chunk { flags, kind, cookie, payload })
                }
                other => panic!("bad reply magic {other:#x}"),
            }
        };
        tokio::time::timeout(STEP_TIMEOUT, f).await.expect("reply in time")
    }

    pub async fn read_chunk(&mut self) -> Chunk {
        match self.read_any().await {
            AnyReply::Chunk(c) => c,
            other => panic!("expected a structured chunk, got {other:?}"),
        }
    }

    /// Asserts the server closes the connection (EOF or reset) within a few seconds, returning
    /// whatever it sent first.
    pub async fn expect_closed(&mut self) -> Vec<u8> {
        let mut got = Vec::new();
        let f = async {
            let mut buf = [0u8; 4096];
            loop {
                match self.s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), f).await.expect("server should close the connection");
        got
    }
}

pub fn go_data(name: &str, infos: &[u16]) -> Vec<u8> {
    let mut d = (name.len() as u32).to_be_bytes().to_vec();
    d.extend_from_slice(name.as_bytes());
    d.extend_from_slice(&(infos.len() as u16).to_be_bytes());
    for i in infos {
        d.extend_from_slice(&i.to_be_bytes());
    }
    d
}

pub fn meta_data(export: &str, queries: &[&str]) -> Vec<u8> {
    let mut d = (export.len() as u32).to_be_bytes().to_vec();
    d.extend_from_slice(export.as_bytes());
    d.extend_from_slice(&(queries.len() as u32).to_be_bytes());
    for q in queries {
        d.extend_from_slice(&(q.len() as u32).to_be_bytes());
        d.extend_from_slice(q.as_bytes());
    }
    d
}

/// Proves the server still serves: a new client writes, reads back and disconnects cleanly.
pub async fn assert_good_client(port: u16, export: &str) {
    let (mut c, size, _) = RawClient::open(port, export, false, false).await;
    assert!(size >= 8192);
    let data = pattern(4096, 99);
    c.write(0, 1, 4096, &data).await;
    assert_eq!(c.read_simple().await, (0, 1));
    c.request(0, CMD_READ, 2, 4096, 4096).await;
    assert_eq!(c.read_simple().await, (0, 2));
    assert_eq!(c.read_exact(4096).await, data);
    c.request(0, CMD_DISC, 3, 0, 0).await;
    c.expect_closed().await;
}

// --- Devices that misbehave on purpose -----------------------------------------------------------

/// Wraps a [`MemDevice`]: delays reads and writes at chosen offsets, fails reads at one offset
/// with an errno, panics on a read at another, and counts operations started and finished.
pub struct TestDevice {
    pub inner: MemDevice,
    pub slow_offset: Option<u64>,
    pub delay: Duration,
    pub fail_read_at: Option<(u64, i32)>,
    pub panic_read_at: Option<u64>,
    pub started: AtomicU64,
    pub finished: AtomicU64,
    /// Most operations seen running at once.
    pub peak: AtomicU64,
}

impl TestDevice {
    pub fn new(inner: MemDevice) -> Self {
        TestDevice {
            inner,
            slow_offset: None,
            delay: Duration::ZERO,
            fail_read_at: None,
            panic_read_at: None,
            started: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            peak: AtomicU64::new(0),
        }
    }

    fn begin(&self) {
        let now = self.started.fetch_add(1, Ordering::SeqCst) + 1 - self.finished.load(Ordering::SeqCst);
        self.peak.fetch_max(now, Ordering::SeqCst);
    }

    async fn maybe_delay(&self, offset: u64) {
        if self.slow_offset.is_none_or(|o| o == offset) && !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
    }

    pub fn in_flight(&self) -> u64 {
        self.started.load(Ordering::SeqCst) - self.finished.load(Ordering::SeqCst)
    }
}

impl BlockDevice for TestDevice {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn read_only(&self) -> bool {
        BlockDevice::read_only(&self.inner)
    }
    fn can_fast_zero(&self) -> bool {
        self.inner.can_fast_zero()
    }
    fn read(&self, offset: u64, len: u32) -> BoxFuture<'_, Result<Bytes>> {
        Box::pin(async move {
            self.begin();
            self.maybe_delay(offset).await;
            if self.panic_read_at == Some(offset) {
                self.finished.fetch_add(1, Ordering::SeqCst);
                panic!("TestDevice: injected panic");
            }
            let r = match self.fail_read_at {
                Some((o, e)) if o == offset => Err(cairn_types::Error::new(e, "injected failure")),
                _ => self.inner.read(offset, len).await,
            };
            self.finished.fetch_add(1, Ordering::SeqCst);
            r
        })
    }
    fn write(&self, offset: u64, data: Bytes, fua: bool) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.begin();
            self.maybe_delay(offset).await;
            let r = self.inner.write(offset, data, fua).await;
            self.finished.fetch_add(1, Ordering::SeqCst);
            r
        })
    }
    fn flush(&self) -> BoxFuture<'_, Result<()>> {
        self.inner.flush()
    }
    fn write_zeroes(&self, offset: u64, len: u32, flags: ZeroFlags) -> BoxFuture<'_, Result<()>> {
        self.inner.write_zeroes(offset, len, flags)
    }
    fn block_status(&self, offset: u64, len: u32) -> BoxFuture<'_, Result<Vec<Extent>>> {
        self.inner.block_status(offset, len)
    }
}
