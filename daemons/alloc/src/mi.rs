//! mimalloc as a global allocator, without the aligned entry points where
//! they are not needed.
//!
//! The `mimalloc` crate sends every request through `mi_malloc_aligned`
//! (and `mi_realloc_aligned`), whatever the alignment. Under callgrind that
//! path cost ~68 instructions per allocation where `mi_malloc` costs ~25,
//! and a script call allocates ~9 times. `mi_malloc` already returns blocks
//! aligned to 16 bytes from 16 bytes up (its size classes are multiples of
//! 16; below that, of 8), so the plain entry points serve every layout whose
//! alignment is at most 16 and at most its size, the rule std's own
//! `System` allocator uses for `malloc`.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as ffi;

/// What `mi_malloc` guarantees without being asked (`MI_MAX_ALIGN_SIZE`).
const PLAIN_ALIGN: usize = 16;

#[inline]
fn plain(align: usize, size: usize) -> bool {
    align <= PLAIN_ALIGN && align <= size
}

/// mimalloc, the plain entry points for ordinary alignments.
pub struct MiMalloc;

// SAFETY: each call goes to the mimalloc function that honours `layout`:
// the plain ones only when their own alignment (see the module docs) covers
// it, the aligned ones otherwise. `mi_free` takes blocks from either.
unsafe impl GlobalAlloc for MiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: plain FFI calls; mimalloc returns null on failure.
        unsafe {
            if plain(layout.align(), layout.size()) {
                ffi::mi_malloc(layout.size()).cast()
            } else {
                ffi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        unsafe {
            if plain(layout.align(), layout.size()) {
                ffi::mi_zalloc(layout.size()).cast()
            } else {
                ffi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator (caller's contract).
        unsafe { ffi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout` (caller's
        // contract); the new block keeps `layout`'s alignment either way.
        unsafe {
            if plain(layout.align(), new_size) {
                ffi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                ffi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_keep_their_alignment_through_alloc_and_realloc() {
        for &(size, align) in &[
            (1, 1),
            (8, 8),
            (9, 8),
            (16, 16),
            (24, 8),
            (40, 16),
            (100, 32),
            (5000, 64),
            (8, 16),
        ] {
            let layout = Layout::from_size_align(size, align).unwrap();
            // SAFETY: non-zero sizes; each block is freed with its layout.
            unsafe {
                let p = MiMalloc.alloc(layout);
                assert!(!p.is_null());
                assert_eq!(p as usize % align, 0, "alloc {size}/{align}");
                p.write_bytes(0xab, size);
                let q = MiMalloc.realloc(p, layout, size * 3 + 1);
                assert_eq!(q as usize % align, 0, "realloc {size}/{align}");
                assert_eq!(*q.add(size - 1), 0xab, "realloc keeps the contents");
                MiMalloc.dealloc(q, Layout::from_size_align(size * 3 + 1, align).unwrap());
                let z = MiMalloc.alloc_zeroed(layout);
                assert_eq!(z as usize % align, 0, "alloc_zeroed {size}/{align}");
                assert!((0..size).all(|i| *z.add(i) == 0));
                MiMalloc.dealloc(z, layout);
            }
        }
    }
}
