//! [`SimNetwork`]: Cairn's [`Network`] over turmoil's simulated TCP, plus one fault turmoil does
//! not offer: breaking established connections (what a real TCP connection does after a long
//! partition or a middlebox reset), so the RPC layer's reconnect and resend paths run.
//!
//! turmoil keeps each connection's bytes in order (it re-sequences segments), gives every
//! message its own random latency — so messages on *different* connections are reordered —
//! and holds or drops messages between partitioned hosts.

use cairn_proto::net::{BoxFuture, Listener, Network, Stream};
use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The simulated network; one per simulation, shared by every host.
#[derive(Clone, Default)]
pub struct SimNetwork {
    live: Arc<Mutex<Registry>>,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    /// Every open connection end: id → (local ip, remote ip, its switch).
    ends: BTreeMap<u64, (IpAddr, IpAddr, Arc<Switch>)>,
}

/// Breaks one connection end: reads and writes fail from then on.
#[derive(Default)]
struct Switch {
    broken: AtomicBool,
    wakers: Mutex<[Option<Waker>; 2]>,
}

impl Switch {
    fn trip(&self) {
        self.broken.store(true, Ordering::Release);
        let wakers = std::mem::take(&mut *self.wakers.lock().expect("switch lock"));
        for w in wakers.into_iter().flatten() {
            w.wake();
        }
    }

    /// Err if tripped; otherwise remembers `cx` to wake on a trip (slot 0: reader, 1: writer).
    fn check(&self, slot: usize, cx: &Context<'_>) -> io::Result<()> {
        if self.broken.load(Ordering::Acquire) {
            return Err(io::Error::new(io::ErrorKind::ConnectionReset, "connection reset (simulated)"));
        }
        let mut wakers = self.wakers.lock().expect("switch lock");
        match &wakers[slot] {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => wakers[slot] = Some(cx.waker().clone()),
        }
        Ok(())
    }
}

impl SimNetwork {
    pub fn new() -> Arc<SimNetwork> {
        Arc::new(SimNetwork::default())
    }

    /// Breaks every open connection between hosts `a` and `b`; returns how many ends broke.
    pub fn reset_connections(&self, a: IpAddr, b: IpAddr) -> usize {
        let registry = self.live.lock().expect("registry lock");
        let mut n = 0;
        for (local, remote, switch) in registry.ends.values() {
            if (*local == a && *remote == b) || (*local == b && *remote == a) {
                switch.trip();
                n += 1;
            }
        }
        n
    }

    fn wrap(&self, inner: turmoil::net::TcpStream) -> io::Result<SimStream> {
        let local = inner.local_addr()?.ip();
        let remote = inner.peer_addr()?.ip();
        let switch = Arc::new(Switch::default());
        let mut registry = self.live.lock().expect("registry lock");
        registry.next_id += 1;
        let id = registry.next_id;
        registry.ends.insert(id, (local, remote, switch.clone()));
        tracing::trace!(id, %local, %remote, "connection");
        Ok(SimStream { inner, switch, id, live: self.live.clone() })
    }
}

impl Network for SimNetwork {
    fn connect(&self, addr: &str) -> BoxFuture<'static, io::Result<Box<dyn Stream>>> {
        let addr = addr.to_string();
        let net = self.clone();
        Box::pin(async move {
            let stream = turmoil::net::TcpStream::connect(addr.as_str()).await?;
            Ok(Box::new(net.wrap(stream)?) as Box<dyn Stream>)
        })
    }

    fn bind(&self, addr: &str) -> BoxFuture<'static, io::Result<Box<dyn Listener>>> {
        let addr = addr.to_string();
        let net = self.clone();
        Box::pin(async move {
            let inner = turmoil::net::TcpListener::bind(addr.as_str()).await?;
            Ok(Box::new(SimListener { inner, net }) as Box<dyn Listener>)
        })
    }
}

struct SimListener {
    inner: turmoil::net::TcpListener,
    net: SimNetwork,
}

impl Listener for SimListener {
    fn accept(&self) -> BoxFuture<'_, io::Result<(Box<dyn Stream>, SocketAddr)>> {
        Box::pin(async move {
            let (stream, peer) = self.inner.accept().await?;
            Ok((Box::new(self.net.wrap(stream)?) as Box<dyn Stream>, peer))
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

struct SimStream {
    inner: turmoil::net::TcpStream,
    switch: Arc<Switch>,
    id: u64,
    live: Arc<Mutex<Registry>>,
}

impl Drop for SimStream {
    fn drop(&mut self) {
        if let Ok(mut registry) = self.live.lock() {
            registry.ends.remove(&self.id);
        }
    }
}

impl AsyncRead for SimStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.switch.check(0, cx)?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.switch.check(1, cx)?;
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            tracing::trace!(id = self.id, n, "write");
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.switch.check(1, cx)?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
