//! Object I/O within one pool (librados' `rados_ioctx_t`).

use crate::Rados;
use bytes::Bytes;
use cairn_proto::cls::ClsCall;
use cairn_proto::{ObjOp, OpOut, SnapContext, SnapList};
use cairn_types::{Error, ObjectId, PoolId, Result};

#[derive(Clone)]
pub struct IoCtx {
    rados: Rados,
    pub pool: PoolId,
    pub pool_name: String,
    pub namespace: String,
    /// Writes carry this (librados' `selfmanaged_snap_set_write_ctx`).
    pub snapc: SnapContext,
    /// Reads see this snapshot (librados' `snap_set_read`); `None` = the head.
    pub read_snap: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectStat {
    pub size: u64,
    pub mtime_ns: u64,
}

impl IoCtx {
    pub fn new(rados: Rados, pool: PoolId, pool_name: String) -> Self {
        IoCtx {
            rados,
            pool,
            pool_name,
            namespace: String::new(),
            snapc: SnapContext::default(),
            read_snap: None,
        }
    }

    pub fn rados(&self) -> &Rados {
        &self.rados
    }

    fn oid(&self, name: &str) -> ObjectId {
        ObjectId { namespace: self.namespace.clone(), name: name.to_string() }
    }

    pub async fn operate(&self, name: &str, ops: Vec<ObjOp>) -> Result<Vec<OpOut>> {
        self.rados.operate_snap(self.pool, &self.oid(name), ops, &self.snapc, self.read_snap).await
    }

    /// Runs an object-class method; its output bytes (empty for most writes).
    pub async fn call(&self, name: &str, call: ClsCall) -> Result<Bytes> {
        match self.one(name, ObjOp::Call(call)).await? {
            OpOut::Data(d) => Ok(d),
            _ => Ok(Bytes::new()),
        }
    }

    /// The object's clones and head (`rados listsnaps`).
    pub async fn list_snaps(&self, name: &str) -> Result<SnapList> {
        match self.one(name, ObjOp::ListSnaps).await? {
            OpOut::Snaps(s) => Ok(s),
            other => Err(unexpected(other)),
        }
    }

    /// Allocates a self-managed snapshot id from the mons (librados'
    /// `selfmanaged_snap_create`).
    pub async fn selfmanaged_snap_create(&self) -> Result<u64> {
        let cmd = serde_json::json!({"prefix": "osd pool selfmanaged-snap create", "pool": self.pool_name});
        let reply = self.rados.mon_command_ok(&cmd).await?;
        let text = String::from_utf8_lossy(&reply.data);
        text.trim().parse().map_err(|_| Error::eio(format!("mon answered snap create with '{text}'")))
    }

    /// Releases a self-managed snapshot id: the OSDs trim the clones only it needed.
    pub async fn selfmanaged_snap_remove(&self, snap: u64) -> Result<()> {
        let cmd = serde_json::json!({
            "prefix": "osd pool selfmanaged-snap rm", "pool": self.pool_name, "snapid": snap
        });
        self.rados.mon_command_ok(&cmd).await.map(drop)
    }

    async fn one(&self, name: &str, op: ObjOp) -> Result<OpOut> {
        let mut outs = self.operate(name, vec![op]).await?;
        Ok(outs.pop().unwrap_or(OpOut::None))
    }

    pub async fn read(&self, name: &str, offset: u64, len: u64) -> Result<Bytes> {
        match self.one(name, ObjOp::Read { offset, len }).await? {
            OpOut::Data(d) => Ok(d),
            other => Err(unexpected(other)),
        }
    }

    pub async fn write(&self, name: &str, offset: u64, data: Bytes) -> Result<()> {
        self.one(name, ObjOp::Write { offset, data }).await.map(drop)
    }

    pub async fn write_full(&self, name: &str, data: Bytes) -> Result<()> {
        self.one(name, ObjOp::WriteFull { data }).await.map(drop)
    }

    pub async fn append(&self, name: &str, data: Bytes) -> Result<()> {
        self.one(name, ObjOp::Append { data }).await.map(drop)
    }

    pub async fn truncate(&self, name: &str, size: u64) -> Result<()> {
        self.one(name, ObjOp::Truncate { size }).await.map(drop)
    }

    pub async fn zero(&self, name: &str, offset: u64, len: u64) -> Result<()> {
        self.one(name, ObjOp::Zero { offset, len }).await.map(drop)
    }

    pub async fn remove(&self, name: &str) -> Result<()> {
        self.one(name, ObjOp::Remove).await.map(drop)
    }

    pub async fn create(&self, name: &str, exclusive: bool) -> Result<()> {
        self.one(name, ObjOp::Create { exclusive }).await.map(drop)
    }

    pub async fn stat(&self, name: &str) -> Result<ObjectStat> {
        match self.one(name, ObjOp::Stat).await? {
            OpOut::Stat { size, mtime_ns } => Ok(ObjectStat { size, mtime_ns }),
            other => Err(unexpected(other)),
        }
    }

    pub async fn get_xattr(&self, name: &str, key: &str) -> Result<Bytes> {
        match self.one(name, ObjOp::GetXattr { name: key.into() }).await? {
            OpOut::Data(d) => Ok(d),
            other => Err(unexpected(other)),
        }
    }

    pub async fn set_xattr(&self, name: &str, key: &str, value: Bytes) -> Result<()> {
        self.one(name, ObjOp::SetXattr { name: key.into(), value }).await.map(drop)
    }

    pub async fn rm_xattr(&self, name: &str, key: &str) -> Result<()> {
        self.one(name, ObjOp::RmXattr { name: key.into() }).await.map(drop)
    }

    pub async fn list_xattrs(&self, name: &str) -> Result<Vec<(String, Bytes)>> {
        match self.one(name, ObjOp::GetXattrs).await? {
            OpOut::Pairs { entries, .. } => Ok(entries),
            other => Err(unexpected(other)),
        }
    }

    pub async fn omap_set(&self, name: &str, entries: Vec<(String, Bytes)>) -> Result<()> {
        self.one(name, ObjOp::OmapSet { entries }).await.map(drop)
    }

    pub async fn omap_rm_keys(&self, name: &str, keys: Vec<String>) -> Result<()> {
        self.one(name, ObjOp::OmapRmKeys { keys }).await.map(drop)
    }

    pub async fn omap_get_vals_by_keys(&self, name: &str, keys: Vec<String>) -> Result<Vec<(String, Bytes)>> {
        match self.one(name, ObjOp::OmapGetValsByKeys { keys }).await? {
            OpOut::Pairs { entries, .. } => Ok(entries),
            other => Err(unexpected(other)),
        }
    }

    /// Every omap entry whose key starts with `prefix`, following pagination.
    pub async fn omap_get_vals(&self, name: &str, prefix: &str) -> Result<Vec<(String, Bytes)>> {
        let mut out: Vec<(String, Bytes)> = Vec::new();
        loop {
            let start_after = out.last().map(|(k, _)| k.clone()).unwrap_or_default();
            let op = ObjOp::OmapGetVals { start_after, prefix: prefix.into(), max: 1024 };
            match self.one(name, op).await? {
                OpOut::Pairs { entries, more } => {
                    out.extend(entries);
                    if !more {
                        return Ok(out);
                    }
                }
                other => return Err(unexpected(other)),
            }
        }
    }

    pub async fn list_objects(&self) -> Result<Vec<String>> {
        let all = self.rados.list_objects(self.pool).await?;
        Ok(all.into_iter().filter(|o| o.namespace == self.namespace).map(|o| o.name).collect())
    }
}

fn unexpected(out: OpOut) -> Error {
    Error::eio(format!("unexpected op output {out:?}"))
}
