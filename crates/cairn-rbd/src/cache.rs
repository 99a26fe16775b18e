//! The client write-back cache (librbd's `rbd cache`), with Ceph's options and semantics:
//!
//! - `rbd cache` (default true): off → every write goes straight to the cluster.
//! - `rbd cache writethrough until flush` (default true): writes go straight through until the
//!   user flushes once — proof that it flushes, so acknowledging writes early is safe for it.
//! - `rbd cache max dirty` (default 24 MiB; 0 = write-through): past it, a write waits until a
//!   flush brings the dirty bytes down. `rbd cache target dirty` (16 MiB): past it, writeback
//!   starts in the background. `rbd cache max dirty age` (1 s): older dirty data is written back.
//! - `rbd cache size` (32 MiB) bounds `max dirty`.
//!
//! A write-back write is acknowledged once it is in this cache; `flush` makes every
//! acknowledged write durable on all replicas (what a guest's flush or FUA asks for). Reads see
//! the cached data. Everything else (discard, resize, snapshots, close) flushes first.

use bytes::Bytes;
use cairn_types::{Error, Result};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    pub enabled: bool,
    pub size: u64,
    pub max_dirty: u64,
    pub target_dirty: u64,
    pub max_dirty_age: Duration,
    pub writethrough_until_flush: bool,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: true,
            size: 32 << 20,
            max_dirty: 24 << 20,
            target_dirty: 16 << 20,
            max_dirty_age: Duration::from_secs(1),
            writethrough_until_flush: true,
        }
    }
}

impl CacheConfig {
    /// Reads the `rbd cache*` options for `entity` (defaults as Ceph's).
    pub fn from_conf(conf: &cairn_types::conf::Conf, entity: &str) -> Result<CacheConfig> {
        let d = CacheConfig::default();
        let size = conf.get_bytes(entity, "rbd cache size")?.unwrap_or(d.size);
        let max_dirty = conf.get_bytes(entity, "rbd cache max dirty")?.unwrap_or(d.max_dirty).min(size);
        let cfg = CacheConfig {
            enabled: conf.get_bool(entity, "rbd cache")?.unwrap_or(d.enabled),
            size,
            max_dirty,
            target_dirty: conf
                .get_bytes(entity, "rbd cache target dirty")?
                .unwrap_or(d.target_dirty)
                .min(max_dirty),
            max_dirty_age: match conf.get_f64(entity, "rbd cache max dirty age")? {
                Some(s) if s >= 0.0 && s.is_finite() => Duration::from_secs_f64(s),
                Some(s) => return Err(Error::einval(format!("rbd cache max dirty age: invalid value {s}"))),
                None => d.max_dirty_age,
            },
            writethrough_until_flush: conf
                .get_bool(entity, "rbd cache writethrough until flush")?
                .unwrap_or(d.writethrough_until_flush),
        };
        Ok(cfg)
    }

    /// Whether writes may be acknowledged from the cache at all.
    pub fn can_write_back(&self) -> bool {
        self.enabled && self.max_dirty > 0
    }
}

/// Dirty extents not yet written to the cluster: non-overlapping, keyed by image offset.
#[derive(Default)]
struct Dirty {
    extents: BTreeMap<u64, (Bytes, Instant)>,
    bytes: u64,
    /// Extents taken by the flush in progress (still to be overlaid on reads).
    flushing: BTreeMap<u64, Bytes>,
    /// Write-back mode (write-through until the first flush when so configured).
    writeback: bool,
}

pub(crate) struct WriteCache {
    pub cfg: CacheConfig,
    dirty: Mutex<Dirty>,
    /// One flush at a time, so two writes of one range never race to the cluster.
    pub flush_lock: tokio::sync::Mutex<()>,
}

impl WriteCache {
    pub fn new(cfg: CacheConfig) -> WriteCache {
        let writeback = cfg.can_write_back() && !cfg.writethrough_until_flush;
        WriteCache {
            cfg,
            dirty: Mutex::new(Dirty { writeback, ..Default::default() }),
            flush_lock: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Dirty> {
        self.dirty.lock().expect("cache lock")
    }

    /// Takes the write if the cache is in write-back mode; returns the dirty bytes then, or
    /// `None` (write it through).
    pub fn try_write(&self, offset: u64, data: Bytes) -> Option<u64> {
        let mut d = self.lock();
        if !d.writeback || data.is_empty() {
            return None;
        }
        let end = offset + data.len() as u64;
        // Cut every overlapping extent down to what lies outside the new one.
        let overlapping: Vec<u64> = d
            .extents
            .range(..end)
            .rev()
            .take_while(|(o, (b, _))| **o + b.len() as u64 > offset)
            .map(|(o, _)| *o)
            .collect();
        for o in overlapping {
            let (b, at) = d.extents.remove(&o).expect("listed");
            d.bytes -= b.len() as u64;
            let b_end = o + b.len() as u64;
            if o < offset {
                let head = b.slice(..(offset - o) as usize);
                d.bytes += head.len() as u64;
                d.extents.insert(o, (head, at));
            }
            if b_end > end {
                let tail = b.slice((end - o) as usize..);
                d.bytes += tail.len() as u64;
                d.extents.insert(end, (tail, at));
            }
        }
        d.bytes += data.len() as u64;
        d.extents.insert(offset, (data, Instant::now()));
        Some(d.bytes)
    }

    /// Lays cached data over `buf`, which holds the cluster's bytes of `[offset, offset+len)`.
    pub fn overlay(&self, offset: u64, buf: &mut [u8]) {
        let end = offset + buf.len() as u64;
        let d = self.lock();
        let older = d.flushing.range(..end).map(|(o, b)| (*o, b));
        let newer = d.extents.range(..end).map(|(o, (b, _))| (*o, b));
        for (o, b) in older.chain(newer) {
            let b_end = o + b.len() as u64;
            if b_end <= offset {
                continue;
            }
            let (lo, hi) = (o.max(offset), b_end.min(end));
            buf[(lo - offset) as usize..(hi - offset) as usize]
                .copy_from_slice(&b[(lo - o) as usize..(hi - o) as usize]);
        }
    }

    /// Moves every dirty extent to the flushing set and returns them (call under `flush_lock`).
    pub fn take_dirty(&self) -> Vec<(u64, Bytes)> {
        let mut d = self.lock();
        let taken = std::mem::take(&mut d.extents);
        d.bytes = 0;
        d.flushing = taken.into_iter().map(|(o, (b, _))| (o, b)).collect();
        d.flushing.iter().map(|(o, b)| (*o, b.clone())).collect()
    }

    /// Ends a flush: written extents leave the cache; on failure they are dirty again (unless
    /// newer data covers them).
    pub fn finish_flush(&self, ok: bool) {
        let mut d = self.lock();
        let flushed = std::mem::take(&mut d.flushing);
        if ok {
            return;
        }
        drop(d);
        for (o, b) in flushed.into_iter().rev() {
            // Re-insert under newer writes: only where nothing newer is dirty.
            let mut buf = b.to_vec();
            self.overlay(o, &mut buf);
            let _ = self.try_write_force(o, Bytes::from(buf));
        }
    }

    fn try_write_force(&self, offset: u64, data: Bytes) -> Option<u64> {
        let was = {
            let mut d = self.lock();
            std::mem::replace(&mut d.writeback, true)
        };
        let r = self.try_write(offset, data);
        self.lock().writeback = was;
        r
    }

    /// The user flushed: `writethrough until flush` is over.
    pub fn user_flushed(&self) {
        if self.cfg.can_write_back() {
            self.lock().writeback = true;
        }
    }

    pub fn dirty_bytes(&self) -> u64 {
        self.lock().bytes
    }

    /// Age of the oldest dirty extent.
    pub fn oldest_age(&self) -> Option<Duration> {
        self.lock().extents.values().map(|(_, at)| at.elapsed()).max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> WriteCache {
        WriteCache::new(CacheConfig { writethrough_until_flush: false, ..Default::default() })
    }

    fn read(c: &WriteCache, offset: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        c.overlay(offset, &mut buf);
        buf
    }

    #[test]
    fn overlapping_writes_keep_the_newest_bytes() {
        let c = cache();
        c.try_write(0, Bytes::from(vec![1; 10])).unwrap();
        c.try_write(5, Bytes::from(vec![2; 10])).unwrap();
        c.try_write(2, Bytes::from(vec![3; 2])).unwrap();
        assert_eq!(read(&c, 0, 16), [1, 1, 3, 3, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0]);
        assert_eq!(c.dirty_bytes(), 15);
        let taken = c.take_dirty();
        assert_eq!(taken.iter().map(|(_, b)| b.len()).sum::<usize>(), 15);
        assert_eq!(read(&c, 0, 16)[..15], [1, 1, 3, 3, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2], "still visible");
        c.try_write(0, Bytes::from(vec![9; 1])).unwrap();
        c.finish_flush(false);
        assert_eq!(read(&c, 0, 3), [9, 1, 3], "failed flush is dirty again under newer data");
        assert_eq!(c.dirty_bytes(), 15);
    }

    #[test]
    fn writethrough_until_the_first_flush() {
        let c = WriteCache::new(CacheConfig::default());
        assert!(c.try_write(0, Bytes::from_static(b"x")).is_none());
        c.take_dirty();
        c.finish_flush(true);
        assert!(c.try_write(0, Bytes::from_static(b"x")).is_none(), "internal write-backs change nothing");
        c.user_flushed();
        assert!(c.try_write(0, Bytes::from_static(b"x")).is_some());
        let off = WriteCache::new(CacheConfig {
            enabled: false,
            writethrough_until_flush: false,
            ..Default::default()
        });
        assert!(off.try_write(0, Bytes::from_static(b"x")).is_none());
        let zero = WriteCache::new(CacheConfig {
            max_dirty: 0,
            writethrough_until_flush: false,
            ..Default::default()
        });
        assert!(zero.try_write(0, Bytes::from_static(b"x")).is_none());
    }

    #[test]
    fn options_come_from_the_conf() {
        let conf = cairn_types::conf::Conf::parse(
            "[client]\nrbd cache = true\nrbd cache max dirty = 8M\nrbd_cache_max_dirty_age = 2.5\n\
             rbd cache writethrough until flush = false\n",
        )
        .unwrap();
        let c = CacheConfig::from_conf(&conf, "client.admin").unwrap();
        assert_eq!(c.max_dirty, 8 << 20);
        assert_eq!(c.target_dirty, 8 << 20, "target is capped by max dirty");
        assert_eq!(c.max_dirty_age, Duration::from_millis(2500));
        assert!(!c.writethrough_until_flush);
        let bad = cairn_types::conf::Conf::parse("[client]\nrbd cache = maybe\n").unwrap();
        assert!(CacheConfig::from_conf(&bad, "client.admin").is_err());
    }
}
