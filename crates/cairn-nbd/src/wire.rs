//! NBD wire format: constants from `doc/proto.md` of NetworkBlockDevice/nbd and pure encoders and
//! decoders for every message the server reads or writes. Nothing here does I/O, so everything here
//! can be fed hostile bytes in tests; decoders return `None` (or an error reply type) instead of
//! panicking.

use bytes::{BufMut, Bytes, BytesMut};

// --- Handshake -----------------------------------------------------------------------------------

/// `NBDMAGIC`, first 8 bytes the server sends.
pub const NBD_MAGIC: u64 = 0x4e42_444d_4147_4943;
/// `IHAVEOPT`: the newstyle magic, also the prefix of every option the client sends.
pub const IHAVEOPT: u64 = 0x4948_4156_454F_5054;
/// Magic of every option reply.
pub const OPTION_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;

/// Handshake flags (server → client, 16 bits).
pub const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
pub const FLAG_NO_ZEROES: u16 = 1 << 1;
/// Client flags (client → server, 32 bits).
pub const FLAG_C_FIXED_NEWSTYLE: u32 = 1 << 0;
pub const FLAG_C_NO_ZEROES: u32 = 1 << 1;

/// Option types.
pub const OPT_EXPORT_NAME: u32 = 1;
pub const OPT_ABORT: u32 = 2;
pub const OPT_LIST: u32 = 3;
pub const OPT_STARTTLS: u32 = 5;
pub const OPT_INFO: u32 = 6;
pub const OPT_GO: u32 = 7;
pub const OPT_STRUCTURED_REPLY: u32 = 8;
pub const OPT_LIST_META_CONTEXT: u32 = 9;
pub const OPT_SET_META_CONTEXT: u32 = 10;

/// Option reply types.
pub const REP_ACK: u32 = 1;
pub const REP_SERVER: u32 = 2;
pub const REP_INFO: u32 = 3;
pub const REP_META_CONTEXT: u32 = 4;
pub const REP_ERR_UNSUP: u32 = (1 << 31) + 1;
pub const REP_ERR_POLICY: u32 = (1 << 31) + 2;
pub const REP_ERR_INVALID: u32 = (1 << 31) + 3;
pub const REP_ERR_PLATFORM: u32 = (1 << 31) + 4;
pub const REP_ERR_TLS_REQD: u32 = (1 << 31) + 5;
pub const REP_ERR_UNKNOWN: u32 = (1 << 31) + 6;
pub const REP_ERR_SHUTDOWN: u32 = (1 << 31) + 7;
pub const REP_ERR_BLOCK_SIZE_REQD: u32 = (1 << 31) + 8;
pub const REP_ERR_TOO_BIG: u32 = (1 << 31) + 9;

/// `NBD_REP_INFO` information types.
pub const INFO_EXPORT: u16 = 0;
pub const INFO_NAME: u16 = 1;
pub const INFO_DESCRIPTION: u16 = 2;
pub const INFO_BLOCK_SIZE: u16 = 3;

/// Transmission flags (16 bits, sent with the export size).
pub const FLAG_HAS_FLAGS: u16 = 1 << 0;
pub const FLAG_READ_ONLY: u16 = 1 << 1;
pub const FLAG_SEND_FLUSH: u16 = 1 << 2;
pub const FLAG_SEND_FUA: u16 = 1 << 3;
pub const FLAG_ROTATIONAL: u16 = 1 << 4;
pub const FLAG_SEND_TRIM: u16 = 1 << 5;
pub const FLAG_SEND_WRITE_ZEROES: u16 = 1 << 6;
pub const FLAG_SEND_DF: u16 = 1 << 7;
pub const FLAG_CAN_MULTI_CONN: u16 = 1 << 8;
pub const FLAG_SEND_CACHE: u16 = 1 << 10;
pub const FLAG_SEND_FAST_ZERO: u16 = 1 << 11;

/// The only metadata context this server knows.
pub const META_BASE_ALLOCATION: &str = "base:allocation";
/// Context id handed out for `base:allocation` by `NBD_OPT_SET_META_CONTEXT`.
pub const META_ID_BASE_ALLOCATION: u32 = 1;
/// `base:allocation` status flags.
pub const STATE_HOLE: u32 = 1 << 0;
pub const STATE_ZERO: u32 = 1 << 1;

// --- Transmission --------------------------------------------------------------------------------

pub const REQUEST_MAGIC: u32 = 0x2560_9513;
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
pub const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;

/// Command types.
pub const CMD_READ: u16 = 0;
pub const CMD_WRITE: u16 = 1;
pub const CMD_DISC: u16 = 2;
pub const CMD_FLUSH: u16 = 3;
pub const CMD_TRIM: u16 = 4;
pub const CMD_CACHE: u16 = 5;
pub const CMD_WRITE_ZEROES: u16 = 6;
pub const CMD_BLOCK_STATUS: u16 = 7;

/// Command flags.
pub const CMD_FLAG_FUA: u16 = 1 << 0;
pub const CMD_FLAG_NO_HOLE: u16 = 1 << 1;
pub const CMD_FLAG_DF: u16 = 1 << 2;
pub const CMD_FLAG_REQ_ONE: u16 = 1 << 3;
pub const CMD_FLAG_FAST_ZERO: u16 = 1 << 4;

/// Structured reply flags and chunk types.
pub const REPLY_FLAG_DONE: u16 = 1 << 0;
pub const REPLY_TYPE_NONE: u16 = 0;
pub const REPLY_TYPE_OFFSET_DATA: u16 = 1;
pub const REPLY_TYPE_OFFSET_HOLE: u16 = 2;
pub const REPLY_TYPE_BLOCK_STATUS: u16 = 5;
pub const REPLY_TYPE_ERROR: u16 = (1 << 15) + 1;
pub const REPLY_TYPE_ERROR_OFFSET: u16 = (1 << 15) + 2;

/// NBD error values (the only ones allowed on the wire).
pub const NBD_EPERM: u32 = 1;
pub const NBD_EIO: u32 = 5;
pub const NBD_ENOMEM: u32 = 12;
pub const NBD_EINVAL: u32 = 22;
pub const NBD_ENOSPC: u32 = 28;
pub const NBD_EOVERFLOW: u32 = 75;
pub const NBD_ENOTSUP: u32 = 95;
pub const NBD_ESHUTDOWN: u32 = 108;

// --- Limits fixed by the protocol ----------------------------------------------------------------

/// Longest string (export name, context name, message) the spec allows.
pub const MAX_STRING_BYTES: usize = 4096;
/// Longest error message put into a reply; shorter than the spec's 4096 because it is for humans.
pub const MAX_MESSAGE_BYTES: usize = 1024;
/// Size of a request header on the wire.
pub const REQUEST_HEADER_BYTES: usize = 28;
/// Size of an option header on the wire (magic, option, length).
pub const OPTION_HEADER_BYTES: usize = 16;
/// Reserved zero bytes after `NBD_OPT_EXPORT_NAME`'s reply unless `NO_ZEROES` was negotiated.
pub const EXPORT_NAME_ZEROES: usize = 124;

/// A request header as sent by the client; `length` is the payload length only for `CMD_WRITE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader {
    pub flags: u16,
    pub kind: u16,
    pub cookie: u64,
    pub offset: u64,
    pub length: u32,
}

/// Decodes a request header; `None` when the magic is wrong (a hard disconnect: we cannot find the
/// next frame boundary).
pub fn decode_request(buf: &[u8; REQUEST_HEADER_BYTES]) -> Option<RequestHeader> {
    if be_u32(buf, 0)? != REQUEST_MAGIC {
        return None;
    }
    Some(RequestHeader {
        flags: be_u16(buf, 4)?,
        kind: be_u16(buf, 6)?,
        cookie: be_u64(buf, 8)?,
        offset: be_u64(buf, 16)?,
        length: be_u32(buf, 24)?,
    })
}

/// Encodes a request header (used by tests and clients).
pub fn encode_request(h: &RequestHeader) -> [u8; REQUEST_HEADER_BYTES] {
    let mut out = [0u8; REQUEST_HEADER_BYTES];
    out[0..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
    out[4..6].copy_from_slice(&h.flags.to_be_bytes());
    out[6..8].copy_from_slice(&h.kind.to_be_bytes());
    out[8..16].copy_from_slice(&h.cookie.to_be_bytes());
    out[16..24].copy_from_slice(&h.offset.to_be_bytes());
    out[24..28].copy_from_slice(&h.length.to_be_bytes());
    out
}

/// An option header: `None` when the magic is not `IHAVEOPT`.
pub fn decode_option_header(buf: &[u8; OPTION_HEADER_BYTES]) -> Option<(u32, u32)> {
    if be_u64(buf, 0)? != IHAVEOPT {
        return None;
    }
    Some((be_u32(buf, 8)?, be_u32(buf, 12)?))
}

/// The data of `NBD_OPT_INFO` / `NBD_OPT_GO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoRequest {
    pub name: String,
    pub info_requests: Vec<u16>,
}

/// Parses `NBD_OPT_INFO` / `NBD_OPT_GO` data; `Err` holds the human-readable reason for an
/// `NBD_REP_ERR_INVALID` reply.
pub fn decode_go(data: &[u8]) -> Result<GoRequest, &'static str> {
    let mut r = Reader::new(data);
    let name_len = r.u32().ok_or("option data too short for the name length")? as usize;
    if name_len > data.len().saturating_sub(6) {
        return Err("export name length exceeds the option data");
    }
    let name = r.string(name_len)?;
    let count = r.u16().ok_or("option data too short for the information request count")? as usize;
    if r.remaining() != count * 2 {
        return Err("information request list does not match the option length");
    }
    let mut info_requests = Vec::with_capacity(count);
    for _ in 0..count {
        info_requests.push(r.u16().ok_or("truncated information request")?);
    }
    Ok(GoRequest { name, info_requests })
}

/// The data of `NBD_OPT_LIST_META_CONTEXT` / `NBD_OPT_SET_META_CONTEXT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaContextRequest {
    pub export: String,
    pub queries: Vec<String>,
}

/// Parses meta-context option data; `Err` is the reason for `NBD_REP_ERR_INVALID`.
pub fn decode_meta_context(data: &[u8]) -> Result<MetaContextRequest, &'static str> {
    let mut r = Reader::new(data);
    let name_len = r.u32().ok_or("option data too short for the export name length")? as usize;
    let export = r.string(name_len)?;
    let count = r.u32().ok_or("option data too short for the query count")? as usize;
    // Each query takes at least its 4-byte length: a count larger than that is a lie.
    if count > r.remaining() / 4 {
        return Err("query count exceeds the option data");
    }
    let mut queries = Vec::with_capacity(count);
    for _ in 0..count {
        let len = r.u32().ok_or("truncated query length")? as usize;
        let query = r.string(len)?;
        if !query.contains(':') {
            return Err("metadata context query lacks a namespace");
        }
        queries.push(query);
    }
    if r.remaining() != 0 {
        return Err("trailing bytes after the last query");
    }
    Ok(MetaContextRequest { export, queries })
}

/// One option reply frame (header and data).
pub fn option_reply(option: u32, reply_type: u32, data: &[u8]) -> Vec<u8> {
    debug_assert!(data.len() <= u32::MAX as usize);
    let mut out = Vec::with_capacity(20 + data.len());
    out.extend_from_slice(&OPTION_REPLY_MAGIC.to_be_bytes());
    out.extend_from_slice(&option.to_be_bytes());
    out.extend_from_slice(&reply_type.to_be_bytes());
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    out
}

/// The header of a simple reply (the payload of a successful read follows it).
pub fn simple_reply(error: u32, cookie: u64) -> Bytes {
    let mut out = BytesMut::with_capacity(16);
    out.put_u32(SIMPLE_REPLY_MAGIC);
    out.put_u32(error);
    out.put_u64(cookie);
    out.freeze()
}

/// The header of a structured reply chunk whose payload is `payload_len` bytes.
pub fn chunk_header(flags: u16, kind: u16, cookie: u64, payload_len: u32) -> BytesMut {
    let mut out = BytesMut::with_capacity(20);
    out.put_u32(STRUCTURED_REPLY_MAGIC);
    out.put_u16(flags);
    out.put_u16(kind);
    out.put_u64(cookie);
    out.put_u32(payload_len);
    out
}

/// A final `NBD_REPLY_TYPE_ERROR` chunk carrying `message` (cut to [`MAX_MESSAGE_BYTES`]).
pub fn error_chunk(cookie: u64, error: u32, message: &str) -> Bytes {
    debug_assert!(error != 0);
    let msg = truncate_utf8(message, MAX_MESSAGE_BYTES);
    let mut out = chunk_header(REPLY_FLAG_DONE, REPLY_TYPE_ERROR, cookie, 6 + msg.len() as u32);
    out.put_u32(error);
    out.put_u16(msg.len() as u16);
    out.put_slice(msg.as_bytes());
    out.freeze()
}

/// A final `NBD_REPLY_TYPE_NONE` chunk.
pub fn none_chunk(cookie: u64) -> Bytes {
    chunk_header(REPLY_FLAG_DONE, REPLY_TYPE_NONE, cookie, 0).freeze()
}

/// Longest prefix of `s` that is at most `max` bytes and ends on a character boundary.
pub fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn be_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn be_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// A bounds-checked cursor over option data.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }
    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn string(&mut self, len: usize) -> Result<String, &'static str> {
        if len > MAX_STRING_BYTES {
            return Err("string longer than 4096 bytes");
        }
        let raw = self.take(len).ok_or("string length exceeds the option data")?;
        let s = std::str::from_utf8(raw).map_err(|_| "string is not UTF-8")?;
        if s.contains('\0') {
            return Err("string contains NUL");
        }
        Ok(s.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn go_data(name: &str, infos: &[u16]) -> Vec<u8> {
        let mut d = (name.len() as u32).to_be_bytes().to_vec();
        d.extend_from_slice(name.as_bytes());
        d.extend_from_slice(&(infos.len() as u16).to_be_bytes());
        for i in infos {
            d.extend_from_slice(&i.to_be_bytes());
        }
        d
    }

    #[test]
    fn go_round_trip_and_rejects() {
        let d = go_data("vol1", &[INFO_BLOCK_SIZE, INFO_NAME]);
        let g = decode_go(&d).unwrap();
        assert_eq!(g.name, "vol1");
        assert_eq!(g.info_requests, vec![INFO_BLOCK_SIZE, INFO_NAME]);
        // Trailing byte, short list, name too long, NUL in name.
        let mut extra = d.clone();
        extra.push(0);
        assert!(decode_go(&extra).is_err());
        assert!(decode_go(&d[..d.len() - 1]).is_err());
        assert!(decode_go(&[0, 0, 0, 9, b'a', 0, 0]).is_err());
        assert!(decode_go(&go_data("a\0b", &[])).is_err());
        assert_eq!(decode_go(&go_data("", &[])).unwrap().name, "");
    }

    #[test]
    fn meta_context_parses_queries() {
        let mut d = 3u32.to_be_bytes().to_vec();
        d.extend_from_slice(b"img");
        d.extend_from_slice(&2u32.to_be_bytes());
        for q in ["base:allocation", "qemu:dirty-bitmap:x"] {
            d.extend_from_slice(&(q.len() as u32).to_be_bytes());
            d.extend_from_slice(q.as_bytes());
        }
        let m = decode_meta_context(&d).unwrap();
        assert_eq!(m.export, "img");
        assert_eq!(m.queries, vec!["base:allocation", "qemu:dirty-bitmap:x"]);
        assert!(decode_meta_context(&d[..d.len() - 2]).is_err());
        // A huge query count with no data behind it is rejected without allocating.
        let mut lie = 0u32.to_be_bytes().to_vec();
        lie.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode_meta_context(&lie).is_err());
    }

    #[test]
    fn request_round_trip_and_bad_magic() {
        let h = RequestHeader { flags: 3, kind: CMD_WRITE, cookie: 7, offset: 1 << 40, length: 512 };
        let mut b = encode_request(&h);
        assert_eq!(decode_request(&b), Some(h));
        b[0] ^= 1;
        assert_eq!(decode_request(&b), None);
    }

    #[test]
    fn error_chunk_is_well_formed_and_bounded() {
        let msg = "é".repeat(2000);
        let c = error_chunk(9, NBD_EIO, &msg);
        let len = u32::from_be_bytes(c[16..20].try_into().unwrap()) as usize;
        assert_eq!(c.len(), 20 + len);
        let mlen = u16::from_be_bytes(c[24..26].try_into().unwrap()) as usize;
        assert_eq!(len, 6 + mlen);
        assert!(mlen <= MAX_MESSAGE_BYTES);
        assert!(std::str::from_utf8(&c[26..]).is_ok());
    }

    proptest! {
        #[test]
        fn decoders_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode_go(&data);
            let _ = decode_meta_context(&data);
            if data.len() >= REQUEST_HEADER_BYTES {
                let _ = decode_request(data[..REQUEST_HEADER_BYTES].try_into().unwrap());
            }
            if data.len() >= OPTION_HEADER_BYTES {
                let _ = decode_option_header(data[..OPTION_HEADER_BYTES].try_into().unwrap());
            }
        }

        #[test]
        fn decode_go_accepts_what_it_should(name in "[a-z0-9/._-]{0,64}",
                                            infos in proptest::collection::vec(any::<u16>(), 0..8)) {
            let g = decode_go(&go_data(&name, &infos)).unwrap();
            prop_assert_eq!(g.name, name);
            prop_assert_eq!(g.info_requests, infos);
        }
    }
}
