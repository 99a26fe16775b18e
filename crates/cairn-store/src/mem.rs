//! An in-memory [`ObjectStore`] for unit tests and the deterministic simulator: `BTreeMap`s
//! behind one lock. A transaction is checked, then applied whole under the lock, and its receiver
//! resolves at once, so "durable" means "in this process's memory".

use crate::validate::{self, LogView};
use crate::{ObjectMeta, ObjectStore, Op, Transaction};
use bytes::Bytes;
use cairn_types::{Error, ObjectId, PgId, Result, Version};
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use tokio::sync::oneshot;

#[derive(Debug, Clone, Default)]
struct MemObject {
    meta: ObjectMeta,
    /// Stored bytes from offset 0; `data.len() <= meta.size` and bytes past it read as zeros,
    /// so growing truncates and zeros at the end allocate nothing.
    data: Vec<u8>,
    xattrs: BTreeMap<String, Bytes>,
    omap: BTreeMap<String, Bytes>,
    omap_header: Bytes,
}

#[derive(Debug, Clone, Default)]
struct MemPg {
    objects: BTreeMap<ObjectId, MemObject>,
    log: BTreeMap<Version, Bytes>,
    meta: BTreeMap<String, Bytes>,
}

impl MemPg {
    fn is_empty(&self) -> bool {
        self.objects.is_empty() && self.log.is_empty() && self.meta.is_empty()
    }
}

#[derive(Debug, Clone, Default)]
struct State {
    pgs: BTreeMap<PgId, MemPg>,
    meta: BTreeMap<String, Bytes>,
}

impl LogView for State {
    fn log_last(&self, pg: PgId, at_most: Option<Version>) -> Result<Option<Version>> {
        let Some(p) = self.pgs.get(&pg) else {
            return Ok(None);
        };
        let last = match at_most {
            Some(bound) => p.log.range(..=bound).next_back(),
            None => p.log.last_key_value(),
        };
        Ok(last.map(|(v, _)| *v))
    }
}

/// The in-memory store. Cloning the state is not offered: build a new store and replay instead.
#[derive(Debug, Default)]
pub struct MemStore {
    state: Mutex<State>,
}

impl MemStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock may have left a transaction half-applied: stop.
        self.state.lock().expect("MemStore lock poisoned by a panic mid-transaction")
    }

    fn with_object<T>(&self, pg: PgId, oid: &ObjectId, f: impl FnOnce(&MemObject) -> T) -> Result<T> {
        let state = self.lock();
        let obj = state.pgs.get(&pg).and_then(|p| p.objects.get(oid)).ok_or_else(|| no_object(pg, oid))?;
        Ok(f(obj))
    }
}

fn no_object(pg: PgId, oid: &ObjectId) -> Error {
    Error::enoent(format!("object '{oid}' does not exist in pg {pg}"))
}

impl State {
    fn object_mut(&mut self, pg: PgId, oid: &ObjectId) -> &mut MemObject {
        self.pgs.entry(pg).or_default().objects.entry(oid.clone()).or_default()
    }

    fn existing_mut(&mut self, pg: PgId, oid: &ObjectId) -> Option<&mut MemObject> {
        self.pgs.get_mut(&pg).and_then(|p| p.objects.get_mut(oid))
    }

    /// Applies a checked op; cannot fail.
    fn apply(&mut self, op: Op) {
        match op {
            Op::Touch { pg, oid } => {
                self.object_mut(pg, &oid);
            }
            Op::Write { pg, oid, offset, data } => write(self.object_mut(pg, &oid), offset, &data),
            Op::Zero { pg, oid, offset, len } => zero(self.object_mut(pg, &oid), offset, len),
            Op::Truncate { pg, oid, size } => {
                let obj = self.object_mut(pg, &oid);
                obj.meta.size = size;
                obj.data.truncate(size as usize);
            }
            Op::Remove { pg, oid } => {
                if let Some(p) = self.pgs.get_mut(&pg) {
                    p.objects.remove(&oid);
                }
            }
            Op::CloneData { pg, src, dst } => {
                let from = self.existing_mut(pg, &src).map(|o| (o.meta, o.data.clone())).unwrap_or_default();
                let obj = self.object_mut(pg, &dst);
                (obj.meta, obj.data) = from;
            }
            Op::SetMeta { pg, oid, version, mtime_ns } => {
                let obj = self.object_mut(pg, &oid);
                obj.meta.version = version;
                obj.meta.mtime_ns = mtime_ns;
            }
            Op::SetXattr { pg, oid, key, value } => {
                self.object_mut(pg, &oid).xattrs.insert(key, value);
            }
            Op::RmXattr { pg, oid, key } => {
                if let Some(obj) = self.existing_mut(pg, &oid) {
                    obj.xattrs.remove(&key);
                }
            }
            Op::OmapSet { pg, oid, entries } => self.object_mut(pg, &oid).omap.extend(entries),
            Op::OmapRm { pg, oid, keys } => {
                if let Some(obj) = self.existing_mut(pg, &oid) {
                    keys.iter().for_each(|k| {
                        obj.omap.remove(k);
                    });
                }
            }
            Op::OmapClear { pg, oid } => {
                let obj = self.object_mut(pg, &oid);
                obj.omap.clear();
                obj.omap_header = Bytes::new();
            }
            Op::OmapSetHeader { pg, oid, header } => self.object_mut(pg, &oid).omap_header = header,
            Op::LogAppend { pg, version, entry } => {
                self.pgs.entry(pg).or_default().log.insert(version, entry);
            }
            Op::LogTrim { pg, upto } => {
                if let Some(p) = self.pgs.get_mut(&pg) {
                    p.log.retain(|v, _| *v > upto);
                }
            }
            Op::LogTruncate { pg, after } => {
                if let Some(p) = self.pgs.get_mut(&pg) {
                    p.log.retain(|v, _| *v <= after);
                }
            }
            Op::PgMetaSet { pg, key, value } => {
                self.pgs.entry(pg).or_default().meta.insert(key, value);
            }
            Op::RemovePg { pg } => {
                self.pgs.remove(&pg);
            }
            Op::MetaSet { key, value } => {
                self.meta.insert(key, value);
            }
        }
    }
}

fn write(obj: &mut MemObject, offset: u64, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    // Checked: offset + len <= MAX_OBJECT_SIZE_BYTES, which fits usize on 64-bit hosts.
    let (start, end) = (offset as usize, offset as usize + data.len());
    if obj.data.len() < end {
        obj.data.resize(end, 0);
    }
    obj.data[start..end].copy_from_slice(data);
    obj.meta.size = obj.meta.size.max(end as u64);
}

fn zero(obj: &mut MemObject, offset: u64, len: u64) {
    let stored = obj.data.len() as u64;
    let end = offset.saturating_add(len).min(stored);
    if offset >= end {
        return;
    }
    if end == stored {
        obj.data.truncate(offset as usize);
    } else {
        obj.data[offset as usize..end as usize].fill(0);
    }
}

impl ObjectStore for MemStore {
    fn submit(&self, txn: Transaction) -> oneshot::Receiver<Result<()>> {
        let (tx, rx) = oneshot::channel();
        let mut state = self.lock();
        let result = validate::check(&txn, &*state).map(|()| {
            for op in txn.ops {
                state.apply(op);
            }
            state.pgs.retain(|_, p| !p.is_empty());
        });
        drop(state);
        // The caller may have dropped the receiver; the transaction is applied all the same.
        let _ = tx.send(result);
        rx
    }

    fn stat(&self, pg: PgId, oid: &ObjectId) -> Result<Option<ObjectMeta>> {
        let state = self.lock();
        Ok(state.pgs.get(&pg).and_then(|p| p.objects.get(oid)).map(|o| o.meta))
    }

    fn read(&self, pg: PgId, oid: &ObjectId, offset: u64, len: u64) -> Result<Bytes> {
        self.with_object(pg, oid, |obj| {
            let end = offset.saturating_add(len).min(obj.meta.size);
            if offset >= end {
                return Bytes::new();
            }
            let mut out = vec![0u8; (end - offset) as usize];
            let stored = obj.data.len() as u64;
            if offset < stored {
                let copy_end = end.min(stored);
                out[..(copy_end - offset) as usize]
                    .copy_from_slice(&obj.data[offset as usize..copy_end as usize]);
            }
            Bytes::from(out)
        })
    }

    fn get_xattr(&self, pg: PgId, oid: &ObjectId, key: &str) -> Result<Bytes> {
        self.with_object(pg, oid, |obj| obj.xattrs.get(key).cloned())?
            .ok_or_else(|| Error::new(cairn_types::errno::ENODATA, format!("no xattr '{key}' on '{oid}'")))
    }

    fn list_xattrs(&self, pg: PgId, oid: &ObjectId) -> Result<Vec<(String, Bytes)>> {
        self.with_object(pg, oid, |obj| obj.xattrs.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    fn omap_get_header(&self, pg: PgId, oid: &ObjectId) -> Result<Bytes> {
        self.with_object(pg, oid, |obj| obj.omap_header.clone())
    }

    fn omap_get(&self, pg: PgId, oid: &ObjectId, keys: &[String]) -> Result<Vec<(String, Bytes)>> {
        self.with_object(pg, oid, |obj| {
            keys.iter().filter_map(|k| obj.omap.get(k).map(|v| (k.clone(), v.clone()))).collect()
        })
    }

    fn omap_list(
        &self,
        pg: PgId,
        oid: &ObjectId,
        start_after: &str,
        prefix: &str,
        max: usize,
    ) -> Result<Vec<(String, Bytes)>> {
        self.with_object(pg, oid, |obj| {
            let from = if start_after >= prefix { start_after } else { prefix };
            obj.omap
                .range::<str, _>((std::ops::Bound::Included(from), std::ops::Bound::Unbounded))
                .filter(|(k, _)| k.as_str() > start_after)
                .take_while(|(k, _)| k.starts_with(prefix))
                .take(max)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
    }

    fn list_objects(
        &self,
        pg: PgId,
        start_after: Option<&ObjectId>,
        max: usize,
    ) -> Result<Vec<(ObjectId, ObjectMeta)>> {
        let state = self.lock();
        let Some(p) = state.pgs.get(&pg) else {
            return Ok(Vec::new());
        };
        let lower = match start_after {
            Some(oid) => std::ops::Bound::Excluded(oid),
            None => std::ops::Bound::Unbounded,
        };
        Ok(p.objects
            .range::<ObjectId, _>((lower, std::ops::Bound::Unbounded))
            .take(max)
            .map(|(oid, obj)| (oid.clone(), obj.meta))
            .collect())
    }

    fn log_entries(&self, pg: PgId, after: Version) -> Result<Vec<(Version, Bytes)>> {
        let state = self.lock();
        let Some(p) = state.pgs.get(&pg) else {
            return Ok(Vec::new());
        };
        Ok(p.log
            .range((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
            .map(|(v, e)| (*v, e.clone()))
            .collect())
    }

    fn pg_meta(&self, pg: PgId, key: &str) -> Result<Option<Bytes>> {
        Ok(self.lock().pgs.get(&pg).and_then(|p| p.meta.get(key).cloned()))
    }

    fn list_pgs(&self) -> Result<Vec<PgId>> {
        Ok(self.lock().pgs.keys().copied().collect())
    }

    fn meta(&self, key: &str) -> Result<Option<Bytes>> {
        Ok(self.lock().meta.get(key).cloned())
    }

    fn used_bytes(&self) -> Result<u64> {
        let state = self.lock();
        Ok(state.pgs.values().flat_map(|p| p.objects.values()).map(|o| o.meta.size).sum())
    }
}
