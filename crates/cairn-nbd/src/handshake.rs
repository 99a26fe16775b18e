//! The fixed-newstyle handshake: greeting, client flags, then option haggling until the client
//! picks an export (`NBD_OPT_GO` / `NBD_OPT_EXPORT_NAME`) or leaves (`NBD_OPT_ABORT`, EOF).

use crate::device::BlockDevice;
use crate::server::{Server, MAX_OPTIONS_PER_HANDSHAKE, MAX_OPTION_DATA_BYTES};
use crate::wire::*;
use cairn_types::{errno, Error, Result};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::debug;

/// What the handshake agreed on: everything the transmission phase needs.
pub(crate) struct Session {
    pub export_name: String,
    pub device: Arc<dyn BlockDevice>,
    pub structured: bool,
    /// `base:allocation` was selected for this export: `NBD_CMD_BLOCK_STATUS` is allowed.
    pub base_allocation: bool,
    pub transmission_flags: u16,
}

/// Negotiation state that options change.
#[derive(Default)]
struct Haggle {
    no_zeroes: bool,
    structured: bool,
    /// Canonical export name of the last `NBD_OPT_SET_META_CONTEXT`, if it selected
    /// `base:allocation`.
    meta_export: Option<String>,
}

/// What one option did to the session.
enum Step {
    Continue,
    Transmit(Session),
    Close,
}

/// Runs the handshake. `Ok(None)`: the client left politely (abort or EOF between options).
/// `Err`: a protocol violation or I/O error; the caller drops the connection.
pub(crate) async fn negotiate<S>(server: &Server, stream: &mut S) -> Result<Option<Session>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut greeting = Vec::with_capacity(18);
    greeting.extend_from_slice(&NBD_MAGIC.to_be_bytes());
    greeting.extend_from_slice(&IHAVEOPT.to_be_bytes());
    greeting.extend_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    stream.write_all(&greeting).await?;
    stream.flush().await?;

    let client_flags = stream.read_u32().await?;
    if client_flags & !(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES) != 0 {
        return Err(Error::einval(format!("unknown client flags {client_flags:#x}")));
    }
    if client_flags & FLAG_C_FIXED_NEWSTYLE == 0 {
        return Err(Error::einval("client does not speak fixed newstyle negotiation"));
    }
    let mut haggle = Haggle { no_zeroes: client_flags & FLAG_C_NO_ZEROES != 0, ..Default::default() };

    for _ in 0..MAX_OPTIONS_PER_HANDSHAKE {
        let Some((option, data)) = read_option(stream).await? else { return Ok(None) };
        let mut out = Vec::new();
        let step = handle_option(server, &mut haggle, option, &data, &mut out);
        if !out.is_empty() {
            stream.write_all(&out).await?;
            stream.flush().await?;
        }
        match step {
            Step::Continue => {}
            Step::Transmit(session) => return Ok(Some(session)),
            Step::Close => return Ok(None),
        }
    }
    Err(Error::einval(format!("more than {MAX_OPTIONS_PER_HANDSHAKE} options in one handshake")))
}

/// Reads one option. `Ok(None)` on EOF before the header; option data over the limit is refused
/// with `NBD_REP_ERR_TOO_BIG` and the connection closed (skipping gigabytes would be a DoS).
async fn read_option<S>(stream: &mut S) -> Result<Option<(u32, Vec<u8>)>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut header = [0u8; OPTION_HEADER_BYTES];
    if !read_full_or_eof(stream, &mut header).await? {
        return Ok(None);
    }
    let (option, len) = decode_option_header(&header).ok_or_else(|| Error::einval("bad option magic"))?;
    if len > MAX_OPTION_DATA_BYTES {
        let msg = format!("option data of {len} bytes exceeds the limit of {MAX_OPTION_DATA_BYTES}");
        // Best effort: the client may not read it before we close.
        let _ = stream.write_all(&option_reply(option, REP_ERR_TOO_BIG, msg.as_bytes())).await;
        let _ = stream.flush().await;
        return Err(Error::einval(msg));
    }
    let mut data = vec![0u8; len as usize];
    stream.read_exact(&mut data).await?;
    Ok(Some((option, data)))
}

/// Fills `buf`; `false` if the stream ended before the first byte, an error if it ended inside.
pub(crate) async fn read_full_or_eof<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8]) -> Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = r.read(&mut buf[filled..]).await?;
        if n == 0 {
            if filled == 0 {
                return Ok(false);
            }
            return Err(Error::new(errno::EIO, "connection closed inside a message header"));
        }
        filled += n;
    }
    Ok(true)
}

fn handle_option(server: &Server, haggle: &mut Haggle, option: u32, data: &[u8], out: &mut Vec<u8>) -> Step {
    let reply_err = |out: &mut Vec<u8>, kind: u32, msg: &str| {
        out.extend(option_reply(option, kind, truncate_utf8(msg, MAX_MESSAGE_BYTES).as_bytes()))
    };
    match option {
        OPT_EXPORT_NAME => export_name(server, haggle, data, out),
        OPT_ABORT => {
            out.extend(option_reply(option, REP_ACK, &[]));
            Step::Close
        }
        _ if server.is_shutting_down() => {
            reply_err(out, REP_ERR_SHUTDOWN, "server is shutting down");
            Step::Continue
        }
        OPT_LIST => {
            if data.is_empty() {
                for name in server.export_names() {
                    let mut d = (name.len() as u32).to_be_bytes().to_vec();
                    d.extend_from_slice(name.as_bytes());
                    // What follows the name is free text for humans: the description, if any.
                    if let Some(text) = server.export(name).and_then(|(_, dev)| dev.description()) {
                        d.extend_from_slice(truncate_utf8(&text, MAX_STRING_BYTES).as_bytes());
                    }
                    out.extend(option_reply(option, REP_SERVER, &d));
                }
                out.extend(option_reply(option, REP_ACK, &[]));
            } else {
                reply_err(out, REP_ERR_INVALID, "NBD_OPT_LIST takes no data");
            }
            Step::Continue
        }
        OPT_STARTTLS => {
            reply_err(out, REP_ERR_UNSUP, "TLS is not supported by this server");
            Step::Continue
        }
        OPT_INFO | OPT_GO => info_or_go(server, haggle, option, data, out),
        OPT_STRUCTURED_REPLY => {
            if data.is_empty() {
                haggle.structured = true;
                out.extend(option_reply(option, REP_ACK, &[]));
            } else {
                reply_err(out, REP_ERR_INVALID, "NBD_OPT_STRUCTURED_REPLY takes no data");
            }
            Step::Continue
        }
        OPT_LIST_META_CONTEXT | OPT_SET_META_CONTEXT => {
            meta_context(server, haggle, option, data, out);
            Step::Continue
        }
        _ => {
            reply_err(out, REP_ERR_UNSUP, &format!("option {option} is not supported"));
            Step::Continue
        }
    }
}

/// `NBD_OPT_EXPORT_NAME`: no way to report an error, so an unknown export closes the connection.
fn export_name(server: &Server, haggle: &Haggle, data: &[u8], out: &mut Vec<u8>) -> Step {
    let name = match std::str::from_utf8(data) {
        Ok(n) if data.len() <= MAX_STRING_BYTES => n,
        _ => {
            debug!("NBD_OPT_EXPORT_NAME with an invalid name; closing");
            return Step::Close;
        }
    };
    let Some((canonical, device)) = server.export(name) else {
        debug!(export = name, "NBD_OPT_EXPORT_NAME for an unknown export; closing");
        return Step::Close;
    };
    let session = make_session(haggle, canonical, device);
    out.extend_from_slice(&session.device.size().to_be_bytes());
    out.extend_from_slice(&session.transmission_flags.to_be_bytes());
    if !haggle.no_zeroes {
        out.extend_from_slice(&[0u8; EXPORT_NAME_ZEROES]);
    }
    Step::Transmit(session)
}

fn info_or_go(server: &Server, haggle: &Haggle, option: u32, data: &[u8], out: &mut Vec<u8>) -> Step {
    let req = match decode_go(data) {
        Ok(r) => r,
        Err(why) => {
            out.extend(option_reply(option, REP_ERR_INVALID, why.as_bytes()));
            return Step::Continue;
        }
    };
    let Some((canonical, device)) = server.export(&req.name) else {
        let msg = format!("export '{}' not found", truncate_utf8(&req.name, 256));
        out.extend(option_reply(option, REP_ERR_UNKNOWN, msg.as_bytes()));
        return Step::Continue;
    };
    let session = make_session(haggle, canonical, device);

    let mut info = INFO_EXPORT.to_be_bytes().to_vec();
    info.extend_from_slice(&session.device.size().to_be_bytes());
    info.extend_from_slice(&session.transmission_flags.to_be_bytes());
    out.extend(option_reply(option, REP_INFO, &info));
    for &kind in &req.info_requests {
        let mut info = kind.to_be_bytes().to_vec();
        match kind {
            INFO_NAME => info.extend_from_slice(session.export_name.as_bytes()),
            INFO_DESCRIPTION => match session.device.description() {
                Some(text) => info.extend_from_slice(truncate_utf8(&text, MAX_STRING_BYTES).as_bytes()),
                None => continue,
            },
            INFO_BLOCK_SIZE => {
                let (min, preferred, max) = server.block_sizes(session.device.as_ref());
                for v in [min, preferred, max] {
                    info.extend_from_slice(&v.to_be_bytes());
                }
            }
            // INFO_EXPORT was sent already; unknown requests are ignored, as the spec says.
            _ => continue,
        }
        out.extend(option_reply(option, REP_INFO, &info));
    }
    out.extend(option_reply(option, REP_ACK, &[]));
    if option == OPT_GO {
        Step::Transmit(session)
    } else {
        Step::Continue
    }
}

fn make_session(haggle: &Haggle, canonical: &str, device: &Arc<dyn BlockDevice>) -> Session {
    let base_allocation = haggle.structured && haggle.meta_export.as_deref() == Some(canonical);
    Session {
        export_name: canonical.to_owned(),
        device: device.clone(),
        structured: haggle.structured,
        base_allocation,
        transmission_flags: transmission_flags(device.as_ref(), haggle.structured),
    }
}

/// The transmission flags of an export. Write-side features are not advertised on read-only
/// exports (a client sending them anyway gets EPERM).
pub(crate) fn transmission_flags(device: &dyn BlockDevice, structured: bool) -> u16 {
    let mut flags = FLAG_HAS_FLAGS | FLAG_SEND_FLUSH | FLAG_SEND_CACHE;
    if device.read_only() {
        flags |= FLAG_READ_ONLY;
    } else {
        flags |= FLAG_SEND_FUA | FLAG_SEND_TRIM | FLAG_SEND_WRITE_ZEROES | FLAG_SEND_FAST_ZERO;
    }
    if structured {
        // Every read reply is a single content chunk, so "don't fragment" always holds.
        flags |= FLAG_SEND_DF;
    }
    if device.multi_conn_safe() {
        flags |= FLAG_CAN_MULTI_CONN;
    }
    flags
}

/// `NBD_OPT_LIST_META_CONTEXT` / `NBD_OPT_SET_META_CONTEXT` for the one context we know,
/// `base:allocation`. A SET replaces the previous selection even when it fails.
fn meta_context(server: &Server, haggle: &mut Haggle, option: u32, data: &[u8], out: &mut Vec<u8>) {
    let set = option == OPT_SET_META_CONTEXT;
    if set {
        haggle.meta_export = None;
    }
    if !haggle.structured {
        let msg = "structured replies must be negotiated before metadata contexts";
        out.extend(option_reply(option, REP_ERR_INVALID, msg.as_bytes()));
        return;
    }
    let req = match decode_meta_context(data) {
        Ok(r) => r,
        Err(why) => {
            out.extend(option_reply(option, REP_ERR_INVALID, why.as_bytes()));
            return;
        }
    };
    let Some((canonical, _)) = server.export(&req.export) else {
        let msg = format!("export '{}' not found", truncate_utf8(&req.export, 256));
        out.extend(option_reply(option, REP_ERR_UNKNOWN, msg.as_bytes()));
        return;
    };
    let matches = |q: &str| q == META_BASE_ALLOCATION || (!set && q == "base:");
    let selected = if set {
        req.queries.iter().any(|q| matches(q))
    } else {
        req.queries.is_empty() || req.queries.iter().any(|q| matches(q))
    };
    if selected {
        let id = if set { META_ID_BASE_ALLOCATION } else { 0 };
        let mut d = id.to_be_bytes().to_vec();
        d.extend_from_slice(META_BASE_ALLOCATION.as_bytes());
        out.extend(option_reply(option, REP_META_CONTEXT, &d));
        if set {
            haggle.meta_export = Some(canonical.to_owned());
        }
    }
    out.extend(option_reply(option, REP_ACK, &[]));
}
