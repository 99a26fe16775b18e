//! An open image: I/O striped over its data objects, snapshots, clone read-through and copy-up,
//! flatten, resize, diffs, locks and watches.

use crate::cache::{CacheConfig, WriteCache};
use crate::layout::{self, Layout, ObjectExtent};
use crate::{features, now_ms, now_secs, Progress};
use bytes::{Bytes, BytesMut};
use cairn_client::IoCtx;
use cairn_proto::cls::{
    self, ChildSpec, ClsCall, ImageHeader, LockHolder, LockState, ParentSpec, SnapInfo, Watcher,
};
use cairn_proto::{ObjOp, SnapContext, SnapSet, SnapTarget};
use cairn_types::{errno, Error, Result};
use futures::{StreamExt, TryStreamExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// Object ops one image call keeps in flight.
pub const IO_CONCURRENCY: usize = 16;
/// How often an open image re-reads its header and renews its watch.
pub const WATCH_REFRESH: Duration = Duration::from_secs(1);
/// A watch not renewed this long counts as gone (Ceph's `osd client watch timeout`).
pub const WATCH_TIMEOUT: Duration = Duration::from_secs(30);
/// Name of the exclusive lock, as librbd names it.
pub const EXCLUSIVE_LOCK_NAME: &str = "rbd_lock";

/// `rbd info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    pub name: String,
    pub id: String,
    pub size: u64,
    pub order: u8,
    pub object_size: u64,
    pub num_objects: u64,
    pub block_name_prefix: String,
    pub features: u64,
    pub stripe_unit: u64,
    pub stripe_count: u64,
    pub snapshot_count: usize,
    pub create_timestamp_secs: u64,
    pub parent: Option<ParentInfo>,
}

/// Where a clone comes from, with names resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentInfo {
    pub pool_name: String,
    pub image_name: String,
    pub image_id: String,
    pub snap_name: String,
    pub snap_id: u64,
    pub overlap: u64,
}

struct State {
    header: ImageHeader,
    layout: Layout,
    snapc: SnapContext,
}

struct Inner {
    io: IoCtx,
    name: String,
    id: String,
    header_oid: String,
    /// Opened at this snapshot (read-only).
    snap: Option<(u64, String)>,
    read_only: bool,
    state: RwLock<State>,
    parents: Mutex<HashMap<(u32, String, u64), Image>>,
    watch_cookie: u64,
    lock_held: tokio::sync::Mutex<bool>,
    /// Writers coordinate themselves (`cairn nbd serve --shared`): no exclusive lock.
    shared: std::sync::atomic::AtomicBool,
    cache: WriteCache,
    closed: tokio::sync::watch::Sender<bool>,
}

/// An open image. Clones share the handle.
#[derive(Clone)]
pub struct Image {
    inner: Arc<Inner>,
}

impl Image {
    /// Opens image `name` of `io`'s pool, at snapshot `snap` if given (then read-only).
    pub async fn open(io: &IoCtx, name: &str, snap: Option<&str>, read_only: bool) -> Result<Image> {
        let id = crate::image_id(io, name).await?;
        Self::open_by_id(io, &id, name, snap.map(SnapRef::Name), read_only).await
    }

    pub(crate) async fn open_by_id(
        io: &IoCtx,
        id: &str,
        name: &str,
        snap: Option<SnapRef<'_>>,
        read_only: bool,
    ) -> Result<Image> {
        let header_oid = layout::header_object(id);
        let header = get_header(io, &header_oid).await.map_err(|e| {
            if e.errno == errno::ENOENT {
                Error::enoent(format!("image {name} does not exist"))
            } else {
                e
            }
        })?;
        let snap = match snap {
            None => None,
            Some(SnapRef::Name(n)) => {
                let s = header
                    .user_snap_named(n)
                    .ok_or_else(|| Error::enoent(format!("snapshot {n} does not exist")))?;
                Some((s.id, s.name.clone()))
            }
            Some(SnapRef::Id(sid)) => {
                let s = header
                    .snap(sid)
                    .ok_or_else(|| Error::enoent(format!("snapshot {sid} does not exist")))?;
                Some((s.id, s.name.clone()))
            }
        };
        let state = State::new(header)?;
        let cache_cfg = match io.rados().conf() {
            Some((conf, entity)) => CacheConfig::from_conf(conf, entity)?,
            None => CacheConfig::default(),
        };
        let mut io = io.clone();
        io.read_snap = snap.as_ref().map(|s| s.0);
        let (closed, _) = tokio::sync::watch::channel(false);
        let image = Image {
            inner: Arc::new(Inner {
                io,
                name: name.to_string(),
                id: id.to_string(),
                header_oid,
                read_only: read_only || snap.is_some(),
                snap,
                state: RwLock::new(state),
                parents: Mutex::new(HashMap::new()),
                watch_cookie: rand::random::<u64>() >> 1,
                lock_held: tokio::sync::Mutex::new(false),
                shared: std::sync::atomic::AtomicBool::new(false),
                cache: WriteCache::new(cache_cfg),
                closed,
            }),
        };
        if !image.inner.read_only {
            image.renew_watch().await?;
            tokio::spawn(image.clone().watch_loop());
        }
        Ok(image)
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn id(&self) -> &str {
        &self.inner.id
    }

    pub fn io(&self) -> &IoCtx {
        &self.inner.io
    }

    pub fn read_only(&self) -> bool {
        self.inner.read_only
    }

    /// The snapshot this handle reads, if opened at one.
    pub fn snap_id(&self) -> Option<u64> {
        self.inner.snap.as_ref().map(|s| s.0)
    }

    pub fn header(&self) -> ImageHeader {
        self.state().header.clone()
    }

    pub fn layout(&self) -> Layout {
        self.state().layout
    }

    /// The image size (at the open snapshot, if any).
    pub fn size(&self) -> u64 {
        let st = self.state();
        match &self.inner.snap {
            Some((id, _)) => st.header.snap(*id).map_or(0, |s| s.size),
            None => st.header.size,
        }
    }

    fn state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.inner.state.read().expect("image state lock")
    }

    /// Re-reads the header (snapshots, size, parent). Cached writes acknowledged before a new
    /// snapshot are written back first, so the snapshot has them.
    pub async fn refresh(&self) -> Result<()> {
        let header = get_header(&self.inner.io, &self.inner.header_oid).await?;
        if header.snap_seq != self.state().header.snap_seq && self.inner.cache.dirty_bytes() > 0 {
            self.write_back().await?;
        }
        *self.inner.state.write().expect("image state lock") = State::new(header)?;
        Ok(())
    }

    /// Writes back the cache, stops the watch and releases the exclusive lock if held.
    pub async fn close(&self) -> Result<()> {
        if self.inner.read_only {
            self.inner.closed.send_replace(true);
            return Ok(());
        }
        self.write_back().await?;
        self.inner.closed.send_replace(true);
        let mut held = self.inner.lock_held.lock().await;
        if *held {
            let call = ClsCall::LockRelease {
                name: EXCLUSIVE_LOCK_NAME.into(),
                owner: self.owner(),
                cookie: self.lock_cookie(),
            };
            let _ = self.header_call(call).await;
            *held = false;
        }
        let _ = self.header_call(ClsCall::WatchRemove { cookie: self.inner.watch_cookie }).await;
        Ok(())
    }

    pub fn info(&self) -> ImageInfo {
        let st = self.state();
        let h = &st.header;
        ImageInfo {
            name: self.inner.name.clone(),
            id: self.inner.id.clone(),
            size: self.size(),
            order: h.order,
            object_size: st.layout.object_size,
            num_objects: st.layout.object_count(self.size()),
            block_name_prefix: h.object_prefix.clone(),
            features: h.features,
            stripe_unit: st.layout.stripe_unit,
            stripe_count: st.layout.stripe_count,
            snapshot_count: h.snaps.iter().filter(|s| s.namespace == cls::SnapNamespace::User).count(),
            create_timestamp_secs: h.create_timestamp_secs,
            parent: None,
        }
    }

    // ---------------------------------------------------------------- I/O

    fn check_range(&self, offset: u64, len: u64) -> Result<()> {
        let size = self.size();
        match offset.checked_add(len) {
            Some(end) if end <= size => Ok(()),
            _ => Err(Error::einval(format!("extent {offset}~{len} is beyond the image size {size}"))),
        }
    }

    fn check_writable(&self) -> Result<()> {
        if self.inner.read_only {
            return Err(Error::new(errno::EROFS, format!("image {} is open read-only", self.inner.name)));
        }
        Ok(())
    }

    /// Reads `len` bytes at `offset` (holes and unwritten parts read as zeros).
    pub async fn read(&self, offset: u64, len: u64) -> Result<Bytes> {
        self.check_range(offset, len)?;
        let extents = self.layout().extents(offset, len);
        let pieces: Vec<(ObjectExtent, Bytes)> = futures::stream::iter(extents)
            .map(|e| async move { Ok::<_, Error>((e, self.read_object_extent(e).await?)) })
            .buffered(IO_CONCURRENCY)
            .try_collect()
            .await?;
        let mut out = BytesMut::zeroed(len as usize);
        for (e, data) in pieces {
            let at = (e.image_offset - offset) as usize;
            out[at..at + data.len()].copy_from_slice(&data);
        }
        self.inner.cache.overlay(offset, &mut out);
        Ok(out.freeze())
    }

    /// One object piece: the object's bytes, or the parent's within the overlap if the object
    /// does not exist (at the open snapshot), or zeros. May be short: the rest is zeros.
    async fn read_object_extent(&self, e: ObjectExtent) -> Result<Bytes> {
        let oid = self.data_object(e.object_no);
        match self.inner.io.read(&oid, e.offset, e.len).await {
            Ok(data) => Ok(data),
            Err(err) if err.errno == errno::ENOENT => self.read_parent(e.image_offset, e.len).await,
            Err(err) => Err(err),
        }
    }

    /// The parent's bytes under image extent `[offset, offset+len)`, zeros past the overlap.
    async fn read_parent(&self, offset: u64, len: u64) -> Result<Bytes> {
        let Some(parent) = self.parent_spec() else { return Ok(Bytes::new()) };
        if offset >= parent.overlap {
            return Ok(Bytes::new());
        }
        let len = len.min(parent.overlap - offset);
        let image = self.parent_image(&parent).await?;
        let len = len.min(image.size().saturating_sub(offset));
        image.read(offset, len).await
    }

    /// The parent as of the open snapshot (or the head).
    fn parent_spec(&self) -> Option<ParentSpec> {
        let st = self.state();
        match &self.inner.snap {
            Some((id, _)) => st.header.snap(*id).and_then(|s| s.parent.clone()),
            None => st.header.parent.clone(),
        }
    }

    /// Boxed: opening a parent is where the image's async call graph loops back on itself.
    fn parent_image<'a>(&'a self, p: &'a ParentSpec) -> futures::future::BoxFuture<'a, Result<Image>> {
        Box::pin(async move {
            let key = (p.pool, p.image_id.clone(), p.snap_id);
            if let Some(img) = self.inner.parents.lock().expect("parents lock").get(&key) {
                return Ok(img.clone());
            }
            let io = self.inner.io.rados().ioctx_by_id(p.pool)?;
            let name = crate::image_name(&io, &p.image_id).await.unwrap_or_else(|_| p.image_id.clone());
            let img = Image::open_by_id(&io, &p.image_id, &name, Some(SnapRef::Id(p.snap_id)), true).await?;
            self.inner.parents.lock().expect("parents lock").insert(key, img.clone());
            Ok(img)
        })
    }

    fn data_object(&self, object_no: u64) -> String {
        layout::data_object(&self.state().header.object_prefix, object_no)
    }

    /// An IoCtx that writes with the image's snapshot context.
    fn write_io(&self) -> IoCtx {
        let mut io = self.inner.io.clone();
        io.snapc = self.state().snapc.clone();
        io.read_snap = None;
        io
    }

    /// Writes `data` at `offset`: into the cache in write-back mode (durable at the next
    /// [`Image::flush`]), else to the cluster (durable on every replica when this returns).
    pub async fn write(&self, offset: u64, data: Bytes) -> Result<()> {
        self.check_writable()?;
        self.check_range(offset, data.len() as u64)?;
        self.acquire_lock_if_needed().await?;
        let cache = &self.inner.cache;
        match cache.try_write(offset, data.clone()) {
            Some(dirty) if dirty > cache.cfg.max_dirty => self.write_back().await,
            Some(dirty) => {
                if dirty > cache.cfg.target_dirty && cache.flush_lock.try_lock().is_ok() {
                    let image = self.clone();
                    tokio::spawn(async move { image.write_back().await });
                }
                Ok(())
            }
            None => self.write_through(offset, data).await,
        }
    }

    async fn write_through(&self, offset: u64, data: Bytes) -> Result<()> {
        let extents = self.layout().extents(offset, data.len() as u64);
        let io = self.write_io();
        futures::stream::iter(extents)
            .map(|e| {
                let at = (e.image_offset - offset) as usize;
                let piece = data.slice(at..at + e.len as usize);
                let io = &io;
                async move { self.write_object(io, e, ObjOp::Write { offset: e.offset, data: piece }).await }
            })
            .buffer_unordered(IO_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    /// Applies `op` to one object. In a clone, an object that does not exist yet within the
    /// parent overlap is first filled with the parent's data (copy-up), atomically with `op`.
    async fn write_object(&self, io: &IoCtx, e: ObjectExtent, op: ObjOp) -> Result<()> {
        let oid = self.data_object(e.object_no);
        let Some(parent) = self.parent_spec().filter(|p| p.overlap > 0) else {
            return io.operate(&oid, vec![op]).await.map(drop);
        };
        loop {
            // Only if the object exists (a read op fails the whole op with ENOENT).
            match io.operate(&oid, vec![ObjOp::Stat, op.clone()]).await {
                Err(err) if err.errno == errno::ENOENT => {}
                other => return other.map(drop),
            }
            let mut ops = vec![ObjOp::Create { exclusive: true }];
            ops.extend(self.copyup_ops(&parent, e.object_no).await?);
            ops.push(op.clone());
            match io.operate(&oid, ops).await {
                Err(err) if err.errno == errno::EEXIST => continue, // Another writer copied up.
                other => return other.map(drop),
            }
        }
    }

    /// Writes that fill object `object_no` with the parent's data under it.
    async fn copyup_ops(&self, parent: &ParentSpec, object_no: u64) -> Result<Vec<ObjOp>> {
        let mut ops = Vec::new();
        for (obj_off, image_off, len) in self.layout().object_to_image(object_no, parent.overlap) {
            let data = self.read_parent(image_off, len).await?;
            let trimmed = trim_zeros(&data);
            if !trimmed.is_empty() {
                ops.push(ObjOp::Write { offset: obj_off, data: trimmed });
            }
        }
        Ok(ops)
    }

    /// Discards `[offset, offset+len)`: reads return zeros afterwards. Whole objects are removed
    /// (kept as empty objects where a parent's data would otherwise show through).
    pub async fn discard(&self, offset: u64, len: u64) -> Result<()> {
        self.check_writable()?;
        self.check_range(offset, len)?;
        self.acquire_lock_if_needed().await?;
        self.write_back().await?;
        let layout = self.layout();
        let io = self.write_io();
        futures::stream::iter(layout.extents(offset, len))
            .map(|e| {
                let io = &io;
                async move { self.zero_object_extent(io, e, layout.object_size).await }
            })
            .buffer_unordered(IO_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    /// Same as discard: zeros are guaranteed either way.
    pub async fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        self.discard(offset, len).await
    }

    async fn zero_object_extent(&self, io: &IoCtx, e: ObjectExtent, object_size: u64) -> Result<()> {
        let oid = self.data_object(e.object_no);
        let under_parent = self.parent_spec().is_some_and(|p| p.overlap > e.image_offset);
        let whole = e.offset == 0 && e.len == object_size;
        let result = if whole && !under_parent {
            io.operate(&oid, vec![ObjOp::Remove]).await.map(drop)
        } else if under_parent {
            let op = if whole {
                ObjOp::Truncate { size: 0 }
            } else {
                ObjOp::Zero { offset: e.offset, len: e.len }
            };
            self.write_object(io, e, op).await
        } else if e.offset + e.len >= object_size {
            // The tail of an object: cut it off (an object that does not exist stays so).
            io.operate(&oid, vec![ObjOp::Stat, ObjOp::Truncate { size: e.offset }]).await.map(drop)
        } else {
            io.operate(&oid, vec![ObjOp::Zero { offset: e.offset, len: e.len }]).await.map(drop)
        };
        match result {
            Err(err) if err.errno == errno::ENOENT => Ok(()),
            other => other,
        }
    }

    /// Makes every write acknowledged so far durable on every replica (writes the cache back).
    /// After the user's first flush, a cache in `writethrough until flush` mode turns
    /// write-back (the user has shown it flushes).
    pub async fn flush(&self) -> Result<()> {
        self.write_back().await?;
        self.inner.cache.user_flushed();
        Ok(())
    }

    /// Writes the cache back (internal flushes do not change the cache's mode).
    async fn write_back(&self) -> Result<()> {
        let cache = &self.inner.cache;
        let _one = cache.flush_lock.lock().await;
        let batch = cache.take_dirty();
        let result = futures::stream::iter(batch)
            .map(|(o, b)| self.write_through(o, b))
            .buffer_unordered(IO_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await
            .map(drop);
        cache.finish_flush(result.is_ok());
        result
    }

    /// Grows or shrinks the image; shrinking needs `allow_shrink` and drops the data past the
    /// new end.
    pub async fn resize(&self, size: u64, allow_shrink: bool, progress: &Progress<'_>) -> Result<()> {
        self.check_writable()?;
        self.acquire_lock_if_needed().await?;
        self.write_back().await?;
        let old = self.size();
        if size < old && !allow_shrink {
            return Err(Error::einval(
                "shrinking an image is only allowed with the --allow-shrink flag".to_string(),
            ));
        }
        self.header_call(ClsCall::RbdSetSize { size }).await?;
        self.refresh().await?;
        if size < old {
            let layout = self.layout();
            // Every object of the object set holding the new end may hold bytes past it.
            let first = layout.extents(size, 1).first().map_or(0, |e| e.object_no);
            let first = first - first % layout.stripe_count;
            let end = layout.object_count(old);
            let io = self.write_io();
            let total = end.saturating_sub(first);
            let done = std::sync::atomic::AtomicU64::new(0);
            futures::stream::iter(first..end)
                .map(|no| {
                    let (io, done) = (&io, &done);
                    async move {
                        self.shrink_object(io, no, size).await?;
                        progress(done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1, total);
                        Ok::<(), Error>(())
                    }
                })
                .buffer_unordered(IO_CONCURRENCY)
                .try_collect::<Vec<()>>()
                .await?;
        }
        Ok(())
    }

    /// Drops the part of object `no` that lies at or past image offset `size`.
    async fn shrink_object(&self, io: &IoCtx, no: u64, size: u64) -> Result<()> {
        let layout = self.layout();
        let keep: u64 = layout.object_to_image(no, size).iter().map(|(o, _, l)| o + l).max().unwrap_or(0);
        let oid = self.data_object(no);
        let ops = if keep == 0 {
            vec![ObjOp::Remove]
        } else {
            // Striped objects interleave: zero every piece past the end, then cut the tail.
            let mut ops = vec![ObjOp::Stat];
            for (o, io_off, l) in layout.object_to_image(no, size + layout.object_size * layout.stripe_count)
            {
                if io_off >= size {
                    ops.push(ObjOp::Zero { offset: o, len: l });
                }
            }
            ops.push(ObjOp::Truncate { size: keep });
            ops
        };
        match io.operate(&oid, ops).await {
            Err(e) if e.errno == errno::ENOENT => Ok(()),
            other => other.map(drop),
        }
    }

    // ---------------------------------------------------------------- snapshots

    pub fn snaps(&self) -> Vec<SnapInfo> {
        self.state().header.snaps.clone()
    }

    fn snap_named(&self, name: &str) -> Result<SnapInfo> {
        self.state()
            .header
            .user_snap_named(name)
            .cloned()
            .ok_or_else(|| Error::enoent(format!("snapshot '{name}' does not exist")))
    }

    /// Takes a snapshot. Returns once every open writer of the image writes with it.
    pub async fn snap_create(&self, name: &str) -> Result<u64> {
        self.check_writable()?;
        validate_snap_name(name)?;
        self.write_back().await?;
        self.refresh().await?;
        if self.state().header.user_snap_named(name).is_some() {
            return Err(Error::eexist(format!("snapshot '{name}' already exists")));
        }
        let id = self.inner.io.selfmanaged_snap_create().await?;
        let call = ClsCall::RbdSnapAdd { id, name: name.to_string(), timestamp_secs: now_secs() };
        if let Err(e) = self.header_call(call).await {
            let _ = self.inner.io.selfmanaged_snap_remove(id).await;
            return Err(e);
        }
        self.refresh().await?;
        self.renew_watch().await?;
        self.wait_watchers_saw(id).await;
        Ok(id)
    }

    /// Waits (up to the watch timeout) until every live watcher writes with snapshot `id`.
    async fn wait_watchers_saw(&self, id: u64) {
        let deadline = tokio::time::Instant::now() + WATCH_TIMEOUT;
        while tokio::time::Instant::now() < deadline {
            match self.watchers().await {
                Ok(ws) if ws.iter().all(|w| w.seen_snap_seq >= id) => return,
                Ok(_) => tokio::time::sleep(WATCH_REFRESH / 4).await,
                Err(_) => return,
            }
        }
    }

    pub async fn snap_remove(&self, name: &str) -> Result<()> {
        self.check_writable()?;
        self.refresh().await?;
        let snap = self.snap_named(name)?;
        let out = self.header_call(ClsCall::RbdSnapRemove { id: snap.id }).await?;
        if cls::decode::<bool>("snapshot_remove output", &out)? {
            self.inner.io.selfmanaged_snap_remove(snap.id).await?;
        }
        self.refresh().await?;
        match snap.parent {
            Some(p) => self.detach_if_unused(&p).await,
            None => Ok(()),
        }
    }

    /// Leaves parent snapshot `p`'s children once neither the head nor any snapshot of this
    /// image reads through it (after a flatten, and the removal of the snapshots before it).
    async fn detach_if_unused(&self, p: &ParentSpec) -> Result<()> {
        let same = |q: &Option<ParentSpec>| {
            q.as_ref().is_some_and(|q| (q.pool, &q.image_id, q.snap_id) == (p.pool, &p.image_id, p.snap_id))
        };
        let h = self.header();
        if same(&h.parent) || h.snaps.iter().any(|s| same(&s.parent)) {
            return Ok(());
        }
        match crate::detach_child(self.inner.io.rados(), p, self.child_spec()).await {
            Err(e) if e.errno != errno::ENOENT => Err(e),
            _ => Ok(()),
        }
    }

    pub async fn snap_rename(&self, name: &str, new_name: &str) -> Result<()> {
        validate_snap_name(new_name)?;
        self.refresh().await?;
        let snap = self.snap_named(name)?;
        self.header_call(ClsCall::RbdSnapRename { id: snap.id, name: new_name.to_string() }).await?;
        self.refresh().await
    }

    pub async fn snap_set_protection(&self, name: &str, protected: bool) -> Result<()> {
        self.refresh().await?;
        let snap = self.snap_named(name)?;
        match (snap.protected, protected) {
            (true, true) => return Err(Error::new(errno::EBUSY, "snap is already protected")),
            (false, false) => return Err(Error::einval("snap is already unprotected")),
            _ => {}
        }
        self.header_call(ClsCall::RbdSetProtection { id: snap.id, protected }).await?;
        self.refresh().await
    }

    pub async fn snap_is_protected(&self, name: &str) -> Result<bool> {
        self.refresh().await?;
        Ok(self.snap_named(name)?.protected)
    }

    /// Removes every unprotected snapshot; EBUSY if a protected one remains.
    pub async fn snap_purge(&self, progress: &Progress<'_>) -> Result<()> {
        self.refresh().await?;
        let snaps: Vec<SnapInfo> =
            self.snaps().into_iter().filter(|s| s.namespace == cls::SnapNamespace::User).collect();
        let total = snaps.len() as u64;
        let mut protected = 0;
        for (i, s) in snaps.iter().enumerate() {
            if s.protected {
                protected += 1;
            } else {
                self.snap_remove(&s.name).await?;
            }
            progress(i as u64 + 1, total);
        }
        if protected > 0 {
            return Err(Error::new(errno::EBUSY, format!("{protected} snapshot(s) are protected")));
        }
        Ok(())
    }

    /// Makes the image's content and size what they were at snapshot `name`.
    pub async fn snap_rollback(&self, name: &str, progress: &Progress<'_>) -> Result<()> {
        self.check_writable()?;
        self.acquire_lock_if_needed().await?;
        self.write_back().await?;
        self.refresh().await?;
        let snap = self.snap_named(name)?;
        let count = self.layout().object_count(self.size().max(snap.size));
        let io = self.write_io();
        let done = std::sync::atomic::AtomicU64::new(0);
        futures::stream::iter(0..count)
            .map(|no| {
                let (io, done) = (&io, &done);
                async move {
                    let oid = self.data_object(no);
                    match io.operate(&oid, vec![ObjOp::Rollback { snap: snap.id }]).await {
                        Err(e) if e.errno != errno::ENOENT => return Err(e),
                        _ => {}
                    }
                    progress(done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1, count);
                    Ok(())
                }
            })
            .buffer_unordered(IO_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        self.header_call(ClsCall::RbdSetSize { size: snap.size }).await?;
        if self.state().header.parent != snap.parent {
            self.header_call(ClsCall::RbdSetParent { parent: snap.parent.clone() }).await?;
        }
        self.refresh().await
    }

    // ---------------------------------------------------------------- clones

    /// ENOENT if the image is not a clone.
    pub async fn parent_info(&self) -> Result<ParentInfo> {
        let p = self
            .parent_spec()
            .ok_or_else(|| Error::enoent(format!("image {} has no parent", self.inner.name)))?;
        let io = self.inner.io.rados().ioctx_by_id(p.pool)?;
        let image_name = crate::image_name(&io, &p.image_id).await.unwrap_or_else(|_| p.image_id.clone());
        let parent = self.parent_image(&p).await?;
        let snap_name = parent.inner.snap.as_ref().map(|s| s.1.clone()).unwrap_or_default();
        Ok(ParentInfo {
            pool_name: io.pool_name.clone(),
            image_name,
            image_id: p.image_id,
            snap_name,
            snap_id: p.snap_id,
            overlap: p.overlap,
        })
    }

    /// Clones of snapshot `name` (`(pool name, image name)`), sorted.
    pub async fn children(&self, name: &str) -> Result<Vec<(String, String)>> {
        self.refresh().await?;
        let snap = self.snap_named(name)?;
        self.resolve_children(&snap.children).await
    }

    /// Clones of every snapshot of the image.
    pub async fn all_children(&self) -> Result<Vec<(String, String)>> {
        self.refresh().await?;
        let all: Vec<ChildSpec> = self.snaps().into_iter().flat_map(|s| s.children).collect();
        self.resolve_children(&all).await
    }

    async fn resolve_children(&self, specs: &[ChildSpec]) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for c in specs {
            let io = self.inner.io.rados().ioctx_by_id(c.pool)?;
            let name = crate::image_name(&io, &c.image_id).await.unwrap_or_else(|_| c.image_id.clone());
            out.push((io.pool_name.clone(), name));
        }
        out.sort();
        Ok(out)
    }

    /// Copies everything the image reads from its parent into its own objects, then detaches
    /// it from the parent.
    pub async fn flatten(&self, progress: &Progress<'_>) -> Result<()> {
        self.check_writable()?;
        self.acquire_lock_if_needed().await?;
        self.write_back().await?;
        self.refresh().await?;
        let Some(parent) = self.parent_spec() else {
            return Err(Error::einval(format!("image {} is not a clone", self.inner.name)));
        };
        let layout = self.layout();
        let count = layout.object_count(parent.overlap);
        let io = self.write_io();
        let done = std::sync::atomic::AtomicU64::new(0);
        futures::stream::iter(0..count)
            .map(|no| {
                let (io, done, parent) = (&io, &done, &parent);
                async move {
                    let mut ops = vec![ObjOp::Create { exclusive: true }];
                    ops.extend(self.copyup_ops(parent, no).await?);
                    match io.operate(&self.data_object(no), ops).await {
                        Err(e) if e.errno != errno::EEXIST => return Err(e),
                        _ => {}
                    }
                    progress(done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1, count);
                    Ok(())
                }
            })
            .buffer_unordered(IO_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        self.header_call(ClsCall::RbdSetParent { parent: None }).await?;
        self.refresh().await?;
        // Snapshots of the clone still read through the parent: keep the link until they go.
        self.detach_if_unused(&parent).await
    }

    pub(crate) fn child_spec(&self) -> ChildSpec {
        ChildSpec {
            pool: self.inner.io.pool,
            pool_namespace: self.inner.io.namespace.clone(),
            image_id: self.inner.id.clone(),
        }
    }

    // ---------------------------------------------------------------- diffs

    /// Object-granular changes between snapshot `from` (or the image's creation) and the open
    /// snapshot (or the head), within `[offset, offset+len)`: calls `cb(offset, len, exists)`
    /// in image order; `exists == false` means the range reads as zeros now. With
    /// `include_parent`, a clone's unwritten ranges are reported as the parent's data.
    pub async fn diff_iterate(
        &self,
        from: Option<&str>,
        offset: u64,
        len: u64,
        include_parent: bool,
        cb: &mut (dyn FnMut(u64, u64, bool) -> Result<()> + Send),
    ) -> Result<()> {
        let from_id = match from {
            Some(name) => Some(self.snap_named(name)?.id),
            None => None,
        };
        let end = offset.saturating_add(len).min(self.size());
        let changes = self.changed_extents(from_id, offset, end, include_parent).await?;
        for (off, l, exists) in merge_extents(changes) {
            cb(off, l, exists)?;
        }
        Ok(())
    }

    /// `(image offset, len, exists)` pieces that changed, unsorted.
    fn changed_extents(
        &self,
        from: Option<u64>,
        start: u64,
        end: u64,
        include_parent: bool,
    ) -> futures::future::BoxFuture<'_, Result<Vec<(u64, u64, bool)>>> {
        Box::pin(async move {
            if start >= end {
                return Ok(Vec::new());
            }
            let layout = self.layout();
            let mut objects: Vec<u64> =
                layout.extents(start, end - start).iter().map(|e| e.object_no).collect();
            objects.sort_unstable();
            objects.dedup();
            let to = self.snap_id();
            let listed: Vec<(u64, cairn_proto::SnapList)> = futures::stream::iter(objects)
                .map(|no| async move {
                    let mut io = self.inner.io.clone();
                    io.read_snap = None;
                    Ok::<_, Error>((no, io.list_snaps(&self.data_object(no)).await?))
                })
                .buffered(IO_CONCURRENCY)
                .try_collect()
                .await?;
            let mut out = Vec::new();
            let mut missing_ranges = Vec::new();
            for (no, list) in listed {
                let at_to = version_at(&list, to);
                let at_from = from.and_then(|f| version_at(&list, Some(f)));
                let pieces = layout.object_to_image(no, end);
                for (_, image_off, l) in pieces {
                    let (lo, hi) = (image_off.max(start), (image_off + l).min(end));
                    if lo >= hi {
                        continue;
                    }
                    if at_to.is_none() && include_parent && from.is_none() {
                        missing_ranges.push((lo, hi));
                    } else if at_to != at_from {
                        out.push((lo, hi - lo, at_to.is_some()));
                    }
                }
            }
            if !missing_ranges.is_empty() {
                if let Some(parent) = self.parent_spec() {
                    let pimg = self.parent_image(&parent).await?;
                    for (lo, hi) in missing_ranges {
                        let hi = hi.min(parent.overlap).min(pimg.size());
                        if lo < hi {
                            out.extend(pimg.changed_extents(None, lo, hi, true).await?);
                        }
                    }
                }
            }
            Ok(out)
        })
    }

    // ---------------------------------------------------------------- metadata, locks, watches

    pub async fn metadata_set(&self, key: &str, value: &str) -> Result<()> {
        let k = format!("{}{key}", cls::METADATA_PREFIX);
        self.inner
            .io
            .omap_set(&self.inner.header_oid, vec![(k, Bytes::copy_from_slice(value.as_bytes()))])
            .await
    }

    pub async fn metadata_get(&self, key: &str) -> Result<String> {
        let k = format!("{}{key}", cls::METADATA_PREFIX);
        let found = self.inner.io.omap_get_vals_by_keys(&self.inner.header_oid, vec![k]).await?;
        match found.into_iter().next() {
            Some((_, v)) => Ok(String::from_utf8_lossy(&v).into_owned()),
            None => Err(Error::enoent(format!(
                "failed to get metadata {key} of image : (2) No such file or directory"
            ))),
        }
    }

    pub async fn metadata_remove(&self, key: &str) -> Result<()> {
        self.metadata_get(key).await?;
        let k = format!("{}{key}", cls::METADATA_PREFIX);
        self.inner.io.omap_rm_keys(&self.inner.header_oid, vec![k]).await
    }

    pub async fn metadata_list(&self) -> Result<Vec<(String, String)>> {
        let all = self.inner.io.omap_get_vals(&self.inner.header_oid, cls::METADATA_PREFIX).await?;
        Ok(all
            .into_iter()
            .map(|(k, v)| {
                (k[cls::METADATA_PREFIX.len()..].to_string(), String::from_utf8_lossy(&v).into_owned())
            })
            .collect())
    }

    async fn header_call(&self, call: ClsCall) -> Result<Bytes> {
        let mut io = self.inner.io.clone();
        io.read_snap = None;
        io.call(&self.inner.header_oid, call).await
    }

    /// `client.<id>`: this client as a lock owner and watcher.
    pub fn owner(&self) -> String {
        format!("client.{}", self.inner.io.rados().client_id())
    }

    /// How `rbd status` and `rbd lock ls` show this client.
    fn address(&self) -> String {
        format!("client.{}/{}", self.inner.io.rados().client_id(), std::process::id())
    }

    fn lock_cookie(&self) -> String {
        format!("auto {}", self.inner.watch_cookie)
    }

    /// Live watchers of the image (`rbd status`).
    pub async fn watchers(&self) -> Result<Vec<Watcher>> {
        let out = self.header_call(ClsCall::WatchList { now_ms: now_ms() }).await?;
        cls::decode("watchers", &out)
    }

    async fn renew_watch(&self) -> Result<()> {
        let watcher = Watcher {
            cookie: self.inner.watch_cookie,
            owner: self.owner(),
            address: self.address(),
            seen_snap_seq: self.state().header.snap_seq,
            expires_ms: now_ms() + WATCH_TIMEOUT.as_millis() as u64,
        };
        self.header_call(ClsCall::WatchRefresh { watcher }).await.map(drop)
    }

    /// Re-reads the header and renews the watch every [`WATCH_REFRESH`] until closed, so a
    /// snapshot another client takes reaches this writer's snapshot context.
    async fn watch_loop(self) {
        let mut closed = self.inner.closed.subscribe();
        loop {
            if tokio::time::timeout(WATCH_REFRESH, closed.changed()).await.is_ok() {
                return;
            }
            if Arc::strong_count(&self.inner) <= 1 {
                return; // Every user dropped the image.
            }
            if self.inner.cache.oldest_age().is_some_and(|age| age >= self.inner.cache.cfg.max_dirty_age) {
                if let Err(e) = self.write_back().await {
                    tracing::warn!(image = %self.inner.name, error = %e, "cache writeback failed; retrying");
                }
            }
            if let Err(e) = self.refresh().await {
                tracing::debug!(image = %self.inner.name, error = %e, "header refresh failed");
                continue;
            }
            let _ = self.renew_watch().await;
        }
    }

    /// Lets several handles write without the exclusive lock (they must coordinate).
    pub fn set_shared(&self, shared: bool) {
        self.inner.shared.store(shared, std::sync::atomic::Ordering::Relaxed);
    }

    /// Takes the exclusive lock now rather than at the first write (a gateway wants to fail at
    /// start, not at the guest's first write).
    pub async fn lock_exclusive(&self) -> Result<()> {
        self.check_writable()?;
        self.acquire_lock_if_needed().await
    }

    /// With the exclusive-lock feature, the first write takes the image's lock; a lock held by a
    /// live other client refuses this one (EBUSY), a stale holder's lock is broken.
    async fn acquire_lock_if_needed(&self) -> Result<()> {
        if self.state().header.features & features::EXCLUSIVE_LOCK == 0
            || self.inner.shared.load(std::sync::atomic::Ordering::Relaxed)
        {
            return Ok(());
        }
        let mut held = self.inner.lock_held.lock().await;
        if *held {
            return Ok(());
        }
        let holder = LockHolder {
            owner: self.owner(),
            cookie: self.lock_cookie(),
            address: self.address(),
            description: String::new(),
            expires_ms: 0,
        };
        let call = |h: LockHolder| ClsCall::LockAcquire {
            name: EXCLUSIVE_LOCK_NAME.into(),
            exclusive: true,
            tag: "internal".into(),
            holder: h,
            now_ms: now_ms(),
            duration_ms: 0,
        };
        match self.header_call(call(holder.clone())).await {
            Ok(_) => {}
            Err(e) if e.errno == errno::EEXIST => {}
            Err(e) if e.errno == errno::EBUSY => {
                let state = self.lock_state(EXCLUSIVE_LOCK_NAME).await?;
                let live = self.watchers().await?;
                for h in &state.holders {
                    let alive = live.iter().any(|w| format!("auto {}", w.cookie) == h.cookie);
                    // Only a managed lock of a writer whose watch is gone is stale; an advisory
                    // lock (`rbd lock add`) stays until its owner removes it.
                    let managed = state.tag == "internal" && h.cookie.starts_with("auto ");
                    if alive || !managed {
                        return Err(Error::new(
                            errno::EBUSY,
                            format!("image {} is locked by another client ({})", self.inner.name, h.owner),
                        ));
                    }
                    let release = ClsCall::LockRelease {
                        name: EXCLUSIVE_LOCK_NAME.into(),
                        owner: h.owner.clone(),
                        cookie: h.cookie.clone(),
                    };
                    let _ = self.header_call(release).await;
                }
                self.header_call(call(holder)).await?;
            }
            Err(e) => return Err(e),
        }
        *held = true;
        Ok(())
    }

    pub async fn lock_state(&self, name: &str) -> Result<LockState> {
        let out = self.header_call(ClsCall::LockInfo { name: name.into() }).await?;
        cls::decode("lock state", &out)
    }

    /// `rbd lock add` (advisory): exclusive unless `tag` is given (shared lock with that tag).
    pub async fn lock_add(&self, cookie: &str, tag: Option<&str>) -> Result<()> {
        let holder = LockHolder {
            owner: self.owner(),
            cookie: cookie.into(),
            address: self.address(),
            description: String::new(),
            expires_ms: 0,
        };
        self.header_call(ClsCall::LockAcquire {
            name: EXCLUSIVE_LOCK_NAME.into(),
            exclusive: tag.is_none(),
            tag: tag.unwrap_or("").into(),
            holder,
            now_ms: now_ms(),
            duration_ms: 0,
        })
        .await
        .map(drop)
    }

    /// `rbd lock rm IMAGE COOKIE LOCKER`.
    pub async fn lock_remove(&self, cookie: &str, owner: &str) -> Result<()> {
        let call = ClsCall::LockRelease {
            name: EXCLUSIVE_LOCK_NAME.into(),
            owner: owner.into(),
            cookie: cookie.into(),
        };
        self.header_call(call).await.map(drop)
    }

    /// Bytes actually stored for the image (or for the open snapshot), object by object.
    pub async fn used_bytes(&self) -> Result<u64> {
        let count = self.layout().object_count(self.size());
        let sizes: Vec<u64> = futures::stream::iter(0..count)
            .map(|no| async move {
                match self.inner.io.stat(&self.data_object(no)).await {
                    Ok(s) => Ok(s.size),
                    Err(e) if e.errno == errno::ENOENT => Ok(0),
                    Err(e) => Err(e),
                }
            })
            .buffered(IO_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(sizes.iter().sum())
    }
}

/// How an image is opened at a snapshot.
pub(crate) enum SnapRef<'a> {
    Name(&'a str),
    Id(u64),
}

impl State {
    fn new(header: ImageHeader) -> Result<State> {
        let layout = Layout::new(header.order, header.stripe_unit, header.stripe_count)?;
        let mut snaps: Vec<u64> = header.snaps.iter().map(|s| s.id).collect();
        snaps.sort_unstable_by(|a, b| b.cmp(a));
        let snapc = SnapContext { seq: header.snap_seq, snaps };
        Ok(State { header, layout, snapc })
    }
}

async fn get_header(io: &IoCtx, header_oid: &str) -> Result<ImageHeader> {
    let mut io = io.clone();
    io.read_snap = None;
    let out = io.call(header_oid, ClsCall::RbdGetHeader).await?;
    cls::decode("image header", &out)
}

/// The object version a read at `snap` (`None` = head) sees, `None` if the object is missing.
fn version_at(list: &cairn_proto::SnapList, snap: Option<u64>) -> Option<cairn_types::Version> {
    let set = SnapSet { seq: list.seq, clones: list.clones.clone() };
    match snap.map_or(SnapTarget::Head, |s| set.resolve(s)) {
        SnapTarget::Head => list.head.map(|(_, v)| v),
        SnapTarget::Clone(id) => list.clones.iter().find(|c| c.id == id).map(|c| c.version),
        SnapTarget::Missing => None,
    }
}

/// Sorts and joins touching pieces with the same `exists`.
fn merge_extents(mut v: Vec<(u64, u64, bool)>) -> Vec<(u64, u64, bool)> {
    v.sort_unstable();
    let mut out: Vec<(u64, u64, bool)> = Vec::with_capacity(v.len());
    for (o, l, e) in v {
        match out.last_mut() {
            Some((lo, ll, le)) if *le == e && *lo + *ll == o => *ll += l,
            _ => out.push((o, l, e)),
        }
    }
    out
}

/// `data` without its trailing zeros (they read back as zeros anyway).
fn trim_zeros(data: &Bytes) -> Bytes {
    let end = data.iter().rposition(|b| *b != 0).map_or(0, |p| p + 1);
    data.slice(..end)
}

fn validate_snap_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains('/') || name.contains('@') || name.len() > 255 {
        return Err(Error::einval(format!("invalid snapshot name '{name}'")));
    }
    Ok(())
}
