//! The client library (librados' job): connect with a configuration, follow the cluster map,
//! compute placement, send each object op to its PG's primary with the map epoch, and resend on
//! map changes, primary changes and dropped connections until the op timeout (ETIMEDOUT).

mod ioctx;
pub mod keys;

pub use ioctx::{IoCtx, ObjectStat};
pub use keys::Credentials;

use bytes::Bytes;
use cairn_proto::auth::is_auth_error;
use cairn_proto::monc::MonClient;
use cairn_proto::{ClientAuth, ConnPool, Message, Network, ObjOp, OpOut, ReqId, SnapContext};
use cairn_types::conf::Conf;
use cairn_types::{errno, ClusterMap, Error, ObjectId, Result};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Default for `rados osd op timeout` when the configuration does not set it.
pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_secs(60);
/// Default for `client mount timeout`.
pub const DEFAULT_MOUNT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct Rados {
    inner: Arc<Inner>,
}

struct Inner {
    monc: MonClient,
    osds: ConnPool,
    client_id: u64,
    next_tid: AtomicU64,
    op_timeout: Duration,
    /// The configuration and entity this handle was connected with (librbd reads its options,
    /// e.g. `rbd cache`, from here).
    conf: std::sync::OnceLock<(Conf, String)>,
}

/// What a mon command answered: Ceph's (return code, status string, output data).
#[derive(Debug, Clone)]
pub struct MonReply {
    pub rc: i32,
    pub status: String,
    pub data: Bytes,
}

impl Rados {
    /// Connects to the monitors at `mons` as `creds` and waits for the first map.
    pub async fn connect(
        mons: Vec<String>,
        creds: Credentials,
        op_timeout: Duration,
        mount_timeout: Duration,
    ) -> Result<Rados> {
        Rados::connect_with(cairn_proto::net::tcp(), mons, creds, op_timeout, mount_timeout).await
    }

    /// [`Rados::connect`] over `net` (the simulation's network in `cairn-sim`).
    pub async fn connect_with(
        net: Arc<dyn Network>,
        mons: Vec<String>,
        creds: Credentials,
        op_timeout: Duration,
        mount_timeout: Duration,
    ) -> Result<Rados> {
        let auth = ClientAuth::with_modes(
            creds.entity,
            creds.secret,
            creds.methods,
            creds.modes,
            mons.clone(),
            net.clone(),
        );
        let monc = MonClient::with_network(mons, net.clone(), auth.clone())?;
        monc.wait_for_map(mount_timeout).await?;
        tokio::spawn(monc.clone().follow_maps());
        Ok(Rados {
            inner: Arc::new(Inner {
                monc,
                osds: ConnPool::new(net, auth),
                client_id: rand::random::<u64>() | 1,
                next_tid: AtomicU64::new(1),
                op_timeout,
                conf: std::sync::OnceLock::new(),
            }),
        })
    }

    /// Connects using a parsed configuration, as `entity` (e.g. `client.admin`), with the key
    /// the configuration names (`key`, `keyfile`, `keyring`, or the default keyring path).
    pub async fn connect_conf(conf: &Conf, entity: &str) -> Result<Rados> {
        let creds = Credentials::from_conf(conf, entity)?;
        let hosts = conf
            .get(entity, "mon host")
            .ok_or_else(|| Error::einval("no 'mon host' in the configuration"))?;
        let mons = cairn_types::conf::parse_mon_hosts(&hosts)?;
        let secs = |key: &str, default: Duration| -> Result<Duration> {
            Ok(match conf.get(entity, key) {
                Some(v) => {
                    let s: f64 = v
                        .trim()
                        .parse()
                        .map_err(|_| Error::einval(format!("{key}: invalid number '{v}'")))?;
                    if s <= 0.0 {
                        Duration::from_secs(86400 * 365)
                    } else {
                        Duration::from_secs_f64(s)
                    }
                }
                None => default,
            })
        };
        let op_timeout = secs("rados osd op timeout", DEFAULT_OP_TIMEOUT)?;
        let mount_timeout = secs("client mount timeout", DEFAULT_MOUNT_TIMEOUT)?;
        let rados = Rados::connect(mons, creds, op_timeout, mount_timeout).await?;
        let _ = rados.inner.conf.set((conf.clone(), entity.to_string()));
        Ok(rados)
    }

    /// The configuration this handle was connected with and its entity, if any.
    pub fn conf(&self) -> Option<(&Conf, &str)> {
        self.inner.conf.get().map(|(c, e)| (c, e.as_str()))
    }

    pub fn map(&self) -> Arc<ClusterMap> {
        self.inner.monc.map()
    }

    /// Who this handle is to the cluster, and its tickets.
    pub fn auth(&self) -> &Arc<ClientAuth> {
        self.inner.monc.auth()
    }

    /// This client's instance id (Ceph's global id): names it as a lock owner and watcher.
    pub fn client_id(&self) -> u64 {
        self.inner.client_id
    }

    /// An IoCtx for pool `id`.
    pub fn ioctx_by_id(&self, id: cairn_types::PoolId) -> Result<IoCtx> {
        let map = self.map();
        let p = map.pools.get(&id).ok_or_else(|| Error::enoent(format!("pool {id} does not exist")))?;
        Ok(IoCtx::new(self.clone(), p.id, p.name.clone()))
    }

    pub fn monc(&self) -> &MonClient {
        &self.inner.monc
    }

    /// Sends a Ceph-style JSON mon command to the leader.
    pub async fn mon_command(&self, json: &serde_json::Value) -> Result<MonReply> {
        self.mon_command_input(json, Bytes::new()).await
    }

    /// [`Rados::mon_command`] with input data (Ceph's `inbuf`, e.g. `auth import -i FILE`).
    pub async fn mon_command_input(&self, json: &serde_json::Value, inbuf: Bytes) -> Result<MonReply> {
        let msg = if inbuf.is_empty() {
            Message::MonCommand { cmd: json.to_string() }
        } else {
            Message::MonCommandWithInput { cmd: json.to_string(), inbuf }
        };
        match self.inner.monc.call_leader(msg, self.inner.op_timeout).await? {
            Message::MonCommandReply { rc, status, data } => Ok(MonReply { rc, status, data }),
            Message::Error(e) => Err(e),
            other => Err(Error::eio(format!("unexpected mon reply {other:?}"))),
        }
    }

    /// [`Rados::mon_command`], with a non-zero return code as the error.
    pub async fn mon_command_ok(&self, json: &serde_json::Value) -> Result<MonReply> {
        let reply = self.mon_command(json).await?;
        if reply.rc != 0 {
            return Err(Error::new(reply.rc, reply.status));
        }
        Ok(reply)
    }

    /// Sends an admin command to a daemon's address, answering JSON text.
    pub async fn admin(&self, addr: &str, command: &str) -> Result<String> {
        let msg = Message::Admin { command: command.to_string() };
        match self.inner.osds.call(addr, msg, Duration::from_secs(30)).await? {
            Message::AdminReply { json } => Ok(json),
            Message::Error(e) => Err(e),
            other => Err(Error::eio(format!("unexpected admin reply {other:?}"))),
        }
    }

    pub fn ioctx(&self, pool: &str) -> Result<IoCtx> {
        let map = self.map();
        let p = map.pool_named(pool)?;
        Ok(IoCtx::new(self.clone(), p.id, p.name.clone()))
    }

    /// Runs a compound op on one object, resending until it succeeds, fails for a reason that
    /// resending cannot fix, or the op timeout passes.
    pub async fn operate(&self, pool: u32, oid: &ObjectId, ops: Vec<ObjOp>) -> Result<Vec<OpOut>> {
        self.operate_snap(pool, oid, ops, &SnapContext::default(), None).await
    }

    /// [`Rados::operate`] with a snapshot context (writes) or a snapshot to read at.
    pub async fn operate_snap(
        &self,
        pool: u32,
        oid: &ObjectId,
        ops: Vec<ObjOp>,
        snapc: &SnapContext,
        snap: Option<u64>,
    ) -> Result<Vec<OpOut>> {
        oid.validate()?;
        let reqid =
            ReqId { client: self.inner.client_id, tid: self.inner.next_tid.fetch_add(1, Ordering::Relaxed) };
        let deadline = tokio::time::Instant::now() + self.inner.op_timeout;
        let mut last_err = Error::timed_out("no attempt made");
        let mut backoff = Duration::from_millis(20);
        loop {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(Error::timed_out(format!("operation on {oid} timed out: {}", last_err.message)));
            }
            let map = self.map();
            let Some(p) = map.pools.get(&pool) else {
                return Err(Error::enoent(format!("pool {pool} does not exist")));
            };
            let pg = map.object_pg(p, &oid.namespace, &oid.name);
            let primary = map.interval(pg).and_then(|i| i.primary()).and_then(|id| map.osds.get(&id));
            let Some(primary) = primary else {
                last_err = Error::eagain(format!("pg {pg} has no primary"));
                self.wait_for_newer_map(map.epoch, Duration::from_secs(1)).await;
                continue;
            };
            let msg = Message::OsdOp {
                pg,
                oid: oid.clone(),
                epoch: map.epoch,
                reqid,
                ops: ops.clone(),
                snapc: snapc.clone(),
                snap,
            };
            match self.inner.osds.call(&primary.addr, msg, deadline - now).await {
                Ok(Message::OsdOpReply { result: 0, outs, .. }) => return Ok(outs),
                Ok(Message::OsdOpReply { result, message, epoch, .. }) if retryable(result) => {
                    last_err = Error::new(result, message);
                    if epoch > map.epoch {
                        self.wait_for_newer_map(epoch - 1, Duration::from_secs(1)).await;
                    } else {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_millis(500));
                    }
                }
                Ok(Message::OsdOpReply { result, message, .. }) => return Err(Error::new(result, message)),
                Ok(other) => return Err(Error::eio(format!("unexpected reply {other:?}"))),
                Err(e) if is_auth_error(&e) => return Err(e),
                Err(e) => {
                    last_err = e;
                    self.inner.osds.forget(&primary.addr).await;
                    self.wait_for_newer_map(map.epoch, backoff.max(Duration::from_millis(200))).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
            }
        }
    }

    /// Waits until the map is newer than `epoch`, at most `wait`.
    pub async fn wait_for_newer_map(&self, epoch: u64, wait: Duration) {
        let mut rx = self.inner.monc.subscribe();
        let _ = tokio::time::timeout(wait, async {
            while rx.borrow_and_update().epoch <= epoch {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
    }

    /// Lists every object of a pool (each PG from its primary).
    pub async fn list_objects(&self, pool: u32) -> Result<Vec<ObjectId>> {
        let map = self.map();
        let p =
            map.pools.get(&pool).ok_or_else(|| Error::enoent(format!("pool {pool} does not exist")))?.clone();
        let mut out = Vec::new();
        for pg in p.pgs() {
            let mut after: Option<ObjectId> = None;
            loop {
                let reply = self.pg_list(pg, after.clone()).await?;
                let Message::PgListReply { objects, done } = reply else {
                    return Err(Error::eio("unexpected listing reply"));
                };
                after = objects.last().cloned();
                out.extend(objects);
                if done || after.is_none() {
                    break;
                }
            }
        }
        Ok(out)
    }

    async fn pg_list(&self, pg: cairn_types::PgId, after: Option<ObjectId>) -> Result<Message> {
        let deadline = tokio::time::Instant::now() + self.inner.op_timeout;
        loop {
            let map = self.map();
            let addr = map
                .interval(pg)
                .and_then(|i| i.primary())
                .and_then(|id| map.osds.get(&id))
                .map(|o| o.addr.clone());
            if let Some(addr) = addr {
                let msg = Message::PgList { pg, epoch: map.epoch, start_after: after.clone(), max: 1024 };
                match self.inner.osds.call(&addr, msg, Duration::from_secs(10)).await {
                    Err(e) if is_auth_error(&e) => return Err(e),
                    Ok(Message::Error(e)) if !retryable(e.errno) => return Err(e),
                    Ok(Message::Error(_)) | Err(_) => {}
                    Ok(reply) => return Ok(reply),
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::timed_out(format!("listing pg {pg} timed out")));
            }
            self.wait_for_newer_map(map.epoch, Duration::from_millis(300)).await;
        }
    }
}

fn retryable(errno_value: i32) -> bool {
    matches!(errno_value, errno::EAGAIN | errno::ESTALE | errno::ENOTCONN | errno::ETIMEDOUT)
}
