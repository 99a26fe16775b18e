//! Ceph keyring files.
//!
//! ```text
//! [client.glance]
//!     key = AQC+3IVc37ZBEhAAS/F/FgSoGn5xYsclBs8bQg==
//!     caps mon = "allow r"
//!     caps osd = "allow class-read object_prefix rbd_children, allow rwx pool=images"
//! ```
//! (Ceph indents the fields with one tab.)
//!
//! Parsing accepts what Ceph's reader accepts (comments with `#` and `;`, any indentation, values
//! double-quoted with `\` escapes, single-quoted or bare, `caps_mon` for `caps mon`, an ignored
//! `auid`) and is a little more forgiving about spaces around section names. Output is
//! byte-identical to `ceph-authtool -l` / `ceph auth get`, except that a `\` inside caps is written
//! as `\\` (Ceph writes it bare and then drops it when reading back).

use std::collections::BTreeMap;
use std::path::Path;

use cairn_types::{Error, Result};

use crate::entity::EntityName;
use crate::key::CryptoKey;

/// Largest keyring file read; real ones are a few hundred bytes per entity.
pub const MAX_KEYRING_BYTES: u64 = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyringEntry {
    pub key: CryptoKey,
    /// Service (`mon`, `osd`, `mgr`) → cap text, e.g. `"osd" → "allow rwx pool=images"`.
    pub caps: BTreeMap<String, String>,
}

impl KeyringEntry {
    pub fn new(key: CryptoKey) -> Self {
        KeyringEntry { key, caps: BTreeMap::new() }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keyring {
    pub entries: BTreeMap<EntityName, KeyringEntry>,
}

impl Keyring {
    pub fn get(&self, name: &EntityName) -> Option<&KeyringEntry> {
        self.entries.get(name)
    }

    /// Parses keyring text. A repeated section or field overrides the earlier one, as in Ceph.
    pub fn parse(text: &str) -> Result<Self> {
        struct Section {
            name: EntityName,
            lineno: usize,
            key: Option<CryptoKey>,
            caps: BTreeMap<String, String>,
        }
        let mut parsed: Vec<Section> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let lineno = i + 1;
            let err = |msg: String| Error::einval(format!("keyring line {lineno}: {msg}"));
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(rest) = line.strip_prefix('[') {
                let (name, after) = rest.split_once(']').ok_or_else(|| err("missing ']'".into()))?;
                if !is_comment_or_empty(after) {
                    return Err(err(format!("unexpected text after section header: '{}'", after.trim())));
                }
                let name: EntityName = name.trim().parse().map_err(|e: Error| err(e.message))?;
                parsed.push(Section { name, lineno, key: None, caps: BTreeMap::new() });
                continue;
            }
            let (field, value) = line.split_once('=').ok_or_else(|| err("expected 'name = value'".into()))?;
            let field: Vec<&str> =
                field.split(|c: char| c.is_whitespace() || c == '_').filter(|w| !w.is_empty()).collect();
            let value = parse_value(value).map_err(err)?;
            let Some(Section { key, caps, .. }) = parsed.last_mut() else {
                return Err(err(format!("'{}' outside of a [section]", field.join(" "))));
            };
            match field.as_slice() {
                ["key"] => *key = Some(CryptoKey::from_base64(&value).map_err(|e| err(e.message))?),
                ["caps", service] => {
                    caps.insert(service.to_string(), value);
                }
                ["auid"] => {} // Pre-Nautilus keyrings carry it; Ceph ignores it too.
                _ => return Err(err(format!("unknown keyring field '{}'", field.join(" ")))),
            }
        }
        let mut keyring = Keyring::default();
        for Section { name, lineno, key, caps } in parsed {
            let key =
                key.ok_or_else(|| Error::einval(format!("keyring line {lineno}: [{name}] has no key")))?;
            keyring.entries.insert(name, KeyringEntry { key, caps });
        }
        Ok(keyring)
    }

    /// The text Ceph writes, secrets included: handle it like the file it goes into.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for (name, e) in &self.entries {
            out += &format!("[{name}]\n\tkey = {}\n", e.key.to_base64());
            for (service, cap) in &e.caps {
                out +=
                    &format!("\tcaps {service} = \"{}\"\n", cap.replace('\\', "\\\\").replace('"', "\\\""));
            }
        }
        out
    }

    pub fn load(path: &Path) -> Result<Self> {
        let err = |e: std::io::Error| {
            let message = format!("{}: {e}", path.display());
            Error::new(Error::from(e).errno, message)
        };
        let size = std::fs::metadata(path).map_err(err)?.len();
        if size > MAX_KEYRING_BYTES {
            return Err(Error::einval(format!(
                "{}: keyring larger than {MAX_KEYRING_BYTES} bytes",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(err)?;
        Self::parse(&text).map_err(|e| Error::new(e.errno, format!("{}: {}", path.display(), e.message)))
    }

    /// Writes the keyring readable by its owner only (mode 0600, as ceph-authtool does).
    pub fn save(&self, path: &Path) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f =
            std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
        f.write_all(self.to_text().as_bytes())?;
        Ok(f.sync_all()?)
    }
}

fn is_comment_or_empty(s: &str) -> bool {
    let s = s.trim();
    s.is_empty() || s.starts_with('#') || s.starts_with(';')
}

/// A value: `"double quoted"` (with `\x` escapes), `'single quoted'`, or bare up to a comment.
fn parse_value(v: &str) -> std::result::Result<String, String> {
    let v = v.trim_start();
    let mut chars = v.char_indices();
    let (out, rest) = match chars.next() {
        Some((_, '"')) => {
            let mut out = String::new();
            loop {
                match chars.next() {
                    None => return Err("unterminated '\"'".into()),
                    Some((i, '"')) => break (out, &v[i + 1..]),
                    Some((_, '\\')) => out.push(chars.next().ok_or("unterminated '\"'")?.1),
                    Some((_, c)) => out.push(c),
                }
            }
        }
        Some((_, '\'')) => {
            let end = v[1..].find('\'').ok_or("unterminated \"'\"")?;
            (v[1..1 + end].to_string(), &v[end + 2..])
        }
        _ => {
            let end = v.find(['#', ';']).unwrap_or(v.len());
            (v[..end].trim_end().to_string(), "")
        }
    };
    if !is_comment_or_empty(rest) {
        return Err(format!("unexpected text after quoted value: '{}'", rest.trim()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_types::errno::EINVAL;
    use proptest::prelude::*;

    // Seed 004, `ceph auth get client.glance`, verbatim.
    const GLANCE: &str = "[client.glance]\n\tkey = AQC+3IVc37ZBEhAAS/F/FgSoGn5xYsclBs8bQg==\n\tcaps mon = \"allow r\"\n\tcaps osd = \"allow rwx pool=images\"\n";

    #[test]
    fn parses_and_reprints_ceph_output_byte_for_byte() {
        let k = Keyring::parse(GLANCE).unwrap();
        let e = k.get(&"client.glance".parse().unwrap()).unwrap();
        assert_eq!(e.key.to_base64(), "AQC+3IVc37ZBEhAAS/F/FgSoGn5xYsclBs8bQg==");
        assert_eq!(e.caps["mon"], "allow r");
        assert_eq!(e.caps["osd"], "allow rwx pool=images");
        assert_eq!(k.to_text(), GLANCE);
    }

    #[test]
    fn tolerates_what_ceph_tolerates() {
        let text = "# made by hand\n; another comment\n\n  [ client.a ]   # trailing\n key=AQC+3IVc37ZBEhAAS/F/FgSoGn5xYsclBs8bQg==   \n   caps mon = allow r ; why\n\tcaps_osd   =  'allow class-read object_prefix rbd_children, allow rwx pool=images'  # c\n\tcaps mgr = \"allow command \\\"osd pool ls\\\"\"\n auid = 18446744073709551615\n[mon.]\nkey = AQC+3IVc37ZBEhAAS/F/FgSoGn5xYsclBs8bQg==\ncaps mon = \"\"\n";
        let k = Keyring::parse(text).unwrap();
        let a = &k.entries[&"client.a".parse().unwrap()];
        assert_eq!(a.caps["mon"], "allow r");
        assert_eq!(a.caps["osd"], "allow class-read object_prefix rbd_children, allow rwx pool=images");
        assert_eq!(a.caps["mgr"], "allow command \"osd pool ls\"");
        assert_eq!(k.entries[&"mon.".parse().unwrap()].caps["mon"], "");
        // Ceph's order: mon before client; quotes escaped on output.
        assert_eq!(
            k.to_text(),
            "[mon.]\n\tkey = AQC+3IVc37ZBEhAAS/F/FgSoGn5xYsclBs8bQg==\n\tcaps mon = \"\"\n[client.a]\n\tkey = AQC+3IVc37ZBEhAAS/F/FgSoGn5xYsclBs8bQg==\n\tcaps mgr = \"allow command \\\"osd pool ls\\\"\"\n\tcaps mon = \"allow r\"\n\tcaps osd = \"allow class-read object_prefix rbd_children, allow rwx pool=images\"\n"
        );
        assert_eq!(Keyring::parse(&k.to_text()).unwrap(), k);
    }

    #[test]
    fn later_sections_and_fields_override() {
        let k = Keyring::parse(&format!("{GLANCE}caps mon = \"allow rw\"\n[client.glance]\nkey = AQC+3IVc37ZBEhAAS/F/FgSoGn5xYsclBs8bQg==\n")).unwrap();
        assert!(k.entries.values().next().unwrap().caps.is_empty());
        let k = Keyring::parse(&format!("{GLANCE}caps mon = \"allow rw\"\n")).unwrap();
        assert_eq!(k.entries.values().next().unwrap().caps["mon"], "allow rw");
    }

    #[test]
    fn errors_name_the_line() {
        for (text, msg) in [
            ("[foo.a]\n", "keyring line 1: unknown entity type 'foo'"),
            ("\n[client.a\n", "keyring line 2: missing ']'"),
            (
                "key = AQC+3IVc37ZBEhAAS/F/FgSoGn5xYsclBs8bQg==\n",
                "keyring line 1: 'key' outside of a [section]",
            ),
            ("[client.a]\nkey = AQC+!\n", "keyring line 2: bad key: invalid base64"),
            ("[client.a]\nkey = AAAAAAAAAAAAAAAA\n", "keyring line 2: bad key: unsupported key type 0"),
            ("[client.a]\n\n\nfoo = bar\n", "keyring line 4: unknown keyring field 'foo'"),
            ("[client.a]\ncaps mon = \"allow r\n", "keyring line 2: unterminated"),
            (
                "[client.a]\ncaps mon = \"allow r\" extra\n",
                "keyring line 2: unexpected text after quoted value",
            ),
            ("[client.a]\njust words\n", "keyring line 2: expected 'name = value'"),
            ("[client.a] x\n", "keyring line 1: unexpected text after section header"),
            ("# c\n[client.a]\ncaps mon = allow r\n", "keyring line 2: [client.a] has no key"),
        ] {
            let e = Keyring::parse(text).unwrap_err();
            assert_eq!(e.errno, EINVAL);
            assert!(e.message.starts_with(msg), "{text:?}: {}", e.message);
        }
    }

    #[test]
    fn save_and_load_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("cairn-auth-keyring-{}", std::process::id()));
        let k = Keyring::parse(GLANCE).unwrap();
        k.save(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(Keyring::load(&path).unwrap(), k);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(Keyring::load(&path).unwrap_err().errno, cairn_types::errno::ENOENT);
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "(\\[|\\]|=|\"|'|#|;|\\\\|\n|\t| |key|caps|mon|client\\.a|AQ|[a-z]){0,60}") {
            let _ = Keyring::parse(&s);
        }

        #[test]
        fn caps_roundtrip(cap in "[ -~]{0,40}") {
            let mut k = Keyring::parse(GLANCE).unwrap();
            k.entries.values_mut().next().unwrap().caps.insert("osd".into(), cap.clone());
            let back = Keyring::parse(&k.to_text()).unwrap();
            prop_assert_eq!(&back.entries.values().next().unwrap().caps["osd"], &cap);
        }
    }
}
