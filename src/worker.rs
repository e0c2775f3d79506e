//! Which serving thread this is. Serving threads each run a runtime of their own; what a
//! request uses from a per-thread set (upstream connection pools, Redis connections) is picked
//! by this index, so a request finds what its own thread owns and never wakes another.

use std::cell::Cell;

thread_local! {
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// Mark the current thread as serving worker `i` (1-based; 0 is the control runtime).
pub fn set(i: usize) {
    WORKER.with(|w| w.set(i));
}

/// This thread's index: 1-based on a serving thread, 0 elsewhere (the control runtime).
pub fn index() -> usize {
    WORKER.with(Cell::get)
}
