//! Bob Jenkins' 1996 mixing function ("lookup2") as Ceph uses it: `ceph_str_hash_rjenkins` for
//! object names and `crush_hash32_rjenkins1_{2,3}` for CRUSH draws. Endian-independent: input
//! bytes are read little-endian explicitly and all arithmetic wraps in `u32`.

/// Jenkins' golden-ratio initialiser for the string hash.
const GOLDEN_RATIO: u32 = 0x9e37_79b9;
/// CRUSH's seed for its fixed-arity hashes.
const CRUSH_HASH_SEED: u32 = 1_315_423_911;
/// CRUSH's two filler constants.
const CRUSH_X: u32 = 231_232;
const CRUSH_Y: u32 = 1232;

/// One round of Jenkins' reversible 96-bit mix; `c` carries the result.
#[inline]
fn mix(mut a: u32, mut b: u32, mut c: u32) -> (u32, u32, u32) {
    a = a.wrapping_sub(b).wrapping_sub(c) ^ (c >> 13);
    b = b.wrapping_sub(c).wrapping_sub(a) ^ (a << 8);
    c = c.wrapping_sub(a).wrapping_sub(b) ^ (b >> 13);
    a = a.wrapping_sub(b).wrapping_sub(c) ^ (c >> 12);
    b = b.wrapping_sub(c).wrapping_sub(a) ^ (a << 16);
    c = c.wrapping_sub(a).wrapping_sub(b) ^ (b >> 5);
    a = a.wrapping_sub(b).wrapping_sub(c) ^ (c >> 3);
    b = b.wrapping_sub(c).wrapping_sub(a) ^ (a << 10);
    c = c.wrapping_sub(a).wrapping_sub(b) ^ (b >> 15);
    (a, b, c)
}

/// Little-endian word from up to four bytes (missing high bytes are zero).
#[inline]
fn le_word(bytes: &[u8]) -> u32 {
    bytes.iter().rev().fold(0, |w, &byte| (w << 8) | u32::from(byte))
}

/// Ceph's `ceph_str_hash_rjenkins`.
pub fn str_hash(key: &[u8]) -> u32 {
    let (mut a, mut b, mut c) = (GOLDEN_RATIO, GOLDEN_RATIO, 0u32);
    let mut blocks = key.chunks_exact(12);
    for block in &mut blocks {
        a = a.wrapping_add(le_word(&block[0..4]));
        b = b.wrapping_add(le_word(&block[4..8]));
        c = c.wrapping_add(le_word(&block[8..12]));
        (a, b, c) = mix(a, b, c);
    }
    // The tail: up to 11 bytes spread over a, b and the upper three bytes of c; the lowest byte
    // of c holds the total length (truncated to 32 bits, as the C code's `unsigned` does).
    let tail = blocks.remainder();
    a = a.wrapping_add(le_word(&tail[..tail.len().min(4)]));
    if tail.len() > 4 {
        b = b.wrapping_add(le_word(&tail[4..tail.len().min(8)]));
    }
    if tail.len() > 8 {
        c = c.wrapping_add(le_word(&tail[8..]) << 8);
    }
    c = c.wrapping_add(key.len() as u32);
    mix(a, b, c).2
}

/// CRUSH's `crush_hash32_rjenkins1_2`.
pub fn hash32_2(a: u32, b: u32) -> u32 {
    let h = CRUSH_HASH_SEED ^ a ^ b;
    let (a, b, h) = mix(a, b, h);
    let (_, _, h) = mix(CRUSH_X, a, h);
    let (_, _, h) = mix(b, CRUSH_Y, h);
    h
}

/// CRUSH's `crush_hash32_rjenkins1_3`.
pub fn hash32_3(a: u32, b: u32, c: u32) -> u32 {
    let h = CRUSH_HASH_SEED ^ a ^ b ^ c;
    let (a, b, h) = mix(a, b, h);
    let (c, x, h) = mix(c, CRUSH_X, h);
    let (y, _, h) = mix(CRUSH_Y, a, h);
    let (_, _, h) = mix(b, x, h);
    let (_, _, h) = mix(y, c, h);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected values from Ceph 16.2.15's own `crush_hash32_2/3(CRUSH_HASH_RJENKINS1, …)`,
    /// called through `libceph-common.so.2` (Debian bookworm `ceph-common`) with Python ctypes.
    #[test]
    fn crush_hashes_match_libceph_common() {
        let h2 = [
            ((0, 0), 430_787_817),
            ((1, 0), 2_124_561_019),
            ((0, 1), 91_478_055),
            ((7, 3), 14_984),
            ((0xffff_ffff, 1), 4_138_262_117),
            ((12345, 67890), 257_117_510),
            ((0x8000_0000, 42), 1_248_687_385),
            ((1023, 5), 2_771_095_021),
        ];
        for ((a, b), want) in h2 {
            assert_eq!(hash32_2(a, b), want, "hash32_2({a}, {b})");
        }
        let h3 = [
            ((0, 0, 0), 2_050_749_362),
            ((1, 2, 3), 1_935_332_395),
            ((0xdead_beef, 0xffff_fffe, 7), 3_837_552_766),
            ((123_456_789, -2i32 as u32, 0), 906_950_724),
            ((99, 5, 49), 4_236_466_094),
            ((0xffff_ffff, 0xffff_ffff, 0xffff_ffff), 3_112_661_447),
        ];
        for ((a, b, c), want) in h3 {
            assert_eq!(hash32_3(a, b, c), want, "hash32_3({a}, {b}, {c})");
        }
    }
}
