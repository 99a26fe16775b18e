//! Failure detection: every OSD pings every other up OSD; one silent for longer than
//! `osd heartbeat grace`, or refusing connections (its process is gone), is reported to the mons,
//! which mark it down. Never per PG.

use crate::osd::Osd;
use cairn_proto::Message;
use cairn_types::{errno, OsdId};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

pub async fn run(osd: Arc<Osd>) {
    let mut last_ok: HashMap<OsdId, Instant> = HashMap::new();
    let mut ticker = tokio::time::interval(osd.cfg.heartbeat_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let map = osd.map();
        let peers: Vec<(OsdId, String, u64)> = map
            .osds
            .values()
            .filter(|o| o.up && o.id != osd.id)
            .map(|o| (o.id, o.addr.clone(), o.up_from))
            .collect();
        last_ok.retain(|id, _| peers.iter().any(|(p, ..)| p == id));
        let mut pings = Vec::new();
        for (id, addr, up_from) in peers {
            let osd2 = osd.clone();
            pings.push(tokio::spawn(async move {
                let msg = Message::Ping { from: osd2.id, epoch: osd2.map().epoch };
                let sent = Instant::now();
                let r = osd2.hb_peers.call(&addr, msg, osd2.cfg.heartbeat_interval).await;
                if let Ok(Message::Pong { epoch }) = &r {
                    osd2.leases.record_held(id, *epoch, sent);
                }
                (id, up_from, r)
            }));
        }
        let now = Instant::now();
        for p in pings {
            let Ok((id, up_from, result)) = p.await else { continue };
            let since = *last_ok.entry(id).or_insert(now);
            let (failed, immediate) = match result {
                Ok(_) => {
                    last_ok.insert(id, now);
                    (false, false)
                }
                Err(e) if e.errno == errno::ECONNREFUSED => {
                    osd.leases.revoke(id);
                    (true, true)
                }
                Err(_) => (now.duration_since(since) > osd.cfg.heartbeat_grace, false),
            };
            if failed {
                tracing::warn!(osd = id, immediate, "reporting failed peer");
                let report =
                    Message::OsdFailure { target: id, reporter: osd.id, target_up_from: up_from, immediate };
                let monc = osd.monc.clone();
                tokio::spawn(async move {
                    let _ = monc.call_leader(report, Duration::from_secs(5)).await;
                });
            }
        }
    }
}
