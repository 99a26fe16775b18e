//! Request dispatch: what an OSD answers on its port.

use crate::osd::Osd;
use cairn_proto::{Handler, Message, Responder, Session};
use cairn_types::{Error, Result};
use std::sync::Arc;

impl Handler for Osd {
    fn handle(self: &Arc<Self>, session: &Arc<Session>, msg: Message, responder: Responder) {
        match msg {
            // Must be submitted in arrival order: handled on the reading task.
            Message::RepOp { pg, since, prev, entry, mtime_ns, mutations } => {
                if let Err(e) = self.require_osd(session, "RepOp") {
                    return responder.reply(Message::Error(e));
                }
                let op = crate::replica::RepOp { pg, since, prev, entry, mtime_ns, mutations };
                self.rep_op(op, responder)
            }
            Message::Ping { from, .. } => {
                if let Err(e) = self.require_osd(session, "Ping") {
                    return responder.reply(Message::Error(e));
                }
                let map = self.map();
                // No lease for an OSD this one knows is down: its PGs have moved on.
                if map.osds.get(&from).is_some_and(|o| o.up) {
                    self.leases.grant(from, map.epoch);
                }
                responder.reply(Message::Pong { epoch: map.epoch })
            }
            Message::OsdOp { pg, oid, epoch, reqid, ops, snapc, snap } => {
                let caps = match self.session_caps(session) {
                    Ok(c) => c.map(|c| (c, session.entity.clone())),
                    Err(e) => return responder.reply(op_error(e, self.map().epoch)),
                };
                let osd = self.clone();
                tokio::spawn(async move {
                    let op = crate::primary::ClientOp { pg, oid, epoch, reqid, ops, snapc, snap, caps };
                    let r = osd.client_op(op).await;
                    let reply = match r.result {
                        Ok((outs, version)) => Message::OsdOpReply {
                            result: 0,
                            message: String::new(),
                            outs,
                            version,
                            epoch: r.epoch,
                        },
                        Err(e) => op_error(e, r.epoch),
                    };
                    responder.reply(reply);
                });
            }
            other => {
                let osd = self.clone();
                let session = session.clone();
                tokio::spawn(async move {
                    let reply = local(&osd, &session, other).await.unwrap_or_else(Message::Error);
                    responder.reply(reply);
                });
            }
        }
    }
}

fn op_error(e: Error, epoch: u64) -> Message {
    Message::OsdOpReply {
        result: e.errno,
        message: e.message,
        outs: vec![],
        version: Default::default(),
        epoch,
    }
}

/// Answers a peering, recovery, listing or admin request.
pub async fn local(osd: &Arc<Osd>, session: &Session, msg: Message) -> Result<Message> {
    match &msg {
        Message::PgList { pg, epoch, .. } => {
            let map = osd.wait_for_epoch(*epoch, std::time::Duration::from_secs(2)).await;
            osd.check_list(session, &map, pg.pool)?;
        }
        Message::Admin { .. } => osd.check_admin(session)?,
        other => osd.require_osd(session, &message_name(other))?,
    }
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
