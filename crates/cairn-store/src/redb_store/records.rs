//! Value encodings of the redb tables that Cairn defines (user blobs — xattr and omap values, log
//! entries, meta values — are stored as given). Each record starts with a version byte so a
//! later format can be told apart and migrated; decoding never panics on bad bytes.

use crate::ObjectMeta;
use cairn_types::{Error, Result};

/// `ObjectMeta` record: `[1] ‖ postcard(ObjectMeta)`.
const META_RECORD_V1: u8 = 1;
/// Chunk record: `[1] ‖ crc32c(data) u32 LE ‖ data`.
const CHUNK_RECORD_V1: u8 = 1;
/// Bytes before a chunk's data.
pub(crate) const CHUNK_HEADER_BYTES: usize = 5;

pub(crate) fn encode_meta(meta: &ObjectMeta) -> Result<Vec<u8>> {
    let mut out = vec![META_RECORD_V1];
    let body = postcard::to_stdvec(meta).map_err(|e| Error::eio(format!("encoding object metadata: {e}")))?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// `what` names the object for the error message.
pub(crate) fn decode_meta(bytes: &[u8], what: impl FnOnce() -> String) -> Result<ObjectMeta> {
    match bytes.split_first() {
        Some((&META_RECORD_V1, body)) => postcard::from_bytes(body)
            .map_err(|e| Error::eio(format!("{}: corrupt metadata record: {e}", what()))),
        Some((version, _)) => {
            Err(Error::eio(format!("{}: metadata record version {version} is not supported", what())))
        }
        None => Err(Error::eio(format!("{}: empty metadata record", what()))),
    }
}

/// Writes the chunk record of `data` into `out`, which is exactly
/// `CHUNK_HEADER_BYTES + data.len()` long (the value space redb reserved in its page).
pub(crate) fn encode_chunk_into(data: &[u8], out: &mut [u8]) {
    let (header, body) = out.split_at_mut(CHUNK_HEADER_BYTES);
    header[0] = CHUNK_RECORD_V1;
    header[1..].copy_from_slice(&crc32c::crc32c(data).to_le_bytes());
    body.copy_from_slice(data);
}

#[cfg(test)]
pub(crate) fn encode_chunk(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0; CHUNK_HEADER_BYTES + data.len()];
    encode_chunk_into(data, &mut out);
    out
}

/// The chunk's data bytes, without verifying them: its stored length is all some callers need.
pub(crate) fn chunk_data_len(record: &[u8]) -> usize {
    record.len().saturating_sub(CHUNK_HEADER_BYTES)
}

/// The chunk's data after checking version and crc32c; EIO naming the chunk (`what`) otherwise.
pub(crate) fn decode_chunk(record: &[u8], what: impl FnOnce() -> String) -> Result<&[u8]> {
    let problem = match record.split_first() {
        None => "empty chunk record".to_string(),
        Some((&CHUNK_RECORD_V1, rest)) if rest.len() >= 4 => {
            let (crc, data) = rest.split_at(4);
            let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
            let computed = crc32c::crc32c(data);
            if stored == computed {
                return Ok(data);
            }
            format!("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")
        }
        Some((&CHUNK_RECORD_V1, _)) => "chunk record is truncated".to_string(),
        Some((version, _)) => format!("chunk record version {version} is not supported"),
    };
    Err(Error::eio(format!("{}: {problem}", what())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_types::{errno, Version};

    #[test]
    fn meta_round_trips() {
        let meta = ObjectMeta { size: 1 << 40, mtime_ns: 7, version: Version { epoch: 3, seq: 9 } };
        let bytes = encode_meta(&meta).expect("encodes");
        assert_eq!(decode_meta(&bytes, String::new).expect("decodes"), meta);
    }

    #[test]
    fn bad_meta_records_are_eio() {
        for bad in [&[][..], &[9, 1, 2][..], &[META_RECORD_V1][..]] {
            let err = decode_meta(bad, || "obj".into()).expect_err("bad record");
            assert_eq!(err.errno, errno::EIO);
            assert!(err.message.starts_with("obj: "), "{}", err.message);
        }
    }

    #[test]
    fn chunk_round_trips_and_detects_flips() {
        let record = encode_chunk(b"hello chunk");
        assert_eq!(decode_chunk(&record, String::new).expect("valid"), b"hello chunk");
        assert_eq!(chunk_data_len(&record), 11);
        for i in 0..record.len() {
            let mut bad = record.clone();
            bad[i] ^= 0x40;
            let err = decode_chunk(&bad, || "chunk 0".into()).expect_err("flipped byte");
            assert_eq!(err.errno, errno::EIO);
        }
        assert!(decode_chunk(&record[..3], String::new).is_err());
        assert!(decode_chunk(&[], String::new).is_err());
    }
}
