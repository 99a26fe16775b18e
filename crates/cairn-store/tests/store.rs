//! The behavioural contract of `ObjectStore`, run against every backend: `MemStore`, and
//! `RedbStore` with tiny chunks (every test crosses chunk boundaries) and with the default size.

use bytes::Bytes;
use cairn_store::{MemStore, ObjectStore, Op, RedbStore, Transaction};
use cairn_types::{errno, ObjectId, PgId, Result, Version, MAX_OBJECT_SIZE_BYTES};
use std::ops::Deref;

const PG: PgId = PgId { pool: 1, seed: 7 };
const OTHER_PG: PgId = PgId { pool: 1, seed: 8 };

/// A RedbStore in a temporary directory; the store is dropped before the directory.
struct RedbFixture {
    store: RedbStore,
    _dir: tempfile::TempDir,
}

impl Deref for RedbFixture {
    type Target = RedbStore;
    fn deref(&self) -> &RedbStore {
        &self.store
    }
}

fn redb(chunk_bytes: u32) -> RedbFixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = cairn_store::redb_store::RedbOptions { chunk_bytes, cache_bytes: 8 << 20 };
    let store = RedbStore::open_with(dir.path(), options).expect("open store");
    RedbFixture { store, _dir: dir }
}

fn oid(name: &str) -> ObjectId {
    ObjectId::new(name)
}

fn v(seq: u64) -> Version {
    Version { epoch: 1, seq }
}

fn commit(store: &dyn ObjectStore, ops: Vec<Op>) -> Result<()> {
    store.submit(Transaction { ops }).blocking_recv().expect("store dropped a transaction")
}

fn ok(store: &dyn ObjectStore, ops: Vec<Op>) {
    commit(store, ops).expect("transaction commits");
}

fn errno_of<T: std::fmt::Debug>(r: Result<T>) -> i32 {
    r.expect_err("expected an error").errno
}

fn write(name: &str, offset: u64, data: &[u8]) -> Op {
    Op::Write { pg: PG, oid: oid(name), offset, data: Bytes::copy_from_slice(data) }
}

fn read_all(store: &dyn ObjectStore, name: &str) -> Vec<u8> {
    store.read(PG, &oid(name), 0, u64::MAX).expect("read").to_vec()
}

fn size_of(store: &dyn ObjectStore, name: &str) -> Option<u64> {
    store.stat(PG, &oid(name)).expect("stat").map(|m| m.size)
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn write_read_at_offsets(s: &dyn ObjectStore) {
    assert_eq!(size_of(s, "o"), None);
    assert_eq!(errno_of(s.read(PG, &oid("o"), 0, 10)), errno::ENOENT);
    ok(s, vec![write("o", 0, b"hello"), write("o", 10, b"world")]);
    assert_eq!(size_of(s, "o"), Some(15));
    assert_eq!(read_all(s, "o"), b"hello\0\0\0\0\0world");
    assert_eq!(&s.read(PG, &oid("o"), 12, 100).expect("read")[..], b"rld");
    assert_eq!(&s.read(PG, &oid("o"), 3, 4).expect("read")[..], b"lo\0\0");
    assert!(s.read(PG, &oid("o"), 15, 10).expect("read").is_empty());
    assert!(s.read(PG, &oid("o"), 1000, 10).expect("read").is_empty());
    assert!(s.read(PG, &oid("o"), u64::MAX, u64::MAX).expect("read").is_empty());
    // Overwrite across several chunks, partially covering the first and last.
    let long: Vec<u8> = (0..100u8).collect();
    ok(s, vec![write("o", 0, &long), write("o", 7, &[0xBB; 30])]);
    let mut want = long.clone();
    want[7..37].fill(0xBB);
    assert_eq!(read_all(s, "o"), want);
    assert_eq!(s.used_bytes().expect("used"), 100);
}

fn sparse_gaps_read_as_zeros(s: &dyn ObjectStore) {
    ok(s, vec![write("o", 1000, b"0123456789")]);
    assert_eq!(size_of(s, "o"), Some(1010));
    let data = read_all(s, "o");
    assert!(data[..1000].iter().all(|&x| x == 0));
    assert_eq!(&data[1000..], b"0123456789");
    // A write far past the end of a chunk-aligned object leaves a gap of whole holes.
    ok(s, vec![write("o", 70_000, b"x")]);
    let data = read_all(s, "o");
    assert_eq!(data.len(), 70_001);
    assert!(data[1010..70_000].iter().all(|&x| x == 0));
    assert_eq!(s.used_bytes().expect("used"), 70_001);
}

fn empty_write_and_touch_create_without_growing(s: &dyn ObjectStore) {
    ok(s, vec![Op::Touch { pg: PG, oid: oid("t") }, write("e", 100, b"")]);
    assert_eq!(size_of(s, "t"), Some(0));
    assert_eq!(size_of(s, "e"), Some(0));
    ok(s, vec![write("t", 0, b"abc"), Op::Touch { pg: PG, oid: oid("t") }]);
    assert_eq!(read_all(s, "t"), b"abc", "touch keeps data");
}

fn truncate_shrinks_and_grows_with_zeros(s: &dyn ObjectStore) {
    let data: Vec<u8> = (1..=50u8).collect();
    ok(s, vec![write("o", 0, &data)]);
    ok(s, vec![Op::Truncate { pg: PG, oid: oid("o"), size: 20 }]);
    assert_eq!(read_all(s, "o"), &data[..20]);
    ok(s, vec![Op::Truncate { pg: PG, oid: oid("o"), size: 45 }]);
    let mut want = data[..20].to_vec();
    want.resize(45, 0);
    assert_eq!(read_all(s, "o"), want, "growing must not resurrect old bytes");
    ok(s, vec![Op::Truncate { pg: PG, oid: oid("o"), size: 0 }]);
    assert_eq!(size_of(s, "o"), Some(0));
    ok(s, vec![Op::Truncate { pg: PG, oid: oid("new"), size: 33 }]);
    assert_eq!(read_all(s, "new"), vec![0; 33]);
    assert_eq!(s.used_bytes().expect("used"), 33);
}

fn zero_never_grows(s: &dyn ObjectStore) {
    ok(s, vec![write("o", 0, &[0xFF; 64])]);
    ok(s, vec![Op::Zero { pg: PG, oid: oid("o"), offset: 10, len: 5 }]);
    let mut want = vec![0xFF; 64];
    want[10..15].fill(0);
    assert_eq!(read_all(s, "o"), want, "zero inside");
    ok(s, vec![Op::Zero { pg: PG, oid: oid("o"), offset: 60, len: 100 }]);
    want[60..].fill(0);
    assert_eq!(read_all(s, "o"), want, "zero at the end keeps the size");
    ok(s, vec![Op::Zero { pg: PG, oid: oid("o"), offset: 100, len: 10 }]);
    assert_eq!(read_all(s, "o"), want, "zero past the end is ignored");
    ok(s, vec![Op::Zero { pg: PG, oid: oid("o"), offset: 0, len: 64 }]);
    assert_eq!(read_all(s, "o"), vec![0; 64], "zero everything keeps the size");
    // Writing again after zeroing whole chunks.
    ok(s, vec![write("o", 30, b"zz")]);
    want.fill(0);
    want[30..32].copy_from_slice(b"zz");
    assert_eq!(read_all(s, "o"), want);
    ok(s, vec![Op::Zero { pg: PG, oid: oid("fresh"), offset: 0, len: 10 }]);
    assert_eq!(size_of(s, "fresh"), Some(0), "zero creates an empty object");
}

fn remove_takes_everything_of_the_object(s: &dyn ObjectStore) {
    let o = oid("o");
    ok(
        s,
        vec![
            write("o", 0, b"data!"),
            Op::SetXattr { pg: PG, oid: o.clone(), key: "x".into(), value: b("1") },
            Op::OmapSet { pg: PG, oid: o.clone(), entries: vec![("k".into(), b("v"))] },
            Op::OmapSetHeader { pg: PG, oid: o.clone(), header: b("hdr") },
            write("keep", 0, b"k"),
        ],
    );
    ok(s, vec![Op::Remove { pg: PG, oid: o.clone() }]);
    assert_eq!(size_of(s, "o"), None);
    assert_eq!(errno_of(s.get_xattr(PG, &o, "x")), errno::ENOENT);
    assert_eq!(errno_of(s.omap_get_header(PG, &o)), errno::ENOENT);
    ok(s, vec![write("o", 5, b"!")]);
    assert_eq!(read_all(s, "o"), b"\0\0\0\0\0!", "recreated object has no old data");
    assert!(s.list_xattrs(PG, &o).expect("xattrs").is_empty());
    assert!(s.omap_list(PG, &o, "", "", 100).expect("omap").is_empty());
    assert!(s.omap_get_header(PG, &o).expect("header").is_empty());
    ok(s, vec![Op::Remove { pg: PG, oid: oid("never") }]);
    assert_eq!(size_of(s, "never"), None);
    assert_eq!(read_all(s, "keep"), b"k");
    assert_eq!(s.used_bytes().expect("used"), 7);
}

fn xattrs(s: &dyn ObjectStore) {
    let o = oid("o");
    assert_eq!(errno_of(s.get_xattr(PG, &o, "a")), errno::ENOENT);
    assert_eq!(errno_of(s.list_xattrs(PG, &o)), errno::ENOENT);
    ok(s, vec![Op::RmXattr { pg: PG, oid: o.clone(), key: "a".into() }]);
    assert_eq!(size_of(s, "o"), None, "rmxattr does not create");
    ok(
        s,
        vec![
            Op::SetXattr { pg: PG, oid: o.clone(), key: "b".into(), value: b("2") },
            Op::SetXattr { pg: PG, oid: o.clone(), key: "a".into(), value: b("1") },
            Op::SetXattr { pg: PG, oid: o.clone(), key: "a".into(), value: b("one") },
        ],
    );
    assert_eq!(size_of(s, "o"), Some(0), "setxattr creates");
    assert_eq!(s.get_xattr(PG, &o, "a").expect("a"), b("one"));
    assert_eq!(errno_of(s.get_xattr(PG, &o, "c")), errno::ENODATA);
    assert_eq!(s.list_xattrs(PG, &o).expect("list"), vec![("a".into(), b("one")), ("b".into(), b("2"))]);
    ok(s, vec![Op::RmXattr { pg: PG, oid: o.clone(), key: "a".into() }]);
    assert_eq!(s.list_xattrs(PG, &o).expect("list"), vec![("b".into(), b("2"))]);
    assert_eq!(errno_of(s.get_xattr(PG, &o, "a")), errno::ENODATA);
}

fn omap(s: &dyn ObjectStore) {
    let o = oid("o");
    assert_eq!(errno_of(s.omap_get(PG, &o, &["a".into()])), errno::ENOENT);
    assert_eq!(errno_of(s.omap_list(PG, &o, "", "", 10)), errno::ENOENT);
    ok(s, vec![Op::OmapRm { pg: PG, oid: o.clone(), keys: vec!["a".into()] }]);
    assert_eq!(size_of(s, "o"), None, "omap rm does not create");
    let entries: Vec<(String, Bytes)> =
        ["a", "b1", "b2", "b3", "c", "ba"].iter().map(|k| (k.to_string(), b(&format!("val-{k}")))).collect();
    ok(s, vec![Op::OmapSet { pg: PG, oid: o.clone(), entries }]);
    assert!(s.omap_get_header(PG, &o).expect("header").is_empty());
    let got = s.omap_get(PG, &o, &["c".into(), "zz".into(), "a".into()]).expect("get");
    assert_eq!(got, vec![("c".into(), b("val-c")), ("a".into(), b("val-a"))]);
    let keys = |start_after: &str, prefix: &str, max: usize| -> Vec<String> {
        s.omap_list(PG, &o, start_after, prefix, max).expect("list").into_iter().map(|(k, _)| k).collect()
    };
    assert_eq!(keys("", "", 100), ["a", "b1", "b2", "b3", "ba", "c"]);
    assert_eq!(keys("", "b", 100), ["b1", "b2", "b3", "ba"]);
    assert_eq!(keys("b1", "b", 2), ["b2", "b3"]);
    assert_eq!(keys("a", "", 3), ["b1", "b2", "b3"]);
    assert_eq!(keys("b3", "b", 100), ["ba"]);
    assert_eq!(keys("zzz", "b", 100), Vec::<String>::new());
    assert_eq!(keys("", "b", 0), Vec::<String>::new());
    assert_eq!(keys("", "d", 10), Vec::<String>::new());
    ok(
        s,
        vec![
            Op::OmapRm { pg: PG, oid: o.clone(), keys: vec!["b2".into(), "nope".into()] },
            Op::OmapSetHeader { pg: PG, oid: o.clone(), header: b("H") },
        ],
    );
    assert_eq!(keys("", "b", 100), ["b1", "b3", "ba"]);
    assert_eq!(s.omap_get_header(PG, &o).expect("header"), b("H"));
    ok(s, vec![Op::OmapClear { pg: PG, oid: o.clone() }]);
    assert!(keys("", "", 100).is_empty());
    assert!(s.omap_get_header(PG, &o).expect("header").is_empty(), "clear drops the header");
    assert_eq!(size_of(s, "o"), Some(0), "the object itself stays");
}

fn list_objects_pages_in_id_order(s: &dyn ObjectStore) {
    let mut ids: Vec<ObjectId> =
        ["m", "a", "zz", "b\0", "b", "aa", "rbd_data.1.0000000000000001"].iter().map(|n| oid(n)).collect();
    ids.push(ObjectId { namespace: "ns".into(), name: "a".into() });
    ids.push(ObjectId { namespace: "n".into(), name: "z".into() });
    let mut ops: Vec<Op> = ids.iter().map(|o| Op::Touch { pg: PG, oid: o.clone() }).collect();
    ops.push(Op::Touch { pg: OTHER_PG, oid: oid("other") });
    ok(s, ops);
    ids.sort();
    let mut listed = Vec::new();
    let mut after: Option<ObjectId> = None;
    loop {
        let page = s.list_objects(PG, after.as_ref(), 3).expect("list");
        assert!(page.len() <= 3);
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        listed.extend(page.into_iter().map(|(o, _)| o));
    }
    assert_eq!(listed, ids);
    let other = s.list_objects(OTHER_PG, None, 100).expect("list");
    assert_eq!(other.iter().map(|(o, _)| o.name.as_str()).collect::<Vec<_>>(), ["other"]);
    assert!(s.list_objects(PgId { pool: 9, seed: 9 }, None, 10).expect("list").is_empty());
}

fn set_meta_is_reported_by_stat_and_list(s: &dyn ObjectStore) {
    ok(s, vec![write("o", 0, b"abc"), Op::SetMeta { pg: PG, oid: oid("o"), version: v(4), mtime_ns: 99 }]);
    let meta = s.stat(PG, &oid("o")).expect("stat").expect("exists");
    assert_eq!((meta.size, meta.version, meta.mtime_ns), (3, v(4), 99));
    assert_eq!(s.list_objects(PG, None, 10).expect("list"), vec![(oid("o"), meta)]);
    ok(s, vec![Op::SetMeta { pg: PG, oid: oid("p"), version: v(5), mtime_ns: 1 }]);
    assert_eq!(size_of(s, "p"), Some(0), "setmeta creates");
}

fn pg_log(s: &dyn ObjectStore) {
    let append = |seq: u64| Op::LogAppend { pg: PG, version: v(seq), entry: b(&format!("e{seq}")) };
    ok(s, (1..=5).map(append).collect());
    ok(s, vec![Op::LogAppend { pg: OTHER_PG, version: v(1), entry: b("other") }]);
    let versions = |after: Version| -> Vec<u64> {
        s.log_entries(PG, after).expect("log").into_iter().map(|(v, _)| v.seq).collect()
    };
    assert_eq!(versions(Version::default()), [1, 2, 3, 4, 5]);
    assert_eq!(versions(v(2)), [3, 4, 5]);
    assert_eq!(s.log_entries(PG, v(4)).expect("log"), vec![(v(5), b("e5"))]);
    ok(s, vec![Op::LogTrim { pg: PG, upto: v(2) }, Op::LogTruncate { pg: PG, after: v(4) }]);
    assert_eq!(versions(Version::default()), [3, 4]);
    // Not after the last entry: the whole transaction fails and changes nothing.
    let err = commit(s, vec![write("o", 0, b"x"), append(4)]).expect_err("out of order");
    assert_eq!(err.errno, errno::EINVAL);
    assert_eq!(size_of(s, "o"), None);
    ok(s, vec![append(5), Op::LogAppend { pg: PG, version: Version { epoch: 2, seq: 1 }, entry: b("x") }]);
    assert_eq!(versions(Version::default()), [3, 4, 5, 1]);
    assert_eq!(s.log_entries(OTHER_PG, Version::default()).expect("log"), vec![(v(1), b("other"))]);
}

fn pg_and_osd_meta(s: &dyn ObjectStore) {
    assert_eq!(s.pg_meta(PG, "info").expect("meta"), None);
    assert_eq!(s.meta("superblock").expect("meta"), None);
    ok(
        s,
        vec![
            Op::PgMetaSet { pg: PG, key: "info".into(), value: b("i1") },
            Op::PgMetaSet { pg: OTHER_PG, key: "info".into(), value: b("other") },
            Op::MetaSet { key: "superblock".into(), value: b("sb") },
        ],
    );
    ok(s, vec![Op::PgMetaSet { pg: PG, key: "info".into(), value: b("i2") }]);
    assert_eq!(s.pg_meta(PG, "info").expect("meta"), Some(b("i2")));
    assert_eq!(s.pg_meta(PG, "inf").expect("meta"), None);
    assert_eq!(s.pg_meta(OTHER_PG, "info").expect("meta"), Some(b("other")));
    assert_eq!(s.meta("superblock").expect("meta"), Some(b("sb")));
}

fn list_pgs_counts_objects_logs_and_meta(s: &dyn ObjectStore) {
    let (p1, p2, p3) = (PgId { pool: 1, seed: 1 }, PgId { pool: 2, seed: 0 }, PgId { pool: 10, seed: 3 });
    assert!(s.list_pgs().expect("pgs").is_empty());
    ok(
        s,
        vec![
            Op::Touch { pg: p1, oid: oid("a") },
            Op::Touch { pg: p1, oid: oid("b") },
            Op::LogAppend { pg: p2, version: v(1), entry: b("e") },
            Op::PgMetaSet { pg: p3, key: "k".into(), value: b("v") },
            Op::MetaSet { key: "osd".into(), value: b("x") },
        ],
    );
    assert_eq!(s.list_pgs().expect("pgs"), vec![p1, p2, p3]);
    ok(s, vec![Op::Remove { pg: p1, oid: oid("a") }, Op::Remove { pg: p1, oid: oid("b") }]);
    ok(s, vec![Op::LogTrim { pg: p2, upto: v(1) }]);
    assert_eq!(s.list_pgs().expect("pgs"), vec![p3]);
}

fn remove_pg_removes_only_that_pg(s: &dyn ObjectStore) {
    let fill = |pg: PgId| {
        vec![
            Op::Write { pg, oid: oid("o"), offset: 0, data: Bytes::from(vec![7u8; 40]) },
            Op::SetXattr { pg, oid: oid("o"), key: "x".into(), value: b("1") },
            Op::OmapSet { pg, oid: oid("o"), entries: vec![("k".into(), b("v"))] },
            Op::OmapSetHeader { pg, oid: oid("o"), header: b("h") },
            Op::LogAppend { pg, version: v(1), entry: b("e") },
            Op::PgMetaSet { pg, key: "info".into(), value: b("i") },
        ]
    };
    ok(s, [fill(PG), fill(OTHER_PG)].concat());
    assert_eq!(s.used_bytes().expect("used"), 80);
    ok(s, vec![Op::RemovePg { pg: PG }]);
    assert_eq!(s.stat(PG, &oid("o")).expect("stat"), None);
    assert!(s.list_objects(PG, None, 10).expect("list").is_empty());
    assert!(s.log_entries(PG, Version::default()).expect("log").is_empty());
    assert_eq!(s.pg_meta(PG, "info").expect("meta"), None);
    assert_eq!(s.list_pgs().expect("pgs"), vec![OTHER_PG]);
    assert_eq!(s.used_bytes().expect("used"), 40);
    let o = oid("o");
    assert_eq!(s.read(OTHER_PG, &o, 0, 100).expect("read"), Bytes::from(vec![7u8; 40]));
    assert_eq!(s.get_xattr(OTHER_PG, &o, "x").expect("xattr"), b("1"));
    assert_eq!(s.omap_get(OTHER_PG, &o, &["k".into()]).expect("omap").len(), 1);
    assert_eq!(s.omap_get_header(OTHER_PG, &o).expect("header"), b("h"));
    assert_eq!(s.log_entries(OTHER_PG, Version::default()).expect("log").len(), 1);
    // The PG can be recreated from scratch, with no leftovers.
    ok(
        s,
        vec![Op::Touch { pg: PG, oid: o.clone() }, Op::LogAppend { pg: PG, version: v(1), entry: b("new") }],
    );
    assert!(s.list_xattrs(PG, &o).expect("xattrs").is_empty());
    assert!(s.read(PG, &o, 0, 100).expect("read").is_empty());
}

fn back_to_back_transactions_apply_in_order(s: &dyn ObjectStore) {
    const N: u64 = 64;
    let receivers: Vec<_> = (1..=N)
        .map(|i| {
            let ops = vec![
                write("o", i % 7, &i.to_le_bytes()),
                Op::SetXattr {
                    pg: PG,
                    oid: oid("o"),
                    key: "last".into(),
                    value: Bytes::copy_from_slice(&i.to_le_bytes()),
                },
                Op::LogAppend { pg: PG, version: v(i), entry: Bytes::copy_from_slice(&i.to_le_bytes()) },
            ];
            s.submit(Transaction { ops })
        })
        .collect();
    for rx in receivers {
        rx.blocking_recv().expect("resolved").expect("committed");
    }
    let mut model = Vec::new();
    for i in 1..=N {
        let at = (i % 7) as usize;
        if model.len() < at + 8 {
            model.resize(at + 8, 0);
        }
        model[at..at + 8].copy_from_slice(&i.to_le_bytes());
    }
    assert_eq!(read_all(s, "o"), model);
    assert_eq!(s.get_xattr(PG, &oid("o"), "last").expect("xattr"), Bytes::copy_from_slice(&N.to_le_bytes()));
    let log: Vec<u64> =
        s.log_entries(PG, Version::default()).expect("log").iter().map(|(v, _)| v.seq).collect();
    assert_eq!(log, (1..=N).collect::<Vec<_>>());
}

fn bad_transaction_in_a_batch_fails_alone(s: &dyn ObjectStore) {
    let txns = vec![
        Transaction { ops: vec![write("a", 0, b"first")] },
        Transaction {
            ops: vec![
                write("bad", 0, b"never"),
                Op::Truncate { pg: PG, oid: oid("bad"), size: MAX_OBJECT_SIZE_BYTES + 1 },
            ],
        },
        Transaction { ops: vec![write("a", 5, b"-second")] },
        Transaction { ops: vec![write("bad2", 0, b"x"), write("bad2", u64::MAX, b"y")] },
        Transaction { ops: vec![write("c", 0, b"third")] },
    ];
    let results: Vec<Option<i32>> = s
        .submit_many(txns)
        .into_iter()
        .map(|rx| rx.blocking_recv().expect("resolved").err().map(|e| e.errno))
        .collect();
    assert_eq!(results, [None, Some(errno::EFBIG), None, Some(errno::EINVAL), None]);
    assert_eq!(read_all(s, "a"), b"first-second");
    assert_eq!(read_all(s, "c"), b"third");
    assert_eq!(size_of(s, "bad"), None, "a failed transaction leaves no trace");
    assert_eq!(size_of(s, "bad2"), None);
    assert_eq!(errno_of(commit(s, vec![write("big", MAX_OBJECT_SIZE_BYTES, b"x")])), errno::EFBIG);
    ok(s, vec![write("big", MAX_OBJECT_SIZE_BYTES - 1, b"x")]);
    assert_eq!(size_of(s, "big"), Some(MAX_OBJECT_SIZE_BYTES));
}

macro_rules! for_every_store {
    ($($case:ident),* $(,)?) => {
        mod mem {
            $(#[test] fn $case() { super::$case(&cairn_store::MemStore::new()); })*
        }
        mod redb_tiny_chunks {
            $(#[test] fn $case() { super::$case(&*super::redb(16)); })*
        }
        mod redb_default_chunks {
            $(#[test] fn $case() {
                super::$case(&*super::redb(cairn_store::redb_store::DEFAULT_CHUNK_BYTES));
            })*
        }
    };
}

for_every_store!(
    write_read_at_offsets,
    sparse_gaps_read_as_zeros,
    empty_write_and_touch_create_without_growing,
    truncate_shrinks_and_grows_with_zeros,
    zero_never_grows,
    remove_takes_everything_of_the_object,
    xattrs,
    omap,
    list_objects_pages_in_id_order,
    set_meta_is_reported_by_stat_and_list,
    pg_log,
    pg_and_osd_meta,
    list_pgs_counts_objects_logs_and_meta,
    remove_pg_removes_only_that_pg,
    back_to_back_transactions_apply_in_order,
    bad_transaction_in_a_batch_fails_alone,
);

#[test]
fn mem_store_is_usable_through_the_trait_object() {
    let store: std::sync::Arc<dyn ObjectStore> = std::sync::Arc::new(MemStore::new());
    ok(&*store, vec![write("o", 0, b"x")]);
    assert_eq!(read_all(&*store, "o"), b"x");
}
