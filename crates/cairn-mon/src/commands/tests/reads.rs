//! Read commands: status, mon, osd, pool and pg listings, df.

use super::*;

#[test]
fn status_plain_has_cephs_sections() {
    let f = Fixture::new();
    let out = f.text(json!({"prefix": "status"}));
    assert!(
        out.starts_with(&format!("  cluster:\n    id:     {FSID}\n    health: HEALTH_OK\n \n  services:\n")),
        "{out}"
    );
    assert!(out.contains("    mon: 3 daemons, quorum a,b,c\n"), "{out}");
    assert!(out.contains("    osd: 3 osds: 3 up, 3 in\n"), "{out}");
    assert!(out.contains(" \n  data:\n    pools:   1 pools, 8 pgs\n"), "{out}");
    assert!(out.contains("    objects: 16 objects, 16 KiB\n"), "{out}");
    assert!(out.contains("    usage:   3 GiB used, 27 GiB / 30 GiB avail\n"), "{out}");
    assert!(out.contains("    pgs:     8 active+clean\n"), "{out}");
}

#[test]
fn status_json_has_cephs_fields() {
    let f = Fixture::new();
    let v = f.json(json!({"prefix": "status", "format": "json"}));
    assert_eq!(v["fsid"], FSID);
    assert_eq!(v["health"]["status"], "HEALTH_OK");
    assert_eq!(v["health"]["checks"], json!({}));
    assert_eq!(v["quorum_names"], json!(["a", "b", "c"]));
    assert_eq!(v["osdmap"]["num_osds"], 3);
    assert_eq!(v["osdmap"]["num_up_osds"], 3);
    assert_eq!(v["osdmap"]["num_in_osds"], 3);
    assert_eq!(v["osdmap"]["epoch"], f.map.epoch);
    let pgmap = &v["pgmap"];
    assert_eq!(pgmap["num_pgs"], 8);
    assert_eq!(pgmap["num_pools"], 1);
    assert_eq!(pgmap["num_objects"], 16);
    assert_eq!(pgmap["data_bytes"], 16 * 1024);
    assert_eq!(pgmap["bytes_used"], 3 * GIB);
    assert_eq!(pgmap["bytes_avail"], 27 * GIB);
    assert_eq!(pgmap["bytes_total"], 30 * GIB);
    assert_eq!(pgmap["pgs_by_state"], json!([{"state_name": "active+clean", "count": 8}]));
}

#[test]
fn status_shows_unknown_pgs_before_any_report() {
    let mut f = Fixture::new();
    f.pg_stats.clear();
    let out = f.text(json!({"prefix": "status"}));
    assert!(
        out.contains("    health: HEALTH_WARN\n            Reduced data availability: 8 pgs inactive\n"),
        "{out}"
    );
    assert!(out.contains("    pgs:     100.000% pgs unknown\n             8 unknown\n"), "{out}");
    let v = f.json(json!({"prefix": "status", "format": "json"}));
    assert_eq!(v["pgmap"]["unknown_pgs_ratio"], 1.0);
}

#[test]
fn status_groups_states_most_common_first() {
    let mut f = Fixture::new();
    let pg = PgId { pool: 1, seed: 3 };
    f.report(pg, "active+undersized+degraded", 2);
    let out = f.text(json!({"prefix": "status"}));
    assert!(
        out.contains("    pgs:     2/48 objects degraded (4.167%)\n             7 active+clean\n             1 active+undersized+degraded\n"),
        "{out}"
    );
}

#[test]
fn mon_dump_plain_and_json() {
    let f = Fixture::new();
    let out = f.reply(json!({"prefix": "mon dump"}));
    assert_eq!(out.status, "dumped monmap epoch 1");
    let text = String::from_utf8(out.data).unwrap();
    assert!(text.starts_with(&format!("epoch 1\nfsid {FSID}\n")), "{text}");
    assert!(text.contains("created 2021-06-01T10:00:00.000000+0000\n"), "{text}");
    let monitors =
        "0: v2:127.0.0.1:3300/0 mon.a\n1: v2:127.0.0.1:3301/0 mon.b\n2: v2:127.0.0.1:3302/0 mon.c\n";
    assert!(text.ends_with(monitors), "{text}");
    let v = f.json(json!({"prefix": "mon dump", "format": "json"}));
    assert_eq!(v["fsid"], FSID);
    assert_eq!(
        v["mons"][0],
        json!({
            "rank": 0, "name": "a",
            "public_addrs": {"addrvec": [{"type": "v2", "addr": "127.0.0.1:3300", "nonce": 0}]},
            "addr": "127.0.0.1:3300/0", "public_addr": "127.0.0.1:3300/0",
            "priority": 0, "weight": 0, "crush_location": "{}"
        })
    );
    assert_eq!(v["mons"][2]["name"], "c");
}

#[test]
fn quorum_and_mon_status_default_to_pretty_json() {
    let mut f = Fixture::new();
    let out = f.reply(json!({"prefix": "quorum_status"}));
    let text = String::from_utf8(out.data.clone()).unwrap();
    assert!(text.starts_with("{\n    \"") && text.ends_with("}\n"), "{text}");
    let v: Value = serde_json::from_slice(&out.data).unwrap();
    assert_eq!(v["election_epoch"], 5);
    assert_eq!(v["quorum"], json!([0, 1, 2]));
    assert_eq!(v["quorum_names"], json!(["a", "b", "c"]));
    assert_eq!(v["quorum_leader_name"], "a");
    assert_eq!(v["monmap"]["mons"].as_array().map(Vec::len), Some(3));

    let v = f.json(json!({"prefix": "mon_status", "format": "plain"}));
    assert_eq!(
        (v["name"].as_str(), v["rank"].as_i64(), v["state"].as_str()),
        (Some("a"), Some(0), Some("leader"))
    );
    f.quorum.self_id = 2;
    assert_eq!(f.json(json!({"prefix": "mon_status"}))["state"], "peon");
    f.quorum.in_quorum = vec![1, 3];
    assert_eq!(f.json(json!({"prefix": "mon_status"}))["state"], "electing");
}

#[test]
fn osd_tree_plain_matches_ceph_layout() {
    let f = Fixture::new();
    let out = f.text(json!({"prefix": "osd tree"}));
    let w = osd_weight(&f);
    let root = format!("{:.5}", 3.0 * f.map.osds[&0].crush_weight as f64 / 65536.0);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("ID  CLASS  WEIGHT   TYPE NAME       STATUS  REWEIGHT  PRI-AFF"));
    assert_eq!(lines.next().map(str::trim_end), Some(format!("-1         {root}  root default").as_str()));
    assert_eq!(lines.next().map(str::trim_end), Some(format!("-2         {w}      host node1").as_str()));
    assert_eq!(
        lines.next(),
        Some(format!(" 0         {w}          osd.0       up   1.00000  1.00000").as_str())
    );
    assert_eq!(words_of_line(&out, "osd.2"), ["2", &w, "osd.2", "up", "1.00000", "1.00000"]);
}

/// Every fixture OSD has the same CRUSH weight (capacity in TiB, with cairn-types' floor).
fn osd_weight(f: &Fixture) -> String {
    format!("{:.5}", f.map.osds[&0].crush_weight as f64 / 65536.0)
}

#[test]
fn osd_tree_json_and_out_osd() {
    let mut f = Fixture::new();
    f.exec(json!({"prefix": "osd out", "ids": ["1"]})).unwrap();
    f.exec(json!({"prefix": "osd down", "ids": ["1"]})).unwrap();
    let out = f.text(json!({"prefix": "osd tree"}));
    assert_eq!(words_of_line(&out, "osd.1"), ["1", &osd_weight(&f), "osd.1", "down", "0", "1.00000"]);
    let v = f.json(json!({"prefix": "osd tree", "format": "json"}));
    let nodes = v["nodes"].as_array().unwrap();
    assert_eq!(nodes[0]["type"], "root");
    assert_eq!(nodes[0]["children"], json!([-4, -3, -2]));
    let osd1 = nodes.iter().find(|n| n["id"] == 1).unwrap();
    assert_eq!((osd1["type"].as_str(), osd1["status"].as_str()), (Some("osd"), Some("down")));
    assert_eq!(osd1["reweight"], 0.0);
    assert_eq!(osd1["crush_weight"], f.map.osds[&1].crush_weight as f64 / 65536.0);
    assert_eq!(v["stray"], json!([]));
}

#[test]
fn osd_dump_plain_and_json() {
    let f = Fixture::new();
    let out = f.text(json!({"prefix": "osd dump"}));
    assert!(
        out.starts_with(&format!(
            "epoch {}\nfsid {FSID}\ncreated 2021-06-01T10:00:00.000000+0000\n",
            f.map.epoch
        )),
        "{out}"
    );
    let line = out.lines().find(|l| l.starts_with("pool 1 ")).unwrap();
    let created = f.map.pools[&1].created_epoch;
    assert_eq!(line, format!("pool 1 'volumes' replicated size 3 min_size 2 crush_rule 0 object_hash rjenkins pg_num 8 pgp_num 8 autoscale_mode off last_change {created} flags hashpspool stripe_width 0 application rbd"));
    assert!(out.contains("\nmax_osd 3\n"), "{out}");
    assert!(out.contains("osd.1 up   in  weight 1 up_from 3 up_thru 0 down_at 0 last_clean_interval [0,0) [v2:127.0.0.1:6801/0] [v2:127.0.0.1:6801/0] exists,up\n"), "{out}");
    let v = f.json(json!({"prefix": "osd dump", "format": "json"}));
    assert_eq!(v["epoch"], f.map.epoch);
    assert_eq!(v["fsid"], FSID);
    let pool = &v["pools"][0];
    assert_eq!((pool["pool"].as_u64(), pool["pool_name"].as_str()), (Some(1), Some("volumes")));
    assert_eq!((pool["size"].as_u64(), pool["min_size"].as_u64()), (Some(3), Some(2)));
    assert_eq!((pool["pg_num"].as_u64(), pool["pg_placement_num"].as_u64()), (Some(8), Some(8)));
    assert_eq!(pool["application_metadata"], json!({"rbd": {}}));
    assert_eq!((pool["quota_max_bytes"].as_u64(), pool["quota_max_objects"].as_u64()), (Some(0), Some(0)));
    let osd = &v["osds"][1];
    assert_eq!((osd["osd"].as_u64(), osd["up"].as_u64(), osd["in"].as_u64()), (Some(1), Some(1), Some(1)));
    assert_eq!(osd["weight"], 1.0);
    assert_eq!(osd["public_addr"], "127.0.0.1:6801/0");
}

#[test]
fn osd_stat_plain_and_json() {
    let mut f = Fixture::new();
    f.exec(json!({"prefix": "osd down", "ids": ["2"]})).unwrap();
    let e = f.map.epoch;
    assert_eq!(f.text(json!({"prefix": "osd stat"})), format!("3 osds: 2 up, 3 in; epoch: e{e}\n"));
    let v = f.json(json!({"prefix": "osd stat", "format": "json"}));
    assert_eq!(
        (v["num_osds"].as_u64(), v["num_up_osds"].as_u64(), v["num_in_osds"].as_u64()),
        (Some(3), Some(2), Some(3))
    );
    assert_eq!(v["epoch"], e);
}

#[test]
fn pool_listings() {
    let mut f = Fixture::new();
    f.exec(json!({"prefix": "osd pool create", "pool": "images", "pg_num": 4})).unwrap();
    assert_eq!(f.text(json!({"prefix": "osd pool ls"})), "volumes\nimages\n");
    assert_eq!(f.json(json!({"prefix": "osd pool ls", "format": "json"})), json!(["volumes", "images"]));
    let detail = f.text(json!({"prefix": "osd pool ls", "detail": "detail"}));
    assert!(detail.starts_with("pool 1 'volumes' replicated size 3 min_size 2 "), "{detail}");
    assert!(detail.contains("\npool 2 'images' replicated size 3 min_size 2 crush_rule 0 object_hash rjenkins pg_num 4 pgp_num 4 "), "{detail}");
    let v = f.json(json!({"prefix": "osd pool ls", "detail": "detail", "format": "json"}));
    assert_eq!((v[1]["pool_id"].as_u64(), v[1]["pool_name"].as_str()), (Some(2), Some("images")));
    assert_eq!(f.text(json!({"prefix": "osd lspools"})), "1 volumes,2 images,\n");
    assert_eq!(
        f.json(json!({"prefix": "osd lspools", "format": "json"})),
        json!([{"poolnum": 1, "poolname": "volumes"}, {"poolnum": 2, "poolname": "images"}])
    );
}

#[test]
fn pool_get_values() {
    let f = Fixture::new();
    assert_eq!(f.text(json!({"prefix": "osd pool get", "pool": "volumes", "var": "size"})), "size: 3\n");
    assert_eq!(
        f.json(json!({"prefix": "osd pool get", "pool": "volumes", "var": "size", "format": "json"})),
        json!({"pool": "volumes", "pool_id": 1, "size": 3})
    );
    let all = f.text(json!({"prefix": "osd pool get", "pool": "volumes", "var": "all"}));
    assert!(
        all.starts_with("size: 3\nmin_size: 2\npg_num: 8\npgp_num: 8\ncrush_rule: replicated_rule\n"),
        "{all}"
    );
    let e = f.error(json!({"prefix": "osd pool get", "pool": "volumes", "var": "colour"}));
    assert_eq!(e.errno, errno::EINVAL);
    let e = f.error(json!({"prefix": "osd pool get", "pool": "nope", "var": "size"}));
    assert_eq!((e.errno, e.message.as_str()), (errno::ENOENT, "unrecognized pool 'nope'"));
    let e = f.error(json!({"prefix": "osd pool get", "pool": "volumes"}));
    assert_eq!((e.errno, e.message.as_str()), (errno::EINVAL, "bad or missing field 'var'"));
}

#[test]
fn pool_application_get() {
    let f = Fixture::new();
    let v = f.json(json!({"prefix": "osd pool application get", "pool": "volumes"}));
    assert_eq!(v, json!({"rbd": {}}));
    let v = f.json(json!({"prefix": "osd pool application get"}));
    assert_eq!(v, json!({"volumes": {"rbd": {}}}));
    let e = f.error(json!({"prefix": "osd pool application get", "pool": "volumes", "app": "rgw"}));
    assert_eq!((e.errno, e.message.as_str()), (errno::ENOENT, "pool 'volumes' has no application 'rgw'"));
}

#[test]
fn get_quota_plain_and_json() {
    let mut f = Fixture::new();
    let cmd = json!({"prefix": "osd pool get-quota", "pool": "volumes"});
    assert_eq!(f.text(cmd.clone()), "quotas for pool 'volumes':\n  max objects: N/A\n  max bytes  : N/A\n");
    f.exec(json!({"prefix": "osd pool set-quota", "pool": "volumes", "field": "max_bytes", "val": "10G"}))
        .unwrap();
    f.exec(json!({"prefix": "osd pool set-quota", "pool": "volumes", "field": "max_objects", "val": "10K"}))
        .unwrap();
    let text = f.text(cmd);
    assert!(text.contains("  max objects: 10k objects  (current num objects: 16 objects)\n"), "{text}");
    assert!(text.contains("  max bytes  : 10 GiB  (current num bytes: 16384 bytes)\n"), "{text}");
    let v = f.json(json!({"prefix": "osd pool get-quota", "pool": "volumes", "format": "json"}));
    assert_eq!(v["pool_name"], "volumes");
    assert_eq!(v["pool_id"], 1);
    assert_eq!(v["quota_max_bytes"], 10 * GIB);
    assert_eq!(v["quota_max_objects"], 10_000);
    assert_eq!(v["current_num_objects"], 16);
}

#[test]
fn df_plain_tables() {
    let f = Fixture::new();
    let out = f.text(json!({"prefix": "df"}));
    assert!(
        out.starts_with("--- RAW STORAGE ---\nCLASS    SIZE   AVAIL   USED  RAW USED  %RAW USED\n"),
        "{out}"
    );
    assert_eq!(
        words_of_line(&out, "TOTAL"),
        ["TOTAL", "30", "GiB", "27", "GiB", "3", "GiB", "3", "GiB", "10.00"]
    );
    assert!(
        out.contains("\n--- POOLS ---\nPOOL     ID  PGS  STORED  OBJECTS    USED  %USED  MAX AVAIL\n"),
        "{out}"
    );
    assert_eq!(
        words_of_line(&out, "volumes"),
        ["volumes", "1", "8", "16", "KiB", "16", "48", "KiB", "0", "8.5", "GiB"]
    );
    let detail = f.text(json!({"prefix": "df", "detail": "detail"}));
    assert!(detail.contains("  QUOTA OBJECTS  QUOTA BYTES  DIRTY  USED COMPR  UNDER COMPR\n"), "{detail}");
    let words = words_of_line(&detail, "volumes");
    assert_eq!(words[words.len() - 7..], ["N/A", "N/A", "N/A", "0", "B", "0", "B"]);
}

#[test]
fn df_json_fields() {
    let f = Fixture::new();
    let v = f.json(json!({"prefix": "df", "format": "json"}));
    assert_eq!(v["stats"]["total_bytes"], 30 * GIB);
    assert_eq!(v["stats"]["total_avail_bytes"], 27 * GIB);
    assert_eq!(v["stats"]["total_used_bytes"], 3 * GIB);
    assert_eq!(v["stats"]["total_used_raw_bytes"], 3 * GIB);
    let p = &v["pools"][0];
    assert_eq!((p["name"].as_str(), p["id"].as_u64()), (Some("volumes"), Some(1)));
    let s = &p["stats"];
    assert_eq!(s["stored"], 16 * 1024);
    assert_eq!(s["objects"], 16);
    assert_eq!(s["bytes_used"], 3 * 16 * 1024);
    // Each OSD: 9 GiB avail minus 5 % of 10 GiB kept back, times 3 OSDs of equal weight, / size 3.
    let max_avail = (9 * GIB - GIB / 2) as f64 * 3.0 / 3.0;
    assert_eq!(s["max_avail"].as_u64(), Some(max_avail as u64));
    let pct = s["percent_used"].as_f64().unwrap();
    let want = (3.0 * 16384.0) / (3.0 * 16384.0 + 3.0 * max_avail);
    assert!((pct - want).abs() < 1e-9, "{pct} vs {want}");
    assert!(s.get("quota_bytes").is_none());
    let v = f.json(json!({"prefix": "df", "detail": "detail", "format": "json"}));
    assert_eq!(v["pools"][0]["stats"]["quota_bytes"], 0);
}

#[test]
fn pg_stat_plain_and_json() {
    let f = Fixture::new();
    assert_eq!(
        f.text(json!({"prefix": "pg stat"})),
        "8 pgs: 8 active+clean; 16 KiB data, 3 GiB used, 27 GiB / 30 GiB avail\n"
    );
    let v = f.json(json!({"prefix": "pg stat", "format": "json"}));
    let s = &v["pg_summary"];
    assert_eq!(s["num_pgs"], 8);
    assert_eq!(s["num_pg_by_state"], json!([{"name": "active+clean", "num": 8}]));
    assert_eq!(s["num_bytes"], 16 * 1024);
    assert_eq!(s["total_bytes"], 30 * GIB);
    assert_eq!(s["total_avail_bytes"], 27 * GIB);
}

#[test]
fn pg_dump_plain_and_json() {
    let mut f = Fixture::new();
    let unreported = PgId { pool: 1, seed: 7 };
    f.pg_stats.remove(&unreported);
    let out = f.reply(json!({"prefix": "pg dump"}));
    assert_eq!(out.status, "dumped all");
    let text = String::from_utf8(out.data).unwrap();
    assert!(text.contains("\nPG_STAT  OBJECTS  MISSING_ON_PRIMARY  DEGRADED  MISPLACED  UNFOUND  BYTES  LOG  DISK_LOG  STATE"), "{text}");
    let row = words_of_line(&text, "1.7 ");
    assert_eq!(row[9], "unknown");
    let v = f.json(json!({"prefix": "pg dump", "format": "json"}));
    let stats = v["pg_map"]["pg_stats"].as_array().unwrap();
    assert_eq!(stats.len(), 8);
    let pg0 = &stats[0];
    let acting = &f.map.intervals[&PgId { pool: 1, seed: 0 }].acting;
    assert_eq!(pg0["pgid"], "1.0");
    assert_eq!(pg0["state"], "active+clean");
    assert_eq!(pg0["stat_sum"]["num_objects"], 2);
    assert_eq!(pg0["acting"], json!(acting));
    assert_eq!(pg0["up"], json!(acting));
    assert_eq!(pg0["acting_primary"], acting[0]);
    assert_eq!(pg0["up_primary"], acting[0]);
    assert_eq!(stats[7]["state"], "unknown");
}

#[test]
fn pgs_of_a_down_primary_turn_stale() {
    let mut f = Fixture::new();
    let pg = PgId { pool: 1, seed: 0 };
    let primary = f.map.intervals[&pg].acting[0];
    f.exec(json!({"prefix": "osd down", "ids": [primary.to_string()]})).unwrap();
    let v = f.json(json!({"prefix": "pg dump", "format": "json"}));
    assert_eq!(v["pg_map"]["pg_stats"][0]["state"], "stale+active+clean");
}

#[test]
fn pgs_backfilling_under_pg_temp_are_remapped_and_misplaced() {
    let mut f = Fixture::new();
    let pg = PgId { pool: 1, seed: 3 };
    let up = f.map.intervals[&pg].up.clone();
    let temp = vec![up[1], up[0], up[2]];
    f.apply(MapCommand::PgTemp { pg, acting: temp.clone(), now_secs: T0 });
    f.report(pg, "active+remapped+backfilling", 2);

    let out = f.text(json!({"prefix": "status"}));
    assert!(out.contains("    osd: 3 osds: 3 up, 3 in; 1 remapped pgs\n"), "{out}");
    assert!(out.contains("2/48 objects misplaced (4.167%)"), "{out}");
    assert!(!out.contains("degraded"), "{out}");
    let v = f.json(json!({"prefix": "status", "format": "json"}));
    assert_eq!(v["osdmap"]["num_remapped_pgs"], 1);
    assert_eq!(v["pgmap"]["misplaced_objects"], 2);
    assert!(v["pgmap"].get("degraded_objects").is_none());

    let v = f.json(json!({"prefix": "osd dump", "format": "json"}));
    assert_eq!(v["pg_temp"], json!([{"pgid": "1.3", "osds": temp}]));
    let out = f.text(json!({"prefix": "osd dump"}));
    assert!(out.contains(&format!("\npg_temp 1.3 [{},{},{}]\n", temp[0], temp[1], temp[2])), "{out}");

    let v = f.json(json!({"prefix": "pg dump", "format": "json"}));
    let p = &v["pg_map"]["pg_stats"][3];
    assert_eq!(p["state"], "active+remapped+backfilling");
    assert_eq!(p["up"], json!(up));
    assert_eq!(p["acting"], json!(temp));
    assert_eq!(
        (p["up_primary"].as_u64(), p["acting_primary"].as_u64()),
        (Some(up[0] as u64), Some(temp[0] as u64))
    );
    assert_eq!(p["stat_sum"]["num_objects_misplaced"], 2);
    assert_eq!(p["stat_sum"]["num_objects_degraded"], 0);
}
