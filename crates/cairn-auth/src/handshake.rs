//! The crypto of Cairn's cephx-shaped handshake: message types, the three state machines
//! (client, mon, service) and the optional frame cipher. Transport-agnostic: callers move the
//! messages, encoded with [`encode`] / [`decode`], over whatever connection they have.
//! See the crate docs for the message flow.

use std::collections::BTreeMap;
use std::fmt;

use cairn_types::{errno, Error, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::crypto::{self, Cipher, GCM_NONCE_LEN, GCM_TAG_LEN, KEY_LEN, MAC_LEN};
use crate::entity::EntityName;
use crate::key::Secret;

pub const NONCE_LEN: usize = 16;
/// Largest encoded handshake message or ticket blob accepted.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Most service tickets one reply may carry.
pub const MAX_TICKETS: usize = 16;
pub const TICKET_VERSION: u8 = 1;

pub type Nonce = [u8; NONCE_LEN];
pub type Mac = [u8; MAC_LEN];

fn denied(msg: impl Into<String>) -> Error {
    Error::new(errno::EACCES, msg)
}

// ---------------------------------------------------------------- wire messages

/// Client → mon: who I am.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub entity: EntityName,
    pub client_nonce: Nonce,
}

/// Mon → client: a fresh nonce the proof must cover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    pub server_nonce: Nonce,
}

/// Client → mon: `HMAC(secret, "proof", entity, client_nonce, server_nonce)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientProof {
    pub proof: Mac,
}

/// Mon → client: the global id and one ticket per service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthReply {
    pub global_id: u64,
    pub tickets: Vec<ServiceTicket>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceTicket {
    pub service: String,
    pub expires: u64,
    /// The ticket's session key, sealed under a key derived from the client's secret and both
    /// handshake nonces; the service, expiry, global id and blob are its associated data.
    pub sealed_session_key: Vec<u8>,
    /// The [`Ticket`] sealed with the service key; opaque to the client.
    pub ticket_blob: Vec<u8>,
}

/// Service → client, first thing on a new connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceHello {
    pub service_nonce: Nonce,
}

/// Client → service: the ticket and `HMAC(session_key, "authorizer", blob, client_nonce,
/// service_nonce)`. Bound to this connection's service nonce, so it cannot be replayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authorizer {
    pub ticket_blob: Vec<u8>,
    pub client_nonce: Nonce,
    pub mac: Mac,
}

/// Service → client: `HMAC(session_key, "authorizer-reply", client_nonce, service_nonce)`,
/// proving the service could open the ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizerReply {
    pub mac: Mac,
}

/// Postcard encoding, refusing anything over [`MAX_MESSAGE_BYTES`].
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>> {
    let bytes =
        postcard::to_allocvec(msg).map_err(|e| Error::einval(format!("auth message encoding: {e}")))?;
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(Error::einval(format!(
            "auth message of {} bytes exceeds {MAX_MESSAGE_BYTES}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// Decodes hostile input: bounded size, no trailing bytes, every field validated.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(Error::einval(format!(
            "auth message of {} bytes exceeds {MAX_MESSAGE_BYTES}",
            bytes.len()
        )));
    }
    match postcard::take_from_bytes(bytes) {
        Ok((v, [])) => Ok(v),
        Ok((_, rest)) => Err(Error::einval(format!("auth message has {} trailing bytes", rest.len()))),
        Err(e) => Err(Error::einval(format!("malformed auth message: {e}"))),
    }
}

// ---------------------------------------------------------------- keys and tickets

/// A ticket's session key, shared by the client and the service the ticket is for.
#[derive(Clone)]
pub struct SessionKey([u8; KEY_LEN]);

/// The key of one authenticated connection, derived from the session key and both nonces.
#[derive(Clone)]
pub struct ConnKey([u8; KEY_LEN]);

impl SessionKey {
    fn random() -> Self {
        SessionKey(crypto::random())
    }
}

impl SessionKey {
    /// The raw key, for tests that prove it never crosses the wire. Named so every use stands out.
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl ConnKey {
    /// The raw key, for tests that prove it never crosses the wire. Named so every use stands out.
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// `MAC(conn_key, label, data)`: binds what both ends saw of a negotiation to this
    /// connection (the on-wire mode choice, for one).
    pub fn mac(&self, label: &str, data: &[u8]) -> Mac {
        crypto::mac(&self.0, label, &[data])
    }

    /// Checks a [`ConnKey::mac`] in constant time.
    pub fn verify(&self, label: &str, data: &[u8], mac: &[u8]) -> bool {
        let Ok(mac) = <&Mac>::try_from(mac) else { return false };
        crypto::verify_mac(&self.0, label, &[data], mac)
    }
}

impl Drop for SessionKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl Drop for ConnKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<session key>")
    }
}

impl fmt::Debug for ConnKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<connection key>")
    }
}

fn conn_key(session: &SessionKey, client_nonce: &Nonce, service_nonce: &Nonce) -> ConnKey {
    ConnKey(*crypto::kdf(&session.0, "connection", &[client_nonce, service_nonce]))
}

/// The key of a mon connection whose handshake was a login: derived from the entity's secret
/// and both login nonces (the secret never leaves either end; the nonces are fresh).
fn login_conn_key(secret: &Secret, entity: &EntityName, client: &Nonce, server: &Nonce) -> ConnKey {
    ConnKey(*crypto::kdf(
        secret.expose(),
        "login connection",
        &[entity.to_string().as_bytes(), client, server],
    ))
}

/// A service's ticket-sealing keys: the current generation seals, the previous one still opens.
/// The mons rotate at least once per ticket lifetime and hand the keys to the service's daemons.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceKeys {
    pub current: (u64, Secret),
    pub previous: Option<(u64, Secret)>,
}

impl ServiceKeys {
    pub fn generate() -> Self {
        ServiceKeys { current: (1, Secret::generate()), previous: None }
    }

    /// A new current key; the old current becomes previous and the old previous is dropped, so
    /// tickets sealed two rotations ago stop opening.
    pub fn rotate(&mut self) {
        let next = (self.current.0 + 1, Secret::generate());
        self.previous = Some(std::mem::replace(&mut self.current, next));
    }

    pub fn get(&self, generation: u64) -> Option<&Secret> {
        std::iter::once(&self.current).chain(&self.previous).find(|(g, _)| *g == generation).map(|(_, s)| s)
    }
}

/// What a service learns from a ticket: who the client is and what it may do.
#[derive(Debug, Clone)]
pub struct Ticket {
    pub entity: EntityName,
    pub global_id: u64,
    /// Service → cap text, as in the keyring.
    pub caps: BTreeMap<String, String>,
    pub session_key: SessionKey,
    /// Unix seconds.
    pub expires: u64,
    /// Generation of the service key that sealed it.
    pub key_generation: u64,
}

#[derive(Serialize, Deserialize)]
struct TicketBody {
    entity: EntityName,
    global_id: u64,
    caps: BTreeMap<String, String>,
    session_key: [u8; KEY_LEN],
    expires: u64,
}

impl Drop for TicketBody {
    fn drop(&mut self) {
        self.session_key.zeroize();
    }
}

#[derive(Serialize, Deserialize)]
struct TicketBlob {
    version: u8,
    key_generation: u64,
    sealed: Vec<u8>,
}

fn ticket_key(secret: &Secret, service: &str, generation: u64) -> Zeroizing<[u8; KEY_LEN]> {
    crypto::kdf(secret.expose(), "ticket", &[service.as_bytes(), &generation.to_le_bytes()])
}

impl Ticket {
    /// Seals the ticket for `service` with its current key (`key_generation` is ignored and
    /// becomes the current generation).
    pub fn seal(&self, service: &str, keys: &ServiceKeys) -> Result<Vec<u8>> {
        let (generation, secret) = (keys.current.0, &keys.current.1);
        let body = TicketBody {
            entity: self.entity.clone(),
            global_id: self.global_id,
            caps: self.caps.clone(),
            session_key: self.session_key.0,
            expires: self.expires,
        };
        let plain = Zeroizing::new(encode(&body)?);
        let sealed = crypto::seal(&ticket_key(secret, service, generation), b"", &plain);
        encode(&TicketBlob { version: TICKET_VERSION, key_generation: generation, sealed })
    }

    /// Opens a ticket blob meant for `service`. EACCES when it was not sealed with one of `keys`
    /// for this service or was altered; EINVAL when it is not a ticket blob at all.
    pub fn unseal(blob: &[u8], service: &str, keys: &ServiceKeys) -> Result<Ticket> {
        let b: TicketBlob = decode(blob)?;
        if b.version != TICKET_VERSION {
            return Err(Error::einval(format!("unsupported ticket version {}", b.version)));
        }
        let secret = keys.get(b.key_generation).ok_or_else(|| {
            denied(format!(
                "ticket sealed with {service} key generation {}, which is no longer valid",
                b.key_generation
            ))
        })?;
        let plain = crypto::open(&ticket_key(secret, service, b.key_generation), b"", &b.sealed)
            .ok_or_else(|| denied(format!("ticket does not authenticate for service {service}")))?;
        let mut body: TicketBody = decode(&plain)?;
        Ok(Ticket {
            entity: body.entity.clone(),
            global_id: body.global_id,
            caps: std::mem::take(&mut body.caps),
            session_key: SessionKey(body.session_key),
            expires: body.expires,
            key_generation: b.key_generation,
        })
    }
}

// ---------------------------------------------------------------- client ↔ mon

fn proof_mac(secret: &Secret, entity: &EntityName, client: &Nonce, server: &Nonce) -> Mac {
    crypto::mac(secret.expose(), "proof", &[entity.to_string().as_bytes(), client, server])
}

fn reply_key(
    secret: &Secret,
    entity: &EntityName,
    client: &Nonce,
    server: &Nonce,
) -> Zeroizing<[u8; KEY_LEN]> {
    crypto::kdf(secret.expose(), "reply", &[entity.to_string().as_bytes(), client, server])
}

fn session_key_aad(t: &ServiceTicket, global_id: u64) -> Vec<u8> {
    crypto::framed(&[
        t.service.as_bytes(),
        &t.expires.to_le_bytes(),
        &global_id.to_le_bytes(),
        &t.ticket_blob,
    ])
}

/// Client, step 1: [`ClientHandshake::start`] gives the [`Hello`] to send.
pub struct ClientHandshake {
    entity: EntityName,
    secret: Secret,
    client_nonce: Nonce,
}

/// Client, step 2: waiting for the mon's [`AuthReply`].
pub struct ClientAwaitingReply {
    entity: EntityName,
    secret: Secret,
    client_nonce: Nonce,
    server_nonce: Nonce,
}

impl ClientHandshake {
    pub fn start(entity: EntityName, secret: &Secret) -> (Self, Hello) {
        let client_nonce = crypto::random();
        let hello = Hello { entity: entity.clone(), client_nonce };
        (ClientHandshake { entity, secret: secret.clone(), client_nonce }, hello)
    }

    pub fn prove(self, challenge: &Challenge) -> (ClientAwaitingReply, ClientProof) {
        let proof = proof_mac(&self.secret, &self.entity, &self.client_nonce, &challenge.server_nonce);
        let next = ClientAwaitingReply {
            entity: self.entity,
            secret: self.secret,
            client_nonce: self.client_nonce,
            server_nonce: challenge.server_nonce,
        };
        (next, ClientProof { proof })
    }
}

impl ClientAwaitingReply {
    /// The key of the connection this login runs on (for [`FrameCipher`] and [`ConnKey::mac`]).
    /// The mon derives the same key once it has checked the proof; only a mon that knows the
    /// secret can, which [`ClientAwaitingReply::finish`] confirms.
    pub fn conn_key(&self) -> ConnKey {
        login_conn_key(&self.secret, &self.entity, &self.client_nonce, &self.server_nonce)
    }

    /// Opens every ticket's session key. Success also proves the mon knows our secret.
    pub fn finish(self, reply: &AuthReply) -> Result<ClientSession> {
        if reply.tickets.is_empty() || reply.tickets.len() > MAX_TICKETS {
            return Err(denied(format!("mon reply carries {} tickets", reply.tickets.len())));
        }
        let key = reply_key(&self.secret, &self.entity, &self.client_nonce, &self.server_nonce);
        let mut tickets = BTreeMap::new();
        for t in &reply.tickets {
            let plain = crypto::open(&key, &session_key_aad(t, reply.global_id), &t.sealed_session_key)
                .ok_or_else(|| denied(format!("mon reply for {} does not authenticate", self.entity)))?;
            let session_key = SessionKey(plain.as_slice().try_into().map_err(|_| denied("bad session key"))?);
            let ticket = ClientTicket {
                service: t.service.clone(),
                expires: t.expires,
                ticket_blob: t.ticket_blob.clone(),
                session_key,
            };
            if tickets.insert(t.service.clone(), ticket).is_some() {
                return Err(Error::einval(format!("mon reply has two tickets for {}", t.service)));
            }
        }
        Ok(ClientSession { entity: self.entity, global_id: reply.global_id, tickets })
    }
}

/// A logged-in client: its global id and a ticket per service. Log in again before expiry.
#[derive(Debug, Clone)]
pub struct ClientSession {
    pub entity: EntityName,
    pub global_id: u64,
    pub tickets: BTreeMap<String, ClientTicket>,
}

#[derive(Debug, Clone)]
pub struct ClientTicket {
    pub service: String,
    pub expires: u64,
    pub ticket_blob: Vec<u8>,
    session_key: SessionKey,
}

impl ClientTicket {
    /// The ticket's session key (see [`SessionKey::expose`]).
    pub fn session_key(&self) -> &SessionKey {
        &self.session_key
    }

    /// The generation of the service key that sealed the ticket (stated in the blob's clear
    /// header); `None` if the blob is not a ticket blob.
    pub fn key_generation(&self) -> Option<u64> {
        decode::<TicketBlob>(&self.ticket_blob).ok().map(|b| b.key_generation)
    }
}

/// What the mon grants a client that proved its identity.
#[derive(Debug, Clone, Copy)]
pub struct Issue<'a> {
    pub global_id: u64,
    /// The entity's caps from the auth database; copied into every ticket.
    pub caps: &'a BTreeMap<String, String>,
    /// One ticket per (service name, that service's keys).
    pub services: &'a [(&'a str, &'a ServiceKeys)],
    /// Unix seconds.
    pub now: u64,
    pub ttl_secs: u64,
}

/// Mon side of a client login.
pub struct MonHandshake {
    hello: Hello,
    server_nonce: Nonce,
}

impl MonHandshake {
    pub fn start(hello: Hello) -> (Self, Challenge) {
        let server_nonce = crypto::random();
        (MonHandshake { hello, server_nonce }, Challenge { server_nonce })
    }

    /// Whose secret [`MonHandshake::accept`] needs.
    pub fn entity(&self) -> &EntityName {
        &self.hello.entity
    }

    /// The key of the connection this login runs on, as the client derives it
    /// ([`ClientAwaitingReply::conn_key`]). Use it only after [`MonHandshake::accept`] succeeded
    /// with the same `secret`.
    pub fn conn_key(&self, secret: &Secret) -> ConnKey {
        login_conn_key(secret, &self.hello.entity, &self.hello.client_nonce, &self.server_nonce)
    }

    /// Checks the proof in constant time; on success seals a fresh session key and a ticket for
    /// every service in `issue`.
    pub fn accept(&self, secret: &Secret, proof: &ClientProof, issue: &Issue) -> Result<AuthReply> {
        let (entity, cn, sn) = (&self.hello.entity, &self.hello.client_nonce, &self.server_nonce);
        if !crypto::verify_mac(
            secret.expose(),
            "proof",
            &[entity.to_string().as_bytes(), cn, sn],
            &proof.proof,
        ) {
            return Err(denied(format!("authentication failed for {entity}: bad proof")));
        }
        if issue.services.is_empty() || issue.services.len() > MAX_TICKETS {
            return Err(Error::einval(format!("cannot issue {} tickets", issue.services.len())));
        }
        let key = reply_key(secret, entity, cn, sn);
        let expires = issue.now.saturating_add(issue.ttl_secs);
        let mut tickets: Vec<ServiceTicket> = Vec::new();
        for (service, keys) in issue.services {
            if tickets.iter().any(|t| t.service == *service) {
                return Err(Error::einval(format!("service {service} listed twice")));
            }
            let ticket = Ticket {
                entity: entity.clone(),
                global_id: issue.global_id,
                caps: issue.caps.clone(),
                session_key: SessionKey::random(),
                expires,
                key_generation: keys.current.0,
            };
            let mut t = ServiceTicket {
                service: service.to_string(),
                expires,
                sealed_session_key: Vec::new(),
                ticket_blob: ticket.seal(service, keys)?,
            };
            t.sealed_session_key =
                crypto::seal(&key, &session_key_aad(&t, issue.global_id), &ticket.session_key.0);
            tickets.push(t);
        }
        Ok(AuthReply { global_id: issue.global_id, tickets })
    }
}

// ---------------------------------------------------------------- client ↔ service

const AUTHORIZER: &str = "authorizer";
const AUTHORIZER_REPLY: &str = "authorizer-reply";

impl ClientTicket {
    /// Answers a service's [`ServiceHello`] on a new connection.
    pub fn authorizer(&self, hello: &ServiceHello) -> (PendingAuthorizer, Authorizer) {
        let client_nonce = crypto::random();
        let sn = hello.service_nonce;
        let mac = crypto::mac(&self.session_key.0, AUTHORIZER, &[&self.ticket_blob, &client_nonce, &sn]);
        let pending =
            PendingAuthorizer { session_key: self.session_key.clone(), client_nonce, service_nonce: sn };
        (pending, Authorizer { ticket_blob: self.ticket_blob.clone(), client_nonce, mac })
    }
}

/// Client side of a connection, waiting for the service's [`AuthorizerReply`].
pub struct PendingAuthorizer {
    session_key: SessionKey,
    client_nonce: Nonce,
    service_nonce: Nonce,
}

impl PendingAuthorizer {
    /// The connection key, before the service has proved itself: for binding what this client
    /// sends next (the on-wire mode choice) to the connection. [`PendingAuthorizer::finish`]
    /// yields the same key once the reply checks out.
    pub fn conn_key(&self) -> ConnKey {
        conn_key(&self.session_key, &self.client_nonce, &self.service_nonce)
    }

    /// Checks the service's proof (mutual authentication) and yields the connection key.
    pub fn finish(self, reply: &AuthorizerReply) -> Result<ConnKey> {
        let nonces: [&[u8]; 2] = [&self.client_nonce, &self.service_nonce];
        if !crypto::verify_mac(&self.session_key.0, AUTHORIZER_REPLY, &nonces, &reply.mac) {
            return Err(denied("service failed to prove it can open our ticket"));
        }
        Ok(conn_key(&self.session_key, &self.client_nonce, &self.service_nonce))
    }
}

/// Service side of a connection (an OSD, or a mon serving an already-logged-in client).
pub struct ServiceHandshake {
    service: String,
    service_nonce: Nonce,
}

/// A connection the service accepted: whom it serves, the key for [`FrameCipher`], and the
/// reply to send back.
#[derive(Debug)]
pub struct Accepted {
    pub ticket: Ticket,
    pub conn_key: ConnKey,
    pub reply: AuthorizerReply,
}

impl ServiceHandshake {
    pub fn start(service: &str) -> (Self, ServiceHello) {
        let service_nonce = crypto::random();
        (ServiceHandshake { service: service.to_string(), service_nonce }, ServiceHello { service_nonce })
    }

    /// Opens the ticket, checks expiry against `now` (Unix seconds) and the authorizer's MAC over
    /// this connection's nonce. Any failure is EACCES (EINVAL for undecodable tickets).
    pub fn accept(&self, keys: &ServiceKeys, auth: &Authorizer, now: u64) -> Result<Accepted> {
        let ticket = Ticket::unseal(&auth.ticket_blob, &self.service, keys)?;
        if now >= ticket.expires {
            return Err(denied(format!(
                "ticket for {} expired at {} (now {now})",
                ticket.entity, ticket.expires
            )));
        }
        let (cn, sn) = (&auth.client_nonce, &self.service_nonce);
        if !crypto::verify_mac(&ticket.session_key.0, AUTHORIZER, &[&auth.ticket_blob, cn, sn], &auth.mac) {
            return Err(denied(format!("authorizer from {} does not authenticate", ticket.entity)));
        }
        let reply = AuthorizerReply { mac: crypto::mac(&ticket.session_key.0, AUTHORIZER_REPLY, &[cn, sn]) };
        let conn_key = conn_key(&ticket.session_key, cn, sn);
        Ok(Accepted { ticket, conn_key, reply })
    }
}

// ---------------------------------------------------------------- rotating keys to daemons

fn service_keys_key(secret: &Secret, entity: &EntityName, service: &str) -> Zeroizing<[u8; KEY_LEN]> {
    crypto::kdf(secret.expose(), "service-keys", &[entity.to_string().as_bytes(), service.as_bytes()])
}

/// Mon → a daemon of `service` (Ceph's rotating keys): the service's ticket keys sealed under a
/// key derived from the daemon's own secret, with the daemon's fresh request nonce as
/// associated data, so only that daemon opens them and a recorded reply is useless to replay.
pub fn seal_service_keys(
    secret: &Secret,
    entity: &EntityName,
    service: &str,
    nonce: &Nonce,
    keys: &ServiceKeys,
) -> Result<Vec<u8>> {
    let plain = Zeroizing::new(postcard::to_allocvec(keys).map_err(|e| Error::einval(e.to_string()))?);
    Ok(crypto::seal(&service_keys_key(secret, entity, service), nonce, &plain))
}

/// Opens what [`seal_service_keys`] sealed for us. EACCES when it does not authenticate.
pub fn open_service_keys(
    secret: &Secret,
    entity: &EntityName,
    service: &str,
    nonce: &Nonce,
    blob: &[u8],
) -> Result<ServiceKeys> {
    if blob.len() > MAX_MESSAGE_BYTES {
        return Err(Error::einval("sealed service keys too large"));
    }
    let plain = crypto::open(&service_keys_key(secret, entity, service), nonce, blob)
        .ok_or_else(|| denied(format!("{service} keys sealed for {entity} do not authenticate")))?;
    decode(&plain)
}

/// A fresh random nonce (for requests whose replies must be fresh).
pub fn random_nonce() -> Nonce {
    crypto::random()
}

// ---------------------------------------------------------------- frame sealing

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

/// Optional on-wire encryption of one connection: AES-256-GCM with a key per direction derived
/// from the [`ConnKey`] and an implicit per-direction frame counter as nonce. A tampered,
/// replayed, dropped or reordered frame fails to open, after which the cipher refuses
/// everything (the connection must be closed). [`FrameCipher::split`] gives the sending and the
/// receiving half to the tasks that write and read the connection.
pub struct FrameCipher {
    tx: FrameSealer,
    rx: FrameOpener,
}

/// The sending half of a [`FrameCipher`].
pub struct FrameSealer {
    cipher: Cipher,
    seq: u64,
}

/// The receiving half of a [`FrameCipher`].
pub struct FrameOpener {
    cipher: Cipher,
    seq: u64,
    failed: bool,
}

impl FrameCipher {
    /// Bytes a sealed frame adds to its plaintext.
    pub const OVERHEAD_BYTES: usize = GCM_TAG_LEN;

    pub fn new(key: &ConnKey, side: Side) -> Self {
        let c2s = Cipher::new(&crypto::kdf(&key.0, "frames client-to-server", &[]));
        let s2c = Cipher::new(&crypto::kdf(&key.0, "frames server-to-client", &[]));
        let (tx, rx) = match side {
            Side::Client => (c2s, s2c),
            Side::Server => (s2c, c2s),
        };
        FrameCipher {
            tx: FrameSealer { cipher: tx, seq: 0 },
            rx: FrameOpener { cipher: rx, seq: 0, failed: false },
        }
    }

    /// Seals the next outgoing frame; `aad` (e.g. the frame header) is authenticated, not hidden.
    pub fn seal(&mut self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut out = plaintext.to_vec();
        let tag = self.tx.seal_in_place(aad, &mut out)?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Opens the next incoming frame (`ciphertext ‖ tag`).
    pub fn open(&mut self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        let mut data = sealed.to_vec();
        let len = self.rx.open_in_place(aad, &mut data)?;
        data.truncate(len);
        Ok(data)
    }

    /// The sending and receiving halves, for a connection written and read by separate tasks.
    pub fn split(self) -> (FrameSealer, FrameOpener) {
        (self.tx, self.rx)
    }
}

impl FrameSealer {
    /// Encrypts the next outgoing frame's payload where it lies and returns the
    /// [`FrameCipher::OVERHEAD_BYTES`]-byte tag to send after it.
    pub fn seal_in_place(&mut self, aad: &[u8], data: &mut [u8]) -> Result<[u8; GCM_TAG_LEN]> {
        if self.seq == u64::MAX {
            return Err(Error::eagain("frame counter exhausted: reconnect"));
        }
        let tag = self.cipher.seal_in_place(&frame_nonce(self.seq), aad, data);
        self.seq += 1;
        Ok(tag)
    }

    /// Frames sealed so far.
    pub fn frames(&self) -> u64 {
        self.seq
    }
}

impl FrameOpener {
    /// Opens the next incoming frame, `ciphertext ‖ tag`, where it lies: on success the first
    /// returned-length bytes of `data` are the plaintext. EACCES (and every later call fails
    /// too) when it does not authenticate.
    pub fn open_in_place(&mut self, aad: &[u8], data: &mut [u8]) -> Result<usize> {
        if self.failed {
            return Err(denied("connection already failed frame authentication"));
        }
        let seq = self.seq;
        let opened = data.len().checked_sub(GCM_TAG_LEN).is_some_and(|len| {
            let (body, tag) = data.split_at_mut(len);
            let tag: &[u8; GCM_TAG_LEN] = (&*tag).try_into().expect("tag length");
            self.cipher.open_in_place(&frame_nonce(seq), aad, body, tag)
        });
        if !opened {
            self.failed = true;
            return Err(denied(format!(
                "frame {seq} failed authentication (tampered, replayed or reordered)"
            )));
        }
        self.seq += 1;
        Ok(data.len() - GCM_TAG_LEN)
    }

    /// Frames opened so far.
    pub fn frames(&self) -> u64 {
        self.seq
    }
}

impl fmt::Debug for FrameCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameCipher").field("tx", &self.tx).field("rx", &self.rx).finish()
    }
}

impl fmt::Debug for FrameSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FrameSealer {{ seq: {} }}", self.seq)
    }
}

impl fmt::Debug for FrameOpener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FrameOpener {{ seq: {}, failed: {} }}", self.seq, self.failed)
    }
}

fn frame_nonce(seq: u64) -> [u8; GCM_NONCE_LEN] {
    let mut n = [0u8; GCM_NONCE_LEN];
    n[4..].copy_from_slice(&seq.to_le_bytes());
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caps::{OsdAccess, OsdCaps};
    use proptest::prelude::*;

    const NOW: u64 = 1_700_000_000;
    const TTL: u64 = 3600;

    struct Cluster {
        entity: EntityName,
        secret: Secret,
        caps: BTreeMap<String, String>,
        mon_keys: ServiceKeys,
        osd_keys: ServiceKeys,
    }

    fn cluster() -> Cluster {
        let caps = [
            ("mon", "allow r"),
            ("osd", "allow class-read object_prefix rbd_children, allow rwx pool=images"),
        ];
        Cluster {
            entity: "client.glance".parse().unwrap(),
            secret: Secret::generate(),
            caps: caps.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            mon_keys: ServiceKeys::generate(),
            osd_keys: ServiceKeys::generate(),
        }
    }

    /// Moves a message through its wire encoding and records the bytes.
    fn wire<T: Serialize + DeserializeOwned>(log: &mut Vec<Vec<u8>>, msg: &T) -> T {
        let bytes = encode(msg).unwrap();
        log.push(bytes.clone());
        decode(&bytes).unwrap()
    }

    fn login(c: &Cluster, client_secret: &Secret, log: &mut Vec<Vec<u8>>) -> Result<ClientSession> {
        let (client, hello) = ClientHandshake::start(c.entity.clone(), client_secret);
        let (mon, challenge) = MonHandshake::start(wire(log, &hello));
        let (client, proof) = client.prove(&wire(log, &challenge));
        assert_eq!(mon.entity(), &c.entity);
        let services = [("mon", &c.mon_keys), ("osd", &c.osd_keys)];
        let issue = Issue { global_id: 4242, caps: &c.caps, services: &services, now: NOW, ttl_secs: TTL };
        let reply = mon.accept(&c.secret, &wire(log, &proof), &issue)?;
        client.finish(&wire(log, &reply))
    }

    /// Client ↔ OSD over a connection: returns both sides' results.
    fn connect(
        t: &ClientTicket,
        keys: &ServiceKeys,
        now: u64,
        log: &mut Vec<Vec<u8>>,
    ) -> Result<(Accepted, ConnKey)> {
        let (osd, hello) = ServiceHandshake::start("osd");
        let (pending, auth) = t.authorizer(&wire(log, &hello));
        let accepted = osd.accept(keys, &wire(log, &auth), now)?;
        let early = pending.conn_key();
        let key = pending.finish(&wire(log, &accepted.reply))?;
        assert_eq!(early.expose(), key.expose(), "the early key is the connection key");
        Ok((accepted, key))
    }

    fn contains_any_window(hay: &[u8], needle: &[u8]) -> bool {
        needle.windows(8).any(|w| hay.windows(8).any(|h| h == w))
    }

    #[test]
    fn full_exchange_authenticates_both_ways() {
        let c = cluster();
        let mut log = Vec::new();
        let session = login(&c, &c.secret, &mut log).unwrap();
        assert_eq!((session.global_id, session.tickets.len()), (4242, 2));
        let t = &session.tickets["osd"];
        assert_eq!(t.expires, NOW + TTL);
        assert_eq!(t.key_generation(), Some(1));
        let (accepted, client_key) = connect(t, &c.osd_keys, NOW + 10, &mut log).unwrap();
        let ticket = &accepted.ticket;
        assert_eq!((ticket.entity.to_string(), ticket.global_id), ("client.glance".to_string(), 4242));
        assert_eq!(ticket.caps, c.caps);
        assert_eq!(ticket.key_generation, 1);
        let osd_caps = OsdCaps::parse(&ticket.caps["osd"]).unwrap();
        assert!(osd_caps.allows("images", "", "rbd_data.1.0", OsdAccess::WRITE));
        assert!(!osd_caps.allows("volumes", "", "rbd_data.1.0", OsdAccess::WRITE));

        // Both ends derived the same connection key: frames flow in both directions.
        let mut cf = FrameCipher::new(&client_key, Side::Client);
        let mut sf = FrameCipher::new(&accepted.conn_key, Side::Server);
        for i in 0..3u8 {
            let f = cf.seal(b"hdr", &[i; 100]).unwrap();
            assert_eq!(f.len(), 100 + FrameCipher::OVERHEAD_BYTES);
            assert_eq!(sf.open(b"hdr", &f).unwrap(), vec![i; 100]);
            let back = sf.seal(b"", b"ack").unwrap();
            assert_eq!(cf.open(b"", &back).unwrap(), b"ack");
        }
    }

    #[test]
    fn no_secret_or_key_bytes_on_the_wire() {
        let c = cluster();
        let mut log = Vec::new();
        let session = login(&c, &c.secret, &mut log).unwrap();
        let (accepted, client_key) = connect(&session.tickets["osd"], &c.osd_keys, NOW, &mut log).unwrap();
        let (_, mon_conn) = {
            let (mon, hello) = ServiceHandshake::start("mon");
            let (pending, auth) = session.tickets["mon"].authorizer(&wire(&mut log, &hello));
            let acc = mon.accept(&c.mon_keys, &wire(&mut log, &auth), NOW).unwrap();
            let key = pending.finish(&wire(&mut log, &acc.reply)).unwrap();
            (acc, key)
        };
        assert_eq!(log.len(), 4 + 3 + 3);
        let mut secrets: Vec<Vec<u8>> = vec![
            c.secret.expose().to_vec(),
            c.mon_keys.current.1.expose().to_vec(),
            c.osd_keys.current.1.expose().to_vec(),
            accepted.conn_key.0.to_vec(),
            client_key.0.to_vec(),
            mon_conn.0.to_vec(),
        ];
        secrets.extend(session.tickets.values().map(|t| t.session_key.0.to_vec()));
        for msg in &log {
            for s in &secrets {
                assert!(!contains_any_window(msg, s), "key material found in a wire message");
            }
        }
    }

    #[test]
    fn wrong_secret_is_refused_by_the_mon() {
        let c = cluster();
        let e = login(&c, &Secret::generate(), &mut Vec::new()).unwrap_err();
        assert_eq!(e.errno, errno::EACCES);
        assert!(e.message.contains("authentication failed for client.glance"), "{}", e.message);
    }

    #[test]
    fn recorded_proof_is_refused_on_a_new_login() {
        let c = cluster();
        let (client, hello) = ClientHandshake::start(c.entity.clone(), &c.secret);
        let (_, challenge) = MonHandshake::start(hello.clone());
        let (_, proof) = client.prove(&challenge);
        // The attacker replays Hello and the recorded proof; the mon picked a new nonce.
        let (mon, _) = MonHandshake::start(hello);
        let services = [("osd", &c.osd_keys)];
        let issue = Issue { global_id: 1, caps: &c.caps, services: &services, now: NOW, ttl_secs: TTL };
        assert_eq!(mon.accept(&c.secret, &proof, &issue).unwrap_err().errno, errno::EACCES);
    }

    #[test]
    fn tampered_mon_reply_is_refused_by_the_client() {
        let c = cluster();
        let (client, hello) = ClientHandshake::start(c.entity.clone(), &c.secret);
        let (mon, challenge) = MonHandshake::start(hello);
        let (client, proof) = client.prove(&challenge);
        let services = [("osd", &c.osd_keys)];
        let issue = Issue { global_id: 7, caps: &c.caps, services: &services, now: NOW, ttl_secs: TTL };
        let reply = mon.accept(&c.secret, &proof, &issue).unwrap();
        let tampers: [fn(&mut AuthReply); 5] = [
            |r| r.global_id += 1,
            |r| r.tickets[0].expires += 1,
            |r| r.tickets[0].service = "mon".into(),
            |r| r.tickets[0].ticket_blob[5] ^= 1,
            |r| r.tickets.clear(),
        ];
        for tamper in tampers {
            let mut r = reply.clone();
            tamper(&mut r);
            let client = ClientAwaitingReply {
                secret: client.secret.clone(),
                entity: client.entity.clone(),
                ..client
            };
            assert_eq!(client.finish(&r).unwrap_err().errno, errno::EACCES);
        }
        // A reply from an impostor mon that does not know the secret.
        let (mon2, _) =
            MonHandshake::start(Hello { entity: c.entity.clone(), client_nonce: client.client_nonce });
        let fake = Secret::generate();
        let fake_proof =
            ClientProof { proof: proof_mac(&fake, &c.entity, &client.client_nonce, &mon2.server_nonce) };
        let forged = mon2.accept(&fake, &fake_proof, &issue).unwrap();
        assert_eq!(client.finish(&forged).unwrap_err().errno, errno::EACCES);
    }

    #[test]
    fn captured_authorizer_is_refused_on_a_fresh_connection() {
        let c = cluster();
        let session = login(&c, &c.secret, &mut Vec::new()).unwrap();
        let mut log = Vec::new();
        connect(&session.tickets["osd"], &c.osd_keys, NOW, &mut log).unwrap();
        // log = [ServiceHello, Authorizer, AuthorizerReply]; replay the authorizer bytes.
        let (fresh, _) = ServiceHandshake::start("osd");
        let e = fresh.accept(&c.osd_keys, &decode(&log[1]).unwrap(), NOW).unwrap_err();
        assert_eq!(e.errno, errno::EACCES);
        assert!(e.message.contains("does not authenticate"), "{}", e.message);
        // And a recorded reply does not satisfy a client on another connection (mutual auth).
        let (_, hello) = ServiceHandshake::start("osd");
        let (pending, _) = session.tickets["osd"].authorizer(&hello);
        assert_eq!(pending.finish(&decode(&log[2]).unwrap()).unwrap_err().errno, errno::EACCES);
    }

    #[test]
    fn tickets_expire_and_rotate_out() {
        let mut c = cluster();
        let session = login(&c, &c.secret, &mut Vec::new()).unwrap();
        let t = &session.tickets["osd"];
        assert!(connect(t, &c.osd_keys, NOW + TTL - 1, &mut Vec::new()).is_ok());
        let e = connect(t, &c.osd_keys, NOW + TTL, &mut Vec::new()).unwrap_err();
        assert!(e.errno == errno::EACCES && e.message.contains("expired"), "{}", e.message);
        c.osd_keys.rotate();
        assert_eq!(connect(t, &c.osd_keys, NOW, &mut Vec::new()).unwrap().0.ticket.key_generation, 1);
        c.osd_keys.rotate();
        let e = connect(t, &c.osd_keys, NOW, &mut Vec::new()).unwrap_err();
        assert!(e.errno == errno::EACCES && e.message.contains("no longer valid"), "{}", e.message);
        // New logins get tickets of the current generation.
        let s2 = login(&c, &c.secret, &mut Vec::new()).unwrap();
        assert_eq!(
            connect(&s2.tickets["osd"], &c.osd_keys, NOW, &mut Vec::new()).unwrap().0.ticket.key_generation,
            3
        );
    }

    #[test]
    fn tickets_are_bound_to_their_service() {
        let c = cluster();
        let session = login(&c, &c.secret, &mut Vec::new()).unwrap();
        // The mon's ticket presented to an OSD, even one holding the mon's keys.
        let e = connect(&session.tickets["mon"], &c.mon_keys, NOW, &mut Vec::new()).unwrap_err();
        assert_eq!(e.errno, errno::EACCES);
        let e = connect(&session.tickets["osd"], &c.mon_keys, NOW, &mut Vec::new()).unwrap_err();
        assert_eq!(e.errno, errno::EACCES);
    }

    #[test]
    fn frames_refuse_tamper_replay_and_reorder() {
        let key = ConnKey([9; KEY_LEN]);
        let fresh = || (FrameCipher::new(&key, Side::Client), FrameCipher::new(&key, Side::Server));
        let (mut c, mut s) = fresh();
        let f0 = c.seal(b"h", b"zero").unwrap();
        let f1 = c.seal(b"h", b"one").unwrap();
        assert_eq!(s.open(b"h", &f0).unwrap(), b"zero");
        assert_eq!(s.open(b"h", &f0).unwrap_err().errno, errno::EACCES, "replay");
        assert!(s.open(b"h", &f1).is_err(), "a failed connection stays failed");

        let (mut c, mut s) = fresh();
        let f0 = c.seal(b"h", b"zero").unwrap();
        let f1 = c.seal(b"h", b"one").unwrap();
        assert!(s.open(b"h", &f1).is_err(), "reorder");
        let (_, mut s) = fresh();
        let mut bad = f0.clone();
        bad[0] ^= 0x80;
        assert!(s.open(b"h", &bad).is_err(), "tamper");
        let (_, mut s) = fresh();
        assert!(s.open(b"H", &f0).is_err(), "header tamper");
        let (mut c, _) = fresh();
        assert!(c.open(b"h", &f0).is_err(), "reflected to its sender");
    }

    #[test]
    fn split_halves_seal_in_place_like_the_whole_cipher() {
        let key = ConnKey([5; KEY_LEN]);
        let mut whole = FrameCipher::new(&key, Side::Client);
        let (mut tx, _) = FrameCipher::new(&key, Side::Client).split();
        let (_, mut rx) = FrameCipher::new(&key, Side::Server).split();
        for i in 0..3u8 {
            let expected = whole.seal(b"hdr", &[i; 64]).unwrap();
            let mut data = [i; 64];
            let tag = tx.seal_in_place(b"hdr", &mut data).unwrap();
            let mut wire = [&data[..], &tag[..]].concat();
            assert_eq!(wire, expected);
            assert_eq!(rx.open_in_place(b"hdr", &mut wire).unwrap(), 64);
            assert_eq!(&wire[..64], &[i; 64]);
        }
        assert_eq!((tx.frames(), rx.frames()), (3, 3));
        // Shorter than a tag, then anything after a failure: refused.
        assert_eq!(rx.open_in_place(b"hdr", &mut [0u8; 15]).unwrap_err().errno, errno::EACCES);
        let mut next = [0u8; 8];
        let tag = tx.seal_in_place(b"hdr", &mut next).unwrap();
        let mut wire = [&next[..], &tag[..]].concat();
        assert!(rx.open_in_place(b"hdr", &mut wire).is_err(), "a failed connection stays failed");
    }

    #[test]
    fn login_connections_get_one_key_at_both_ends() {
        let c = cluster();
        let (client, hello) = ClientHandshake::start(c.entity.clone(), &c.secret);
        let (mon, challenge) = MonHandshake::start(hello);
        let (client, _proof) = client.prove(&challenge);
        let (ck, mk) = (client.conn_key(), mon.conn_key(&c.secret));
        assert_eq!(ck.expose(), mk.expose());
        assert_ne!(mon.conn_key(&Secret::generate()).expose(), ck.expose());
        // Another login of the same entity: another key.
        let (other, hello) = ClientHandshake::start(c.entity.clone(), &c.secret);
        let (_, challenge) = MonHandshake::start(hello);
        assert_ne!(other.prove(&challenge).0.conn_key().expose(), ck.expose());
        // MACs under the connection key bind data to this connection.
        let mac = ck.mac("modes", b"secure");
        assert!(mk.verify("modes", b"secure", &mac));
        assert!(!mk.verify("modes", b"crc", &mac));
        assert!(!mk.verify("other", b"secure", &mac));
        assert!(!mk.verify("modes", b"secure", &mac[..31]));
    }

    #[test]
    fn service_keys_persist() {
        let mut k = ServiceKeys::generate();
        k.rotate();
        let back: ServiceKeys = postcard::from_bytes(&postcard::to_allocvec(&k).unwrap()).unwrap();
        assert_eq!(back, k);
        assert!(back.get(1).is_some() && back.get(2).is_some() && back.get(3).is_none());
        assert!(!format!("{k:?}").contains(&format!("{:?}", k.current.1.expose())));
    }

    #[test]
    fn service_keys_reach_only_their_daemon() {
        let c = cluster();
        let osd: EntityName = "osd.3".parse().unwrap();
        let secret = Secret::generate();
        let nonce = random_nonce();
        let blob = seal_service_keys(&secret, &osd, "osd", &nonce, &c.osd_keys).unwrap();
        assert_eq!(open_service_keys(&secret, &osd, "osd", &nonce, &blob).unwrap(), c.osd_keys);
        let other: EntityName = "osd.4".parse().unwrap();
        let refused = [
            open_service_keys(&Secret::generate(), &osd, "osd", &nonce, &blob),
            open_service_keys(&secret, &other, "osd", &nonce, &blob),
            open_service_keys(&secret, &osd, "mon", &nonce, &blob),
            open_service_keys(&secret, &osd, "osd", &random_nonce(), &blob),
        ];
        for r in refused {
            assert_eq!(r.unwrap_err().errno, errno::EACCES);
        }
        assert!(!contains_any_window(&blob, secret.expose()));
        assert!(!contains_any_window(&blob, c.osd_keys.current.1.expose()));
    }

    #[test]
    fn decode_is_bounded() {
        let big = Authorizer { ticket_blob: vec![0; MAX_MESSAGE_BYTES], client_nonce: [0; 16], mac: [0; 32] };
        assert_eq!(encode(&big).unwrap_err().errno, errno::EINVAL);
        assert!(decode::<Authorizer>(&vec![0; MAX_MESSAGE_BYTES + 1]).is_err());
        let mut ok = encode(&Challenge { server_nonce: [1; 16] }).unwrap();
        ok.push(0);
        assert!(decode::<Challenge>(&ok).unwrap_err().message.contains("trailing"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn random_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode::<Hello>(&b);
            let _ = decode::<Challenge>(&b);
            let _ = decode::<ClientProof>(&b);
            let _ = decode::<AuthReply>(&b);
            let _ = decode::<ServiceHello>(&b);
            let _ = decode::<AuthorizerReply>(&b);
            let keys = ServiceKeys { current: (1, Secret::from_bytes([3; 16])), previous: None };
            prop_assert!(Ticket::unseal(&b, "osd", &keys).is_err());
            if let Ok(auth) = decode::<Authorizer>(&b) {
                prop_assert!(ServiceHandshake::start("osd").0.accept(&keys, &auth, NOW).is_err());
            }
            let auth = Authorizer { ticket_blob: b.clone(), client_nonce: [0; 16], mac: [0; 32] };
            prop_assert!(ServiceHandshake::start("osd").0.accept(&keys, &auth, NOW).is_err());
        }

        #[test]
        fn bit_flips_in_a_ticket_are_refused(i in 0usize..1000, bit in 0u8..8) {
            let keys = ServiceKeys::generate();
            let t = Ticket {
                entity: "client.x".parse().unwrap(),
                global_id: 1,
                caps: BTreeMap::new(),
                session_key: SessionKey::random(),
                expires: NOW,
                key_generation: 0,
            };
            let mut blob = t.seal("osd", &keys).unwrap();
            let i = i % blob.len();
            blob[i] ^= 1 << bit;
            prop_assert!(Ticket::unseal(&blob, "osd", &keys).is_err());
        }
    }
}
