//! Leases of a shared (Redis) bucket: tokens an instance has already taken from the shared
//! budget, spent locally without a round trip.
//!
//! - A request with a token in its key's lease spends it under a short lock: no await.
//! - When the lease runs low (a quarter of a lease left) one background refill per key, back up
//!   to a whole lease, is started (`RateLimits::refill_in_background`); a request that finds the lease empty asks
//!   Redis itself, for its own token and a new lease.
//! - The lease size is an eighth of what the shared bucket had left at the last take, at most
//!   [`LEASE_MAX`]: it shrinks as the bucket empties, and below 8 tokens left there is no
//!   lease at all (each request takes its one token from Redis).
//! - A lease expires `max(T × tokens, 1 s)` after it was topped up (`T` the bucket's emission
//!   interval): its unspent tokens are dropped (refused early, never admitted late), so a
//!   token is spent at most that long after Redis counted it.
//!
//! What this gives up: a token leased by one instance and not yet spent is refused to the
//! others — one lease, at most `min(64, remaining / 8)` tokens, per key and instance (more
//! only while several requests find the lease empty at once) — and admissions may trail
//! Redis's count by up to a lease's lifetime.
//!
//! Bounded like the local tables: at most `cap` keys; when full, entries with nothing to spend
//! are evicted first, then an eighth of the shard (their unspent tokens are lost: refusals,
//! never admissions).

use std::collections::HashMap;
use std::hash::BuildHasher;

use parking_lot::Mutex;

use crate::store::gcra::Gcra;

/// The most tokens one lease holds.
pub const LEASE_MAX: u64 = 64;

/// The shortest life of a lease (µs).
const LEASE_MIN_LIFE_US: u64 = 1_000_000;

const SHARDS: usize = 16;

#[derive(Debug, Clone, Copy)]
struct Lease {
    tokens: u64,
    expires_us: u64,
    /// What the shared bucket had left at the last take.
    hint: u64,
    refilling: bool,
}

/// What [`LeaseTable::spend`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spend {
    /// A leased token was spent; `refill`: start a background refill of that many tokens.
    Spent { refill: Option<u64> },
    /// Nothing to spend: ask the store for `want` tokens (one for this request, the rest a
    /// lease).
    Empty { want: u64 },
}

/// The lease size for a bucket that had `hint` tokens left.
pub fn lease_size(hint: u64) -> u64 {
    (hint / 8).min(LEASE_MAX)
}

pub struct LeaseTable {
    shards: Vec<Mutex<HashMap<String, Lease>>>,
    hasher: std::collections::hash_map::RandomState,
    per_shard: usize,
    /// A key not seen yet is assumed to have a full bucket (its burst).
    burst: u64,
}

impl LeaseTable {
    pub fn new(cap: usize, burst: u64) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            per_shard: cap.div_ceil(SHARDS).max(1),
            burst,
        }
    }

    fn shard(&self, key: &str) -> Option<&Mutex<HashMap<String, Lease>>> {
        let i = (self.hasher.hash_one(key) as usize) % self.shards.len();
        self.shards.get(i)
    }

    /// Spend one leased token of `key` at `now_us`, if there is one.
    pub fn spend(&self, key: &str, now_us: u64) -> Spend {
        let fresh = Spend::Empty {
            want: 1 + lease_size(self.burst),
        };
        let Some(shard) = self.shard(key) else {
            return fresh;
        };
        let mut map = shard.lock();
        let Some(l) = map.get_mut(key) else {
            return fresh;
        };
        if l.tokens == 0 || now_us >= l.expires_us {
            l.tokens = 0;
            return Spend::Empty {
                want: 1 + lease_size(l.hint),
            };
        }
        l.tokens -= 1;
        let size = lease_size(l.hint);
        // Topped up to one lease, so an instance holds at most one (and whatever the
        // requests that found it empty at once were granted).
        let refill = (!l.refilling && size > 0 && l.tokens <= size / 4).then(|| {
            l.refilling = true;
            size - l.tokens
        });
        Spend::Spent { refill }
    }

    /// `tokens` more for `key`'s lease, taken from a bucket that has `remaining` left.
    pub fn grant(&self, key: &str, tokens: u64, remaining: u64, gcra: &Gcra, now_us: u64) {
        let Some(shard) = self.shard(key) else {
            return;
        };
        let mut map = shard.lock();
        if !map.contains_key(key) {
            if tokens == 0 {
                return;
            }
            if map.len() >= self.per_shard {
                evict(&mut map, now_us);
            }
        }
        let l = map.entry(key.to_string()).or_insert(Lease {
            tokens: 0,
            expires_us: 0,
            hint: remaining,
            refilling: false,
        });
        if now_us >= l.expires_us {
            l.tokens = 0;
        }
        l.tokens = l.tokens.saturating_add(tokens);
        l.hint = remaining;
        l.refilling = false;
        let life = gcra
            .interval_us
            .saturating_mul(l.tokens)
            .max(LEASE_MIN_LIFE_US);
        l.expires_us = now_us.saturating_add(life);
    }

    /// The shared bucket was found empty.
    pub fn note_empty(&self, key: &str) {
        self.update(key, |l| l.hint = 0);
    }

    /// A background refill failed: another may start.
    pub fn refill_failed(&self, key: &str) {
        self.update(key, |l| l.refilling = false);
    }

    fn update(&self, key: &str, f: impl FnOnce(&mut Lease)) {
        if let Some(shard) = self.shard(key)
            && let Some(l) = shard.lock().get_mut(key)
        {
            f(l);
        }
    }

    /// Unspent leased tokens of `key`.
    #[cfg(test)]
    pub fn tokens(&self, key: &str) -> u64 {
        self.shard(key)
            .and_then(|s| s.lock().get(key).map(|l| l.tokens))
            .unwrap_or(0)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }
}

fn evict(map: &mut HashMap<String, Lease>, now_us: u64) {
    let before = map.len();
    map.retain(|_, l| l.refilling || (l.tokens > 0 && now_us < l.expires_us));
    if map.len() < before {
        return;
    }
    let mut drop_n = (map.len() / 8).max(1);
    map.retain(|_, _| {
        if drop_n > 0 {
            drop_n -= 1;
            false
        } else {
            true
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const S: u64 = 1_000_000;

    #[test]
    fn the_lease_shrinks_as_the_bucket_empties() {
        assert_eq!(lease_size(100_000), LEASE_MAX);
        assert_eq!(lease_size(100), 12);
        assert_eq!(lease_size(8), 1);
        assert_eq!(lease_size(7), 0, "near empty: every request asks the store");
    }

    #[test]
    fn leased_tokens_are_spent_locally_and_refilled_before_they_run_out() {
        let g = Gcra::new(1000, Duration::from_secs(1), 1000);
        let t = LeaseTable::new(100, 1000);
        // Unknown key: one token and a lease of an eighth of a full bucket, at most 64.
        assert_eq!(t.spend("k", 0), Spend::Empty { want: 65 });
        t.grant("k", 64, 935, &g, 0);
        let mut refills = 0;
        for _ in 0..64 {
            match t.spend("k", 1) {
                Spend::Spent { refill: Some(n) } => {
                    assert_eq!(n, 64 - 16, "topped up to one lease");
                    refills += 1;
                }
                Spend::Spent { refill: None } => {}
                Spend::Empty { .. } => panic!("a leased token was not spent"),
            }
        }
        assert_eq!(refills, 1, "one refill in flight per key");
        assert_eq!(t.spend("k", 2), Spend::Empty { want: 65 });
        t.grant("k", 64, 800, &g, 3);
        assert_eq!(t.tokens("k"), 64);
        // The refill that was in flight may start again once one lands.
        let mut again = 0;
        for _ in 0..64 {
            if let Spend::Spent { refill: Some(_) } = t.spend("k", 4) {
                again += 1;
            }
        }
        assert_eq!(again, 1);
    }

    #[test]
    fn a_nearly_empty_bucket_gives_no_lease_and_a_lease_expires() {
        let g = Gcra::new(10, Duration::from_secs(10), 10); // T = 1 s
        let t = LeaseTable::new(100, 10);
        assert_eq!(t.spend("k", 0), Spend::Empty { want: 2 });
        t.grant("k", 1, 5, &g, 0);
        // Five left: no lease and no refill.
        assert_eq!(t.spend("k", 1), Spend::Spent { refill: None });
        assert_eq!(t.spend("k", 2), Spend::Empty { want: 1 });
        t.note_empty("k");
        assert_eq!(t.spend("k", 3), Spend::Empty { want: 1 });
        // A lease of three lives max(3 × 1 s, 1 s): unspent tokens are dropped after it.
        t.grant("k", 3, 100, &g, 10 * S);
        assert!(matches!(t.spend("k", 12 * S), Spend::Spent { .. }));
        assert!(matches!(t.spend("k", 13 * S), Spend::Empty { .. }));
        assert_eq!(t.tokens("k"), 0);
    }

    #[test]
    fn the_lease_table_is_bounded() {
        let g = Gcra::new(1000, Duration::from_secs(1), 1000);
        let t = LeaseTable::new(SHARDS * 4, 1000);
        for k in 0..5000 {
            t.grant(&k.to_string(), 10, 900, &g, 0);
            assert!(t.len() <= SHARDS * 4);
        }
        // Nothing is granted to a key with no tokens to hold.
        t.grant("none", 0, 0, &g, 0);
        assert_eq!(t.tokens("none"), 0);
    }
}
