//! The network under Cairn's connections: real TCP for the daemons, a simulated network for the
//! deterministic simulation (`crates/cairn-sim`). Everything that opens a connection or listens
//! for one — [`crate::rpc::Conn`], [`crate::rpc::ConnPool`], [`crate::rpc::serve`],
//! [`crate::monc::MonClient`], the OSD daemon and the mons' Raft transport — does it through an
//! `Arc<dyn Network>`, so one process can host a whole cluster on a simulated network.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

/// A boxed, sendable future (the trait objects below cannot use `async fn`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A connected byte stream.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// A listening socket.
pub trait Listener: Send + Sync + 'static {
    /// Waits for the next connection; returns it with the peer's address.
    fn accept(&self) -> BoxFuture<'_, io::Result<(Box<dyn Stream>, SocketAddr)>>;
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// Opens connections and listeners. Addresses are `host:port` strings, as in the cluster map.
pub trait Network: Send + Sync + 'static {
    fn connect(&self, addr: &str) -> BoxFuture<'static, io::Result<Box<dyn Stream>>>;
    fn bind(&self, addr: &str) -> BoxFuture<'static, io::Result<Box<dyn Listener>>>;
}

/// The real network: tokio TCP with `TCP_NODELAY` (requests are small and latency-bound).
#[derive(Debug, Default, Clone, Copy)]
pub struct TcpNetwork;

/// The real network, as the trait object everything takes.
pub fn tcp() -> Arc<dyn Network> {
    Arc::new(TcpNetwork)
}

impl Network for TcpNetwork {
    fn connect(&self, addr: &str) -> BoxFuture<'static, io::Result<Box<dyn Stream>>> {
        let addr = addr.to_string();
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as Box<dyn Stream>)
        })
    }

    fn bind(&self, addr: &str) -> BoxFuture<'static, io::Result<Box<dyn Listener>>> {
        let addr = addr.to_string();
        Box::pin(async move {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            Ok(Box::new(listener) as Box<dyn Listener>)
        })
    }
}

impl Listener for tokio::net::TcpListener {
    fn accept(&self) -> BoxFuture<'_, io::Result<(Box<dyn Stream>, SocketAddr)>> {
        Box::pin(async move {
            let (stream, peer) = tokio::net::TcpListener::accept(self).await?;
            let _ = stream.set_nodelay(true);
            Ok((Box::new(stream) as Box<dyn Stream>, peer))
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        tokio::net::TcpListener::local_addr(self)
    }
}

impl Listener for Box<dyn Listener> {
    fn accept(&self) -> BoxFuture<'_, io::Result<(Box<dyn Stream>, SocketAddr)>> {
        (**self).accept()
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        (**self).local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn tcp_network_connects_to_its_own_listener() {
        let net = tcp();
        let listener = net.bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(&buf).await.unwrap();
        });
        let mut c = net.connect(&addr).await.unwrap();
        c.write_all(b"hello").await.unwrap();
        let mut back = [0u8; 5];
        c.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"hello");
        server.await.unwrap();
    }
}
