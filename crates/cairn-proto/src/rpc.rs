//! Request/response connections over a [`Network`] (TCP for the daemons, simulated in
//! `cairn-sim`). One connection carries many requests at once, matched
//! by `tid`. The server side hands each request to a [`Handler`] *in arrival order, on the
//! reading task*, so a handler that must keep order (a replica applying a primary's writes)
//! can start the work synchronously and finish it asynchronously.
//!
//! Every connection starts with the authentication handshake of [`crate::auth`]; the server
//! hands each request to its handler with the connection's [`Session`], and closes the
//! connection when the peer's ticket expires or the handler calls [`Session::close`].
//!
//! When the handshake agreed on `secure` mode, every later frame is sealed: the sender builds
//! it with a sealed header ([`frame::fill_sealed_header`], no CRC), the connection's writing
//! task encrypts it in place with the next counter nonce just before it goes out (so frames are
//! sealed in the order they are sent, whichever task queued them) and appends the tag; the
//! reading task opens each frame in place. A frame that does not open (tampered, replayed,
//! reordered, dropped, reflected or unsealed) closes the connection with a logged error.

use crate::auth::{
    client_handshake, server_handshake, ClientAuth, ConnMode, ServiceAuth, Session, HANDSHAKE_TIMEOUT,
};
use crate::frame::{self, FrameType, HEADER_BYTES};
use crate::msg::{decode_envelope, Envelope, Message};
use crate::net::{Listener, Network, Stream};
use cairn_auth::{FrameCipher, FrameOpener, FrameSealer};
use cairn_types::{errno, Error, Result};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::{mpsc, oneshot};

/// Requests in flight on one connection before `call` waits.
pub const MAX_IN_FLIGHT_PER_CONNECTION: usize = 4096;
/// How long a connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Message>>>>;

/// The client side of a connection.
#[derive(Clone)]
pub struct Conn {
    inner: Arc<ConnInner>,
}

struct ConnInner {
    addr: String,
    out: mpsc::Sender<Vec<u8>>,
    pending: Pending,
    next_tid: AtomicU64,
    closed: Arc<AtomicBool>,
    mode: ConnMode,
}

impl Conn {
    /// Connects to `addr` over `net` (the network sets `TCP_NODELAY` where it applies) and
    /// authenticates as `auth` says. Refusals are EACCES with the server's reason.
    pub async fn connect(net: &dyn Network, addr: &str, auth: &ClientAuth) -> Result<Conn> {
        let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, net.connect(addr))
            .await
            .map_err(|_| Error::timed_out(format!("connecting to {addr} timed out")))?
            .map_err(|e| {
                let mut err = Error::from(e);
                err.message = format!("connecting to {addr}: {}", err.message);
                err
            })?;
        // The handshake may log in at a mon first (for a ticket): allow for both.
        let limit = CONNECT_TIMEOUT + HANDSHAKE_TIMEOUT * 2;
        let established = tokio::time::timeout(limit, client_handshake(&mut *stream, addr, auth))
            .await
            .map_err(|_| Error::timed_out(format!("authenticating to {addr} timed out")))??;
        let (sealer, opener) = established.cipher.map(FrameCipher::split).unzip();
        let (rd, wr) = tokio::io::split(stream);
        let (out_tx, out_rx) = mpsc::channel::<Vec<u8>>(MAX_IN_FLIGHT_PER_CONNECTION);
        let pending: Pending = Arc::default();
        let closed = Arc::new(AtomicBool::new(false));
        tokio::spawn(write_loop(wr, out_rx, closed.clone(), sealer, addr.to_string()));
        tokio::spawn(client_read_loop(rd, pending.clone(), closed.clone(), addr.to_string(), opener));
        Ok(Conn {
            inner: Arc::new(ConnInner {
                addr: addr.to_string(),
                out: out_tx,
                pending,
                next_tid: AtomicU64::new(1),
                closed,
                mode: established.mode,
            }),
        })
    }

    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    /// The on-wire mode the handshake agreed on.
    pub fn mode(&self) -> ConnMode {
        self.inner.mode
    }

    fn sealed(&self) -> bool {
        self.inner.mode == ConnMode::Secure
    }

    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire) || self.inner.out.is_closed()
    }

    /// Sends a request and waits for its response. ENOTCONN if the connection drops first.
    pub async fn call(&self, msg: Message) -> Result<Message> {
        let tid = self.inner.next_tid.fetch_add(1, Ordering::Relaxed);
        let bytes = frame_bytes_for(FrameType::Request, &Envelope { tid, msg }, self.sealed())?;
        let (tx, rx) = oneshot::channel();
        self.inner.pending.lock().expect("pending lock").insert(tid, tx);
        if self.is_closed() || self.inner.out.send(bytes).await.is_err() {
            self.inner.pending.lock().expect("pending lock").remove(&tid);
            return Err(self.not_connected());
        }
        rx.await.map_err(|_| self.not_connected())
    }

    /// Queues a request now, without waiting: requests started on one connection reach the
    /// peer in the order they were started. The receiver yields the response (closed = ENOTCONN).
    pub fn start_call(&self, msg: Message) -> Result<oneshot::Receiver<Message>> {
        let tid = self.inner.next_tid.fetch_add(1, Ordering::Relaxed);
        let bytes = frame_bytes_for(FrameType::Request, &Envelope { tid, msg }, self.sealed())?;
        let (tx, rx) = oneshot::channel();
        self.inner.pending.lock().expect("pending lock").insert(tid, tx);
        if self.is_closed() || self.inner.out.try_send(bytes).is_err() {
            self.inner.pending.lock().expect("pending lock").remove(&tid);
            return Err(self.not_connected());
        }
        Ok(rx)
    }

    /// `call` with a deadline: ETIMEDOUT when it passes.
    pub async fn call_timeout(&self, msg: Message, timeout: Duration) -> Result<Message> {
        match tokio::time::timeout(timeout, self.call(msg)).await {
            Ok(r) => r,
            Err(_) => Err(Error::timed_out(format!("request to {} timed out", self.inner.addr))),
        }
    }

    fn not_connected(&self) -> Error {
        Error::new(errno::ENOTCONN, format!("connection to {} closed", self.inner.addr))
    }
}

/// Encodes a whole `crc` frame in one buffer (see [`frame_bytes_for`]).
pub(crate) fn frame_bytes(frame_type: FrameType, env: &Envelope) -> Result<Vec<u8>> {
    frame_bytes_for(frame_type, env, false)
}

/// Encodes a whole frame in one buffer: the payload is serialized once, straight after room
/// for the header, which is filled in afterwards (a 4 MiB write is copied once, not three times).
/// `sealed`: a sealed header and no CRC; the connection's writer encrypts the payload in place.
pub(crate) fn frame_bytes_for(frame_type: FrameType, env: &Envelope, sealed: bool) -> Result<Vec<u8>> {
    let encoding = |e: postcard::Error| Error::einval(format!("encoding message: {e}"));
    // Sized first (a pass that copies nothing), so a 4 MiB payload is not copied by regrowth.
    let size = postcard::experimental::serialized_size(env).map_err(encoding)?;
    let mut buf = Vec::with_capacity(HEADER_BYTES + size);
    buf.resize(HEADER_BYTES, 0);
    let out = postcard::to_extend(env, buf).map_err(encoding)?;
    let limit = frame::MAX_FRAME_PAYLOAD_BYTES - if sealed { frame::SEAL_TAG_BYTES } else { 0 };
    if out.len() - HEADER_BYTES > limit {
        return Err(Error::new(errno::E2BIG, "message exceeds the frame size limit"));
    }
    let mut out = out;
    if sealed {
        frame::fill_sealed_header(frame_type, &mut out);
    } else {
        frame::fill_header(frame_type, &mut out);
    }
    Ok(out)
}

/// Writes one frame built by [`frame_bytes_for`]; with a sealer, encrypts its payload in place
/// first (the header is the associated data) and sends the tag after it.
async fn write_frame<W: AsyncWrite + Unpin>(
    wr: &mut BufWriter<W>,
    mut buf: Vec<u8>,
    sealer: Option<&mut FrameSealer>,
) -> Result<()> {
    match sealer {
        None => wr.write_all(&buf).await?,
        Some(sealer) => {
            let (header, payload) = buf.split_at_mut(HEADER_BYTES);
            let tag = sealer.seal_in_place(header, payload)?;
            wr.write_all(&buf).await?;
            wr.write_all(&tag).await?;
        }
    }
    Ok(())
}

async fn write_loop(
    wr: impl AsyncWrite + Unpin,
    mut rx: mpsc::Receiver<Vec<u8>>,
    closed: Arc<AtomicBool>,
    mut sealer: Option<FrameSealer>,
    peer: String,
) {
    let mut wr = BufWriter::with_capacity(256 << 10, wr);
    let mut result = Ok(());
    while let Some(buf) = rx.recv().await {
        result = write_frame(&mut wr, buf, sealer.as_mut()).await;
        // Coalesce whatever else is ready into the same flush.
        while result.is_ok() {
            let Ok(more) = rx.try_recv() else { break };
            result = write_frame(&mut wr, more, sealer.as_mut()).await;
        }
        if result.is_ok() {
            result = wr.flush().await.map_err(Error::from);
        }
        if result.is_err() {
            break;
        }
    }
    if let Err(e) = result {
        if e.errno == errno::EAGAIN {
            tracing::warn!(%peer, error = %e, "closing connection");
        }
    }
    closed.store(true, Ordering::Release);
    let _ = wr.shutdown().await;
}

/// Reads one frame; `Ok(None)` on a clean end of stream. With an opener the frame must be
/// sealed and open (EACCES otherwise); without, it must be a `crc` frame whose CRC matches.
async fn read_frame(
    rd: &mut BufReader<impl AsyncRead + Unpin>,
    opener: Option<&mut FrameOpener>,
) -> Result<Option<(FrameType, Envelope)>> {
    let mut header = [0u8; HEADER_BYTES];
    match rd.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let h = frame::decode_header(&header)?;
    // Not zero-filled first: `take` bounds the read to the checked length.
    let mut payload = Vec::with_capacity(h.payload_len);
    let n = (&mut *rd).take(h.payload_len as u64).read_to_end(&mut payload).await?;
    if n != h.payload_len {
        return Err(Error::einval(format!("frame truncated: {n} of {} payload bytes", h.payload_len)));
    }
    match opener {
        None => frame::verify_payload(&h, &payload)?,
        Some(opener) => {
            if !h.sealed() {
                return Err(Error::new(errno::EACCES, "unsealed frame on a secure connection"));
            }
            let len = opener.open_in_place(&header, &mut payload)?;
            payload.truncate(len);
        }
    }
    Ok(Some((h.frame_type, decode_envelope(&payload)?)))
}

async fn client_read_loop(
    rd: impl AsyncRead + Unpin,
    pending: Pending,
    closed: Arc<AtomicBool>,
    addr: String,
    mut opener: Option<FrameOpener>,
) {
    let mut rd = BufReader::with_capacity(256 << 10, rd);
    loop {
        match read_frame(&mut rd, opener.as_mut()).await {
            Ok(Some((FrameType::Response, env))) => {
                let tx = pending.lock().expect("pending lock").remove(&env.tid);
                if let Some(tx) = tx {
                    let _ = tx.send(env.msg);
                }
            }
            Ok(Some((FrameType::Request, _))) => {
                tracing::warn!(%addr, "server sent a request frame; closing");
                break;
            }
            Ok(None) => break,
            Err(e) if e.errno == errno::EACCES => {
                tracing::error!(%addr, error = %e, "closing connection: frame failed authentication");
                break;
            }
            Err(e) => {
                tracing::debug!(%addr, error = %e, "connection read failed");
                break;
            }
        }
    }
    closed.store(true, Ordering::Release);
    // Dropping the senders wakes every waiting caller with ENOTCONN.
    pending.lock().expect("pending lock").clear();
}

/// Where a handler sends its answer to one request.
pub struct Responder {
    tid: u64,
    out: mpsc::Sender<Vec<u8>>,
    sealed: bool,
}

impl Responder {
    pub fn reply(self, msg: Message) {
        match frame_bytes_for(FrameType::Response, &Envelope { tid: self.tid, msg }, self.sealed) {
            Ok(bytes) => {
                // The writer may be gone (peer hung up); then nobody wants the answer.
                let out = self.out;
                if out.try_send(bytes.clone()).is_err() {
                    tokio::spawn(async move {
                        let _ = out.send(bytes).await;
                    });
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot encode reply"),
        }
    }
}

/// Serves requests of one daemon.
pub trait Handler: Send + Sync + 'static {
    /// Called on the connection's reading task, in arrival order; must not block. Spawn for
    /// anything that waits. `session` says who sent it (checked by the handshake).
    fn handle(self: &Arc<Self>, session: &Arc<Session>, msg: Message, responder: Responder);
}

/// Accepts connections until the listener fails; each authenticates through `auth`, then runs
/// until the peer hangs up, sends something malformed, its ticket expires or the handler closes
/// it (then the connection is closed and nothing else is affected).
pub async fn serve<H: Handler>(listener: impl Listener, handler: Arc<H>, auth: Arc<dyn ServiceAuth>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let handler = handler.clone();
        let auth = auth.clone();
        tokio::spawn(async move {
            let mut stream = stream;
            let (session, cipher) = match server_handshake(&mut *stream, peer, &*auth).await {
                Ok((s, cipher)) => (Arc::new(s), cipher),
                // A new cluster's auth database not being ready yet is routine; refusals are not.
                Err(e) if e.errno == errno::EAGAIN => {
                    tracing::debug!(%peer, error = %e, "connection refused by authentication");
                    return;
                }
                Err(e) => {
                    tracing::info!(%peer, error = %e, "connection refused by authentication");
                    return;
                }
            };
            tracing::debug!(%peer, entity = %session.entity, mode = session.mode.as_str(), "connection authenticated");
            serve_connection(stream, session, handler, cipher).await;
        });
    }
}

/// Resolves when the session's ticket runs out (never for sessions without one).
async fn ticket_expiry(session: &Session) {
    match session.expires_secs {
        Some(t) => tokio::time::sleep(Duration::from_secs(t.saturating_sub(crate::auth::now_secs()))).await,
        None => std::future::pending().await,
    }
}

async fn serve_connection<H: Handler>(
    stream: Box<dyn Stream>,
    session: Arc<Session>,
    handler: Arc<H>,
    cipher: Option<FrameCipher>,
) {
    let peer = session.peer;
    let sealed = cipher.is_some();
    let (sealer, mut opener) = cipher.map(FrameCipher::split).unzip();
    let (rd, wr) = tokio::io::split::<Box<dyn Stream>>(stream);
    let (out_tx, out_rx) = mpsc::channel::<Vec<u8>>(MAX_IN_FLIGHT_PER_CONNECTION);
    tokio::spawn(write_loop(wr, out_rx, Arc::new(AtomicBool::new(false)), sealer, peer.to_string()));
    let mut rd = BufReader::with_capacity(256 << 10, rd);
    let expires = ticket_expiry(&session);
    tokio::pin!(expires);
    loop {
        // Losing a half-read frame to the other branches is fine: the connection closes.
        let frame = tokio::select! {
            f = read_frame(&mut rd, opener.as_mut()) => f,
            _ = &mut expires => {
                tracing::info!(%peer, entity = %session.entity, "ticket expired; closing the connection");
                break;
            }
            _ = session.closed() => break,
        };
        match frame {
            Ok(Some((FrameType::Request, env))) => {
                let responder = Responder { tid: env.tid, out: out_tx.clone(), sealed };
                handler.handle(&session, env.msg, responder);
            }
            Ok(Some((FrameType::Response, _))) => {
                tracing::warn!(%peer, "client sent a response frame; closing");
                break;
            }
            Ok(None) => break,
            // Malformed input is worth a warning; a peer hanging up is not.
            Err(e) if e.errno == errno::EINVAL => {
                tracing::warn!(%peer, error = %e, "closing connection after bad input");
                break;
            }
            Err(e) if e.errno == errno::EACCES => {
                tracing::error!(
                    %peer, entity = %session.entity, error = %e,
                    "closing connection: frame failed authentication"
                );
                break;
            }
            Err(e) => {
                tracing::debug!(%peer, error = %e, "connection ended");
                break;
            }
        }
    }
}

/// One address's connection; its lock is held while connecting, so callers for the same
/// address share one connection (and its ordering) while other addresses are not held up by a
/// slow or dead peer.
type Slot = Arc<tokio::sync::Mutex<Option<Conn>>>;

/// Reuses one connection per address, reconnecting when it has dropped.
#[derive(Clone)]
pub struct ConnPool {
    net: Arc<dyn Network>,
    auth: Arc<ClientAuth>,
    conns: Arc<Mutex<HashMap<String, Slot>>>,
}

impl ConnPool {
    /// A pool whose connections go over `net`, authenticated as `auth`.
    pub fn new(net: Arc<dyn Network>, auth: Arc<ClientAuth>) -> Self {
        ConnPool { net, auth, conns: Arc::default() }
    }

    pub fn auth(&self) -> &Arc<ClientAuth> {
        &self.auth
    }

    pub async fn get(&self, addr: &str) -> Result<Conn> {
        let slot = self.conns.lock().expect("conn pool lock").entry(addr.to_string()).or_default().clone();
        let mut slot = slot.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let c = Conn::connect(&*self.net, addr, &self.auth).await?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Sends on the pooled connection, reconnecting once if it had dropped.
    pub async fn call(&self, addr: &str, msg: Message, timeout: Duration) -> Result<Message> {
        let fut = async {
            let conn = self.get(addr).await?;
            conn.call(msg).await
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(Error::timed_out(format!("request to {addr} timed out"))),
        }
    }

    pub async fn forget(&self, addr: &str) {
        self.conns.lock().expect("conn pool lock").remove(addr);
    }
}

#[cfg(test)]
mod tests {
    //! Secure connections against a man in the middle, over in-memory pipes: every tampered,
    //! replayed, reordered, dropped or injected frame closes the connection with a logged error
    //! and reaches no handler.

    use super::*;
    use crate::auth::tests::{client_with_modes, modes, peer, services};
    use crate::auth::{AuthMethod, AuthSettings, ModeSettings};
    use crate::net::BoxFuture;
    use cairn_auth::Secret;
    use std::io;

    /// What the man in the middle does to the n-th frame after the handshake in one direction.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Attack {
        Pass,
        /// Flips a payload bit.
        Flip(usize),
        /// Changes a header field (the zero crc32c field of a sealed frame).
        HeaderFlip(usize),
        /// Sends the frame twice.
        Replay(usize),
        /// Sends frame n+1 before frame n.
        Swap(usize),
        Drop(usize),
        /// Sends a crc frame of its own making (`MonCommand "injected"`) before frame n.
        Inject(usize),
    }

    /// Copies frames from one end to the other, attacking as told.
    async fn relay(mut from: impl AsyncRead + Unpin, mut to: impl AsyncWrite + Unpin, attack: Attack) {
        let mut n = 0;
        let mut held = None;
        loop {
            let mut f = vec![0u8; HEADER_BYTES];
            if from.read_exact(&mut f).await.is_err() {
                break;
            }
            let Ok(h) = frame::decode_header(&f) else { break };
            f.resize(HEADER_BYTES + h.payload_len, 0);
            if from.read_exact(&mut f[HEADER_BYTES..]).await.is_err() {
                break;
            }
            // The handshake's frames (tid 0, never sealed) pass untouched.
            let data = h.sealed() || decode_envelope(&f[HEADER_BYTES..]).is_ok_and(|e| e.tid != 0);
            let mut out = Vec::new();
            if !data {
                out.push(f);
            } else {
                match attack {
                    Attack::Flip(k) if k == n => {
                        f[HEADER_BYTES + 3] ^= 0x10;
                        out.push(f);
                    }
                    Attack::HeaderFlip(k) if k == n => {
                        f[HEADER_BYTES - 1] ^= 1;
                        out.push(f);
                    }
                    Attack::Replay(k) if k == n => out.extend([f.clone(), f]),
                    Attack::Swap(k) if k == n => held = Some(f),
                    Attack::Swap(k) if k + 1 == n => out.extend([f, held.take().expect("held frame")]),
                    Attack::Drop(k) if k == n => {}
                    Attack::Inject(k) if k == n => {
                        let msg = Message::MonCommand { cmd: "injected".into() };
                        let ty = h.frame_type;
                        out.extend([frame_bytes(ty, &Envelope { tid: 999, msg }).unwrap(), f]);
                    }
                    _ => out.push(f),
                }
                n += 1;
            }
            for f in out {
                if to.write_all(&f).await.is_err() {
                    return;
                }
            }
            if to.flush().await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    }

    /// Records the commands it is given and answers each with `Ok`.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl Handler for Recorder {
        fn handle(self: &Arc<Self>, _session: &Arc<Session>, msg: Message, responder: Responder) {
            if let Message::MonCommand { cmd } = msg {
                self.0.lock().unwrap().push(cmd);
            }
            responder.reply(Message::Ok);
        }
    }

    /// Each `connect` makes a pipe to a test mon that serves `handler`, through a man in the
    /// middle attacking the requests (`up`) and the replies (`down`).
    struct PipeNet {
        settings: AuthSettings,
        secret: Secret,
        handler: Arc<Recorder>,
        up: Attack,
        down: Attack,
    }

    impl Network for PipeNet {
        fn connect(&self, _addr: &str) -> BoxFuture<'static, io::Result<Box<dyn Stream>>> {
            let (client, mitm_c) = tokio::io::duplex(1 << 20);
            let (mitm_s, mut server) = tokio::io::duplex(1 << 20);
            let ((c_rd, c_wr), (s_rd, s_wr)) = (tokio::io::split(mitm_c), tokio::io::split(mitm_s));
            tokio::spawn(relay(c_rd, s_wr, self.up));
            tokio::spawn(relay(s_rd, c_wr, self.down));
            let (mon, _) = services(&self.secret, self.settings.clone());
            let handler = self.handler.clone();
            tokio::spawn(async move {
                if let Ok((session, cipher)) = server_handshake(&mut server, peer(), &mon).await {
                    serve_connection(Box::new(server), Arc::new(session), handler, cipher).await;
                }
            });
            Box::pin(async move { Ok(Box::new(client) as Box<dyn Stream>) })
        }

        fn bind(&self, _addr: &str) -> BoxFuture<'static, io::Result<Box<dyn Listener>>> {
            Box::pin(async { Err(io::Error::other("pipes only connect")) })
        }
    }

    /// Log lines, for checking what a closed connection logged.
    #[derive(Clone, Default)]
    struct Logs(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Logs {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    struct Outcome {
        handled: Vec<String>,
        /// Which of the four requests got `Ok`.
        answered: Vec<bool>,
        closed: bool,
        logs: String,
    }

    /// A connection in `mode` through the man in the middle; four requests queued at once.
    async fn attack(mode: &str, up: Attack, down: Attack) -> Outcome {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber =
            tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let secret = Secret::generate();
        let settings = AuthSettings { modes: modes(mode), ..AuthSettings::cephx() };
        let handler = Arc::new(Recorder::default());
        let net = PipeNet { settings, secret: secret.clone(), handler: handler.clone(), up, down };
        let auth = client_with_modes(&secret, vec![AuthMethod::Cephx], modes(mode));
        let conn = Conn::connect(&net, "mon", &auth).await.unwrap();
        let want = if mode == "secure" { ConnMode::Secure } else { ConnMode::Crc };
        assert_eq!(conn.mode(), want);
        let calls: Vec<_> =
            (0..4).map(|i| conn.start_call(Message::MonCommand { cmd: format!("c{i}") }).unwrap()).collect();
        let mut answered = Vec::new();
        for rx in calls {
            let r = tokio::time::timeout(Duration::from_secs(5), rx)
                .await
                .expect("an answer or a closed connection");
            answered.push(matches!(r, Ok(Message::Ok)));
        }
        // Let the server finish logging (it may notice after the client).
        tokio::time::sleep(Duration::from_millis(50)).await;
        let handled = handler.0.lock().unwrap().clone();
        let logs = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
        Outcome { handled, answered, closed: conn.is_closed(), logs }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn secure_frames_flow_both_ways() {
        let o = attack("secure", Attack::Pass, Attack::Pass).await;
        assert_eq!(o.handled, strings(&["c0", "c1", "c2", "c3"]));
        assert_eq!(o.answered, vec![true; 4]);
        assert!(!o.closed);
    }

    #[tokio::test]
    async fn tampered_replayed_reordered_dropped_or_injected_requests_close_the_connection() {
        let cases = [
            (Attack::Flip(1), &["c0"][..], "frame 1 failed authentication"),
            (Attack::HeaderFlip(1), &["c0"][..], "frame 1 failed authentication"),
            (Attack::Replay(1), &["c0", "c1"][..], "frame 2 failed authentication"),
            (Attack::Swap(1), &["c0"][..], "frame 1 failed authentication"),
            (Attack::Drop(1), &["c0"][..], "frame 1 failed authentication"),
            (Attack::Inject(1), &["c0"][..], "unsealed frame on a secure connection"),
        ];
        for (up, handled, why) in cases {
            let o = attack("secure", up, Attack::Pass).await;
            assert_eq!(o.handled, strings(handled), "{up:?}");
            // What was handled was answered; nothing after the attack was.
            assert_eq!(o.answered[handled.len()..], vec![false; 4 - handled.len()], "{up:?}");
            assert!(o.closed, "{up:?}");
            assert!(
                o.logs.contains("ERROR")
                    && o.logs.contains("closing connection: frame failed authentication")
            );
            assert!(o.logs.contains(why), "{up:?}: {}", o.logs);
        }
    }

    #[tokio::test]
    async fn a_tampered_reply_closes_the_client_side() {
        // The replies before the attacked one arrive, none after.
        for (down, answered) in [(Attack::Flip(0), 0), (Attack::Replay(0), 1), (Attack::Inject(1), 1)] {
            let o = attack("secure", Attack::Pass, down).await;
            let mut want = vec![false; 4];
            want[..answered].fill(true);
            assert_eq!(o.answered, want, "{down:?}");
            assert!(o.closed, "{down:?}");
            assert!(
                o.logs.contains("ERROR")
                    && o.logs.contains("closing connection: frame failed authentication")
            );
        }
    }

    #[tokio::test]
    async fn crc_mode_is_what_secure_protects_against() {
        // The same man in the middle gets an injected request served on a crc connection.
        let o = attack("crc", Attack::Inject(1), Attack::Pass).await;
        assert_eq!(o.handled, strings(&["c0", "injected", "c1", "c2", "c3"]));
        assert_eq!(o.answered, vec![true; 4]);
        // A flipped bit there is caught by the CRC (an accident; an attacker fixes the CRC).
        let o = attack("crc", Attack::Flip(1), Attack::Pass).await;
        assert_eq!(o.handled, strings(&["c0"]));
        assert!(o.logs.contains("frame checksum mismatch"), "{}", o.logs);
    }

    #[tokio::test]
    async fn secure_connections_carry_large_frames() {
        let secret = Secret::generate();
        let settings = AuthSettings { modes: ModeSettings::all(ConnMode::Secure), ..AuthSettings::cephx() };
        let handler = Arc::new(Recorder::default());
        let net = PipeNet {
            settings,
            secret: secret.clone(),
            handler: handler.clone(),
            up: Attack::Pass,
            down: Attack::Pass,
        };
        let auth = client_with_modes(&secret, vec![AuthMethod::Cephx], ModeSettings::all(ConnMode::Secure));
        let conn = Conn::connect(&net, "mon", &auth).await.unwrap();
        let big = "x".repeat(5 << 20);
        assert!(matches!(conn.call(Message::MonCommand { cmd: big.clone() }).await.unwrap(), Message::Ok));
        assert_eq!(handler.0.lock().unwrap()[0].len(), big.len());
    }
}
