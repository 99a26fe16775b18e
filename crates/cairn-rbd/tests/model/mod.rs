//! The image model test, shared by the run against real daemons (`cairn-cli`'s `rbd_model`) and
//! the in-process one (`model_inprocess`): random writes, discards, resizes, snapshot
//! create/remove/rollback, clone, flatten and child removal, across object and stripe
//! boundaries; after every step the images and every snapshot read back equal an in-memory model.

use bytes::Bytes;
use cairn_client::IoCtx;
use cairn_rbd::{no_progress, CreateOptions, Image};
use cairn_types::errno;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const MAX_SIZE: u64 = 512 << 10;

#[derive(Clone, Debug)]
struct ModelImage {
    data: Vec<u8>,
    /// (name, content, protected)
    snaps: Vec<(String, Vec<u8>, bool)>,
}

struct Model {
    parent: ModelImage,
    /// The child and the parent snapshot it was cloned from.
    child: Option<(ModelImage, String)>,
    next_snap: u32,
}

async fn check(io: &IoCtx, name: &str, handle: &Image, m: &ModelImage, step: usize) {
    assert_eq!(handle.size(), m.data.len() as u64, "step {step}: {name} size");
    let got = handle.read(0, m.data.len() as u64).await.unwrap();
    let first = got.iter().zip(&m.data).position(|(a, b)| a != b);
    assert!(got == m.data, "step {step}: {name} content differs from the model at byte {first:?}");
    for (snap, content, _) in &m.snaps {
        let at = Image::open(io, name, Some(snap), true).await.unwrap();
        assert_eq!(at.size(), content.len() as u64, "step {step}: {name}@{snap} size");
        let got = at.read(0, content.len() as u64).await.unwrap();
        assert!(got == *content, "step {step}: {name}@{snap} differs from the model");
    }
}

fn extent(rng: &mut StdRng, size: usize) -> (usize, usize) {
    if size == 0 {
        return (0, 0);
    }
    let off = rng.gen_range(0..size);
    let len = rng.gen_range(1..=(size - off).min(96 << 10));
    (off, len)
}

/// Runs `steps` random steps on images "p" (and its clone "c") of `io`'s pool, checking the
/// images and every snapshot against the model after each step.
pub async fn run_model(io: &IoCtx, order: u8, stripe_unit: u64, stripe_count: u64, steps: usize, seed: u64) {
    let io = io.clone();
    let opts = CreateOptions { order: Some(order), features: Some(3), stripe_unit, stripe_count };
    let size = 300 << 10;
    cairn_rbd::create(&io, "p", size, &opts).await.unwrap();
    let p = Image::open(&io, "p", None, false).await.unwrap();
    let mut child_handle: Option<Image> = None;
    let mut m = Model {
        parent: ModelImage { data: vec![0; size as usize], snaps: vec![] },
        child: None,
        next_snap: 0,
    };
    let mut rng = StdRng::seed_from_u64(seed);
    for step in 0..steps {
        let on_child = m.child.is_some() && rng.gen_bool(0.5);
        let child_link = m.child.as_ref().map(|(_, s)| s.clone());
        let (img, handle, name) = match (&mut m.child, &child_handle) {
            (Some((ci, _)), Some(h)) if on_child => (ci, h.clone(), "c"),
            _ => (&mut m.parent, p.clone(), "p"),
        };
        let op = rng.gen_range(0..100);
        if std::env::var("CAIRN_RBD_MODEL_TRACE").is_ok() {
            eprintln!("step {step}: op {op} on {name} size {}", img.data.len());
        }
        match op {
            0..=39 => {
                let (off, len) = extent(&mut rng, img.data.len());
                let data: Vec<u8> = (0..len).map(|_| rng.gen_range(1..=255)).collect();
                handle.write(off as u64, Bytes::from(data.clone())).await.unwrap();
                img.data[off..off + len].copy_from_slice(&data);
            }
            40..=54 => {
                let (off, len) = extent(&mut rng, img.data.len());
                handle.discard(off as u64, len as u64).await.unwrap();
                img.data[off..off + len].fill(0);
            }
            55..=62 => {
                let new = rng.gen_range(0..=MAX_SIZE) as usize;
                handle.resize(new as u64, true, &no_progress).await.unwrap();
                img.data.resize(new, 0);
            }
            63..=74 => {
                m.next_snap += 1;
                let snap = format!("s{}", m.next_snap);
                handle.snap_create(&snap).await.unwrap();
                img.snaps.push((snap, img.data.clone(), false));
            }
            75..=81 if !img.snaps.is_empty() => {
                let i = rng.gen_range(0..img.snaps.len());
                let (snap, content, protected) = img.snaps[i].clone();
                let used = name == "p" && child_link.as_deref() == Some(snap.as_str());
                let r = handle.snap_remove(&snap).await;
                if protected || used {
                    assert_eq!(r.unwrap_err().errno, errno::EBUSY, "step {step}: protected snapshot removed");
                } else {
                    r.unwrap();
                    img.snaps.remove(i);
                }
                let _ = content;
            }
            82..=87 if !img.snaps.is_empty() => {
                let i = rng.gen_range(0..img.snaps.len());
                let (snap, content, _) = img.snaps[i].clone();
                handle.snap_rollback(&snap, &no_progress).await.unwrap();
                img.data = content;
            }
            88..=93 if m.child.is_none() && !m.parent.snaps.is_empty() => {
                let i = rng.gen_range(0..m.parent.snaps.len());
                let (snap, content, protected) = m.parent.snaps[i].clone();
                if !protected {
                    p.snap_set_protection(&snap, true).await.unwrap();
                    m.parent.snaps[i].2 = true;
                }
                cairn_rbd::clone(&io, "p", &snap, &io, "c", &opts, false).await.unwrap();
                child_handle = Some(Image::open(&io, "c", None, false).await.unwrap());
                m.child = Some((ModelImage { data: content, snaps: vec![] }, snap));
            }
            94..=96 if child_handle.is_some() => {
                let h = child_handle.clone().unwrap();
                match h.parent_info().await {
                    Ok(_) => h.flatten(&no_progress).await.unwrap(),
                    Err(e) => assert_eq!(e.errno, errno::ENOENT),
                }
            }
            97..=99 if m.child.as_ref().is_some_and(|(ci, _)| ci.snaps.is_empty()) => {
                let h = child_handle.take().unwrap();
                h.close().await.unwrap();
                cairn_rbd::remove(&io, "c", &no_progress).await.unwrap();
                let (_, snap) = m.child.take().unwrap();
                if !snap.is_empty() {
                    assert!(
                        p.children(&snap).await.unwrap().is_empty(),
                        "step {step}: removed child still listed"
                    );
                }
            }
            _ => continue,
        }
        // A parent snapshot nothing depends on any more can be unprotected (and removed).
        for i in 0..m.parent.snaps.len() {
            let (snap, _, protected) = m.parent.snaps[i].clone();
            let linked = m.child.as_ref().is_some_and(|(_, s)| *s == snap);
            let children = p.children(&snap).await.unwrap();
            if protected && children.is_empty() {
                p.snap_set_protection(&snap, false).await.unwrap();
                m.parent.snaps[i].2 = false;
                if linked {
                    m.child.as_mut().unwrap().1 = String::new();
                }
            } else if protected {
                assert!(linked, "step {step}: {snap} has children {children:?} but no clone uses it");
            }
        }
        check(&io, "p", &p, &m.parent, step).await;
        if let (Some((ci, _)), Some(h)) = (&m.child, &child_handle) {
            check(&io, "c", h, ci, step).await;
        }
    }
}

/// Steps per layout: `CAIRN_RBD_MODEL_STEPS`, else `default`.
pub fn steps(default: usize) -> usize {
    std::env::var("CAIRN_RBD_MODEL_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// `CAIRN_RBD_MODEL_SEED`, else random (printed so a failure can be replayed).
pub fn seed() -> u64 {
    let seed =
        std::env::var("CAIRN_RBD_MODEL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("rbd model seed {seed} (CAIRN_RBD_MODEL_SEED={seed} replays it)");
    seed
}
