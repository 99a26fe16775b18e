//! Write commands: what they propose, what they refuse (errno and wording), and the status
//! after the change is applied.

use super::*;

#[test]
fn pool_create_proposes_and_reports() {
    let mut f = Fixture::new();
    let cmd = json!({"prefix": "osd pool create", "pool": "images", "pg_num": 64});
    let plan = f.plan(cmd.clone()).unwrap();
    let want = MapCommand::PoolCreate {
        name: "images".into(),
        pg_num: Some(64),
        pgp_num: None,
        size: None,
        now_secs: T0 + 3600,
    };
    assert_eq!(plan, Plan::Propose(want));
    assert_eq!(f.exec(cmd.clone()).unwrap(), "pool 'images' created");
    // Ceph 16 answers 0 when the pool is already there; Cairn answers EEXIST.
    let e = f.error(cmd);
    assert_eq!((e.errno, e.message.as_str()), (errno::EEXIST, "pool 'images' already exists"));
    let with_rule = json!({"prefix": "osd pool create", "pool": "vms", "pg_num": 8, "pgp_num": 8,
                           "pool_type": "replicated", "erasure_code_profile": "replicated_rule", "size": 2});
    assert_eq!(f.exec(with_rule).unwrap(), "pool 'vms' created");
    assert_eq!(f.map.pool_by_name("vms").map(|p| p.size), Some(2));
}

#[test]
fn pool_create_refusals() {
    let f = Fixture::new();
    let e = f.error(json!({"prefix": "osd pool create", "pool": "x", "pg_num": "abc"}));
    assert_eq!((e.errno, e.message.as_str()), (errno::EINVAL, "bad or missing field 'pg_num'"));
    let e = f.error(json!({"prefix": "osd pool create", "pool": "x", "pg_num": 0}));
    assert_eq!(e.errno, errno::EINVAL);
    assert!(e.message.starts_with("'pg_num' must be greater than 0"), "{}", e.message);
    let e = f.error(json!({"prefix": "osd pool create", "pg_num": 8}));
    assert_eq!((e.errno, e.message.as_str()), (errno::EINVAL, "bad or missing field 'pool'"));
    let e = f.error(json!({"prefix": "osd pool create", "pool": "x", "rule": "fast"}));
    assert_eq!((e.errno, e.message.as_str()), (errno::ENOENT, "specified rule 'fast' doesn't exist"));
    let e = f.error(json!({"prefix": "osd pool create", "pool": "x", "pool_type": "erasure"}));
    assert_eq!(e.errno, errno::EOPNOTSUPP);
    // A numeric string is what some clients send; it is accepted.
    assert!(matches!(
        f.plan(json!({"prefix": "osd pool create", "pool": "x", "pg_num": "16"})),
        Ok(Plan::Propose(_))
    ));
}

#[test]
fn pool_rm_needs_name_twice_and_the_flag() {
    let mut f = Fixture::new();
    let warning = "WARNING: this will *PERMANENTLY DESTROY* all data stored in pool volumes.  If you are *ABSOLUTELY CERTAIN* that is what you want, pass the pool name *twice*, followed by --yes-i-really-really-mean-it.";
    for cmd in [
        json!({"prefix": "osd pool rm", "pool": "volumes"}),
        json!({"prefix": "osd pool rm", "pool": "volumes", "pool2": "volumes"}),
        json!({"prefix": "osd pool delete", "pool": "volumes", "pool2": "images", "yes_i_really_really_mean_it": true}),
    ] {
        let e = f.error(cmd);
        assert_eq!((e.errno, e.message.as_str()), (errno::EPERM, warning));
    }
    let gone = json!({"prefix": "osd pool rm", "pool": "nope"});
    let e = f.error(gone);
    assert_eq!((e.errno, e.message.as_str()), (errno::ENOENT, "pool 'nope' does not exist"));
    let rm = json!({"prefix": "osd pool rm", "pool": "volumes", "pool2": "volumes", "yes_i_really_really_mean_it": true});
    f.map.settings.allow_pool_delete = false;
    let e = f.error(rm.clone());
    assert_eq!(e.errno, errno::EPERM);
    assert!(
        e.message.starts_with("pool deletion is disabled; you must first set the mon_allow_pool_delete"),
        "{}",
        e.message
    );
    f.map.settings.allow_pool_delete = true;
    assert_eq!(f.exec(rm).unwrap(), "pool 'volumes' removed");
    assert!(f.map.pool_by_name("volumes").is_none());
}

#[test]
fn pool_set() {
    let mut f = Fixture::new();
    let cmd = json!({"prefix": "osd pool set", "pool": "volumes", "var": "size", "val": "2"});
    assert_eq!(f.exec(cmd).unwrap(), "set pool 1 size to 2");
    assert_eq!(f.map.pools[&1].size, 2);
    assert_eq!(
        f.exec(json!({"prefix": "osd pool set", "pool": "volumes", "var": "min_size", "val": 1})).unwrap(),
        "set pool 1 min_size to 1"
    );
    let e = f.error(json!({"prefix": "osd pool set", "pool": "nope", "var": "size", "val": "2"}));
    assert_eq!((e.errno, e.message.as_str()), (errno::ENOENT, "unrecognized pool 'nope'"));
    let e = f.error(json!({"prefix": "osd pool set", "pool": "volumes", "var": "size"}));
    assert_eq!((e.errno, e.message.as_str()), (errno::EINVAL, "bad or missing field 'val'"));
}

#[test]
fn application_enable() {
    let mut f = Fixture::new();
    f.exec(json!({"prefix": "osd pool create", "pool": "images"})).unwrap();
    let rbd = json!({"prefix": "osd pool application enable", "pool": "images", "app": "rbd"});
    assert_eq!(f.exec(rbd.clone()).unwrap(), "enabled application 'rbd' on pool 'images'");
    assert_eq!(f.reply(rbd).status, "enabled application 'rbd' on pool 'images'");
    let rgw = json!({"prefix": "osd pool application enable", "pool": "images", "app": "rgw"});
    let e = f.error(rgw);
    assert_eq!(e.errno, errno::EPERM);
    assert_eq!(e.message, "Are you SURE? Pool 'images' already has an enabled application; pass --yes-i-really-mean-it to proceed anyway");
    let forced = json!({"prefix": "osd pool application enable", "pool": "images", "app": "rgw", "yes_i_really_mean_it": true});
    f.exec(forced).unwrap();
    assert_eq!(
        f.json(json!({"prefix": "osd pool application get", "pool": "images"})),
        json!({"rbd": {}, "rgw": {}})
    );
    let e = f.error(json!({"prefix": "osd pool application enable", "pool": "nope", "app": "rbd"}));
    assert_eq!(e.errno, errno::ENOENT);
}

#[test]
fn set_quota_parses_units() {
    let mut f = Fixture::new();
    let set = |field: &str, val: &str| json!({"prefix": "osd pool set-quota", "pool": "volumes", "field": field, "val": val});
    assert_eq!(
        f.exec(set("max_bytes", "10G")).unwrap(),
        "set-quota max_bytes = 10737418240 for pool volumes"
    );
    assert_eq!(f.map.pools[&1].quota_max_bytes, 10 * GIB);
    f.exec(set("max_bytes", "512Ki")).unwrap();
    assert_eq!(f.map.pools[&1].quota_max_bytes, 512 * 1024);
    assert_eq!(f.exec(set("max_objects", "10K")).unwrap(), "set-quota max_objects = 10000 for pool volumes");
    f.exec(set("max_objects", "0")).unwrap();
    assert_eq!(f.map.pools[&1].quota_max_objects, 0);
    let e = f.error(set("max_bytes", "abc"));
    assert_eq!(e.errno, errno::EINVAL);
    assert!(e.message.starts_with("error parsing value 'abc': "), "{}", e.message);
    let e = f.error(set("max_bytes", "10Q"));
    assert!(e.message.contains("unit prefix not recognized"), "{}", e.message);
    let e = f.error(set("max_size", "1"));
    assert_eq!(
        (e.errno, e.message.as_str()),
        (errno::EINVAL, "unrecognized field 'max_size'; should be 'max_bytes' or 'max_objects'")
    );
}

#[test]
fn osd_down_out_in() {
    let mut f = Fixture::new();
    let down = json!({"prefix": "osd down", "ids": ["osd.1"]});
    assert_eq!(
        f.plan(down.clone()).unwrap(),
        Plan::Propose(MapCommand::OsdDown { ids: vec![1], now_secs: T0 + 3600 })
    );
    assert_eq!(f.exec(down.clone()).unwrap(), "marked down osd.1. ");
    assert!(!f.map.osds[&1].up);
    assert_eq!(f.reply(down).status, "osd.1 is already down. ");
    let out = json!({"prefix": "osd out", "ids": ["osd.1", "2"]});
    let plan = f.plan(out.clone()).unwrap();
    assert_eq!(
        plan,
        Plan::Propose(MapCommand::OsdOut { ids: vec![1, 2], by_operator: true, now_secs: T0 + 3600 })
    );
    assert_eq!(f.exec(out).unwrap(), "marked out osd.1. marked out osd.2. ");
    assert_eq!(
        f.exec(json!({"prefix": "osd in", "ids": ["all"]})).unwrap(),
        "marked in osd.1. marked in osd.2. "
    );
    assert!(f.map.osds.values().all(|o| o.in_cluster));
    let e = f.error(json!({"prefix": "osd down", "ids": ["7"]}));
    assert_eq!((e.errno, e.message.as_str()), (errno::ENOENT, "osd.7 does not exist"));
    let e = f.error(json!({"prefix": "osd out", "ids": ["bogus"]}));
    assert_eq!(e.errno, errno::EINVAL);
    let e = f.error(json!({"prefix": "osd in"}));
    assert_eq!((e.errno, e.message.as_str()), (errno::EINVAL, "bad or missing field 'ids'"));
}
