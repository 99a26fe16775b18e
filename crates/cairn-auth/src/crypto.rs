//! The few primitives everything else is built from: OS randomness, HMAC-SHA256 over
//! length-framed fields, an HMAC-based KDF, and AES-256-GCM sealing with a random nonce.

use aes_gcm::aead::{Aead, AeadInOut, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use hmac::{Hmac, Mac};
use rand::TryRng;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Domain separation for every MAC and derived key of protocol version 1.
pub(crate) const PROTOCOL: &[u8] = b"cairn-auth-v1";
pub(crate) const MAC_LEN: usize = 32;
pub(crate) const KEY_LEN: usize = 32;
pub(crate) const GCM_NONCE_LEN: usize = 12;
pub(crate) const GCM_TAG_LEN: usize = 16;

/// Bytes from the operating system's RNG. A failing OS RNG leaves no safe way to continue.
pub(crate) fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rngs::SysRng.try_fill_bytes(&mut b).expect("operating system random number generator failed");
    b
}

/// `HMAC-SHA256(key, PROTOCOL || label || part…)`, each field prefixed by its le32 length so that
/// no two different field lists produce the same input.
pub(crate) fn mac(key: &[u8], label: &str, parts: &[&[u8]]) -> [u8; MAC_LEN] {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    for p in [PROTOCOL, label.as_bytes()].iter().chain(parts) {
        m.update(&(p.len() as u32).to_le_bytes());
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// Constant-time check of a MAC computed by [`mac`].
pub(crate) fn verify_mac(key: &[u8], label: &str, parts: &[&[u8]], tag: &[u8; MAC_LEN]) -> bool {
    mac(key, label, parts).ct_eq(tag).into()
}

/// A 256-bit key derived from `key` for one purpose (`label`) and one context (`parts`).
pub(crate) fn kdf(key: &[u8], label: &str, parts: &[&[u8]]) -> Zeroizing<[u8; KEY_LEN]> {
    Zeroizing::new(mac(key, &format!("kdf {label}"), parts))
}

/// Length-framed concatenation, used as AEAD associated data.
pub(crate) fn framed(parts: &[&[u8]]) -> Vec<u8> {
    let mut v = Vec::with_capacity(parts.iter().map(|p| p.len() + 4).sum());
    for p in parts {
        v.extend_from_slice(&(p.len() as u32).to_le_bytes());
        v.extend_from_slice(p);
    }
    v
}

/// `nonce(12) || AES-256-GCM(key, nonce, aad, plaintext) || tag(16)` with a random nonce. Every
/// key used here is derived per ticket or per handshake, so random nonces never repeat in practice.
pub(crate) fn seal(key: &[u8; KEY_LEN], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let nonce: [u8; GCM_NONCE_LEN] = random();
    let mut out = nonce.to_vec();
    out.extend(Cipher::new(key).seal(&nonce, aad, plaintext));
    out
}

/// Opens a [`seal`]ed blob; `None` on any mismatch (wrong key, tampered bytes, wrong aad).
pub(crate) fn open(key: &[u8; KEY_LEN], aad: &[u8], blob: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let (nonce, ct) = blob.split_at_checked(GCM_NONCE_LEN)?;
    Cipher::new(key).open(nonce.try_into().ok()?, aad, ct).map(Zeroizing::new)
}

/// AES-256-GCM with an expanded key, for callers that choose their own nonces.
pub(crate) struct Cipher(Aes256Gcm);

impl Cipher {
    pub(crate) fn new(key: &[u8; KEY_LEN]) -> Self {
        Cipher(Aes256Gcm::new(key.into()))
    }

    pub(crate) fn seal(&self, nonce: &[u8; GCM_NONCE_LEN], aad: &[u8], pt: &[u8]) -> Vec<u8> {
        self.0.encrypt(&Nonce::from(*nonce), Payload { msg: pt, aad }).expect("AES-GCM sealing cannot fail")
    }

    pub(crate) fn open(&self, nonce: &[u8; GCM_NONCE_LEN], aad: &[u8], ct: &[u8]) -> Option<Vec<u8>> {
        self.0.decrypt(&Nonce::from(*nonce), Payload { msg: ct, aad }).ok()
    }

    /// Encrypts `data` where it lies and returns the tag (no copy of a large frame).
    pub(crate) fn seal_in_place(
        &self,
        nonce: &[u8; GCM_NONCE_LEN],
        aad: &[u8],
        data: &mut [u8],
    ) -> [u8; GCM_TAG_LEN] {
        let tag = self
            .0
            .encrypt_inout_detached(&Nonce::from(*nonce), aad, data.into())
            .expect("AES-GCM sealing cannot fail below 64 GiB");
        tag.into()
    }

    /// Checks `tag` and decrypts `data` where it lies; `false` (and `data` unusable) on mismatch.
    pub(crate) fn open_in_place(
        &self,
        nonce: &[u8; GCM_NONCE_LEN],
        aad: &[u8],
        data: &mut [u8],
        tag: &[u8; GCM_TAG_LEN],
    ) -> bool {
        self.0.decrypt_inout_detached(&Nonce::from(*nonce), aad, data.into(), &Tag::from(*tag)).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_fields_are_framed() {
        // Moving a byte between fields changes the MAC: the framing is unambiguous.
        assert_ne!(mac(b"k", "l", &[b"ab", b"c"]), mac(b"k", "l", &[b"a", b"bc"]));
        assert_ne!(mac(b"k", "l1", &[b"x"]), mac(b"k", "l2", &[b"x"]));
        let t = mac(b"k", "l", &[b"x"]);
        assert!(verify_mac(b"k", "l", &[b"x"], &t));
        assert!(!verify_mac(b"k2", "l", &[b"x"], &t));
    }

    #[test]
    fn seal_open_roundtrip_and_tamper() {
        let key = [7u8; KEY_LEN];
        let blob = seal(&key, b"aad", b"hello");
        assert_eq!(blob.len(), GCM_NONCE_LEN + 5 + GCM_TAG_LEN);
        assert_eq!(open(&key, b"aad", &blob).unwrap().as_slice(), b"hello");
        assert!(open(&key, b"other", &blob).is_none());
        assert!(open(&[8u8; KEY_LEN], b"aad", &blob).is_none());
        for i in 0..blob.len() {
            let mut b = blob.clone();
            b[i] ^= 1;
            assert!(open(&key, b"aad", &b).is_none(), "flip at {i} accepted");
        }
        assert!(open(&key, b"aad", &blob[..5]).is_none());
    }

    #[test]
    fn in_place_matches_allocating() {
        let c = Cipher::new(&[3u8; KEY_LEN]);
        let nonce = [1u8; GCM_NONCE_LEN];
        let sealed = c.seal(&nonce, b"aad", b"in place");
        let mut data = *b"in place";
        let tag = c.seal_in_place(&nonce, b"aad", &mut data);
        assert_eq!([&data[..], &tag[..]].concat(), sealed);
        assert!(!c.open_in_place(&nonce, b"aaD", &mut data.clone(), &tag));
        assert!(c.open_in_place(&nonce, b"aad", &mut data, &tag));
        assert_eq!(&data, b"in place");
    }
}
