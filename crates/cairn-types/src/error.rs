//! One error type for every layer: an errno (what librados callers switch on) and a message in
//! Ceph's wording (what operators read).

use serde::{Deserialize, Serialize};

/// Errno values used across Cairn. Positive numbers, as in `errno.h`; the C ABI negates them.
pub mod errno {
    pub const EPERM: i32 = libc::EPERM;
    pub const ENOENT: i32 = libc::ENOENT;
    pub const EIO: i32 = libc::EIO;
    pub const E2BIG: i32 = libc::E2BIG;
    pub const EAGAIN: i32 = libc::EAGAIN;
    pub const EACCES: i32 = libc::EACCES;
    pub const EBUSY: i32 = libc::EBUSY;
    pub const EEXIST: i32 = libc::EEXIST;
    pub const EINVAL: i32 = libc::EINVAL;
    pub const EFBIG: i32 = libc::EFBIG;
    pub const ENOSPC: i32 = libc::ENOSPC;
    pub const EROFS: i32 = libc::EROFS;
    pub const ERANGE: i32 = libc::ERANGE;
    pub const ENODATA: i32 = libc::ENODATA;
    pub const ENAMETOOLONG: i32 = libc::ENAMETOOLONG;
    pub const ENOTEMPTY: i32 = libc::ENOTEMPTY;
    pub const EOPNOTSUPP: i32 = libc::EOPNOTSUPP;
    pub const ETIMEDOUT: i32 = libc::ETIMEDOUT;
    pub const ECONNREFUSED: i32 = libc::ECONNREFUSED;
    pub const ESTALE: i32 = libc::ESTALE;
    pub const EDQUOT: i32 = libc::EDQUOT;
    pub const ENOTCONN: i32 = libc::ENOTCONN;
}

/// An error with its errno. `Display` prints the message; [`Error::ceph_style`] prints
/// `(2) No such file or directory`-style text for the CLI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub errno: i32,
    pub message: String,
}

impl Error {
    pub fn new(errno: i32, message: impl Into<String>) -> Self {
        Error { errno, message: message.into() }
    }
    pub fn enoent(message: impl Into<String>) -> Self {
        Self::new(errno::ENOENT, message)
    }
    pub fn eexist(message: impl Into<String>) -> Self {
        Self::new(errno::EEXIST, message)
    }
    pub fn einval(message: impl Into<String>) -> Self {
        Self::new(errno::EINVAL, message)
    }
    pub fn eio(message: impl Into<String>) -> Self {
        Self::new(errno::EIO, message)
    }
    pub fn eperm(message: impl Into<String>) -> Self {
        Self::new(errno::EPERM, message)
    }
    pub fn eagain(message: impl Into<String>) -> Self {
        Self::new(errno::EAGAIN, message)
    }
    pub fn timed_out(message: impl Into<String>) -> Self {
        Self::new(errno::ETIMEDOUT, message)
    }

    /// The strerror text of the errno, e.g. "No such file or directory".
    pub fn strerror(errno: i32) -> String {
        // SAFETY: strerror returns a pointer to a static (or thread-local) NUL-terminated string.
        let s = unsafe { std::ffi::CStr::from_ptr(libc::strerror(errno)) };
        s.to_string_lossy().into_owned()
    }

    /// `(2) No such file or directory`, the way Ceph's tools print an errno.
    pub fn errno_text(&self) -> String {
        format!("({}) {}", self.errno, Self::strerror(self.errno))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::new(e.raw_os_error().unwrap_or(errno::EIO), e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_text_matches_ceph_style() {
        assert_eq!(Error::enoent("x").errno_text(), "(2) No such file or directory");
        assert_eq!(Error::eexist("x").errno_text(), "(17) File exists");
    }
}
