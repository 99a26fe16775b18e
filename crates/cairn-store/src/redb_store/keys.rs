//! Key encodings of the redb tables. Every key starts with its PG (`pool u32 BE`, `seed u32 BE`),
//! so one PG is one contiguous key range; object-scoped keys continue with the encoded object id,
//! so one object (its chunks, xattrs or omap) is a contiguous range too.
//!
//! The object id is encoded *order-preserving*: namespace, then name, each as its bytes with
//! `0x00` escaped to `0x00 0xFF` and terminated by `0x00 0x01`. Byte order of the encoded keys is
//! then exactly `ObjectId`'s `Ord` (namespace first, then name), which `list_objects` promises,
//! and no encoded id is a prefix of another, so a per-object range never spills into a neighbour.
//! (A length prefix would be prefix-free too, but would sort `"b"` before `"aa"`.)

use cairn_types::{Error, ObjectId, PgId, Result, Version};

/// Bytes of the PG prefix of every PG-scoped key.
pub(crate) const PG_PREFIX_BYTES: usize = 8;
/// Bytes of a PG log key: PG, then version epoch and seq (u64 BE each).
pub(crate) const LOG_KEY_BYTES: usize = PG_PREFIX_BYTES + 16;

const ESCAPE: u8 = 0x00;
const ESCAPED_ZERO: u8 = 0xFF;
const TERMINATOR: u8 = 0x01;

pub(crate) fn pg_prefix(pg: PgId) -> [u8; PG_PREFIX_BYTES] {
    let mut out = [0u8; PG_PREFIX_BYTES];
    out[..4].copy_from_slice(&pg.pool.to_be_bytes());
    out[4..].copy_from_slice(&pg.seed.to_be_bytes());
    out
}

/// The PG a PG-scoped key belongs to.
pub(crate) fn pg_of(key: &[u8]) -> Result<PgId> {
    let prefix: [u8; PG_PREFIX_BYTES] = key
        .get(..PG_PREFIX_BYTES)
        .and_then(|p| p.try_into().ok())
        .ok_or_else(|| corrupt("key shorter than its PG prefix", key))?;
    let (pool, seed) = prefix.split_at(4);
    Ok(PgId {
        pool: u32::from_be_bytes([pool[0], pool[1], pool[2], pool[3]]),
        seed: u32::from_be_bytes([seed[0], seed[1], seed[2], seed[3]]),
    })
}

fn push_escaped(out: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        out.push(b);
        if b == ESCAPE {
            out.push(ESCAPED_ZERO);
        }
    }
    out.push(ESCAPE);
    out.push(TERMINATOR);
}

/// Decodes one escaped string at the start of `bytes`; returns it and the bytes consumed.
fn take_escaped(bytes: &[u8]) -> Result<(String, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        match (bytes.get(i), bytes.get(i + 1)) {
            (Some(&ESCAPE), Some(&TERMINATOR)) => break,
            (Some(&ESCAPE), Some(&ESCAPED_ZERO)) => {
                out.push(0);
                i += 2;
            }
            (Some(&ESCAPE), _) | (None, _) => {
                return Err(corrupt("bad escaped string in key", bytes));
            }
            (Some(&b), _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    let s = String::from_utf8(out).map_err(|_| corrupt("key string is not UTF-8", bytes))?;
    Ok((s, i + 2))
}

/// `pg ‖ esc(namespace) ‖ esc(name)`: the key of the object's metadata and the prefix of all
/// its other keys.
pub(crate) fn object_key(pg: PgId, oid: &ObjectId) -> Vec<u8> {
    let mut out = Vec::with_capacity(PG_PREFIX_BYTES + oid.namespace.len() + oid.name.len() + 4 + 8);
    out.extend_from_slice(&pg_prefix(pg));
    push_escaped(&mut out, &oid.namespace);
    push_escaped(&mut out, &oid.name);
    out
}

/// Inverse of [`object_key`]; also returns the bytes consumed (the object prefix length).
pub(crate) fn decode_object_key(key: &[u8]) -> Result<(PgId, ObjectId, usize)> {
    let pg = pg_of(key)?;
    let rest = &key[PG_PREFIX_BYTES..];
    let (namespace, ns_len) = take_escaped(rest)?;
    let (name, name_len) = take_escaped(&rest[ns_len..])?;
    Ok((pg, ObjectId { namespace, name }, PG_PREFIX_BYTES + ns_len + name_len))
}

/// `object_key ‖ index u64 BE`.
pub(crate) fn chunk_key(object_key: &[u8], index: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(object_key.len() + 8);
    out.extend_from_slice(object_key);
    out.extend_from_slice(&index.to_be_bytes());
    out
}

/// The chunk index of a chunk key whose object prefix is `object_key_len` bytes.
pub(crate) fn chunk_index(key: &[u8], object_key_len: usize) -> Result<u64> {
    let tail: [u8; 8] = key
        .get(object_key_len..)
        .and_then(|t| t.try_into().ok())
        .ok_or_else(|| corrupt("bad chunk key", key))?;
    Ok(u64::from_be_bytes(tail))
}

/// `prefix ‖ sub` (xattr and omap keys under an object, PG meta keys under a PG).
pub(crate) fn sub_key(prefix: &[u8], sub: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + sub.len());
    out.extend_from_slice(prefix);
    out.extend_from_slice(sub.as_bytes());
    out
}

/// The string after `prefix_len` bytes of a key built by [`sub_key`].
pub(crate) fn decode_sub_key(key: &[u8], prefix_len: usize) -> Result<String> {
    let tail = key.get(prefix_len..).ok_or_else(|| corrupt("key shorter than its prefix", key))?;
    String::from_utf8(tail.to_vec()).map_err(|_| corrupt("key string is not UTF-8", key))
}

/// `pg ‖ epoch u64 BE ‖ seq u64 BE`: log entries of a PG sort by version.
pub(crate) fn log_key(pg: PgId, version: Version) -> [u8; LOG_KEY_BYTES] {
    let mut out = [0u8; LOG_KEY_BYTES];
    out[..PG_PREFIX_BYTES].copy_from_slice(&pg_prefix(pg));
    out[PG_PREFIX_BYTES..PG_PREFIX_BYTES + 8].copy_from_slice(&version.epoch.to_be_bytes());
    out[PG_PREFIX_BYTES + 8..].copy_from_slice(&version.seq.to_be_bytes());
    out
}

pub(crate) fn decode_log_key(key: &[u8]) -> Result<(PgId, Version)> {
    let pg = pg_of(key)?;
    let rest: [u8; 16] = key
        .get(PG_PREFIX_BYTES..)
        .and_then(|r| r.try_into().ok())
        .ok_or_else(|| corrupt("bad log key", key))?;
    let (epoch, seq) = rest.split_at(8);
    let word = |b: &[u8]| {
        let mut w = [0u8; 8];
        w.copy_from_slice(b);
        u64::from_be_bytes(w)
    };
    Ok((pg, Version { epoch: word(epoch), seq: word(seq) }))
}

/// The smallest key greater than every key starting with `prefix`; `None` if there is none
/// (the prefix is all `0xFF`), i.e. the range is unbounded above.
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last != 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

fn corrupt(what: &str, key: &[u8]) -> Error {
    let shown: Vec<u8> = key.iter().copied().take(64).collect();
    Error::eio(format!("store corruption: {what} (key bytes {shown:02x?})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn oid(ns: &str, name: &str) -> ObjectId {
        ObjectId { namespace: ns.into(), name: name.into() }
    }

    const PG: PgId = PgId { pool: 3, seed: 0x1f };

    #[test]
    fn object_key_round_trips_with_nul_bytes() {
        let id = oid("n\0s", "a\0\0b\u{ff}");
        let key = object_key(PG, &id);
        let (pg, back, len) = decode_object_key(&key).expect("decodes");
        assert_eq!((pg, back, len), (PG, id, key.len()));
    }

    #[test]
    fn object_keys_sort_like_object_ids() {
        let ids = [oid("", "a"), oid("", "a\0"), oid("", "aa"), oid("", "b"), oid("a", ""), oid("b", "")];
        for w in ids.windows(2) {
            assert!(w[0] < w[1]);
            assert!(object_key(PG, &w[0]) < object_key(PG, &w[1]), "{:?} vs {:?}", w[0], w[1]);
        }
    }

    #[test]
    fn pg_prefix_orders_pool_then_seed() {
        let a = pg_prefix(PgId { pool: 1, seed: u32::MAX });
        let b = pg_prefix(PgId { pool: 2, seed: 0 });
        assert!(a < b);
        assert_eq!(pg_of(&b).expect("pg"), PgId { pool: 2, seed: 0 });
    }

    #[test]
    fn chunk_keys_stay_inside_the_object_range() {
        let obj = object_key(PG, &oid("", "x"));
        let end = prefix_end(&obj).expect("bounded");
        for index in [0, 1, u64::MAX] {
            let key = chunk_key(&obj, index);
            assert!(key.as_slice() > obj.as_slice() && key < end);
            assert_eq!(chunk_index(&key, obj.len()).expect("index"), index);
        }
        // The next object by name sorts after every chunk of "x".
        assert!(object_key(PG, &oid("", "x\0")) >= end);
    }

    #[test]
    fn log_keys_round_trip_and_sort_by_version() {
        let v1 = Version { epoch: 1, seq: u64::MAX };
        let v2 = Version { epoch: 2, seq: 0 };
        assert!(log_key(PG, v1) < log_key(PG, v2));
        assert_eq!(decode_log_key(&log_key(PG, v2)).expect("decodes"), (PG, v2));
    }

    #[test]
    fn prefix_end_handles_carries() {
        assert_eq!(prefix_end(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xFF, 0xFF]), None);
        assert_eq!(prefix_end(&[]), None);
    }

    #[test]
    fn truncated_keys_are_eio_not_panics() {
        let key = object_key(PG, &oid("ns", "name"));
        for len in 0..key.len() {
            let err = decode_object_key(&key[..len]).expect_err("truncated key");
            assert_eq!(err.errno, cairn_types::errno::EIO);
        }
        assert!(decode_log_key(&[0; 10]).is_err());
        assert!(chunk_index(&[0; 3], 0).is_err());
    }

    proptest! {
        #[test]
        fn object_key_order_matches_ord(
            a in ("[a\\x00\\x01\\xff]{0,3}", "[a\\x00\\x01\\xff]{0,4}"),
            b in ("[a\\x00\\x01\\xff]{0,3}", "[a\\x00\\x01\\xff]{0,4}"),
        ) {
            let (ia, ib) = (oid(&a.0, &a.1), oid(&b.0, &b.1));
            let (ka, kb) = (object_key(PG, &ia), object_key(PG, &ib));
            prop_assert_eq!(ia.cmp(&ib), ka.cmp(&kb));
            prop_assert_eq!(&decode_object_key(&ka).expect("decodes").1, &ia);
            if ia != ib {
                prop_assert!(!kb.starts_with(&ka));
            }
        }
    }
}
