//! The global allocator: mimalloc, wrapped to count live bytes.
//!
//! `used_memory` in INFO and the `maxmemory` check read this counter, so the
//! limit applies to what we really allocated, as Redis's does with jemalloc.

use cap::Cap;

#[global_allocator]
static ALLOC: Cap<mimalloc::MiMalloc> = Cap::new(mimalloc::MiMalloc, usize::MAX);

/// Bytes currently allocated by the process.
pub fn allocated() -> usize {
    ALLOC.allocated()
}
