//! Health checks: codes, severities, Ceph's summary and detail wording, plain and JSON forms.

use super::*;

fn health_text(f: &Fixture) -> String {
    f.text(json!({"prefix": "health"}))
}

fn detail_text(f: &Fixture) -> String {
    f.text(json!({"prefix": "health", "detail": "detail"}))
}

#[test]
fn healthy_cluster_is_health_ok() {
    let f = Fixture::new();
    assert_eq!(health_text(&f), "HEALTH_OK\n");
    assert_eq!(detail_text(&f), "HEALTH_OK\n");
    let v = f.json(json!({"prefix": "health", "format": "json"}));
    assert_eq!(v, json!({"status": "HEALTH_OK", "checks": {}, "mutes": []}));
}

#[test]
fn osd_down_with_host_and_detail() {
    let mut f = Fixture::new();
    assert_eq!(f.exec(json!({"prefix": "osd down", "ids": ["1"]})).unwrap(), "marked down osd.1. ");
    let line = health_text(&f);
    assert!(line.starts_with("HEALTH_WARN 1 osds down; 1 host (1 osds) down"), "{line}");
    let detail = detail_text(&f);
    assert!(
        detail.contains("[WRN] OSD_DOWN: 1 osds down\n    osd.1 (root=default,host=node2) is down\n"),
        "{detail}"
    );
    assert!(
        detail.contains(
            "[WRN] OSD_HOST_DOWN: 1 host (1 osds) down\n    host node2 (root=default) (1 osds) is down\n"
        ),
        "{detail}"
    );
    let v = f.json(json!({"prefix": "health", "detail": "detail", "format": "json"}));
    assert_eq!(v["status"], "HEALTH_WARN");
    let c = &v["checks"]["OSD_DOWN"];
    assert_eq!(c["severity"], "HEALTH_WARN");
    assert_eq!(c["summary"], json!({"message": "1 osds down", "count": 1}));
    assert_eq!(c["detail"], json!([{"message": "osd.1 (root=default,host=node2) is down"}]));
    let brief = f.json(json!({"prefix": "health", "format": "json"}));
    assert!(brief["checks"]["OSD_DOWN"].get("detail").is_none());
}

#[test]
fn down_and_out_osd_is_not_counted_down() {
    let mut f = Fixture::new();
    f.exec(json!({"prefix": "osd down", "ids": ["1"]})).unwrap();
    f.exec(json!({"prefix": "osd out", "ids": ["1"]})).unwrap();
    let v = f.json(json!({"prefix": "health", "format": "json"}));
    assert!(v["checks"].get("OSD_DOWN").is_none(), "{v}");
    assert!(v["checks"].get("OSD_HOST_DOWN").is_some(), "{v}");
}

#[test]
fn mon_down() {
    let mut f = Fixture::new();
    f.quorum.in_quorum = vec![1, 2];
    let detail = detail_text(&f);
    assert!(detail.starts_with("HEALTH_WARN 1/3 mons down, quorum a,b\n"), "{detail}");
    assert!(
        detail.contains("[WRN] MON_DOWN: 1/3 mons down, quorum a,b\n    mon.c (rank 2) addr v2:127.0.0.1:3302/0 is down (out of quorum)\n"),
        "{detail}"
    );
    let status = f.text(json!({"prefix": "status"}));
    assert!(status.contains("    mon: 3 daemons, quorum a,b, out of quorum: c\n"), "{status}");
}

#[test]
fn unreported_pgs_are_inactive() {
    let mut f = Fixture::new();
    f.pg_stats.clear();
    let v = f.json(json!({"prefix": "health", "detail": "detail", "format": "json"}));
    let c = &v["checks"]["PG_AVAILABILITY"];
    assert_eq!(c["summary"]["message"], "Reduced data availability: 8 pgs inactive");
    assert_eq!(c["summary"]["count"], 8);
    let first = c["detail"][0]["message"].as_str().unwrap();
    assert!(first.starts_with("pg 1.0 is unknown, acting ["), "{first}");
}

#[test]
fn peering_incomplete_and_degraded_pgs() {
    let mut f = Fixture::new();
    f.report(PgId { pool: 1, seed: 0 }, "peering", 0);
    f.report(PgId { pool: 1, seed: 1 }, "incomplete", 0);
    f.report(PgId { pool: 1, seed: 2 }, "active+undersized+degraded", 2);
    f.report(PgId { pool: 1, seed: 3 }, "active+undersized+degraded", 1);
    let v = f.json(json!({"prefix": "health", "detail": "detail", "format": "json"}));
    let avail = &v["checks"]["PG_AVAILABILITY"];
    assert_eq!(
        avail["summary"]["message"],
        "Reduced data availability: 2 pgs inactive, 1 pg peering, 1 pg incomplete"
    );
    assert_eq!(avail["severity"], "HEALTH_WARN");
    let details: Vec<&str> =
        avail["detail"].as_array().unwrap().iter().filter_map(|d| d["message"].as_str()).collect();
    assert!(details.iter().any(|d| d.starts_with("pg 1.1 is incomplete, acting [")), "{details:?}");
    let degraded = &v["checks"]["PG_DEGRADED"];
    assert_eq!(
        degraded["summary"]["message"],
        "Degraded data redundancy: 3/48 objects degraded (6.250%), 2 pgs degraded, 2 pgs undersized"
    );
    assert_eq!(degraded["summary"]["count"], 2);
}

#[test]
fn inconsistent_pg_is_health_err() {
    let mut f = Fixture::new();
    f.report(PgId { pool: 1, seed: 4 }, "active+clean+inconsistent", 0);
    let line = health_text(&f);
    assert_eq!(line, "HEALTH_ERR Possible data damage: 1 pg inconsistent\n");
}

#[test]
fn pool_without_application() {
    let mut f = Fixture::new();
    f.exec(json!({"prefix": "osd pool create", "pool": "images", "pg_num": 4})).unwrap();
    f.report_all("active+clean");
    let detail = detail_text(&f);
    assert!(detail.starts_with("HEALTH_WARN application not enabled on 1 pool(s)\n"), "{detail}");
    assert!(detail.contains("[WRN] POOL_APP_NOT_ENABLED: application not enabled on 1 pool(s)\n    application not enabled on pool 'images'\n    use 'cairn osd pool application enable <pool-name> <app-name>', where <app-name> is 'cephfs', 'rbd', 'rgw', or freeform for custom applications.\n"), "{detail}");
    f.exec(json!({"prefix": "osd pool application enable", "pool": "images", "app": "rbd"})).unwrap();
    assert_eq!(health_text(&f), "HEALTH_OK\n");
}

#[test]
fn pool_quotas_full_and_nearfull() {
    let mut f = Fixture::new();
    f.exec(json!({"prefix": "osd pool set-quota", "pool": "volumes", "field": "max_objects", "val": "18"}))
        .unwrap();
    let detail = detail_text(&f);
    assert!(
        detail
            .contains("[WRN] POOL_NEAR_FULL: 1 pools nearfull\n    pool 'volumes' has 16 objects (max 18)\n"),
        "{detail}"
    );
    f.exec(json!({"prefix": "osd pool set-quota", "pool": "volumes", "field": "max_objects", "val": "16"}))
        .unwrap();
    let detail = detail_text(&f);
    assert!(
        detail
            .contains("[WRN] POOL_FULL: 1 pool(s) full\n    pool 'volumes' is full (running out of quota)\n"),
        "{detail}"
    );
    assert!(!detail.contains("POOL_NEAR_FULL"), "{detail}");
}

#[test]
fn full_osd_is_health_err() {
    let mut f = Fixture::new();
    if let Some(s) = f.osd_stats.get_mut(&2) {
        s.used_bytes = 96 * GIB / 10;
        s.avail_bytes = 4 * GIB / 10;
    }
    if let Some(s) = f.osd_stats.get_mut(&1) {
        s.used_bytes = 9 * GIB;
        s.avail_bytes = GIB;
    }
    let v = f.json(json!({"prefix": "health", "detail": "detail", "format": "json"}));
    assert_eq!(v["status"], "HEALTH_ERR");
    assert_eq!(v["checks"]["OSD_FULL"]["detail"], json!([{"message": "osd.2 is full"}]));
    assert_eq!(v["checks"]["OSD_NEARFULL"]["summary"]["message"], "1 nearfull osd(s)");
}

#[test]
fn too_few_osds() {
    let mut f = Fixture::bare();
    f.map.osds.retain(|id, _| *id == 0);
    let line = health_text(&f);
    assert_eq!(line, "HEALTH_WARN OSD count 1 < osd_pool_default_size 3\n");
}

#[test]
fn pool_marked_full_by_the_leader() {
    let mut f = Fixture::new();
    f.apply(MapCommand::PoolSetFull { pool: 1, full: true, now_secs: T0 });
    let detail = detail_text(&f);
    assert!(
        detail
            .contains("[WRN] POOL_FULL: 1 pool(s) full\n    pool 'volumes' is full (running out of quota)\n"),
        "{detail}"
    );
    let dump = f.text(json!({"prefix": "osd dump"}));
    assert!(dump.contains(" flags hashpspool,full,full_quota stripe_width 0"), "{dump}");
    let v = f.json(json!({"prefix": "osd dump", "format": "json"}));
    assert_eq!(v["pools"][0]["flags_names"], "hashpspool,full,full_quota");
}
