//! An in-memory [`RaftTransport`] for tests and simulations: every mon of a [`MemNetwork`] reaches
//! the others by direct calls to [`MonRaft::handle_rpc`]. A node can be isolated (all messages to
//! and from it are dropped, as if it were killed or partitioned) and healed.

use super::{MonRaft, NodeId, RaftTransport};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

/// The mons of one in-memory cluster.
#[derive(Default)]
pub struct MemNetwork {
    nodes: Mutex<BTreeMap<NodeId, MonRaft>>,
    isolated: Mutex<BTreeSet<NodeId>>,
}

impl MemNetwork {
    pub fn new() -> Arc<MemNetwork> {
        Arc::new(MemNetwork::default())
    }

    /// The transport node `from` uses.
    pub fn transport(self: &Arc<Self>, from: NodeId) -> Arc<dyn RaftTransport> {
        Arc::new(MemTransport { from, net: Arc::clone(self) })
    }

    /// Makes `node` reachable as `id`.
    pub fn register(&self, id: NodeId, node: MonRaft) {
        if let Ok(mut nodes) = self.nodes.lock() {
            nodes.insert(id, node);
        }
    }

    pub fn unregister(&self, id: NodeId) {
        if let Ok(mut nodes) = self.nodes.lock() {
            nodes.remove(&id);
        }
    }

    /// Drops every message to or from `id` from now on.
    pub fn isolate(&self, id: NodeId) {
        if let Ok(mut isolated) = self.isolated.lock() {
            isolated.insert(id);
        }
    }

    pub fn heal(&self, id: NodeId) {
        if let Ok(mut isolated) = self.isolated.lock() {
            isolated.remove(&id);
        }
    }

    fn is_cut(&self, a: NodeId, b: NodeId) -> bool {
        match self.isolated.lock() {
            Ok(isolated) => isolated.contains(&a) || isolated.contains(&b),
            Err(_) => true,
        }
    }

    fn node(&self, id: NodeId) -> Option<MonRaft> {
        self.nodes.lock().ok().and_then(|nodes| nodes.get(&id).cloned())
    }
}

/// One node's view of a [`MemNetwork`].
pub struct MemTransport {
    from: NodeId,
    net: Arc<MemNetwork>,
}

fn dropped(from: NodeId, to: NodeId) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionRefused, format!("mon {from} -> mon {to}: dropped"))
}

impl RaftTransport for MemTransport {
    fn call(
        &self,
        target: NodeId,
        _addr: &str,
        request: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<u8>>> + Send>> {
        let net = Arc::clone(&self.net);
        let from = self.from;
        Box::pin(async move {
            if net.is_cut(from, target) {
                return Err(dropped(from, target));
            }
            let node = net.node(target).ok_or_else(|| dropped(from, target))?;
            let reply = node.handle_rpc(&request).await;
            // The reply is lost too if either side was cut while the request was in flight.
            if net.is_cut(from, target) {
                return Err(dropped(target, from));
            }
            Ok(reply)
        })
    }
}
