//! Object-class methods (`cairn_proto::cls`): each reads the object's committed state and
//! returns the mutations that make its change, so it runs atomically under the object lock and
//! replicates like any write.

use bytes::Bytes;
use cairn_proto::cls::{self, ClsCall, ImageHeader, LockState, SnapInfo, SnapNamespace, TrashEntry, Watcher};
use cairn_proto::{Mutation, OpOut};
use cairn_store::ObjectStore;
use cairn_types::{errno, Error, ObjectId, PgId, Result};
use serde::{de::DeserializeOwned, Serialize};

/// Read access to one object's committed state.
struct Obj<'a> {
    store: &'a dyn ObjectStore,
    pg: PgId,
    oid: &'a ObjectId,
    exists: bool,
}

impl Obj<'_> {
    fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        if !self.exists {
            return Ok(None);
        }
        let mut found = self.store.omap_get(self.pg, self.oid, &[key.to_string()])?;
        match found.pop() {
            Some((_, v)) => Ok(Some(cls::decode(key, &v)?)),
            None => Ok(None),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, Bytes)>> {
        if !self.exists {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let mut after = String::new();
        loop {
            let batch = self.store.omap_list(self.pg, self.oid, &after, prefix, 1024)?;
            let Some((last, _)) = batch.last() else { return Ok(out) };
            after = last.clone();
            out.extend(batch);
        }
    }

    fn header(&self) -> Result<ImageHeader> {
        self.get(cls::HEADER_KEY)?
            .ok_or_else(|| Error::enoent(format!("{} is not an image header", self.oid.name)))
    }
}

fn set<T: Serialize>(key: &str, value: &T) -> Mutation {
    Mutation::OmapSet { entries: vec![(key.to_string(), cls::encode(value))] }
}

fn rm(key: String) -> Mutation {
    Mutation::OmapRm { keys: vec![key] }
}

fn busy(msg: impl Into<String>) -> Error {
    Error::new(errno::EBUSY, msg)
}

/// Runs `call` against the object's state; pushes its mutations and returns its output.
pub fn execute(
    store: &dyn ObjectStore,
    pg: PgId,
    oid: &ObjectId,
    exists: bool,
    call: &ClsCall,
    mutations: &mut Vec<Mutation>,
) -> Result<OpOut> {
    let obj = Obj { store, pg, oid, exists };
    let mut out = OpOut::None;
    match call {
        ClsCall::RbdCreate { header } => {
            if obj.get::<ImageHeader>(cls::HEADER_KEY)?.is_some() {
                return Err(Error::eexist(format!("image header {} already exists", oid.name)));
            }
            mutations.push(set(cls::HEADER_KEY, header));
        }
        ClsCall::RbdGetHeader => out = OpOut::Data(cls::encode(&obj.header()?)),
        ClsCall::RbdSetSize { size } => {
            let mut h = obj.header()?;
            h.size = *size;
            if let Some(p) = &mut h.parent {
                p.overlap = p.overlap.min(*size);
            }
            mutations.push(set(cls::HEADER_KEY, &h));
        }
        ClsCall::RbdSnapAdd { id, name, timestamp_secs } => {
            let mut h = obj.header()?;
            if h.user_snap_named(name).is_some() {
                return Err(Error::eexist(format!("snapshot '{name}' already exists")));
            }
            if *id <= h.snap_seq {
                return Err(Error::new(
                    errno::ESTALE,
                    format!("snapshot id {id} is not newer than {}", h.snap_seq),
                ));
            }
            h.snap_seq = *id;
            h.snaps.push(SnapInfo {
                id: *id,
                name: name.clone(),
                size: h.size,
                namespace: SnapNamespace::User,
                protected: false,
                parent: h.parent.clone(),
                timestamp_secs: *timestamp_secs,
                children: Vec::new(),
            });
            mutations.push(set(cls::HEADER_KEY, &h));
        }
        ClsCall::RbdSnapRemove { id } => {
            let mut h = obj.header()?;
            let at = h.snaps.iter().position(|s| s.id == *id).ok_or_else(|| no_snap(*id))?;
            let snap = &mut h.snaps[at];
            if snap.protected {
                return Err(busy(format!("snapshot '{}' is protected from removal", snap.name)));
            }
            let gone = snap.children.is_empty();
            if gone {
                h.snaps.remove(at);
            } else if snap.namespace == SnapNamespace::User {
                snap.namespace = SnapNamespace::Trash { original_name: snap.name.clone() };
                snap.name = format!("{:x}-trash-{}", snap.id, snap.name);
            }
            mutations.push(set(cls::HEADER_KEY, &h));
            out = OpOut::Data(cls::encode(&gone));
        }
        ClsCall::RbdSnapRename { id, name } => {
            let mut h = obj.header()?;
            if h.user_snap_named(name).is_some() {
                return Err(Error::eexist(format!("snapshot '{name}' already exists")));
            }
            let snap = h.snaps.iter_mut().find(|s| s.id == *id).ok_or_else(|| no_snap(*id))?;
            snap.name = name.clone();
            mutations.push(set(cls::HEADER_KEY, &h));
        }
        ClsCall::RbdSetProtection { id, protected } => {
            let mut h = obj.header()?;
            let snap = h.snaps.iter_mut().find(|s| s.id == *id).ok_or_else(|| no_snap(*id))?;
            if !*protected && !snap.children.is_empty() {
                return Err(busy(format!(
                    "snapshot '{}' has {} child image(s)",
                    snap.name,
                    snap.children.len()
                )));
            }
            if *protected && snap.namespace != SnapNamespace::User {
                return Err(Error::einval(format!("snapshot {id} is in the trash")));
            }
            snap.protected = *protected;
            mutations.push(set(cls::HEADER_KEY, &h));
        }
        ClsCall::RbdChildAttach { snap_id, child } => {
            let mut h = obj.header()?;
            let snap = h.snaps.iter_mut().find(|s| s.id == *snap_id).ok_or_else(|| no_snap(*snap_id))?;
            if snap.namespace != SnapNamespace::User {
                return Err(Error::enoent(format!("snapshot {snap_id} is in the trash")));
            }
            if snap.children.contains(child) {
                return Err(Error::eexist(format!("image {} is already a child", child.image_id)));
            }
            snap.children.push(child.clone());
            snap.children.sort();
            mutations.push(set(cls::HEADER_KEY, &h));
        }
        ClsCall::RbdChildDetach { snap_id, child } => {
            let mut h = obj.header()?;
            let at = h.snaps.iter().position(|s| s.id == *snap_id).ok_or_else(|| no_snap(*snap_id))?;
            let snap = &mut h.snaps[at];
            let before = snap.children.len();
            snap.children.retain(|c| c != child);
            if snap.children.len() == before {
                return Err(Error::enoent(format!("image {} is not a child", child.image_id)));
            }
            let gone = snap.children.is_empty() && snap.namespace != SnapNamespace::User;
            if gone {
                h.snaps.remove(at);
            }
            mutations.push(set(cls::HEADER_KEY, &h));
            out = OpOut::Data(cls::encode(&gone));
        }
        ClsCall::RbdSetParent { parent } => {
            let mut h = obj.header()?;
            h.parent = parent.clone();
            mutations.push(set(cls::HEADER_KEY, &h));
        }
        ClsCall::DirAdd { name, id } => {
            let (name_key, id_key) = dir_keys(name, id);
            if obj.get::<String>(&name_key)?.is_some() {
                return Err(Error::eexist(format!("rbd image {name} already exists")));
            }
            if obj.get::<String>(&id_key)?.is_some() {
                return Err(Error::eexist(format!("image id {id} is already in use")));
            }
            mutations.push(set(&name_key, id));
            mutations.push(set(&id_key, name));
        }
        ClsCall::DirRemove { name, id } => {
            let (name_key, id_key) = dir_keys(name, id);
            if obj.get::<String>(&name_key)?.as_deref() != Some(id.as_str()) {
                return Err(Error::enoent(format!("image {name} with id {id} is not in the directory")));
            }
            mutations.push(Mutation::OmapRm { keys: vec![name_key, id_key] });
        }
        ClsCall::DirRename { src, dst, id } => {
            let (src_key, id_key) = dir_keys(src, id);
            let dst_key = format!("{}{dst}", cls::DIR_NAME_PREFIX);
            if obj.get::<String>(&dst_key)?.is_some() {
                return Err(Error::eexist(format!("rbd image {dst} already exists")));
            }
            if obj.get::<String>(&src_key)?.as_deref() != Some(id.as_str()) {
                return Err(Error::enoent(format!("image {src} with id {id} is not in the directory")));
            }
            mutations.push(rm(src_key));
            mutations.push(set(&dst_key, id));
            mutations.push(set(&id_key, dst));
        }
        ClsCall::TrashAdd { id, entry } => {
            let key = format!("{}{id}", cls::TRASH_ID_PREFIX);
            if obj.get::<TrashEntry>(&key)?.is_some() {
                return Err(Error::eexist(format!("image {id} is already in the trash")));
            }
            mutations.push(set(&key, entry));
        }
        ClsCall::TrashRemove { id } => {
            let key = format!("{}{id}", cls::TRASH_ID_PREFIX);
            if obj.get::<TrashEntry>(&key)?.is_none() {
                return Err(Error::enoent(format!("image {id} is not in the trash")));
            }
            mutations.push(rm(key));
        }
        ClsCall::LockAcquire { name, exclusive, tag, holder, now_ms, duration_ms } => {
            let key = format!("{}{name}", cls::LOCK_PREFIX);
            let mut state: LockState = obj.get(&key)?.unwrap_or_default();
            state.holders.retain(|h| h.expires_ms == 0 || h.expires_ms > *now_ms);
            if state.holders.iter().any(|h| h.owner == holder.owner && h.cookie == holder.cookie) {
                return Err(Error::eexist(format!("lock {name} is already held by this owner")));
            }
            if !state.holders.is_empty() && (state.exclusive || *exclusive || state.tag != *tag) {
                let who = &state.holders[0];
                return Err(busy(format!("lock {name} is held by {} (cookie {})", who.owner, who.cookie)));
            }
            let mut holder = holder.clone();
            holder.expires_ms = if *duration_ms == 0 { 0 } else { now_ms + duration_ms };
            state.exclusive = *exclusive;
            state.tag = tag.clone();
            state.holders.push(holder);
            mutations.push(set(&key, &state));
        }
        ClsCall::LockRelease { name, owner, cookie } => {
            let key = format!("{}{name}", cls::LOCK_PREFIX);
            let mut state: LockState = obj.get(&key)?.unwrap_or_default();
            let before = state.holders.len();
            state.holders.retain(|h| !(h.owner == *owner && h.cookie == *cookie));
            if state.holders.len() == before {
                return Err(Error::enoent(format!(
                    "lock {name} is not held by {owner} with cookie {cookie}"
                )));
            }
            mutations.push(if state.holders.is_empty() { rm(key) } else { set(&key, &state) });
        }
        ClsCall::LockInfo { name } => {
            let state: LockState = obj.get(&format!("{}{name}", cls::LOCK_PREFIX))?.unwrap_or_default();
            out = OpOut::Data(cls::encode(&state));
        }
        ClsCall::WatchRefresh { watcher } => {
            mutations.push(set(&format!("{}{:016x}", cls::WATCHER_PREFIX, watcher.cookie), watcher));
        }
        ClsCall::WatchRemove { cookie } => {
            mutations.push(rm(format!("{}{cookie:016x}", cls::WATCHER_PREFIX)))
        }
        ClsCall::WatchList { now_ms } => {
            let mut live = Vec::new();
            for (key, value) in obj.list(cls::WATCHER_PREFIX)? {
                let w: Watcher = cls::decode(&key, &value)?;
                if w.expires_ms > *now_ms {
                    live.push(w);
                }
            }
            out = OpOut::Data(cls::encode(&live));
        }
    }
    Ok(out)
}

fn dir_keys(name: &str, id: &str) -> (String, String) {
    (format!("{}{name}", cls::DIR_NAME_PREFIX), format!("{}{id}", cls::DIR_ID_PREFIX))
}

fn no_snap(id: u64) -> Error {
    Error::enoent(format!("snapshot {id} does not exist"))
}
