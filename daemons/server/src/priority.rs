//! The CPU priority of bulk background work (snapshot serialisation).
//!
//! A background job's thread serialises at nice 10: commands win the CPU
//! when they need it, the job takes the rest. It starts at normal priority
//! and lowers it only once the snapshot has started, so taking every
//! slot's lock (the pause writers see) is not stretched by preemption.
//! Not `SCHED_IDLE`: on the 1 GB snapshot benchmark it tripled the GET
//! p99.9 during a save (2.0 vs 0.5 ms) — an idle-class thread preempted
//! while holding a slot's lock leaves the command needing that slot
//! waiting for a core the idle class gets last.

use std::cell::Cell;

/// Niceness of background jobs (commands run at 0).
const BACKGROUND_NICE: i32 = 10;

thread_local! {
    static BACKGROUND: Cell<bool> = const { Cell::new(false) };
}

/// Marks the calling thread as a background job's.
pub fn mark_background() {
    BACKGROUND.with(|b| b.set(true));
}

/// Lowers the calling thread's priority if it is a background job's
/// (Linux's niceness is per thread); a command thread is left alone.
pub fn enter_bulk_work() {
    if BACKGROUND.with(|b| b.replace(false)) {
        let _ = rustix::process::setpriority_process(None, BACKGROUND_NICE);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_a_background_thread_is_lowered() {
        super::enter_bulk_work();
        assert_eq!(rustix::process::getpriority_process(None).ok(), Some(0));
        std::thread::spawn(|| {
            super::mark_background();
            assert_eq!(rustix::process::getpriority_process(None).ok(), Some(0));
            super::enter_bulk_work();
            assert_eq!(rustix::process::getpriority_process(None).ok(), Some(10));
        })
        .join()
        .unwrap();
    }
}
