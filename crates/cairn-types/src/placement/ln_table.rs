//! CRUSH's integer logarithm for straw2 draws: `crush_ln(u) ≈ 2^44 · log2(u + 1)` for
//! `u ∈ [0, 0xffff]`, in the same table-driven fixed-point form as Ceph's `crush_ln` so that a
//! draw never depends on the platform's libm.
//!
//! The three lookup tables are generated here, at compile time, from their defining formulas
//! with exact integer arithmetic (no floating point anywhere):
//! - `RH[k] = ⌈2^48 / (1 + k/128)⌉` and `LH[k] = ⌊2^48 · log2(1 + k/128)⌋` for `k ∈ 0..=128`,
//! - `LL[k] = ⌊2^48 · log2(1 + k/2^15)⌋` for `k ∈ 0..256`.
//!
//! The rounding directions are the ones Ceph's tables use where its entries follow the formula.
//! One Ceph quirk is mirrored on purpose: Ceph's entry for `log2(2)` is short of `2^48`, which
//! makes its `crush_ln(0xffff)` rank between `crush_ln(0xfffd)` and `crush_ln(0xfffe)` instead of
//! on top. `LH_LOG2_OF_2` puts it at that same rank here. With it, `crush_ln` orders all 65536
//! inputs exactly as Ceph's does, ties included (checked offline against the tables in Ceph
//! 16.2.15's `libceph-common`), so straw2 choices among equal weights are bit-identical. Ceph's
//! fine table `__LL_tbl` deviates from its formula in most entries (hand-made data that no
//! formula reproduces), so the *values* differ by up to ≈3.4·10^8 (2^-15 of an octave); see the
//! `placement` module docs for what that means.

/// Fractional bits of the fixed-point numbers used while building the tables.
const FRAC_BITS: u32 = 96;
const LOW_64: u128 = u64::MAX as u128;

/// `⌊a · b / 2^96⌋` up to two units in the last place, for `a, b < 2^97`.
const fn mul_frac(a: u128, b: u128) -> u128 {
    let (ah, al) = (a >> 64, a & LOW_64);
    let (bh, bl) = (b >> 64, b & LOW_64);
    ((ah * bh) << (128 - FRAC_BITS)) + ((ah * bl + al * bh) >> (FRAC_BITS - 64)) + ((al * bl) >> FRAC_BITS)
}

/// `ln(p / q) · 2^96` for `q ≤ p ≤ 2q`, via `ln(y) = 2·atanh((y − 1)/(y + 1))`; the error is a few
/// hundred units of 2^-96, far below what the 48-bit results below can see.
const fn ln_frac(p: u128, q: u128) -> u128 {
    let z = ((p - q) << FRAC_BITS) / (p + q);
    let z2 = mul_frac(z, z);
    let mut term = z;
    let mut sum = 0;
    let mut n = 1;
    while term != 0 {
        sum += term / n;
        term = mul_frac(term, z2);
        n += 2;
    }
    2 * sum
}

/// `⌊2^48 · log2(p / q)⌋` for `q ≤ p ≤ 2q`. Exact at both ends (`p = q` → 0, `p = 2q` → 2^48)
/// because `ln(2q / q)` is computed from the same `z = 1/3` as `ln 2` itself.
const fn log2_floor_48(p: u128, q: u128) -> u64 {
    let ln_y = ln_frac(p, q);
    let ln_2 = ln_frac(2, 1);
    // ⌊ln_y · 2^48 / ln_2⌋ by long division in two steps, so nothing exceeds 128 bits.
    let a = ln_y << 31;
    let high = a / ln_2;
    let rem = a % ln_2;
    ((high << 17) + ((rem << 17) / ln_2)) as u64
}

const fn build_rh() -> [u64; 129] {
    let mut t = [0u64; 129];
    let mut k = 0;
    while k < 129 {
        let d = 128 + k as u64;
        t[k] = (1u64 << 55).div_ceil(d);
        k += 1;
    }
    t
}

const fn build_lh() -> [u64; 129] {
    let mut t = [0u64; 129];
    let mut k = 0;
    while k < 129 {
        t[k] = log2_floor_48(128 + k as u128, 128);
        k += 1;
    }
    t[128] = LH_LOG2_OF_2;
    t
}

/// Stands in for `2^48 · log2(2)` so that `crush_ln(0xffff) = 2^48 − 2^29` ranks between
/// `crush_ln(0xfffd) ≈ 2^48 − 1.16·10^9` and `crush_ln(0xfffe) ≈ 2^48 − 3.9·10^8`, as in Ceph
/// (whose own entry, `2^48 − 2^32`, does the same with its own fine table).
const LH_LOG2_OF_2: u64 = (1 << 48) - (1 << 33);

const fn build_ll() -> [u64; 256] {
    let mut t = [0u64; 256];
    let mut k = 0;
    while k < 256 {
        t[k] = log2_floor_48((1 << 15) + k as u128, 1 << 15);
        k += 1;
    }
    t
}

/// `2^48 / (1 + k/128)`, rounded up.
static RH: [u64; 129] = build_rh();
/// `2^48 · log2(1 + k/128)`, rounded down (but for `k = 128`, see `LH_LOG2_OF_2`).
static LH: [u64; 129] = build_lh();
/// `2^48 · log2(1 + k/2^15)`, rounded down.
static LL: [u64; 256] = build_ll();

/// `2^44 · log2(u + 1)` in fixed point, for `u ≤ 0xffff` (larger inputs are masked to 16 bits).
pub fn crush_ln(u: u32) -> u64 {
    // Normalise x = u + 1 ∈ [1, 2^16] into [2^15, 2^16]; each shift costs one unit of exponent.
    let mut x = (u & 0xffff) + 1;
    let mut exponent: u64 = 15;
    while x & 0x1_8000 == 0 {
        x <<= 1;
        exponent -= 1;
    }
    // Split log2(x / 2^15) into a coarse part from the top 8 bits of x (k = x/256 − 128) and a
    // fine part: x · RH[k] / 2^48 ≈ 2^15 · (1 + f) with f < 2^-7, whose low 8 bits index LL.
    let k = (x >> 8) as usize - 128;
    let scaled = (u128::from(x) * u128::from(RH[k])) >> 48;
    let fine = (scaled as u32 & 0xff) as usize;
    (exponent << 44) + ((LH[k] + LL[fine]) >> 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_ends_are_exact() {
        assert_eq!((RH[0], LH[0], LL[0]), (1 << 48, 0, 0));
        assert_eq!(RH[128], 1 << 47);
        assert_eq!(log2_floor_48(256, 128), 1 << 48);
        assert_eq!(LH[128], LH_LOG2_OF_2);
    }

    /// Reference values computed independently with 80-digit decimal arithmetic (Python's
    /// `decimal`): floor(2^48·log2(1+k/128)) and floor(2^48·log2(1+k/2^15)). `LL[169]` is the entry
    /// whose fractional part is closest to an integer (0.00032), so it checks the precision.
    #[test]
    fn tables_match_high_precision_reference() {
        assert_eq!(LH[1], 0x2dfca16dde1);
        assert_eq!(LH[64], 0x95c01a39fbd6);
        assert_eq!(LH[127], 0xfe8df263f957);
        assert_eq!(LL[1], 0x2e2a60a00);
        assert_eq!(LL[127], 0x16dbc7ad738);
        assert_eq!(LL[169], 0x1e660b4db23);
        assert_eq!(LL[255], 0x2dced24f814);
        assert_eq!(RH[3], 0xfa232cf25214);
        assert_eq!(RH[5], 0xf6603d980f67);
    }

    #[test]
    fn crush_ln_known_points_and_monotonic() {
        assert_eq!(crush_ln(0), 0);
        assert_eq!(crush_ln(1), 1 << 44);
        assert_eq!(crush_ln(3), 2 << 44);
        // Ceph's quirk: the top input ranks between 0xfffd and 0xfffe.
        assert_eq!(crush_ln(0xffff), (1 << 48) - (1 << 29));
        assert!(crush_ln(0xfffd) < crush_ln(0xffff) && crush_ln(0xffff) < crush_ln(0xfffe));
        // Non-decreasing below that; the RH/LL quantisation makes 10007 inputs tie with their
        // predecessor, exactly as in Ceph's implementation.
        let mut ties = 0;
        for u in 1..0xffff {
            let (prev, v) = (crush_ln(u - 1), crush_ln(u));
            assert!(v >= prev, "crush_ln decreases at {u}");
            ties += usize::from(v == prev);
        }
        assert_eq!(ties, 10007);
    }

    /// FNV-1a 64 over the little-endian bytes of `crush_ln(0..=0xffff)`, from an independent
    /// Python implementation whose tables were computed with 80-digit `decimal` arithmetic.
    #[test]
    fn crush_ln_matches_independent_reference() {
        let mut hash = 0xcbf2_9ce4_8422_2325u64;
        for u in 0..=0xffff {
            for byte in crush_ln(u).to_le_bytes() {
                hash = (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3);
            }
        }
        assert_eq!(hash, 0x0a17_8347_bd95_6584);
    }

    #[test]
    fn crush_ln_close_to_real_log() {
        for u in (0..0xffffu32).step_by(97) {
            let exact = (f64::from(u) + 1.0).log2() * (1u64 << 44) as f64;
            let got = crush_ln(u) as f64;
            // Table interpolation error is bounded by ~2^-15 relative to one octave (2^44).
            assert!((got - exact).abs() < (1u64 << 30) as f64, "u={u} got={got} exact={exact}");
        }
    }
}
