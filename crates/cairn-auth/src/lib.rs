//! cephx-style authentication for Cairn, the pure parts: keys and keyrings in Ceph's formats,
//! Ceph's cap grammars with their evaluators, and the crypto of the handshake. No I/O besides
//! reading and writing keyring files; the daemons move the messages.
//!
//! ```text
//!  client                                   mon                              (auth db: entity → key, caps)
//!    │ Hello{entity, client_nonce}  ─────────▶ │  MonHandshake::start
//!    │ ◀───────── Challenge{server_nonce}      │
//!    │ ClientProof{HMAC(secret, "proof",       │
//!    │   entity, client_nonce, server_nonce)} ▶│  MonHandshake::accept: verify (constant time),
//!    │ ◀───────── AuthReply{global_id, tickets}│  one ticket per service: fresh session key,
//!    │   each: session key sealed under         │  Ticket{entity, global_id, caps, session key,
//!    │   KDF(secret, "reply", nonces), and the  │  expires} sealed with that service's rotating key
//!    │   opaque ticket blob                     │
//!
//!  client                                   service (OSD, or mon for commands)
//!    │ ◀───────── ServiceHello{service_nonce}  │  ServiceHandshake::start
//!    │ Authorizer{ticket_blob, client_nonce,    │
//!    │   HMAC(session_key, "authorizer", blob,  │
//!    │   client_nonce, service_nonce)}  ──────▶│  ServiceHandshake::accept: unseal ticket (current or
//!    │ ◀──── AuthorizerReply{HMAC(session_key,  │  previous key generation), check expiry and MAC;
//!    │   "authorizer-reply", both nonces)}      │  caps = ticket.caps["osd"] → OsdCaps::parse
//!    │ PendingAuthorizer::finish → ConnKey      │  ConnKey = KDF(session_key, both nonces)
//!    │ FrameCipher::new(&key, Side::Client) ◀══▶ FrameCipher::new(&key, Side::Server)  (optional)
//! ```
//!
//! The secret and the session keys never cross the wire in the clear; every nonce is fresh, so
//! a recorded proof or authorizer is refused on any other connection. Failures are EACCES (bad
//! credentials, expired or foreign tickets, forged MACs) or EINVAL (malformed input); decoders
//! accept at most [`handshake::MAX_MESSAGE_BYTES`] and never panic. See `docs/auth.md`.

mod crypto;

pub mod caps;
pub mod entity;
pub mod handshake;
pub mod key;
pub mod keyring;

pub use caps::{ClassCall, MonAccess, MonCaps, OsdAccess, OsdCaps};
pub use entity::{EntityName, EntityType};
pub use handshake::{
    open_service_keys, random_nonce, seal_service_keys, Accepted, AuthReply, Authorizer, AuthorizerReply,
    Challenge, ClientAwaitingReply, ClientHandshake, ClientProof, ClientSession, ClientTicket, ConnKey,
    FrameCipher, FrameOpener, FrameSealer, Hello, Issue, MonHandshake, PendingAuthorizer, ServiceHandshake,
    ServiceHello, ServiceKeys, ServiceTicket, SessionKey, Side, Ticket,
};
pub use key::{CryptoKey, Secret};
pub use keyring::{Keyring, KeyringEntry};
