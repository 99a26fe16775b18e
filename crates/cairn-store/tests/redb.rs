//! RedbStore beyond the shared contract: a property test against a plain in-memory model,
//! reopening, a real crash (SIGKILL of a child process mid-commit-loop), and an optional
//! throughput measurement.

use bytes::Bytes;
use cairn_store::redb_store::{RedbOptions, STORE_FILE_NAME};
use cairn_store::{MemStore, ObjectStore, Op, RedbStore, Transaction};
use cairn_types::{errno, ObjectId, PgId, Result, Version, MAX_OBJECT_SIZE_BYTES};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;
use std::time::{Duration, Instant};

const PG: PgId = PgId { pool: 2, seed: 3 };

fn options(chunk_bytes: u32) -> RedbOptions {
    RedbOptions { chunk_bytes, cache_bytes: 8 << 20 }
}

fn oid(name: &str) -> ObjectId {
    ObjectId::new(name)
}

fn commit(store: &dyn ObjectStore, ops: Vec<Op>) -> Result<()> {
    store.submit(Transaction { ops }).blocking_recv().expect("store dropped a transaction")
}

// ---------------------------------------------------------------------------------------------
// Model test

/// What one object should hold.
#[derive(Debug, Clone, Default, PartialEq)]
struct ModelObject {
    data: Vec<u8>,
    xattrs: BTreeMap<String, Bytes>,
    omap: BTreeMap<String, Bytes>,
    header: Bytes,
}

type Model = BTreeMap<String, ModelObject>;

const NAMES: [&str; 3] = ["a", "b", "c"];
const KEYS: [&str; 3] = ["k0", "k1", "k2"];

fn op_strategy() -> impl Strategy<Value = Op> {
    let name = (0..NAMES.len()).prop_map(|i| oid(NAMES[i]));
    let key = (0..KEYS.len()).prop_map(|i| KEYS[i].to_string());
    let value = proptest::collection::vec(any::<u8>(), 0..6).prop_map(Bytes::from);
    prop_oneof![
        4 => (name.clone(), 0u64..150, proptest::collection::vec(1u8..=255, 0..70))
            .prop_map(|(oid, offset, data)| Op::Write { pg: PG, oid, offset, data: Bytes::from(data) }),
        2 => (name.clone(), 0u64..160, 0u64..100).prop_map(|(oid, offset, len)| Op::Zero { pg: PG, oid, offset, len }),
        2 => (name.clone(), 0u64..160).prop_map(|(oid, size)| Op::Truncate { pg: PG, oid, size }),
        1 => name.clone().prop_map(|oid| Op::Remove { pg: PG, oid }),
        1 => name.clone().prop_map(|oid| Op::Touch { pg: PG, oid }),
        1 => (name.clone(), name.clone()).prop_map(|(src, dst)| Op::CloneData { pg: PG, src, dst }),
        1 => (name.clone(), key.clone(), value.clone()).prop_map(|(oid, key, value)| Op::SetXattr { pg: PG, oid, key, value }),
        1 => (name.clone(), key.clone()).prop_map(|(oid, key)| Op::RmXattr { pg: PG, oid, key }),
        1 => (name.clone(), key.clone(), value.clone())
            .prop_map(|(oid, k, v)| Op::OmapSet { pg: PG, oid, entries: vec![(k, v)] }),
        1 => (name.clone(), key).prop_map(|(oid, k)| Op::OmapRm { pg: PG, oid, keys: vec![k] }),
        1 => name.clone().prop_map(|oid| Op::OmapClear { pg: PG, oid }),
        1 => (name.clone(), value).prop_map(|(oid, header)| Op::OmapSetHeader { pg: PG, oid, header }),
        // Invalid: the whole transaction must fail and change nothing.
        1 => name.prop_map(|oid| Op::Truncate { pg: PG, oid, size: MAX_OBJECT_SIZE_BYTES + 1 }),
    ]
}

fn txns_strategy() -> impl Strategy<Value = Vec<Vec<Op>>> {
    proptest::collection::vec(proptest::collection::vec(op_strategy(), 1..5), 1..14)
}

/// Applies a transaction to the model: all ops, or none if one is invalid. Returns whether it
/// applied.
fn model_apply(model: &mut Model, ops: &[Op]) -> bool {
    if ops.iter().any(|op| matches!(op, Op::Truncate { size, .. } if *size > MAX_OBJECT_SIZE_BYTES)) {
        return false;
    }
    for op in ops {
        match op {
            Op::Write { oid, offset, data, .. } => {
                let obj = model.entry(oid.name.clone()).or_default();
                if !data.is_empty() {
                    let end = *offset as usize + data.len();
                    if obj.data.len() < end {
                        obj.data.resize(end, 0);
                    }
                    obj.data[*offset as usize..end].copy_from_slice(data);
                }
            }
            Op::Zero { oid, offset, len, .. } => {
                let obj = model.entry(oid.name.clone()).or_default();
                let end = (offset + len).min(obj.data.len() as u64) as usize;
                let start = (*offset as usize).min(end);
                obj.data[start..end].fill(0);
            }
            Op::Truncate { oid, size, .. } => {
                model.entry(oid.name.clone()).or_default().data.resize(*size as usize, 0)
            }
            Op::Remove { oid, .. } => {
                model.remove(&oid.name);
            }
            Op::Touch { oid, .. } => {
                model.entry(oid.name.clone()).or_default();
            }
            Op::CloneData { src, dst, .. } => {
                let data = model.get(&src.name).map(|o| o.data.clone()).unwrap_or_default();
                model.entry(dst.name.clone()).or_default().data = data;
            }
            Op::SetXattr { oid, key, value, .. } => {
                model.entry(oid.name.clone()).or_default().xattrs.insert(key.clone(), value.clone());
            }
            Op::RmXattr { oid, key, .. } => {
                if let Some(obj) = model.get_mut(&oid.name) {
                    obj.xattrs.remove(key);
                }
            }
            Op::OmapSet { oid, entries, .. } => {
                model.entry(oid.name.clone()).or_default().omap.extend(entries.iter().cloned());
            }
            Op::OmapRm { oid, keys, .. } => {
                if let Some(obj) = model.get_mut(&oid.name) {
                    keys.iter().for_each(|k| {
                        obj.omap.remove(k);
                    });
                }
            }
            Op::OmapClear { oid, .. } => {
                let obj = model.entry(oid.name.clone()).or_default();
                obj.omap.clear();
                obj.header = Bytes::new();
            }
            Op::OmapSetHeader { oid, header, .. } => {
                model.entry(oid.name.clone()).or_default().header = header.clone()
            }
            other => unreachable!("the strategy does not generate {other:?}"),
        }
    }
    true
}

/// Reads everything the model knows about back from the store.
fn observe(store: &dyn ObjectStore) -> Model {
    let mut seen = Model::new();
    for (id, meta) in store.list_objects(PG, None, usize::MAX).expect("list") {
        let data = store.read(PG, &id, 0, meta.size + 10).expect("read").to_vec();
        assert_eq!(data.len() as u64, meta.size, "read length vs stat size of {id}");
        let obj = ModelObject {
            data,
            xattrs: store.list_xattrs(PG, &id).expect("xattrs").into_iter().collect(),
            omap: store.omap_list(PG, &id, "", "", usize::MAX).expect("omap").into_iter().collect(),
            header: store.omap_get_header(PG, &id).expect("header"),
        };
        seen.insert(id.name, obj);
    }
    seen
}

fn used_bytes_of(model: &Model) -> u64 {
    model.values().map(|o| o.data.len() as u64).sum()
}

/// One transaction at a time, checking the whole state after each.
fn check_stepwise(store: &dyn ObjectStore, txns: &[Vec<Op>]) -> std::result::Result<(), TestCaseError> {
    let mut model = Model::new();
    for ops in txns {
        let applied = model_apply(&mut model, ops);
        let result = commit(store, ops.clone());
        prop_assert_eq!(result.is_ok(), applied, "outcome of {:?}: {:?}", ops, result);
        prop_assert_eq!(&observe(store), &model, "after {:?}", ops);
        prop_assert_eq!(store.used_bytes().expect("used"), used_bytes_of(&model));
    }
    Ok(())
}

/// Everything submitted at once (group commit, failures mid-batch), checked at the end.
fn check_pipelined(store: &dyn ObjectStore, txns: &[Vec<Op>]) -> std::result::Result<(), TestCaseError> {
    let mut model = Model::new();
    let expected: Vec<bool> = txns.iter().map(|ops| model_apply(&mut model, ops)).collect();
    let receivers = store.submit_many(txns.iter().map(|ops| Transaction { ops: ops.clone() }).collect());
    let outcomes: Vec<bool> =
        receivers.into_iter().map(|rx| rx.blocking_recv().expect("resolved").is_ok()).collect();
    prop_assert_eq!(outcomes, expected);
    prop_assert_eq!(observe(store), model);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn mem_store_matches_model(txns in txns_strategy()) {
        check_stepwise(&MemStore::new(), &txns)?;
        check_pipelined(&MemStore::new(), &txns)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn redb_store_matches_model(txns in txns_strategy(), chunk_bytes in prop_oneof![Just(8u32), Just(16), Just(64)]) {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = RedbStore::open_with(&dir.path().join("step"), options(chunk_bytes)).expect("open");
            check_stepwise(&store, &txns)?;
        }
        let store = RedbStore::open_with(&dir.path().join("pipe"), options(chunk_bytes)).expect("open");
        check_pipelined(&store, &txns)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Reopen

#[test]
fn reopen_keeps_committed_state_and_chunk_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data: Vec<u8> = (0..200u8).collect();
    {
        let store = RedbStore::open_with(dir.path(), options(32)).expect("open");
        commit(
            &store,
            vec![
                Op::Write { pg: PG, oid: oid("o"), offset: 0, data: Bytes::from(data.clone()) },
                Op::SetXattr { pg: PG, oid: oid("o"), key: "x".into(), value: Bytes::from_static(b"1") },
                Op::LogAppend {
                    pg: PG,
                    version: Version { epoch: 1, seq: 1 },
                    entry: Bytes::from_static(b"e"),
                },
                Op::MetaSet { key: "superblock".into(), value: Bytes::from_static(b"sb") },
            ],
        )
        .expect("commit");
        // Queued but not waited for: dropping the store still commits it.
        drop(store.submit(Transaction { ops: vec![Op::Touch { pg: PG, oid: oid("late") }] }));
        assert_eq!(
            RedbStore::open(dir.path()).err().map(|e| e.errno),
            Some(errno::EBUSY),
            "a second open of the same store is refused"
        );
    }
    assert!(dir.path().join(STORE_FILE_NAME).exists());
    let store = RedbStore::open_with(dir.path(), options(4096)).expect("reopen");
    assert_eq!(store.chunk_bytes(), 32, "an existing store keeps its chunk size");
    assert_eq!(store.read(PG, &oid("o"), 0, 1000).expect("read").to_vec(), data);
    assert_eq!(store.get_xattr(PG, &oid("o"), "x").expect("xattr"), Bytes::from_static(b"1"));
    assert_eq!(store.log_entries(PG, Version::default()).expect("log").len(), 1);
    assert_eq!(store.meta("superblock").expect("meta"), Some(Bytes::from_static(b"sb")));
    assert!(store.stat(PG, &oid("late")).expect("stat").is_some());
    assert_eq!(store.used_bytes().expect("used"), 200);
    assert!(store.file_bytes().expect("file size") > 0);
}

#[test]
fn bad_chunk_sizes_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    for chunk_bytes in [0, 7, (1 << 20) + 1] {
        let err = RedbStore::open_with(dir.path(), options(chunk_bytes)).err().expect("refused");
        assert_eq!(err.errno, errno::EINVAL);
    }
}

#[test]
fn many_in_flight_share_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RedbStore::open_with(dir.path(), options(4096)).expect("open");
    let txns: Vec<Transaction> = (0..200u64)
        .map(|i| Transaction {
            ops: vec![Op::Write {
                pg: PG,
                oid: oid(&format!("o{}", i % 10)),
                offset: i * 8,
                data: Bytes::from(i.to_le_bytes().to_vec()),
            }],
        })
        .collect();
    for rx in store.submit_many(txns) {
        rx.blocking_recv().expect("resolved").expect("committed");
    }
    let stats = store.commit_stats();
    assert_eq!(stats.txns_committed, 200);
    assert!(stats.batches < 200 / 4, "group commit should batch: {stats:?}");
    assert_eq!(&store.read(PG, &oid("o9"), 199 * 8, 8).expect("read")[..], &199u64.to_le_bytes());
}

// ---------------------------------------------------------------------------------------------
// Crash

const CRASH_CHILD_ENV: &str = "CAIRN_STORE_CRASH_CHILD_DIR";
const CRASH_CHUNK_BYTES: u32 = 64;
const CRASH_IN_FLIGHT: usize = 8;

fn crash_payload(seq: u64) -> Bytes {
    // 100 bytes: spans two 64-byte chunks, so a torn write would show.
    Bytes::from(seq.to_le_bytes().iter().copied().cycle().take(100).collect::<Vec<u8>>())
}

fn crash_txn(seq: u64) -> Transaction {
    let payload = crash_payload(seq);
    let write = |name: &str| Op::Write { pg: PG, oid: oid(name), offset: 0, data: payload.clone() };
    Transaction {
        ops: vec![
            write("a"),
            write(&format!("s{seq}")),
            Op::LogAppend { pg: PG, version: Version { epoch: 1, seq: seq + 1 }, entry: payload.clone() },
            write("b"),
        ],
    }
}

/// Not a test on its own: the child process of `crash_loses_no_acknowledged_transaction`.
/// Resumes after the last committed transaction, commits `crash_txn(n), crash_txn(n+1), ...`
/// with a few in flight and prints `ACK n` once transaction n is durable, until killed.
#[test]
#[ignore = "child process of crash_loses_no_acknowledged_transaction"]
fn crash_child() {
    let Ok(dir) = std::env::var(CRASH_CHILD_ENV) else {
        return;
    };
    let store = RedbStore::open_with(Path::new(&dir), options(CRASH_CHUNK_BYTES)).expect("child open");
    let first = store.log_entries(PG, Version::default()).expect("log").len() as u64;
    let mut in_flight = std::collections::VecDeque::new();
    for seq in first.. {
        in_flight.push_back((seq, store.submit(crash_txn(seq))));
        if in_flight.len() >= CRASH_IN_FLIGHT {
            let Some((acked, rx)) = in_flight.pop_front() else {
                break;
            };
            rx.blocking_recv().expect("resolved").expect("child commit");
            // Own line even if libtest left its "test crash_child ... " unterminated.
            println!("\nACK {acked}");
        }
    }
}

/// Runs the child until it acknowledged `min_acks` transactions, SIGKILLs it, and returns the
/// sequence numbers it acknowledged.
fn run_child_and_kill(dir: &Path, min_acks: usize, extra_delay: Duration) -> Vec<u64> {
    let exe = std::env::current_exe().expect("test binary");
    let mut child = std::process::Command::new(exe)
        .args(["--exact", "crash_child", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CRASH_CHILD_ENV, dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let (ack_tx, ack_rx) = std::sync::mpsc::channel::<u64>();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(n) = line.strip_prefix("ACK ").and_then(|n| n.trim().parse().ok()) {
                if ack_tx.send(n).is_err() {
                    break;
                }
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut acked = Vec::new();
    while acked.len() < min_acks && Instant::now() < deadline {
        if let Ok(n) = ack_rx.recv_timeout(Duration::from_millis(100)) {
            acked.push(n);
        }
    }
    // Kill it mid-stream: more transactions are in flight, some mid-commit.
    std::thread::sleep(extra_delay);
    child.kill().expect("SIGKILL the child");
    child.wait().expect("reap child");
    reader.join().expect("reader thread");
    acked.extend(ack_rx.try_iter());
    acked
}

/// Checks the store after a crash; returns how many transactions survived.
fn check_after_crash(dir: &Path, acked: &[u64]) -> u64 {
    let store = RedbStore::open_with(dir, options(CRASH_CHUNK_BYTES)).expect("reopen after crash");
    let log = store.log_entries(PG, Version::default()).expect("log");
    let committed = log.len() as u64;
    for (i, (version, entry)) in log.iter().enumerate() {
        assert_eq!(version.seq, i as u64 + 1, "the log is a gap-free prefix");
        assert_eq!(*entry, crash_payload(i as u64));
    }
    let max_acked = acked.iter().copied().max().expect("some acks");
    assert!(committed > max_acked, "acked up to {max_acked} but only {committed} survived");
    for seq in 0..committed {
        let data = store.read(PG, &oid(&format!("s{seq}")), 0, 1000).expect("acked object");
        assert_eq!(data, crash_payload(seq), "object of txn {seq}");
    }
    for seq in committed..committed + CRASH_IN_FLIGHT as u64 + 2 {
        let stat = store.stat(PG, &oid(&format!("s{seq}"))).expect("stat");
        assert_eq!(stat, None, "txn {seq} is half there: its object without its log entry");
    }
    let last = crash_payload(committed - 1);
    assert_eq!(store.read(PG, &oid("a"), 0, 1000).expect("a"), last);
    assert_eq!(store.read(PG, &oid("b"), 0, 1000).expect("b"), last, "a and b from one txn");
    assert_eq!(store.used_bytes().expect("used"), (committed + 2) * 100);
    committed
}

#[test]
fn crash_loses_no_acknowledged_transaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut survived = 0;
    // Several rounds: each child resumes the store the previous one was killed over.
    for (round, delay_ms) in [0u64, 3, 11].into_iter().enumerate() {
        let acked = run_child_and_kill(dir.path(), 40, Duration::from_millis(delay_ms));
        assert!(acked.len() >= 40, "round {round}: child acknowledged only {}", acked.len());
        assert!(acked.iter().all(|&n| n >= survived), "round {round} redid committed work");
        let committed = check_after_crash(dir.path(), &acked);
        println!(
            "round {round}: {} acknowledged, {} committed in total, {} committed but unacked",
            acked.len(),
            committed,
            committed - 1 - acked.iter().max().copied().unwrap_or(0)
        );
        survived = committed;
    }
}

// ---------------------------------------------------------------------------------------------
// Throughput (not a test: run with `cargo test -p cairn-store --test redb -- --ignored
// measure_4k_overwrites --nocapture`)

#[test]
#[ignore = "measurement, not a test"]
fn measure_4k_overwrites() {
    const OBJECTS: u64 = 16;
    const OBJECT_BYTES: u64 = 4 << 20;
    const TXNS: u64 = 2000;
    for chunk_bytes in [4096u32, 16 << 10, 64 << 10] {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = RedbStore::open_with(dir.path(), RedbOptions { chunk_bytes, cache_bytes: 256 << 20 })
            .expect("open");
        // Prefill so overwrites hit existing chunks.
        for o in 0..OBJECTS {
            let data = Bytes::from(vec![1u8; OBJECT_BYTES as usize]);
            commit(&store, vec![Op::Write { pg: PG, oid: oid(&format!("o{o}")), offset: 0, data }])
                .expect("prefill");
        }
        for in_flight in [1usize, 32] {
            let mut seq = 0u64;
            let mut rng = 0x9E37_79B9_7F4A_7C15u64;
            let mut next_txn = || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                seq += 1;
                let o = rng % OBJECTS;
                let block = (rng >> 8) % (OBJECT_BYTES / 4096);
                Transaction {
                    ops: vec![
                        Op::Write {
                            pg: PG,
                            oid: oid(&format!("o{o}")),
                            offset: block * 4096,
                            data: Bytes::from(vec![seq as u8; 4096]),
                        },
                        Op::SetMeta {
                            pg: PG,
                            oid: oid(&format!("o{o}")),
                            version: Version { epoch: 1, seq },
                            mtime_ns: seq,
                        },
                        Op::LogAppend {
                            pg: PG,
                            version: Version { epoch: 1, seq },
                            entry: Bytes::from(vec![0u8; 100]),
                        },
                    ],
                }
            };
            let before = store.commit_stats();
            let start = Instant::now();
            let mut window = std::collections::VecDeque::new();
            for _ in 0..TXNS {
                window.push_back(store.submit(next_txn()));
                if window.len() >= in_flight {
                    if let Some(rx) = window.pop_front() {
                        rx.blocking_recv().expect("resolved").expect("commit");
                    }
                }
            }
            for rx in window {
                rx.blocking_recv().expect("resolved").expect("commit");
            }
            let secs = start.elapsed().as_secs_f64();
            let after = store.commit_stats();
            commit(&store, vec![Op::LogTrim { pg: PG, upto: Version { epoch: 1, seq: u64::MAX } }])
                .expect("trim");
            println!(
                "chunk {:>6} B, {in_flight:>2} in flight: {:>7.0} txns/s, {:.1} txns/commit, file {} MiB",
                chunk_bytes,
                TXNS as f64 / secs,
                (after.txns_committed - before.txns_committed) as f64
                    / (after.batches - before.batches) as f64,
                store.file_bytes().expect("size") >> 20,
            );
        }
    }
}

/// This process's user and system CPU seconds so far.
fn cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let fields: Vec<&str> = stat.rsplit(')').next().expect("stat").split_whitespace().collect();
    let tick = 100.0; // USER_HZ
    (fields[11].parse::<f64>().expect("utime") / tick, fields[12].parse::<f64>().expect("stime") / tick)
}

/// Throughput and CPU of whole 4 MiB object writes (rados bench's pattern: new objects, 16 in
/// flight, then removed), several rounds so later ones reuse freed pages:
/// `cargo test --release -p cairn-store --test redb measure_4m_writes -- --ignored --nocapture`
/// (`CAIRN_STORE_DIR` to choose the file system).
#[test]
#[ignore]
fn measure_4m_writes() {
    const OBJECT_BYTES: usize = 4 << 20;
    const OBJECTS: u64 = 250;
    const IN_FLIGHT: usize = 16;
    let base = std::env::var_os("CAIRN_STORE_DIR").map(std::path::PathBuf::from);
    let dir = match &base {
        Some(b) => tempfile::tempdir_in(b).expect("tempdir"),
        None => tempfile::tempdir().expect("tempdir"),
    };
    let store = RedbStore::open_with(dir.path(), RedbOptions::default()).expect("open");
    let data = Bytes::from((0..OBJECT_BYTES).map(|i| (i * 7 + i / 4096) as u8).collect::<Vec<u8>>());
    let mut seq = 0u64;
    for round in 0..3 {
        let (u0, s0) = cpu_seconds();
        let start = Instant::now();
        let mut window = std::collections::VecDeque::new();
        for o in 0..OBJECTS {
            seq += 1;
            let oid = oid(&format!("benchmark_data_{o}"));
            let ops = vec![
                Op::Write { pg: PG, oid: oid.clone(), offset: 0, data: data.clone() },
                Op::SetMeta { pg: PG, oid, version: Version { epoch: 1, seq }, mtime_ns: seq },
                Op::LogAppend {
                    pg: PG,
                    version: Version { epoch: 1, seq },
                    entry: Bytes::from(vec![0u8; 100]),
                },
            ];
            window.push_back(store.submit(Transaction { ops }));
            if window.len() >= IN_FLIGHT {
                window.pop_front().expect("one").blocking_recv().expect("resolved").expect("commit");
            }
        }
        for rx in window {
            rx.blocking_recv().expect("resolved").expect("commit");
        }
        let secs = start.elapsed().as_secs_f64();
        let (u1, s1) = cpu_seconds();
        let mb = (OBJECTS as usize * OBJECT_BYTES) as f64 / 1e6;
        println!(
            "round {round}: {:.0} MB/s, CPU user {:.2} s + system {:.2} s = {:.1} ms per 4 MiB, file {} MiB",
            mb / secs,
            u1 - u0,
            s1 - s0,
            (u1 - u0 + s1 - s0) * 1e3 / OBJECTS as f64,
            store.file_bytes().expect("size") >> 20,
        );
        for o in 0..OBJECTS {
            commit(&store, vec![Op::Remove { pg: PG, oid: oid(&format!("benchmark_data_{o}")) }])
                .expect("remove");
        }
    }
}
