//! fio's `nbd` engine (libnbd): concurrent random writes from 4 connections, each verified.

mod common;

use cairn_nbd::{BlockDevice, MemDevice, MEM_PAGE_BYTES};
use common::*;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fio_randwrite_iodepth16_numjobs4_verify_crc32c() {
    if !have("fio") {
        return;
    }
    let size = 64 * MIB;
    let per_job = 16 * MIB;
    let dev = Arc::new(MemDevice::new(size));
    let ts = start(vec![("fio", dev.clone() as Arc<dyn BlockDevice>)]).await;
    let uri = ts.uri("fio");
    let out = run(
        "fio",
        &[
            "--name=nbd-verify",
            "--ioengine=nbd",
            &format!("--uri={uri}"),
            "--rw=randwrite",
            "--bs=4k",
            "--iodepth=16",
            "--numjobs=4",
            "--size=16M",
            "--offset_increment=16M",
            "--verify=crc32c",
            "--verify_fatal=1",
            "--do_verify=1",
            // fio would leave verify state files in the working directory.
            "--verify_state_save=0",
            "--output-format=json",
        ],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "fio failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    // fio may print notes before the JSON document.
    let json_start = stdout.find('{').expect("JSON output");
    let v: serde_json::Value = serde_json::from_str(&stdout[json_start..]).expect("fio JSON");
    let jobs = v["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len(), 4);
    for job in jobs {
        assert_eq!(job["error"].as_i64(), Some(0), "job error: {job}");
        assert_eq!(job["write"]["io_bytes"].as_u64(), Some(per_job), "each job writes its 16 MiB");
        // The verify pass reads back everything written.
        assert_eq!(job["read"]["io_bytes"].as_u64(), Some(per_job), "each job verifies its 16 MiB");
    }
    // Random writes without a random map repeat nothing: every 4 KiB block was written once.
    assert_eq!(dev.allocated_pages() as u64, size / MEM_PAGE_BYTES);
    ts.wait_idle().await;
}
