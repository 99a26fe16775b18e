//! The transmission phase. One reader loop parses requests and spawns a task per request, so
//! requests run concurrently; a single writer task serializes reply frames, which may go out in any
//! order. In-flight requests and payload bytes are bounded by semaphores; each reply holds its
//! permits until it has been written.

use crate::device::{err, nbd_error, BlockDevice, Extent, ZeroFlags};
use crate::handshake::{read_full_or_eof, Session};
use crate::server::{protocol_error, wait_shutdown, Server};
use crate::wire::*;
use bytes::{BufMut, Bytes, BytesMut};
use cairn_types::{errno, Error, Result};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

/// Most descriptors in one `NBD_REPLY_TYPE_BLOCK_STATUS` chunk (the spec says at most 2^20).
const MAX_EXTENTS_PER_REPLY: usize = 1 << 16;
/// Write buffer of a connection; payloads larger than it bypass it.
const WRITE_BUFFER_BYTES: usize = 256 * 1024;

/// What every request task needs from the session.
struct Ctx {
    device: Arc<dyn BlockDevice>,
    structured: bool,
    base_allocation: bool,
    max_payload_bytes: u32,
}

/// Frames of one reply, and the permits it holds until written.
struct Reply {
    frames: Vec<Bytes>,
    _permits: Permits,
}

struct Permits {
    _request: OwnedSemaphorePermit,
    _bytes: Option<OwnedSemaphorePermit>,
}

/// The result of executing one request, before encoding.
enum Outcome {
    Done,
    Data(Bytes),
    Extents(Vec<Extent>),
}

/// Why the reader loop stopped.
enum Stop {
    Disconnect,
    Eof,
    Shutdown,
    WriterGone,
    Violation(Error),
}

pub(crate) async fn serve<S>(server: &Server, session: Session, stream: S) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let limits = server.limits();
    let ctx = Arc::new(Ctx {
        device: session.device,
        structured: session.structured,
        base_allocation: session.base_allocation,
        max_payload_bytes: limits.max_payload_bytes,
    });
    let (mut rd, wr) = tokio::io::split(stream);
    // Capacity equals the in-flight bound: a reply is only created while holding a request
    // permit, so `try_send` never finds the channel full.
    let (tx, rx) = mpsc::channel::<Reply>(limits.max_in_flight_requests);
    let writer = tokio::spawn(write_replies(wr, rx));
    let requests = Arc::new(Semaphore::new(limits.max_in_flight_requests));
    let bytes = Arc::new(Semaphore::new(limits.max_in_flight_bytes));
    let mut shutdown = server.shutdown_signal();

    let stop = loop {
        let mut header = [0u8; REQUEST_HEADER_BYTES];
        let got = tokio::select! {
            biased;
            _ = wait_shutdown(&mut shutdown) => break Stop::Shutdown,
            _ = tx.closed() => break Stop::WriterGone,
            got = read_full_or_eof(&mut rd, &mut header) => got,
        };
        match got {
            Ok(true) => {}
            Ok(false) => break Stop::Eof,
            Err(e) => break Stop::Violation(e),
        }
        let Some(req) = decode_request(&header) else {
            break Stop::Violation(protocol_error("bad request magic"));
        };
        if req.kind == CMD_DISC {
            break Stop::Disconnect;
        }
        if req.kind == CMD_WRITE && req.length > ctx.max_payload_bytes {
            // The payload follows the header: refusing it means skipping up to 4 GiB.
            break Stop::Violation(protocol_error(format!(
                "write payload of {} bytes exceeds the maximum of {}",
                req.length, ctx.max_payload_bytes
            )));
        }
        let payload_bytes = match req.kind {
            CMD_WRITE => req.length,
            CMD_READ if req.length <= ctx.max_payload_bytes => req.length,
            _ => 0,
        };
        let permits = match acquire(&requests, &bytes, payload_bytes).await {
            Ok(p) => p,
            Err(e) => break Stop::Violation(e),
        };
        let payload = if req.kind == CMD_WRITE {
            let mut buf = BytesMut::zeroed(req.length as usize);
            if let Err(e) = rd.read_exact(&mut buf).await {
                break Stop::Violation(e.into());
            }
            Some(buf.freeze())
        } else {
            None
        };
        let slot = ReplySlot {
            tx: tx.clone(),
            cookie: req.cookie,
            structured: ctx.structured,
            permits: Some(permits),
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let outcome = execute(&ctx, &req, payload).await;
            slot.send(encode(&ctx, &req, outcome));
        });
    };

    // Every spawned task holds a sender: the writer ends once the last reply is written.
    drop(tx);
    let written = writer.await.map_err(|e| protocol_error(format!("reply writer failed: {e}")))?;
    match stop {
        Stop::Violation(e) => Err(e),
        Stop::Disconnect | Stop::Eof | Stop::Shutdown | Stop::WriterGone => written,
    }
}

async fn acquire(requests: &Arc<Semaphore>, bytes: &Arc<Semaphore>, payload_bytes: u32) -> Result<Permits> {
    let closed = |_| protocol_error("request limiter closed");
    let request = requests.clone().acquire_owned().await.map_err(closed)?;
    let bytes = match payload_bytes {
        0 => None,
        n => Some(bytes.clone().acquire_many_owned(n).await.map_err(closed)?),
    };
    Ok(Permits { _request: request, _bytes: bytes })
}

/// Where a request task puts its reply. If the task dies before sending (a panicking device), the
/// slot answers EIO on drop so the client is not left waiting for its cookie.
struct ReplySlot {
    tx: mpsc::Sender<Reply>,
    cookie: u64,
    structured: bool,
    permits: Option<Permits>,
}

impl ReplySlot {
    fn send(mut self, frames: Vec<Bytes>) {
        self.push(frames);
    }

    fn push(&mut self, frames: Vec<Bytes>) {
        if let Some(permits) = self.permits.take() {
            // Full is impossible (capacity = request permits); closed means the client is gone.
            let _ = self.tx.try_send(Reply { frames, _permits: permits });
        }
    }
}

impl Drop for ReplySlot {
    fn drop(&mut self) {
        if self.permits.is_some() {
            warn!(cookie = self.cookie, "request task ended without a reply; answering EIO");
            let frames = error_frames(self.structured, self.cookie, &Error::eio("internal error"));
            self.push(frames);
        }
    }
}

async fn write_replies<W: AsyncWrite + Unpin>(wr: W, mut rx: mpsc::Receiver<Reply>) -> Result<()> {
    let mut out = BufWriter::with_capacity(WRITE_BUFFER_BYTES, wr);
    while let Some(reply) = rx.recv().await {
        for frame in &reply.frames {
            out.write_all(frame).await?;
        }
        drop(reply);
        if rx.is_empty() {
            out.flush().await?;
        }
    }
    out.flush().await?;
    out.shutdown().await?;
    Ok(())
}

/// Checks a request against the session and export, then runs it on the device.
async fn execute(ctx: &Ctx, req: &RequestHeader, payload: Option<Bytes>) -> Result<Outcome> {
    check(ctx, req)?;
    let dev = ctx.device.as_ref();
    let (offset, len) = (req.offset, req.length);
    let fua = req.flags & CMD_FLAG_FUA != 0;
    match req.kind {
        CMD_READ if len == 0 => Ok(Outcome::Data(Bytes::new())),
        CMD_READ => {
            let data = dev.read(offset, len).await?;
            if data.len() != len as usize {
                // Never send a short payload: with simple replies it would desynchronize the stream.
                return Err(Error::eio(format!(
                    "device returned {} bytes for a {len}-byte read",
                    data.len()
                )));
            }
            Ok(Outcome::Data(data))
        }
        CMD_WRITE => {
            let data = payload.ok_or_else(|| Error::eio("write without payload"))?;
            debug_assert_eq!(data.len(), len as usize);
            if len > 0 {
                dev.write(offset, data, fua).await?;
            }
            Ok(Outcome::Done)
        }
        CMD_FLUSH => dev.flush().await.map(|_| Outcome::Done),
        CMD_TRIM if len == 0 => Ok(Outcome::Done),
        CMD_TRIM => dev.trim(offset, len, fua).await.map(|_| Outcome::Done),
        CMD_CACHE if len == 0 => Ok(Outcome::Done),
        CMD_CACHE => dev.cache(offset, len).await.map(|_| Outcome::Done),
        CMD_WRITE_ZEROES if len == 0 => Ok(Outcome::Done),
        CMD_WRITE_ZEROES => {
            let flags = ZeroFlags { may_trim: req.flags & CMD_FLAG_NO_HOLE == 0, fua };
            dev.write_zeroes(offset, len, flags).await.map(|_| Outcome::Done)
        }
        CMD_BLOCK_STATUS => dev.block_status(offset, len).await.map(Outcome::Extents),
        other => Err(err(errno::EINVAL, format!("unknown command {other}"))),
    }
}

/// The checks the spec asks of the server before touching the device: flags valid for the
/// command, read-only exports, bounds, payload size, negotiated features.
fn check(ctx: &Ctx, req: &RequestHeader) -> Result<()> {
    let dev = ctx.device.as_ref();
    let allowed = CMD_FLAG_FUA
        | match req.kind {
            CMD_READ if ctx.structured => CMD_FLAG_DF,
            CMD_WRITE_ZEROES => CMD_FLAG_NO_HOLE | CMD_FLAG_FAST_ZERO,
            CMD_BLOCK_STATUS => CMD_FLAG_REQ_ONE,
            CMD_READ | CMD_WRITE | CMD_FLUSH | CMD_TRIM | CMD_CACHE => 0,
            other => return Err(err(errno::EINVAL, format!("unknown command {other}"))),
        };
    if req.flags & !allowed != 0 {
        return Err(err(
            errno::EINVAL,
            format!("command flags {:#x} not valid for command {}", req.flags, req.kind),
        ));
    }
    let writes = matches!(req.kind, CMD_WRITE | CMD_TRIM | CMD_WRITE_ZEROES);
    if writes && dev.read_only() {
        return Err(err(errno::EPERM, "export is read-only"));
    }
    if req.kind == CMD_FLUSH {
        return Ok(());
    }
    if req.kind == CMD_READ && req.length > ctx.max_payload_bytes {
        // With structured replies EOVERFLOW tells the client to retry smaller.
        let e = if ctx.structured { libc::EOVERFLOW } else { errno::EINVAL };
        let msg = format!("read of {} bytes exceeds the maximum of {}", req.length, ctx.max_payload_bytes);
        return Err(err(e, msg));
    }
    let end = req.offset.checked_add(req.length as u64);
    if end.is_none_or(|end| end > dev.size()) {
        // Writing past the end is "no space"; anything else past the end is an invalid argument.
        let e = if matches!(req.kind, CMD_WRITE | CMD_WRITE_ZEROES) { errno::ENOSPC } else { errno::EINVAL };
        let msg = format!("range {}+{} exceeds the export size {}", req.offset, req.length, dev.size());
        return Err(err(e, msg));
    }
    match req.kind {
        CMD_WRITE_ZEROES if req.flags & CMD_FLAG_FAST_ZERO != 0 && !dev.can_fast_zero() => {
            Err(err(errno::EOPNOTSUPP, "export cannot zero faster than it writes"))
        }
        CMD_BLOCK_STATUS if !ctx.base_allocation => {
            Err(err(errno::EINVAL, "no metadata context was negotiated for this export"))
        }
        CMD_BLOCK_STATUS if req.length == 0 => Err(err(errno::EINVAL, "block status of zero bytes")),
        _ => Ok(()),
    }
}

/// Encodes a reply: simple replies unless structured replies were negotiated; then reads always
/// get one content chunk (data, or a hole when the data is all zeroes) and errors an error chunk.
fn encode(ctx: &Ctx, req: &RequestHeader, outcome: Result<Outcome>) -> Vec<Bytes> {
    let cookie = req.cookie;
    match outcome {
        Err(e) => {
            debug!(cookie, kind = req.kind, errno = e.errno, error = %e, "request failed");
            error_frames(ctx.structured, cookie, &e)
        }
        Ok(Outcome::Done) => vec![simple_reply(0, cookie)],
        Ok(Outcome::Data(data)) if !ctx.structured => vec![simple_reply(0, cookie), data],
        Ok(Outcome::Data(data)) if data.is_empty() => vec![none_chunk(cookie)],
        Ok(Outcome::Data(data)) if is_zero(&data) => {
            let mut c = chunk_header(REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_HOLE, cookie, 12);
            c.put_u64(req.offset);
            c.put_u32(data.len() as u32);
            vec![c.freeze()]
        }
        Ok(Outcome::Data(data)) => {
            let mut c = chunk_header(REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_DATA, cookie, 8 + data.len() as u32);
            c.put_u64(req.offset);
            vec![c.freeze(), data]
        }
        Ok(Outcome::Extents(extents)) => {
            let descriptors = clip_extents(&extents, req.length, req.flags & CMD_FLAG_REQ_ONE != 0);
            let payload_len = 4 + 8 * descriptors.len() as u32;
            let mut c = chunk_header(REPLY_FLAG_DONE, REPLY_TYPE_BLOCK_STATUS, cookie, payload_len);
            c.put_u32(META_ID_BASE_ALLOCATION);
            for (len, flags) in descriptors {
                c.put_u32(len);
                c.put_u32(flags);
            }
            vec![c.freeze()]
        }
    }
}

fn error_frames(structured: bool, cookie: u64, e: &Error) -> Vec<Bytes> {
    let code = nbd_error(e.errno);
    if structured {
        vec![error_chunk(cookie, code, &e.message)]
    } else {
        vec![simple_reply(code, cookie)]
    }
}

/// Turns device extents into `(length, flags)` descriptors covering at most `[0, len)` of the
/// request: zero-length extents are dropped, the last one is clipped, and with `req_one` only the
/// first is kept. A device that reported nothing usable gets one descriptor with status 0, which
/// the spec says is always safe.
fn clip_extents(extents: &[Extent], len: u32, req_one: bool) -> Vec<(u32, u32)> {
    debug_assert!(len > 0);
    let mut out = Vec::new();
    let mut covered: u32 = 0;
    for e in extents.iter().filter(|e| e.len_bytes > 0) {
        let take = e.len_bytes.min((len - covered) as u64) as u32;
        let flags = if e.hole { STATE_HOLE } else { 0 } | if e.zero { STATE_ZERO } else { 0 };
        match out.last_mut() {
            Some((l, f)) if *f == flags => *l += take,
            _ => out.push((take, flags)),
        }
        covered += take;
        if covered == len || req_one || out.len() >= MAX_EXTENTS_PER_REPLY {
            break;
        }
    }
    if out.is_empty() {
        out.push((len, 0));
    }
    if req_one {
        out.truncate(1);
    }
    out
}

fn is_zero(data: &[u8]) -> bool {
    let mut chunks = data.chunks_exact(64);
    chunks.all(|c| c == [0u8; 64]) && chunks.remainder().iter().all(|&b| b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extents_are_clipped_merged_and_bounded() {
        let ext = [Extent::data(100), Extent::data(50), Extent::hole(0), Extent::hole(1000)];
        assert_eq!(clip_extents(&ext, 400, false), vec![(150, 0), (250, STATE_HOLE | STATE_ZERO)]);
        assert_eq!(clip_extents(&ext, 120, false), vec![(120, 0)]);
        assert_eq!(clip_extents(&ext, 400, true), vec![(100, 0)]);
        assert_eq!(clip_extents(&[], 400, true), vec![(400, 0)]);
        assert_eq!(clip_extents(&[Extent::zero(10)], 400, false), vec![(10, STATE_ZERO)]);
    }

    #[test]
    fn zero_detection() {
        assert!(is_zero(&[0u8; 200]));
        let mut v = vec![0u8; 200];
        v[199] = 1;
        assert!(!is_zero(&v));
        v[199] = 0;
        v[3] = 1;
        assert!(!is_zero(&v));
    }
}
