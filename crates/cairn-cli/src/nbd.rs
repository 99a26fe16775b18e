//! `cairn nbd serve`: serves RBD images over NBD, so QEMU, qemu-img, fio and the kernel's nbd
//! client reach them without Cairn code on their side. Export names are `POOL/IMAGE` (and
//! `POOL/IMAGE@SNAP`, read-only).

use crate::args::{take_flag, take_opt, Global};
use crate::output::{self, connect};
use bytes::Bytes;
use cairn_nbd::{BlockDevice, BoxFuture, Extent, Server, ZeroFlags};
use cairn_rbd::Image;
use cairn_types::{Error, Result};
use std::process::ExitCode;
use std::sync::Arc;

pub const USAGE: &str =
    "usage: cairn nbd serve [--listen ADDR:PORT | --socket PATH] [--read-only] [--shared] \
                         POOL/IMAGE[@SNAP]...";

/// An image as an NBD export. All connections share one image handle (and its cache), so a
/// flush on any connection covers writes completed on every connection (`CAN_MULTI_CONN`).
struct RbdDevice {
    image: Image,
    read_only: bool,
}

impl BlockDevice for RbdDevice {
    fn size(&self) -> u64 {
        self.image.size()
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
    fn preferred_block_size(&self) -> u32 {
        4096
    }
    fn description(&self) -> Option<String> {
        Some(format!("Cairn image {}/{}", self.image.io().pool_name, self.image.name()))
    }
    fn multi_conn_safe(&self) -> bool {
        true
    }
    fn can_fast_zero(&self) -> bool {
        true
    }
    fn read(&self, offset: u64, len: u32) -> BoxFuture<'_, Result<Bytes>> {
        Box::pin(self.image.read(offset, len as u64))
    }
    /// With the `rbd cache` in write-back mode a write is acknowledged from the cache; FUA
    /// asks for it to be durable first.
    fn write(&self, offset: u64, data: Bytes, fua: bool) -> BoxFuture<'_, Result<()>> {
        let len = data.len();
        Box::pin(async move {
            let written = async {
                self.image.write(offset, data).await?;
                if fua {
                    self.image.flush().await?;
                }
                Ok(())
            };
            written.await.inspect_err(|e: &Error| {
                tracing::warn!(image = self.image.name(), offset, len, error = %e, errno = e.errno, "write failed")
            })
        })
    }
    fn flush(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.image.flush())
    }
    fn trim(&self, offset: u64, len: u32, _fua: bool) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.image.discard(offset, len as u64))
    }
    fn write_zeroes(&self, offset: u64, len: u32, _flags: ZeroFlags) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.image.write_zeroes(offset, len as u64))
    }
    /// Holes are the ranges no object (of the image or, for a clone, its parents) holds.
    fn block_status(&self, offset: u64, len: u32) -> BoxFuture<'_, Result<Vec<Extent>>> {
        Box::pin(async move {
            let mut extents = Vec::new();
            let mut pos = offset;
            let end = offset + len as u64;
            self.image
                .diff_iterate(None, offset, len as u64, true, &mut |o, l, exists| {
                    if o > pos {
                        extents.push(Extent::hole(o - pos));
                    }
                    extents.push(if exists { Extent::data(l) } else { Extent::hole(l) });
                    pos = o + l;
                    Ok(())
                })
                .await?;
            if pos < end {
                extents.push(Extent::hole(end - pos));
            }
            Ok(extents)
        })
    }
}

/// `POOL/IMAGE[@SNAP]` (pool defaults to `rbd`).
fn parse_spec(spec: &str) -> Result<(String, String, Option<String>)> {
    let (path, snap) = match spec.split_once('@') {
        Some((p, s)) => (p, Some(s.to_string())),
        None => (spec, None),
    };
    let (pool, image) = path.split_once('/').unwrap_or(("rbd", path));
    if image.is_empty() || pool.is_empty() || snap.as_deref() == Some("") {
        return Err(Error::einval(format!("invalid image spec '{spec}' (POOL/IMAGE[@SNAP])")));
    }
    Ok((pool.to_string(), image.to_string(), snap))
}

pub fn main(global: &Global, args: &[String]) -> Result<ExitCode> {
    let mut words = args.to_vec();
    if words.first().map(String::as_str) != Some("serve") {
        return Err(Error::einval(USAGE));
    }
    words.remove(0);
    let listen = take_opt(&mut words, &["--listen"])?;
    let socket = take_opt(&mut words, &["--socket"])?;
    let read_only = take_flag(&mut words, &["--read-only"]);
    let shared = take_flag(&mut words, &["--shared"]);
    // Read-write exports take the image's exclusive lock by default; `--exclusive` says so.
    take_flag(&mut words, &["--exclusive"]);
    if words.is_empty() || words.iter().any(|w| w.starts_with('-')) {
        return Err(Error::einval(USAGE));
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG").unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    let rt = output::runtime()?;
    rt.block_on(async {
        let rados = connect(global).await?;
        let mut server = Server::new();
        let mut images = Vec::new();
        for spec in &words {
            let (pool, name, snap) = parse_spec(spec)?;
            let io = rados
                .ioctx(&pool)
                .map_err(|e| Error::new(e.errno, format!("error opening pool {pool}: {}", e.errno_text())))?;
            let ro = read_only || snap.is_some();
            let image = Image::open(&io, &name, snap.as_deref(), ro)
                .await
                .map_err(|e| Error::new(e.errno, format!("error opening image {name}: {}", e.errno_text())))?;
            image.set_shared(shared);
            if !ro && !shared {
                image.lock_exclusive().await.map_err(|e| {
                    Error::new(e.errno, format!("image {pool}/{name} is in use by another writer: {}", e.message))
                })?;
            }
            server.add_export(spec.clone(), Arc::new(RbdDevice { image: image.clone(), read_only: ro }))?;
            images.push(image);
        }
        if words.len() == 1 {
            server.set_default_export(&words[0])?;
        }
        let server = Arc::new(server);
        let serving = match &socket {
            Some(path) => {
                let _ = std::fs::remove_file(path);
                let listener = tokio::net::UnixListener::bind(path)
                    .map_err(|e| Error::new(e.raw_os_error().unwrap_or(5), format!("binding {path}: {e}")))?;
                eprintln!("serving {} export(s) on unix socket {path}", words.len());
                tokio::spawn(server.clone().serve_unix(listener))
            }
            None => {
                let addr = listen.unwrap_or_else(|| "127.0.0.1:10809".to_string());
                let listener = tokio::net::TcpListener::bind(&addr)
                    .await
                    .map_err(|e| Error::new(e.raw_os_error().unwrap_or(5), format!("binding {addr}: {e}")))?;
                let local = listener.local_addr().map_or(addr, |a| a.to_string());
                eprintln!("serving {} export(s) on {local}", words.len());
                tokio::spawn(server.clone().serve_tcp(listener))
            }
        };
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| Error::eio(format!("installing the SIGTERM handler: {e}")))?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
            r = serving => { r.map_err(|e| Error::eio(e.to_string()))?.map_err(|e| Error::eio(e.to_string()))?; }
        }
        server.shutdown();
        for image in images {
            image.close().await?;
        }
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(parse_spec("vms/a@s").unwrap(), ("vms".into(), "a".into(), Some("s".into())));
        assert_eq!(parse_spec("a").unwrap(), ("rbd".into(), "a".into(), None));
        assert!(parse_spec("vms/").is_err());
        assert!(parse_spec("vms/a@").is_err());
    }
}
