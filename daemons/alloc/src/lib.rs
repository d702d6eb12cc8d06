//! Counts the bytes a wrapped global allocator has handed out and not yet
//! taken back: `used_memory` in INFO and the `maxmemory` check read it.
//!
//! The obvious counter, one atomic that every allocation and free adds to
//! (the `cap` crate), puts a read-modify-write of one cache line on every
//! allocation of every worker thread; with two workers that line bounces
//! between cores (a script call allocates ~9 times). Here each thread keeps
//! its own running difference in a thread-local and adds it to the shared
//! total only once it reaches [`FLUSH_AT`] bytes either way, and when the
//! thread exits. A request's allocations are mostly freed within it, so the
//! shared total is touched when memory really grows or shrinks.
//!
//! The total is therefore behind by less than `FLUSH_AT` bytes per live
//! thread (16 KiB; a few hundred KiB for a server's threads), which is
//! within what Redis's own `maxmemory` check tolerates.

#[cfg(feature = "mimalloc")]
mod mi;
#[cfg(feature = "mimalloc")]
pub use mi::MiMalloc;

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};

/// How far a thread's own count may drift before it is added to the total.
pub const FLUSH_AT: isize = 16 * 1024;

/// The shared total. Static, so a thread's exit can flush into it.
static TOTAL: AtomicIsize = AtomicIsize::new(0);

thread_local! {
    // Const-initialised and without a destructor: reading it is a plain
    // thread-local access, with no lazy state to check, and stays valid
    // while the thread's other thread-locals are destroyed.
    /// This thread's bytes allocated minus freed, not yet in [`TOTAL`]; or,
    /// far outside ±[`FLUSH_AT`], which of the rare states the thread is in
    /// ([`UNARMED`], [`EXITED`]), so that any allocation then takes the slow path.
    static PENDING: Cell<isize> = const { Cell::new(UNARMED) };
    /// Its destructor hands what is pending to [`TOTAL`] when the thread exits.
    static ON_EXIT: FlushOnExit = const { FlushOnExit };
}

/// Before the thread's first allocation has armed the exit flush.
const UNARMED: isize = isize::MIN / 2;
/// The exit flush has run: whatever is freed after it goes straight to the total.
const EXITED: isize = isize::MAX / 2;

struct FlushOnExit;

impl Drop for FlushOnExit {
    fn drop(&mut self) {
        TOTAL.fetch_add(PENDING.replace(EXITED), Relaxed);
    }
}

#[inline]
fn add(n: isize) {
    // one thread-local access on the common path
    let out_of_band = PENDING.with(|p| {
        let v = p.get().wrapping_add(n);
        let keep = v > -FLUSH_AT && v < FLUSH_AT;
        if keep {
            p.set(v);
        }
        (!keep).then_some(v)
    });
    if let Some(v) = out_of_band {
        settle(v, n);
    }
}

/// The rare path: a flush, a thread's first allocation, or one after its
/// exit. `v` is the pending count plus `n`; no single allocation comes near
/// a quarter of the address space, so the sentinels stay recognisable.
#[cold]
#[inline(never)]
fn settle(v: isize, n: isize) {
    if v < UNARMED / 2 {
        // registering the destructor does not use Rust's allocator
        // (glibc's __cxa_thread_atexit_impl)
        if ON_EXIT.try_with(|_| ()).is_ok() {
            PENDING.set(0);
            add(n);
        } else {
            PENDING.set(EXITED);
            TOTAL.fetch_add(n, Relaxed);
        }
    } else if v > EXITED / 2 {
        TOTAL.fetch_add(n, Relaxed);
    } else {
        TOTAL.fetch_add(v, Relaxed);
        PENDING.set(0);
    }
}

/// Bytes allocated and not freed, process-wide (see the module docs for its precision).
pub fn allocated() -> usize {
    TOTAL.load(Relaxed).max(0) as usize
}

/// Wraps the allocator `A`, counting what passes through it.
pub struct Counting<A>(pub A);

// SAFETY: every call is forwarded unchanged to `A`, which upholds
// `GlobalAlloc`'s contract; counting neither allocates nor touches the memory.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's `layout` contract passes through.
        let p = unsafe { self.0.alloc(layout) };
        if !p.is_null() {
            add(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        let p = unsafe { self.0.alloc_zeroed(layout) };
        if !p.is_null() {
            add(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `self.0` with `layout` (caller's contract).
        unsafe { self.0.dealloc(ptr, layout) };
        add(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract for `ptr`, `layout` and `new_size` passes through.
        let p = unsafe { self.0.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            add(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test, so no other test's thread moves TOTAL meanwhile; the test
    // binary's allocator is the system one, so only `add` moves it.
    #[test]
    fn small_changes_wait_large_ones_and_exits_reach_the_total() {
        let before = TOTAL.load(Relaxed);
        let (waiting, flushed) = std::thread::spawn(move || {
            add(100);
            add(-100);
            add(FLUSH_AT - 1);
            let waiting = TOTAL.load(Relaxed) - before;
            add(1);
            let flushed = TOTAL.load(Relaxed) - before;
            add(5);
            (waiting, flushed)
        })
        .join()
        .unwrap();
        assert_eq!(waiting, 0, "a change under FLUSH_AT stays with its thread");
        assert_eq!(flushed, FLUSH_AT, "one at FLUSH_AT reaches the total");
        assert_eq!(
            TOTAL.load(Relaxed) - before,
            FLUSH_AT + 5,
            "an exiting thread leaves what it had pending"
        );
        std::thread::spawn(|| add(-FLUSH_AT - 5)).join().unwrap();
        assert_eq!(TOTAL.load(Relaxed), before);
    }
}
