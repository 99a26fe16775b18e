//! The image model test against a cluster in this process: one mon and three OSDs on in-memory
//! stores, over loopback TCP, without authentication. Faster than real daemons, so it runs
//! thousands of steps (1,000 per layout by default; `CAIRN_RBD_MODEL_STEPS`,
//! `CAIRN_RBD_MODEL_SEED`).

mod model;

use cairn_client::{Credentials, Rados};
use cairn_mon::raft::{MonRaft, RaftTiming};
use cairn_mon::service::{Mon, MonConfig, TcpRaftTransport};
use cairn_osd::OsdConfig;
use cairn_store::MemStore;
use cairn_types::placement::FailureDomain;
use cairn_types::{MapSettings, MonInfo};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const FSID: &str = "00000000-0000-4000-8000-00000000ca1e";

/// Starts 1 mon + 3 OSDs (each its own "host") and returns a client.
async fn cluster(dir: &std::path::Path) -> Rados {
    let net = cairn_proto::net::tcp();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mon_addr = listener.local_addr().unwrap().to_string();
    let mons = vec![MonInfo { node_id: 1, name: "a".into(), addr: mon_addr.clone() }];
    let cfg = MonConfig {
        node_id: 1,
        fsid: FSID.into(),
        mons: mons.clone(),
        settings: MapSettings {
            default_failure_domain: FailureDomain::Host,
            default_size: 3,
            default_min_size: 2,
            default_pg_num: 8,
            down_out_interval_secs: 600,
            allow_pool_delete: true,
        },
        min_down_reporters: 2,
        osd_report_timeout: Duration::from_secs(900),
        auth: cairn_mon::auth::MonAuthConfig::none(),
    };
    let timing = RaftTiming { heartbeat_ms: 100, election_timeout_min_ms: 300, election_timeout_max_ms: 600 };
    let peers: BTreeMap<u64, String> = mons.iter().map(|m| (m.node_id, m.addr.clone())).collect();
    let transport = TcpRaftTransport::with_network(
        net.clone(),
        cairn_proto::ClientAuth::none("mon.".parse().unwrap(), net.clone()),
    );
    let raft = MonRaft::open(1, &dir.join("mon.a"), peers, transport, timing).await.unwrap();
    let mon = Mon::new(cfg, raft.clone());
    tokio::spawn(cairn_proto::rpc::serve(listener, mon.clone(), mon.clone()));
    raft.bootstrap_if_fresh().await.unwrap();
    tokio::spawn(mon.tick());
    for id in 0..3u32 {
        let mut osd = OsdConfig::new(id, FSID, vec![mon_addr.clone()]);
        osd.host = format!("host{id}");
        osd.capacity_bytes = 10 << 30;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let net = net.clone();
        tokio::spawn(async move { cairn_osd::run(osd, Arc::new(MemStore::new()), listener, net).await });
    }
    let creds = Credentials::none("client.admin".parse().unwrap());
    let rados = Rados::connect(vec![mon_addr], creds, Duration::from_secs(60), Duration::from_secs(30))
        .await
        .unwrap();
    let reply = rados
        .mon_command_ok(&serde_json::json!({"prefix": "osd pool create", "pool": "rbd", "pg_num": 8}))
        .await;
    reply.unwrap();
    // Every PG active before the model starts (its ops would otherwise just wait).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let map = rados.map();
        let up = map.osds.values().filter(|o| o.up).count();
        // The reply to `osd pool create` can arrive before this client has the map with the pool.
        let active = map
            .pool_named("rbd")
            .is_ok_and(|pool| pool.pgs().all(|pg| map.interval(pg).is_some_and(|i| i.acting.len() == 3)));
        if up == 3 && active {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "in-process cluster did not come up");
        rados.wait_for_newer_map(map.epoch, Duration::from_millis(500)).await;
    }
    rados
}

fn run(order: u8, stripe_unit: u64, stripe_count: u64) {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let rados = cluster(dir.path()).await;
        let io = rados.ioctx("rbd").unwrap();
        model::run_model(&io, order, stripe_unit, stripe_count, model::steps(1000), model::seed()).await;
    });
    rt.shutdown_timeout(Duration::from_secs(1));
}

#[test]
fn inprocess_model_with_small_objects() {
    run(16, 0, 0);
}

#[test]
fn inprocess_model_with_fancy_striping() {
    run(16, 16 << 10, 3);
}
