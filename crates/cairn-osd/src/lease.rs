//! Read leases: why a primary that has not yet heard of a newer interval cannot serve a stale
//! read (docs/replication.md §Reads).
//!
//! Every heartbeat reply from member M to primary P grants P a lease: "until now + LEASE I will
//! not help a newer interval go active". P serves reads only while it holds an unexpired lease,
//! granted at a map epoch no newer than its own, from every other acting member. A member asked
//! to peer a newer interval first waits until the leases it granted to that PG's previous primary
//! have expired. Leases are measured on each side's monotonic clock from the ping's send time (P)
//! and its receipt (M), so P's view always ends first; P also keeps a safety margin for clock rate
//! differences. An OSD forgets its grants when it restarts, so after a restart it answers peering
//! queries only once a full lease has passed. A peer whose port refuses connections has no process
//! left to serve reads, so grants to it are dropped at once.

use cairn_types::{Epoch, OsdId};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Fraction of the lease the holder uses, leaving room for clocks that tick at slightly
/// different rates.
const HOLDER_SHARE: f64 = 0.9;

pub struct Leases {
    pub duration: Duration,
    /// What this OSD promised: grantee → (epoch at grant → expiry).
    granted: Mutex<HashMap<OsdId, BTreeMap<Epoch, Instant>>>,
    /// What this OSD holds: grantor → (grantor's epoch, expiry).
    held: Mutex<HashMap<OsdId, (Epoch, Instant)>>,
    started: Instant,
}

/// Why a lease does not cover a read now.
#[derive(Debug, PartialEq, Eq)]
pub enum NoLease {
    /// Missing or expired: wait for the next heartbeat.
    Lapsed,
    /// The grantor knows a newer map: catch up first (this OSD may no longer be primary).
    NewerEpoch(Epoch),
}

impl Leases {
    pub fn new(duration: Duration) -> Self {
        Leases {
            duration,
            granted: Mutex::new(HashMap::new()),
            held: Mutex::new(HashMap::new()),
            started: Instant::now(),
        }
    }

    /// Records a lease granted to `to` while this OSD is at `epoch`.
    pub fn grant(&self, to: OsdId, epoch: Epoch) {
        let now = Instant::now();
        let mut g = self.granted.lock().expect("lease lock");
        let per = g.entry(to).or_default();
        per.insert(epoch, now + self.duration);
        per.retain(|_, until| *until > now);
    }

    /// `to`'s process is gone (its port refuses connections): it serves no reads any more.
    pub fn revoke(&self, to: OsdId) {
        self.granted.lock().expect("lease lock").remove(&to);
    }

    /// Records a lease from `from`, which was at `epoch`, for a ping sent at `sent`.
    pub fn record_held(&self, from: OsdId, epoch: Epoch, sent: Instant) {
        let until = sent + self.duration.mul_f64(HOLDER_SHARE);
        self.held.lock().expect("lease lock").insert(from, (epoch, until));
    }

    /// Whether `from`'s lease covers a read by this OSD at map epoch `my_epoch`.
    pub fn check_held(&self, from: OsdId, my_epoch: Epoch) -> Result<(), NoLease> {
        match self.held.lock().expect("lease lock").get(&from) {
            Some((epoch, _)) if *epoch > my_epoch => Err(NoLease::NewerEpoch(*epoch)),
            Some((_, until)) if *until > Instant::now() => Ok(()),
            _ => Err(NoLease::Lapsed),
        }
    }

    /// Waits until every lease granted to `to` at an epoch before `epoch` has expired, and until
    /// a lease has passed since this OSD started (it may have granted leases before a restart and
    /// forgotten them).
    pub async fn wait_expired(&self, to: Option<OsdId>, epoch: Epoch) {
        let restart_gate = self.started + self.duration;
        let until = to
            .and_then(|to| {
                let g = self.granted.lock().expect("lease lock");
                g.get(&to).and_then(|per| per.range(..epoch).map(|(_, u)| *u).max())
            })
            .map_or(restart_gate, |u| u.max(restart_gate));
        tokio::time::sleep_until(until).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn holder_expires_before_grantor_and_newer_epochs_do_not_count() {
        let l = Leases::new(Duration::from_secs(4));
        let sent = Instant::now();
        l.grant(1, 10);
        l.record_held(2, 10, sent);
        assert_eq!(l.check_held(2, 10), Ok(()));
        assert_eq!(l.check_held(2, 9), Err(NoLease::NewerEpoch(10)));
        tokio::time::advance(Duration::from_millis(3700)).await;
        assert_eq!(l.check_held(2, 10), Err(NoLease::Lapsed), "holder's share ends first");
        // The grantor still honours its promise at this point.
        let start = Instant::now();
        l.wait_expired(Some(1), 11).await;
        assert!(start.elapsed() >= Duration::from_millis(299));
    }

    #[tokio::test(start_paused = true)]
    async fn grants_at_the_new_epoch_and_revoked_grants_do_not_delay_peering() {
        let l = Leases::new(Duration::from_secs(4));
        tokio::time::advance(Duration::from_secs(5)).await; // past the restart gate
        l.grant(1, 12);
        let start = Instant::now();
        l.wait_expired(Some(1), 12).await;
        assert_eq!(start.elapsed(), Duration::ZERO, "a grant at the new interval's epoch does not count");
        l.grant(1, 11);
        l.revoke(1);
        l.wait_expired(Some(1), 12).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
