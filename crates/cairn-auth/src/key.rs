//! Long-term secrets and Ceph's `AQ…` key encoding.
//!
//! A Ceph `CryptoKey` encodes as `le16 type (1 = AES) | le32 created.secs | le32 created.nsecs |
//! le16 length (16) | 16 secret bytes`, base64 with the standard padded alphabet: 28 bytes, 40
//! characters, always starting with `AQ` (type 1, little-endian).

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use cairn_types::{Error, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

pub const SECRET_LEN: usize = 16;
/// Ceph's `CEPH_CRYPTO_AES`.
pub const KEY_TYPE_AES: u16 = 1;
/// Bytes of an encoded key: type, created (secs, nsecs), length, secret.
pub const KEY_BLOB_LEN: usize = 2 + 4 + 4 + 2 + SECRET_LEN;
/// Longest base64 text accepted before decoding (a valid key is 40 characters).
pub const MAX_KEY_TEXT_BYTES: usize = 128;

/// 16 secret bytes. Wiped on drop, compared in constant time, never printed.
#[derive(Clone)]
pub struct Secret([u8; SECRET_LEN]);

impl Secret {
    /// A fresh secret from the operating system's RNG.
    pub fn generate() -> Self {
        Secret(crate::crypto::random())
    }

    pub fn from_bytes(bytes: [u8; SECRET_LEN]) -> Self {
        Secret(bytes)
    }

    /// The raw bytes, for keying a MAC or writing a keyring. Named so that every use stands out.
    pub fn expose(&self) -> &[u8; SECRET_LEN] {
        &self.0
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// Serialized as its 16 raw bytes: for the mon's auth database only, never for wire messages.
impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        <[u8; SECRET_LEN]>::deserialize(d).map(Secret)
    }
}

/// A secret with its creation time, as Ceph stores it in keyrings and the auth database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoKey {
    /// (seconds, nanoseconds) since the Unix epoch.
    pub created: (u32, u32),
    pub secret: Secret,
}

impl CryptoKey {
    /// A new random key created now.
    pub fn generate() -> Self {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        CryptoKey { created: (now.as_secs() as u32, now.subsec_nanos()), secret: Secret::generate() }
    }

    /// The 28-byte binary form.
    pub fn to_bytes(&self) -> Zeroizing<[u8; KEY_BLOB_LEN]> {
        let mut b = Zeroizing::new([0u8; KEY_BLOB_LEN]);
        b[0..2].copy_from_slice(&KEY_TYPE_AES.to_le_bytes());
        b[2..6].copy_from_slice(&self.created.0.to_le_bytes());
        b[6..10].copy_from_slice(&self.created.1.to_le_bytes());
        b[10..12].copy_from_slice(&(SECRET_LEN as u16).to_le_bytes());
        b[12..].copy_from_slice(self.secret.expose());
        b
    }

    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        let le16 = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        let le32 = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        if b.len() < 12 {
            return Err(Error::einval(format!("bad key: {} bytes is too short for a key header", b.len())));
        }
        if le16(0) != KEY_TYPE_AES {
            return Err(Error::einval(format!("bad key: unsupported key type {} (only 1 = AES)", le16(0))));
        }
        if le16(10) as usize != SECRET_LEN {
            return Err(Error::einval(format!(
                "bad key: secret length {} (expected {SECRET_LEN})",
                le16(10)
            )));
        }
        if b.len() != KEY_BLOB_LEN {
            return Err(Error::einval(format!("bad key: {} bytes (expected {KEY_BLOB_LEN})", b.len())));
        }
        let mut secret = [0u8; SECRET_LEN];
        secret.copy_from_slice(&b[12..]);
        Ok(CryptoKey { created: (le32(2), le32(6)), secret: Secret(secret) })
    }

    /// Ceph's keyring text, `AQ…==`.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(*self.to_bytes())
    }

    pub fn from_base64(text: &str) -> Result<Self> {
        let text = text.trim();
        if text.len() > MAX_KEY_TEXT_BYTES {
            return Err(Error::einval(format!("bad key: {} characters is too long", text.len())));
        }
        let bytes = Zeroizing::new(
            STANDARD.decode(text).map_err(|e| Error::einval(format!("bad key: invalid base64: {e}")))?,
        );
        Self::from_bytes(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_types::errno::EINVAL;
    use proptest::prelude::*;

    // From seed 004 (`ceph auth get client.glance`).
    const GLANCE: &str = "AQC+3IVc37ZBEhAAS/F/FgSoGn5xYsclBs8bQg==";

    #[test]
    fn decodes_a_real_ceph_key_and_reencodes_it() {
        let k = CryptoKey::from_base64(GLANCE).unwrap();
        assert_eq!(k.created, (1552276670, 306296543));
        let hex: String = k.secret.expose().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "4bf17f1604a81a7e7162c72506cf1b42");
        assert_eq!(k.to_base64(), GLANCE);
    }

    #[test]
    fn generated_keys_look_like_cephs() {
        let k = CryptoKey::generate();
        let text = k.to_base64();
        assert!(text.starts_with("AQ") && text.ends_with("==") && text.len() == 40, "{text}");
        assert_eq!(CryptoKey::from_base64(&text).unwrap(), k);
        assert_ne!(CryptoKey::generate().secret, k.secret);
    }

    #[test]
    fn secret_never_prints() {
        let k = CryptoKey::from_base64(GLANCE).unwrap();
        let dbg = format!("{k:?} {:?}", k.secret);
        assert!(dbg.contains("<secret>"));
        assert!(!dbg.contains("4bf17f16") && !dbg.contains(&format!("{:?}", k.secret.expose())));
        assert!(!dbg.contains(GLANCE));
    }

    #[test]
    fn rejects_malformed_keys_with_einval() {
        let mut bad_type = *CryptoKey::from_base64(GLANCE).unwrap().to_bytes();
        bad_type[0] = 2;
        let mut bad_len = *CryptoKey::from_base64(GLANCE).unwrap().to_bytes();
        bad_len[10] = 32;
        for (text, msg) in [
            ("AQC+3IVc37ZBEhAAS/F/FgSoGn5xYsclBs8bQg=", "invalid base64"),
            ("not base64!", "invalid base64"),
            ("AAAAAAAAAAAAAAAA", "unsupported key type 0"),
            (&STANDARD.encode(bad_type), "unsupported key type 2"),
            (&STANDARD.encode(bad_len), "secret length 32"),
            (&STANDARD.encode([1u8, 0, 0]), "too short"),
            (&STANDARD.encode([&CryptoKey::generate().to_bytes()[..], &[0]].concat()), "29 bytes"),
            (&"A".repeat(200), "too long"),
        ] {
            let e = CryptoKey::from_base64(text).unwrap_err();
            assert_eq!(e.errno, EINVAL);
            assert!(e.message.contains(msg), "{text}: {}", e.message);
        }
    }

    proptest! {
        #[test]
        fn decode_never_panics(s in ".{0,80}", b in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = CryptoKey::from_base64(&s);
            let _ = CryptoKey::from_bytes(&b);
        }

        #[test]
        fn roundtrips(secs: u32, nsecs: u32, secret: [u8; 16]) {
            let k = CryptoKey { created: (secs, nsecs), secret: Secret::from_bytes(secret) };
            prop_assert_eq!(CryptoKey::from_base64(&k.to_base64()).unwrap(), k);
        }
    }
}
