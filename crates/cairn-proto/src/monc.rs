//! Talking to the monitors: find the leader (following `NotLeader` hints, trying every mon in
//! turn) and follow the cluster map. Used by OSDs and clients alike.

use crate::auth::{is_auth_error, ClientAuth};
use crate::msg::Message;
use crate::net::Network;
use crate::rpc::ConnPool;
use cairn_types::{ClusterMap, Error, Result};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How long one mon request may take before the next mon is tried.
pub const MON_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a map long-poll waits on the mon side.
pub const MAP_POLL_WAIT_MS: u32 = 2000;

#[derive(Clone)]
pub struct MonClient {
    inner: Arc<Inner>,
}

struct Inner {
    mons: Vec<String>,
    pool: ConnPool,
    /// Index into `mons` (or an address learnt from a hint) believed to be the leader.
    leader: Mutex<Option<String>>,
    map_tx: watch::Sender<Arc<ClusterMap>>,
}

impl MonClient {
    /// A client of the mons at `mons` over `net`, authenticated as `auth`.
    pub fn with_network(
        mons: Vec<String>,
        net: Arc<dyn Network>,
        auth: Arc<ClientAuth>,
    ) -> Result<MonClient> {
        if mons.is_empty() {
            return Err(Error::einval("no monitor addresses configured (mon host)"));
        }
        let (map_tx, _) = watch::channel(Arc::new(ClusterMap::default()));
        let pool = ConnPool::new(net, auth);
        Ok(MonClient { inner: Arc::new(Inner { mons, pool, leader: Mutex::new(None), map_tx }) })
    }

    pub fn auth(&self) -> &Arc<ClientAuth> {
        self.inner.pool.auth()
    }

    pub fn mons(&self) -> &[String] {
        &self.inner.mons
    }

    /// Sends a request that only the leader answers; follows hints and tries every mon until
    /// `deadline` passes (then ETIMEDOUT naming the last failure).
    pub async fn call_leader(&self, msg: Message, deadline: Duration) -> Result<Message> {
        let start = tokio::time::Instant::now();
        let mut last_err = Error::timed_out("no monitor answered");
        let mut attempt = 0usize;
        while start.elapsed() < deadline {
            let addr = self.pick(attempt);
            attempt += 1;
            match self.inner.pool.call(&addr, msg.clone(), MON_REQUEST_TIMEOUT).await {
                Ok(Message::NotLeader { leader_addr }) => {
                    *self.inner.leader.lock().expect("leader lock") = leader_addr.clone();
                    last_err = Error::eagain(format!("mon {addr} is not the leader"));
                    if leader_addr.is_none() {
                        // An election is running; give it a moment.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
                Ok(reply) => {
                    *self.inner.leader.lock().expect("leader lock") = Some(addr);
                    return Ok(reply);
                }
                // Refused credentials or caps: asking another mon will not help.
                Err(e) if is_auth_error(&e) => return Err(e),
                Err(e) => {
                    self.inner.pool.forget(&addr).await;
                    *self.inner.leader.lock().expect("leader lock") = None;
                    last_err = e;
                    if attempt.is_multiple_of(self.inner.mons.len()) {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        }
        Err(Error::timed_out(format!("monitors did not answer: {}", last_err.message)))
    }

    fn pick(&self, attempt: usize) -> String {
        if let Some(l) = self.inner.leader.lock().expect("leader lock").clone() {
            return l;
        }
        self.inner.mons[attempt % self.inner.mons.len()].clone()
    }

    /// The newest map this client has.
    pub fn map(&self) -> Arc<ClusterMap> {
        self.inner.map_tx.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<ClusterMap>> {
        self.inner.map_tx.subscribe()
    }

    /// Installs `map` if newer than the current one.
    pub fn offer_map(&self, map: ClusterMap) {
        self.inner.map_tx.send_if_modified(|cur| {
            if map.epoch > cur.epoch {
                *cur = Arc::new(map);
                true
            } else {
                false
            }
        });
    }

    /// Fetches a map newer than `have` from any mon (waiting up to `wait_ms` there).
    pub async fn fetch_map(&self, have: u64, wait_ms: u32) -> Result<()> {
        let mut last_err = Error::timed_out("no monitor answered");
        for i in 0..self.inner.mons.len() {
            let addr = self.inner.mons[i].clone();
            let timeout = MON_REQUEST_TIMEOUT + Duration::from_millis(wait_ms as u64);
            let msg = Message::GetMap { have_epoch: have, wait_ms };
            match self.inner.pool.call(&addr, msg, timeout).await {
                Ok(Message::Map(map)) => {
                    self.offer_map(*map);
                    return Ok(());
                }
                Ok(Message::Error(e)) if is_auth_error(&e) => return Err(e),
                Ok(Message::Error(e)) => last_err = e,
                Ok(other) => last_err = Error::eio(format!("unexpected reply {other:?}")),
                Err(e) if is_auth_error(&e) => return Err(e),
                Err(e) => {
                    self.inner.pool.forget(&addr).await;
                    last_err = e;
                }
            }
        }
        Err(last_err)
    }

    /// Sends a request any mon answers (not only the leader), trying each in turn; the first
    /// reply wins. Transport failures move on to the next mon.
    pub async fn call_any(&self, msg: Message, timeout: Duration) -> Result<Message> {
        let mut last_err = Error::timed_out("no monitor answered");
        for addr in &self.inner.mons {
            match self.inner.pool.call(addr, msg.clone(), timeout).await {
                Ok(reply) => return Ok(reply),
                Err(e) if is_auth_error(&e) => return Err(e),
                Err(e) => {
                    self.inner.pool.forget(addr).await;
                    last_err = e;
                }
            }
        }
        Err(last_err)
    }

    /// Waits for a first initialized map, up to `deadline`.
    pub async fn wait_for_map(&self, deadline: Duration) -> Result<Arc<ClusterMap>> {
        let start = tokio::time::Instant::now();
        loop {
            let map = self.map();
            if map.is_initialized() {
                return Ok(map);
            }
            let fetched = self.fetch_map(0, 0).await;
            if start.elapsed() > deadline {
                let why = fetched.err().map(|e| format!(": {}", e.message)).unwrap_or_default();
                return Err(Error::timed_out(format!(
                    "could not get the cluster map from the monitors{why}"
                )));
            }
            match fetched {
                Err(e) if is_auth_error(&e) => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                Ok(()) => {}
            }
        }
    }

    /// Follows the map forever (long-polling); run it in a task.
    pub async fn follow_maps(self) {
        loop {
            let have = self.map().epoch;
            if self.fetch_map(have, MAP_POLL_WAIT_MS).await.is_err() {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
}
