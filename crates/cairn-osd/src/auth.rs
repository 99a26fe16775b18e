//! The OSD's side of authentication (docs/auth.md): it follows the mons' auth view (the `osd`
//! service's rotating ticket keys, sealed for this OSD, and every entity's OSD caps), accepts
//! connections that present an `osd` ticket, and checks every client op against the sender's
//! current caps — so `auth caps` and `auth rm` reach open connections within a long-poll.

use crate::osd::Osd;
use cairn_auth::{EntityName, OsdAccess, OsdCaps, Secret, ServiceKeys};
use cairn_proto::auth::{AuthSettings, CachedCaps, ServiceAuth, Session};
use cairn_proto::net::BoxFuture;
use cairn_proto::{Message, ObjOp};
use cairn_types::{errno, ClusterMap, Error, ObjectId, PoolId, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long an auth-view long-poll waits at the mon.
const VIEW_POLL_WAIT_MS: u32 = 2000;
/// Fetches forced by unknown tickets are at most this frequent (a stream of bad tickets must not
/// turn into a stream of mon requests).
const MIN_REFRESH_INTERVAL: Duration = Duration::from_millis(500);

/// Checks of the view before a ticket of an entity not (yet) in it is refused (100 ms apart).
const ADMIT_TRIES: usize = 10;

/// How this OSD authenticates and what it requires.
#[derive(Debug, Clone)]
pub struct OsdAuthConfig {
    pub settings: AuthSettings,
    /// This OSD's key (`osd.N` in its keyring); needed for cephx.
    pub secret: Option<Secret>,
}

impl OsdAuthConfig {
    pub fn none() -> Self {
        OsdAuthConfig { settings: AuthSettings::none(), secret: None }
    }
}

/// What the mons last told this OSD.
#[derive(Debug, Default)]
pub struct AuthView {
    pub version: u64,
    pub keys: Option<ServiceKeys>,
    /// Entity → its OSD caps text.
    pub caps: HashMap<String, String>,
}

/// The OSD's copy of the auth view and how fresh it is.
#[derive(Default)]
pub struct AuthState {
    view: Mutex<Arc<AuthView>>,
    refresh: tokio::sync::Mutex<Option<tokio::time::Instant>>,
}

fn denied(msg: impl Into<String>) -> Error {
    Error::new(errno::EACCES, msg)
}

impl Osd {
    pub(crate) fn entity(&self) -> EntityName {
        format!("osd.{}", self.id).parse().expect("osd.N is a valid entity name")
    }

    pub fn auth_view(&self) -> Arc<AuthView> {
        self.auth_state.view.lock().expect("auth view lock").clone()
    }

    /// One `AuthWatch` round trip: installs a view newer than `have` if the mon has one.
    async fn fetch_view(&self, have: u64, wait_ms: u32) -> Result<()> {
        let nonce = cairn_auth::random_nonce();
        let msg = Message::AuthWatch { have_version: have, wait_ms, nonce };
        let timeout = Duration::from_secs(5) + Duration::from_millis(wait_ms as u64);
        let (version, sealed, caps) = match self.monc.call_any(msg, timeout).await? {
            Message::AuthView { version, sealed_keys, caps } => (version, sealed_keys, caps),
            Message::Error(e) => return Err(e),
            other => return Err(Error::eio(format!("unexpected auth view reply {other:?}"))),
        };
        let keys = match (&self.cfg.auth.secret, sealed.is_empty()) {
            (Some(secret), false) => {
                Some(cairn_auth::open_service_keys(secret, &self.entity(), "osd", &nonce, &sealed)?)
            }
            _ => None,
        };
        let mut view = self.auth_state.view.lock().expect("auth view lock");
        if version > view.version {
            *view = Arc::new(AuthView { version, keys, caps: caps.into_iter().collect() });
        }
        Ok(())
    }

    /// Follows the auth view forever (long-polling); run it in a task when cephx is in use.
    pub async fn follow_auth(self: Arc<Self>) {
        loop {
            let have = self.auth_view().version;
            if let Err(e) = self.fetch_view(have, VIEW_POLL_WAIT_MS).await {
                tracing::debug!(error = %e, "auth view update failed");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }

    /// Fetches the newest view now (at most every [`MIN_REFRESH_INTERVAL`]).
    async fn refresh_view(&self) {
        let mut last = self.auth_state.refresh.lock().await;
        if last.is_some_and(|t| t.elapsed() < MIN_REFRESH_INTERVAL) {
            return;
        }
        *last = Some(tokio::time::Instant::now());
        if let Err(e) = self.fetch_view(0, 0).await {
            tracing::warn!(error = %e, "cannot fetch the auth view from the monitors");
        }
    }

    /// The caps this connection's ops are checked against; `None` when nothing is enforced
    /// (method none). EACCES (and the connection is closed) once the entity is gone.
    pub fn session_caps(&self, session: &Session) -> Result<Option<Arc<OsdCaps>>> {
        if !session.enforced() {
            return Ok(None);
        }
        let view = self.auth_view();
        let mut cache = session.caps_cache.lock().expect("caps cache lock");
        let stale = cache.as_ref().is_none_or(|c| c.version != view.version);
        if stale {
            let text = if view.version == 0 {
                // No view yet: the ticket's own caps.
                Some(session.caps.get("osd").cloned().unwrap_or_default())
            } else {
                view.caps.get(&session.entity.to_string()).cloned()
            };
            // Caps were checked when stored; text that no longer parses grants nothing.
            let osd = text.map(|t| Arc::new(OsdCaps::parse(&t).unwrap_or_else(|_| empty_caps())));
            *cache = Some(CachedCaps { version: view.version, osd });
        }
        match cache.as_ref().and_then(|c| c.osd.clone()) {
            Some(caps) => Ok(Some(caps)),
            None => {
                session.close();
                Err(denied(format!("{} no longer exists in the auth database", session.entity)))
            }
        }
    }

    /// OSD-to-OSD messages (replication, peering, heartbeats) come only from OSDs.
    pub fn require_osd(&self, session: &Session, what: &str) -> Result<()> {
        if !session.enforced() || session.entity.ty() == cairn_auth::EntityType::Osd {
            return Ok(());
        }
        Err(denied(format!("{} is not an OSD and may not send {what}", session.entity)))
    }

    /// Admin commands: daemons, or entities whose OSD caps allow everything on every pool.
    pub fn check_admin(&self, session: &Session) -> Result<()> {
        if !session.enforced() || session.is_daemon() {
            return Ok(());
        }
        let all = OsdAccess {
            read: true,
            write: true,
            call: Some(cairn_auth::ClassCall { class: "*", method: "*", reads: true, writes: true }),
        };
        match self.session_caps(session)? {
            Some(c) if c.allows("", "", "", all) => Ok(()),
            _ => Err(Error::new(errno::EPERM, format!("{} may not run admin commands", session.entity))),
        }
    }

    /// Listing a PG needs read access to its pool.
    pub fn check_list(&self, session: &Session, map: &ClusterMap, pool: PoolId) -> Result<()> {
        let Some(caps) = self.session_caps(session)? else { return Ok(()) };
        let name = pool_name(map, pool)?;
        if caps.allows(name, "", "", OsdAccess::READ) {
            return Ok(());
        }
        Err(Error::new(errno::EPERM, format!("{} may not list pool {name}", session.entity)))
    }
}

fn empty_caps() -> OsdCaps {
    OsdCaps::parse("").expect("empty caps parse")
}

fn pool_name(map: &ClusterMap, pool: PoolId) -> Result<&str> {
    map.pools
        .get(&pool)
        .map(|p| p.name.as_str())
        .ok_or_else(|| Error::enoent(format!("pool {pool} does not exist")))
}

/// Checks a client op against `caps` (Ceph's `OSDCap::is_capable` per op): plain reads need `r`,
/// plain writes `w`, each object-class call its class and method's read/write flags. EPERM
/// names what was refused; nothing has been done when it is returned.
pub fn check_op(
    caps: &OsdCaps,
    entity: &EntityName,
    map: &ClusterMap,
    pool: PoolId,
    oid: &ObjectId,
    ops: &[ObjOp],
    snap: Option<u64>,
) -> Result<()> {
    let pool = pool_name(map, pool)?;
    let (ns, name) = (oid.namespace.as_str(), oid.name.as_str());
    let plain = ops.iter().filter(|o| !matches!(o, ObjOp::Call(_)));
    // A read at a snapshot never writes (the OSD serves it from the clone).
    let write = snap.is_none() && plain.clone().any(ObjOp::is_write);
    let read = plain.clone().any(|o| !o.is_write() || snap.is_some());
    let refuse = |what: String| {
        Err(Error::new(errno::EPERM, format!("{entity} may not {what} {pool}/{name} (osd caps '{caps}')")))
    };
    if (read || write) && !caps.allows(pool, ns, name, OsdAccess { read, write, call: None }) {
        return refuse(if write { "write".into() } else { "read".into() });
    }
    for op in ops {
        if let ObjOp::Call(call) = op {
            let (class, method) = call.names();
            let writes = call.is_write() && snap.is_none();
            if !caps.allows(pool, ns, name, OsdAccess::call(class, method, true, writes)) {
                return refuse(format!("call {class}.{method} on"));
            }
        }
    }
    Ok(())
}

impl ServiceAuth for Osd {
    fn service(&self) -> &'static str {
        "osd"
    }

    fn settings(&self) -> &AuthSettings {
        &self.cfg.auth.settings
    }

    fn service_keys(&self, refresh: bool) -> BoxFuture<'_, Option<ServiceKeys>> {
        Box::pin(async move {
            if refresh || self.auth_view().keys.is_none() {
                self.refresh_view().await;
            }
            self.auth_view().keys.clone()
        })
    }

    /// A valid ticket of an entity removed since it was issued is refused.
    fn admit<'a>(&'a self, entity: &'a EntityName) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let known = |osd: &Osd| osd.auth_view().caps.contains_key(&entity.to_string());
            // A brand-new entity may log in before the view here has it: give the view a moment.
            for _ in 0..ADMIT_TRIES {
                if known(self) {
                    return Ok(());
                }
                self.refresh_view().await;
                if known(self) {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if self.auth_view().version == 0 {
                // Never reached a mon: say so, and let the client try again.
                return Err(Error::eagain(format!("osd.{} has no auth database view yet", self.id)));
            }
            Err(denied(format!("{entity} does not exist in the auth database")))
        })
    }
}
