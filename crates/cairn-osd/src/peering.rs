//! Peering and recovery, run by the primary of a new interval (docs/replication.md §Peering):
//! 1. query every acting member and every member of the PG's last active interval;
//! 2. take the newest log among the answering members of the last active interval as
//!    authoritative (none answered: `incomplete`, wait);
//! 3. bring every acting member to it: push the objects its log differs in (log recovery) or,
//!    when the logs do not overlap, every object that differs (backfill);
//! 4. install the authoritative log on every member, record the interval as active in the mon,
//!    and only then serve I/O.
//!
//! When a member would need a backfill and the last active interval's members can serve
//! instead, step 3 is replaced by asking the mon for a pg_temp entry that keeps them acting
//! while the new members are filled in the background (`backfill.rs`).

use crate::backfill::{backfill_list, fetch_state, push};
use crate::osd::Osd;
use crate::pg::{Pg, Phase};
use cairn_proto::{LogEntry, Message, ObjectState, PgInfo};
use cairn_store::Transaction;
use cairn_types::{errno, ClusterMap, Error, ObjectId, OsdId, PgInterval, Pool, Result, Version};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// Objects per push message during recovery.
const PUSH_BATCH_OBJECTS: usize = 64;
/// Bytes per push message during recovery.
const PUSH_BATCH_BYTES: usize = 16 << 20;

/// What one member needs to match the authoritative log.
#[derive(Debug, PartialEq)]
pub enum MemberPlan {
    InSync,
    /// Log recovery: these objects differ.
    Objects(BTreeSet<ObjectId>),
    /// Logs do not overlap: compare every object.
    Backfill,
}

/// Peers `pg` until it is active or `generation` is superseded.
pub async fn run(osd: Arc<Osd>, pg: Arc<Pg>, generation: u64) {
    let mut backoff = Duration::from_millis(100);
    loop {
        if pg.lock().generation != generation {
            return;
        }
        match peer_once(&osd, &pg, generation).await {
            Ok(()) => return,
            Err(e) => {
                tracing::info!(pg = %pg.id, error = %e, "peering not finished; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

struct Answer {
    info: PgInfo,
    log: Vec<LogEntry>,
}

async fn peer_once(osd: &Arc<Osd>, pg: &Arc<Pg>, generation: u64) -> Result<()> {
    let map = osd.map();
    let interval = pg.lock().interval.clone().ok_or_else(|| Error::eagain("no interval"))?;
    let pool = map.pools.get(&pg.id.pool).ok_or_else(|| Error::enoent("pool is gone"))?;
    if interval.acting.len() < pool.min_size as usize {
        set_phase(pg, generation, Phase::Undersized);
        return Ok(()); // A map change (an OSD coming back) starts peering again.
    }
    let last_active = map.history.get(&pg.id).map(|h| h.last_active.clone());
    let mut probe: BTreeSet<OsdId> = interval.acting.iter().copied().collect();
    if let Some(h) = &last_active {
        probe.extend(h.acting.iter().copied());
    }
    let answers = query_all(osd, pg, &probe, &interval.acting, last_active.as_ref(), map.epoch).await;
    for m in &interval.acting {
        if !answers.contains_key(m) {
            return Err(Error::eagain(format!("acting member osd.{m} did not answer")));
        }
    }
    let auth_id = choose_authoritative(osd.id, &answers, last_active.as_ref()).ok_or_else(|| {
        set_phase(pg, generation, Phase::Incomplete);
        Error::eagain(format!(
            "incomplete: no member of the last active interval {:?} answered",
            last_active.as_ref().map(|h| &h.acting)
        ))
    })?;
    let auth = &answers[&auth_id];
    let plans: Vec<(OsdId, MemberPlan)> = interval
        .acting
        .iter()
        .map(|m| {
            let a = &answers[m];
            let plan = if *m == auth_id {
                MemberPlan::InSync
            } else {
                plan_member(&a.info, &a.log, &auth.info, &auth.log)
            };
            (*m, plan)
        })
        .collect();
    if interval.acting.iter().any(|m| needs_full_copy(&answers[m], auth)) {
        if let Some(acting) = temp_acting(&map, pool, &interval, last_active.as_ref(), &answers, auth) {
            // Serve from the last active set while the new members are filled in the background;
            // the map change starts a new interval, and this peering ends with it.
            request_pg_temp(osd, pg, &interval, acting).await?;
            return Err(Error::eagain("waiting for the pg_temp entry to take effect"));
        }
    }
    let missing: u64 = plans
        .iter()
        .map(|(_, p)| match p {
            MemberPlan::Objects(s) => s.len() as u64,
            MemberPlan::Backfill => 1,
            MemberPlan::InSync => 0,
        })
        .sum();
    {
        // A superseded peering task must not touch the state of the newer one (simulator seeds
        // 173, 296, 323: a PG stuck in active+recovering).
        let mut st = pg.lock();
        if st.generation != generation {
            return Err(Error::new(errno::ESTALE, "interval changed during peering"));
        }
        st.objects_missing = missing;
    }
    // The primary first, so it holds every object before the others are compared with it.
    let mut ordered = plans;
    ordered.sort_by_key(|(m, _)| *m != osd.id);
    for (member, plan) in ordered {
        check_generation(pg, generation)?;
        recover_member(osd, pg, &interval, auth_id, member, plan).await?;
    }
    activate(osd, pg, &interval, generation, &auth.info, &auth.log).await
}

/// Whether bringing a member to the authoritative log means copying every object: the logs do
/// not overlap (backfill), or the member holds nothing of a PG that has data (a new member;
/// while the authoritative log is not yet trimmed its plan is log recovery of every entry).
fn needs_full_copy(member: &Answer, auth: &Answer) -> bool {
    let empty = Version::default();
    auth.info.last_update != empty
        && (member.info.last_update == empty
            || plan_member(&member.info, &member.log, &auth.info, &auth.log) == MemberPlan::Backfill)
}

/// The acting set to keep in place (as pg_temp) instead of copying every object to a member
/// during peering: the members of the last active interval that are up, answered and need no
/// full copy themselves, in its order (its primary first) — if they are at least `min_size` and
/// differ from the current acting set. `None`: copy now, during peering.
fn temp_acting(
    map: &ClusterMap,
    pool: &Pool,
    interval: &PgInterval,
    last_active: Option<&PgInterval>,
    answers: &BTreeMap<OsdId, Answer>,
    auth: &Answer,
) -> Option<Vec<OsdId>> {
    let candidates: Vec<OsdId> = last_active?
        .acting
        .iter()
        .copied()
        .filter(|m| {
            map.osds.get(m).is_some_and(|o| o.up) && answers.get(m).is_some_and(|a| !needs_full_copy(a, auth))
        })
        .collect();
    (candidates.len() >= pool.min_size as usize && candidates != interval.acting).then_some(candidates)
}

async fn request_pg_temp(osd: &Arc<Osd>, pg: &Pg, interval: &PgInterval, acting: Vec<OsdId>) -> Result<()> {
    tracing::info!(pg = %pg.id, ?acting, up = ?interval.up, "asking for pg_temp to backfill in the background");
    let msg = Message::PgTempRequest { pg: pg.id, since: interval.since, acting };
    match osd.monc.call_leader(msg, Duration::from_secs(30)).await? {
        Message::Ok => Ok(()),
        Message::Error(e) => Err(e),
        other => Err(Error::eio(format!("unexpected reply {other:?}"))),
    }
}

fn set_phase(pg: &Pg, generation: u64, phase: Phase) {
    let mut st = pg.lock();
    if st.generation == generation {
        st.phase = phase;
    }
}

fn check_generation(pg: &Pg, generation: u64) -> Result<()> {
    if pg.lock().generation != generation {
        return Err(Error::new(errno::ESTALE, "interval changed during peering"));
    }
    Ok(())
}

/// How long peering waits for the other probed members once it has every acting member and one
/// member of the last active interval: a hung OSD must not hold up peering for the full timeout.
const STRAGGLER_GRACE: Duration = Duration::from_millis(300);

/// Queries every probed member; returns once all `acting` members and at least one member of
/// `last_active` answered (plus a short grace for the rest), or at the peer timeout.
async fn query_all(
    osd: &Arc<Osd>,
    pg: &Arc<Pg>,
    probe: &BTreeSet<OsdId>,
    acting: &[OsdId],
    last_active: Option<&PgInterval>,
    epoch: u64,
) -> BTreeMap<OsdId, Answer> {
    let mut tasks = tokio::task::JoinSet::new();
    for m in probe {
        let (osd, pgid, m) = (osd.clone(), pg.id, *m);
        tasks.spawn(async move {
            let msg = Message::PgQuery { pg: pgid, epoch, log_after: Version::default() };
            (m, osd.call_osd(m, msg).await)
        });
    }
    let mut answers = BTreeMap::new();
    let mut deadline = tokio::time::Instant::now() + osd.cfg.peer_timeout;
    let mut graced = false;
    loop {
        let next = tokio::time::timeout_at(deadline, tasks.join_next()).await;
        match next {
            Ok(Some(Ok((m, Ok(Message::PgQueryReply { info, log, .. }))))) => {
                answers.insert(m, Answer { info, log });
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
        let enough = acting.iter().all(|m| answers.contains_key(m))
            && last_active.is_none_or(|h| h.acting.iter().any(|m| answers.contains_key(m)));
        if enough && !graced {
            graced = true;
            deadline = deadline.min(tokio::time::Instant::now() + STRAGGLER_GRACE);
        }
    }
    tasks.abort_all();
    answers
}

/// The newest log among answering members of the last active interval (any answering member
/// when the PG has never been active). Ties prefer this OSD, to save copying.
fn choose_authoritative(
    me: OsdId,
    answers: &BTreeMap<OsdId, Answer>,
    last_active: Option<&PgInterval>,
) -> Option<OsdId> {
    answers
        .iter()
        .filter(|(id, _)| last_active.is_none_or(|h| h.acting.contains(id)))
        .max_by_key(|(id, a)| (a.info.last_update, **id == me))
        .map(|(id, _)| *id)
}

/// Compares a member's log with the authoritative one (docs/replication.md §Recovery).
pub fn plan_member(m_info: &PgInfo, m_log: &[LogEntry], a_info: &PgInfo, a_log: &[LogEntry]) -> MemberPlan {
    let a_versions: HashSet<Version> = a_log.iter().map(|e| e.version).collect();
    let in_auth = |v: Version| v == a_info.log_tail || a_versions.contains(&v);
    if m_info.last_update == a_info.last_update && in_auth(m_info.last_update) {
        return MemberPlan::InSync;
    }
    let common = if in_auth(m_info.last_update) {
        Some(m_info.last_update)
    } else {
        m_log
            .iter()
            .rev()
            .map(|e| e.version)
            .find(|v| in_auth(*v))
            .or_else(|| in_auth(m_info.log_tail).then_some(m_info.log_tail))
    };
    let Some(common) = common else {
        return MemberPlan::Backfill;
    };
    let objects =
        a_log.iter().chain(m_log.iter()).filter(|e| e.version > common).map(|e| e.oid.clone()).collect();
    MemberPlan::Objects(objects)
}

async fn recover_member(
    osd: &Arc<Osd>,
    pg: &Arc<Pg>,
    interval: &PgInterval,
    auth: OsdId,
    member: OsdId,
    plan: MemberPlan,
) -> Result<()> {
    // Once the primary is recovered, it is the best source for everyone else.
    let source = if member != osd.id && auth != osd.id { osd.id } else { auth };
    let objects: Vec<ObjectId> = match plan {
        MemberPlan::InSync => return Ok(()),
        MemberPlan::Objects(set) => set.into_iter().collect(),
        MemberPlan::Backfill => backfill_list(osd, pg, source, member).await?,
    };
    tracing::info!(pg = %pg.id, member, source, count = objects.len(), "recovering objects");
    let mut batch: Vec<(ObjectId, Option<ObjectState>)> = Vec::new();
    let mut batch_bytes = 0usize;
    for oid in objects {
        let state = fetch_state(osd, pg, source, &oid).await?;
        batch_bytes += state.as_ref().map_or(0, |s| s.data.len());
        batch.push((oid, state));
        if batch.len() >= PUSH_BATCH_OBJECTS || batch_bytes >= PUSH_BATCH_BYTES {
            push(osd, pg, interval, member, std::mem::take(&mut batch)).await?;
            batch_bytes = 0;
        }
    }
    if !batch.is_empty() {
        push(osd, pg, interval, member, batch).await?;
    }
    Ok(())
}

async fn activate(
    osd: &Arc<Osd>,
    pg: &Arc<Pg>,
    interval: &PgInterval,
    generation: u64,
    auth_info: &PgInfo,
    auth_log: &[LogEntry],
) -> Result<()> {
    for m in &interval.acting[1..] {
        let msg = Message::PgActivate {
            pg: pg.id,
            since: interval.since,
            rollback_after: Version::default(),
            log: auth_log.to_vec(),
            log_tail: auth_info.log_tail,
        };
        osd.call_osd(*m, msg).await?;
    }
    let rx = {
        let mut st = pg.lock();
        if st.generation != generation {
            return Err(Error::new(errno::ESTALE, "interval changed during peering"));
        }
        let mut txn = Transaction::new();
        st.replace_log(pg.id, auth_log.to_vec(), auth_info.log_tail, interval.since, &mut txn.ops);
        osd.store.submit(txn)
    };
    if let Ok(Err(e)) | Err(e) = rx.await.map_err(|_| Error::eio("store shut down")) {
        crate::osd::fatal_store_error("activation", &e);
    }
    osd.recount(pg.id)?;
    // Record the interval as active before serving any write (invariant I2).
    let record = Message::PgActivated { pg: pg.id, interval: interval.clone() };
    match osd.monc.call_leader(record, Duration::from_secs(30)).await? {
        Message::Ok => {}
        Message::Error(e) if e.errno == errno::ESTALE => return Ok(()), // a newer interval took over
        Message::Error(e) => return Err(e),
        other => return Err(Error::eio(format!("unexpected reply {other:?}"))),
    }
    {
        let mut st = pg.lock();
        if st.generation != generation {
            return Ok(());
        }
        st.phase = Phase::Active;
        st.objects_missing = 0;
    }
    pg.activated.send_replace(generation);
    osd.stats_now.notify_one();
    tracing::info!(pg = %pg.id, acting = ?interval.acting, since = interval.since, "active");
    if interval.is_remapped() {
        tokio::spawn(crate::backfill::run(osd.clone(), pg.clone(), generation));
    }
    Ok(())
}

impl Osd {
    /// A request to another OSD (or this one, answered locally), with the peer timeout.
    pub async fn call_osd(self: &Arc<Self>, id: OsdId, msg: Message) -> Result<Message> {
        if id == self.id {
            // This OSD asking itself: nothing to authenticate.
            let me = cairn_proto::Session::new(
                std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                self.entity(),
                cairn_proto::AuthMethod::None,
            );
            return crate::service::local(self, &me, msg).await;
        }
        let addr = self.osd_addr(id)?;
        match self.peers.call(&addr, msg, self.cfg.peer_timeout).await? {
            Message::Error(e) => Err(e),
            reply => Ok(reply),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_proto::ReqId;

    fn entry(epoch: u64, seq: u64, name: &str) -> LogEntry {
        LogEntry {
            version: Version { epoch, seq },
            oid: ObjectId::new(name),
            deleted: false,
            reqid: ReqId { client: 1, tid: seq },
        }
    }

    fn info(log: &[LogEntry], tail: Version) -> PgInfo {
        PgInfo { last_update: log.last().map_or(tail, |e| e.version), log_tail: tail, ..Default::default() }
    }

    #[test]
    fn prefix_member_gets_newer_objects() {
        let auth = vec![entry(5, 1, "a"), entry(5, 2, "b"), entry(7, 3, "c")];
        let m = auth[..1].to_vec();
        let plan = plan_member(&info(&m, Version::default()), &m, &info(&auth, Version::default()), &auth);
        assert_eq!(plan, MemberPlan::Objects(["b", "c"].into_iter().map(ObjectId::new).collect()));
    }

    #[test]
    fn divergent_entries_are_rolled_back() {
        let auth = vec![entry(5, 1, "a"), entry(7, 2, "c")];
        let m = vec![entry(5, 1, "a"), entry(5, 2, "x")];
        let plan = plan_member(&info(&m, Version::default()), &m, &info(&auth, Version::default()), &auth);
        assert_eq!(plan, MemberPlan::Objects(["c", "x"].into_iter().map(ObjectId::new).collect()));
    }

    #[test]
    fn empty_member_backfills_when_auth_log_is_trimmed() {
        let auth = vec![entry(5, 10, "a")];
        let tail = Version { epoch: 5, seq: 9 };
        let plan = plan_member(&PgInfo::default(), &[], &info(&auth, tail), &auth);
        assert_eq!(plan, MemberPlan::Backfill);
        let same = plan_member(&info(&auth, tail), &auth, &info(&auth, tail), &auth);
        assert_eq!(same, MemberPlan::InSync);
    }

    /// Four OSDs (one host each) and pool `data` (size 3, min_size 2).
    fn cluster() -> ClusterMap {
        use cairn_types::{MapCommand, MapSettings};
        let mut map = ClusterMap::default();
        let init = MapCommand::Init {
            fsid: "f".into(),
            mons: vec![],
            settings: MapSettings::default(),
            now_secs: 1,
        };
        map.apply(&init).unwrap();
        for id in 0..4 {
            let addr = format!("127.0.0.1:{id}");
            let boot = MapCommand::OsdBoot {
                id,
                addr,
                host: format!("h{id}"),
                capacity_bytes: 1 << 40,
                now_secs: 2,
            };
            map.apply(&boot).unwrap();
        }
        let create = MapCommand::PoolCreate {
            name: "data".into(),
            pg_num: Some(1),
            pgp_num: None,
            size: None,
            now_secs: 3,
        };
        map.apply(&create).unwrap();
        map
    }

    fn answer(log: &[LogEntry]) -> Answer {
        Answer { info: info(log, Version::default()), log: log.to_vec() }
    }

    #[test]
    fn a_new_member_is_filled_in_the_background_by_the_last_active_set() {
        let mut map = cluster();
        let pool = map.pools[&1].clone();
        let full = vec![entry(5, 1, "a"), entry(5, 2, "b")];
        let last_active = PgInterval { since: 5, acting: vec![3, 0, 1], up: vec![3, 0, 1] };
        let now = PgInterval { since: 9, acting: vec![0, 1, 2], up: vec![0, 1, 2] };
        let mut answers: BTreeMap<OsdId, Answer> = (0..4).map(|m| (m, answer(&full))).collect();
        answers.insert(2, answer(&[]));
        let auth = answer(&full);
        assert!(needs_full_copy(&answers[&2], &auth), "an empty member of a PG with data");
        assert!(!needs_full_copy(&answers[&0], &auth));
        assert!(!needs_full_copy(&answer(&[]), &answer(&[])), "a PG without data needs nothing");
        let temp = temp_acting(&map, &pool, &now, Some(&last_active), &answers, &auth);
        assert_eq!(temp, Some(vec![3, 0, 1]), "the last active set, its primary first");

        // Already acting: copy during peering rather than ask again.
        assert_eq!(temp_acting(&map, &pool, &last_active, Some(&last_active), &answers, &auth), None);
        // Never active: nothing to keep in place.
        assert_eq!(temp_acting(&map, &pool, &now, None, &answers, &auth), None);

        // A member of the last active set that is down (or did not answer) is left out...
        map.apply(&cairn_types::MapCommand::OsdDown { ids: vec![3], now_secs: 4 }).unwrap();
        let temp = temp_acting(&map, &pool, &now, Some(&last_active), &answers, &auth);
        assert_eq!(temp, Some(vec![0, 1]));
        // ...and fewer than min_size left means copying during peering.
        answers.remove(&1);
        assert_eq!(temp_acting(&map, &pool, &now, Some(&last_active), &answers, &auth), None);
    }
}
