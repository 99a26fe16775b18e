//! After quiescence: every PG's acting members must hold identical objects (read straight from
//! their [`SimStore`]s, what a crash right now would leave), and the run's trace hash.

use crate::history::{Kind, Op};
use crate::store::SimStore;
use cairn_proto::ObjectState;
use cairn_types::{ClusterMap, ObjectId, PgId};
use std::collections::BTreeMap;

/// One PG's content on one OSD.
type PgContent = BTreeMap<ObjectId, ObjectState>;

fn pg_content(store: &SimStore, pg: PgId) -> Result<PgContent, String> {
    let mut out = PgContent::new();
    let objects =
        cairn_store::ObjectStore::list_objects(store, pg, None, usize::MAX).map_err(|e| e.to_string())?;
    for (oid, _) in objects {
        if let Some(state) = cairn_osd::ops::object_state(store, pg, &oid).map_err(|e| e.to_string())? {
            out.insert(oid, state);
        }
    }
    Ok(out)
}

/// Compares every PG of `map` across its acting members. Returns the mismatches and the
/// primaries' contents (for the trace hash).
pub fn compare(map: &ClusterMap, stores: &[SimStore]) -> (Vec<String>, Vec<(PgId, PgContent)>) {
    let mut mismatches = Vec::new();
    let mut contents = Vec::new();
    for (pg, interval) in &map.intervals {
        let Some(&primary) = interval.acting.first() else { continue };
        let read = |osd: u32| match stores.get(osd as usize) {
            Some(store) => pg_content(store, *pg),
            None => Err(format!("osd.{osd} is not simulated")),
        };
        let reference = match read(primary) {
            Ok(c) => c,
            Err(e) => {
                mismatches.push(format!("pg {pg}: cannot read primary osd.{primary}: {e}"));
                continue;
            }
        };
        for &member in &interval.acting[1..] {
            match read(member) {
                Ok(c) if c == reference => {}
                Ok(c) => mismatches.push(format!(
                    "pg {pg} (acting {:?}): osd.{member} differs from primary osd.{primary}: {}",
                    interval.acting,
                    diff(&reference, &c)
                )),
                Err(e) => mismatches.push(format!("pg {pg}: cannot read osd.{member}: {e}")),
            }
        }
        contents.push((*pg, reference));
    }
    (mismatches, contents)
}

fn diff(a: &PgContent, b: &PgContent) -> String {
    let mut out = Vec::new();
    for (oid, sa) in a {
        match b.get(oid) {
            None => out.push(format!("{} missing (primary has version {})", oid.name, sa.version)),
            Some(sb) if sb != sa => out.push(format!(
                "{} differs (primary: version {}, {} bytes; member: version {}, {} bytes)",
                oid.name,
                sa.version,
                sa.data.len(),
                sb.version,
                sb.data.len()
            )),
            Some(_) => {}
        }
    }
    for (oid, sb) in b {
        if !a.contains_key(oid) {
            out.push(format!("{} extra (version {})", oid.name, sb.version));
        }
    }
    out.join("; ")
}

/// FNV-1a over the run's observable outcome: the client history, the fault log and the final
/// object contents (versions and data; not mtimes, which come from the wall clock).
pub fn trace_hash(history: &[Op], events: &[(u64, String)], contents: &[(PgId, PgContent)]) -> u64 {
    let mut h = Fnv::default();
    for op in history {
        let (tag, value, acked) = match &op.kind {
            Kind::Write { value, acked } => ("w", Some(value.as_str()), *acked),
            Kind::Read { value } => ("r", value.as_deref(), true),
        };
        h.write(
            format!(
                "{tag}|{}|{}|{value:?}|{acked}|{}|{:?}|{}\n",
                op.obj, op.worker, op.start_us, op.end_us, op.final_read
            )
            .as_bytes(),
        );
    }
    for (ms, what) in events {
        h.write(format!("{ms}|{what}\n").as_bytes());
    }
    for (pg, content) in contents {
        for (oid, state) in content {
            h.write(format!("{pg}|{}|{}|", oid.name, state.version).as_bytes());
            h.write(&state.data);
        }
    }
    h.0
}

struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}
