//! The client's history and the per-object linearizability check.
//!
//! Every write stores a value no other write uses, so a read names the write it observed and the
//! check is the polynomial one for registers with unique values (Gibbons & Korach, "Testing
//! shared memories", 1997): group each write with the reads that returned its value (a
//! *cluster*); a linearization orders whole clusters, write first. Cluster `A` must precede
//! cluster `B` when some operation of `A` completed before some operation of `B` started; the
//! history is linearizable iff that relation has no cycle and no read completed before the write
//! it observed started. With `f` = earliest completion and `s` = latest start of a cluster,
//! `A → B` iff `f(A) < s(B)`, so a topological order is built greedily by always taking a
//! cluster whose `s` is at most the smallest `f` among the others — O(n²) for n clusters, a few
//! hundred per object here.
//!
//! A write that failed or timed out may or may not have taken effect (the OSD may still apply it,
//! and peering may keep it): it completes "never". If no read observed it, it is left out (it may
//! never have happened); if one did, it happened, somewhere after it started.
//! Times are the client host's simulated clock in microseconds; equal times count as concurrent.

use std::collections::BTreeMap;
use std::fmt;

/// What one operation did.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `write_full(value)`; `acked` is whether the client got success.
    Write { value: String, acked: bool },
    /// A successful read: `None` = the object did not exist.
    Read { value: Option<String> },
}

/// One client operation on one object.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Op {
    pub obj: usize,
    pub worker: usize,
    pub kind: Kind,
    pub start_us: u64,
    /// `None` for a write that did not succeed (and for nothing else: failed reads are dropped).
    pub end_us: Option<u64>,
    /// One of the reads after the run healed and quiesced.
    pub final_read: bool,
}

/// `worker` of the reads made after the run healed.
pub const FINAL_READER: usize = usize::MAX;

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let end = self.end_us.map_or("never".to_string(), ms);
        let who =
            if self.worker == FINAL_READER { "client".to_string() } else { format!("w{}", self.worker) };
        match &self.kind {
            Kind::Write { value, acked } => {
                let state = if *acked { "acked" } else { "NOT acked" };
                write!(f, "[{} .. {}] {who} write {value:?} ({state})", ms(self.start_us), end)
            }
            Kind::Read { value } => {
                let which = if self.final_read { "final read" } else { "read" };
                write!(f, "[{} .. {}] {who} {which} -> {value:?}", ms(self.start_us), end)
            }
        }
    }
}

fn ms(us: u64) -> String {
    format!("{:.3}s", us as f64 / 1e6)
}

/// Why one object's history is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// The final read (after healing) returned something older than an acknowledged write.
    LostWrite { obj: usize, detail: String },
    /// A read returned a value older than a write acknowledged before the read started (the
    /// read-lease gap of docs/replication.md shows up as this), or otherwise not linearizable.
    NotLinearizable { obj: usize, detail: String },
    /// A read returned bytes no write of this object wrote.
    UnknownValue { obj: usize, detail: String },
}

impl Violation {
    pub fn kind(&self) -> &'static str {
        match self {
            Violation::LostWrite { .. } => "lost acknowledged write",
            Violation::NotLinearizable { .. } => "non-linearizable read",
            Violation::UnknownValue { .. } => "read of a value never written",
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (obj, detail) = match self {
            Violation::LostWrite { obj, detail }
            | Violation::NotLinearizable { obj, detail }
            | Violation::UnknownValue { obj, detail } => (obj, detail),
        };
        write!(f, "{} on obj-{obj}:\n{detail}", self.kind())
    }
}

const NEVER: u64 = u64::MAX;

/// A write and the reads that observed it. `write == None`: the object's initial absence.
struct Cluster<'a> {
    write: Option<&'a Op>,
    reads: Vec<&'a Op>,
    /// Earliest completion among its operations.
    first_end: u64,
    /// Latest start among its operations.
    last_start: u64,
}

impl Cluster<'_> {
    fn describe(&self) -> String {
        let mut out = String::new();
        match self.write {
            Some(w) => out.push_str(&format!("    {w}\n")),
            None => out.push_str("    (initial: object absent)\n"),
        }
        for r in self.reads.iter().take(4) {
            out.push_str(&format!("    {r}\n"));
        }
        if self.reads.len() > 4 {
            out.push_str(&format!("    ... and {} more reads of it\n", self.reads.len() - 4));
        }
        out
    }
}

/// Checks every object of `ops`.
pub fn check(ops: &[Op]) -> Vec<Violation> {
    let mut by_obj: BTreeMap<usize, Vec<&Op>> = BTreeMap::new();
    for op in ops {
        by_obj.entry(op.obj).or_default().push(op);
    }
    by_obj.into_iter().filter_map(|(obj, ops)| check_object(obj, &ops)).collect()
}

/// Checks one object's history; the first problem found.
pub fn check_object(obj: usize, ops: &[&Op]) -> Option<Violation> {
    let mut writes: BTreeMap<&str, &Op> = BTreeMap::new();
    for op in ops {
        if let Kind::Write { value, .. } = &op.kind {
            writes.insert(value.as_str(), op);
        }
    }
    // Cluster per observed value; the initial absence is the cluster keyed by None.
    let mut reads_of: BTreeMap<Option<&str>, Vec<&Op>> = BTreeMap::new();
    for op in ops {
        if let Kind::Read { value } = &op.kind {
            if let Some(v) = value {
                if !writes.contains_key(v.as_str()) {
                    return Some(Violation::UnknownValue { obj, detail: format!("    {op}\n") });
                }
            }
            reads_of.entry(value.as_deref()).or_default().push(op);
        }
    }
    if let Some(v) = lost_write(obj, &writes, &reads_of) {
        return Some(v);
    }
    let mut clusters = Vec::new();
    if let Some(reads) = reads_of.get(&None) {
        clusters.push(make_cluster(None, reads.clone()));
    }
    for (value, w) in &writes {
        let reads = reads_of.get(&Some(*value)).cloned().unwrap_or_default();
        let acked = matches!(w.kind, Kind::Write { acked: true, .. });
        if !acked && reads.is_empty() {
            continue; // may never have taken effect
        }
        if let Some(r) = reads.iter().find(|r| r.end_us.unwrap_or(NEVER) < w.start_us) {
            let detail =
                format!("a read completed before the write it returned started:\n    {w}\n    {r}\n");
            return Some(Violation::NotLinearizable { obj, detail });
        }
        clusters.push(make_cluster(Some(w), reads));
    }
    order_clusters(obj, clusters)
}

fn make_cluster<'a>(write: Option<&'a Op>, reads: Vec<&'a Op>) -> Cluster<'a> {
    // The initial absence "happened" at time 0, before everything.
    let (mut first_end, mut last_start) = match write {
        Some(w) => (w.end_us.unwrap_or(NEVER), w.start_us),
        None => (0, 0),
    };
    for r in &reads {
        first_end = first_end.min(r.end_us.unwrap_or(NEVER));
        last_start = last_start.max(r.start_us);
    }
    Cluster { write, reads, first_end, last_start }
}

/// Greedy topological sort of the clusters (see the module docs); a violation names two
/// clusters that must each precede the other.
fn order_clusters(obj: usize, mut clusters: Vec<Cluster<'_>>) -> Option<Violation> {
    while !clusters.is_empty() {
        // The smallest and second smallest `first_end`, and who has the smallest.
        let (mut min1, mut min2, mut arg) = (NEVER, NEVER, usize::MAX);
        for (i, c) in clusters.iter().enumerate() {
            if c.first_end < min1 {
                (min2, min1, arg) = (min1, c.first_end, i);
            } else if c.first_end < min2 {
                min2 = c.first_end;
            }
        }
        let source =
            clusters.iter().enumerate().position(|(i, c)| c.last_start <= if i == arg { min2 } else { min1 });
        match source {
            Some(i) => {
                clusters.swap_remove(i);
            }
            None => return Some(cycle_violation(obj, &clusters)),
        }
    }
    None
}

fn cycle_violation(obj: usize, clusters: &[Cluster<'_>]) -> Violation {
    for a in clusters {
        for b in clusters {
            if !std::ptr::eq(a, b) && a.first_end < b.last_start && b.first_end < a.last_start {
                let detail = format!(
                    "these two values each had to be current both before and after the other:\n{}  and\n{}",
                    a.describe(),
                    b.describe()
                );
                return Violation::NotLinearizable { obj, detail };
            }
        }
    }
    let mut detail = String::from("no order of these writes explains the reads:\n");
    for c in clusters.iter().take(6) {
        detail.push_str(&c.describe());
    }
    Violation::NotLinearizable { obj, detail }
}

/// The final read must return the last acknowledged write or something that may follow it: no
/// acknowledged write may have started after the observed write completed.
fn lost_write(
    obj: usize,
    writes: &BTreeMap<&str, &Op>,
    reads_of: &BTreeMap<Option<&str>, Vec<&Op>>,
) -> Option<Violation> {
    for (value, reads) in reads_of {
        let Some(final_read) = reads.iter().find(|r| r.final_read) else { continue };
        let observed_end = match value {
            None => 0,
            Some(v) => writes.get(v).and_then(|w| w.end_us).unwrap_or(NEVER),
        };
        let newer = writes
            .values()
            .filter(|w| matches!(w.kind, Kind::Write { acked: true, .. }) && w.start_us > observed_end)
            .max_by_key(|w| w.start_us);
        if let Some(newer) = newer {
            let observed = value
                .and_then(|v| writes.get(v))
                .map_or("    (initial: object absent)\n".to_string(), |w| format!("    {w}\n"));
            let detail = format!("the final read returned\n{observed}    {final_read}\nbut this write was acknowledged after that one completed:\n    {newer}\n");
            return Some(Violation::LostWrite { obj, detail });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(value: &str, start: u64, end: Option<u64>) -> Op {
        Op {
            obj: 0,
            worker: 0,
            kind: Kind::Write { value: value.into(), acked: end.is_some() },
            start_us: start,
            end_us: end,
            final_read: false,
        }
    }

    fn r(value: Option<&str>, start: u64, end: u64) -> Op {
        Op {
            obj: 0,
            worker: 1,
            kind: Kind::Read { value: value.map(String::from) },
            start_us: start,
            end_us: Some(end),
            final_read: false,
        }
    }

    fn fin(value: Option<&str>, start: u64, end: u64) -> Op {
        Op { final_read: true, ..r(value, start, end) }
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let h = vec![
            r(None, 1, 2),
            w("a", 3, Some(4)),
            r(Some("a"), 5, 6),
            w("b", 7, Some(8)),
            fin(Some("b"), 9, 10),
        ];
        assert_eq!(check(&h), vec![]);
    }

    #[test]
    fn concurrent_reads_may_see_either_side_of_a_write() {
        // The read of "a" overlaps both the write of "b" and the first read of "b": it may be
        // ordered before them.
        let h = vec![
            w("a", 1, Some(2)),
            w("b", 3, Some(10)),
            r(Some("b"), 4, 5),
            r(Some("a"), 4, 6),
            r(Some("b"), 7, 8),
        ];
        assert_eq!(check(&h), vec![]);
    }

    #[test]
    fn a_read_of_an_older_value_after_a_newer_one_was_seen_is_caught() {
        let h = vec![w("a", 1, Some(2)), w("b", 3, Some(10)), r(Some("b"), 4, 5), r(Some("a"), 6, 7)];
        assert!(matches!(check(&h)[..], [Violation::NotLinearizable { .. }]));
    }

    #[test]
    fn a_stale_read_after_an_acknowledged_write_is_caught() {
        let h = vec![w("a", 1, Some(2)), w("b", 3, Some(4)), r(Some("a"), 5, 6)];
        assert!(matches!(check(&h)[..], [Violation::NotLinearizable { .. }]));
    }

    #[test]
    fn reading_absence_after_a_write_is_caught() {
        let h = vec![w("a", 1, Some(2)), r(None, 3, 4)];
        assert!(matches!(check(&h)[..], [Violation::NotLinearizable { .. }]));
    }

    #[test]
    fn an_unacknowledged_write_may_or_may_not_take_effect() {
        let seen = vec![w("a", 1, Some(2)), w("b", 3, None), r(Some("b"), 20, 21), fin(Some("b"), 30, 31)];
        assert_eq!(check(&seen), vec![]);
        let unseen = vec![w("a", 1, Some(2)), w("b", 3, None), fin(Some("a"), 30, 31)];
        assert_eq!(check(&unseen), vec![]);
        // But once seen it cannot vanish.
        let flip = vec![w("a", 1, Some(2)), w("b", 3, None), r(Some("b"), 20, 21), fin(Some("a"), 30, 31)];
        assert!(!check(&flip).is_empty());
    }

    #[test]
    fn a_final_read_missing_an_acknowledged_write_is_a_lost_write() {
        let h = vec![w("a", 1, Some(2)), w("b", 3, Some(4)), fin(Some("a"), 10, 11)];
        assert!(matches!(check(&h)[..], [Violation::LostWrite { .. }]));
        let absent = vec![w("a", 1, Some(2)), fin(None, 10, 11)];
        assert!(matches!(check(&absent)[..], [Violation::LostWrite { .. }]));
    }

    #[test]
    fn a_read_before_its_write_started_is_caught() {
        let h = vec![r(Some("a"), 1, 2), w("a", 3, Some(4))];
        assert!(matches!(check(&h)[..], [Violation::NotLinearizable { .. }]));
    }

    #[test]
    fn an_unknown_value_is_caught() {
        let h = vec![w("a", 1, Some(2)), r(Some("zzz"), 3, 4)];
        assert!(matches!(check(&h)[..], [Violation::UnknownValue { .. }]));
    }

    #[test]
    fn overlapping_writes_may_take_effect_in_any_order() {
        let h = vec![w("a", 1, Some(5)), w("b", 2, Some(6)), w("c", 3, Some(7)), r(Some("a"), 8, 9)];
        assert_eq!(check(&h), vec![]);
        // But a later read cannot go back once a newer value was read after all three ended.
        let h2 = vec![
            w("a", 1, Some(5)),
            w("b", 2, Some(6)),
            w("c", 3, Some(7)),
            r(Some("c"), 8, 9),
            r(Some("a"), 10, 11),
        ];
        assert!(!check(&h2).is_empty());
    }
}
