//! What an export is: the [`BlockDevice`] trait the server calls for every command, and how the
//! device's errno values become NBD error values.

use bytes::Bytes;
use cairn_types::{errno, Error, Result};
use std::future::Future;
use std::pin::Pin;

/// A boxed, sendable future: what every asynchronous [`BlockDevice`] method returns, so the trait
/// stays object-safe (`Arc<dyn BlockDevice>`) without a macro crate.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A run of bytes with one allocation status, as reported by [`BlockDevice::block_status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Length in bytes; must be nonzero.
    pub len_bytes: u64,
    /// Not allocated in the backing store (`NBD_STATE_HOLE`).
    pub hole: bool,
    /// Known to read as zeroes (`NBD_STATE_ZERO`).
    pub zero: bool,
}

impl Extent {
    pub fn data(len_bytes: u64) -> Self {
        Extent { len_bytes, hole: false, zero: false }
    }
    pub fn hole(len_bytes: u64) -> Self {
        Extent { len_bytes, hole: true, zero: true }
    }
    pub fn zero(len_bytes: u64) -> Self {
        Extent { len_bytes, hole: false, zero: true }
    }
}

/// Flags the server passes to [`BlockDevice::write_zeroes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ZeroFlags {
    /// The device may deallocate the range (the client did not send `NBD_CMD_FLAG_NO_HOLE`).
    pub may_trim: bool,
    /// Persist before returning (`NBD_CMD_FLAG_FUA`).
    pub fua: bool,
}

/// An exported block device. The server checks bounds, read-only and flags before calling; a
/// method is only called with `offset + len <= size()`. Errors carry an errno that
/// [`nbd_error`] maps to the NBD error value the client sees.
///
/// Methods may run concurrently (the server pipelines requests); a write that returned `Ok` must
/// be visible to every later read, and must be durable after a later `flush` returns `Ok`.
pub trait BlockDevice: Send + Sync + 'static {
    /// Size of the export in bytes.
    fn size(&self) -> u64;

    /// Exported with `NBD_FLAG_READ_ONLY`; the server answers writes with EPERM.
    fn read_only(&self) -> bool {
        false
    }

    /// I/O size that avoids read-modify-write (e.g. 4096, or the RBD object size). Advertised in
    /// `NBD_INFO_BLOCK_SIZE`, rounded to a power of two in 512..=the maximum payload.
    fn preferred_block_size(&self) -> u32 {
        4096
    }

    /// Human-readable text for `NBD_INFO_DESCRIPTION`.
    fn description(&self) -> Option<String> {
        None
    }

    /// True only if a flush (or FUA write) on any connection makes the writes completed on all
    /// connections durable and visible: the server then advertises `NBD_FLAG_CAN_MULTI_CONN`.
    fn multi_conn_safe(&self) -> bool {
        false
    }

    /// True if `write_zeroes` is faster than writing a buffer of zeroes. When false, requests with
    /// `NBD_CMD_FLAG_FAST_ZERO` fail at once with `NBD_ENOTSUP` without reaching the device.
    fn can_fast_zero(&self) -> bool {
        false
    }

    /// Reads exactly `len` bytes at `offset`. A result of any other length is an I/O error.
    fn read(&self, offset: u64, len: u32) -> BoxFuture<'_, Result<Bytes>>;

    /// Writes `data` at `offset`; with `fua`, the data is durable before this returns.
    fn write(&self, offset: u64, data: Bytes, fua: bool) -> BoxFuture<'_, Result<()>>;

    /// Makes every completed write durable.
    fn flush(&self) -> BoxFuture<'_, Result<()>>;

    /// Hint that the range is no longer needed. The default does nothing (the spec allows it).
    fn trim(&self, offset: u64, len: u32, fua: bool) -> BoxFuture<'_, Result<()>> {
        let _ = (offset, len, fua);
        Box::pin(async { Ok(()) })
    }

    /// Makes the range read as zeroes.
    fn write_zeroes(&self, offset: u64, len: u32, flags: ZeroFlags) -> BoxFuture<'_, Result<()>>;

    /// Allocation status of `[offset, offset + len)`: consecutive extents starting at `offset`.
    /// May cover less than `len` (at least one extent) or more; the server clips. The default
    /// reports everything allocated, which is always correct.
    fn block_status(&self, offset: u64, len: u32) -> BoxFuture<'_, Result<Vec<Extent>>> {
        let _ = offset;
        Box::pin(async move { Ok(vec![Extent::data(len as u64)]) })
    }

    /// Hint that the range will be read soon. The default does nothing.
    fn cache(&self, offset: u64, len: u32) -> BoxFuture<'_, Result<()>> {
        let _ = (offset, len);
        Box::pin(async { Ok(()) })
    }
}

/// The NBD error value for an errno, following the spec's list: EDQUOT and EFBIG become ENOSPC,
/// EACCES and EROFS become EPERM, anything without an NBD equivalent becomes EIO.
pub fn nbd_error(errno_value: i32) -> u32 {
    use crate::wire::*;
    match errno_value {
        errno::EPERM | errno::EACCES | errno::EROFS => NBD_EPERM,
        errno::EIO => NBD_EIO,
        libc::ENOMEM => NBD_ENOMEM,
        errno::EINVAL => NBD_EINVAL,
        errno::ENOSPC | errno::EDQUOT | errno::EFBIG => NBD_ENOSPC,
        libc::EOVERFLOW => NBD_EOVERFLOW,
        errno::EOPNOTSUPP => NBD_ENOTSUP,
        libc::ESHUTDOWN => NBD_ESHUTDOWN,
        _ => NBD_EIO,
    }
}

/// An [`Error`] with an errno the NBD mapping understands; shorthand for the server's own checks.
pub(crate) fn err(errno_value: i32, message: impl Into<String>) -> Error {
    Error::new(errno_value, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::*;

    #[test]
    fn errno_mapping_follows_the_spec() {
        assert_eq!(nbd_error(errno::EPERM), NBD_EPERM);
        assert_eq!(nbd_error(errno::EROFS), NBD_EPERM);
        assert_eq!(nbd_error(errno::EIO), NBD_EIO);
        assert_eq!(nbd_error(libc::ENOMEM), NBD_ENOMEM);
        assert_eq!(nbd_error(errno::EINVAL), NBD_EINVAL);
        assert_eq!(nbd_error(errno::ENOSPC), NBD_ENOSPC);
        assert_eq!(nbd_error(errno::EDQUOT), NBD_ENOSPC);
        assert_eq!(nbd_error(errno::EFBIG), NBD_ENOSPC);
        assert_eq!(nbd_error(libc::EOVERFLOW), NBD_EOVERFLOW);
        assert_eq!(nbd_error(libc::ENOTSUP), NBD_ENOTSUP);
        assert_eq!(nbd_error(libc::ESHUTDOWN), NBD_ESHUTDOWN);
        assert_eq!(nbd_error(errno::ETIMEDOUT), NBD_EIO);
        assert_eq!(nbd_error(errno::ENOENT), NBD_EIO);
    }
}
