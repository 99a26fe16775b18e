//! The mon's side of authentication (docs/auth.md): logins against the auth database, the caps
//! check of every request, the rotating keys handed to OSDs, and the leader's duties (seeding the
//! database from the mon keyring, rotating service keys once per ticket lifetime).

use crate::commands::auth::{auth_key, crypto_key};
use crate::service::Mon;
use bytes::Bytes;
use cairn_auth::{EntityName, EntityType, Keyring, MonCaps, OsdAccess, OsdCaps, Secret, ServiceKeys};
use cairn_proto::auth::{now_secs, AuthSettings, LoginGrant, ServiceAuth, Session};
use cairn_proto::net::BoxFuture;
use cairn_proto::Message;
use cairn_types::auth::{AuthCommand, AuthDb, AuthEntity, AuthSecret, RotatingKeys, TICKET_SERVICES};
use cairn_types::{errno, Error, MapCommand, Result};
use std::collections::BTreeMap;
use std::time::Duration;

/// Longest an `AuthWatch` long-poll waits.
pub const MAX_AUTH_WAIT: Duration = Duration::from_secs(30);

/// A mon's authentication settings and keyring.
#[derive(Debug, Clone)]
pub struct MonAuthConfig {
    pub settings: AuthSettings,
    /// The mon keyring: `mon.` (the secret all mons share, used between them) and the entities
    /// that seed a new cluster's auth database (Ceph's `ceph-mon --mkfs --keyring`).
    pub keyring: Keyring,
}

impl MonAuthConfig {
    /// No authentication and an empty keyring (tests, the simulation).
    pub fn none() -> Self {
        MonAuthConfig { settings: AuthSettings::none(), keyring: Keyring::default() }
    }
}

fn denied(msg: impl Into<String>) -> Error {
    Error::new(errno::EACCES, msg)
}

pub(crate) fn service_keys(k: &RotatingKeys) -> ServiceKeys {
    ServiceKeys {
        current: (k.current.0, Secret::from_bytes(k.current.1 .0)),
        previous: k.previous.as_ref().map(|(g, s)| (*g, Secret::from_bytes(s.0))),
    }
}

fn mon_entity() -> EntityName {
    EntityName::new(EntityType::Mon, "").expect("'mon.' is a valid entity name")
}

impl Mon {
    pub(crate) fn auth_db(&self) -> std::sync::Arc<AuthDb> {
        self.raft.auth().borrow().clone()
    }

    /// The secret all mons share, from the mon keyring (else the database).
    fn mon_secret(&self) -> Option<Secret> {
        let name = mon_entity();
        if let Some(e) = self.cfg.auth.keyring.get(&name) {
            return Some(e.key.secret.clone());
        }
        self.auth_db().get(&name.to_string()).map(|e| crypto_key(&e.key).secret)
    }

    fn login_grant(&self, entity: &EntityName) -> Result<LoginGrant> {
        let db = self.auth_db();
        let ttl_secs = self.cfg.auth.settings.ticket_ttl_secs;
        let services: Vec<(String, ServiceKeys)> =
            db.service_keys.iter().map(|(name, k)| (name.clone(), service_keys(k))).collect();
        if entity.ty() == EntityType::Mon {
            // Mons log in to each other with the shared `mon.` key, before (and without) the
            // database: their tickets are never used, so throwaway keys do if it is not there.
            let secret = self.mon_secret().ok_or_else(|| denied("this mon has no 'mon.' key"))?;
            let services = if services.is_empty() {
                vec![("mon".to_string(), self.bootstrap_keys.clone())]
            } else {
                services
            };
            let caps = [("mon".to_string(), "allow *".to_string())].into();
            return Ok(LoginGrant { secret, caps, services, ttl_secs });
        }
        if !db.is_initialized() {
            return Err(Error::eagain("the auth database is not initialized yet"));
        }
        let e = db
            .get(&entity.to_string())
            .ok_or_else(|| denied(format!("authentication failed for {entity}: no such entity")))?;
        Ok(LoginGrant { secret: crypto_key(&e.key).secret, caps: e.caps.clone(), services, ttl_secs })
    }

    /// The entity's current mon caps (changes apply to open connections at once). EACCES when
    /// the entity was removed.
    fn current_mon_caps(&self, session: &Session) -> Result<MonCaps> {
        if session.entity.ty() == EntityType::Mon {
            return MonCaps::parse("allow *");
        }
        let db = self.auth_db();
        let Some(e) = db.get(&session.entity.to_string()) else {
            session.close();
            return Err(denied(format!("{} no longer exists in the auth database", session.entity)));
        };
        let text = e.caps.get("mon").map(String::as_str).unwrap_or("");
        // Caps were checked when stored; a string that no longer parses grants nothing.
        Ok(MonCaps::parse(text).unwrap_or_else(|_| MonCaps::parse("").expect("empty caps parse")))
    }

    /// May this connection send `msg`? Commands are checked with their arguments in
    /// [`Mon::check_command`]; daemon messages need the matching daemon.
    pub(crate) fn authorize(&self, session: &Session, msg: &Message) -> Result<()> {
        if !session.enforced() {
            return Ok(());
        }
        let entity = &session.entity;
        let is_osd = |id: u32| entity.ty() == EntityType::Osd && entity.id() == id.to_string();
        let ok = match msg {
            Message::Raft(_) => entity.ty() == EntityType::Mon,
            Message::OsdBoot { id, .. } => is_osd(*id),
            Message::OsdFailure { reporter, .. } => is_osd(*reporter),
            Message::PgStats { osd, .. } => is_osd(*osd),
            Message::PgActivated { .. }
            | Message::PgTempRequest { .. }
            | Message::PgTempClearRequest { .. }
            | Message::AuthWatch { .. } => entity.ty() == EntityType::Osd,
            Message::GetMap { .. } => {
                let caps = self.current_mon_caps(session)?;
                caps.allows_command("mon dump", &BTreeMap::new(), false)
                    || caps.allows_command("osd dump", &BTreeMap::new(), false)
            }
            Message::Admin { .. } => {
                self.current_mon_caps(session)?.allows_command("mon_status", &BTreeMap::new(), false)
            }
            _ => true,
        };
        if ok {
            return Ok(());
        }
        Err(denied(format!("{entity} is not allowed to send {}", message_name(msg))))
    }

    /// Checks a command against the sender's current mon caps. `osd pool selfmanaged-snap …` is
    /// also allowed by OSD caps that may write the pool, as Ceph allows unmanaged-snap pool ops.
    pub(crate) fn check_command(&self, session: &Session, cmd: &serde_json::Value) -> Result<()> {
        if !session.enforced() {
            return Ok(());
        }
        let prefix = cmd.get("prefix").and_then(|p| p.as_str()).unwrap_or("");
        let args = command_args(cmd);
        let caps = self.current_mon_caps(session)?;
        let writes = !crate::commands::is_read_only(prefix);
        if caps.allows_command(prefix, &args, writes) {
            return Ok(());
        }
        if prefix.starts_with("osd pool selfmanaged-snap ") {
            if let Some(pool) = args.get("pool") {
                let db = self.auth_db();
                let osd = db.get(&session.entity.to_string()).and_then(|e| e.caps.get("osd"));
                let osd = osd.and_then(|t| OsdCaps::parse(t).ok());
                if osd.is_some_and(|c| c.allows(pool, "", "", OsdAccess::WRITE)) {
                    return Ok(());
                }
            }
        }
        Err(denied(format!(
            "access denied: {} may not run '{prefix}' (mon caps: '{}')",
            session.entity, caps
        )))
    }

    /// `AuthWatch` from an OSD: its service's keys, sealed for it, and every entity's OSD caps.
    pub(crate) async fn auth_watch(
        &self,
        session: &Session,
        have: u64,
        wait_ms: u32,
        nonce: [u8; 16],
    ) -> Message {
        let wait = Duration::from_millis(wait_ms as u64).min(MAX_AUTH_WAIT);
        let db =
            crate::service::wait_newer(self.raft.auth(), have, wait, |d| d.version, AuthDb::is_initialized)
                .await;
        if !db.is_initialized() {
            return Message::Error(Error::eagain("the auth database is not initialized yet"));
        }
        // Sealed for the entity this connection speaks for: only the real holder of its key
        // opens them, whatever the connection's method.
        let sealed = match (db.get(&session.entity.to_string()), db.service_keys.get("osd")) {
            (Some(e), Some(k)) if session.entity.ty() == EntityType::Osd => {
                let secret = crypto_key(&e.key).secret;
                match cairn_auth::seal_service_keys(&secret, &session.entity, "osd", &nonce, &service_keys(k))
                {
                    Ok(b) => Bytes::from(b),
                    Err(e) => return Message::Error(e),
                }
            }
            _ => Bytes::new(),
        };
        let caps = db
            .entities
            .iter()
            .map(|(name, e)| (name.clone(), e.caps.get("osd").cloned().unwrap_or_default()))
            .collect();
        Message::AuthView { version: db.version, sealed_keys: sealed, caps }
    }

    /// Leader duty: the command that seeds the auth database, or rotates a service's keys once
    /// per ticket lifetime (only when cephx is in use).
    pub(crate) fn auth_duty(&self) -> Option<MapCommand> {
        let db = self.auth_db();
        let now = now_secs();
        if !db.is_initialized() {
            let entities: Vec<(String, AuthEntity)> = self
                .cfg
                .auth
                .keyring
                .entries
                .iter()
                .map(|(n, e)| (n.to_string(), AuthEntity { key: auth_key(&e.key), caps: e.caps.clone() }))
                .collect();
            let service_keys = TICKET_SERVICES.iter().map(|s| (s.to_string(), new_secret())).collect();
            return Some(MapCommand::Auth(AuthCommand::Init { entities, service_keys, now_secs: now }));
        }
        if !self.cfg.auth.settings.uses_cephx() {
            return None;
        }
        let ttl = self.cfg.auth.settings.ticket_ttl_secs;
        let (service, _) = db.service_keys.iter().find(|(_, k)| now >= k.rotated_secs.saturating_add(ttl))?;
        Some(MapCommand::Auth(AuthCommand::Rotate {
            service: service.clone(),
            secret: new_secret(),
            now_secs: now,
        }))
    }
}

fn new_secret() -> AuthSecret {
    AuthSecret(*Secret::generate().expose())
}

/// A command's arguments as strings, for `allow command … with k=v` grants.
fn command_args(cmd: &serde_json::Value) -> BTreeMap<String, String> {
    let Some(obj) = cmd.as_object() else { return BTreeMap::new() };
    obj.iter()
        .filter(|(k, _)| k.as_str() != "prefix" && k.as_str() != "format")
        .filter_map(|(k, v)| {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                serde_json::Value::Array(a) => {
                    a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect::<Vec<_>>().join(" ")
                }
                _ => return None,
            };
            Some((k.clone(), text))
        })
        .collect()
}

fn message_name(m: &Message) -> String {
    let s = format!("{m:?}");
    s.split([' ', '(', '{']).next().unwrap_or("message").to_string()
}

impl ServiceAuth for Mon {
    fn service(&self) -> &'static str {
        "mon"
    }

    fn settings(&self) -> &AuthSettings {
        &self.cfg.auth.settings
    }

    fn login(&self, entity: &EntityName) -> BoxFuture<'_, Result<LoginGrant>> {
        let grant = self.login_grant(entity);
        Box::pin(async move { grant })
    }

    fn service_keys(&self, _refresh: bool) -> BoxFuture<'_, Option<ServiceKeys>> {
        let keys = self.auth_db().service_keys.get("mon").map(service_keys);
        Box::pin(async move { keys })
    }
}
