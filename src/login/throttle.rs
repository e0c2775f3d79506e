//! Login throttling: every attempt is counted before its password is checked.
//!
//! Threats: online password guessing against one account, password spraying from one address
//! across many accounts (OWASP ASVS V2.2.1), and the throttle itself used as a remote lockout
//! switch (OWASP Authentication Cheat Sheet, "Account Lockout"): if failures from anywhere
//! locked an account, anyone who knows a user name could keep its owner out.
//!
//! Three budgets, each a fixed window of `login.failure_window` from its first counted attempt:
//! - per client address (`login.max_failures_per_ip`; an IPv6 client is its /64, since one host
//!   may use any address in it): strict, for every account;
//! - per account *and* client network (`login.max_failures_per_user`; /24 for IPv4, /64 for
//!   IPv6): a guesser throttles the account on their own network only, and its owner still signs
//!   in from elsewhere;
//! - per account from every network (`login.max_failures_per_user_total`): a higher backstop
//!   against guessing spread over many networks.
//!
//! An attempt takes one unit of each budget atomically, before any password work, and gives it
//! back only when it succeeds: attempts in flight count against the limits, so N parallel
//! guesses get at most `limit` verifications. A success also clears the account's failures on
//! its network; it does not clear the address's (a sprayer who guesses one password must not
//! reset their budget) nor the account-wide backstop (guessers spread over many networks must
//! not get a fresh budget whenever the owner signs in). An attempt that is dropped before it
//! finishes (the client went away mid-verification) counts as a failure.
//!
//! The IP is the real client address (the TCP peer, or `X-Forwarded-For` only through trusted
//! proxies), never a header a client can set. Counters live in this instance.
//!
//! Bounded: a key is an address or network plus at most [`MAX_USER_KEY`] bytes of the user name
//! (longer names cannot be users and share their prefix's counters); each table holds at most
//! [`MAX_KEYS`] keys, swept of expired windows every 15 s (`server::spawn_background`) and when
//! full. A table that is still full refuses attempts under keys it does not hold (`429`): under a
//! flood that large, logins wait rather than go uncounted.

use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::config::LoginConfig;
use crate::util::now_unix;

/// Keys per table (per address, per account and network, per account). About 200 bytes each
/// at most, so a full table is some 13 MiB.
pub const MAX_KEYS: usize = 65_536;

/// Bytes of a user name kept in a key: valid user names are at most 128 bytes
/// (`login::users`), so a longer one is not a user and its tail adds nothing.
pub const MAX_USER_KEY: usize = 128;

/// A full table is swept at most this often (seconds) outside the periodic sweep, so a flood
/// of new keys does not turn every attempt into a scan.
const FULL_SWEEP_EVERY: u64 = 1;

#[derive(Debug, Clone, Copy)]
struct Window {
    start: u64,
    failures: u32,
    /// Attempts taken and not finished; kept across a window's end, never swept while non-zero.
    in_flight: u32,
}

impl Window {
    fn expired(&self, now: u64, window: u64) -> bool {
        now >= self.start.saturating_add(window)
    }

    /// Start a new window at `now` if this one is over (in-flight attempts carry over).
    fn roll(&mut self, now: u64, window: u64) {
        if self.expired(now, window) {
            self.start = now;
            self.failures = 0;
        }
    }

    fn used(&self, now: u64, window: u64) -> u32 {
        let failures = if self.expired(now, window) {
            0
        } else {
            self.failures
        };
        failures.saturating_add(self.in_flight)
    }

    /// Seconds until the window ends (at least 1: in-flight attempts finish soon).
    fn retry(&self, now: u64, window: u64) -> u64 {
        self.start.saturating_add(window).saturating_sub(now).max(1)
    }
}

/// Why an attempt may not start: seconds to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Refused(u64);

/// How an attempt ended, for one budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Counts as a failure.
    Failed,
    /// Given back (a success, or another budget refused the attempt).
    GivenBack,
    /// Given back, and the key's failures cleared.
    Cleared,
}

struct Counter<K: Eq + Hash> {
    map: DashMap<K, Window>,
    limit: u32,
    cap: usize,
    last_full_sweep: AtomicU64,
}

impl<K: Eq + Hash + Clone> Counter<K> {
    fn new(limit: u32, cap: usize) -> Self {
        Self {
            map: DashMap::new(),
            limit,
            cap,
            last_full_sweep: AtomicU64::new(0),
        }
    }

    /// Seconds until `k` may try again, if it is at the limit now.
    fn blocked(&self, k: &K, now: u64, window: u64) -> Option<u64> {
        let w = *self.map.get(k)?;
        (w.used(now, window) >= self.limit).then(|| w.retry(now, window))
    }

    /// Take one unit of `k`'s budget, atomically (under the key's shard lock).
    fn take(&self, k: &K, now: u64, window: u64) -> Result<(), Refused> {
        if self.map.len() >= self.cap && !self.map.contains_key(k) {
            self.sweep_when_full(now, window);
            // Checked and inserted under different locks: the table can exceed `cap` by the
            // attempts racing here, which the serving threads bound.
            if self.map.len() >= self.cap {
                warn_full();
                return Err(Refused(window));
            }
        }
        let mut w = self.map.entry(k.clone()).or_insert(Window {
            start: now,
            failures: 0,
            in_flight: 0,
        });
        w.roll(now, window);
        if w.used(now, window) >= self.limit {
            return Err(Refused(w.retry(now, window)));
        }
        w.in_flight = w.in_flight.saturating_add(1);
        Ok(())
    }

    /// Finish an attempt that took a unit of `k`. Its entry is there: entries with attempts in
    /// flight are never swept.
    fn finish(&self, k: &K, now: u64, window: u64, end: End) {
        let Some(mut w) = self.map.get_mut(k) else {
            return;
        };
        w.in_flight = w.in_flight.saturating_sub(1);
        w.roll(now, window);
        match end {
            End::Failed => w.failures = w.failures.saturating_add(1),
            End::GivenBack => {}
            End::Cleared => w.failures = 0,
        }
    }

    /// Drop expired entries; how many went.
    fn sweep(&self, now: u64, window: u64) -> usize {
        let before = self.map.len();
        self.map
            .retain(|_, w| w.in_flight > 0 || !w.expired(now, window));
        before.saturating_sub(self.map.len())
    }

    fn sweep_when_full(&self, now: u64, window: u64) {
        let last = self.last_full_sweep.load(Ordering::Relaxed);
        if now >= last.saturating_add(FULL_SWEEP_EVERY)
            && self
                .last_full_sweep
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            self.sweep(now, window);
        }
    }
}

/// At most one warning a minute about a full table.
fn warn_full() {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = now_unix();
    let last = LAST.load(Ordering::Relaxed);
    if now >= last.saturating_add(60)
        && LAST
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(
            keys = MAX_KEYS,
            "login throttle table full: refusing logins under new names or addresses until \
             entries expire (login.failure_window)"
        );
    }
}

/// `ip`'s network of `v4`/`v6` leading bits (an IPv4-mapped IPv6 address is IPv4).
fn network(ip: IpAddr, v4: u8, v6: u8) -> IpNet {
    match ip.to_canonical() {
        IpAddr::V4(a) => Ipv4Net::new(a, v4).map_or(IpNet::from(ip), |n| IpNet::V4(n.trunc())),
        IpAddr::V6(a) => Ipv6Net::new(a, v6).map_or(IpNet::from(ip), |n| IpNet::V6(n.trunc())),
    }
}

/// The user-name part of a key: at most [`MAX_USER_KEY`] bytes, cut at a character boundary.
fn user_key(user: &str) -> Box<str> {
    let mut end = user.len().min(MAX_USER_KEY);
    while !user.is_char_boundary(end) {
        end -= 1;
    }
    user[..end].into()
}

/// The keys of one attempt.
#[derive(Debug, Clone)]
struct Keys {
    ip: IpNet,
    user_net: (Box<str>, IpNet),
    user: Box<str>,
}

impl Keys {
    fn new(user: &str, ip: IpAddr) -> Self {
        let user = user_key(user);
        Self {
            ip: network(ip, 32, 64),
            user_net: (user.clone(), network(ip, 24, 64)),
            user,
        }
    }
}

pub struct Throttle {
    ips: Counter<IpNet>,
    user_nets: Counter<(Box<str>, IpNet)>,
    users: Counter<Box<str>>,
    window: u64,
}

/// A login attempt in progress: it holds one unit of each budget until it ends. Dropped
/// without [`Attempt::succeeded`], it counts as a failure.
#[must_use = "an attempt counts as a failure unless it succeeds"]
pub struct Attempt<'a> {
    throttle: &'a Throttle,
    keys: Keys,
    outcome: Finish,
}

/// How an attempt finished, for [`Throttle::finish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Finish {
    Failed,
    /// Given back without clearing anything.
    Undecided,
    Succeeded,
}

impl Attempt<'_> {
    /// The password was right: give the units back and clear the account's failures on this
    /// network.
    pub fn succeeded(mut self) {
        self.outcome = Finish::Succeeded;
    }

    /// The password was right but a second factor is still to come (the client is asked for
    /// it): give the units back, and clear nothing, so that a guesser of codes who knows the
    /// password cannot reset the account's failures by leaving the code out.
    pub fn undecided(mut self) {
        self.outcome = Finish::Undecided;
    }

    /// The password was wrong (the same as dropping the attempt; this names it).
    pub fn failed(self) {}
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        self.throttle.finish(&self.keys, now_unix(), self.outcome);
    }
}

impl Throttle {
    pub fn new(cfg: &LoginConfig) -> Self {
        Self::with_capacity(cfg, MAX_KEYS)
    }

    fn with_capacity(cfg: &LoginConfig, cap: usize) -> Self {
        Self {
            ips: Counter::new(cfg.max_failures_per_ip, cap),
            user_nets: Counter::new(cfg.max_failures_per_user, cap),
            users: Counter::new(cfg.max_failures_per_user_total, cap),
            window: cfg.failure_window.as_secs().max(1),
        }
    }

    /// Start an attempt for `user` from `ip`, or `Err(retry_after)` when one of its budgets is
    /// spent (attempts in flight included).
    pub fn begin(&self, user: &str, ip: IpAddr) -> Result<Attempt<'_>, Duration> {
        let keys = Keys::new(user, ip);
        self.take(&keys, now_unix()).map_err(Duration::from_secs)?;
        Ok(Attempt {
            throttle: self,
            keys,
            outcome: Finish::Failed,
        })
    }

    /// Take a unit of each budget, or none: a refusal gives back what was taken.
    fn take(&self, k: &Keys, now: u64) -> Result<(), u64> {
        let w = self.window;
        let refused = match self.ips.take(&k.ip, now, w) {
            Err(r) => Some(r),
            Ok(()) => match self.user_nets.take(&k.user_net, now, w) {
                Err(r) => {
                    self.ips.finish(&k.ip, now, w, End::GivenBack);
                    Some(r)
                }
                Ok(()) => match self.users.take(&k.user, now, w) {
                    Err(r) => {
                        self.ips.finish(&k.ip, now, w, End::GivenBack);
                        self.user_nets.finish(&k.user_net, now, w, End::GivenBack);
                        Some(r)
                    }
                    Ok(()) => None,
                },
            },
        };
        match refused {
            None => Ok(()),
            // Wait for the longest of the budgets that are spent.
            Some(Refused(r)) => Err([
                self.ips.blocked(&k.ip, now, w),
                self.user_nets.blocked(&k.user_net, now, w),
                self.users.blocked(&k.user, now, w),
            ]
            .into_iter()
            .flatten()
            .fold(r, u64::max)),
        }
    }

    fn finish(&self, k: &Keys, now: u64, outcome: Finish) {
        let w = self.window;
        let (spent, net) = match outcome {
            Finish::Succeeded => (End::GivenBack, End::Cleared),
            Finish::Undecided => (End::GivenBack, End::GivenBack),
            Finish::Failed => (End::Failed, End::Failed),
        };
        self.ips.finish(&k.ip, now, w, spent);
        self.user_nets.finish(&k.user_net, now, w, net);
        self.users.finish(&k.user, now, w, spent);
    }

    /// Forget windows that are over (called every 15 s by the server's background task).
    /// Drop the entries whose window has passed: `(removed, still held)`.
    pub fn sweep(&self) -> (usize, usize) {
        let removed = self.sweep_at(now_unix());
        let held = self.ips.map.len() + self.user_nets.map.len() + self.users.map.len();
        (removed, held)
    }

    fn sweep_at(&self, now: u64) -> usize {
        self.ips.sweep(now, self.window)
            + self.user_nets.sweep(now, self.window)
            + self.users.sweep(now, self.window)
    }

    /// Keys held, per table (address, account and network, account).
    #[cfg(test)]
    fn tracked(&self) -> (usize, usize, usize) {
        (
            self.ips.map.len(),
            self.user_nets.map.len(),
            self.users.map.len(),
        )
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
            max_failures_per_user_total: 6,
            max_failures_per_ip: 5,
            failure_window: Duration::from_secs(60),
            require_second_factor: false,
            second_factor_grace: Duration::ZERO,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn fail(t: &Throttle, user: &str, from: &str) {
        t.begin(user, ip(from)).unwrap().failed();
    }

    #[test]
    fn per_account_and_network_per_account_and_per_ip_limits() {
        let t = Throttle::new(&cfg());
        for _ in 0..3 {
            fail(&t, "alice", "10.0.0.1");
        }
        assert!(t.begin("alice", ip("10.0.0.1")).is_err());
        assert!(
            t.begin("alice", ip("10.0.0.77")).is_err(),
            "the account is throttled on the guesser's whole /24"
        );
        t.begin("alice", ip("10.0.1.2"))
            .expect("the account is not throttled from another network")
            .succeeded();
        assert!(
            t.begin("alice", ip("10.0.0.1")).is_err(),
            "a success elsewhere does not clear the guesser's network"
        );
        // The account-wide backstop: 3 more failures from a third network make 6.
        for _ in 0..3 {
            fail(&t, "alice", "10.0.2.1");
        }
        assert!(
            t.begin("alice", ip("10.0.1.2")).is_err(),
            "past the backstop the account is throttled from anywhere"
        );
        assert!(t.begin("bob", ip("10.0.1.2")).is_ok(), "bob is not");
        // Per address: 5 failures from one address, across accounts.
        for u in ["c1", "c2", "c3", "c4", "c5"] {
            fail(&t, u, "192.0.2.9");
        }
        assert!(
            t.begin("dave", ip("192.0.2.9")).is_err(),
            "the address is throttled for any account"
        );
        assert!(
            t.begin("dave", ip("192.0.2.10")).is_ok(),
            "its neighbour is not"
        );
    }

    #[test]
    fn attempts_in_flight_count_against_the_limit() {
        let t = Throttle::new(&cfg());
        let held: Vec<Attempt<'_>> = (0..3)
            .map(|_| t.begin("alice", ip("10.0.0.1")).unwrap())
            .collect();
        let retry = t.begin("alice", ip("10.0.0.1")).err();
        assert!(retry.is_some_and(|r| r >= Duration::from_secs(1)));
        drop(held); // they failed
        assert!(t.begin("alice", ip("10.0.0.1")).is_err());
    }

    #[test]
    fn a_success_gives_its_units_back_and_clears_its_network() {
        let t = Throttle::new(&cfg());
        fail(&t, "alice", "10.0.0.1");
        fail(&t, "alice", "10.0.0.1");
        for _ in 0..10 {
            t.begin("alice", ip("10.0.0.1")).unwrap().succeeded();
        }
        for _ in 0..3 {
            fail(&t, "alice", "10.0.0.1");
        }
        assert!(t.begin("alice", ip("10.0.0.1")).is_err());
        // The address has 5 failures: the 10 successes did not count against it.
        assert!(t.begin("bob", ip("10.0.0.1")).is_err());
    }

    #[test]
    fn a_refused_attempt_takes_nothing() {
        let t = Throttle::new(&cfg());
        for _ in 0..3 {
            fail(&t, "alice", "10.0.0.1");
        }
        for _ in 0..50 {
            assert!(t.begin("alice", ip("10.0.0.1")).is_err());
        }
        // Only the 3 failures count against the address (limit 5) and the account (limit 6).
        fail(&t, "bob", "10.0.0.1");
        fail(&t, "alice", "10.0.9.9");
        fail(&t, "alice", "10.0.9.9");
        assert!(t.begin("carol", ip("10.0.0.1")).is_ok());
        assert!(t.begin("alice", ip("10.0.8.8")).is_ok());
    }

    #[test]
    fn ipv6_clients_are_their_slash_64_and_mapped_ipv4_is_ipv4() {
        let t = Throttle::new(&cfg());
        for i in 0..5 {
            fail(&t, &format!("u{i}"), &format!("2001:db8:1:2::{i}"));
        }
        assert!(t.begin("v", ip("2001:db8:1:2:ffff::1")).is_err());
        assert!(t.begin("v", ip("2001:db8:1:3::1")).is_ok());
        for i in 0..5 {
            fail(&t, &format!("w{i}"), "::ffff:192.0.2.1");
        }
        assert!(t.begin("x", ip("192.0.2.1")).is_err());
    }

    #[test]
    fn long_user_names_are_cut_at_a_character_boundary() {
        let long = "é".repeat(5000);
        let k = user_key(&long);
        assert!(k.len() <= MAX_USER_KEY && k.len() >= MAX_USER_KEY - 1);
        assert!(long.starts_with(&*k));
        assert_eq!(&*user_key("alice"), "alice");
        // Two long names with one prefix share their counters.
        let t = Throttle::new(&cfg());
        let a = format!("{}a", "x".repeat(200));
        let b = format!("{}b", "x".repeat(200));
        for _ in 0..3 {
            fail(&t, &a, "10.0.0.1");
        }
        assert!(t.begin(&b, ip("10.0.0.2")).is_err());
    }

    #[test]
    fn a_flood_of_distinct_user_names_stays_bounded_and_is_swept() {
        let cap = 1000;
        let mut c = cfg();
        c.max_failures_per_ip = u32::MAX;
        let t = Throttle::with_capacity(&c, cap);
        let now = now_unix();
        let mut refused = 0;
        for i in 0..20_000 {
            let keys = Keys::new(&format!("user-{i}-{}", "y".repeat(300)), ip("10.0.0.1"));
            match t.take(&keys, now) {
                Ok(()) => t.finish(&keys, now, Finish::Failed),
                Err(_) => refused += 1,
            }
        }
        let (ips, user_nets, users) = t.tracked();
        assert_eq!(ips, 1);
        assert!(user_nets <= cap && users <= cap, "{user_nets} {users}");
        assert_eq!(refused, 20_000 - cap, "new names are refused while full");
        // A name already held is still counted, not refused for the table being full.
        let held = Keys::new(&format!("user-7-{}", "y".repeat(300)), ip("10.0.0.1"));
        assert!(t.take(&held, now).is_ok());
        t.finish(&held, now, Finish::Failed);
        // Within the window nothing expires; after it, the sweep forgets everything...
        t.sweep_at(now + 59);
        assert_eq!(t.tracked().1, cap);
        t.sweep_at(now + 60);
        assert_eq!(t.tracked(), (0, 0, 0));
        // ...except entries with an attempt in flight.
        let k = Keys::new("alice", ip("10.0.0.1"));
        t.take(&k, now + 60).unwrap();
        t.sweep_at(now + 1000);
        assert_eq!(t.tracked(), (1, 1, 1));
        t.finish(&k, now + 1000, Finish::Failed);
        t.sweep_at(now + 2000);
        assert_eq!(t.tracked(), (0, 0, 0));
    }

    #[test]
    fn a_full_table_makes_room_once_windows_end() {
        let mut c = cfg();
        c.max_failures_per_ip = u32::MAX;
        let t = Throttle::with_capacity(&c, 10);
        let now = now_unix();
        for i in 0..10 {
            let k = Keys::new(&format!("u{i}"), ip("10.0.0.1"));
            t.take(&k, now).unwrap();
            t.finish(&k, now, Finish::Failed);
        }
        let new = Keys::new("newcomer", ip("10.0.0.1"));
        assert!(t.take(&new, now).is_err());
        // Without the periodic sweep: a full table sweeps itself when windows are over.
        assert!(t.take(&new, now + 61).is_ok());
        assert_eq!(t.tracked().2, 1);
    }
}
