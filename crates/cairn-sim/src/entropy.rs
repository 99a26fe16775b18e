//! Deterministic entropy for simulation threads.
//!
//! std seeds every `HashMap`'s hasher (and tokio seeds its runtimes) from the C library's
//! `getrandom`. Cairn's daemons iterate hash maps in a few places (the OSD's PG table, pending
//! request tables), and the order decides which task is spawned or woken first — so with
//! kernel entropy two runs of the same seed schedule tasks differently. A binary that links the
//! simulator replaces `getrandom` with [`deterministic_getrandom!`](crate::deterministic_getrandom):
//! on a thread marked with [`seed_thread`] the bytes come from a stream derived from the
//! simulation seed; on every other thread they come from the kernel as before. (madsim does the
//! same to make std deterministic.) [`hooked`] tells whether the replacement is in effect.

use std::cell::Cell;
use std::hash::BuildHasher;

thread_local! {
    static STREAM: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Makes this thread's `getrandom` deterministic from `seed` (or the kernel's again, `None`).
/// Call it first thing on a fresh thread: std draws its hash keys once per thread.
pub fn seed_thread(seed: Option<u64>) {
    let _ = STREAM.try_with(|s| s.set(seed.map(|x| x ^ 0x5EED_CA1B_0000_0001)));
}

/// Fills `buf` from this thread's deterministic stream; false when the thread has none (or its
/// thread-locals are gone), and then `buf` is untouched.
pub fn fill(buf: &mut [u8]) -> bool {
    STREAM
        .try_with(|s| {
            let Some(mut x) = s.get() else { return false };
            for chunk in buf.chunks_mut(8) {
                x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let word = splitmix64(x).to_le_bytes();
                chunk.copy_from_slice(&word[..chunk.len()]);
            }
            s.set(Some(x));
            true
        })
        .unwrap_or(false)
}

fn splitmix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The kernel's `getrandom(2)`, for threads without a simulation stream.
///
/// # Safety
/// `buf` must be valid for writes of `len` bytes.
pub unsafe fn sys_getrandom(buf: *mut std::ffi::c_void, len: usize, flags: std::ffi::c_uint) -> isize {
    // SAFETY: the caller guarantees `buf`; the raw syscall does not go through the symbol this
    // crate replaces.
    unsafe { libc::syscall(libc::SYS_getrandom, buf, len, flags) as isize }
}

/// Defines the C symbol `getrandom` in the calling crate (a binary or test target that runs
/// simulations), routing it through [`fill`] on simulation threads.
#[macro_export]
macro_rules! deterministic_getrandom {
    () => {
        /// The simulator's `getrandom`: deterministic on simulation threads (`cairn_sim::entropy`).
        ///
        /// # Safety
        /// `buf` must be valid for writes of `len` bytes (the C contract).
        #[no_mangle]
        pub unsafe extern "C" fn getrandom(
            buf: *mut ::std::ffi::c_void,
            len: usize,
            flags: ::std::ffi::c_uint,
        ) -> isize {
            if len > 0 {
                // SAFETY: the C contract of getrandom: `buf` is valid for `len` bytes.
                let bytes = unsafe { ::std::slice::from_raw_parts_mut(buf as *mut u8, len) };
                if $crate::entropy::fill(bytes) {
                    return len as isize;
                }
            }
            // SAFETY: forwarded unchanged.
            unsafe { $crate::entropy::sys_getrandom(buf, len, flags) }
        }
    };
}

/// Whether std's hash keys follow [`seed_thread`] in this binary (i.e. the binary invoked
/// [`deterministic_getrandom!`]). Without it simulations still run and check everything, but two
/// runs of one seed may schedule tasks differently.
pub fn hooked() -> bool {
    let probe = |seed: u64| {
        std::thread::spawn(move || {
            seed_thread(Some(seed));
            std::collections::hash_map::RandomState::new().hash_one(0xC0FFEEu64)
        })
        .join()
        .unwrap_or(0)
    };
    let a = probe(7);
    a == probe(7) && a != probe(8)
}
