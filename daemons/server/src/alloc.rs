//! The global allocator: mimalloc, wrapped to count live bytes.
//!
//! `used_memory` in INFO and the `maxmemory` check read this counter, so the
//! limit applies to what we really allocated, as Redis's does with jemalloc.
//! The count is kept per thread and shared in steps (`kvfleet_alloc`), so
//! allocating does not bounce one cache line between the worker threads.

use kvfleet_alloc::Counting;

#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static ALLOC: Counting<kvfleet_alloc::MiMalloc> = Counting(kvfleet_alloc::MiMalloc);

/// `--features system-alloc`: the system allocator, so valgrind's DHAT can
/// count allocations per request (it only sees malloc).
#[cfg(feature = "system-alloc")]
#[global_allocator]
static ALLOC: Counting<std::alloc::System> = Counting(std::alloc::System);

/// Bytes currently allocated by the process.
pub fn allocated() -> usize {
    kvfleet_alloc::allocated()
}
