//! Cairn's wire protocol: frames, messages and RPC connections.

pub mod auth;
pub mod cls;
pub mod frame;
pub mod monc;
pub mod msg;
pub mod net;
pub mod rpc;
pub mod snap;

pub use auth::{AuthMethod, AuthSettings, ClientAuth, ServiceAuth, Session};
pub use msg::*;
pub use net::{Listener, Network, Stream, TcpNetwork};
pub use rpc::{Conn, ConnPool, Handler, Responder};
pub use snap::{CloneInfo, SnapContext, SnapList, SnapSet, SnapTarget};
