//! [`MemDevice`]: an in-memory, sparse [`BlockDevice`] for tests and as the smallest example of
//! the trait. Storage is a map of 4 KiB pages; a missing page is a hole.

use crate::device::{BlockDevice, BoxFuture, Extent, ZeroFlags};
use bytes::{Bytes, BytesMut};
use cairn_types::Result;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Page size of [`MemDevice`]: the granularity of holes.
pub const MEM_PAGE_BYTES: u64 = 4096;
/// Most extents one `block_status` call returns (the server asks again for the rest).
const MAX_EXTENTS_PER_CALL: usize = 1 << 16;

#[derive(Clone)]
enum Page {
    /// Allocated and all zeroes (`write_zeroes` with `NO_HOLE`): costs a map entry, not 4 KiB.
    Zero,
    Data(Box<[u8]>),
}

/// A sparse in-memory block device. Every connection shares the same pages, so a completed write
/// is visible everywhere and flush has nothing to do: it is safe for `NBD_FLAG_CAN_MULTI_CONN`.
pub struct MemDevice {
    size_bytes: u64,
    read_only: bool,
    block_size_bytes: u32,
    fast_zero: bool,
    description: Option<String>,
    pages: RwLock<BTreeMap<u64, Page>>,
    flushes: AtomicU64,
    fua_ops: AtomicU64,
}

impl MemDevice {
    /// An empty (all-hole) writable device of `size_bytes`.
    pub fn new(size_bytes: u64) -> Self {
        MemDevice {
            size_bytes,
            read_only: false,
            block_size_bytes: MEM_PAGE_BYTES as u32,
            fast_zero: true,
            description: None,
            pages: RwLock::new(BTreeMap::new()),
            flushes: AtomicU64::new(0),
            fua_ops: AtomicU64::new(0),
        }
    }

    /// A device holding `data`, padded with a hole to `size_bytes` (all-zero pages stay holes).
    pub fn with_contents(size_bytes: u64, data: &[u8]) -> Self {
        let dev = Self::new(size_bytes);
        let mut pages = dev.pages_mut();
        for (i, chunk) in data.chunks(MEM_PAGE_BYTES as usize).enumerate() {
            if (i as u64) * MEM_PAGE_BYTES >= size_bytes || chunk.iter().all(|&b| b == 0) {
                continue;
            }
            let mut page = vec![0u8; MEM_PAGE_BYTES as usize].into_boxed_slice();
            page[..chunk.len()].copy_from_slice(chunk);
            pages.insert(i as u64, Page::Data(page));
        }
        drop(pages);
        dev
    }

    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    pub fn block_size(mut self, block_size_bytes: u32) -> Self {
        self.block_size_bytes = block_size_bytes;
        self
    }

    /// Whether `NBD_CMD_FLAG_FAST_ZERO` succeeds (default) or fails with ENOTSUP.
    pub fn fast_zero(mut self, fast_zero: bool) -> Self {
        self.fast_zero = fast_zero;
        self
    }

    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.description = Some(text.into());
        self
    }

    /// How many times `flush` was called.
    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    /// How many write, trim and write-zeroes calls asked for FUA.
    pub fn fua_ops(&self) -> u64 {
        self.fua_ops.load(Ordering::Relaxed)
    }

    /// Pages that are allocated (data or provisioned zeroes).
    pub fn allocated_pages(&self) -> usize {
        self.pages().len()
    }

    /// The whole device content (for tests on small devices).
    pub fn contents(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.size_bytes as usize];
        self.read_into(0, &mut out);
        out
    }

    fn pages(&self) -> RwLockReadGuard<'_, BTreeMap<u64, Page>> {
        // A panic while holding the lock cannot leave a page half-updated in a way that matters
        // more than the panic itself; keep serving.
        self.pages.read().unwrap_or_else(|e| e.into_inner())
    }

    fn pages_mut(&self) -> RwLockWriteGuard<'_, BTreeMap<u64, Page>> {
        self.pages.write().unwrap_or_else(|e| e.into_inner())
    }

    fn read_into(&self, offset: u64, out: &mut [u8]) {
        if out.is_empty() {
            return;
        }
        let end = offset + out.len() as u64;
        let pages = self.pages();
        for (&idx, page) in pages.range(offset / MEM_PAGE_BYTES..=(end - 1) / MEM_PAGE_BYTES) {
            let Page::Data(bytes) = page else { continue };
            let start = idx * MEM_PAGE_BYTES;
            let (lo, hi) = (offset.max(start), end.min(start + MEM_PAGE_BYTES));
            out[(lo - offset) as usize..(hi - offset) as usize]
                .copy_from_slice(&bytes[(lo - start) as usize..(hi - start) as usize]);
        }
    }

    fn write_from(&self, offset: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let end = offset + data.len() as u64;
        let mut pages = self.pages_mut();
        for idx in offset / MEM_PAGE_BYTES..=(end - 1) / MEM_PAGE_BYTES {
            let start = idx * MEM_PAGE_BYTES;
            let (lo, hi) = (offset.max(start), end.min(start + MEM_PAGE_BYTES));
            let page = pages.entry(idx).or_insert(Page::Zero);
            if let Page::Zero = page {
                *page = Page::Data(vec![0u8; MEM_PAGE_BYTES as usize].into_boxed_slice());
            }
            if let Page::Data(bytes) = page {
                bytes[(lo - start) as usize..(hi - start) as usize]
                    .copy_from_slice(&data[(lo - offset) as usize..(hi - offset) as usize]);
            }
        }
    }

    /// Zeroes a range: whole pages are dropped (`may_trim`) or become provisioned zero pages;
    /// partial pages are zeroed in place.
    fn zero_range(&self, offset: u64, len: u64, may_trim: bool) {
        if len == 0 {
            return;
        }
        let end = offset + len;
        let mut pages = self.pages_mut();
        let first = offset / MEM_PAGE_BYTES;
        let last = (end - 1) / MEM_PAGE_BYTES;
        if may_trim {
            // Only visit pages that exist: a trim of a huge range costs what it frees.
            let present: Vec<u64> = pages.range(first..=last).map(|(&i, _)| i).collect();
            for idx in present {
                self.zero_page(&mut pages, idx, offset, end, true);
            }
        } else {
            for idx in first..=last {
                self.zero_page(&mut pages, idx, offset, end, false);
            }
        }
    }

    fn zero_page(&self, pages: &mut BTreeMap<u64, Page>, idx: u64, offset: u64, end: u64, may_trim: bool) {
        let start = idx * MEM_PAGE_BYTES;
        let (lo, hi) = (offset.max(start), end.min(start + MEM_PAGE_BYTES));
        if hi - lo == MEM_PAGE_BYTES {
            if may_trim {
                pages.remove(&idx);
            } else {
                pages.insert(idx, Page::Zero);
            }
            return;
        }
        match pages.get_mut(&idx) {
            Some(Page::Data(bytes)) => bytes[(lo - start) as usize..(hi - start) as usize].fill(0),
            Some(Page::Zero) => {}
            None if !may_trim => {
                pages.insert(idx, Page::Zero);
            }
            None => {}
        }
    }

    fn extents(&self, offset: u64, len: u64) -> Vec<Extent> {
        let end = offset.saturating_add(len).min(self.size_bytes);
        let mut out: Vec<Extent> = Vec::new();
        fn push(out: &mut Vec<Extent>, e: Extent) {
            match out.last_mut() {
                Some(last) if last.hole == e.hole && last.zero == e.zero => last.len_bytes += e.len_bytes,
                _ => out.push(e),
            }
        }
        let mut pos = offset;
        let pages = self.pages();
        if pos < end {
            for (&idx, page) in pages.range(offset / MEM_PAGE_BYTES..=(end - 1) / MEM_PAGE_BYTES) {
                let start = idx * MEM_PAGE_BYTES;
                if start > pos {
                    push(&mut out, Extent::hole(start - pos));
                    pos = start;
                }
                let hi = end.min(start + MEM_PAGE_BYTES);
                match page {
                    Page::Zero => push(&mut out, Extent::zero(hi - pos)),
                    Page::Data(_) => push(&mut out, Extent::data(hi - pos)),
                }
                pos = hi;
                if out.len() >= MAX_EXTENTS_PER_CALL {
                    return out;
                }
            }
        }
        if pos < end {
            push(&mut out, Extent::hole(end - pos));
        }
        out
    }
}

impl BlockDevice for MemDevice {
    fn size(&self) -> u64 {
        self.size_bytes
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn preferred_block_size(&self) -> u32 {
        self.block_size_bytes
    }

    fn description(&self) -> Option<String> {
        self.description.clone()
    }

    fn multi_conn_safe(&self) -> bool {
        true
    }

    fn can_fast_zero(&self) -> bool {
        self.fast_zero
    }

    fn read(&self, offset: u64, len: u32) -> BoxFuture<'_, Result<Bytes>> {
        Box::pin(async move {
            let mut buf = BytesMut::zeroed(len as usize);
            self.read_into(offset, &mut buf);
            Ok(buf.freeze())
        })
    }

    fn write(&self, offset: u64, data: Bytes, fua: bool) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.fua_ops.fetch_add(fua as u64, Ordering::Relaxed);
            self.write_from(offset, &data);
            Ok(())
        })
    }

    fn flush(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.flushes.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
    }

    /// Trimmed ranges read back as zeroes (whole pages become holes).
    fn trim(&self, offset: u64, len: u32, fua: bool) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.fua_ops.fetch_add(fua as u64, Ordering::Relaxed);
            self.zero_range(offset, len as u64, true);
            Ok(())
        })
    }

    fn write_zeroes(&self, offset: u64, len: u32, flags: ZeroFlags) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.fua_ops.fetch_add(flags.fua as u64, Ordering::Relaxed);
            self.zero_range(offset, len as u64, flags.may_trim);
            Ok(())
        })
    }

    fn block_status(&self, offset: u64, len: u32) -> BoxFuture<'_, Result<Vec<Extent>>> {
        Box::pin(async move { Ok(self.extents(offset, len as u64)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<T>(f: BoxFuture<'_, T>) -> T {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    #[test]
    fn sparse_pages_track_holes_and_zeroes() {
        let dev = MemDevice::new(10 * MEM_PAGE_BYTES + 100);
        block_on(dev.write(4000, Bytes::from(vec![7u8; 200]), false)).unwrap();
        assert_eq!(dev.allocated_pages(), 2);
        let got = block_on(dev.read(3990, 220)).unwrap();
        assert_eq!(&got[..10], &[0u8; 10]);
        assert_eq!(&got[10..210], &[7u8; 200][..]);
        assert_eq!(&got[210..], &[0u8; 10]);

        let zf = ZeroFlags { may_trim: false, fua: true };
        block_on(dev.write_zeroes(5 * MEM_PAGE_BYTES, 2 * MEM_PAGE_BYTES as u32, zf)).unwrap();
        let ext = block_on(dev.block_status(0, (10 * MEM_PAGE_BYTES + 100) as u32)).unwrap();
        assert_eq!(
            ext,
            vec![
                Extent::data(2 * MEM_PAGE_BYTES),
                Extent::hole(3 * MEM_PAGE_BYTES),
                Extent::zero(2 * MEM_PAGE_BYTES),
                Extent::hole(3 * MEM_PAGE_BYTES + 100),
            ]
        );
        assert_eq!(dev.fua_ops(), 1);

        // Trim of a partial page zeroes it; of whole pages frees them.
        block_on(dev.trim(4050, (2 * MEM_PAGE_BYTES) as u32, false)).unwrap();
        assert_eq!(&block_on(dev.read(3990, 220)).unwrap()[10..60], &[7u8; 50][..]);
        assert_eq!(&block_on(dev.read(4040, 20)).unwrap()[10..], &[0u8; 10]);
        assert_eq!(dev.allocated_pages(), 3);
        assert_eq!(dev.contents().iter().filter(|&&b| b != 0).count(), 50);
    }

    #[test]
    fn with_contents_keeps_zero_pages_as_holes() {
        let mut data = vec![0u8; 3 * MEM_PAGE_BYTES as usize];
        data[MEM_PAGE_BYTES as usize] = 1;
        let dev = MemDevice::with_contents(4 * MEM_PAGE_BYTES, &data);
        assert_eq!(dev.allocated_pages(), 1);
        assert_eq!(&dev.contents()[..data.len()], &data[..]);
    }
}
