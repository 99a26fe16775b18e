//! A test's loopback capture: real TCP through a [`Network`] that records every byte each
//! connection sent and received.

use cairn_proto::net::{BoxFuture, Network, Stream};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Every byte a connection sent and received.
#[derive(Default)]
pub struct Recorded {
    pub addr: String,
    pub sent: Vec<u8>,
    pub received: Vec<u8>,
}

/// Real TCP, with every connection's bytes recorded.
#[derive(Default)]
pub struct RecordingNet {
    pub conns: Mutex<Vec<Arc<Mutex<Recorded>>>>,
}

struct Tap {
    inner: tokio::net::TcpStream,
    rec: Arc<Mutex<Recorded>>,
}

impl AsyncRead for Tap {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut me.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            me.rec.lock().unwrap().received.extend_from_slice(&buf.filled()[before..]);
        }
        r
    }
}

impl AsyncWrite for Tap {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        let r = Pin::new(&mut me.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = r {
            me.rec.lock().unwrap().sent.extend_from_slice(&data[..n]);
        }
        r
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl Network for RecordingNet {
    fn connect(&self, addr: &str) -> BoxFuture<'static, io::Result<Box<dyn Stream>>> {
        let rec = Arc::new(Mutex::new(Recorded { addr: addr.to_string(), ..Default::default() }));
        self.conns.lock().unwrap().push(rec.clone());
        let addr = addr.to_string();
        Box::pin(async move {
            let inner = tokio::net::TcpStream::connect(addr).await?;
            inner.set_nodelay(true)?;
            Ok(Box::new(Tap { inner, rec }) as Box<dyn Stream>)
        })
    }
    fn bind(&self, _addr: &str) -> BoxFuture<'static, io::Result<Box<dyn cairn_proto::Listener>>> {
        Box::pin(async { Err(io::Error::other("the recording network only connects")) })
    }
}

impl RecordingNet {
    /// A snapshot of every connection made so far.
    pub fn recorded(&self) -> Vec<Arc<Mutex<Recorded>>> {
        self.conns.lock().unwrap().clone()
    }
}
