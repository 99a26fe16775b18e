//! Request/response connections over a [`Network`] (TCP for the daemons, simulated in
//! `cairn-sim`). One connection carries many requests at once, matched
//! by `tid`. The server side hands each request to a [`Handler`] *in arrival order, on the
//! reading task*, so a handler that must keep order (a replica applying a primary's writes)
//! can start the work synchronously and finish it asynchronously.
//!
//! Every connection starts with the authentication handshake of [`crate::auth`]; the server
//! hands each request to its handler with the connection's [`Session`], and closes the
//! connection when the peer's ticket expires or the handler calls [`Session::close`].

use crate::auth::{client_handshake, server_handshake, ClientAuth, ServiceAuth, Session, HANDSHAKE_TIMEOUT};
use crate::frame::{self, FrameType, HEADER_BYTES};
use crate::msg::{decode_envelope, Envelope, Message};
use crate::net::{Listener, Network, Stream};
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
        tokio::time::timeout(limit, client_handshake(&mut *stream, addr, auth))
            .await
            .map_err(|_| Error::timed_out(format!("authenticating to {addr} timed out")))??;
        let (rd, wr) = tokio::io::split(stream);
        let (out_tx, out_rx) = mpsc::channel::<Vec<u8>>(MAX_IN_FLIGHT_PER_CONNECTION);
        let pending: Pending = Arc::default();
        let closed = Arc::new(AtomicBool::new(false));
        tokio::spawn(write_loop(wr, out_rx, closed.clone()));
        tokio::spawn(client_read_loop(rd, pending.clone(), closed.clone(), addr.to_string()));
        Ok(Conn {
            inner: Arc::new(ConnInner {
                addr: addr.to_string(),
                out: out_tx,
                pending,
                next_tid: AtomicU64::new(1),
                closed,
            }),
        })
    }

    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire) || self.inner.out.is_closed()
    }

    /// Sends a request and waits for its response. ENOTCONN if the connection drops first.
    pub async fn call(&self, msg: Message) -> Result<Message> {
        let tid = self.inner.next_tid.fetch_add(1, Ordering::Relaxed);
        let bytes = frame_bytes(FrameType::Request, &Envelope { tid, msg })?;
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
        let bytes = frame_bytes(FrameType::Request, &Envelope { tid, msg })?;
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

/// Encodes a whole frame in one buffer: the payload is serialized once, straight after room
/// for the header, which is filled in afterwards (a 4 MiB write is copied once, not three times).
pub(crate) fn frame_bytes(frame_type: FrameType, env: &Envelope) -> Result<Vec<u8>> {
    let out = postcard::to_extend(env, vec![0u8; HEADER_BYTES])
        .map_err(|e| Error::einval(format!("encoding message: {e}")))?;
    if out.len() - HEADER_BYTES > frame::MAX_FRAME_PAYLOAD_BYTES {
        return Err(Error::new(errno::E2BIG, "message exceeds the frame size limit"));
    }
    let mut out = out;
    frame::fill_header(frame_type, &mut out);
    Ok(out)
}

async fn write_loop(wr: impl AsyncWrite + Unpin, mut rx: mpsc::Receiver<Vec<u8>>, closed: Arc<AtomicBool>) {
    let mut wr = BufWriter::with_capacity(256 << 10, wr);
    while let Some(buf) = rx.recv().await {
        if wr.write_all(&buf).await.is_err() {
            break;
        }
        // Coalesce whatever else is ready into the same flush.
        let mut failed = false;
        while let Ok(more) = rx.try_recv() {
            if wr.write_all(&more).await.is_err() {
                failed = true;
                break;
            }
        }
        if failed || wr.flush().await.is_err() {
            break;
        }
    }
    closed.store(true, Ordering::Release);
    let _ = wr.shutdown().await;
}

/// Reads one frame; `Ok(None)` on a clean end of stream.
async fn read_frame(rd: &mut BufReader<impl AsyncRead + Unpin>) -> Result<Option<(FrameType, Envelope)>> {
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
    frame::verify_payload(&h, &payload)?;
    Ok(Some((h.frame_type, decode_envelope(&payload)?)))
}

async fn client_read_loop(
    rd: impl AsyncRead + Unpin,
    pending: Pending,
    closed: Arc<AtomicBool>,
    addr: String,
) {
    let mut rd = BufReader::with_capacity(256 << 10, rd);
    loop {
        match read_frame(&mut rd).await {
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
}

impl Responder {
    pub fn reply(self, msg: Message) {
        match frame_bytes(FrameType::Response, &Envelope { tid: self.tid, msg }) {
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
            let session = match server_handshake(&mut *stream, peer, &*auth).await {
                Ok(s) => Arc::new(s),
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
            tracing::debug!(%peer, entity = %session.entity, "connection authenticated");
            serve_connection(stream, session, handler).await;
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

async fn serve_connection<H: Handler>(stream: Box<dyn Stream>, session: Arc<Session>, handler: Arc<H>) {
    let peer = session.peer;
    let (rd, wr) = tokio::io::split::<Box<dyn Stream>>(stream);
    let (out_tx, out_rx) = mpsc::channel::<Vec<u8>>(MAX_IN_FLIGHT_PER_CONNECTION);
    tokio::spawn(write_loop(wr, out_rx, Arc::new(AtomicBool::new(false))));
    let mut rd = BufReader::with_capacity(256 << 10, rd);
    let expires = ticket_expiry(&session);
    tokio::pin!(expires);
    loop {
        // Losing a half-read frame to the other branches is fine: the connection closes.
        let frame = tokio::select! {
            f = read_frame(&mut rd) => f,
            _ = &mut expires => {
                tracing::info!(%peer, entity = %session.entity, "ticket expired; closing the connection");
                break;
            }
            _ = session.closed() => break,
        };
        match frame {
            Ok(Some((FrameType::Request, env))) => {
                let responder = Responder { tid: env.tid, out: out_tx.clone() };
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
