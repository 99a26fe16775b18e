//! Request dispatch: what an OSD answers on its port.

use crate::osd::Osd;
use cairn_proto::{Handler, Message, Responder};
use cairn_types::{Error, Result};
use std::net::SocketAddr;
use std::sync::Arc;

impl Handler for Osd {
    fn handle(self: &Arc<Self>, _peer: SocketAddr, msg: Message, responder: Responder) {
        match msg {
            // Must be submitted in arrival order: handled on the reading task.
            Message::RepOp { pg, since, prev, entry, mtime_ns, mutations } => {
                let op = crate::replica::RepOp { pg, since, prev, entry, mtime_ns, mutations };
                self.rep_op(op, responder)
            }
            Message::Ping { from, .. } => {
                let map = self.map();
                // No lease for an OSD this one knows is down: its PGs have moved on.
                if map.osds.get(&from).is_some_and(|o| o.up) {
                    self.leases.grant(from, map.epoch);
                }
                responder.reply(Message::Pong { epoch: map.epoch })
            }
            Message::OsdOp { pg, oid, epoch, reqid, ops, snapc, snap } => {
                let osd = self.clone();
                tokio::spawn(async move {
                    let op = crate::primary::ClientOp { pg, oid, epoch, reqid, ops, snapc, snap };
                    let r = osd.client_op(op).await;
                    let reply = match r.result {
                        Ok((outs, version)) => Message::OsdOpReply {
                            result: 0,
                            message: String::new(),
                            outs,
                            version,
                            epoch: r.epoch,
                        },
                        Err(e) => Message::OsdOpReply {
                            result: e.errno,
                            message: e.message,
                            outs: vec![],
                            version: Default::default(),
                            epoch: r.epoch,
                        },
                    };
                    responder.reply(reply);
                });
            }
            other => {
                let osd = self.clone();
                tokio::spawn(async move {
                    let reply = local(&osd, other).await.unwrap_or_else(Message::Error);
                    responder.reply(reply);
                });
            }
        }
    }
}

/// Answers a peering, recovery, listing or admin request.
pub async fn local(osd: &Arc<Osd>, msg: Message) -> Result<Message> {
    match msg {
        Message::PgQuery { pg, epoch, .. } => osd.pg_query(pg, epoch).await,
        Message::PgScan { pg, start_after, max, .. } => osd.pg_scan(pg, start_after, max),
        Message::PgPull { pg, oid, .. } => osd.pg_pull(pg, &oid),
        Message::PgPush { pg, since, objects } => osd.pg_push(pg, since, objects).await,
        Message::PgActivate { pg, since, log, log_tail, .. } => {
            osd.pg_activate(pg, since, log, log_tail).await
        }
        Message::PgList { pg, epoch, start_after, max } => osd.pg_list(pg, epoch, start_after, max).await,
        Message::PgBackfillLog { pg, since, log, log_tail } => {
            osd.pg_backfill_log(pg, since, log, log_tail).await
        }
        Message::PgReadsStopped { pg, since } => osd.pg_reads_stopped(pg, since).await,
        Message::Admin { command } => osd.admin(&command),
        other => Err(Error::einval(format!("osd cannot handle {}", message_name(&other)))),
    }
}

fn message_name(m: &Message) -> String {
    let s = format!("{m:?}");
    s.split([' ', '(', '{']).next().unwrap_or("message").to_string()
}
