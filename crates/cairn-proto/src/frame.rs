//! Frames: `magic u32 | payload_len u32 | type u16 | version u8 | flags u8 | crc32c u32 | payload`,
//! all big-endian. The payload is a postcard-encoded [`crate::Envelope`]. Decoding treats input
//! as hostile: a wrong magic, an unknown version or flag, a length over
//! [`MAX_FRAME_PAYLOAD_BYTES`] or a checksum mismatch is an error and the connection is closed.
//!
//! On a `secure` connection (docs/wire-format.md) every frame after the handshake has
//! [`FLAG_SEALED`] set, a zero crc32c field, and the payload `AES-GCM(envelope) ‖ tag(16)` with
//! the whole header as associated data; `payload_len` counts the tag.

use bytes::{Buf, BufMut, BytesMut};
use cairn_types::{Error, Result};

pub const MAGIC: u32 = 0xCA1A_0B1E;
pub const HEADER_BYTES: usize = 16;
/// Largest payload: a maximal write (90 MiB) plus headroom for the rest of the message.
pub const MAX_FRAME_PAYLOAD_BYTES: usize = 96 << 20;
pub const FRAME_VERSION: u8 = 1;
/// Flag: the payload is sealed with the connection's `FrameCipher` (secure mode); the crc32c
/// field is zero and the AES-GCM tag protects the frame instead.
pub const FLAG_SEALED: u8 = 0x01;
/// Bytes a sealed payload carries after the ciphertext (the AES-GCM tag).
pub const SEAL_TAG_BYTES: usize = cairn_auth::FrameCipher::OVERHEAD_BYTES;

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
    /// 0, or [`FLAG_SEALED`].
    pub flags: u8,
    pub crc: u32,
}

impl FrameHeader {
    pub fn sealed(&self) -> bool {
        self.flags & FLAG_SEALED != 0
    }
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

/// Writes the header of a sealed frame into the first [`HEADER_BYTES`] of `frame`, whose
/// plaintext payload follows them: the length includes the tag that sealing appends, the
/// flags say sealed, the crc32c field is zero. Seal the payload with this header as associated
/// data afterwards.
pub fn fill_sealed_header(frame_type: FrameType, frame: &mut [u8]) {
    let (header, payload) = frame.split_at_mut(HEADER_BYTES);
    let mut h = &mut header[..];
    h.put_u32(MAGIC);
    h.put_u32((payload.len() + SEAL_TAG_BYTES) as u32);
    h.put_u16(frame_type as u16);
    h.put_u8(FRAME_VERSION);
    h.put_u8(FLAG_SEALED);
    h.put_u32(0);
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
    let flags = buf.get_u8();
    if flags & !FLAG_SEALED != 0 {
        return Err(Error::einval(format!("unknown frame flags {flags:#04x}")));
    }
    let crc = buf.get_u32();
    Ok(FrameHeader { frame_type, payload_len, flags, crc })
}

/// Checks a payload against its header's checksum (a crc frame; a sealed frame is refused).
pub fn verify_payload(header: &FrameHeader, payload: &[u8]) -> Result<()> {
    if header.sealed() {
        return Err(Error::einval("sealed frame on a connection without on-wire encryption"));
    }
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
    fn sealed_header_counts_the_tag_and_skips_the_crc() {
        let mut f = vec![0u8; HEADER_BYTES];
        f.extend_from_slice(b"plain");
        fill_sealed_header(FrameType::Request, &mut f);
        let h = decode_header(&f[..HEADER_BYTES]).unwrap();
        assert_eq!((h.payload_len, h.flags, h.crc, h.sealed()), (5 + SEAL_TAG_BYTES, FLAG_SEALED, 0, true));
        assert!(verify_payload(&h, b"plain").is_err(), "a crc reader refuses a sealed frame");
        f[11] = 0x02;
        assert!(decode_header(&f[..HEADER_BYTES]).is_err(), "unknown flag");
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

    /// What one frame's integrity costs the CPU, crc against secure:
    /// `cargo test --release -p cairn-proto measure_frame_protection -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn measure_frame_protection() {
        use cairn_auth::{ConnKey, FrameCipher, Side};
        // A connection key from a real (test) login: the key's bytes do not matter here.
        let secret = cairn_auth::Secret::generate();
        let (client, hello) = cairn_auth::ClientHandshake::start("client.x".parse().unwrap(), &secret);
        let (_, challenge) = cairn_auth::MonHandshake::start(hello);
        let key: ConnKey = client.prove(&challenge).0.conn_key();
        for (size, n) in [(4096 + 128, 20_000u32), (4 << 20, 100)] {
            let mut frame = vec![0u8; HEADER_BYTES + size];
            frame[HEADER_BYTES..].fill(0x5a);
            let t = std::time::Instant::now();
            for _ in 0..n {
                fill_header(FrameType::Request, &mut frame);
                let h = decode_header(&frame[..HEADER_BYTES]).unwrap();
                verify_payload(&h, &frame[HEADER_BYTES..]).unwrap();
            }
            let crc = t.elapsed() / n;
            let (mut tx, _) = FrameCipher::new(&key, Side::Client).split();
            let (_, mut rx) = FrameCipher::new(&key, Side::Server).split();
            let mut sealed = vec![0u8; HEADER_BYTES + size + SEAL_TAG_BYTES];
            let t = std::time::Instant::now();
            for _ in 0..n {
                fill_sealed_header(FrameType::Request, &mut sealed[..HEADER_BYTES + size]);
                let (header, rest) = sealed.split_at_mut(HEADER_BYTES);
                let tag = tx.seal_in_place(header, &mut rest[..size]).unwrap();
                rest[size..].copy_from_slice(&tag);
                assert_eq!(rx.open_in_place(header, rest).unwrap(), size);
            }
            let secure = t.elapsed() / n;
            let mbps = |d: std::time::Duration| size as f64 / d.as_secs_f64() / 1e6;
            println!(
                "{size} B payload: crc (fill + check) {crc:?} = {:.0} MB/s; secure (seal + open) {secure:?} = {:.0} MB/s",
                mbps(crc),
                mbps(secure)
            );
        }
    }

    proptest! {
        #[test]
        fn garbage_headers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_header(&bytes);
        }
    }
}
