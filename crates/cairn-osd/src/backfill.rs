//! Backfill in the background (docs/replication.md, "Backfill in the background").
//!
//! While a pg_temp entry keeps a PG's last active set acting, the members of its up set that are
//! not acting (backfill targets) are filled by the primary while it serves I/O as usual:
//! 1. snapshot the PG log, wait until every write up to it is durable here, then compare every
//!    object's version on this OSD with each target's and push the differences, in object-id
//!    order, in batches of [`BACKFILL_BATCH_OBJECTS`] (one batch in flight per PG, at most
//!    [`MAX_BACKFILLS`] PGs per OSD at once);
//! 2. repeat (writes went on meanwhile, and targets get none of them) until a pass finds at
//!    most [`CATCH_UP_OBJECTS`] differences (or after [`MAX_PASSES`]);
//! 3. install that pass's log snapshot on every target (so the next peering recovers them from
//!    the log, not by another backfill), and ask the mon to clear the pg_temp entry: the up set
//!    becomes acting in a new interval, which peers as usual.
//!
//! Only acknowledged state is copied: an object is read under its object lock (no write of it
//! in flight) and only while the PG is still active in the same generation (a write that failed
//! to replicate has already sent the PG back to peering).
//!
//! Also the helpers recovery during peering shares: listing, pulling and pushing objects.

use crate::ops;
use crate::osd::Osd;
use crate::pg::{Backfill, Pg, Phase};
use cairn_proto::{LogEntry, Message, ObjectState};
use cairn_store::Transaction;
use cairn_types::{errno, Error, ObjectId, OsdId, PgInterval, Result, Version};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Objects per push while backfilling in the background; each PG has one batch in flight.
pub const BACKFILL_BATCH_OBJECTS: usize = 16;
/// Bytes (object data) per push while backfilling in the background.
pub const BACKFILL_BATCH_BYTES: usize = 4 << 20;
/// A pass that finds at most this many differing objects (summed over targets) is the last.
pub const CATCH_UP_OBJECTS: usize = 32;
/// Passes after which backfill ends even if writes keep changing more than [`CATCH_UP_OBJECTS`]
/// objects per pass: the next peering recovers the rest from the log.
pub const MAX_PASSES: usize = 8;
/// PGs one OSD backfills at once as primary (Ceph's `osd_max_backfills`); others wait
/// (`backfill_wait`).
pub const MAX_BACKFILLS: usize = 2;
/// Objects listed per scan request.
const SCAN_BATCH: u32 = 1024;

/// Backfills `pg`'s targets until done or `generation` (an active interval) is superseded.
pub async fn run(osd: Arc<Osd>, pg: Arc<Pg>, generation: u64) {
    let mut backoff = Duration::from_millis(500);
    while check_active(&pg, generation).is_ok() {
        match backfill_once(&osd, &pg, generation).await {
            Ok(()) => return,
            Err(e) => {
                tracing::info!(pg = %pg.id, error = %e, "backfill not finished; retrying");
                set_backfill(&pg, generation, Backfill::Waiting);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

async fn backfill_once(osd: &Arc<Osd>, pg: &Arc<Pg>, generation: u64) -> Result<()> {
    let interval = pg.lock().interval.clone().ok_or_else(|| Error::eagain("no interval"))?;
    let targets = interval.backfill_targets();
    if targets.is_empty() {
        // Every up member already acts (an up member went down, or the pool shrank): once the
        // up set is complete, it can take over; until then the larger acting set keeps serving.
        let size = osd.map().pools.get(&pg.id.pool).map_or(usize::MAX, |p| p.size as usize);
        if interval.up.len() >= size {
            return clear_pg_temp(osd, pg, &interval, generation).await;
        }
        return Ok(());
    }
    set_backfill(pg, generation, Backfill::Waiting);
    let _slot = osd.backfill_slots.acquire().await.map_err(|_| Error::eio("backfill slots closed"))?;
    check_active(pg, generation)?;
    set_backfill(pg, generation, Backfill::Running);
    tracing::info!(pg = %pg.id, ?targets, "backfill started");
    let mut pass = 0;
    loop {
        pass += 1;
        // Every write in the snapshot must be durable here before the scan, so the scan (and
        // the copies) reflect at least the state the snapshot describes.
        let (log, log_tail) = {
            let st = pg.lock();
            (st.log.iter().cloned().collect::<Vec<LogEntry>>(), st.info.log_tail)
        };
        osd.store_barrier().await?;
        let want = scan_all(osd, pg, osd.id).await?;
        let mut needs: BTreeMap<ObjectId, Vec<OsdId>> = BTreeMap::new();
        for t in &targets {
            let have = scan_all(osd, pg, *t).await?;
            for oid in differences(&want, &have) {
                needs.entry(oid).or_default().push(*t);
            }
        }
        let differing: usize = needs.values().map(Vec::len).sum();
        pg.lock().objects_missing = differing as u64;
        tracing::info!(pg = %pg.id, pass, differing, "backfill pass");
        copy(osd, pg, generation, &interval, needs).await?;
        if differing <= CATCH_UP_OBJECTS || pass >= MAX_PASSES {
            check_active(pg, generation)?;
            for t in &targets {
                let msg =
                    Message::PgBackfillLog { pg: pg.id, since: interval.since, log: log.clone(), log_tail };
                osd.call_osd(*t, msg).await?;
            }
            break;
        }
    }
    tracing::info!(pg = %pg.id, ?targets, passes = pass, "backfill complete");
    clear_pg_temp(osd, pg, &interval, generation).await
}

/// Asks the mon to make the up set acting. A refusal as stale means the map moved on, and the
/// newer interval takes over.
async fn clear_pg_temp(osd: &Arc<Osd>, pg: &Pg, interval: &PgInterval, generation: u64) -> Result<()> {
    set_backfill(pg, generation, Backfill::Done);
    let msg = Message::PgTempClearRequest { pg: pg.id, since: interval.since, up: interval.up.clone() };
    match osd.monc.call_leader(msg, Duration::from_secs(30)).await? {
        Message::Ok => Ok(()),
        Message::Error(e) if e.errno == errno::ESTALE => Ok(()),
        Message::Error(e) => Err(e),
        other => Err(Error::eio(format!("unexpected reply {other:?}"))),
    }
}

/// Per target: the object states to push next, and their data bytes.
type Batches = BTreeMap<OsdId, (Vec<(ObjectId, Option<ObjectState>)>, usize)>;

/// Copies each object to the targets that need it, in object-id order, one batch in flight.
async fn copy(
    osd: &Arc<Osd>,
    pg: &Arc<Pg>,
    generation: u64,
    interval: &PgInterval,
    needs: BTreeMap<ObjectId, Vec<OsdId>>,
) -> Result<()> {
    let mut batches: Batches = BTreeMap::new();
    for (oid, targets) in needs {
        let state = fetch_acknowledged(osd, pg, generation, &oid).await?;
        let bytes = state.as_ref().map_or(0, |s| s.data.len());
        let mut full = false;
        for t in targets {
            let (objects, size) = batches.entry(t).or_default();
            objects.push((oid.clone(), state.clone()));
            *size += bytes;
            full |= objects.len() >= BACKFILL_BATCH_OBJECTS || *size >= BACKFILL_BATCH_BYTES;
        }
        if full {
            flush(osd, pg, interval, &mut batches).await?;
        }
    }
    flush(osd, pg, interval, &mut batches).await
}

async fn flush(osd: &Arc<Osd>, pg: &Arc<Pg>, interval: &PgInterval, batches: &mut Batches) -> Result<()> {
    for (t, (objects, _)) in std::mem::take(batches) {
        if !objects.is_empty() {
            push(osd, pg, interval, t, objects).await?;
        }
    }
    Ok(())
}

/// The object's state on this OSD as of its last completed write: read under the object lock
/// (no write of it in flight) while the PG is still active in `generation`.
async fn fetch_acknowledged(
    osd: &Arc<Osd>,
    pg: &Arc<Pg>,
    generation: u64,
    oid: &ObjectId,
) -> Result<Option<ObjectState>> {
    let _guard = pg.lock_object(oid).await;
    check_active(pg, generation)?;
    ops::object_state(&*osd.store, pg.id, oid)
}

fn check_active(pg: &Pg, generation: u64) -> Result<()> {
    let st = pg.lock();
    if st.generation != generation || st.phase != Phase::Active {
        return Err(Error::new(errno::ESTALE, "the pg is no longer active in this interval"));
    }
    Ok(())
}

fn set_backfill(pg: &Pg, generation: u64, state: Backfill) {
    let mut st = pg.lock();
    if st.generation == generation {
        st.backfill = state;
    }
}

/// Objects on which `have` differs from `want`: by version, present only in `want` (in id
/// order), then present only in `have` (to remove).
fn differences(want: &BTreeMap<ObjectId, Version>, have: &BTreeMap<ObjectId, Version>) -> Vec<ObjectId> {
    let mut out: Vec<ObjectId> =
        want.iter().filter(|(oid, v)| have.get(*oid) != Some(*v)).map(|(oid, _)| oid.clone()).collect();
    out.extend(have.keys().filter(|oid| !want.contains_key(*oid)).cloned());
    out
}

/// Every object on which `member` differs from `source` (by version, or by existence).
pub async fn backfill_list(
    osd: &Arc<Osd>,
    pg: &Arc<Pg>,
    source: OsdId,
    member: OsdId,
) -> Result<Vec<ObjectId>> {
    let have = scan_all(osd, pg, member).await?;
    let want = scan_all(osd, pg, source).await?;
    Ok(differences(&want, &have))
}

/// Every object of `pg` on `who`, with its version.
pub async fn scan_all(osd: &Arc<Osd>, pg: &Arc<Pg>, who: OsdId) -> Result<BTreeMap<ObjectId, Version>> {
    let mut out = BTreeMap::new();
    let mut after: Option<ObjectId> = None;
    loop {
        let reply = if who == osd.id {
            osd.pg_scan(pg.id, after.clone(), SCAN_BATCH)?
        } else {
            let msg = Message::PgScan {
                pg: pg.id,
                epoch: osd.map().epoch,
                start_after: after.clone(),
                max: SCAN_BATCH,
            };
            osd.call_osd(who, msg).await?
        };
        let Message::PgScanReply { objects, done } = reply else {
            return Err(Error::eio(format!("osd.{who}: unexpected scan reply")));
        };
        after = objects.last().map(|(o, _)| o.clone());
        out.extend(objects.into_iter().filter(|(o, _)| !ops::is_clone(o)));
        if done || after.is_none() {
            return Ok(out);
        }
    }
}

/// One object's whole state on `source` (`None`: it does not exist there).
pub async fn fetch_state(
    osd: &Arc<Osd>,
    pg: &Arc<Pg>,
    source: OsdId,
    oid: &ObjectId,
) -> Result<Option<ObjectState>> {
    if source == osd.id {
        return ops::object_state(&*osd.store, pg.id, oid);
    }
    let msg = Message::PgPull { pg: pg.id, epoch: osd.map().epoch, oid: oid.clone() };
    match osd.call_osd(source, msg).await? {
        Message::PgPullReply { state } => Ok(state),
        other => Err(Error::eio(format!("osd.{source}: unexpected pull reply {other:?}"))),
    }
}

/// Installs object states (or removals) on `member` — this OSD or another — for `interval`.
pub async fn push(
    osd: &Arc<Osd>,
    pg: &Arc<Pg>,
    interval: &PgInterval,
    member: OsdId,
    objects: Vec<(ObjectId, Option<ObjectState>)>,
) -> Result<()> {
    let count = objects.len() as u64;
    if member == osd.id {
        let mut txn = Transaction::new();
        for (oid, state) in &objects {
            ops::install_ops(&*osd.store, pg.id, oid, state.as_ref(), &mut txn.ops)?;
        }
        // Only while this interval is still peering here: a superseded peering task must not
        // overwrite objects that a newer, active interval has written since it fetched them.
        let rx = {
            let st = pg.lock();
            let peering = matches!(st.phase, crate::pg::Phase::Peering | crate::pg::Phase::Incomplete);
            if st.since() != Some(interval.since) || !peering {
                return Err(Error::new(cairn_types::errno::ESTALE, "interval changed during recovery"));
            }
            osd.store.submit(txn)
        };
        rx.await.map_err(|_| Error::eio("store shut down"))??;
    } else {
        let msg = Message::PgPush { pg: pg.id, since: interval.since, objects };
        osd.call_osd(member, msg).await?;
    }
    let mut st = pg.lock();
    st.objects_missing = st.objects_missing.saturating_sub(count);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(epoch: u64, seq: u64) -> Version {
        Version { epoch, seq }
    }

    #[test]
    fn differences_cover_versions_missing_and_extra_objects() {
        let want: BTreeMap<ObjectId, Version> = [("a", v(5, 1)), ("b", v(5, 2)), ("c", v(6, 3))]
            .into_iter()
            .map(|(o, v)| (ObjectId::new(o), v))
            .collect();
        let have: BTreeMap<ObjectId, Version> = [("a", v(5, 1)), ("b", v(4, 9)), ("z", v(3, 1))]
            .into_iter()
            .map(|(o, v)| (ObjectId::new(o), v))
            .collect();
        let names: Vec<String> = differences(&want, &have).into_iter().map(|o| o.name).collect();
        assert_eq!(names, ["b", "c", "z"]);
        assert!(differences(&want, &want).is_empty());
    }
}
