//! The [`Server`]: a set of named exports, the limits every connection lives within, and the
//! accept loops for TCP and Unix sockets.

use crate::device::BlockDevice;
use crate::{handshake, transmission, wire};
use cairn_types::{errno, Error, Result};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{watch, Semaphore};
use tracing::{debug, info, warn};

/// Largest option data accepted during the handshake. The biggest legitimate option is a
/// meta-context request with a 4 KiB name and a few 4 KiB queries.
pub const MAX_OPTION_DATA_BYTES: u32 = 64 * 1024;
/// Options one handshake may send before the server gives up on it.
pub const MAX_OPTIONS_PER_HANDSHAKE: usize = 16 * 1024;
/// Default and largest sensible maximum payload: 32 MiB, the spec's interoperable bound.
pub const DEFAULT_MAX_PAYLOAD_BYTES: u32 = 32 * 1024 * 1024;
/// Read buffer of a connection (request headers are 28 bytes; this batches them).
pub(crate) const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Bounds on what clients can make the server hold. Memory of the server is at most about
/// `max_connections × max_in_flight_bytes` plus small per-request overhead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest READ or WRITE payload, advertised as the maximum block size. A WRITE over it
    /// closes the connection (its payload cannot be skipped safely); a READ over it fails.
    pub max_payload_bytes: u32,
    /// Requests of one connection being processed or waiting for their reply to be written.
    pub max_in_flight_requests: usize,
    /// READ and WRITE payload bytes one connection may hold at once; at least `max_payload_bytes`.
    pub max_in_flight_bytes: usize,
    /// Connections served at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// Time a client has from connecting to entering the transmission phase.
    pub handshake_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            max_in_flight_requests: 128,
            max_in_flight_bytes: 64 * 1024 * 1024,
            max_connections: 256,
            handshake_timeout: Duration::from_secs(30),
        }
    }
}

impl Limits {
    fn validate(&self) -> Result<()> {
        if self.max_payload_bytes < 4096 {
            return Err(Error::einval("max_payload_bytes must be at least 4096"));
        }
        if self.max_in_flight_bytes < self.max_payload_bytes as usize {
            return Err(Error::einval("max_in_flight_bytes must be at least max_payload_bytes"));
        }
        if self.max_in_flight_requests == 0 || self.max_connections == 0 {
            return Err(Error::einval("max_in_flight_requests and max_connections must be positive"));
        }
        // Far above any sane setting, far below what tokio's semaphores and channels accept.
        if self.max_in_flight_requests > 1 << 16 || self.max_connections > 1 << 20 {
            return Err(Error::einval("max_in_flight_requests or max_connections is absurdly large"));
        }
        if self.max_in_flight_bytes > 1 << 40 {
            return Err(Error::einval("max_in_flight_bytes is absurdly large"));
        }
        Ok(())
    }
}

/// An NBD server: named exports, each backed by a [`BlockDevice`]. Build it, wrap it in an
/// `Arc`, then run [`Server::serve_tcp`] / [`Server::serve_unix`] (or feed streams to
/// [`Server::handle`]).
pub struct Server {
    exports: BTreeMap<String, Arc<dyn BlockDevice>>,
    default_export: Option<String>,
    limits: Limits,
    shutdown: watch::Sender<bool>,
    connections: AtomicUsize,
}

impl Default for Server {
    fn default() -> Self {
        Self::new()
    }
}

impl Server {
    /// A server with no exports and default [`Limits`].
    pub fn new() -> Self {
        Server {
            exports: BTreeMap::new(),
            default_export: None,
            limits: Limits::default(),
            shutdown: watch::Sender::new(false),
            connections: AtomicUsize::new(0),
        }
    }

    /// A server with no exports and the given limits (EINVAL if they are inconsistent).
    pub fn with_limits(limits: Limits) -> Result<Self> {
        limits.validate()?;
        Ok(Server { limits, ..Self::new() })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Adds an export. EEXIST for a duplicate name, EINVAL for an empty name (reserved for the
    /// default export), a name over 4096 bytes or one containing NUL.
    pub fn add_export(&mut self, name: impl Into<String>, device: Arc<dyn BlockDevice>) -> Result<()> {
        let name = name.into();
        if name.is_empty() || name.len() > wire::MAX_STRING_BYTES || name.contains('\0') {
            return Err(Error::einval(format!("invalid export name '{name}'")));
        }
        if self.exports.contains_key(&name) {
            return Err(Error::eexist(format!("export '{name}' already exists")));
        }
        self.exports.insert(name, device);
        Ok(())
    }

    /// Makes `name` the export a client gets when it asks for the empty name (ENOENT if there
    /// is no such export).
    pub fn set_default_export(&mut self, name: &str) -> Result<()> {
        if !self.exports.contains_key(name) {
            return Err(Error::enoent(format!("export '{name}' not found")));
        }
        self.default_export = Some(name.to_owned());
        Ok(())
    }

    /// Export names, sorted.
    pub fn export_names(&self) -> impl Iterator<Item = &str> {
        self.exports.keys().map(String::as_str)
    }

    /// Connections currently open (handshake or transmission).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    /// Stops accepting connections; connections in the handshake get `NBD_REP_ERR_SHUTDOWN`;
    /// connections in transmission stop reading requests, finish the ones in flight, and close.
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Resolves a requested export name (empty = the default export) to its canonical name.
    pub(crate) fn export(&self, name: &str) -> Option<(&str, &Arc<dyn BlockDevice>)> {
        let name = if name.is_empty() { self.default_export.as_deref()? } else { name };
        self.exports.get_key_value(name).map(|(k, v)| (k.as_str(), v))
    }

    /// `NBD_INFO_BLOCK_SIZE` for a device: minimum 1, the device's preferred size rounded to a
    /// power of two within 512..=maximum, and the maximum payload.
    pub(crate) fn block_sizes(&self, device: &dyn BlockDevice) -> (u32, u32, u32) {
        let max = self.limits.max_payload_bytes;
        let max_pow2 = 1u32 << (31 - max.leading_zeros());
        let preferred =
            device.preferred_block_size().max(512).checked_next_power_of_two().unwrap_or(max_pow2);
        (1, preferred.min(max_pow2), max)
    }

    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Serves one connection from handshake to close. Errors describe why the connection was
    /// dropped (protocol violation, I/O error, handshake timeout); they never affect other
    /// connections.
    pub async fn handle<S>(&self, stream: S) -> Result<()>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        self.connections.fetch_add(1, Ordering::AcqRel);
        let _guard = ConnectionGuard(&self.connections);
        let mut stream = BufReader::with_capacity(READ_BUFFER_BYTES, stream);
        let negotiated =
            tokio::time::timeout(self.limits.handshake_timeout, handshake::negotiate(self, &mut stream))
                .await;
        let session = match negotiated {
            Err(_) => return Err(Error::timed_out("handshake timed out")),
            Ok(result) => result?,
        };
        let Some(session) = session else { return Ok(()) };
        debug!(export = %session.export_name, structured = session.structured, "transmission phase");
        transmission::serve(self, session, stream).await
    }

    /// Accepts TCP connections until [`Server::shutdown`]; each is served on its own task.
    pub async fn serve_tcp(self: Arc<Self>, listener: TcpListener) -> std::io::Result<()> {
        if let Ok(addr) = listener.local_addr() {
            info!(%addr, exports = self.exports.len(), "NBD server listening");
        }
        self.accept_loop(|| async {
            let (sock, _) = listener.accept().await?;
            sock.set_nodelay(true)?;
            Ok(sock)
        })
        .await
    }

    /// Accepts Unix-socket connections until [`Server::shutdown`].
    pub async fn serve_unix(self: Arc<Self>, listener: UnixListener) -> std::io::Result<()> {
        self.accept_loop(|| async { Ok(listener.accept().await?.0) }).await
    }

    async fn accept_loop<S, F, Fut>(self: Arc<Self>, accept: F) -> std::io::Result<()>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
        F: Fn() -> Fut,
        Fut: Future<Output = std::io::Result<S>>,
    {
        let slots = Arc::new(Semaphore::new(self.limits.max_connections));
        let mut shutdown = self.shutdown_signal();
        loop {
            let slot = tokio::select! {
                _ = wait_shutdown(&mut shutdown) => return Ok(()),
                slot = slots.clone().acquire_owned() => slot.map_err(std::io::Error::other)?,
            };
            let stream = tokio::select! {
                _ = wait_shutdown(&mut shutdown) => return Ok(()),
                accepted = accept() => accepted,
            };
            let stream = match stream {
                Ok(s) => s,
                Err(e) => {
                    // EMFILE, ECONNABORTED and friends are transient: keep the listener alive.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let server = self.clone();
            tokio::spawn(async move {
                if let Err(e) = server.handle(stream).await {
                    debug!(error = %e, errno = e.errno, "NBD connection closed");
                }
                drop(slot);
            });
        }
    }
}

/// Resolves once shutdown was requested (never, if the server is gone without asking).
pub(crate) async fn wait_shutdown(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|&down| down).await.is_err() {
        std::future::pending::<()>().await;
    }
}

struct ConnectionGuard<'a>(&'a AtomicUsize);

impl Drop for ConnectionGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// EIO-style error for a connection whose peer broke the protocol.
pub(crate) fn protocol_error(message: impl Into<String>) -> Error {
    Error::new(errno::EIO, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemDevice;

    #[test]
    fn limits_are_validated() {
        assert!(Server::with_limits(Limits::default()).is_ok());
        let bad = [
            Limits { max_payload_bytes: 512, ..Limits::default() },
            Limits { max_in_flight_bytes: 1 << 20, ..Limits::default() },
            Limits { max_in_flight_requests: 0, ..Limits::default() },
            Limits { max_connections: 0, ..Limits::default() },
            Limits { max_in_flight_requests: 1 << 20, ..Limits::default() },
        ];
        for limits in bad {
            assert_eq!(
                Server::with_limits(limits.clone()).err().map(|e| e.errno),
                Some(errno::EINVAL),
                "{limits:?}"
            );
        }
    }

    #[test]
    fn block_sizes_are_powers_of_two_within_bounds() {
        let limits = Limits { max_payload_bytes: 3 << 20, max_in_flight_bytes: 3 << 20, ..Limits::default() };
        let server = Server::with_limits(limits).unwrap();
        for (preferred, want) in
            [(0, 512), (100, 512), (4096, 4096), (5000, 8192), (1 << 22, 2 << 20), (u32::MAX, 2 << 20)]
        {
            let dev = MemDevice::new(1 << 20).block_size(preferred);
            assert_eq!(server.block_sizes(&dev), (1, want, 3 << 20), "preferred {preferred}");
        }
    }

    #[test]
    fn export_names_are_checked_and_resolved() {
        let mut s = Server::new();
        let dev: Arc<dyn BlockDevice> = Arc::new(MemDevice::new(4096));
        assert_eq!(s.add_export("a\0b", dev.clone()).unwrap_err().errno, errno::EINVAL);
        assert_eq!(s.add_export("x".repeat(4097), dev.clone()).unwrap_err().errno, errno::EINVAL);
        s.add_export("b", dev.clone()).unwrap();
        s.add_export("a", dev.clone()).unwrap();
        assert_eq!(s.export_names().collect::<Vec<_>>(), vec!["a", "b"]);
        assert!(s.export("").is_none());
        s.set_default_export("b").unwrap();
        assert_eq!(s.export("").map(|(n, _)| n), Some("b"));
        assert!(s.export("c").is_none());
    }
}
