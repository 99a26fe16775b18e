//! Mon Raft group tests over the in-memory transport, with short timings (heartbeat 50 ms,
//! election 150–300 ms). Every wait polls the map watch or the metrics with a deadline.

use super::wire::{self, RaftRpc, RaftRpcReply};
use super::*;
use cairn_types::{MapSettings, MonInfo};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, SnapshotMeta, Vote};
use std::time::Instant;
use tempfile::TempDir;

const WAIT: Duration = Duration::from_secs(10);

fn fast() -> RaftTiming {
    RaftTiming { heartbeat_ms: 50, election_timeout_min_ms: 150, election_timeout_max_ms: 300 }
}

fn members(n: u64) -> BTreeMap<NodeId, String> {
    (1..=n).map(|i| (i, format!("10.0.0.{i}:6789"))).collect()
}

fn init_cmd(n: u64) -> MapCommand {
    let mons = members(n)
        .into_iter()
        .map(|(node_id, addr)| MonInfo {
            node_id,
            name: format!("{}", (b'a' + node_id as u8 - 1) as char),
            addr,
        })
        .collect();
    MapCommand::Init {
        fsid: "5a3c1e1e-0000-4000-8000-000000000001".into(),
        mons,
        settings: MapSettings::default(),
        now_secs: 1,
    }
}

fn pool_create(name: &str) -> MapCommand {
    MapCommand::PoolCreate { name: name.into(), pg_num: Some(8), pgp_num: None, size: Some(1), now_secs: 2 }
}

/// Polls `cond` every 10 ms until it holds; panics after `timeout`.
async fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_epoch(mon: &MonRaft, epoch: u64) -> Arc<ClusterMap> {
    let mut rx = mon.map();
    let res = tokio::time::timeout(WAIT, rx.wait_for(|m| m.epoch >= epoch)).await;
    match res {
        Ok(Ok(map)) => Arc::clone(&map),
        _ => panic!("mon {} never reached epoch {epoch}", mon.node_id()),
    }
}

struct Cluster {
    net: Arc<MemNetwork>,
    members: BTreeMap<NodeId, String>,
    dirs: BTreeMap<NodeId, TempDir>,
    nodes: BTreeMap<NodeId, MonRaft>,
}

impl Cluster {
    async fn start(n: u64) -> Cluster {
        let mut c = Cluster {
            net: MemNetwork::new(),
            members: members(n),
            dirs: BTreeMap::new(),
            nodes: BTreeMap::new(),
        };
        for id in 1..=n {
            c.dirs.insert(id, tempfile::tempdir().expect("tempdir"));
            c.start_node(id).await;
        }
        for node in c.nodes.values() {
            node.bootstrap_if_fresh().await.expect("bootstrap");
        }
        c
    }

    /// Opens (or reopens) node `id` from its directory and connects it.
    async fn start_node(&mut self, id: NodeId) -> MonRaft {
        let dir = self.dirs[&id].path();
        let mon = MonRaft::open(id, dir, self.members.clone(), self.net.transport(id), fast())
            .await
            .expect("open mon");
        self.net.register(id, mon.clone());
        self.net.heal(id);
        self.nodes.insert(id, mon.clone());
        mon
    }

    /// Crash-stops node `id`: no message reaches it or leaves it, and its Raft stops.
    async fn kill(&mut self, id: NodeId) {
        self.net.isolate(id);
        self.net.unregister(id);
        if let Some(mon) = self.nodes.remove(&id) {
            mon.shutdown().await;
        }
    }

    fn node(&self, id: NodeId) -> &MonRaft {
        &self.nodes[&id]
    }

    /// Waits until one live node leads and every live node knows it.
    async fn leader(&self) -> NodeId {
        let mut found = None;
        wait_until("an agreed leader", WAIT, || {
            let leader = self.nodes.values().find(|n| n.is_leader()).map(|n| n.node_id());
            let agreed =
                leader.is_some_and(|l| self.nodes.values().all(|n| n.leader().map(|(id, _)| id) == Some(l)));
            if agreed {
                found = leader;
            }
            agreed
        })
        .await;
        found.expect("leader")
    }

    /// Proposes on whoever leads, following NotLeader answers.
    async fn propose(&self, cmd: MapCommand) -> ApplyOutcome {
        let deadline = Instant::now() + WAIT;
        loop {
            let target = self.nodes.values().find(|n| n.is_leader()).or(self.nodes.values().next());
            match target.expect("a live node").propose(cmd.clone()).await {
                Ok(outcome) => return outcome,
                Err(ProposeError::NotLeader { .. }) => {}
                Err(e) => panic!("proposal failed: {e}"),
            }
            assert!(Instant::now() < deadline, "no leader accepted the proposal");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn shutdown(mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            self.kill(id).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_mon_bootstraps_applies_and_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = MemNetwork::new();
    let open = || MonRaft::open(1, dir.path(), members(1), net.transport(1), fast());

    let mon = open().await.expect("open");
    net.register(1, mon.clone());
    mon.bootstrap_if_fresh().await.expect("bootstrap");
    mon.bootstrap_if_fresh().await.expect("bootstrap is idempotent");
    wait_until("single mon leads", WAIT, || mon.is_leader()).await;
    assert_eq!(mon.map().borrow().epoch, 0);

    assert_eq!(mon.propose(init_cmd(1)).await, Ok(Ok("initialized".to_string())));
    assert_eq!(wait_epoch(&mon, 1).await.fsid, "5a3c1e1e-0000-4000-8000-000000000001");
    assert_eq!(mon.propose(pool_create("rbd")).await, Ok(Ok("pool 'rbd' created".to_string())));
    let map = wait_epoch(&mon, 2).await;
    assert!(map.pool_by_name("rbd").is_some());

    // Refused by ClusterMap::apply: committed, answered with the errno, map unchanged.
    let refused = mon.propose(pool_create("rbd")).await.expect("committed");
    assert_eq!(refused.map_err(|e| e.errno), Err(errno::EEXIST));
    assert_eq!(mon.map().borrow().epoch, 2);

    mon.read_barrier().await.expect("read barrier on the leader");
    let status = mon.status();
    assert_eq!(status.state, MonState::Leader);
    assert_eq!((status.leader, status.voters.clone()), (Some(1), vec![1]));
    assert_eq!(status.heard_from, Some(vec![1]));
    assert_eq!(mon.leader(), Some((1, "10.0.0.1:6789".to_string())));

    mon.shutdown().await;
    net.unregister(1);
    match mon.propose(pool_create("late")).await {
        Err(ProposeError::Other(e)) => assert_eq!(e.errno, errno::ENOTCONN),
        other => panic!("proposal on a stopped mon: {other:?}"),
    }

    // Restart: the applied map is back before any Raft traffic.
    let mon = open().await.expect("reopen");
    net.register(1, mon.clone());
    {
        let map = mon.map().borrow().clone();
        assert_eq!(map.epoch, 2);
        assert!(map.pool_by_name("rbd").is_some());
    }
    mon.bootstrap_if_fresh().await.expect("bootstrap after restart is a no-op");
    wait_until("restarted mon leads", WAIT, || mon.is_leader()).await;
    assert_eq!(mon.propose(pool_create("volumes")).await, Ok(Ok("pool 'volumes' created".to_string())));
    wait_epoch(&mon, 3).await;

    // Snapshot + purge, then restart again: state comes from the applied record, log is short.
    let upto = mon.compact().await.expect("compact");
    assert!(upto.is_some());
    wait_until("log purged", WAIT, || mon.status().purged_index >= upto).await;
    mon.shutdown().await;
    net.unregister(1);

    let mon = open().await.expect("reopen after compact");
    net.register(1, mon.clone());
    assert_eq!(mon.map().borrow().epoch, 3);
    wait_until("snapshot loaded", WAIT, || mon.status().snapshot_index >= upto).await;
    wait_until("mon leads after compact", WAIT, || mon.is_leader()).await;
    assert_eq!(mon.propose(pool_create("images")).await, Ok(Ok("pool 'images' created".to_string())));
    let map = wait_epoch(&mon, 4).await;
    let names: Vec<&str> = map.pools.values().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["rbd", "volumes", "images"]);
    mon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_reapplies_committed_but_unapplied_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = MemNetwork::new();
    let open = || MonRaft::open(1, dir.path(), members(1), net.transport(1), fast());

    let mon = open().await.expect("open");
    mon.bootstrap_if_fresh().await.expect("bootstrap");
    wait_until("single mon leads", WAIT, || mon.is_leader()).await;
    assert_eq!(mon.propose(init_cmd(1)).await, Ok(Ok("initialized".to_string())));
    assert_eq!(mon.propose(pool_create("rbd")).await, Ok(Ok("pool 'rbd' created".to_string())));
    let before = wait_epoch(&mon, 2).await;
    mon.shutdown().await;

    super::store::forget_applied_state(dir.path()).expect("drop applied state");

    // Re-applied from the log up to the saved commit index while opening, before any election.
    let mon = open().await.expect("reopen");
    assert_eq!(*mon.map().borrow().clone(), *before);
    mon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_mons_fail_over_and_catch_up() {
    let mut c = Cluster::start(3).await;
    let leader = c.leader().await;
    assert_eq!(leader, 1, "the lowest id bootstraps and should win the first election");

    assert_eq!(c.node(leader).propose(init_cmd(3)).await, Ok(Ok("initialized".to_string())));
    assert_eq!(c.node(leader).propose(pool_create("rbd")).await, Ok(Ok("pool 'rbd' created".to_string())));

    // A follower refuses and names the leader.
    let follower = *c.nodes.keys().find(|id| **id != leader).expect("follower");
    assert_eq!(
        c.node(follower).propose(pool_create("x")).await,
        Err(ProposeError::NotLeader {
            leader_id: Some(leader),
            leader_addr: Some(format!("10.0.0.{leader}:6789"))
        })
    );
    assert!(matches!(c.node(follower).read_barrier().await, Err(ProposeError::NotLeader { .. })));

    let maps: Vec<Arc<ClusterMap>> = {
        let mut maps = Vec::new();
        for node in c.nodes.values() {
            maps.push(wait_epoch(node, 2).await);
        }
        maps
    };
    assert!(maps.iter().all(|m| **m == *maps[0]), "maps converge");
    wait_until("leader hears from all voters", WAIT, || {
        c.node(leader).status().heard_from == Some(vec![1, 2, 3])
    })
    .await;
    assert_eq!(c.node(follower).status().heard_from, None);

    // Kill the leader: the other two elect a new one quickly and keep accepting proposals.
    c.kill(leader).await;
    let killed_at = Instant::now();
    let new_leader = c.leader().await;
    let failover = killed_at.elapsed();
    assert_ne!(new_leader, leader);
    assert!(failover < Duration::from_secs(5), "fail-over took {failover:?}");
    assert_eq!(c.propose(pool_create("volumes")).await, Ok("pool 'volumes' created".to_string()));
    for node in c.nodes.values() {
        wait_epoch(node, 3).await;
    }
    c.node(new_leader).read_barrier().await.expect("read barrier with 2 of 3");
    wait_until("status shows the dead mon out of quorum", WAIT, || {
        let heard = c.node(new_leader).status().heard_from.unwrap_or_default();
        heard.len() == 2 && !heard.contains(&leader)
    })
    .await;

    // Restart the killed mon from its directory: it comes back with its old map, then catches up.
    let back = c.start_node(leader).await;
    assert_eq!(back.map().borrow().epoch, 2);
    let map = wait_epoch(&back, 3).await;
    assert_eq!(*map, **c.node(new_leader).map().borrow());
    wait_until("restarted mon follows the new leader", WAIT, || {
        back.leader().map(|(id, _)| id) == Some(new_leader) && !back.is_leader()
    })
    .await;
    assert_eq!(c.propose(pool_create("images")).await, Ok("pool 'images' created".to_string()));
    for node in c.nodes.values() {
        wait_epoch(node, 4).await;
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_mon_catches_up_by_snapshot() {
    let mut c = Cluster::start(3).await;
    let leader = c.leader().await;
    assert_eq!(c.propose(init_cmd(3)).await, Ok("initialized".to_string()));
    let lagging = *c.nodes.keys().find(|id| **id != leader).expect("follower");
    wait_epoch(c.node(lagging), 1).await;
    c.kill(lagging).await;

    for i in 0..5 {
        let name = format!("pool{i}");
        assert_eq!(c.propose(pool_create(&name)).await, Ok(format!("pool '{name}' created")));
    }
    let leader = c.leader().await;
    let leader_node = c.node(leader).clone();
    wait_epoch(&leader_node, 6).await;
    let upto = leader_node.compact().await.expect("compact");
    assert!(upto >= Some(7), "snapshot covers every pool: {upto:?}");
    wait_until("leader purged its log", WAIT, || leader_node.status().purged_index >= upto).await;

    // The lagging mon's log ends before the leader's first entry: only a snapshot can help.
    let back = c.start_node(lagging).await;
    assert_eq!(back.map().borrow().epoch, 1);
    let map = wait_epoch(&back, 6).await;
    assert_eq!(*map, **leader_node.map().borrow());
    // Caught up by installing a snapshot (openraft's metrics trail the map watch a little).
    wait_until("snapshot installed", WAIT, || back.status().snapshot_index.is_some()).await;

    // Its log continues after the snapshot.
    assert_eq!(c.propose(pool_create("after")).await, Ok("pool 'after' created".to_string()));
    wait_epoch(&back, 7).await;

    // And the installed state survives its own restart.
    c.kill(lagging).await;
    let back = c.start_node(lagging).await;
    assert_eq!(back.map().borrow().epoch, 7);
    c.shutdown().await;
}

fn rejected(reply: &[u8]) -> bool {
    matches!(wire::decode_reply(reply), Ok(RaftRpcReply::Rejected(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_rpcs_get_error_replies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let net = MemNetwork::new();
    let mon = MonRaft::open(1, dir.path(), members(1), net.transport(1), fast()).await.expect("open");
    mon.bootstrap_if_fresh().await.expect("bootstrap");

    // Undecodable input.
    let mut noise = Vec::new();
    let mut x: u32 = 0x2545_f491;
    for _ in 0..4096 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        noise.push(x as u8);
    }
    let mut versioned_noise = vec![WIRE_VERSION];
    versioned_noise.extend_from_slice(&noise);
    let huge_len = [WIRE_VERSION, 0, 0xff, 0xff, 0xff, 0xff, 0x0f];
    for input in [
        &[][..],
        &[0xff],
        &[WIRE_VERSION],
        &[WIRE_VERSION, 200, 1, 2, 3],
        &noise,
        &versioned_noise,
        &huge_len,
    ] {
        assert!(rejected(&mon.handle_rpc(input).await), "input {:?}", &input[..input.len().min(8)]);
    }
    assert!(rejected(&mon.handle_rpc(&vec![WIRE_VERSION; MAX_RPC_BYTES + 1]).await));

    // A valid request, truncated.
    let vote = RaftRpc::Vote(VoteRequest { vote: Vote::new(1, 2), last_log_id: None });
    let valid = wire::encode_rpc(&vote).expect("encode");
    assert!(rejected(&mon.handle_rpc(&valid[..valid.len() - 1]).await));

    // Decodable but inconsistent: entries not following prev_log_id, a far snapshot offset.
    let gap = RaftRpc::AppendEntries(AppendEntriesRequest {
        vote: Vote::new_committed(5, 2),
        prev_log_id: None,
        leader_commit: None,
        entries: vec![Entry {
            log_id: LogId::new(CommittedLeaderId::new(5, 2), 7),
            payload: EntryPayload::Blank,
        }],
    });
    assert!(rejected(&mon.handle_rpc(&wire::encode_rpc(&gap).expect("encode")).await));
    let far = RaftRpc::InstallSnapshot(InstallSnapshotRequest {
        vote: Vote::new_committed(5, 2),
        meta: SnapshotMeta::default(),
        offset: u64::MAX - 2,
        data: vec![1, 2, 3, 4],
        done: false,
    });
    assert!(rejected(&mon.handle_rpc(&wire::encode_rpc(&far).expect("encode")).await));

    // A well-formed vote gets a real answer (refused: a stale candidate).
    match wire::decode_reply(&mon.handle_rpc(&valid).await) {
        Ok(RaftRpcReply::Vote(Ok(resp))) => assert!(!resp.vote_granted),
        other => panic!("vote reply: {other:?}"),
    }

    // The mon is unharmed.
    wait_until("mon leads", WAIT, || mon.is_leader()).await;
    assert_eq!(mon.propose(init_cmd(1)).await, Ok(Ok("initialized".to_string())));
    mon.shutdown().await;
}
