//! Object-class methods: small, typed operations the OSD runs atomically on one object (Ceph's
//! `cls_rbd`, `cls_lock` idea). RBD keeps its image headers, directory and trash consistent
//! with them; the caps `class-read` / `class-write` / `allow class <name> [<method>]` check
//! [`ClsCall::names`] and [`ClsCall::is_write`].
//!
//! Where the methods keep their state (all in the object's omap, under the keys below):
//! - image header `rbd_header.<id>`: [`HEADER_KEY`] → [`ImageHeader`]; image metadata under
//!   `metadata_<key>` (plain omap, read and written by the client);
//! - `rbd_directory`: `name_<name>` → image id, `id_<id>` → name;
//! - `rbd_trash`: `id_<id>` → [`TrashEntry`];
//! - any object: `lock.<name>` → [`LockState`]; `watcher_<cookie>` → [`Watcher`].
//!
//! Values are postcard; outputs come back as `OpOut::Data` holding the postcard of the type
//! named on each method.

use bytes::Bytes;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

pub const HEADER_KEY: &str = "cairn_header";
pub const DIR_NAME_PREFIX: &str = "name_";
pub const DIR_ID_PREFIX: &str = "id_";
pub const TRASH_ID_PREFIX: &str = "id_";
pub const METADATA_PREFIX: &str = "metadata_";
pub const LOCK_PREFIX: &str = "lock.";
pub const WATCHER_PREFIX: &str = "watcher_";

/// The parent of a clone: a snapshot of another image, and how much of it the child sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentSpec {
    pub pool: u32,
    pub pool_namespace: String,
    pub image_id: String,
    pub snap_id: u64,
    /// Bytes of the parent visible through the child (`rbd info`'s overlap).
    pub overlap: u64,
}

/// A clone of one of this image's snapshots.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ChildSpec {
    pub pool: u32,
    pub pool_namespace: String,
    pub image_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapNamespace {
    User,
    /// Removed while clones still depended on it (clone v2); gone when the last child is.
    Trash {
        original_name: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapInfo {
    pub id: u64,
    pub name: String,
    /// Image size when the snapshot was taken.
    pub size: u64,
    pub namespace: SnapNamespace,
    pub protected: bool,
    pub parent: Option<ParentSpec>,
    pub timestamp_secs: u64,
    pub children: Vec<ChildSpec>,
}

/// An RBD image's header (format 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageHeader {
    pub size: u64,
    pub order: u8,
    pub features: u64,
    /// `rbd_data.<id>`.
    pub object_prefix: String,
    pub stripe_unit: u64,
    pub stripe_count: u64,
    pub snap_seq: u64,
    /// Oldest first.
    pub snaps: Vec<SnapInfo>,
    pub parent: Option<ParentSpec>,
    pub create_timestamp_secs: u64,
    pub flags: u64,
}

impl ImageHeader {
    pub fn snap(&self, id: u64) -> Option<&SnapInfo> {
        self.snaps.iter().find(|s| s.id == id)
    }

    pub fn user_snap_named(&self, name: &str) -> Option<&SnapInfo> {
        self.snaps.iter().find(|s| s.name == name && s.namespace == SnapNamespace::User)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrashEntry {
    pub name: String,
    /// "USER" or "MIRRORING"...: Ceph's trash source, shown by `trash ls -l`.
    pub source: String,
    pub deletion_secs: u64,
    pub deferment_end_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    /// Who holds it: `client.<global id>` or the entity name.
    pub owner: String,
    pub cookie: String,
    pub address: String,
    pub description: String,
    /// Unix ms after which the lock may be broken as stale; 0 = never.
    pub expires_ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockState {
    pub exclusive: bool,
    pub tag: String,
    pub holders: Vec<LockHolder>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watcher {
    pub cookie: u64,
    /// `client.<id>` of the watcher.
    pub owner: String,
    pub address: String,
    /// The newest image snapshot id the watcher writes with: a snapshot is complete once every
    /// live watcher has seen it.
    pub seen_snap_seq: u64,
    /// Unix ms after which the watch counts as gone (its holder stopped refreshing it).
    pub expires_ms: u64,
}

/// One object-class method call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClsCall {
    // ---- rbd, on rbd_header.<id> ----
    /// EEXIST if the header exists.
    RbdCreate {
        header: ImageHeader,
    },
    /// Output: [`ImageHeader`]; ENOENT if there is none.
    RbdGetHeader,
    /// Also cuts the parent overlap down to the new size.
    RbdSetSize {
        size: u64,
    },
    /// ESTALE if `id` is not newer than every snapshot; EEXIST if the name is taken.
    RbdSnapAdd {
        id: u64,
        name: String,
        timestamp_secs: u64,
    },
    /// EBUSY if protected; with children, the snapshot moves to the trash namespace instead.
    /// Output: `bool`, whether it is gone (then its snapshot id can be released).
    RbdSnapRemove {
        id: u64,
    },
    RbdSnapRename {
        id: u64,
        name: String,
    },
    /// Unprotecting with children: EBUSY.
    RbdSetProtection {
        id: u64,
        protected: bool,
    },
    /// Records a clone of snapshot `snap_id`.
    RbdChildAttach {
        snap_id: u64,
        child: ChildSpec,
    },
    /// Output: `bool`, whether a trashed snapshot lost its last child and is gone.
    RbdChildDetach {
        snap_id: u64,
        child: ChildSpec,
    },
    RbdSetParent {
        parent: Option<ParentSpec>,
    },
    // ---- rbd, on rbd_directory ----
    /// EEXIST if the name or id is taken.
    DirAdd {
        name: String,
        id: String,
    },
    /// ENOENT unless `name` maps to `id`.
    DirRemove {
        name: String,
        id: String,
    },
    /// EEXIST if `dst` is taken, ENOENT unless `src` maps to `id`.
    DirRename {
        src: String,
        dst: String,
        id: String,
    },
    // ---- rbd, on rbd_trash ----
    TrashAdd {
        id: String,
        entry: TrashEntry,
    },
    TrashRemove {
        id: String,
    },
    // ---- lock, on any object ----
    /// EBUSY if held by someone else (or shared vs exclusive mismatch); EEXIST if this
    /// owner and cookie hold it already. `duration_ms` 0 = until unlocked.
    LockAcquire {
        name: String,
        exclusive: bool,
        tag: String,
        holder: LockHolder,
        now_ms: u64,
        duration_ms: u64,
    },
    /// ENOENT if `owner`/`cookie` does not hold it.
    LockRelease {
        name: String,
        owner: String,
        cookie: String,
    },
    /// Output: [`LockState`] (empty if unlocked).
    LockInfo {
        name: String,
    },
    // ---- watch, on any object ----
    /// Registers or refreshes a watch.
    WatchRefresh {
        watcher: Watcher,
    },
    WatchRemove {
        cookie: u64,
    },
    /// Output: `Vec<Watcher>` of watches not expired at `now_ms`.
    WatchList {
        now_ms: u64,
    },
}

impl ClsCall {
    /// `(class, method)` as caps name them.
    pub fn names(&self) -> (&'static str, &'static str) {
        use ClsCall::*;
        match self {
            RbdCreate { .. } => ("rbd", "create"),
            RbdGetHeader => ("rbd", "get_header"),
            RbdSetSize { .. } => ("rbd", "set_size"),
            RbdSnapAdd { .. } => ("rbd", "snapshot_add"),
            RbdSnapRemove { .. } => ("rbd", "snapshot_remove"),
            RbdSnapRename { .. } => ("rbd", "snapshot_rename"),
            RbdSetProtection { .. } => ("rbd", "set_protection_status"),
            RbdChildAttach { .. } => ("rbd", "child_attach"),
            RbdChildDetach { .. } => ("rbd", "child_detach"),
            RbdSetParent { .. } => ("rbd", "set_parent"),
            DirAdd { .. } => ("rbd", "dir_add_image"),
            DirRemove { .. } => ("rbd", "dir_remove_image"),
            DirRename { .. } => ("rbd", "dir_rename_image"),
            TrashAdd { .. } => ("rbd", "trash_add"),
            TrashRemove { .. } => ("rbd", "trash_remove"),
            LockAcquire { .. } => ("lock", "lock"),
            LockRelease { .. } => ("lock", "unlock"),
            LockInfo { .. } => ("lock", "get_info"),
            WatchRefresh { .. } => ("watch", "refresh"),
            WatchRemove { .. } => ("watch", "remove"),
            WatchList { .. } => ("watch", "list"),
        }
    }

    pub fn is_write(&self) -> bool {
        !matches!(self, ClsCall::RbdGetHeader | ClsCall::LockInfo { .. } | ClsCall::WatchList { .. })
    }
}

/// Encodes a method's output or a stored value.
pub fn encode<T: Serialize>(value: &T) -> Bytes {
    Bytes::from(postcard::to_allocvec(value).expect("postcard encodes in-memory values"))
}

/// Decodes a method's output or a stored value; EIO names what was undecodable.
pub fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> cairn_types::Result<T> {
    postcard::from_bytes(bytes).map_err(|e| cairn_types::Error::eio(format!("undecodable {what}: {e}")))
}
