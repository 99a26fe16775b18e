//! libnbd's nbdinfo: export listing, export details and the allocation map.

mod common;

use bytes::Bytes;
use cairn_nbd::{BlockDevice, MemDevice, ZeroFlags};
use common::*;
use std::sync::Arc;

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).expect("nbdinfo JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nbdinfo_list_details_and_map() {
    if !have("nbdinfo") {
        return;
    }
    let alpha = Arc::new(MemDevice::new(16 * MIB).description("scratch volume").block_size(65536));
    alpha.write(0, Bytes::from(vec![1u8; 8192]), false).await.expect("write");
    alpha.write(MIB, Bytes::from(vec![2u8; 4096]), false).await.expect("write");
    alpha.write_zeroes(2 * MIB, 65536, ZeroFlags { may_trim: false, fua: false }).await.expect("zero");
    let beta = Arc::new(MemDevice::new(MIB).read_only(true));
    let ts = start(vec![("alpha", alpha.clone() as Arc<dyn BlockDevice>), ("beta", beta)]).await;
    let base = format!("nbd://127.0.0.1:{}", ts.port);

    // --list: both exports, with their sizes and flags (nbdinfo asks NBD_OPT_INFO for each).
    let out = run_ok("nbdinfo", &["--list", &base]).await;
    assert!(out.contains("alpha") && out.contains("beta"), "{out}");
    let v = json(&run_ok("nbdinfo", &["--json", "--list", &base]).await);
    let exports = v["exports"].as_array().expect("exports");
    assert_eq!(exports.len(), 2, "{v}");
    let by_name = |n: &str| exports.iter().find(|e| e["export-name"] == n).expect("export listed").clone();
    let a = by_name("alpha");
    assert_eq!(a["export-size"].as_u64(), Some(16 * MIB));
    assert_eq!(a["description"].as_str(), Some("scratch volume"));
    assert_eq!(a["is_read_only"].as_bool(), Some(false));
    assert_eq!(a["can_multi_conn"].as_bool(), Some(true));
    assert_eq!(a["can_fast_zero"].as_bool(), Some(true));
    assert_eq!(a["block_size_minimum"].as_u64(), Some(1));
    assert_eq!(a["block_size_preferred"].as_u64(), Some(65536));
    assert_eq!(a["block_size_maximum"].as_u64(), Some(32 * MIB));
    let b = by_name("beta");
    assert_eq!(b["export-size"].as_u64(), Some(MIB));
    assert_eq!(b["is_read_only"].as_bool(), Some(true));
    assert_eq!(b["can_trim"].as_bool(), Some(false));

    // Single export details: the negotiated protocol and the metadata context.
    let v = json(&run_ok("nbdinfo", &["--json", &format!("{base}/alpha")]).await);
    assert_eq!(v["protocol"].as_str(), Some("newstyle-fixed"), "{v}");
    assert_eq!(v["TLS"].as_bool(), Some(false));
    assert_eq!(v["exports"][0]["description"].as_str(), Some("scratch volume"), "NBD_INFO_DESCRIPTION");
    let contexts = v["exports"][0]["contexts"].as_array().expect("contexts");
    assert!(contexts.iter().any(|c| c == "base:allocation"), "{v}");

    // --map: data, allocated zeroes and holes where we put them.
    let v = json(&run_ok("nbdinfo", &["--json", "--map", &format!("{base}/alpha")]).await);
    let map: Vec<(u64, u64, u64)> = v
        .as_array()
        .expect("map array")
        .iter()
        .map(|e| {
            (
                e["offset"].as_u64().unwrap_or(0),
                e["length"].as_u64().unwrap_or(0),
                e["type"].as_u64().unwrap_or(9),
            )
        })
        .collect();
    let expected = vec![
        (0, 8192, 0),
        (8192, MIB - 8192, 3),
        (MIB, 4096, 0),
        (MIB + 4096, MIB - 4096, 3),
        (2 * MIB, 65536, 2),
        (2 * MIB + 65536, 14 * MIB - 65536, 3),
    ];
    assert_eq!(map, expected);
    let text = run_ok("nbdinfo", &["--map", &format!("{base}/alpha")]).await;
    assert!(text.contains("hole,zero") && text.contains("data") && text.contains("zero"), "{text}");

    ts.wait_idle().await;
}
