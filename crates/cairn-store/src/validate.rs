//! Checks a transaction against the store's limits and current state *before* any of it is
//! applied, so a rejected transaction leaves no trace and applying a checked one only fails on
//! I/O or corruption. Both backends run the same checks, so they reject the same transactions
//! with the same errno.

use crate::{Op, Transaction};
use cairn_types::{
    errno, Error, ObjectId, PgId, Result, Version, MAX_OBJECT_SIZE_BYTES, MAX_XATTR_VALUE_BYTES,
};
use std::collections::BTreeMap;

/// Most ops in one transaction.
pub const MAX_TXN_OPS: usize = 65_536;
/// Most payload bytes (data, keys, values) in one transaction.
pub const MAX_TXN_PAYLOAD_BYTES: u64 = 256 << 20;
/// Longest xattr, omap, PG-meta or OSD-meta key.
pub const MAX_KEY_BYTES: usize = 4096;

/// What the log-order check needs to know of the committed (or batch-so-far) state.
pub(crate) trait LogView {
    /// The newest log version of `pg` that is `<= at_most` (the newest of all if `None`).
    fn log_last(&self, pg: PgId, at_most: Option<Version>) -> Result<Option<Version>>;
}

/// Bytes a transaction carries (data, keys, values): what batch and queue bounds count.
pub fn payload_bytes(txn: &Transaction) -> u64 {
    let oid_len = |oid: &ObjectId| (oid.namespace.len() + oid.name.len()) as u64;
    txn.ops
        .iter()
        .map(|op| match op {
            Op::Write { oid, data, .. } => oid_len(oid) + data.len() as u64,
            Op::SetXattr { oid, key, value, .. } => oid_len(oid) + (key.len() + value.len()) as u64,
            Op::RmXattr { oid, key, .. } => oid_len(oid) + key.len() as u64,
            Op::OmapSet { oid, entries, .. } => {
                oid_len(oid) + entries.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum::<u64>()
            }
            Op::OmapRm { oid, keys, .. } => oid_len(oid) + keys.iter().map(|k| k.len() as u64).sum::<u64>(),
            Op::OmapSetHeader { oid, header, .. } => oid_len(oid) + header.len() as u64,
            Op::Touch { oid, .. }
            | Op::Zero { oid, .. }
            | Op::Truncate { oid, .. }
            | Op::Remove { oid, .. }
            | Op::SetMeta { oid, .. }
            | Op::OmapClear { oid, .. } => oid_len(oid),
            Op::CloneData { src, dst, .. } => oid_len(src) + oid_len(dst),
            Op::LogAppend { entry, .. } => entry.len() as u64,
            Op::PgMetaSet { key, value, .. } | Op::MetaSet { key, value } => (key.len() + value.len()) as u64,
            Op::LogTrim { .. } | Op::LogTruncate { .. } | Op::RemovePg { .. } => 0,
        })
        .sum()
}

/// Every check: limits first (stateless), then log order against `view`.
pub(crate) fn check(txn: &Transaction, view: &dyn LogView) -> Result<()> {
    if txn.ops.len() > MAX_TXN_OPS {
        return Err(Error::new(
            errno::E2BIG,
            format!("transaction has {} ops, more than the limit of {MAX_TXN_OPS}", txn.ops.len()),
        ));
    }
    let payload = payload_bytes(txn);
    if payload > MAX_TXN_PAYLOAD_BYTES {
        return Err(Error::new(
            errno::E2BIG,
            format!("transaction carries {payload} bytes, more than {MAX_TXN_PAYLOAD_BYTES}"),
        ));
    }
    for op in &txn.ops {
        check_op(op)?;
    }
    check_log_order(txn, view)
}

fn check_op(op: &Op) -> Result<()> {
    match op {
        Op::Write { oid, offset, data, .. } => {
            oid.validate()?;
            let end = end_of(*offset, data.len() as u64)?;
            if !data.is_empty() && end > MAX_OBJECT_SIZE_BYTES {
                return Err(too_big(oid, end));
            }
        }
        Op::Zero { oid, offset, len, .. } => {
            oid.validate()?;
            end_of(*offset, *len)?;
        }
        Op::Truncate { oid, size, .. } => {
            oid.validate()?;
            if *size > MAX_OBJECT_SIZE_BYTES {
                return Err(too_big(oid, *size));
            }
        }
        Op::SetXattr { oid, key, value, .. } => {
            oid.validate()?;
            check_key(key)?;
            if value.len() > MAX_XATTR_VALUE_BYTES {
                return Err(Error::new(
                    errno::EFBIG,
                    format!(
                        "xattr '{key}' value is {} bytes, more than {MAX_XATTR_VALUE_BYTES}",
                        value.len()
                    ),
                ));
            }
        }
        Op::RmXattr { oid, key, .. } => {
            oid.validate()?;
            check_key(key)?;
        }
        Op::OmapSet { oid, entries, .. } => {
            oid.validate()?;
            entries.iter().try_for_each(|(k, _)| check_key(k))?;
        }
        Op::OmapRm { oid, keys, .. } => {
            oid.validate()?;
            keys.iter().try_for_each(|k| check_key(k))?;
        }
        Op::Touch { oid, .. }
        | Op::Remove { oid, .. }
        | Op::SetMeta { oid, .. }
        | Op::OmapClear { oid, .. }
        | Op::OmapSetHeader { oid, .. } => oid.validate()?,
        Op::CloneData { src, dst, .. } => {
            src.validate()?;
            dst.validate()?;
        }
        Op::PgMetaSet { key, .. } | Op::MetaSet { key, .. } => check_key(key)?,
        Op::LogAppend { .. } | Op::LogTrim { .. } | Op::LogTruncate { .. } | Op::RemovePg { .. } => {}
    }
    Ok(())
}

fn end_of(offset: u64, len: u64) -> Result<u64> {
    offset.checked_add(len).ok_or_else(|| Error::einval(format!("extent {offset}~{len} overflows")))
}

fn too_big(oid: &ObjectId, size: u64) -> Error {
    Error::new(
        errno::EFBIG,
        format!("object '{oid}' would be {size} bytes, more than {MAX_OBJECT_SIZE_BYTES}"),
    )
}

fn check_key(key: &str) -> Result<()> {
    if key.len() > MAX_KEY_BYTES {
        return Err(Error::new(
            errno::ENAMETOOLONG,
            format!("key is {} bytes, longer than the limit of {MAX_KEY_BYTES}", key.len()),
        ));
    }
    Ok(())
}

/// What this transaction has done so far to one PG's log, on top of the state in the view.
#[derive(Default)]
struct LogOverlay {
    /// The stored entries are all gone (RemovePg).
    base_removed: bool,
    /// Stored entries with version > this are gone (LogTruncate).
    base_at_most: Option<Version>,
    /// Stored entries with version <= this are gone (LogTrim).
    base_trimmed: Option<Version>,
    /// Versions this transaction appended and has not dropped again.
    appended: Vec<Version>,
}

impl LogOverlay {
    fn last(&self, pg: PgId, view: &dyn LogView) -> Result<Option<Version>> {
        let base = if self.base_removed {
            None
        } else {
            view.log_last(pg, self.base_at_most)?.filter(|v| self.base_trimmed.is_none_or(|t| *v > t))
        };
        Ok(base.max(self.appended.last().copied()))
    }
}

/// Log versions must strictly increase per PG, counting entries this transaction appended,
/// truncated, trimmed or removed before the append.
fn check_log_order(txn: &Transaction, view: &dyn LogView) -> Result<()> {
    let mut logs: BTreeMap<PgId, LogOverlay> = BTreeMap::new();
    for op in &txn.ops {
        match op {
            Op::LogAppend { pg, version, .. } => {
                let log = logs.entry(*pg).or_default();
                if let Some(last) = log.last(*pg, view)? {
                    if *version <= last {
                        return Err(Error::einval(format!(
                            "pg {pg} log append {version} is not after the last entry {last}"
                        )));
                    }
                }
                log.appended.push(*version);
            }
            Op::LogTrim { pg, upto } => {
                let log = logs.entry(*pg).or_default();
                log.base_trimmed = log.base_trimmed.max(Some(*upto));
                log.appended.retain(|v| v > upto);
            }
            Op::LogTruncate { pg, after } => {
                let log = logs.entry(*pg).or_default();
                log.base_at_most = Some(log.base_at_most.map_or(*after, |a| a.min(*after)));
                log.appended.retain(|v| v <= after);
            }
            Op::RemovePg { pg } => {
                logs.insert(*pg, LogOverlay { base_removed: true, ..LogOverlay::default() });
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const PG: PgId = PgId { pool: 1, seed: 0 };

    /// A stored log with versions (1, seq) for the given seqs.
    struct Stored(Vec<u64>);

    impl LogView for Stored {
        fn log_last(&self, _pg: PgId, at_most: Option<Version>) -> Result<Option<Version>> {
            Ok(self
                .0
                .iter()
                .map(|&seq| Version { epoch: 1, seq })
                .filter(|v| at_most.is_none_or(|m| *v <= m))
                .max())
        }
    }

    fn v(seq: u64) -> Version {
        Version { epoch: 1, seq }
    }

    fn txn(ops: Vec<Op>) -> Transaction {
        Transaction { ops }
    }

    fn append(seq: u64) -> Op {
        Op::LogAppend { pg: PG, version: v(seq), entry: Bytes::new() }
    }

    #[test]
    fn append_must_follow_stored_and_appended_entries() {
        let stored = Stored(vec![1, 2, 5]);
        assert!(check(&txn(vec![append(6), append(7)]), &stored).is_ok());
        assert_eq!(check(&txn(vec![append(5)]), &stored).map_err(|e| e.errno), Err(errno::EINVAL));
        assert!(check(&txn(vec![append(6), append(6)]), &stored).is_err());
    }

    #[test]
    fn truncate_trim_and_remove_reopen_older_versions() {
        let stored = Stored(vec![1, 2, 5]);
        let truncate = Op::LogTruncate { pg: PG, after: v(4) };
        assert!(check(&txn(vec![truncate.clone(), append(3)]), &stored).is_ok());
        assert!(check(&txn(vec![truncate, append(2)]), &stored).is_err());
        let trim = Op::LogTrim { pg: PG, upto: v(5) };
        assert!(check(&txn(vec![trim, append(4)]), &stored).is_ok());
        assert!(check(&txn(vec![Op::RemovePg { pg: PG }, append(1)]), &stored).is_ok());
        // A truncate also drops what this transaction appended after the bound.
        let ops = vec![append(9), Op::LogTruncate { pg: PG, after: v(6) }, append(7)];
        assert!(check(&txn(ops), &stored).is_ok());
    }

    #[test]
    fn limits_give_their_errnos() {
        let stored = Stored(vec![]);
        let oid = ObjectId::new("o");
        let write = |offset: u64, len: usize| Op::Write {
            pg: PG,
            oid: oid.clone(),
            offset,
            data: Bytes::from(vec![1u8; len]),
        };
        let errno_of = |op: Op| check(&txn(vec![op]), &stored).err().map(|e| e.errno);
        assert_eq!(errno_of(write(MAX_OBJECT_SIZE_BYTES - 1, 1)), None);
        assert_eq!(errno_of(write(MAX_OBJECT_SIZE_BYTES, 1)), Some(errno::EFBIG));
        assert_eq!(errno_of(write(u64::MAX, 1)), Some(errno::EINVAL));
        let zero = Op::Zero { pg: PG, oid: oid.clone(), offset: u64::MAX, len: 2 };
        assert_eq!(errno_of(zero), Some(errno::EINVAL));
        let truncate = Op::Truncate { pg: PG, oid: oid.clone(), size: MAX_OBJECT_SIZE_BYTES + 1 };
        assert_eq!(errno_of(truncate), Some(errno::EFBIG));
        let touch = Op::Touch { pg: PG, oid: ObjectId::new("") };
        assert_eq!(errno_of(touch), Some(errno::EINVAL));
        let xattr = Op::SetXattr { pg: PG, oid, key: "k".repeat(MAX_KEY_BYTES + 1), value: Bytes::new() };
        assert_eq!(errno_of(xattr), Some(errno::ENAMETOOLONG));
    }
}
