//! The global allocator: mimalloc, wrapped to count live bytes.
//!
//! `used_memory` in INFO and the `maxmemory` check read this counter, so the
//! limit applies to what we really allocated, as Redis's does with jemalloc.

use cap::Cap;

#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static ALLOC: Cap<mimalloc::MiMalloc> = Cap::new(mimalloc::MiMalloc, usize::MAX);

/// `--features system-alloc`: the system allocator, so valgrind's DHAT can
/// count allocations per request (it only sees malloc).
#[cfg(feature = "system-alloc")]
#[global_allocator]
static ALLOC: Cap<std::alloc::System> = Cap::new(std::alloc::System, usize::MAX);

/// Bytes currently allocated by the process.
pub fn allocated() -> usize {
    ALLOC.allocated()
}
