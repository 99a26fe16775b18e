//! Cairn's NBD gateway: a Network Block Device server written against the protocol document
//! (NetworkBlockDevice/nbd `doc/proto.md`), on tokio.
//!
//! The server speaks the fixed-newstyle handshake (`NBD_OPT_GO`, `INFO`, `LIST`, `ABORT`,
//! `EXPORT_NAME`, `STRUCTURED_REPLY`, `LIST/SET_META_CONTEXT` with `base:allocation`) and in the
//! transmission phase `READ`, `WRITE` (+FUA), `FLUSH`, `TRIM`, `WRITE_ZEROES` (+`NO_HOLE`,
//! `FAST_ZERO`), `BLOCK_STATUS`, `CACHE` and `DISC`, processing requests of a connection
//! concurrently. Each export is a [`BlockDevice`]; [`MemDevice`] is a sparse in-memory one.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use cairn_nbd::{MemDevice, Server};
//! use std::sync::Arc;
//! let mut server = Server::new();
//! server.add_export("scratch", Arc::new(MemDevice::new(1 << 30))).expect("valid name");
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:10809").await?;
//! Arc::new(server).serve_tcp(listener).await
//! # }
//! ```
//!
//! See `docs/nbd.md` for the supported features, error mapping and limits.

mod device;
mod handshake;
mod mem;
mod server;
mod transmission;
pub mod wire;

pub use device::{nbd_error, BlockDevice, BoxFuture, Extent, ZeroFlags};
pub use mem::{MemDevice, MEM_PAGE_BYTES};
pub use server::{
    Limits, Server, DEFAULT_MAX_PAYLOAD_BYTES, MAX_OPTIONS_PER_HANDSHAKE, MAX_OPTION_DATA_BYTES,
};
