//! Snapshot trimming. When a pool's removed snapshots grow, the primary of each of its PGs walks
//! the PG's clones and, for every head with a clone that serves a removed snapshot, runs an
//! ordinary replicated write (`ObjOp::SnapTrim`) that forgets those snapshots and drops clones no
//! snapshot needs any more. Progress shows as `active+clean+snaptrim` in `pg stat`.

use crate::ops;
use crate::osd::Osd;
use crate::pg::{Pg, Phase};
use cairn_proto::{ObjOp, ReqId, SnapContext};
use cairn_types::{ClusterMap, ObjectId, Result};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Request ids of the trimmer's writes: a client id no client uses, tids unique per process
/// start (so a restarted OSD's trims never look like resends of old ones).
static NEXT_TID: AtomicU64 = AtomicU64::new(0);

impl Osd {
    /// Starts trimming every PG this OSD is the active primary of whose pool removed snapshots
    /// it has not trimmed for yet.
    pub fn start_snap_trims(self: &Arc<Self>, map: &ClusterMap) {
        for pg in self.all_pgs() {
            let Some(pool) = map.pools.get(&pg.id.pool) else { continue };
            let target = pool.removed_snaps.len();
            let generation = {
                let mut st = pg.lock();
                let primary = st.interval.as_ref().and_then(|i| i.primary()) == Some(self.id);
                if !primary || st.phase != Phase::Active || st.snaptrim.is_some() || st.trimmed_for >= target
                {
                    continue;
                }
                st.snaptrim = Some(0);
                st.generation
            };
            let (osd, removed) = (self.clone(), pool.removed_snaps.clone());
            tokio::spawn(async move {
                let result = osd.snap_trim(&pg, generation, &removed).await;
                let mut st = pg.lock();
                if st.generation == generation {
                    st.snaptrim = None;
                    match result {
                        Ok(()) => st.trimmed_for = target,
                        // Tried again on the next map.
                        Err(e) => tracing::info!(pg = %pg.id, error = %e, "snap trim stopped"),
                    }
                }
                drop(st);
                osd.stats_now.notify_one();
            });
        }
    }

    async fn snap_trim(self: &Arc<Self>, pg: &Arc<Pg>, generation: u64, removed: &[u64]) -> Result<()> {
        let heads = self.heads_to_trim(pg, removed)?;
        pg.lock().snaptrim = Some(heads.len() as u64);
        self.stats_now.notify_one();
        for head in heads {
            {
                let st = pg.lock();
                if st.generation != generation || st.phase != Phase::Active {
                    return Err(cairn_types::Error::eagain("the pg left its interval"));
                }
            }
            let _guard = pg.lock_object(&head).await;
            let reqid = ReqId {
                client: u64::MAX - u64::from(self.id),
                tid: (std::process::id() as u64) << 32 | NEXT_TID.fetch_add(1, Ordering::Relaxed),
            };
            self.write(pg, &head, reqid, &[ObjOp::SnapTrim], &SnapContext::default()).await?;
            let mut st = pg.lock();
            if let Some(left) = &mut st.snaptrim {
                *left = left.saturating_sub(1);
            }
        }
        Ok(())
    }

    /// Heads of `pg` with a clone that serves one of the `removed` snapshots.
    fn heads_to_trim(&self, pg: &Pg, removed: &[u64]) -> Result<Vec<ObjectId>> {
        let mut heads = BTreeSet::new();
        let mut after: Option<ObjectId> = None;
        loop {
            let batch = self.store.list_objects(pg.id, after.as_ref(), 4096)?;
            after = batch.last().map(|(o, _)| o.clone());
            heads.extend(batch.iter().filter_map(|(o, _)| ops::head_of_clone(o)));
            if batch.len() < 4096 {
                break;
            }
        }
        let mut out = Vec::new();
        for head in heads {
            let snapset = ops::load_head(&*self.store, pg.id, &head)?.snapset;
            if snapset.clones.iter().any(|c| c.snaps.iter().any(|s| removed.binary_search(s).is_ok())) {
                out.push(head);
            }
        }
        Ok(out)
    }
}
