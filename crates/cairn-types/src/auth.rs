//! The monitors' auth database (Ceph's `AuthMonitor` state): every entity's key and caps, and the
//! rotating keys each service's tickets are sealed with. It lives next to the [`ClusterMap`] in
//! the mons' Raft state machine but is never sent with the map: it holds secrets. Every change is
//! an [`AuthCommand`] (inside [`crate::MapCommand::Auth`]) applied deterministically by
//! [`AuthDb::apply`]; randomness (new keys) is drawn by the leader before it proposes.
//!
//! Entity names and caps are checked by the mon (with `cairn-auth`'s parsers) before a command is
//! proposed; this module only keeps them.
//!
//! [`ClusterMap`]: crate::ClusterMap

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

pub const AUTH_SECRET_BYTES: usize = 16;

/// Services whose tickets the mons issue, and whose keys they rotate.
pub const TICKET_SERVICES: [&str; 2] = ["mon", "osd"];

/// 16 secret bytes as the auth database stores them. Never printed; wiped on drop.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthSecret(pub [u8; AUTH_SECRET_BYTES]);

impl fmt::Debug for AuthSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl Drop for AuthSecret {
    fn drop(&mut self) {
        for b in self.0.iter_mut() {
            // SAFETY: a valid, aligned `&mut u8`; volatile so the wipe is not optimized away.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

/// An entity's key: the secret and when it was created (Ceph's `CryptoKey`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthKey {
    /// (seconds, nanoseconds) since the Unix epoch.
    pub created: (u32, u32),
    pub secret: AuthSecret,
}

/// One entity of the database: its key and its caps (service → cap text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthEntity {
    pub key: AuthKey,
    pub caps: BTreeMap<String, String>,
}

/// A service's ticket keys: `current` seals new tickets, `previous` still opens older ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotatingKeys {
    pub current: (u64, AuthSecret),
    pub previous: Option<(u64, AuthSecret)>,
    /// Unix seconds of the last rotation (or of creation).
    pub rotated_secs: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthDb {
    /// Bumped by every change; daemons follow it to learn new keys and changed caps.
    pub version: u64,
    /// Entity name (`client.glance`) → key and caps.
    pub entities: BTreeMap<String, AuthEntity>,
    /// Service (`mon`, `osd`) → its rotating ticket keys.
    pub service_keys: BTreeMap<String, RotatingKeys>,
}

/// A change to the auth database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AuthCommand {
    /// First entry: the entities of the mon's initial keyring and a first key per service.
    /// Ignored once the database is initialized.
    Init { entities: Vec<(String, AuthEntity)>, service_keys: Vec<(String, AuthSecret)>, now_secs: u64 },
    /// `auth get-or-create`: create the entity unless it exists. An existing entity with other
    /// caps is EINVAL (Ceph's "key for X exists but cap Y does not match").
    GetOrCreate { entity: String, entity_value: AuthEntity },
    /// `auth add`: add the entity; an existing one with another key or caps is EINVAL.
    Add { entity: String, entity_value: AuthEntity },
    /// `auth caps`: replace the entity's caps.
    SetCaps { entity: String, caps: BTreeMap<String, String> },
    /// `auth rm`: remove the entity (ENOENT if missing).
    Remove { entity: String },
    /// `auth import`: add or replace each entity's key and caps.
    Import { entities: Vec<(String, AuthEntity)> },
    /// Rotate a service's ticket keys: `secret` becomes current, current becomes previous.
    Rotate { service: String, secret: AuthSecret, now_secs: u64 },
}

impl AuthDb {
    pub fn is_initialized(&self) -> bool {
        !self.service_keys.is_empty()
    }

    pub fn get(&self, entity: &str) -> Option<&AuthEntity> {
        self.entities.get(entity)
    }

    /// Applies one command; on error the database is unchanged. Returns the status text.
    pub fn apply(&mut self, cmd: &AuthCommand) -> Result<String> {
        let mut next = self.clone();
        let status = next.apply_inner(cmd)?;
        if next != *self {
            next.version = self.version + 1;
            *self = next;
        }
        Ok(status)
    }

    fn apply_inner(&mut self, cmd: &AuthCommand) -> Result<String> {
        if !self.is_initialized() && !matches!(cmd, AuthCommand::Init { .. }) {
            return Err(Error::eagain("the auth database is not initialized yet"));
        }
        match cmd {
            AuthCommand::Init { entities, service_keys, now_secs } => {
                if self.is_initialized() {
                    return Ok("already initialized".into());
                }
                if service_keys.is_empty() {
                    return Err(Error::einval("auth init needs at least one service key"));
                }
                self.entities.extend(entities.iter().cloned());
                for (service, secret) in service_keys {
                    let keys = RotatingKeys {
                        current: (1, secret.clone()),
                        previous: None,
                        rotated_secs: *now_secs,
                    };
                    self.service_keys.insert(service.clone(), keys);
                }
                Ok("initialized".into())
            }
            AuthCommand::GetOrCreate { entity, entity_value } => match self.entities.get(entity) {
                Some(have) => {
                    caps_match(entity, have, &entity_value.caps)?;
                    Ok(String::new())
                }
                None => {
                    self.entities.insert(entity.clone(), entity_value.clone());
                    Ok(String::new())
                }
            },
            AuthCommand::Add { entity, entity_value } => match self.entities.get(entity) {
                Some(have) if have.key.secret != entity_value.key.secret => {
                    Err(Error::einval(format!("entity {entity} exists but key does not match")))
                }
                Some(have) => {
                    caps_match(entity, have, &entity_value.caps)?;
                    Ok(format!("added key for {entity}"))
                }
                None => {
                    self.entities.insert(entity.clone(), entity_value.clone());
                    Ok(format!("added key for {entity}"))
                }
            },
            AuthCommand::SetCaps { entity, caps } => {
                let e = self
                    .entities
                    .get_mut(entity)
                    .ok_or_else(|| Error::enoent(format!("couldn't find entry {entity}")))?;
                e.caps = caps.clone();
                Ok(format!("updated caps for {entity}"))
            }
            AuthCommand::Remove { entity } => match self.entities.remove(entity) {
                Some(_) => Ok("updated".into()),
                None => Err(Error::enoent(format!("entity {entity} does not exist"))),
            },
            AuthCommand::Import { entities } => {
                self.entities.extend(entities.iter().cloned());
                Ok("imported keyring".into())
            }
            AuthCommand::Rotate { service, secret, now_secs } => {
                let keys = self
                    .service_keys
                    .get_mut(service)
                    .ok_or_else(|| Error::enoent(format!("no ticket keys for service '{service}'")))?;
                let next = (keys.current.0 + 1, secret.clone());
                keys.previous = Some(std::mem::replace(&mut keys.current, next));
                keys.rotated_secs = *now_secs;
                Ok(format!("rotated {service} keys"))
            }
        }
    }
}

/// Ceph's get-or-create rule: an existing entity is returned only if every requested cap
/// matches what it has.
fn caps_match(entity: &str, have: &AuthEntity, want: &BTreeMap<String, String>) -> Result<()> {
    for (service, cap) in want {
        if have.caps.get(service) != Some(cap) {
            return Err(Error::einval(format!("key for {entity} exists but cap {service} does not match")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errno;

    fn entity(byte: u8, caps: &[(&str, &str)]) -> AuthEntity {
        AuthEntity {
            key: AuthKey { created: (1, 2), secret: AuthSecret([byte; AUTH_SECRET_BYTES]) },
            caps: caps.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    fn db() -> AuthDb {
        let mut db = AuthDb::default();
        let init = AuthCommand::Init {
            entities: vec![("client.admin".into(), entity(1, &[("mon", "allow *")]))],
            service_keys: vec![("osd".into(), AuthSecret([9; 16]))],
            now_secs: 100,
        };
        db.apply(&init).unwrap();
        db
    }

    #[test]
    fn commands_before_init_wait() {
        let cmd = AuthCommand::Remove { entity: "client.x".into() };
        assert_eq!(AuthDb::default().apply(&cmd).unwrap_err().errno, errno::EAGAIN);
    }

    #[test]
    fn get_or_create_keeps_the_first_key_and_checks_caps() {
        let mut db = db();
        let v = db.version;
        let caps = [("mon", "allow r")];
        let cmd = AuthCommand::GetOrCreate { entity: "client.g".into(), entity_value: entity(2, &caps) };
        db.apply(&cmd).unwrap();
        assert_eq!(db.version, v + 1);
        // A second get-or-create (another random key, same caps) changes nothing.
        let again = AuthCommand::GetOrCreate { entity: "client.g".into(), entity_value: entity(3, &caps) };
        db.apply(&again).unwrap();
        assert_eq!((db.version, db.get("client.g").unwrap().key.secret.0[0]), (v + 1, 2));
        let other = AuthCommand::GetOrCreate { entity: "client.g".into(), entity_value: entity(3, &[]) };
        db.apply(&other).unwrap();
        let differ =
            AuthCommand::GetOrCreate { entity: "client.g".into(), entity_value: entity(3, &[("mon", "x")]) };
        let e = db.apply(&differ).unwrap_err();
        assert_eq!(e.message, "key for client.g exists but cap mon does not match");
    }

    #[test]
    fn caps_remove_and_rotate() {
        let mut db = db();
        let caps: BTreeMap<String, String> = [("osd".to_string(), "allow r".to_string())].into();
        let set = AuthCommand::SetCaps { entity: "client.admin".into(), caps: caps.clone() };
        assert_eq!(db.apply(&set).unwrap(), "updated caps for client.admin");
        assert_eq!(db.get("client.admin").unwrap().caps, caps);
        let missing = AuthCommand::SetCaps { entity: "client.nope".into(), caps };
        assert_eq!(db.apply(&missing).unwrap_err().errno, errno::ENOENT);
        let rot = AuthCommand::Rotate { service: "osd".into(), secret: AuthSecret([7; 16]), now_secs: 200 };
        db.apply(&rot).unwrap();
        let k = &db.service_keys["osd"];
        assert_eq!((k.current.0, k.previous.as_ref().unwrap().0, k.rotated_secs), (2, 1, 200));
        db.apply(&AuthCommand::Remove { entity: "client.admin".into() }).unwrap();
        assert!(db.get("client.admin").is_none());
        let e = db.apply(&AuthCommand::Remove { entity: "client.admin".into() }).unwrap_err();
        assert_eq!(e.errno, errno::ENOENT);
    }

    #[test]
    fn secrets_do_not_print() {
        let text = format!("{:?}", db());
        assert!(text.contains("<secret>") && !text.contains("[9, 9"), "{text}");
    }
}
