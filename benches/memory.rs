//! Memory per stored session in the memory store: creates 100,000 realistic sessions and
//! counts the heap bytes they hold (a counting global allocator, so the figure is exact and
//! does not depend on the allocator's page behaviour). Target: ≤ 600 bytes per session.
//!
//! Run: `cargo bench --bench memory`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is a finding

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use sessiongate::store::memory::MemoryStore;
use sessiongate::store::{SessionRecord, SessionStore};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

const N: usize = 100_000;
const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36";

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let store = MemoryStore::new();
    let now = sessiongate::util::now_unix();
    // Users: 10 sessions each on average, as on a busy site.
    let users: Vec<String> = (0..N / 10)
        .map(|i| format!("user{i:06}@example.com"))
        .collect();
    let before = LIVE.load(Ordering::Relaxed);
    rt.block_on(async {
        for i in 0..N {
            let ua = UA.to_string();
            let rec = SessionRecord {
                sid: sessiongate::util::random_token(24),
                user: users[i % users.len()].clone(),
                roles: vec!["staff".into(), "reader".into()],
                created: now,
                last_seen: now,
                abs_end: now + 7 * 86_400,
                cur_jti: sessiongate::util::random_token(16),
                prev_jti: Some(sessiongate::util::random_token(16)),
                rotated_at_ms: now * 1000,
                prev_open: false,
                ip: format!("203.0.113.{}", i % 250),
                device: sessiongate::web::user_agent::UserAgent::from_bytes(ua.as_bytes())
                    .device()
                    .label(),
                user_agent: ua,
                idp: None,
                auth_time: now,
                refreshes: 1,
            };
            store.create(rec).await.expect("memory store never fails");
        }
    });
    let after = LIVE.load(Ordering::Relaxed);
    let per = (after - before) as f64 / N as f64;
    println!(
        "memory store: {N} sessions hold {:.1} MB of heap: {per:.0} bytes per session (target <= 600)",
        (after - before) as f64 / 1e6
    );
    assert_eq!(store.len(), N);
}
