//! Listing and admin commands: object listing for clients and content digests for comparing
//! replicas (`cairn daemon osd.N pg digests`).

use crate::ops;
use crate::osd::Osd;
use crate::pg::Phase;
use cairn_proto::Message;
use cairn_types::{Epoch, Error, ObjectId, PgId, Result};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Most objects in one listing reply.
pub const MAX_LIST_OBJECTS: u32 = 1024;

impl Osd {
    pub async fn pg_list(
        self: &Arc<Self>,
        pgid: PgId,
        epoch: Epoch,
        start_after: Option<ObjectId>,
        max: u32,
    ) -> Result<Message> {
        self.wait_for_epoch(epoch, std::time::Duration::from_secs(2)).await;
        self.active_primary_pg(pgid).await?;
        let max = max.clamp(1, MAX_LIST_OBJECTS) as usize;
        // Clones and whiteouts (removed heads kept for snapshots) are not objects to clients;
        // keep scanning past them so a page is empty only at the end.
        let mut after = start_after;
        let mut objects = Vec::new();
        loop {
            let list = self.store.list_objects(pgid, after.as_ref(), max)?;
            let done = list.len() < max;
            after = list.last().map(|(o, _)| o.clone());
            for (oid, _) in list {
                if !crate::ops::is_clone(&oid) && crate::ops::load_head(&*self.store, pgid, &oid)?.exists() {
                    objects.push(oid);
                }
            }
            if done || !objects.is_empty() {
                return Ok(Message::PgListReply { objects, done });
            }
        }
    }

    /// `pg digests`: for every PG held here, its object count and a digest of every object's
    /// name, version, data, xattrs and omap. `status`: PG phases.
    pub fn admin(&self, command: &str) -> Result<Message> {
        let words: Vec<&str> = command.split_whitespace().collect();
        let json = match words.as_slice() {
            ["pg", "digests"] => serde_json::to_string(&self.digests()?),
            ["status"] => serde_json::to_string(&self.status()),
            _ => {
                return Err(Error::einval(format!(
                    "unknown admin command '{command}' (try: status, pg digests)"
                )))
            }
        };
        Ok(Message::AdminReply { json: json.map_err(|e| Error::eio(e.to_string()))? })
    }

    fn status(&self) -> serde_json::Value {
        let mut pgs = BTreeMap::new();
        for pg in self.all_pgs() {
            let st = pg.lock();
            pgs.insert(pg.id.to_string(), format!("{:?} last_update={}", st.phase, st.info.last_update));
        }
        serde_json::json!({ "osd": self.id, "epoch": self.map().epoch, "pgs": pgs })
    }

    fn digests(&self) -> Result<BTreeMap<String, serde_json::Value>> {
        let mut out = BTreeMap::new();
        for pg in self.all_pgs() {
            if pg.lock().phase == Phase::Stray {
                continue;
            }
            let (mut count, mut crc) = (0u64, 0u32);
            let mut after: Option<ObjectId> = None;
            loop {
                let batch = self.store.list_objects(pg.id, after.as_ref(), 1024)?;
                for (oid, _) in &batch {
                    count += 1;
                    if let Some(s) = ops::object_state(&*self.store, pg.id, oid)? {
                        crc = crc32c::crc32c_append(
                            crc,
                            &postcard::to_allocvec(&s).map_err(|e| Error::eio(e.to_string()))?,
                        );
                    }
                }
                match batch.last() {
                    Some((oid, _)) if batch.len() == 1024 => after = Some(oid.clone()),
                    _ => break,
                }
            }
            out.insert(
                pg.id.to_string(),
                serde_json::json!({ "objects": count, "digest": format!("{crc:08x}") }),
            );
        }
        Ok(out)
    }
}
