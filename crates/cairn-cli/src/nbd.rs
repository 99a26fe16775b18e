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

/// Where `rbd device map` keeps what it mapped: one file per device (`nbd0`) holding the
/// gateway's pid, socket and image spec.
fn device_state_dir() -> std::path::PathBuf {
    std::env::var_os("CAIRN_RUN_DIR").map_or_else(|| "/run/cairn".into(), Into::into)
}

/// `cairn rbd device map|unmap|list [-t nbd] …`: attaches images to the kernel's `/dev/nbdX`
/// through a gateway on a Unix socket and the `nbd-client` tool. Says so plainly where the
/// kernel has no nbd module or the tool is missing.
pub fn device(global: &Global, args: &[String]) -> Result<ExitCode> {
    let mut words = args.to_vec();
    if let Some(t) = take_opt(&mut words, &["-t", "--device-type"])? {
        if t != "nbd" {
            return Err(Error::einval(format!(
                "rbd: unsupported device type '{t}' (Cairn maps images with nbd)"
            )));
        }
    }
    let read_only = take_flag(&mut words, &["--read-only"]);
    let state = device_state_dir();
    match words.first().map(String::as_str) {
        Some("list") | Some("ls") => {
            let mut rows = Vec::new();
            for entry in std::fs::read_dir(&state).into_iter().flatten().flatten() {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                let mut it = text.lines();
                let (pid, spec) = (it.next().unwrap_or(""), it.nth(1).unwrap_or(""));
                let dev = entry.file_name().to_string_lossy().into_owned();
                rows.push(format!("{pid:<8} {spec:<40} /dev/{dev}"));
            }
            if !rows.is_empty() {
                println!("{:<8} {:<40} DEVICE", "PID", "IMAGE");
                rows.iter().for_each(|r| println!("{r}"));
            }
            Ok(ExitCode::SUCCESS)
        }
        Some("map") => {
            let spec = words.get(1).ok_or_else(|| Error::einval("rbd: image name was not specified"))?;
            parse_spec(spec)?;
            if !std::path::Path::new("/sys/module/nbd").exists() {
                return Err(Error::new(
                    libc::ENODEV,
                    "rbd: the kernel's nbd module is not loaded (run 'modprobe nbd'); without it, serve the \
                     image with 'cairn nbd serve' and connect QEMU to it directly",
                ));
            }
            let device = (0..256)
                .map(|i| format!("nbd{i}"))
                .find(|d| {
                    std::path::Path::new(&format!("/dev/{d}")).exists()
                        && std::fs::read_to_string(format!("/sys/block/{d}/size"))
                            .is_ok_and(|s| s.trim() == "0")
                })
                .ok_or_else(|| Error::new(libc::EBUSY, "rbd: no free /dev/nbd device"))?;
            std::fs::create_dir_all(&state).map_err(Error::from)?;
            let socket = state.join(format!("{device}.sock"));
            let mut gateway = std::process::Command::new(std::env::current_exe().map_err(Error::from)?);
            if let Some(conf) = &global.conf_path {
                gateway.arg("-c").arg(conf);
            }
            gateway.args(["--name", &global.name, "nbd", "serve", "--socket"]).arg(&socket);
            if read_only {
                gateway.arg("--read-only");
            }
            let child = gateway.arg(spec).stdin(std::process::Stdio::null()).spawn().map_err(Error::from)?;
            for _ in 0..100 {
                if socket.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            let status = std::process::Command::new("nbd-client")
                .args(["-unix"])
                .arg(&socket)
                .arg(format!("/dev/{device}"))
                .args(["-N", spec])
                .status();
            match status {
                Ok(s) if s.success() => {}
                other => {
                    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
                    let why = match other {
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                            "the nbd-client tool is not installed (apt-get install nbd-client)".to_string()
                        }
                        Err(e) => e.to_string(),
                        Ok(s) => format!("nbd-client failed ({s})"),
                    };
                    return Err(Error::eio(format!("rbd: mapping {spec} failed: {why}")));
                }
            }
            let record = format!("{}\n{}\n{spec}\n", child.id(), socket.display());
            std::fs::write(state.join(&device), record).map_err(Error::from)?;
            println!("/dev/{device}");
            Ok(ExitCode::SUCCESS)
        }
        Some("unmap") => {
            let target =
                words.get(1).ok_or_else(|| Error::einval("rbd: device or image was not specified"))?;
            let dev = target.trim_start_matches("/dev/").to_string();
            let record = std::fs::read_to_string(state.join(&dev))
                .map_err(|_| Error::einval(format!("rbd: {target} is not mapped by Cairn")))?;
            let _ = std::process::Command::new("nbd-client").args(["-d", &format!("/dev/{dev}")]).status();
            if let Some(pid) = record.lines().next().and_then(|p| p.parse::<i32>().ok()) {
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            let _ = std::fs::remove_file(state.join(&dev));
            Ok(ExitCode::SUCCESS)
        }
        _ => Err(Error::einval("usage: cairn rbd device map|unmap|list [-t nbd] [--read-only] IMAGE|DEVICE")),
    }
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
