//! Object operations: turning a client's compound op into replicated mutations (on the primary),
//! answering reads, and turning mutations into store ops (on every member).

use bytes::Bytes;
use cairn_proto::{
    CloneInfo, CloneState, Mutation, ObjOp, OpOut, SnapContext, SnapList, SnapSet, SnapTarget,
};
use cairn_store::{ObjectMeta, ObjectStore, Op};
use cairn_types::{errno, Error, ObjectId, PgId, Result, MAX_OBJECT_SIZE_BYTES, MAX_XATTR_VALUE_BYTES};

/// Largest read answered in one op.
pub const MAX_READ_BYTES: u64 = 64 << 20;
/// Most omap entries returned by one listing op.
pub const MAX_OMAP_ENTRIES_PER_OP: u32 = 4096;

/// What a compound op does to one object, as decided by the primary.
pub struct Planned {
    pub mutations: Vec<Mutation>,
    pub outs: Vec<OpOut>,
    /// The object is stored after the op (for a client it may be a whiteout: removed, but
    /// kept for its clones).
    pub exists_after: bool,
    pub size_after: u64,
}

/// What a write needs besides the object: the writer's snapshot context and the pool's removed
/// snapshots (for trimming).
pub struct WriteCtx<'a> {
    pub snapc: &'a SnapContext,
    /// Ascending.
    pub removed_snaps: &'a [u64],
}

static NO_SNAPS: SnapContext = SnapContext { seq: 0, snaps: Vec::new() };

impl WriteCtx<'static> {
    /// For read-only ops.
    pub fn none() -> Self {
        WriteCtx { snapc: &NO_SNAPS, removed_snaps: &[] }
    }
}

/// Xattr holding an object's [`SnapSet`] (names starting with NUL are reserved to the OSD).
pub const SNAPSET_XATTR: &str = "\0snapset";
/// Xattr marking a head that was removed but whose clones still serve snapshots.
pub const WHITEOUT_XATTR: &str = "\0whiteout";

/// The object that holds clone `id` of `head`: same PG and name, in a namespace clients cannot
/// use (it starts with NUL).
pub fn clone_oid(head: &ObjectId, id: u64) -> ObjectId {
    ObjectId { namespace: format!("\0{id:016x}\0{}", head.namespace), name: head.name.clone() }
}

/// The head a clone object belongs to (`None` for a head).
pub fn head_of_clone(oid: &ObjectId) -> Option<ObjectId> {
    let rest = oid.namespace.strip_prefix('\0')?;
    let namespace = rest.get(17..)?.to_string();
    Some(ObjectId { namespace, name: oid.name.clone() })
}

/// Whether a stored object is a clone (travels with its head, hidden from listings).
pub fn is_clone(oid: &ObjectId) -> bool {
    oid.namespace.starts_with('\0')
}

/// A head object as stored.
pub struct Head {
    pub meta: Option<ObjectMeta>,
    pub whiteout: bool,
    pub snapset: SnapSet,
}

impl Head {
    /// Whether the object exists for clients.
    pub fn exists(&self) -> bool {
        self.meta.is_some() && !self.whiteout
    }
}

pub fn load_head(store: &dyn ObjectStore, pg: PgId, oid: &ObjectId) -> Result<Head> {
    let meta = store.stat(pg, oid)?;
    if meta.is_none() {
        return Ok(Head { meta, whiteout: false, snapset: SnapSet::default() });
    }
    let xattr = |name: &str| match store.get_xattr(pg, oid, name) {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.errno == errno::ENODATA || e.errno == errno::ENOENT => Ok(None),
        Err(e) => Err(e),
    };
    // Objects never written under a snapshot context (most) have no snapset, and a whiteout
    // always has one: one lookup in the common case.
    let Some(v) = xattr(SNAPSET_XATTR)? else {
        return Ok(Head { meta, whiteout: false, snapset: SnapSet::default() });
    };
    let snapset = cairn_proto::cls::decode("snapset", &v)?;
    Ok(Head { meta, whiteout: xattr(WHITEOUT_XATTR)?.is_some(), snapset })
}

/// Plans a compound op against the object's current state. Reads inside a write op see the state
/// before the op (as Ceph's do for the common cases). The first write after a snapshot the
/// object has not seen preserves its data as a clone first (Ceph's `make_writeable`).
pub fn plan(
    store: &dyn ObjectStore,
    pg: PgId,
    oid: &ObjectId,
    ops: &[ObjOp],
    ctx: &WriteCtx,
) -> Result<Planned> {
    let head = load_head(store, pg, oid)?;
    let mut exists = head.exists();
    let mut size = if exists { head.meta.map_or(0, |m| m.size) } else { 0 };
    let mut snapset = head.snapset.clone();
    let mut mutations = Vec::new();
    let writes = ops.iter().any(ObjOp::is_write);
    if writes {
        if !ctx.snapc.is_valid() {
            return Err(Error::einval(format!("invalid snapshot context {:?}", ctx.snapc)));
        }
        if ctx.snapc.seq > snapset.seq {
            let unseen: Vec<u64> = ctx.snapc.snaps.iter().copied().filter(|s| *s > snapset.seq).collect();
            if let (true, false, Some(meta)) = (exists, unseen.is_empty(), head.meta) {
                let id = ctx.snapc.seq;
                mutations.push(Mutation::CloneHead { id });
                snapset.clones.push(CloneInfo { id, snaps: unseen, size: meta.size, version: meta.version });
            }
            snapset.seq = ctx.snapc.seq;
        }
    }
    let mut outs = Vec::with_capacity(ops.len());
    for op in ops {
        let out = match op {
            ObjOp::Create { exclusive } => {
                if exists && *exclusive {
                    return Err(Error::eexist(format!("object {oid} already exists")));
                }
                if !exists {
                    mutations.push(Mutation::Touch);
                    exists = true;
                }
                OpOut::None
            }
            ObjOp::Write { offset, data } => {
                let end = check_extent(oid, *offset, data.len() as u64)?;
                mutations.push(Mutation::Write { offset: *offset, data: data.clone() });
                if data.is_empty() && !exists {
                    mutations.push(Mutation::Touch);
                }
                size = size.max(end);
                exists = true;
                OpOut::None
            }
            ObjOp::WriteFull { data } => {
                check_extent(oid, 0, data.len() as u64)?;
                mutations.push(Mutation::Truncate { size: 0 });
                mutations.push(Mutation::Write { offset: 0, data: data.clone() });
                size = data.len() as u64;
                exists = true;
                OpOut::None
            }
            ObjOp::Append { data } => {
                let end = check_extent(oid, size, data.len() as u64)?;
                mutations.push(Mutation::Write { offset: size, data: data.clone() });
                size = end;
                exists = true;
                OpOut::None
            }
            ObjOp::Truncate { size: new } => {
                check_extent(oid, *new, 0)?;
                mutations.push(Mutation::Truncate { size: *new });
                size = *new;
                exists = true;
                OpOut::None
            }
            ObjOp::Zero { offset, len } => {
                check_extent(oid, *offset, *len)?;
                require(exists, oid)?;
                mutations.push(Mutation::Zero { offset: *offset, len: *len });
                OpOut::None
            }
            ObjOp::Remove => {
                require(exists, oid)?;
                mutations.push(Mutation::Remove);
                exists = false;
                size = 0;
                OpOut::None
            }
            ObjOp::SetXattr { name, value } => {
                check_xattr(name, value)?;
                mutations.push(Mutation::SetXattr { name: name.clone(), value: value.clone() });
                exists = true;
                OpOut::None
            }
            ObjOp::RmXattr { name } => {
                require(exists, oid)?;
                check_xattr(name, &Bytes::new())?;
                store.get_xattr(pg, oid, name)?;
                mutations.push(Mutation::RmXattr { name: name.clone() });
                OpOut::None
            }
            ObjOp::OmapSetHeader { header } => {
                mutations.push(Mutation::OmapSetHeader { header: header.clone() });
                exists = true;
                OpOut::None
            }
            ObjOp::OmapSet { entries } => {
                mutations.push(Mutation::OmapSet { entries: entries.clone() });
                exists = true;
                OpOut::None
            }
            ObjOp::OmapRmKeys { keys } => {
                require(exists, oid)?;
                mutations.push(Mutation::OmapRm { keys: keys.clone() });
                OpOut::None
            }
            ObjOp::OmapClear => {
                require(exists, oid)?;
                mutations.push(Mutation::OmapClear);
                OpOut::None
            }
            ObjOp::ListSnaps => OpOut::Snaps(SnapList {
                seq: head.snapset.seq,
                clones: head.snapset.clones.clone(),
                head: head.meta.filter(|_| head.exists()).map(|m| (m.size, m.version)),
            }),
            ObjOp::Rollback { snap } => {
                match snapset.resolve(*snap) {
                    SnapTarget::Head => {}
                    SnapTarget::Clone(id) => {
                        mutations.push(Mutation::RestoreClone { id });
                        size = snapset.clones.iter().find(|c| c.id == id).map_or(0, |c| c.size);
                        exists = true;
                    }
                    SnapTarget::Missing if exists => {
                        mutations.push(Mutation::Remove);
                        (exists, size) = (false, 0);
                    }
                    SnapTarget::Missing => {}
                }
                OpOut::None
            }
            ObjOp::SnapTrim => {
                for clone in &mut snapset.clones {
                    clone.snaps.retain(|s| ctx.removed_snaps.binary_search(s).is_err());
                    if clone.snaps.is_empty() {
                        mutations.push(Mutation::RemoveClone { id: clone.id });
                    }
                }
                snapset.clones.retain(|c| !c.snaps.is_empty());
                OpOut::None
            }
            ObjOp::Call(call) => {
                let out = crate::cls::execute(store, pg, oid, exists, call, &mut mutations)?;
                exists |= call.is_write();
                out
            }
            read => read_op(store, pg, oid, exists, read)?,
        };
        outs.push(out);
    }
    let mut stored = exists;
    if writes {
        if !exists && !snapset.clones.is_empty() {
            // Removed, but its clones still serve snapshots: keep an empty whiteout head.
            mutations.extend([
                Mutation::Remove,
                Mutation::Touch,
                Mutation::SetXattr { name: WHITEOUT_XATTR.into(), value: Bytes::from_static(b"1") },
            ]);
            stored = true;
        } else if !exists && head.meta.is_some() {
            mutations.push(Mutation::Remove);
        } else if exists && head.whiteout {
            mutations.push(Mutation::RmXattr { name: WHITEOUT_XATTR.into() });
        }
        if stored && (snapset.seq > 0 || !snapset.clones.is_empty()) {
            let value = cairn_proto::cls::encode(&snapset);
            mutations.push(Mutation::SetXattr { name: SNAPSET_XATTR.into(), value });
        }
    }
    Ok(Planned { mutations, outs, exists_after: stored, size_after: size })
}

/// Answers a read-only op at snapshot `snap`: from the clone that serves it, or the head.
pub fn read_at_snap(
    store: &dyn ObjectStore,
    pg: PgId,
    oid: &ObjectId,
    ops: &[ObjOp],
    snap: u64,
) -> Result<Vec<OpOut>> {
    if ops.iter().any(ObjOp::is_write) {
        return Err(Error::new(errno::EROFS, format!("cannot write {oid} at snapshot {snap}")));
    }
    let head = load_head(store, pg, oid)?;
    let target = match head.snapset.resolve(snap) {
        SnapTarget::Head if head.exists() => oid.clone(),
        SnapTarget::Clone(id) => clone_oid(oid, id),
        SnapTarget::Head | SnapTarget::Missing => {
            return Err(Error::enoent(format!("object {oid} does not exist at snapshot {snap}")))
        }
    };
    ops.iter().map(|op| read_op(store, pg, &target, true, op)).collect()
}

/// Answers one read op from committed state.
pub fn read_op(store: &dyn ObjectStore, pg: PgId, oid: &ObjectId, exists: bool, op: &ObjOp) -> Result<OpOut> {
    require(exists, oid)?;
    Ok(match op {
        ObjOp::Read { offset, len } => {
            let len = if *len == 0 { MAX_READ_BYTES } else { (*len).min(MAX_READ_BYTES) };
            OpOut::Data(store.read(pg, oid, *offset, len)?)
        }
        ObjOp::Stat => {
            let m = store.stat(pg, oid)?.unwrap_or_default();
            OpOut::Stat { size: m.size, mtime_ns: m.mtime_ns }
        }
        ObjOp::GetXattr { name } => OpOut::Data(store.get_xattr(pg, oid, name)?),
        ObjOp::GetXattrs => {
            let mut entries = store.list_xattrs(pg, oid)?;
            entries.retain(|(k, _)| !k.starts_with('\0'));
            OpOut::Pairs { entries, more: false }
        }
        ObjOp::OmapGetHeader => OpOut::Data(store.omap_get_header(pg, oid)?),
        ObjOp::OmapGetVals { start_after, prefix, max } => {
            let max = (*max).clamp(1, MAX_OMAP_ENTRIES_PER_OP) as usize;
            let mut entries = store.omap_list(pg, oid, start_after, prefix, max + 1)?;
            let more = entries.len() > max;
            entries.truncate(max);
            OpOut::Pairs { entries, more }
        }
        ObjOp::OmapGetKeys { start_after, max } => {
            let max = (*max).clamp(1, MAX_OMAP_ENTRIES_PER_OP) as usize;
            let entries = store.omap_list(pg, oid, start_after, "", max + 1)?;
            let more = entries.len() > max;
            let keys = entries.into_iter().take(max).map(|(k, _)| k).collect();
            OpOut::Keys { keys, more }
        }
        ObjOp::OmapGetValsByKeys { keys } => {
            OpOut::Pairs { entries: store.omap_get(pg, oid, keys)?, more: false }
        }
        other => return Err(Error::new(errno::EOPNOTSUPP, format!("{other:?} is not a read op"))),
    })
}

fn require(exists: bool, oid: &ObjectId) -> Result<()> {
    if exists {
        Ok(())
    } else {
        Err(Error::enoent(format!("object {oid} does not exist")))
    }
}

/// Checks that `[offset, offset+len)` stays within the maximum object size; returns the end.
fn check_extent(oid: &ObjectId, offset: u64, len: u64) -> Result<u64> {
    match offset.checked_add(len) {
        Some(end) if end <= MAX_OBJECT_SIZE_BYTES => Ok(end),
        _ => Err(Error::new(
            errno::EFBIG,
            format!(
                "write to {oid} at {offset}+{len} goes past the maximum object size of {MAX_OBJECT_SIZE_BYTES} bytes"
            ),
        )),
    }
}

fn check_xattr(name: &str, value: &Bytes) -> Result<()> {
    if name.is_empty() || name.len() > 255 {
        return Err(Error::einval("xattr name must be 1 to 255 bytes"));
    }
    if name.starts_with('\0') {
        return Err(Error::einval("xattr names starting with NUL are reserved"));
    }
    if value.len() > MAX_XATTR_VALUE_BYTES {
        return Err(Error::new(
            errno::E2BIG,
            format!("xattr value of {} bytes exceeds {MAX_XATTR_VALUE_BYTES}", value.len()),
        ));
    }
    Ok(())
}

/// The store ops that apply `mutations` to `oid`.
pub fn to_store_ops(pg: PgId, oid: &ObjectId, mutations: &[Mutation], out: &mut Vec<Op>) {
    for m in mutations {
        let oid = oid.clone();
        out.push(match m {
            Mutation::Touch => Op::Touch { pg, oid },
            Mutation::Write { offset, data } => Op::Write { pg, oid, offset: *offset, data: data.clone() },
            Mutation::Zero { offset, len } => Op::Zero { pg, oid, offset: *offset, len: *len },
            Mutation::Truncate { size } => Op::Truncate { pg, oid, size: *size },
            Mutation::Remove => Op::Remove { pg, oid },
            Mutation::SetXattr { name, value } => {
                Op::SetXattr { pg, oid, key: name.clone(), value: value.clone() }
            }
            Mutation::RmXattr { name } => Op::RmXattr { pg, oid, key: name.clone() },
            Mutation::OmapSetHeader { header } => Op::OmapSetHeader { pg, oid, header: header.clone() },
            Mutation::OmapSet { entries } => Op::OmapSet { pg, oid, entries: entries.clone() },
            Mutation::OmapRm { keys } => Op::OmapRm { pg, oid, keys: keys.clone() },
            Mutation::OmapClear => Op::OmapClear { pg, oid },
            Mutation::CloneHead { id } => Op::CloneData { pg, dst: clone_oid(&oid, *id), src: oid },
            Mutation::RestoreClone { id } => Op::CloneData { pg, src: clone_oid(&oid, *id), dst: oid },
            Mutation::RemoveClone { id } => Op::Remove { pg, oid: clone_oid(&oid, *id) },
        });
    }
}

/// Whether the object exists once `mutations` are applied (Remove may be followed by writes).
pub fn exists_after(mutations: &[Mutation]) -> bool {
    !matches!(mutations.last(), Some(Mutation::Remove))
}

/// Reads an object's whole state for recovery, with its clones; `None` if it does not exist.
pub fn object_state(
    store: &dyn ObjectStore,
    pg: PgId,
    oid: &ObjectId,
) -> Result<Option<cairn_proto::ObjectState>> {
    let Some(meta): Option<ObjectMeta> = store.stat(pg, oid)? else {
        return Ok(None);
    };
    let data = store.read(pg, oid, 0, meta.size)?;
    let xattrs = store.list_xattrs(pg, oid)?;
    let omap_header = store.omap_get_header(pg, oid)?;
    let mut omap = Vec::new();
    let mut after = String::new();
    loop {
        let batch = store.omap_list(pg, oid, &after, "", 4096)?;
        let Some((last, _)) = batch.last() else { break };
        after = last.clone();
        omap.extend(batch);
    }
    let mut clones = Vec::new();
    if !is_clone(oid) {
        for c in load_head(store, pg, oid)?.snapset.clones {
            let coid = clone_oid(oid, c.id);
            let cmeta = store.stat(pg, &coid)?.unwrap_or_default();
            let data = store.read(pg, &coid, 0, cmeta.size)?;
            clones.push(CloneState { id: c.id, version: cmeta.version, mtime_ns: cmeta.mtime_ns, data });
        }
    }
    Ok(Some(cairn_proto::ObjectState {
        oid: oid.clone(),
        version: meta.version,
        mtime_ns: meta.mtime_ns,
        data,
        xattrs,
        omap_header,
        omap,
        clones,
    }))
}

/// Store ops that make `oid` — with its clones — equal to `state` (or absent).
pub fn install_ops(
    store: &dyn ObjectStore,
    pg: PgId,
    oid: &ObjectId,
    state: Option<&cairn_proto::ObjectState>,
    out: &mut Vec<Op>,
) -> Result<()> {
    if !is_clone(oid) {
        for c in load_head(store, pg, oid)?.snapset.clones {
            out.push(Op::Remove { pg, oid: clone_oid(oid, c.id) });
        }
    }
    out.push(Op::Remove { pg, oid: oid.clone() });
    let Some(s) = state else { return Ok(()) };
    for c in &s.clones {
        let coid = clone_oid(oid, c.id);
        out.push(Op::Touch { pg, oid: coid.clone() });
        if !c.data.is_empty() {
            out.push(Op::Write { pg, oid: coid.clone(), offset: 0, data: c.data.clone() });
        }
        out.push(Op::SetMeta { pg, oid: coid, version: c.version, mtime_ns: c.mtime_ns });
    }
    out.push(Op::Touch { pg, oid: oid.clone() });
    if !s.data.is_empty() {
        out.push(Op::Write { pg, oid: oid.clone(), offset: 0, data: s.data.clone() });
    }
    for (k, v) in &s.xattrs {
        out.push(Op::SetXattr { pg, oid: oid.clone(), key: k.clone(), value: v.clone() });
    }
    if !s.omap_header.is_empty() {
        out.push(Op::OmapSetHeader { pg, oid: oid.clone(), header: s.omap_header.clone() });
    }
    if !s.omap.is_empty() {
        out.push(Op::OmapSet { pg, oid: oid.clone(), entries: s.omap.clone() });
    }
    out.push(Op::SetMeta { pg, oid: oid.clone(), version: s.version, mtime_ns: s.mtime_ns });
    Ok(())
}
