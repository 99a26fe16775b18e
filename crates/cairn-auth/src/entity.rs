//! Entity names: who authenticates (`client.glance`, `osd.3`, `mon.`, `mgr.x`).

use std::fmt;
use std::str::FromStr;

use cairn_types::{Error, Result};
use serde::{Deserialize, Serialize};

/// Longest entity id accepted (Ceph has no limit; ours keeps decoders bounded).
pub const MAX_ENTITY_ID_BYTES: usize = 256;

/// Entity kinds. Declared in Ceph's numeric order (mon=1, osd=4, client=8, mgr=16) so that a
/// `BTreeMap<EntityName, _>` lists keyrings in the order `ceph-authtool -l` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntityType {
    Mon,
    Osd,
    Client,
    Mgr,
}

impl EntityType {
    pub fn as_str(self) -> &'static str {
        match self {
            EntityType::Mon => "mon",
            EntityType::Osd => "osd",
            EntityType::Client => "client",
            EntityType::Mgr => "mgr",
        }
    }
}

/// `<type>.<id>`. The id is validated on construction, so every `EntityName` is printable in a
/// keyring section header. Serialized as its string form (and re-validated when decoded).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EntityName {
    ty: EntityType,
    id: String,
}

impl EntityName {
    pub fn new(ty: EntityType, id: impl Into<String>) -> Result<Self> {
        let id = id.into();
        let name = || format!("{}.{}", ty.as_str(), id);
        if id.len() > MAX_ENTITY_ID_BYTES {
            return Err(Error::einval(format!("entity id longer than {MAX_ENTITY_ID_BYTES} bytes")));
        }
        if id.is_empty() && ty != EntityType::Mon {
            return Err(Error::einval(format!("bad entity name '{}': empty id", name())));
        }
        if ty == EntityType::Osd && (id.parse::<u32>().is_err() || !id.bytes().all(|b| b.is_ascii_digit())) {
            return Err(Error::einval(format!("bad entity name '{}': osd id must be a number", name())));
        }
        if let Some(c) = id.chars().find(|c| !c.is_ascii_graphic() || "[]#;\"'=\\".contains(*c)) {
            return Err(Error::einval(format!("bad entity name '{}': character {c:?} not allowed", name())));
        }
        Ok(EntityName { ty, id })
    }

    pub fn ty(&self) -> EntityType {
        self.ty
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

impl FromStr for EntityName {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let Some((ty, id)) = s.split_once('.') else {
            return Err(Error::einval(format!("bad entity name '{s}': expected <type>.<id>")));
        };
        let ty = match ty {
            "mon" => EntityType::Mon,
            "osd" => EntityType::Osd,
            "client" => EntityType::Client,
            "mgr" => EntityType::Mgr,
            _ => return Err(Error::einval(format!("unknown entity type '{ty}' in '{s}'"))),
        };
        EntityName::new(ty, id)
    }
}

impl TryFrom<String> for EntityName {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<EntityName> for String {
    fn from(n: EntityName) -> String {
        n.to_string()
    }
}

impl fmt::Display for EntityName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.ty.as_str(), self.id)
    }
}

impl fmt::Debug for EntityName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_types::errno::EINVAL;

    #[test]
    fn parses_and_prints_every_type() {
        for s in ["client.glance", "client.rgw.host-1", "osd.12", "mon.", "mon.a", "mgr.x"] {
            assert_eq!(s.parse::<EntityName>().unwrap().to_string(), s);
        }
        let n: EntityName = "client.cinder-backup".parse().unwrap();
        assert_eq!((n.ty(), n.id()), (EntityType::Client, "cinder-backup"));
    }

    #[test]
    fn rejects_bad_names_with_einval() {
        for (s, msg) in [
            ("mds.a", "unknown entity type 'mds'"),
            ("glance", "expected <type>.<id>"),
            ("client.", "empty id"),
            ("osd.x", "osd id must be a number"),
            ("osd.+1", "osd id must be a number"),
            ("client.a b", "not allowed"),
            ("client.a]", "not allowed"),
        ] {
            let e = s.parse::<EntityName>().unwrap_err();
            assert_eq!(e.errno, EINVAL);
            assert!(e.message.contains(msg), "{s}: {}", e.message);
        }
    }

    #[test]
    fn orders_like_ceph() {
        let mut v: Vec<EntityName> =
            ["mgr.a", "client.admin", "osd.2", "mon.", "osd.10"].iter().map(|s| s.parse().unwrap()).collect();
        v.sort();
        let s: Vec<String> = v.iter().map(|n| n.to_string()).collect();
        assert_eq!(s, ["mon.", "osd.10", "osd.2", "client.admin", "mgr.a"]);
    }

    #[test]
    fn serde_revalidates() {
        let bytes = postcard::to_allocvec(&"client.x".parse::<EntityName>().unwrap()).unwrap();
        assert_eq!(postcard::from_bytes::<EntityName>(&bytes).unwrap().to_string(), "client.x");
        let bad = postcard::to_allocvec("foo.x").unwrap();
        assert!(postcard::from_bytes::<EntityName>(&bad).is_err());
    }
}
