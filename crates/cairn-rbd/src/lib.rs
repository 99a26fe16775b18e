//! librbd's job: block images on a Cairn pool, in Ceph's format-2 layout (`rbd_directory`,
//! `rbd_id.<name>`, `rbd_header.<id>`, `rbd_data.<id>.<object no %016x>`, `rbd_trash`).
//!
//! Header changes run as object-class methods on the header object (`cairn_proto::cls`), so
//! they are atomic; snapshots are self-managed (ids from the mons, clones kept by the OSDs);
//! a clone reads its parent's snapshot where it has no object of its own and copies the
//! parent's data up on its first write to an object.

pub mod cache;
pub mod diff;
pub mod image;
pub mod layout;

pub use cache::CacheConfig;
pub use image::{Image, ImageInfo, ParentInfo};
pub use layout::Layout;

use bytes::Bytes;
use cairn_client::IoCtx;
use cairn_proto::cls::{self, ChildSpec, ClsCall, ImageHeader, ParentSpec, TrashEntry};
use cairn_types::{errno, Error, Result};
use std::time::{SystemTime, UNIX_EPOCH};

/// Progress of a long operation: `(done, total)`.
pub type Progress<'a> = dyn Fn(u64, u64) + Send + Sync + 'a;

pub fn no_progress(_: u64, _: u64) {}

/// Ceph's feature bits.
pub mod features {
    pub const LAYERING: u64 = 1;
    pub const STRIPINGV2: u64 = 2;
    pub const EXCLUSIVE_LOCK: u64 = 4;
    pub const OBJECT_MAP: u64 = 8;
    pub const FAST_DIFF: u64 = 16;
    pub const DEEP_FLATTEN: u64 = 32;
    pub const JOURNALING: u64 = 64;
    pub const DATA_POOL: u64 = 128;
    /// What Cairn implements.
    pub const SUPPORTED: u64 = LAYERING | STRIPINGV2 | EXCLUSIVE_LOCK | OBJECT_MAP | FAST_DIFF | DEEP_FLATTEN;
    /// Ceph's default (`rbd default features = 61`).
    pub const DEFAULT: u64 = LAYERING | EXCLUSIVE_LOCK | OBJECT_MAP | FAST_DIFF | DEEP_FLATTEN;

    pub const NAMES: [(&str, u64); 8] = [
        ("layering", LAYERING),
        ("striping", STRIPINGV2),
        ("exclusive-lock", EXCLUSIVE_LOCK),
        ("object-map", OBJECT_MAP),
        ("fast-diff", FAST_DIFF),
        ("deep-flatten", DEEP_FLATTEN),
        ("journaling", JOURNALING),
        ("data-pool", DATA_POOL),
    ];

    /// `layering, exclusive-lock, ...` as `rbd info` prints them.
    pub fn names(bits: u64) -> Vec<&'static str> {
        NAMES.iter().filter(|(_, b)| bits & b != 0).map(|(n, _)| *n).collect()
    }

    /// A feature name or number (`layering`, `61`).
    pub fn parse(word: &str) -> cairn_types::Result<u64> {
        if let Ok(n) = word.parse::<u64>() {
            return Ok(n);
        }
        NAMES
            .iter()
            .find(|(n, _)| *n == word)
            .map(|(_, b)| *b)
            .ok_or_else(|| cairn_types::Error::einval(format!("invalid feature name '{word}'")))
    }
}

/// How to create an image (`rbd create` options).
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// 12–26; default 22 (4 MiB objects).
    pub order: Option<u8>,
    /// Default [`features::DEFAULT`].
    pub features: Option<u64>,
    /// 0 = the object size.
    pub stripe_unit: u64,
    /// 0 = 1.
    pub stripe_count: u64,
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn validate_image_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains('/') || name.contains('@') || name.len() > 4096 - 16 {
        return Err(Error::einval(format!("invalid image name '{name}'")));
    }
    Ok(())
}

fn check_features(bits: u64, layout: &Layout) -> Result<()> {
    let unsupported = bits & !features::SUPPORTED;
    if unsupported != 0 {
        return Err(Error::new(
            errno::EOPNOTSUPP,
            format!("features not supported by Cairn: {}", features::names(unsupported).join(", ")),
        ));
    }
    if bits & features::OBJECT_MAP != 0 && bits & features::EXCLUSIVE_LOCK == 0 {
        return Err(Error::einval("object-map requires exclusive-lock"));
    }
    if bits & features::FAST_DIFF != 0 && bits & features::OBJECT_MAP == 0 {
        return Err(Error::einval("fast-diff requires object-map"));
    }
    if layout.is_fancy() && bits & features::STRIPINGV2 == 0 {
        return Err(Error::einval("non-default striping requires the striping feature"));
    }
    Ok(())
}

/// Creates image `name` of `size` bytes; EEXIST if the name is taken.
pub async fn create(io: &IoCtx, name: &str, size: u64, opts: &CreateOptions) -> Result<()> {
    create_image(io, name, size, opts, None).await.map(drop)
}

async fn create_image(
    io: &IoCtx,
    name: &str,
    size: u64,
    opts: &CreateOptions,
    parent: Option<ParentSpec>,
) -> Result<String> {
    validate_image_name(name)?;
    let order = opts.order.unwrap_or(layout::DEFAULT_ORDER);
    let layout = Layout::new(order, opts.stripe_unit, opts.stripe_count)?;
    let mut bits = opts.features.unwrap_or(features::DEFAULT);
    if layout.is_fancy() {
        bits |= features::STRIPINGV2;
    }
    check_features(bits, &layout)?;
    if parent.is_some() && bits & features::LAYERING == 0 {
        return Err(Error::einval("cloning needs the layering feature"));
    }
    let id = format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
    let id_oid = layout::id_object(name);
    io.operate(
        &id_oid,
        vec![
            cairn_proto::ObjOp::Create { exclusive: true },
            cairn_proto::ObjOp::WriteFull { data: Bytes::copy_from_slice(id.as_bytes()) },
        ],
    )
    .await
    .map_err(|e| {
        if e.errno == errno::EEXIST {
            Error::eexist(format!("rbd image {name} already exists"))
        } else {
            e
        }
    })?;
    let header = ImageHeader {
        size,
        order,
        features: bits,
        object_prefix: layout::data_prefix(&id),
        stripe_unit: layout.stripe_unit,
        stripe_count: layout.stripe_count,
        snap_seq: 0,
        snaps: Vec::new(),
        parent,
        create_timestamp_secs: now_secs(),
        flags: 0,
    };
    let result = async {
        io.call(&layout::header_object(&id), ClsCall::RbdCreate { header }).await?;
        io.call(layout::RBD_DIRECTORY, ClsCall::DirAdd { name: name.into(), id: id.clone() }).await
    }
    .await;
    if let Err(e) = result {
        let _ = io.remove(&layout::header_object(&id)).await;
        let _ = io.remove(&id_oid).await;
        return Err(e);
    }
    Ok(id)
}

/// The id of image `name`; ENOENT if there is none.
pub async fn image_id(io: &IoCtx, name: &str) -> Result<String> {
    match io.read(&layout::id_object(name), 0, 0).await {
        Ok(id) => Ok(String::from_utf8_lossy(&id).into_owned()),
        Err(e) if e.errno == errno::ENOENT => Err(Error::enoent(format!("image {name} does not exist"))),
        Err(e) => Err(e),
    }
}

/// The name of image `id`, from the directory (or the trash).
pub async fn image_name(io: &IoCtx, id: &str) -> Result<String> {
    let key = format!("{}{id}", cls::DIR_ID_PREFIX);
    let found = io.omap_get_vals_by_keys(layout::RBD_DIRECTORY, vec![key]).await.unwrap_or_default();
    if let Some((_, v)) = found.into_iter().next() {
        return cls::decode("directory entry", &v);
    }
    let key = format!("{}{id}", cls::TRASH_ID_PREFIX);
    let found = io.omap_get_vals_by_keys(layout::RBD_TRASH, vec![key]).await.unwrap_or_default();
    match found.into_iter().next() {
        Some((_, v)) => Ok(cls::decode::<TrashEntry>("trash entry", &v)?.name),
        None => Err(Error::enoent(format!("image id {id} is not in the directory"))),
    }
}

/// Image names of the pool, sorted (`rbd ls`).
pub async fn list(io: &IoCtx) -> Result<Vec<String>> {
    Ok(list_with_ids(io).await?.into_iter().map(|(n, _)| n).collect())
}

/// `(name, id)` of every image of the pool, sorted by name.
pub async fn list_with_ids(io: &IoCtx) -> Result<Vec<(String, String)>> {
    let entries = match io.omap_get_vals(layout::RBD_DIRECTORY, cls::DIR_NAME_PREFIX).await {
        Ok(e) => e,
        Err(e) if e.errno == errno::ENOENT => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::with_capacity(entries.len());
    for (k, v) in entries {
        out.push((k[cls::DIR_NAME_PREFIX.len()..].to_string(), cls::decode("directory entry", &v)?));
    }
    Ok(out)
}

/// Removes image `name` with its data. ENOTEMPTY with snapshots, EBUSY while another client
/// has it open or clones depend on it.
pub async fn remove(io: &IoCtx, name: &str, progress: &Progress<'_>) -> Result<()> {
    let id = image_id(io, name).await?;
    remove_by_id(io, &id, Some(name), progress).await
}

async fn remove_by_id(io: &IoCtx, id: &str, name: Option<&str>, progress: &Progress<'_>) -> Result<()> {
    let label = name.unwrap_or(id);
    let image = Image::open_by_id(io, id, label, None, true).await?;
    let header = image.header();
    if !image.watchers().await?.is_empty() {
        return Err(Error::new(errno::EBUSY, "image still has watchers - not removing"));
    }
    if header.snaps.iter().any(|s| s.namespace == cls::SnapNamespace::User) {
        return Err(Error::new(errno::ENOTEMPTY, "image has snapshots - not removing"));
    }
    if !header.snaps.is_empty() {
        return Err(Error::new(errno::EBUSY, "image has snapshots with linked clones - not removing"));
    }
    let count = image.layout().object_count(header.size);
    let done = std::sync::atomic::AtomicU64::new(0);
    use futures::{StreamExt, TryStreamExt};
    futures::stream::iter(0..count)
        .map(|no| {
            let done = &done;
            let oid = layout::data_object(&header.object_prefix, no);
            async move {
                match io.remove(&oid).await {
                    Err(e) if e.errno != errno::ENOENT => return Err(e),
                    _ => {}
                }
                progress(done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1, count);
                Ok(())
            }
        })
        .buffer_unordered(image::IO_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    if let Some(parent) = &header.parent {
        match detach_child(io.rados(), parent, image.child_spec()).await {
            Err(e) if e.errno != errno::ENOENT => return Err(e),
            _ => {}
        }
    }
    io.remove(&layout::header_object(id)).await?;
    if let Some(name) = name {
        match io.remove(&layout::id_object(name)).await {
            Err(e) if e.errno != errno::ENOENT => return Err(e),
            _ => {}
        }
        match io.call(layout::RBD_DIRECTORY, ClsCall::DirRemove { name: name.into(), id: id.into() }).await {
            Err(e) if e.errno != errno::ENOENT => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Renames an image within its pool (`rbd mv`).
pub async fn rename(io: &IoCtx, src: &str, dst: &str) -> Result<()> {
    validate_image_name(dst)?;
    let id = image_id(io, src).await?;
    let dst_oid = layout::id_object(dst);
    io.operate(
        &dst_oid,
        vec![
            cairn_proto::ObjOp::Create { exclusive: true },
            cairn_proto::ObjOp::WriteFull { data: Bytes::copy_from_slice(id.as_bytes()) },
        ],
    )
    .await
    .map_err(|e| {
        if e.errno == errno::EEXIST {
            Error::eexist(format!("rbd image {dst} already exists"))
        } else {
            e
        }
    })?;
    let moved = io
        .call(layout::RBD_DIRECTORY, ClsCall::DirRename { src: src.into(), dst: dst.into(), id: id.clone() });
    if let Err(e) = moved.await {
        let _ = io.remove(&dst_oid).await;
        return Err(e);
    }
    io.remove(&layout::id_object(src)).await
}

/// Clones snapshot `snap` of `parent_name` into a new image `child_name` of `child_io`'s
/// pool. Clone v1 rules: the snapshot must be protected (EINVAL otherwise) unless the pool
/// allows clone v2 (`allow_unprotected`).
pub async fn clone(
    parent_io: &IoCtx,
    parent_name: &str,
    snap: &str,
    child_io: &IoCtx,
    child_name: &str,
    opts: &CreateOptions,
    allow_unprotected: bool,
) -> Result<()> {
    let parent = Image::open(parent_io, parent_name, Some(snap), true).await?;
    let header = parent.header();
    if header.features & features::LAYERING == 0 {
        return Err(Error::einval(format!("parent image {parent_name} does not have the layering feature")));
    }
    let info = header
        .user_snap_named(snap)
        .cloned()
        .ok_or_else(|| Error::enoent(format!("snapshot {snap} does not exist")))?;
    if !info.protected && !allow_unprotected {
        return Err(Error::einval(format!("parent snapshot {parent_name}@{snap} must be protected")));
    }
    let spec = ParentSpec {
        pool: parent_io.pool,
        pool_namespace: parent_io.namespace.clone(),
        image_id: parent.id().to_string(),
        snap_id: info.id,
        overlap: info.size,
    };
    let mut opts = opts.clone();
    opts.order = opts.order.or(Some(header.order));
    opts.features = Some(opts.features.unwrap_or(header.features) | features::LAYERING);
    if opts.stripe_unit == 0 && opts.stripe_count == 0 {
        opts.stripe_unit = header.stripe_unit;
        opts.stripe_count = header.stripe_count;
    }
    let id = create_image(child_io, child_name, info.size, &opts, Some(spec.clone())).await?;
    let child = ChildSpec { pool: child_io.pool, pool_namespace: child_io.namespace.clone(), image_id: id };
    let attach = ClsCall::RbdChildAttach { snap_id: info.id, child };
    if let Err(e) = parent_io.call(&layout::header_object(parent.id()), attach).await {
        let _ = remove(child_io, child_name, &no_progress).await;
        return Err(e);
    }
    Ok(())
}

/// Drops `child` from its parent's snapshot; a trashed snapshot that loses its last child goes
/// and its snapshot id is released.
pub(crate) async fn detach_child(
    rados: &cairn_client::Rados,
    parent: &ParentSpec,
    child: ChildSpec,
) -> Result<()> {
    let io = rados.ioctx_by_id(parent.pool)?;
    let out = io
        .call(
            &layout::header_object(&parent.image_id),
            ClsCall::RbdChildDetach { snap_id: parent.snap_id, child },
        )
        .await?;
    if cls::decode::<bool>("child_detach output", &out)? {
        io.selfmanaged_snap_remove(parent.snap_id).await?;
    }
    Ok(())
}

/// Copies image `src` (at its open snapshot, if any), with its metadata, into a new image
/// (`rbd cp`). A copy that fails part way is removed again.
pub async fn copy(src: &Image, dst_io: &IoCtx, dst_name: &str, progress: &Progress<'_>) -> Result<()> {
    let h = src.header();
    let opts = CreateOptions {
        order: Some(h.order),
        features: Some(h.features),
        stripe_unit: h.stripe_unit,
        stripe_count: h.stripe_count,
    };
    let size = src.size();
    create(dst_io, dst_name, size, &opts).await?;
    let dst = Image::open(dst_io, dst_name, None, false).await?;
    let copied = copy_content(src, &dst, progress).await;
    let closed = dst.close().await;
    match copied.and(closed) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = remove(dst_io, dst_name, &no_progress).await;
            Err(e)
        }
    }
}

async fn copy_content(src: &Image, dst: &Image, progress: &Progress<'_>) -> Result<()> {
    for (key, value) in src.metadata_list().await? {
        dst.metadata_set(&key, &value).await?;
    }
    let size = src.size();
    let chunk = src.layout().object_size * src.layout().stripe_count;
    let mut extents = Vec::new();
    src.diff_iterate(None, 0, size, true, &mut |o, l, exists| {
        if exists {
            extents.push((o, l));
        }
        Ok(())
    })
    .await?;
    let mut done = 0;
    for (o, l) in extents {
        let mut pos = o;
        while pos < o + l {
            let n = chunk.min(o + l - pos);
            let data = src.read(pos, n).await?;
            if data.iter().any(|b| *b != 0) {
                dst.write(pos, data).await?;
            }
            pos += n;
            done += n;
            progress(done, size);
        }
    }
    Ok(())
}

/// One entry of `rbd trash ls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrashItem {
    pub id: String,
    pub entry: TrashEntry,
}

/// Moves an image to the trash (`rbd trash mv`): it leaves the directory, keeps its data.
pub async fn trash_move(io: &IoCtx, name: &str, delay_secs: u64) -> Result<String> {
    let id = image_id(io, name).await?;
    let image = Image::open_by_id(io, &id, name, None, true).await?;
    if !image.watchers().await?.is_empty() {
        return Err(Error::new(errno::EBUSY, "image is in use - not moving to trash"));
    }
    let now = now_secs();
    let entry = TrashEntry {
        name: name.into(),
        source: "USER".into(),
        deletion_secs: now,
        deferment_end_secs: now + delay_secs,
    };
    io.call(layout::RBD_TRASH, ClsCall::TrashAdd { id: id.clone(), entry }).await?;
    io.call(layout::RBD_DIRECTORY, ClsCall::DirRemove { name: name.into(), id: id.clone() }).await?;
    io.remove(&layout::id_object(name)).await?;
    Ok(id)
}

pub async fn trash_list(io: &IoCtx) -> Result<Vec<TrashItem>> {
    let entries = match io.omap_get_vals(layout::RBD_TRASH, cls::TRASH_ID_PREFIX).await {
        Ok(e) => e,
        Err(e) if e.errno == errno::ENOENT => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for (k, v) in entries {
        out.push(TrashItem {
            id: k[cls::TRASH_ID_PREFIX.len()..].to_string(),
            entry: cls::decode("trash entry", &v)?,
        });
    }
    Ok(out)
}

async fn trash_entry(io: &IoCtx, id: &str) -> Result<TrashEntry> {
    trash_list(io)
        .await?
        .into_iter()
        .find(|t| t.id == id)
        .map(|t| t.entry)
        .ok_or_else(|| Error::enoent(format!("image {id} is not in the trash")))
}

/// Brings an image back from the trash, under its old name or `new_name`.
pub async fn trash_restore(io: &IoCtx, id: &str, new_name: Option<&str>) -> Result<()> {
    let entry = trash_entry(io, id).await?;
    let name = new_name.unwrap_or(&entry.name);
    validate_image_name(name)?;
    let id_oid = layout::id_object(name);
    io.operate(
        &id_oid,
        vec![
            cairn_proto::ObjOp::Create { exclusive: true },
            cairn_proto::ObjOp::WriteFull { data: Bytes::copy_from_slice(id.as_bytes()) },
        ],
    )
    .await
    .map_err(|e| {
        if e.errno == errno::EEXIST {
            Error::eexist(format!("rbd image {name} already exists"))
        } else {
            e
        }
    })?;
    io.call(layout::RBD_DIRECTORY, ClsCall::DirAdd { name: name.into(), id: id.into() }).await?;
    io.call(layout::RBD_TRASH, ClsCall::TrashRemove { id: id.into() }).await.map(drop)
}

/// Deletes a trashed image for good; EPERM before its deferment ends unless `force`.
pub async fn trash_remove(io: &IoCtx, id: &str, force: bool, progress: &Progress<'_>) -> Result<()> {
    let entry = trash_entry(io, id).await?;
    if !force && entry.deferment_end_secs > now_secs() {
        return Err(Error::eperm("error: deferment time has not expired, please use --force if you really want to remove the image"));
    }
    remove_by_id(io, id, None, progress).await?;
    io.call(layout::RBD_TRASH, ClsCall::TrashRemove { id: id.into() }).await.map(drop)
}
