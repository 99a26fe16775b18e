//! The image model test (`crates/cairn-rbd/tests/model`) against a real 3-OSD cluster of
//! `cairn` daemons: 300 steps per layout by default (`CAIRN_RBD_MODEL_STEPS`,
//! `CAIRN_RBD_MODEL_SEED` tune it). `cairn-rbd`'s `model_inprocess` runs more steps in-process.

mod common;
#[path = "../../cairn-rbd/tests/model/mod.rs"]
mod model;

use common::{rt, Cluster};
use std::time::Duration;

fn run(order: u8, stripe_unit: u64, stripe_count: u64) {
    let c = Cluster::up(3, 1);
    c.ok(&["osd", "pool", "create", "rbd", "8"]);
    c.wait_clean(3, Duration::from_secs(60));
    rt().block_on(async {
        let io = c.client().await.ioctx("rbd").unwrap();
        model::run_model(&io, order, stripe_unit, stripe_count, model::steps(300), model::seed()).await;
    });
}

#[test]
fn model_with_small_objects() {
    run(16, 0, 0);
}

#[test]
fn model_with_fancy_striping() {
    run(16, 16 << 10, 3);
}
