//! Object operations: turning a client's compound op into replicated mutations (on the primary),
//! answering reads, and turning mutations into store ops (on every member).

use bytes::Bytes;
use cairn_proto::{Mutation, ObjOp, OpOut};
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
    /// The object exists after the op.
    pub exists_after: bool,
    pub size_after: u64,
}

/// Plans a compound op against the object's current state. Reads inside a write op see the state
/// before the op (as Ceph's do for the common cases).
pub fn plan(store: &dyn ObjectStore, pg: PgId, oid: &ObjectId, ops: &[ObjOp]) -> Result<Planned> {
    let meta = store.stat(pg, oid)?;
    let mut exists = meta.is_some();
    let mut size = meta.map_or(0, |m| m.size);
    let mut mutations = Vec::new();
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
                if !exists {
                    return Err(Error::enoent(format!("object {oid} does not exist")));
                }
                mutations.push(Mutation::Zero { offset: *offset, len: *len });
                OpOut::None
            }
            ObjOp::Remove => {
                if !exists {
                    return Err(Error::enoent(format!("object {oid} does not exist")));
                }
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
            read => read_op(store, pg, oid, exists, read)?,
        };
        outs.push(out);
    }
    Ok(Planned { mutations, outs, exists_after: exists, size_after: size })
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
        ObjOp::GetXattrs => OpOut::Pairs { entries: store.list_xattrs(pg, oid)?, more: false },
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
        });
    }
}

/// Whether the object exists once `mutations` are applied (Remove may be followed by writes).
pub fn exists_after(mutations: &[Mutation]) -> bool {
    !matches!(mutations.last(), Some(Mutation::Remove))
}

/// Reads an object's whole state for recovery; `None` if it does not exist.
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
    Ok(Some(cairn_proto::ObjectState {
        oid: oid.clone(),
        version: meta.version,
        mtime_ns: meta.mtime_ns,
        data,
        xattrs,
        omap_header,
        omap,
    }))
}

/// Store ops that make `oid` equal to `state` (or absent).
pub fn install_ops(pg: PgId, oid: &ObjectId, state: Option<&cairn_proto::ObjectState>, out: &mut Vec<Op>) {
    out.push(Op::Remove { pg, oid: oid.clone() });
    let Some(s) = state else { return };
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
}
