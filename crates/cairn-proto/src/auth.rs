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
//!
//! The same exchange negotiates the on-wire mode ([`ConnMode`], Ceph's `ms_*_mode`). A server
//! that accepts only `crc` sends the plain `AuthServerHello` and nothing changes. Otherwise it
//! sends `AuthServerHelloModes` (its modes for clients and for daemons); the client picks the
//! first of its own modes the server accepts and states it in `AuthMode` right after its last
//! handshake message, with a MAC under the connection key over the whole offer and the choice;
//! the server checks both before its final reply. In `secure` mode both ends then seal every
//! later frame with a [`FrameCipher`] (see [`crate::rpc`]).

use crate::frame::{self, FrameType, HEADER_BYTES};
use crate::msg::{decode_envelope, Envelope, Message};
use crate::net::{BoxFuture, Network};
use bytes::Bytes;
use cairn_auth::handshake::{decode, encode};
use cairn_auth::{
    AuthReply, Authorizer, AuthorizerReply, Challenge, ClientHandshake, ClientProof, ClientSession,
    ClientTicket, ConnKey, EntityName, EntityType, FrameCipher, Hello, Issue, MonHandshake, OsdCaps, Secret,
    ServiceHandshake, ServiceHello, ServiceKeys, Side,
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
        parse_choices(
            option,
            text,
            "authentication method",
            &[AuthMethod::Cephx, AuthMethod::None],
            Self::as_str,
        )
    }
}

/// Parses a Ceph list option (`a, b`; spaces, `,` or `;` separate) of names of `choices` into
/// distinct values in the order given.
fn parse_choices<T: Copy + PartialEq>(
    option: &str,
    text: &str,
    what: &str,
    choices: &[T],
    name: fn(T) -> &'static str,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for word in text.split([',', ';', ' ', '\t']).filter(|w| !w.is_empty()) {
        let Some(&m) = choices.iter().find(|&&c| name(c) == word) else {
            let expected = choices.iter().map(|&c| name(c)).collect::<Vec<_>>().join(" or ");
            return Err(Error::einval(format!("{option}: unknown {what} '{word}' (expected {expected})")));
        };
        if !out.contains(&m) {
            out.push(m);
        }
    }
    if out.is_empty() {
        return Err(Error::einval(format!("{option}: no {what} given")));
    }
    Ok(out)
}

fn method_list(methods: &[AuthMethod]) -> String {
    methods.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ")
}

/// An on-wire mode, as Ceph's `ms_*_mode` options name them: `crc` frames carry a CRC-32C of
/// their payload (integrity against accidents only); `secure` frames are sealed with AES-256-GCM
/// under keys derived from the connection's key (needs cephx).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConnMode {
    Crc,
    Secure,
}

impl ConnMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnMode::Crc => "crc",
            ConnMode::Secure => "secure",
        }
    }

    /// Parses `crc`, `secure`, or a list in order of preference (`secure crc`; spaces, `,` or
    /// `;` separate, as in Ceph).
    pub fn parse_list(option: &str, text: &str) -> Result<Vec<ConnMode>> {
        parse_choices(option, text, "on-wire mode", &[ConnMode::Crc, ConnMode::Secure], Self::as_str)
    }
}

fn mode_list(modes: &[ConnMode]) -> String {
    modes.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(" ")
}

/// Ceph's `ms_*_mode` settings of one process, each a list in order of preference. The
/// `ms_mon_*` ones apply to connections with mons and default to their plain counterparts
/// (Ceph defaults them to `secure crc`; Cairn keeps `crc` unless told otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModeSettings {
    /// `ms_cluster_mode`: what a daemon accepts from daemons and asks of them.
    pub cluster: Vec<ConnMode>,
    /// `ms_service_mode`: what a daemon accepts from clients.
    pub service: Vec<ConnMode>,
    /// `ms_client_mode`: what a client asks of daemons.
    pub client: Vec<ConnMode>,
    /// `ms_mon_cluster_mode`, `ms_mon_service_mode`, `ms_mon_client_mode` when set.
    pub mon_cluster: Option<Vec<ConnMode>>,
    pub mon_service: Option<Vec<ConnMode>>,
    pub mon_client: Option<Vec<ConnMode>>,
}

impl Default for ModeSettings {
    fn default() -> Self {
        ModeSettings::all(ConnMode::Crc)
    }
}

impl ModeSettings {
    /// One mode for every connection.
    pub fn all(mode: ConnMode) -> Self {
        let m = vec![mode];
        ModeSettings {
            cluster: m.clone(),
            service: m.clone(),
            client: m,
            mon_cluster: None,
            mon_service: None,
            mon_client: None,
        }
    }

    /// Reads the six `ms_*_mode` options for `entity` (default `crc`).
    pub fn from_conf(conf: &cairn_types::conf::Conf, entity: &str) -> Result<Self> {
        let get = |key: &str| -> Result<Option<Vec<ConnMode>>> {
            conf.get(entity, key)
                .map(|v| ConnMode::parse_list(&cairn_types::conf::normalize_key(key), &v))
                .transpose()
        };
        let crc = || vec![ConnMode::Crc];
        Ok(ModeSettings {
            cluster: get("ms cluster mode")?.unwrap_or_else(crc),
            service: get("ms service mode")?.unwrap_or_else(crc),
            client: get("ms client mode")?.unwrap_or_else(crc),
            mon_cluster: get("ms mon cluster mode")?,
            mon_service: get("ms mon service mode")?,
            mon_client: get("ms mon client mode")?,
        })
    }

    /// What a server of `service` accepts from a daemon or a client peer, and the option that
    /// says so.
    pub fn accepted(&self, service: &str, daemon_peer: bool) -> (&[ConnMode], &'static str) {
        match (service == "mon", daemon_peer) {
            (mon, true) => self.between_daemons(mon),
            (true, false) => pick(&self.mon_service, &self.service, "ms_mon_service_mode", "ms_service_mode"),
            (false, false) => (&self.service, "ms_service_mode"),
        }
    }

    /// What this process asks of a server of `service` (as a daemon or as a client), in order
    /// of preference, and the option that says so. A daemon uses `ms_cluster_mode` towards
    /// mons too (`ms_mon_cluster_mode` when set), where Ceph uses `ms_mon_client_mode`.
    pub fn wanted(&self, service: &str, daemon: bool) -> (&[ConnMode], &'static str) {
        match (service == "mon", daemon) {
            (mon, true) => self.between_daemons(mon),
            (true, false) => pick(&self.mon_client, &self.client, "ms_mon_client_mode", "ms_client_mode"),
            (false, false) => (&self.client, "ms_client_mode"),
        }
    }

    /// The modes of daemon-to-daemon connections (both ends read the same options).
    fn between_daemons(&self, with_mon: bool) -> (&[ConnMode], &'static str) {
        if with_mon {
            pick(&self.mon_cluster, &self.cluster, "ms_mon_cluster_mode", "ms_cluster_mode")
        } else {
            (&self.cluster, "ms_cluster_mode")
        }
    }

    /// Whether any connection may be `secure`.
    pub fn uses_secure(&self) -> bool {
        [&self.cluster, &self.service, &self.client]
            .into_iter()
            .chain([&self.mon_cluster, &self.mon_service, &self.mon_client].into_iter().flatten())
            .any(|l| l.contains(&ConnMode::Secure))
    }
}

fn pick<'a>(
    specific: &'a Option<Vec<ConnMode>>,
    general: &'a [ConnMode],
    specific_name: &'static str,
    general_name: &'static str,
) -> (&'a [ConnMode], &'static str) {
    match specific {
        Some(m) => (m, specific_name),
        None => (general, general_name),
    }
}

/// Label of the MAC that binds the on-wire mode negotiation to the connection key.
const MODE_MAC_LABEL: &str = "on-wire mode";

/// Everything a server offered in `AuthServerHelloModes`, as both ends saw it: what the
/// client's `AuthMode` MAC covers (with the chosen mode).
struct ModeOffer<'a> {
    service: &'a str,
    client_methods: &'a [AuthMethod],
    daemon_methods: &'a [AuthMethod],
    client_modes: &'a [ConnMode],
    daemon_modes: &'a [ConnMode],
}

impl ModeOffer<'_> {
    fn transcript(&self, mode: ConnMode) -> Vec<u8> {
        let fields = (
            self.service,
            self.client_methods,
            self.daemon_methods,
            self.client_modes,
            self.daemon_modes,
            mode,
        );
        postcard::to_allocvec(&fields).expect("encoding to a vec cannot fail")
    }
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
    /// The on-wire modes (`ms_*_mode`).
    pub modes: ModeSettings,
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
            modes: ModeSettings::default(),
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
            modes: ModeSettings::default(),
        }
    }

    /// Reads `auth cluster required`, `auth service required`, `auth client required` (each
    /// defaulting to `auth supported`, then cephx), `auth service ticket ttl` and the
    /// `ms_*_mode` options for `entity`.
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
        let settings = AuthSettings {
            cluster: get("auth cluster required")?,
            service: get("auth service required")?,
            client: get("auth client required")?,
            ticket_ttl_secs: ttl,
            modes: ModeSettings::from_conf(conf, entity)?,
        };
        settings.check_modes()?;
        Ok(settings)
    }

    /// `secure` needs a connection key, so a mode list of only `secure` next to a method list
    /// without cephx can never connect: refused when the settings are read.
    fn check_modes(&self) -> Result<()> {
        let m = &self.modes;
        let pairs = [
            (m.accepted("osd", true), &self.cluster, "auth_cluster_required"),
            (m.accepted("mon", true), &self.cluster, "auth_cluster_required"),
            (m.accepted("osd", false), &self.service, "auth_service_required"),
            (m.accepted("mon", false), &self.service, "auth_service_required"),
            (m.wanted("osd", false), &self.client, "auth_client_required"),
            (m.wanted("mon", false), &self.client, "auth_client_required"),
        ];
        for ((modes, mode_option), methods, method_option) in pairs {
            if !modes.contains(&ConnMode::Crc) && !methods.contains(&AuthMethod::Cephx) {
                return Err(Error::einval(format!(
                    "{mode_option} = {} needs cephx authentication, but {method_option} = {}",
                    mode_list(modes),
                    method_list(methods)
                )));
            }
        }
        Ok(())
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
    modes: ModeSettings,
    mons: Vec<String>,
    net: Arc<dyn Network>,
    login: Mutex<Option<Login>>,
    renewing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ClientAuth {{ entity: {}, methods: [{}], modes: {:?} }}",
            self.entity,
            method_list(&self.methods),
            self.modes
        )
    }
}

impl ClientAuth {
    /// `secret` is needed for cephx; `methods` are those this process is willing to use, in
    /// order of preference; `mons` are where it logs in to get and renew tickets.
    /// Connections use `crc` mode ([`ClientAuth::with_modes`] for others).
    pub fn new(
        entity: EntityName,
        secret: Option<Secret>,
        methods: Vec<AuthMethod>,
        mons: Vec<String>,
        net: Arc<dyn Network>,
    ) -> Arc<Self> {
        ClientAuth::with_modes(entity, secret, methods, ModeSettings::default(), mons, net)
    }

    /// [`ClientAuth::new`] with the on-wire modes this process asks for ([`ModeSettings::wanted`]).
    pub fn with_modes(
        entity: EntityName,
        secret: Option<Secret>,
        methods: Vec<AuthMethod>,
        modes: ModeSettings,
        mons: Vec<String>,
        net: Arc<dyn Network>,
    ) -> Arc<Self> {
        Arc::new(ClientAuth {
            entity,
            secret,
            methods,
            modes,
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

    pub fn modes(&self) -> &ModeSettings {
        &self.modes
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
                let service = Box::pin(client_handshake(&mut *stream, addr, self)).await?.service;
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

/// What the client's half of a handshake established.
#[derive(Debug)]
pub struct Established {
    /// The server's service: `"mon"` or `"osd"`.
    pub service: String,
    pub mode: ConnMode,
    /// In `secure` mode, the cipher every later frame is sealed and opened with.
    pub cipher: Option<FrameCipher>,
}

/// The client's half of a connection's handshake: authenticates as `auth` says and agrees on
/// the on-wire mode.
pub async fn client_handshake<S>(s: &mut S, addr: &str, auth: &ClientAuth) -> Result<Established>
where
    S: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let (service, client_methods, daemon_methods, service_hello, modes) =
        match read_msg(s, FrameType::Response, addr).await? {
            Message::AuthServerHello { service, client_methods, daemon_methods, service_hello } => {
                (service, client_methods, daemon_methods, service_hello, None)
            }
            Message::AuthServerHelloModes {
                service,
                client_methods,
                daemon_methods,
                service_hello,
                client_modes,
                daemon_modes,
            } => (service, client_methods, daemon_methods, service_hello, Some((client_modes, daemon_modes))),
            _ => return Err(Error::einval(format!("{addr} did not start the authentication handshake"))),
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
    let offer = modes.as_ref().map(|(client_modes, daemon_modes)| ModeOffer {
        service: &service,
        client_methods: &client_methods,
        daemon_methods: &daemon_methods,
        client_modes,
        daemon_modes,
    });
    let mode = choose_mode(auth, addr, &service, method, offer.as_ref())?;
    // The choice, bound to the connection key when there is one; sent after the last message.
    let choice = |key: Option<&ConnKey>| {
        offer.as_ref().map(|o| {
            let mac = key.map_or_else(Bytes::new, |k| {
                Bytes::copy_from_slice(&k.mac(MODE_MAC_LABEL, &o.transcript(mode)))
            });
            Message::AuthMode { mode, mac }
        })
    };
    let fail = |e: Error| Error::new(e.errno, format!("{service} at {addr}: {}", e.message));
    let key = match method {
        AuthMethod::None => {
            write_msg(s, FrameType::Request, Message::AuthNone { entity: auth.entity.to_string() }).await?;
            if let Some(m) = choice(None) {
                write_msg(s, FrameType::Request, m).await?;
            }
            match read_msg(s, FrameType::Response, addr).await? {
                Message::Ok => None,
                Message::Error(e) => return Err(fail(e)),
                _ => return Err(Error::einval(format!("{addr}: unexpected reply to authentication"))),
            }
        }
        AuthMethod::Cephx if service == "mon" && auth.secret.is_some() => {
            Some(login(s, addr, auth, &choice).await.map_err(fail)?)
        }
        AuthMethod::Cephx => {
            let hello: ServiceHello = decode(&service_hello)?;
            let ticket = auth.ticket(&service).await?;
            let (pending, authorizer) = ticket.authorizer(&hello);
            let msg = Message::AuthAuthorize { authorizer: encoded(&authorizer)? };
            write_msg(s, FrameType::Request, msg).await?;
            if let Some(m) = choice(Some(&pending.conn_key())) {
                write_msg(s, FrameType::Request, m).await?;
            }
            let reply = match read_msg(s, FrameType::Response, addr).await? {
                Message::AuthAuthorized { reply } => decode::<AuthorizerReply>(&reply)?,
                Message::Error(e) => return Err(fail(e)),
                _ => return Err(Error::einval(format!("{addr}: unexpected reply to authorizer"))),
            };
            Some(pending.finish(&reply).map_err(fail)?)
        }
    };
    let cipher = match (mode, key) {
        (ConnMode::Crc, _) => None,
        (ConnMode::Secure, Some(key)) => Some(FrameCipher::new(&key, Side::Client)),
        (ConnMode::Secure, None) => return Err(denied("on-wire mode secure without a connection key")),
    };
    Ok(Established { service, mode, cipher })
}

/// The first of the client's modes the server offers (a server without `AuthServerHelloModes`
/// offers only `crc`) that works with `method`; else a refusal naming both sides' settings.
fn choose_mode(
    auth: &ClientAuth,
    addr: &str,
    service: &str,
    method: AuthMethod,
    offer: Option<&ModeOffer>,
) -> Result<ConnMode> {
    let daemon = is_daemon(&auth.entity);
    let (wanted, ours) = auth.modes.wanted(service, daemon);
    let offered: &[ConnMode] = match offer {
        Some(o) if daemon => o.daemon_modes,
        Some(o) => o.client_modes,
        None => &[ConnMode::Crc],
    };
    let usable = |m: &ConnMode| offered.contains(m) && (*m == ConnMode::Crc || method == AuthMethod::Cephx);
    if let Some(m) = wanted.iter().copied().find(usable) {
        return Ok(m);
    }
    if wanted.iter().any(|m| offered.contains(m)) {
        return Err(denied(format!(
            "{service} at {addr}: on-wire mode secure needs cephx authentication, but {} authenticates \
             with none",
            auth.entity
        )));
    }
    // The server's option; at a mon its `ms_mon_*` one when set.
    let theirs = match (service == "mon", daemon) {
        (true, true) => "ms_cluster_mode / ms_mon_cluster_mode",
        (true, false) => "ms_service_mode / ms_mon_service_mode",
        (false, true) => "ms_cluster_mode",
        (false, false) => "ms_service_mode",
    };
    Err(denied(format!(
        "{service} at {addr} requires {} on-wire mode ({theirs}), but {} is configured for {} ({ours})",
        mode_list(offered),
        auth.entity,
        mode_list(wanted)
    )))
}

/// A cephx login on this connection; returns the connection's key. `choice` gives the
/// `AuthMode` to send after the proof, if the server asked for one.
async fn login<S: AsyncRead + AsyncWrite + Unpin + ?Sized>(
    s: &mut S,
    addr: &str,
    auth: &ClientAuth,
    choice: &(dyn Fn(Option<&ConnKey>) -> Option<Message> + Sync),
) -> Result<ConnKey> {
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
    let key = client.conn_key();
    if let Some(m) = choice(Some(&key)) {
        write_msg(s, FrameType::Request, m).await?;
    }
    let reply: AuthReply = match read_msg(s, FrameType::Response, addr).await? {
        Message::AuthTickets { reply } => decode(&reply)?,
        Message::Error(e) => return Err(e),
        _ => return Err(Error::einval("unexpected reply to login proof")),
    };
    // Opening the tickets proves the mon knows the secret, so the key is shared with the mon.
    auth.store(client.finish(&reply)?);
    Ok(key)
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
    /// The on-wire mode negotiated for this connection.
    pub mode: ConnMode,
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
            mode: ConnMode::Crc,
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

/// The server's half of a connection's handshake: the peer's session and, in `secure` mode, the
/// cipher for every later frame. On refusal the error is also sent to the peer before the caller
/// closes the connection.
pub async fn server_handshake<S>(
    s: &mut S,
    peer: SocketAddr,
    auth: &dyn ServiceAuth,
) -> Result<(Session, Option<FrameCipher>)>
where
    S: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let settings = auth.settings();
    let service = auth.service();
    let (hs, service_hello) = if settings.uses_cephx() {
        let (hs, hello) = ServiceHandshake::start(service);
        (Some(hs), encoded(&hello)?)
    } else {
        (None, Bytes::new())
    };
    let (client_modes, _) = settings.modes.accepted(service, false);
    let (daemon_modes, _) = settings.modes.accepted(service, true);
    // Only crc: the hello of servers that know no other mode, and no `AuthMode` expected.
    let offer = (client_modes != [ConnMode::Crc] || daemon_modes != [ConnMode::Crc]).then_some(ModeOffer {
        service,
        client_methods: &settings.service,
        daemon_methods: &settings.cluster,
        client_modes,
        daemon_modes,
    });
    let hello = match &offer {
        None => Message::AuthServerHello {
            service: service.to_string(),
            client_methods: settings.service.clone(),
            daemon_methods: settings.cluster.clone(),
            service_hello,
        },
        Some(o) => Message::AuthServerHelloModes {
            service: service.to_string(),
            client_methods: settings.service.clone(),
            daemon_methods: settings.cluster.clone(),
            service_hello,
            client_modes: o.client_modes.to_vec(),
            daemon_modes: o.daemon_modes.to_vec(),
        },
    };
    write_msg(s, FrameType::Response, hello).await?;
    let peer_text = peer.to_string();
    let offer = offer.as_ref();
    let result = match read_msg(s, FrameType::Request, &peer_text).await? {
        Message::AuthNone { entity } => accept_none(s, peer, &entity, auth, offer).await,
        Message::AuthLogin { hello } => accept_login(s, peer, &hello, auth, offer).await,
        Message::AuthAuthorize { authorizer } => match &hs {
            Some(hs) => accept_authorizer(s, peer, &authorizer, hs, auth, offer).await,
            None => Err(denied("this cluster does not use cephx (auth_*_required = none)")),
        },
        _ => Err(Error::einval("expected an authentication request")),
    };
    match result {
        Ok((session, key)) => {
            let cipher = match (session.mode, key) {
                (ConnMode::Crc, _) => None,
                (ConnMode::Secure, Some(k)) => Some(FrameCipher::new(&k, Side::Server)),
                // `read_mode` refuses secure without a key.
                (ConnMode::Secure, None) => {
                    return Err(denied("on-wire mode secure without a connection key"))
                }
            };
            Ok((session, cipher))
        }
        Err(e) => {
            let _ = write_msg(s, FrameType::Response, Message::Error(e.clone())).await;
            Err(e)
        }
    }
}

/// Reads the client's `AuthMode` (when the server offered modes) and checks it: its MAC under
/// the connection key (cephx) over the offer as this server made it, and the mode against this
/// server's settings for the peer's kind. Without an offer the mode is `crc`.
async fn read_mode<S: AsyncRead + Unpin + ?Sized>(
    s: &mut S,
    peer: SocketAddr,
    entity: &EntityName,
    auth: &dyn ServiceAuth,
    offer: Option<&ModeOffer<'_>>,
    key: Option<&ConnKey>,
) -> Result<ConnMode> {
    let Some(offer) = offer else { return Ok(ConnMode::Crc) };
    let (mode, mac) = match read_msg(s, FrameType::Request, &peer.to_string()).await? {
        Message::AuthMode { mode, mac } => (mode, mac),
        _ => return Err(Error::einval(format!("{entity}: expected the on-wire mode (AuthMode)"))),
    };
    if let Some(key) = key {
        if !key.verify(MODE_MAC_LABEL, &offer.transcript(mode), &mac) {
            return Err(denied(format!(
                "{entity}: the on-wire mode negotiation does not authenticate (altered in transit?)"
            )));
        }
    }
    let service = auth.service();
    let (accepted, option) = auth.settings().modes.accepted(service, is_daemon(entity));
    if !accepted.contains(&mode) {
        return Err(denied(format!(
            "{entity}: on-wire mode {} refused; this {service} requires {} ({option})",
            mode.as_str(),
            mode_list(accepted)
        )));
    }
    if mode == ConnMode::Secure && key.is_none() {
        return Err(denied(format!("{entity}: on-wire mode secure needs cephx authentication")));
    }
    Ok(mode)
}

async fn accept_none<S: AsyncRead + AsyncWrite + Unpin + ?Sized>(
    s: &mut S,
    peer: SocketAddr,
    entity: &str,
    auth: &dyn ServiceAuth,
    offer: Option<&ModeOffer<'_>>,
) -> Result<(Session, Option<ConnKey>)> {
    let entity: EntityName = entity.parse()?;
    if let Some(e) = refuse_method(&entity, AuthMethod::None, auth.settings()) {
        return Err(e);
    }
    let mode = read_mode(s, peer, &entity, auth, offer, None).await?;
    write_msg(s, FrameType::Response, Message::Ok).await?;
    let mut session = Session::new(peer, entity, AuthMethod::None);
    session.mode = mode;
    Ok((session, None))
}

async fn accept_login<S: AsyncRead + AsyncWrite + Unpin + ?Sized>(
    s: &mut S,
    peer: SocketAddr,
    hello: &[u8],
    auth: &dyn ServiceAuth,
    offer: Option<&ModeOffer<'_>>,
) -> Result<(Session, Option<ConnKey>)> {
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
    // The proof checked out: the client holds the secret, and so the same connection key.
    let key = mon.conn_key(&grant.secret);
    let mode = read_mode(s, peer, mon.entity(), auth, offer, Some(&key)).await?;
    write_msg(s, FrameType::Response, Message::AuthTickets { reply: encoded(&reply)? }).await?;
    let mut session = Session::new(peer, mon.entity().clone(), AuthMethod::Cephx);
    session.global_id = global_id;
    session.caps = grant.caps;
    session.mode = mode;
    Ok((session, Some(key)))
}

async fn accept_authorizer<S: AsyncRead + AsyncWrite + Unpin + ?Sized>(
    s: &mut S,
    peer: SocketAddr,
    authorizer: &[u8],
    hs: &ServiceHandshake,
    auth: &dyn ServiceAuth,
    offer: Option<&ModeOffer<'_>>,
) -> Result<(Session, Option<ConnKey>)> {
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
    let mode = read_mode(s, peer, &ticket.entity, auth, offer, Some(&accepted.conn_key)).await?;
    write_msg(s, FrameType::Response, Message::AuthAuthorized { reply: encoded(&accepted.reply)? }).await?;
    let mut session = Session::new(peer, ticket.entity.clone(), AuthMethod::Cephx);
    session.global_id = ticket.global_id;
    session.caps = ticket.caps.clone();
    session.expires_secs = Some(ticket.expires);
    session.mode = mode;
    Ok((session, Some(accepted.conn_key)))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A service with fixed keys; as a mon it knows one entity's secret.
    pub(crate) struct TestService {
        pub(crate) service: &'static str,
        pub(crate) settings: AuthSettings,
        pub(crate) secret: Secret,
        pub(crate) keys: ServiceKeys,
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

    pub(crate) fn peer() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 1))
    }

    type ServerSide = Result<(Session, Option<FrameCipher>)>;

    /// One handshake over an in-memory pipe: (client result, server result).
    async fn exchange(auth: &ClientAuth, service: &TestService) -> (Result<Established>, ServerSide) {
        let (mut c, mut s) = tokio::io::duplex(1 << 20);
        // The client's end closes as soon as it is done (a refusing client hangs up).
        let client = async move { client_handshake(&mut c, "test", auth).await };
        tokio::join!(client, server_handshake(&mut s, peer(), service))
    }

    fn client(secret: &Secret, methods: Vec<AuthMethod>) -> Arc<ClientAuth> {
        client_with_modes(secret, methods, ModeSettings::default())
    }

    pub(crate) fn client_with_modes(
        secret: &Secret,
        methods: Vec<AuthMethod>,
        modes: ModeSettings,
    ) -> Arc<ClientAuth> {
        let entity: EntityName = "client.glance".parse().unwrap();
        ClientAuth::with_modes(entity, Some(secret.clone()), methods, modes, Vec::new(), crate::net::tcp())
    }

    /// `ms_cluster_mode`, `ms_service_mode` and `ms_client_mode` all set to `text`.
    pub(crate) fn modes(text: &str) -> ModeSettings {
        let m = ConnMode::parse_list("test", text).unwrap();
        ModeSettings { cluster: m.clone(), service: m.clone(), client: m, ..ModeSettings::default() }
    }

    /// A mon and an OSD that share `secret`'s entity and one set of ticket keys.
    pub(crate) fn services(secret: &Secret, settings: AuthSettings) -> (TestService, TestService) {
        let keys = ServiceKeys::generate();
        let mon = TestService {
            service: "mon",
            settings: settings.clone(),
            secret: secret.clone(),
            keys: keys.clone(),
        };
        let osd = TestService { service: "osd", settings, secret: secret.clone(), keys };
        (mon, osd)
    }

    fn cephx_with(modes: ModeSettings) -> AuthSettings {
        AuthSettings { modes, ..AuthSettings::cephx() }
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
        let c = c.unwrap();
        assert_eq!((c.service.as_str(), c.mode, c.cipher.is_none()), ("mon", ConnMode::Crc, true));
        let (s, cipher) = s.unwrap();
        assert!(cipher.is_none() && s.mode == ConnMode::Crc);
        assert_eq!(
            (s.entity.to_string(), s.method, s.expires_secs),
            ("client.glance".into(), AuthMethod::Cephx, None)
        );
        assert!(auth.session().unwrap().tickets.contains_key("osd"));
        // The OSD accepts the ticket from the login and learns the caps from it.
        let (c, s) = exchange(&auth, &osd).await;
        assert_eq!(c.unwrap().service, "osd");
        let (s, _) = s.unwrap();
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
        assert_eq!((c.unwrap().service, s.unwrap().0.method), ("mon".to_string(), AuthMethod::None));
    }

    /// Seals a frame with one end's cipher and opens it with the other's.
    fn ciphers_agree(client: &mut FrameCipher, server: &mut FrameCipher) {
        let f = client.seal(b"header", b"request").unwrap();
        assert_eq!(server.open(b"header", &f).unwrap(), b"request");
        let f = server.seal(b"header", b"reply").unwrap();
        assert_eq!(client.open(b"header", &f).unwrap(), b"reply");
    }

    #[tokio::test]
    async fn modes_are_negotiated_over_login_and_ticket() {
        let secret = Secret::generate();
        let (mon, osd) = services(&secret, cephx_with(modes("secure")));
        let auth = client_with_modes(&secret, vec![AuthMethod::Cephx], modes("secure"));
        // The login at the mon, then the ticket at the OSD: both secure, with one key per end.
        for service in [&mon, &osd] {
            let (c, s) = exchange(&auth, service).await;
            let (c, (s, server_cipher)) = (c.unwrap(), s.unwrap());
            assert_eq!((c.mode, s.mode), (ConnMode::Secure, ConnMode::Secure));
            ciphers_agree(&mut c.cipher.unwrap(), &mut server_cipher.unwrap());
        }
        // The client's preference decides among what the server accepts.
        let (mon, osd) = services(&secret, cephx_with(modes("secure crc")));
        for (wanted, got) in
            [("crc secure", ConnMode::Crc), ("secure crc", ConnMode::Secure), ("crc", ConnMode::Crc)]
        {
            let auth = client_with_modes(&secret, vec![AuthMethod::Cephx], modes(wanted));
            for service in [&mon, &osd] {
                let (c, s) = exchange(&auth, service).await;
                let (c, (s, cipher)) = (c.unwrap(), s.unwrap());
                assert_eq!(
                    (c.mode, s.mode, cipher.is_some()),
                    (got, got, got == ConnMode::Secure),
                    "{wanted}"
                );
            }
        }
        // A crc-only server (the plain hello): a client that also takes crc uses it.
        let (mon, _) = services(&secret, AuthSettings::cephx());
        let auth = client_with_modes(&secret, vec![AuthMethod::Cephx], modes("secure crc"));
        let (c, s) = exchange(&auth, &mon).await;
        assert_eq!((c.unwrap().mode, s.unwrap().0.mode), (ConnMode::Crc, ConnMode::Crc));
        // Daemons are held to the cluster modes, clients to the service modes.
        let settings = ModeSettings { service: vec![ConnMode::Crc], ..modes("secure") };
        let (mon, _) = services(&secret, cephx_with(settings));
        let (c, _) = exchange(&auth, &mon).await;
        assert_eq!(c.unwrap().mode, ConnMode::Crc);
    }

    #[tokio::test]
    async fn mismatched_modes_refuse_clearly() {
        let secret = Secret::generate();
        let (mon, osd) = services(&secret, cephx_with(modes("secure")));
        // A crc-only client refuses a secure-only server itself, naming both settings.
        let crc = client_with_modes(&secret, vec![AuthMethod::Cephx], modes("crc"));
        let (c, _) = exchange(&crc, &osd).await;
        let e = c.unwrap_err();
        assert_eq!(e.errno, errno::EACCES);
        assert!(
            e.message.contains(
                "osd at test requires secure on-wire mode (ms_service_mode), but client.glance is configured \
                 for crc (ms_client_mode)"
            ),
            "{e}"
        );
        let (c, _) = exchange(&crc, &mon).await;
        let e = c.unwrap_err().message;
        assert!(e.contains("requires secure on-wire mode (ms_service_mode / ms_mon_service_mode)"), "{e}");
        // A secure-only client refuses a crc-only server.
        let (crc_mon, _) = services(&secret, AuthSettings::cephx());
        let secure = client_with_modes(&secret, vec![AuthMethod::Cephx], modes("secure"));
        let (c, _) = exchange(&secure, &crc_mon).await;
        let e = c.unwrap_err().message;
        assert!(e.contains("requires crc on-wire mode") && e.contains("configured for secure"), "{e}");
        // secure needs cephx: a none client that insists on it refuses, the server too.
        let none_settings = AuthSettings { modes: modes("secure crc"), ..AuthSettings::none() };
        let (none_mon, _) = services(&secret, none_settings);
        let none_secure = client_with_modes(&secret, vec![AuthMethod::None], modes("secure"));
        let (c, _) = exchange(&none_secure, &none_mon).await;
        let e = c.unwrap_err().message;
        assert!(e.contains("on-wire mode secure needs cephx authentication"), "{e}");
        let none_either = client_with_modes(&secret, vec![AuthMethod::None], modes("secure crc"));
        let (c, s) = exchange(&none_either, &none_mon).await;
        assert_eq!((c.unwrap().mode, s.unwrap().0.mode), (ConnMode::Crc, ConnMode::Crc));
        // Settings that can never connect are refused when read.
        let conf =
            cairn_types::conf::Conf::parse("[global]\nauth supported = none\nms client mode = secure\n");
        let e = AuthSettings::from_conf(&conf.unwrap(), "client.admin").unwrap_err();
        assert!(e.message.contains("ms_client_mode = secure needs cephx authentication"), "{}", e.message);
    }

    /// A client that logs in by hand and sends `mode` with a MAC over `offer_as_seen` (the
    /// offer as the server made it when `None`): what a crc-only or meddling peer would send.
    async fn rogue_login(
        service: &TestService,
        mode: ConnMode,
        offer_as_seen: Option<(Vec<ConnMode>, Vec<ConnMode>)>,
    ) -> (Message, ServerSide) {
        let (mut c, mut s) = tokio::io::duplex(1 << 20);
        let secret = service.secret.clone();
        let client = async move {
            let Message::AuthServerHelloModes {
                service,
                client_methods,
                daemon_methods,
                client_modes,
                daemon_modes,
                ..
            } = read_msg(&mut c, FrameType::Response, "test").await.unwrap()
            else {
                panic!("no modes offered")
            };
            let (cm, dm) = offer_as_seen.unwrap_or((client_modes, daemon_modes));
            let offer = ModeOffer {
                service: &service,
                client_methods: &client_methods,
                daemon_methods: &daemon_methods,
                client_modes: &cm,
                daemon_modes: &dm,
            };
            let (hs, hello) = ClientHandshake::start("client.glance".parse().unwrap(), &secret);
            write_msg(&mut c, FrameType::Request, Message::AuthLogin { hello: encoded(&hello).unwrap() })
                .await
                .unwrap();
            let Message::AuthChallenge { challenge } =
                read_msg(&mut c, FrameType::Response, "t").await.unwrap()
            else {
                panic!("no challenge")
            };
            let (hs, proof) = hs.prove(&decode(&challenge).unwrap());
            write_msg(&mut c, FrameType::Request, Message::AuthProof { proof: encoded(&proof).unwrap() })
                .await
                .unwrap();
            let mac = hs.conn_key().mac(MODE_MAC_LABEL, &offer.transcript(mode));
            let msg = Message::AuthMode { mode, mac: Bytes::copy_from_slice(&mac) };
            write_msg(&mut c, FrameType::Request, msg).await.unwrap();
            read_msg(&mut c, FrameType::Response, "test").await.unwrap()
        };
        tokio::join!(client, server_handshake(&mut s, peer(), service))
    }

    #[tokio::test]
    async fn the_server_checks_the_mode_and_its_mac() {
        let secret = Secret::generate();
        let (mon, _) = services(&secret, cephx_with(modes("secure")));
        // A client that sends crc anyway is refused by the secure-only server.
        let (answer, s) = rogue_login(&mon, ConnMode::Crc, None).await;
        let Message::Error(e) = answer else { panic!("not refused: {answer:?}") };
        assert_eq!(e.errno, errno::EACCES);
        assert!(
            e.message.contains(
                "client.glance: on-wire mode crc refused; this mon requires secure (ms_service_mode)"
            ),
            "{e}"
        );
        assert_eq!(s.unwrap_err().message, e.message);
        // The same, honest: accepted.
        let (answer, s) = rogue_login(&mon, ConnMode::Secure, None).await;
        assert!(matches!(answer, Message::AuthTickets { .. }), "{answer:?}");
        assert_eq!(s.unwrap().0.mode, ConnMode::Secure);
        // A client that saw another offer than the server made (a hello altered on the way, here
        // "crc only" where the server offered "secure crc"): its MAC does not check out.
        let (mon, _) = services(&secret, cephx_with(modes("secure crc")));
        let altered = Some((vec![ConnMode::Crc], vec![ConnMode::Crc]));
        let (answer, s) = rogue_login(&mon, ConnMode::Crc, altered).await;
        let Message::Error(e) = answer else { panic!("not refused: {answer:?}") };
        assert!(e.message.contains("on-wire mode negotiation does not authenticate"), "{e}");
        assert_eq!(s.unwrap_err().errno, errno::EACCES);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Garbage from a peer (a valid frame header or not) is refused without panicking.
        #[test]
        fn garbage_handshakes_are_refused(
            bytes in proptest::collection::vec(any::<u8>(), 0..2048),
            framed: bool,
            secure: bool,
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let modes = if secure { modes("secure crc") } else { ModeSettings::default() };
            let service = TestService {
                service: "osd",
                settings: AuthSettings { modes, ..AuthSettings::cephx() },
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
    fn mode_lists_parse() {
        assert_eq!(ConnMode::parse_list("x", "secure").unwrap(), vec![ConnMode::Secure]);
        assert_eq!(ConnMode::parse_list("x", "secure crc").unwrap(), vec![ConnMode::Secure, ConnMode::Crc]);
        assert_eq!(
            ConnMode::parse_list("x", "crc, secure; crc").unwrap(),
            vec![ConnMode::Crc, ConnMode::Secure]
        );
        let e = ConnMode::parse_list("ms_client_mode", "tls").unwrap_err();
        assert!(e.message.contains("ms_client_mode: unknown on-wire mode 'tls'"), "{}", e.message);
        assert!(ConnMode::parse_list("x", " ").is_err());
        // ms_mon_* default to their plain counterparts; daemons ask with the cluster modes.
        let conf = cairn_types::conf::Conf::parse(
            "[global]\nms cluster mode = secure\nms_service_mode = secure crc\n[client]\nms client mode = crc secure\n\
             ms mon client mode = secure\n",
        )
        .unwrap();
        let m = ModeSettings::from_conf(&conf, "client.admin").unwrap();
        assert_eq!(m.wanted("osd", false), (&[ConnMode::Crc, ConnMode::Secure][..], "ms_client_mode"));
        assert_eq!(m.wanted("mon", false), (&[ConnMode::Secure][..], "ms_mon_client_mode"));
        let m = ModeSettings::from_conf(&conf, "osd.0").unwrap();
        assert_eq!(m.wanted("mon", true), (&[ConnMode::Secure][..], "ms_cluster_mode"));
        assert_eq!(m.accepted("mon", false), (&[ConnMode::Secure, ConnMode::Crc][..], "ms_service_mode"));
        assert_eq!(m.accepted("osd", true), (&[ConnMode::Secure][..], "ms_cluster_mode"));
        assert_eq!(m.wanted("osd", false).0, [ConnMode::Crc], "no [client] section for an OSD");
        assert_eq!(
            ModeSettings::from_conf(&cairn_types::conf::Conf::new(), "osd.1").unwrap(),
            ModeSettings::default()
        );
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
