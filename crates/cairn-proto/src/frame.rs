//! Frames: `magic u32 | payload_len u32 | type u16 | version u8 | flags u8 | crc32c u32 | payload`,
//! all big-endian. The payload is a postcard-encoded [`crate::Envelope`]. Decoding treats input
//! as hostile: a wrong magic, an unknown version, a length over [`MAX_FRAME_PAYLOAD_BYTES`] or a
//! checksum mismatch is an error and the connection is closed.

use bytes::{Buf, BufMut, BytesMut};
use cairn_types::{Error, Result};

pub const MAGIC: u32 = 0xCA1A_0B1E;
pub const HEADER_BYTES: usize = 16;
/// Largest payload: a maximal write (90 MiB) plus headroom for the rest of the message.
pub const MAX_FRAME_PAYLOAD_BYTES: usize = 96 << 20;
pub const FRAME_VERSION: u8 = 1;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum FrameType {
    Request = 1,
    Response = 2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub frame_type: FrameType,
    pub payload_len: usize,
    pub crc: u32,
}

/// Appends one frame to `out`.
pub fn encode_frame(frame_type: FrameType, payload: &[u8], out: &mut BytesMut) {
    let start = out.len();
    out.resize(start + HEADER_BYTES, 0);
    out.extend_from_slice(payload);
    fill_header(frame_type, &mut out[start..]);
}

/// Writes the header into the first [`HEADER_BYTES`] of `frame`, whose payload follows them.
pub fn fill_header(frame_type: FrameType, frame: &mut [u8]) {
    let (header, payload) = frame.split_at_mut(HEADER_BYTES);
    let mut h = &mut header[..];
    h.put_u32(MAGIC);
    h.put_u32(payload.len() as u32);
    h.put_u16(frame_type as u16);
    h.put_u8(FRAME_VERSION);
    h.put_u8(0);
    h.put_u32(crc32c::crc32c(payload));
}

/// Parses a frame header from exactly [`HEADER_BYTES`] bytes.
pub fn decode_header(mut buf: &[u8]) -> Result<FrameHeader> {
    if buf.len() < HEADER_BYTES {
        return Err(Error::einval("short frame header"));
    }
    let magic = buf.get_u32();
    if magic != MAGIC {
        return Err(Error::einval(format!("bad frame magic {magic:#010x}")));
    }
    let payload_len = buf.get_u32() as usize;
    if payload_len > MAX_FRAME_PAYLOAD_BYTES {
        return Err(Error::einval(format!(
            "frame payload of {payload_len} bytes exceeds the limit of {MAX_FRAME_PAYLOAD_BYTES}"
        )));
    }
    let frame_type = match buf.get_u16() {
        1 => FrameType::Request,
        2 => FrameType::Response,
        other => return Err(Error::einval(format!("unknown frame type {other}"))),
    };
    let version = buf.get_u8();
    if version != FRAME_VERSION {
        return Err(Error::einval(format!("unsupported frame version {version}")));
    }
    let _flags = buf.get_u8();
    let crc = buf.get_u32();
    Ok(FrameHeader { frame_type, payload_len, crc })
}

/// Checks a payload against its header's checksum.
pub fn verify_payload(header: &FrameHeader, payload: &[u8]) -> Result<()> {
    let crc = crc32c::crc32c(payload);
    if crc != header.crc {
        return Err(Error::einval(format!(
            "frame checksum mismatch: header {:#010x}, payload {crc:#010x}",
            header.crc
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let mut out = BytesMut::new();
        encode_frame(FrameType::Response, b"hello", &mut out);
        let h = decode_header(&out[..HEADER_BYTES]).unwrap();
        assert_eq!(h.frame_type, FrameType::Response);
        assert_eq!(h.payload_len, 5);
        verify_payload(&h, &out[HEADER_BYTES..]).unwrap();
        assert!(verify_payload(&h, b"hellO").is_err());
    }

    #[test]
    fn in_place_header_matches_encode_frame() {
        let mut a = BytesMut::new();
        encode_frame(FrameType::Request, b"payload", &mut a);
        let mut b = vec![0u8; HEADER_BYTES];
        b.extend_from_slice(b"payload");
        fill_header(FrameType::Request, &mut b);
        assert_eq!(&a[..], &b[..]);
    }

    #[test]
    fn rejects_oversized_and_bad_magic() {
        let mut out = BytesMut::new();
        encode_frame(FrameType::Request, b"x", &mut out);
        let mut bad = out.clone();
        bad[0] ^= 1;
        assert!(decode_header(&bad).is_err());
        let mut big = out.clone();
        big[4..8].copy_from_slice(&((MAX_FRAME_PAYLOAD_BYTES as u32) + 1).to_be_bytes());
        assert!(decode_header(&big).is_err());
    }

    proptest! {
        #[test]
        fn garbage_headers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_header(&bytes);
        }
    }
}
