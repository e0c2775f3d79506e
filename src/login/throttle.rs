//! Login throttling, per account and per client IP.
//!
//! Threats: online password guessing against one account, and password spraying from one
//! address across many accounts (OWASP ASVS V2.2.1). Failures are counted in a fixed window;
//! past the limit, attempts get `429` with `Retry-After` before any password is checked. The IP
//! is the real client address (the TCP peer, or `X-Forwarded-For` only through trusted
//! proxies), never a header a client can set. Counters live in this instance.

use std::hash::Hash;
use std::net::IpAddr;
use std::time::Duration;

use dashmap::DashMap;

use crate::config::LoginConfig;
use crate::util::now_unix;

#[derive(Debug, Clone, Copy)]
struct Window {
    start: u64,
    failures: u32,
}

struct Counter<K: Eq + Hash> {
    map: DashMap<K, Window>,
    limit: u32,
}

impl<K: Eq + Hash + Clone> Counter<K> {
    fn new(limit: u32) -> Self {
        Self {
            map: DashMap::new(),
            limit,
        }
    }

    /// Seconds until `k` may try again, if it is over the limit.
    fn blocked(&self, k: &K, now: u64, window: u64) -> Option<u64> {
        let w = *self.map.get(k)?;
        (now < w.start + window && w.failures >= self.limit)
            .then(|| (w.start + window - now).max(1))
    }

    fn fail(&self, k: &K, now: u64, window: u64) {
        let mut e = self.map.entry(k.clone()).or_insert(Window {
            start: now,
            failures: 0,
        });
        if now >= e.start + window {
            *e = Window {
                start: now,
                failures: 0,
            };
        }
        e.failures = e.failures.saturating_add(1);
    }

    fn sweep(&self, now: u64, window: u64) {
        self.map.retain(|_, w| now < w.start + window);
    }
}

pub struct Throttle {
    users: Counter<String>,
    ips: Counter<IpAddr>,
    window: u64,
}

impl Throttle {
    pub fn new(cfg: &LoginConfig) -> Self {
        Self {
            users: Counter::new(cfg.max_failures_per_user),
            ips: Counter::new(cfg.max_failures_per_ip),
            window: cfg.failure_window.as_secs().max(1),
        }
    }

    /// `Some(retry_after)` when this user or address must wait.
    pub fn check(&self, user: &str, ip: IpAddr) -> Option<Duration> {
        let now = now_unix();
        let u = self.users.blocked(&user.to_string(), now, self.window);
        let i = self.ips.blocked(&ip, now, self.window);
        u.max(i).map(Duration::from_secs)
    }

    pub fn failure(&self, user: &str, ip: IpAddr) {
        let now = now_unix();
        self.users.fail(&user.to_string(), now, self.window);
        self.ips.fail(&ip, now, self.window);
    }

    /// A successful login clears the account's count (not the address's: a sprayer who
    /// guesses one password must not reset their budget).
    pub fn success(&self, user: &str) {
        self.users.map.remove(user);
    }

    pub fn sweep(&self) {
        let now = now_unix();
        self.users.sweep(now, self.window);
        self.ips.sweep(now, self.window);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> LoginConfig {
        LoginConfig {
            mode: crate::config::LoginMode::UsersFile,
            users_file: None,
            upstream: None,
            max_failures_per_user: 3,
            max_failures_per_ip: 5,
            failure_window: Duration::from_secs(60),
        }
    }

    #[test]
    fn per_user_and_per_ip_limits() {
        let t = Throttle::new(&cfg());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..3 {
            assert!(t.check("alice", ip).is_none());
            t.failure("alice", ip);
        }
        assert!(t.check("alice", ip).is_some());
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(
            t.check("alice", other).is_some(),
            "the account is throttled from anywhere"
        );
        assert!(t.check("bob", other).is_none());
        t.failure("bob", ip);
        t.failure("carol", ip);
        assert!(
            t.check("dave", ip).is_some(),
            "the address is throttled for any account"
        );
        t.success("alice");
        assert!(t.check("alice", other).is_none());
    }
}
