//! Command tests on a synthetic cluster: three mons, three OSDs on three hosts (10 GiB each,
//! 1 GiB used), pool `volumes` (8 PGs, size 3, application rbd) whose PGs are all reported
//! `active+clean` with 2 objects of 1 KiB each.

mod health;
mod reads;
mod roundtrip;
mod writes;

#[path = "../../../../cairn-cli/src/moncmd.rs"]
mod moncmd;

use super::*;
use cairn_types::stats::{OsdStat, PgStat};
use cairn_types::{errno, ClusterMap, MapCommand, MapSettings, MonInfo, PgId, Version};
use serde_json::{json, Value};

pub const T0: u64 = 1_622_541_600; // 2021-06-01T10:00:00Z
pub const GIB: u64 = 1 << 30;
pub const FSID: &str = "5f8ac5ba-0f1f-4a5b-9a3b-6a8a9c2f4d11";

pub struct Fixture {
    pub map: ClusterMap,
    pub pg_stats: BTreeMap<PgId, PgStat>,
    pub osd_stats: BTreeMap<OsdId, OsdStat>,
    pub quorum: QuorumInfo,
}

fn mons() -> Vec<MonInfo> {
    ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, name)| MonInfo {
            node_id: i as u64 + 1,
            name: name.to_string(),
            addr: format!("127.0.0.1:{}", 3300 + i),
        })
        .collect()
}

impl Fixture {
    /// The cluster described in the module docs.
    pub fn new() -> Self {
        let mut f = Fixture::bare();
        f.apply(MapCommand::PoolCreate {
            name: "volumes".into(),
            pg_num: Some(8),
            pgp_num: None,
            size: None,
            now_secs: T0,
        });
        f.apply(MapCommand::PoolApplicationEnable {
            name: "volumes".into(),
            app: "rbd".into(),
            now_secs: T0,
        });
        f.report_all("active+clean");
        f
    }

    /// Mons and OSDs, no pools.
    pub fn bare() -> Self {
        let mut map = ClusterMap::default();
        let init = MapCommand::Init {
            fsid: FSID.into(),
            mons: mons(),
            settings: MapSettings::default(),
            now_secs: T0,
        };
        map.apply(&init).expect("init");
        let mut osd_stats = BTreeMap::new();
        for id in 0..3u32 {
            let boot = MapCommand::OsdBoot {
                id,
                addr: format!("127.0.0.1:{}", 6800 + id),
                host: format!("node{}", id + 1),
                capacity_bytes: 10 * GIB,
                now_secs: T0,
            };
            map.apply(&boot).expect("boot");
            let stat =
                OsdStat { id, total_bytes: 10 * GIB, used_bytes: GIB, avail_bytes: 9 * GIB, num_pgs: 8 };
            osd_stats.insert(id, stat);
        }
        let quorum =
            QuorumInfo { leader: Some(1), term: 5, members: mons(), in_quorum: vec![1, 2, 3], self_id: 1 };
        Fixture { map, pg_stats: BTreeMap::new(), osd_stats, quorum }
    }

    pub fn apply(&mut self, cmd: MapCommand) -> String {
        self.map.apply(&cmd).unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
    }

    /// Every PG reports `state` with its current acting set, 2 objects, 2 KiB.
    pub fn report_all(&mut self, state: &str) {
        let pgs: Vec<PgId> = self.map.intervals.keys().copied().collect();
        for pg in pgs {
            self.report(pg, state, 0);
        }
    }

    pub fn report(&mut self, pg: PgId, state: &str, missing: u64) {
        let interval = self.map.interval(pg).cloned().expect("pg exists");
        let stat = PgStat {
            pg,
            state: state.into(),
            acting: interval.acting.clone(),
            interval_since: interval.since,
            last_update: Version { epoch: interval.since, seq: 2 },
            num_objects: 2,
            num_bytes: 2048,
            num_objects_missing: missing,
            log_size: 2,
            reported_epoch: self.map.epoch,
        };
        self.pg_stats.insert(pg, stat);
    }

    pub fn ctx(&self) -> CommandContext<'_> {
        CommandContext {
            map: &self.map,
            pg_stats: &self.pg_stats,
            osd_stats: &self.osd_stats,
            quorum: &self.quorum,
            now_secs: T0 + 3600,
        }
    }

    pub fn plan(&self, cmd: Value) -> Result<Plan> {
        plan(&cmd, &self.ctx())
    }

    /// The reply to a read; panics on a proposal or an error.
    pub fn reply(&self, cmd: Value) -> CommandOutput {
        match self.plan(cmd.clone()) {
            Ok(Plan::Reply(out)) => out,
            other => panic!("{cmd}: expected a reply, got {other:?}"),
        }
    }

    pub fn text(&self, cmd: Value) -> String {
        String::from_utf8(self.reply(cmd).data).expect("utf-8")
    }

    pub fn json(&self, cmd: Value) -> Value {
        let data = self.reply(cmd.clone()).data;
        serde_json::from_slice(&data).unwrap_or_else(|e| panic!("{cmd}: {e}"))
    }

    /// The error a command is refused with.
    pub fn error(&self, cmd: Value) -> Error {
        match self.plan(cmd.clone()) {
            Err(e) => e,
            Ok(p) => panic!("{cmd}: expected an error, got {p:?}"),
        }
    }

    /// Runs a command to completion as the monitor would: a proposal is applied to the map.
    /// Returns the status string.
    pub fn exec(&mut self, cmd: Value) -> Result<String> {
        match self.plan(cmd)? {
            Plan::Reply(out) => Ok(out.status),
            Plan::Propose(change) => {
                let applied = self.map.apply(&change)?;
                Ok(applied_status(&change, &applied))
            }
        }
    }
}

/// Whitespace-separated words of the first line containing `needle`.
pub fn words_of_line(text: &str, needle: &str) -> Vec<String> {
    let line = text
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"));
    line.split_whitespace().map(String::from).collect()
}

#[test]
fn unknown_and_malformed_commands_are_einval() {
    let f = Fixture::new();
    let e = f.error(json!({"prefix": "osd frobnicate"}));
    assert_eq!(e.errno, errno::EINVAL);
    assert!(e.message.contains("unrecognized command"), "{}", e.message);
    let e = f.error(json!(["status"]));
    assert_eq!(e.errno, errno::EINVAL);
    let e = f.error(json!({"format": "json"}));
    assert_eq!((e.errno, e.message.as_str()), (errno::EINVAL, "bad or missing field 'prefix'"));
}
