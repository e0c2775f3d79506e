//! Memory freed during a burst goes back to the OS once a serving thread is quiet.
//!
//! The binary's allocator is mimalloc (see `main.rs`). It returns freed pages to the OS only
//! when the thread that owns them calls into the allocator again, once `purge_delay` (1 s)
//! has passed. A serving thread that goes quiet after a burst therefore keeps resident all
//! that the burst freed, until traffic comes back. After one request on each of 8,000
//! keep-alive connections, that was about 3 KB per connection; the connections themselves
//! hold nothing more than before the request (`SCENARIOS=idle benches/load.sh`).
//! [`give_back`] runs on every serving thread and asks mimalloc every [`EVERY`] to free the
//! thread's empty pages and purge what has been free for longer than its delay. Under load
//! this costs one pass over the thread's pages every few seconds.

use std::time::Duration;

/// How often each serving thread collects.
pub const EVERY: Duration = Duration::from_secs(5);

/// Collect this thread's freed memory every [`EVERY`], for as long as the thread's runtime
/// runs (spawn it on a serving thread's runtime).
pub async fn give_back() {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        collect();
    }
}

/// Free the calling thread's empty pages and purge memory free for longer than mimalloc's
/// purge delay. Without mimalloc as the global allocator (the library's own tests), this only
/// walks mimalloc's empty heap for this thread. Its effect is measured, not unit-tested: the
/// idle scenario of `benches/load.sh` reads RSS before and after; every end-to-end test runs
/// the binary with it.
fn collect() {
    // SAFETY: `mi_collect` takes no pointers: it works on the calling thread's own heap (and
    // mimalloc's arenas, under mimalloc's own locks), freeing only pages with no live block.
    // It is mimalloc's public API for this ("eagerly free memory", mimalloc.h).
    unsafe { libmimalloc_sys::mi_collect(false) }
}
