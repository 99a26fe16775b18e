//! Authentication at the start of every connection (docs/auth.md, "On the wire"): the server
//! speaks first with [`Message::AuthServerHello`] (its service and the methods it accepts), the
//! client answers with one of
//!
//! - `AuthNone{entity}` → `Ok` (method `none`: the entity is a claim, nothing is checked);
//! - cephx login, at a mon: `AuthLogin{Hello}` → `AuthChallenge` → `AuthProof` → `AuthTickets`
//!   (the connection is authenticated and the client holds fresh tickets for every service);
//! - a cephx ticket, at an OSD (or a mon): `AuthAuthorize{Authorizer}` → `AuthAuthorized`.
//!
//! A refusal is a `Message::Error` (EACCES) and the connection closes. Only after this exchange
//! does [`crate::rpc`] carry requests, and the server hands each one to its handler with the
//! connection's [`Session`]: who the peer is and what its ticket said.
//!
//! The crypto is `cairn-auth`'s; this module moves its messages and keeps the client's tickets
//! ([`ClientAuth`]), renewing them at a mon before they run out.

use crate::frame::{self, FrameType, HEADER_BYTES};
use crate::msg::{decode_envelope, Envelope, Message};
use crate::net::{BoxFuture, Network};
use bytes::Bytes;
use cairn_auth::handshake::{decode, encode};
use cairn_auth::{
    AuthReply, Authorizer, AuthorizerReply, Challenge, ClientHandshake, ClientProof, ClientSession,
    ClientTicket, EntityName, EntityType, Hello, Issue, MonHandshake, OsdCaps, Secret, ServiceHandshake,
    ServiceHello, ServiceKeys,
};
use cairn_types::{errno, Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How long each side waits for the other's next handshake frame.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest frame accepted before a connection is authenticated (handshake messages are at most
/// `cairn_auth::handshake::MAX_MESSAGE_BYTES`): an unauthenticated peer cannot make us allocate
/// a data-sized frame.
pub const MAX_HANDSHAKE_FRAME_BYTES: usize = 128 << 10;
/// Default `auth service ticket ttl` (Ceph's `auth_service_ticket_ttl`).
pub const DEFAULT_TICKET_TTL_SECS: u64 = 3600;

/// An authentication method, as `auth_*_required` name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthMethod {
    None,
    Cephx,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::None => "none",
            AuthMethod::Cephx => "cephx",
        }
    }

    /// Parses `cephx`, `none`, or a list (`cephx, none`; Ceph also separates with spaces or
    /// `;`), in order of preference.
    pub fn parse_list(option: &str, text: &str) -> Result<Vec<AuthMethod>> {
        let mut out = Vec::new();
        for word in text.split([',', ';', ' ', '\t']).filter(|w| !w.is_empty()) {
            let m = match word {
                "cephx" => AuthMethod::Cephx,
                "none" => AuthMethod::None,
                other => {
                    return Err(Error::einval(format!(
                        "{option}: unknown authentication method '{other}' (expected cephx or none)"
                    )))
                }
            };
            if !out.contains(&m) {
                out.push(m);
            }
        }
        if out.is_empty() {
            return Err(Error::einval(format!("{option}: no authentication method given")));
        }
        Ok(out)
    }
}

fn method_list(methods: &[AuthMethod]) -> String {
    methods.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ")
}

/// The three `auth_*_required` settings of one process (Ceph's meaning): what daemons accept
/// from each other (`cluster`), what they accept from clients (`service`), and what a client is
/// willing to use (`client`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    pub cluster: Vec<AuthMethod>,
    pub service: Vec<AuthMethod>,
    pub client: Vec<AuthMethod>,
    /// `auth service ticket ttl`, seconds.
    pub ticket_ttl_secs: u64,
}

impl AuthSettings {
    /// cephx everywhere (Ceph's and Cairn's default).
    pub fn cephx() -> Self {
        let c = vec![AuthMethod::Cephx];
        AuthSettings {
            cluster: c.clone(),
            service: c.clone(),
            client: c,
            ticket_ttl_secs: DEFAULT_TICKET_TTL_SECS,
        }
    }

    /// No authentication anywhere (a test cluster, the simulation).
    pub fn none() -> Self {
        let n = vec![AuthMethod::None];
        AuthSettings {
            cluster: n.clone(),
            service: n.clone(),
            client: n,
            ticket_ttl_secs: DEFAULT_TICKET_TTL_SECS,
        }
    }

    /// Reads `auth cluster required`, `auth service required`, `auth client required` (each
    /// defaulting to `auth supported`, then cephx) and `auth service ticket ttl` for `entity`.
    pub fn from_conf(conf: &cairn_types::conf::Conf, entity: &str) -> Result<Self> {
        let supported = conf.get(entity, "auth supported");
        let get = |key: &str| -> Result<Vec<AuthMethod>> {
            match conf.get(entity, key).or_else(|| supported.clone()) {
                Some(v) => AuthMethod::parse_list(&cairn_types::conf::normalize_key(key), &v),
                None => Ok(vec![AuthMethod::Cephx]),
            }
        };
        let ttl = conf.get_u64(entity, "auth service ticket ttl")?.unwrap_or(DEFAULT_TICKET_TTL_SECS);
        if ttl == 0 {
            return Err(Error::einval("auth_service_ticket_ttl must be at least 1 second"));
        }
        Ok(AuthSettings {
            cluster: get("auth cluster required")?,
            service: get("auth service required")?,
            client: get("auth client required")?,
            ticket_ttl_secs: ttl,
        })
    }

    /// Whether any connection of this process may use cephx.
    pub fn uses_cephx(&self) -> bool {
        [&self.cluster, &self.service, &self.client].iter().any(|l| l.contains(&AuthMethod::Cephx))
    }
}

/// Daemons (mons, OSDs, mgrs) are held to `auth_cluster_required`, clients to
/// `auth_service_required`.
pub fn is_daemon(entity: &EntityName) -> bool {
    entity.ty() != EntityType::Client
}

pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// EACCES and EPERM: what resending cannot fix.
pub fn is_auth_error(e: &Error) -> bool {
    e.errno == errno::EACCES || e.errno == errno::EPERM
}

fn denied(msg: impl Into<String>) -> Error {
    Error::new(errno::EACCES, msg)
}

// ------------------------------------------------------------------------------------------
// Frames before the connection is authenticated

async fn write_msg<S: AsyncWrite + Unpin + ?Sized>(s: &mut S, ty: FrameType, msg: Message) -> Result<()> {
    let bytes = crate::rpc::frame_bytes(ty, &Envelope { tid: 0, msg })?;
    s.write_all(&bytes).await?;
    s.flush().await?;
    Ok(())
}

/// Reads one handshake frame (bounded by [`MAX_HANDSHAKE_FRAME_BYTES`]) within
/// [`HANDSHAKE_TIMEOUT`].
async fn read_msg<S: AsyncRead + Unpin + ?Sized>(
    s: &mut S,
    expect: FrameType,
    peer: &str,
) -> Result<Message> {
    let read = async {
        let mut header = [0u8; HEADER_BYTES];
        s.read_exact(&mut header).await.map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => {
                Error::new(errno::ENOTCONN, format!("{peer} closed the connection during authentication"))
            }
            _ => Error::from(e),
        })?;
        let h = frame::decode_header(&header)?;
        if h.payload_len > MAX_HANDSHAKE_FRAME_BYTES {
            return Err(Error::einval(format!(
                "authentication frame of {} bytes from {peer} exceeds {MAX_HANDSHAKE_FRAME_BYTES}",
                h.payload_len
            )));
        }
        if h.frame_type != expect {
            return Err(Error::einval(format!("unexpected frame type from {peer} during authentication")));
        }
        let mut payload = vec![0u8; h.payload_len];
        s.read_exact(&mut payload).await?;
        frame::verify_payload(&h, &payload)?;
        Ok(decode_envelope(&payload)?.msg)
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, read).await {
        Ok(r) => r,
        Err(_) => {
            Err(Error::timed_out(format!("{peer} did not answer the authentication handshake in time")))
        }
    }
}

fn encoded<T: Serialize>(m: &T) -> Result<Bytes> {
    encode(m).map(Bytes::from)
}

// ------------------------------------------------------------------------------------------
// Client side

struct Login {
    session: ClientSession,
    at_secs: u64,
}

/// Who this process is to the cluster, and the tickets of its last login. One per process (or
/// per client handle), shared by all its connections.
pub struct ClientAuth {
    entity: EntityName,
    secret: Option<Secret>,
    methods: Vec<AuthMethod>,
    mons: Vec<String>,
    net: Arc<dyn Network>,
    login: Mutex<Option<Login>>,
    renewing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientAuth {{ entity: {}, methods: [{}] }}", self.entity, method_list(&self.methods))
    }
}

impl ClientAuth {
    /// `secret` is needed for cephx; `methods` are those this process is willing to use, in
    /// order of preference; `mons` are where it logs in to get and renew tickets.
    pub fn new(
        entity: EntityName,
        secret: Option<Secret>,
        methods: Vec<AuthMethod>,
        mons: Vec<String>,
        net: Arc<dyn Network>,
    ) -> Arc<Self> {
        Arc::new(ClientAuth {
            entity,
            secret,
            methods,
            mons,
            net,
            login: Mutex::new(None),
            renewing: tokio::sync::Mutex::new(()),
        })
    }

    /// Method `none` only, claiming to be `entity`.
    pub fn none(entity: EntityName, net: Arc<dyn Network>) -> Arc<Self> {
        ClientAuth::new(entity, None, vec![AuthMethod::None], Vec::new(), net)
    }

    /// A client that holds `session`'s tickets and no key, so it can never renew them (tests
    /// use it to present an expired ticket).
    pub fn with_session(session: ClientSession, net: Arc<dyn Network>) -> Arc<Self> {
        let auth = ClientAuth::new(session.entity.clone(), None, vec![AuthMethod::Cephx], Vec::new(), net);
        *auth.login.lock().expect("login lock") = Some(Login { session, at_secs: 0 });
        auth
    }

    pub fn entity(&self) -> &EntityName {
        &self.entity
    }

    pub fn methods(&self) -> &[AuthMethod] {
        &self.methods
    }

    /// The tickets of the last login, if any.
    pub fn session(&self) -> Option<ClientSession> {
        self.login.lock().expect("login lock").as_ref().map(|l| l.session.clone())
    }

    fn store(&self, session: ClientSession) {
        *self.login.lock().expect("login lock") = Some(Login { session, at_secs: now_secs() });
    }

    /// A ticket for `service` that is not in the last quarter of its life.
    fn fresh_ticket(&self, service: &str) -> Option<ClientTicket> {
        let login = self.login.lock().expect("login lock");
        let login = login.as_ref()?;
        let t = login.session.tickets.get(service)?;
        let margin = (t.expires.saturating_sub(login.at_secs) / 4).max(1);
        (now_secs().saturating_add(margin) < t.expires).then(|| t.clone())
    }

    /// A ticket for `service`, logging in at a mon first when there is none or it is about to
    /// expire.
    pub async fn ticket(&self, service: &str) -> Result<ClientTicket> {
        if let Some(t) = self.fresh_ticket(service) {
            return Ok(t);
        }
        let _one_at_a_time = self.renewing.lock().await;
        if let Some(t) = self.fresh_ticket(service) {
            return Ok(t);
        }
        if self.secret.is_none() {
            // Nothing to log in with: present what we have and let the service judge it.
            let login = self.login.lock().expect("login lock");
            let t = login.as_ref().and_then(|l| l.session.tickets.get(service).cloned());
            return t
                .ok_or_else(|| denied(format!("{} has no key to get a {service} ticket with", self.entity)));
        }
        if let Err(e) = self.login_at_any_mon().await {
            // No mon reachable: a ticket that has not run out yet still serves.
            return match self.unexpired_ticket(service) {
                Some(t) if !is_auth_error(&e) => Ok(t),
                _ => Err(e),
            };
        }
        self.fresh_ticket(service).ok_or_else(|| {
            denied(format!("the monitors issued no usable {service} ticket to {}", self.entity))
        })
    }

    fn unexpired_ticket(&self, service: &str) -> Option<ClientTicket> {
        let login = self.login.lock().expect("login lock");
        let t = login.as_ref()?.session.tickets.get(service)?;
        (now_secs() < t.expires).then(|| t.clone())
    }

    /// Logs in at the first mon that answers (the handshake of a mon connection is a login).
    pub async fn login_at_any_mon(&self) -> Result<()> {
        let mut last = Error::new(errno::ENOTCONN, "no monitor addresses to log in at");
        for addr in &self.mons {
            let attempt = async {
                let mut stream = self.net.connect(addr).await.map_err(|e| {
                    let mut err = Error::from(e);
                    err.message = format!("connecting to {addr}: {}", err.message);
                    err
                })?;
                let service = Box::pin(client_handshake(&mut *stream, addr, self)).await?;
                if service != "mon" {
                    return Err(Error::einval(format!("{addr} is not a monitor")));
                }
                Ok(())
            };
            match tokio::time::timeout(crate::rpc::CONNECT_TIMEOUT + HANDSHAKE_TIMEOUT, attempt).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) if is_auth_error(&e) => return Err(e),
                Ok(Err(e)) => last = e,
                Err(_) => last = Error::timed_out(format!("logging in at {addr} timed out")),
            }
        }
        Err(last)
    }
}

/// The client's half of a connection's handshake; returns the server's service name.
pub async fn client_handshake<S>(s: &mut S, addr: &str, auth: &ClientAuth) -> Result<String>
where
    S: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let Message::AuthServerHello { service, client_methods, daemon_methods, service_hello } =
        read_msg(s, FrameType::Response, addr).await?
    else {
        return Err(Error::einval(format!("{addr} did not start the authentication handshake")));
    };
    let daemon = is_daemon(&auth.entity);
    let accepted = if daemon { &daemon_methods } else { &client_methods };
    let Some(method) = auth.methods.iter().copied().find(|m| accepted.contains(m)) else {
        let (theirs, ours) = if daemon {
            ("auth_cluster_required", "auth_cluster_required")
        } else {
            ("auth_service_required", "auth_client_required")
        };
        return Err(denied(format!(
            "{service} at {addr} requires {} authentication ({theirs}), but {} is configured for {} \
             ({ours})",
            method_list(accepted),
            auth.entity,
            method_list(&auth.methods)
        )));
    };
    let fail = |e: Error| Error::new(e.errno, format!("{service} at {addr}: {}", e.message));
    match method {
        AuthMethod::None => {
            write_msg(s, FrameType::Request, Message::AuthNone { entity: auth.entity.to_string() }).await?;
            match read_msg(s, FrameType::Response, addr).await? {
                Message::Ok => {}
                Message::Error(e) => return Err(fail(e)),
                _ => return Err(Error::einval(format!("{addr}: unexpected reply to authentication"))),
            }
        }
        AuthMethod::Cephx if service == "mon" && auth.secret.is_some() => {
            login(s, addr, auth).await.map_err(fail)?
        }
        AuthMethod::Cephx => {
            let hello: ServiceHello = decode(&service_hello)?;
            let ticket = auth.ticket(&service).await?;
            let (pending, authorizer) = ticket.authorizer(&hello);
            let msg = Message::AuthAuthorize { authorizer: encoded(&authorizer)? };
            write_msg(s, FrameType::Request, msg).await?;
            let reply = match read_msg(s, FrameType::Response, addr).await? {
                Message::AuthAuthorized { reply } => decode::<AuthorizerReply>(&reply)?,
                Message::Error(e) => return Err(fail(e)),
                _ => return Err(Error::einval(format!("{addr}: unexpected reply to authorizer"))),
            };
            pending.finish(&reply).map_err(fail)?;
        }
    }
    Ok(service)
}

async fn login<S: AsyncRead + AsyncWrite + Unpin + ?Sized>(
    s: &mut S,
    addr: &str,
    auth: &ClientAuth,
) -> Result<()> {
    let secret = auth.secret.as_ref().ok_or_else(|| denied("no key to log in with"))?;
    let (client, hello) = ClientHandshake::start(auth.entity.clone(), secret);
    write_msg(s, FrameType::Request, Message::AuthLogin { hello: encoded(&hello)? }).await?;
    let challenge: Challenge = match read_msg(s, FrameType::Response, addr).await? {
        Message::AuthChallenge { challenge } => decode(&challenge)?,
        Message::Error(e) => return Err(e),
        _ => return Err(Error::einval("unexpected reply to login")),
    };
    let (client, proof) = client.prove(&challenge);
    write_msg(s, FrameType::Request, Message::AuthProof { proof: encoded(&proof)? }).await?;
    let reply: AuthReply = match read_msg(s, FrameType::Response, addr).await? {
        Message::AuthTickets { reply } => decode(&reply)?,
        Message::Error(e) => return Err(e),
        _ => return Err(Error::einval("unexpected reply to login proof")),
    };
    auth.store(client.finish(&reply)?);
    Ok(())
}

// ------------------------------------------------------------------------------------------
// Server side

/// What a mon grants an entity that logs in.
pub struct LoginGrant {
    pub secret: Secret,
    pub caps: BTreeMap<String, String>,
    /// One ticket per (service, its keys).
    pub services: Vec<(String, ServiceKeys)>,
    pub ttl_secs: u64,
}

/// The server side's view of authentication: implemented by the mon (logins, its auth
/// database) and the OSD (ticket keys and caps learnt from the mons).
pub trait ServiceAuth: Send + Sync + 'static {
    /// `"mon"` or `"osd"`.
    fn service(&self) -> &'static str;
    fn settings(&self) -> &AuthSettings;
    /// A cephx login by `entity` (mons only).
    fn login(&self, entity: &EntityName) -> BoxFuture<'_, Result<LoginGrant>> {
        let entity = entity.to_string();
        Box::pin(async move { Err(Error::new(errno::EOPNOTSUPP, format!("{entity}: log in at a monitor"))) })
    }
    /// The keys this service's tickets are sealed with; `refresh` asks for the newest (after a
    /// ticket did not open, perhaps sealed with a key not seen here yet).
    fn service_keys(&self, refresh: bool) -> BoxFuture<'_, Option<ServiceKeys>>;
    /// Whether a ticket holder may still connect (the OSD refuses removed entities).
    fn admit<'a>(&'a self, _entity: &'a EntityName) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

/// An OSD's parsed caps for one connection and the auth-view version they were read from.
#[derive(Debug, Clone)]
pub struct CachedCaps {
    pub version: u64,
    /// `None`: the entity is no longer in the auth database.
    pub osd: Option<Arc<OsdCaps>>,
}

/// One authenticated connection, as handlers see it.
#[derive(Debug)]
pub struct Session {
    pub peer: SocketAddr,
    pub entity: EntityName,
    pub method: AuthMethod,
    pub global_id: u64,
    /// Caps from the ticket or the login (service → cap text).
    pub caps: BTreeMap<String, String>,
    /// When the ticket runs out (Unix seconds); the server closes the connection then.
    pub expires_secs: Option<u64>,
    /// Kept by the OSD: the caps it checks this connection's ops against.
    pub caps_cache: Mutex<Option<CachedCaps>>,
    closed: AtomicBool,
    close: tokio::sync::Notify,
}

impl Session {
    pub fn new(peer: SocketAddr, entity: EntityName, method: AuthMethod) -> Session {
        Session {
            peer,
            entity,
            method,
            global_id: 0,
            caps: BTreeMap::new(),
            expires_secs: None,
            caps_cache: Mutex::new(None),
            closed: AtomicBool::new(false),
            close: tokio::sync::Notify::new(),
        }
    }

    /// Whether caps are enforced on this connection (cephx; `none` allows everything, as in Ceph).
    pub fn enforced(&self) -> bool {
        self.method == AuthMethod::Cephx
    }

    pub fn is_daemon(&self) -> bool {
        is_daemon(&self.entity)
    }

    /// Asks the server to close this connection (after replies already queued).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.close.notify_one();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Resolves when [`Session::close`] is called.
    pub async fn closed(&self) {
        if !self.is_closed() {
            self.close.notified().await;
        }
    }
}

fn refuse_method(entity: &EntityName, method: AuthMethod, settings: &AuthSettings) -> Option<Error> {
    let (accepted, option) = if is_daemon(entity) {
        (&settings.cluster, "auth_cluster_required")
    } else {
        (&settings.service, "auth_service_required")
    };
    (!accepted.contains(&method)).then(|| {
        denied(format!(
            "{entity}: authentication method {} refused; this cluster requires {} ({option})",
            method.as_str(),
            method_list(accepted)
        ))
    })
}

/// The server's half of a connection's handshake. On refusal the error is also sent to the
/// peer before the caller closes the connection.
pub async fn server_handshake<S>(s: &mut S, peer: SocketAddr, auth: &dyn ServiceAuth) -> Result<Session>
where
    S: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let settings = auth.settings();
    let (hs, hello) = if settings.uses_cephx() {
        let (hs, hello) = ServiceHandshake::start(auth.service());
        (Some(hs), encoded(&hello)?)
    } else {
        (None, Bytes::new())
    };
    let hello = Message::AuthServerHello {
        service: auth.service().to_string(),
        client_methods: settings.service.clone(),
        daemon_methods: settings.cluster.clone(),
        service_hello: hello,
    };
    write_msg(s, FrameType::Response, hello).await?;
    let peer_text = peer.to_string();
    let result = match read_msg(s, FrameType::Request, &peer_text).await? {
        Message::AuthNone { entity } => accept_none(s, peer, &entity, settings).await,
        Message::AuthLogin { hello } => accept_login(s, peer, &hello, auth).await,
        Message::AuthAuthorize { authorizer } => match &hs {
            Some(hs) => accept_authorizer(s, peer, &authorizer, hs, auth).await,
            None => Err(denied("this cluster does not use cephx (auth_*_required = none)")),
        },
        _ => Err(Error::einval("expected an authentication request")),
    };
    if let Err(e) = &result {
        let _ = write_msg(s, FrameType::Response, Message::Error(e.clone())).await;
    }
    result
}

async fn accept_none<S: AsyncWrite + Unpin + ?Sized>(
    s: &mut S,
    peer: SocketAddr,
    entity: &str,
    settings: &AuthSettings,
) -> Result<Session> {
    let entity: EntityName = entity.parse()?;
    if let Some(e) = refuse_method(&entity, AuthMethod::None, settings) {
        return Err(e);
    }
    write_msg(s, FrameType::Response, Message::Ok).await?;
    Ok(Session::new(peer, entity, AuthMethod::None))
}

async fn accept_login<S: AsyncRead + AsyncWrite + Unpin + ?Sized>(
    s: &mut S,
    peer: SocketAddr,
    hello: &[u8],
    auth: &dyn ServiceAuth,
) -> Result<Session> {
    let hello: Hello = decode(hello)?;
    if let Some(e) = refuse_method(&hello.entity, AuthMethod::Cephx, auth.settings()) {
        return Err(e);
    }
    let grant = auth.login(&hello.entity).await?;
    let (mon, challenge) = MonHandshake::start(hello);
    write_msg(s, FrameType::Response, Message::AuthChallenge { challenge: encoded(&challenge)? }).await?;
    let proof: ClientProof = match read_msg(s, FrameType::Request, &peer.to_string()).await? {
        Message::AuthProof { proof } => decode(&proof)?,
        _ => return Err(Error::einval("expected a login proof")),
    };
    let services: Vec<(&str, &ServiceKeys)> = grant.services.iter().map(|(n, k)| (n.as_str(), k)).collect();
    let global_id = u64::from_le_bytes(cairn_auth::random_nonce()[..8].try_into().expect("8 bytes")) | 1;
    let issue = Issue {
        global_id,
        caps: &grant.caps,
        services: &services,
        now: now_secs(),
        ttl_secs: grant.ttl_secs,
    };
    let reply = mon.accept(&grant.secret, &proof, &issue)?;
    write_msg(s, FrameType::Response, Message::AuthTickets { reply: encoded(&reply)? }).await?;
    let mut session = Session::new(peer, mon.entity().clone(), AuthMethod::Cephx);
    session.global_id = global_id;
    session.caps = grant.caps;
    Ok(session)
}

async fn accept_authorizer<S: AsyncWrite + Unpin + ?Sized>(
    s: &mut S,
    peer: SocketAddr,
    authorizer: &[u8],
    hs: &ServiceHandshake,
    auth: &dyn ServiceAuth,
) -> Result<Session> {
    let authorizer: Authorizer = decode(authorizer)?;
    let no_keys = || Error::eagain(format!("{} has no {} ticket keys yet", auth.service(), auth.service()));
    let keys = auth.service_keys(false).await.ok_or_else(no_keys)?;
    let accepted = match hs.accept(&keys, &authorizer, now_secs()) {
        Ok(a) => a,
        // Perhaps sealed with a key generation the mons made after our last update: refresh once.
        Err(e) if e.errno == errno::EACCES && !e.message.contains("expired") => {
            let keys = auth.service_keys(true).await.ok_or_else(no_keys)?;
            hs.accept(&keys, &authorizer, now_secs())?
        }
        Err(e) => return Err(e),
    };
    let ticket = accepted.ticket;
    if let Some(e) = refuse_method(&ticket.entity, AuthMethod::Cephx, auth.settings()) {
        return Err(e);
    }
    auth.admit(&ticket.entity).await?;
    write_msg(s, FrameType::Response, Message::AuthAuthorized { reply: encoded(&accepted.reply)? }).await?;
    let mut session = Session::new(peer, ticket.entity.clone(), AuthMethod::Cephx);
    session.global_id = ticket.global_id;
    session.caps = ticket.caps.clone();
    session.expires_secs = Some(ticket.expires);
    Ok(session)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A service with fixed keys; as a mon it knows one entity's secret.
    struct TestService {
        service: &'static str,
        settings: AuthSettings,
        secret: Secret,
        keys: ServiceKeys,
    }

    impl ServiceAuth for TestService {
        fn service(&self) -> &'static str {
            self.service
        }
        fn settings(&self) -> &AuthSettings {
            &self.settings
        }
        fn login(&self, entity: &EntityName) -> BoxFuture<'_, Result<LoginGrant>> {
            let grant = if entity.to_string() == "client.glance" {
                Ok(LoginGrant {
                    secret: self.secret.clone(),
                    caps: [("osd".to_string(), "allow r".to_string())].into(),
                    services: vec![("osd".into(), self.keys.clone())],
                    ttl_secs: 60,
                })
            } else {
                Err(denied(format!("authentication failed for {entity}: no such entity")))
            };
            Box::pin(async move { grant })
        }
        fn service_keys(&self, _refresh: bool) -> BoxFuture<'_, Option<ServiceKeys>> {
            let keys = self.keys.clone();
            Box::pin(async move { Some(keys) })
        }
    }

    fn peer() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 1))
    }

    /// One handshake over an in-memory pipe: (client result, server result).
    async fn exchange(auth: &ClientAuth, service: &TestService) -> (Result<String>, Result<Session>) {
        let (mut c, mut s) = tokio::io::duplex(1 << 20);
        // The client's end closes as soon as it is done (a refusing client hangs up).
        let client = async move { client_handshake(&mut c, "test", auth).await };
        tokio::join!(client, server_handshake(&mut s, peer(), service))
    }

    fn client(secret: &Secret, methods: Vec<AuthMethod>) -> Arc<ClientAuth> {
        let entity: EntityName = "client.glance".parse().unwrap();
        ClientAuth::new(entity, Some(secret.clone()), methods, Vec::new(), crate::net::tcp())
    }

    #[tokio::test]
    async fn login_then_ticket_then_refusals() {
        let secret = Secret::generate();
        let keys = ServiceKeys::generate();
        let mon = TestService {
            service: "mon",
            settings: AuthSettings::cephx(),
            secret: secret.clone(),
            keys: keys.clone(),
        };
        let osd =
            TestService { service: "osd", settings: AuthSettings::cephx(), secret: secret.clone(), keys };
        let auth = client(&secret, vec![AuthMethod::Cephx]);
        let (c, s) = exchange(&auth, &mon).await;
        assert_eq!(c.unwrap(), "mon");
        let s = s.unwrap();
        assert_eq!(
            (s.entity.to_string(), s.method, s.expires_secs),
            ("client.glance".into(), AuthMethod::Cephx, None)
        );
        assert!(auth.session().unwrap().tickets.contains_key("osd"));
        // The OSD accepts the ticket from the login and learns the caps from it.
        let (c, s) = exchange(&auth, &osd).await;
        assert_eq!(c.unwrap(), "osd");
        let s = s.unwrap();
        assert_eq!(s.caps["osd"], "allow r");
        assert!(s.expires_secs.is_some_and(|t| t > now_secs()));
        // A wrong key: both ends see EACCES with the mon's reason.
        let wrong = client(&Secret::generate(), vec![AuthMethod::Cephx]);
        let (c, s) = exchange(&wrong, &mon).await;
        let e = c.unwrap_err();
        assert!(e.errno == errno::EACCES && e.message.contains("bad proof"), "{e}");
        assert_eq!(s.unwrap_err().errno, errno::EACCES);
        // Modes that do not match refuse on the client side, naming the settings.
        let none = client(&secret, vec![AuthMethod::None]);
        let (c, _) = exchange(&none, &mon).await;
        let e = c.unwrap_err();
        assert!(e.message.contains("requires cephx authentication (auth_service_required)"), "{e}");
        let none_mon = TestService {
            service: "mon",
            settings: AuthSettings::none(),
            secret,
            keys: ServiceKeys::generate(),
        };
        let (c, s) = exchange(&none, &none_mon).await;
        assert_eq!((c.unwrap(), s.unwrap().method), ("mon".to_string(), AuthMethod::None));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Garbage from a peer (a valid frame header or not) is refused without panicking.
        #[test]
        fn garbage_handshakes_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..2048), framed: bool) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let service = TestService {
                service: "osd",
                settings: AuthSettings::cephx(),
                secret: Secret::generate(),
                keys: ServiceKeys::generate(),
            };
            let input = if framed {
                let mut out = bytes::BytesMut::new();
                frame::encode_frame(FrameType::Request, &bytes, &mut out);
                out.to_vec()
            } else {
                bytes
            };
            let r = rt.block_on(async {
                let (mut c, mut s) = tokio::io::duplex(1 << 16);
                c.write_all(&input).await.unwrap();
                // End of input, but the peer stays there to read the server's answers.
                c.shutdown().await.unwrap();
                let r = server_handshake(&mut s, peer(), &service).await;
                drop(c);
                r
            });
            let e = r.unwrap_err();
            prop_assert!([errno::EINVAL, errno::ENOTCONN, errno::EACCES].contains(&e.errno), "{}", e);
        }
    }

    #[test]
    fn method_lists_parse() {
        assert_eq!(AuthMethod::parse_list("x", "cephx").unwrap(), vec![AuthMethod::Cephx]);
        assert_eq!(
            AuthMethod::parse_list("x", "cephx, none").unwrap(),
            vec![AuthMethod::Cephx, AuthMethod::None]
        );
        assert_eq!(AuthMethod::parse_list("x", "none cephx none").unwrap().len(), 2);
        let e = AuthMethod::parse_list("auth_client_required", "kerberos").unwrap_err();
        assert!(e.message.contains("unknown authentication method 'kerberos'"), "{}", e.message);
        assert!(AuthMethod::parse_list("x", " , ").is_err());
    }

    #[test]
    fn settings_from_conf() {
        let conf = cairn_types::conf::Conf::parse(
            "[global]\nauth supported = none\n[client]\nauth client required = cephx, none\n\
             auth service ticket ttl = 5\n",
        )
        .unwrap();
        let s = AuthSettings::from_conf(&conf, "client.admin").unwrap();
        assert_eq!(s.cluster, vec![AuthMethod::None]);
        assert_eq!(s.client, vec![AuthMethod::Cephx, AuthMethod::None]);
        assert_eq!(s.ticket_ttl_secs, 5);
        let d = AuthSettings::from_conf(&cairn_types::conf::Conf::new(), "osd.1").unwrap();
        assert_eq!(d, AuthSettings::cephx());
    }
}
