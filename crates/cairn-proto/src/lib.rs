//! Cairn's wire protocol: frames, messages and RPC connections.

pub mod frame;
pub mod monc;
pub mod msg;
pub mod net;
pub mod rpc;

pub use msg::*;
pub use net::{Listener, Network, Stream, TcpNetwork};
pub use rpc::{Conn, ConnPool, Handler, Responder};
