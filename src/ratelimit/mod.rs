//! Per-session and per-IP rate limits (`[rate_limit]`, `[[route]] rate_limit`): a GCRA bucket
//! (`store::gcra`) per session handle, or per client IP (IPv6: per /64) for requests without a
//! session on public routes. A request is charged to exactly one bucket: its route's own when
//! the route overrides the limits, otherwise the gateway's.
//!
//! Threat: one session (a stolen cookie, a runaway script) or one anonymous client exhausting
//! the app behind the gateway. Keys are the session's non-secret handle or the client's
//! network, never a session id or a token.
//!
//! Where the budget lives:
//! - memory store: this instance's table ([`GcraTable`]) is the authority; a request takes its
//!   token synchronously, with no await.
//! - Redis store: the budget is shared by every instance through one atomic script per take
//!   (Redis `TIME`, one key per bucket, cluster safe). So that a request far from its limit
//!   awaits no round trip, each instance takes a *lease* of several tokens ([`lease`]) and
//!   spends it locally, refilling it in the background (one refill in flight per key) when it
//!   runs low; the lease shrinks as the shared bucket empties (to none: each request then asks
//!   Redis). Nothing is admitted beyond the shared budget; the accuracy given up is that a
//!   leased, unspent token refuses other instances early (about one lease per key and
//!   instance: at most [`lease::LEASE_MAX`] tokens and an eighth of what the bucket had left),
//!   and that a leased token is spent up to its lease's lifetime after Redis counted it (see
//!   [`lease`]).
//! - Redis unreachable: each instance falls back to its own table with the same rates (logged
//!   once per outage, counted as `sessiongate_store_errors_total{op="rate_limit"}`), never a
//!   `5xx` and never unlimited; Redis is asked again [`RETRY_STORE`] later.
//!
//! Every table is bounded ([`TABLE_MAX`] keys per bucket; full buckets are evicted first).
//! A reload keeps each bucket whose scope and limit did not change.

pub mod lease;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::config::rate_limit::{Limit, Limits, RateLimitConfig};
use crate::metrics::{Metrics, Scope as ScopeLabel};
use crate::store::SessionStore;
use crate::store::gcra::{Gcra, GcraTable, TABLE_MAX, Take, now_us};

use lease::{LeaseTable, Spend};

/// How long after a store failure the local fallback is used before Redis is asked again.
pub const RETRY_STORE: Duration = Duration::from_secs(5);

/// What a request is charged as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// A request with a session, keyed by its handle.
    Session,
    /// A request without a session on a public route, keyed by client IP (IPv6 by /64).
    Ip,
}

impl Scope {
    /// The policy name in `RateLimit-Policy` and the metric's `scope` label.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Session => "session",
            Scope::Ip => "ip",
        }
    }
}

/// A refusal's facts, for the `429` and its headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    pub scope: Scope,
    pub limit: Limit,
    /// Until one request is admitted again.
    pub retry_after: Duration,
    /// Until the bucket is full again.
    pub reset: Duration,
}

/// One bucket family: a scope (the gateway, or one route) and what it limits.
pub struct Bucket {
    /// `"g"` or the route's path prefix, as the Redis key names it.
    scope_name: String,
    scope: Scope,
    limit: Limit,
    gcra: Gcra,
    /// The authority with the memory store; the fallback with Redis.
    local: GcraTable<String>,
    leases: Arc<LeaseTable>,
    /// At most one audit event per key per window.
    audited: GcraTable<String>,
    /// The Redis key's prefix for this bucket: kind, parameters, scope (length-prefixed).
    store_prefix: String,
}

impl Bucket {
    fn new(scope_name: &str, scope: Scope, limit: Limit) -> Self {
        let gcra = Gcra::new(limit.rate.count, limit.rate.per, limit.burst);
        let kind = match scope {
            Scope::Session => "s",
            Scope::Ip => "i",
        };
        Self {
            store_prefix: format!(
                "{kind}:{}:{}:{}:{scope_name}:",
                gcra.interval_us,
                gcra.burst,
                scope_name.len()
            ),
            scope_name: scope_name.to_string(),
            scope,
            limit,
            gcra,
            local: GcraTable::new(TABLE_MAX),
            leases: Arc::new(LeaseTable::new(TABLE_MAX, gcra.burst)),
            audited: GcraTable::new(TABLE_MAX),
        }
    }

    fn limited(&self, take: &Take) -> Limited {
        Limited {
            scope: self.scope,
            limit: self.limit,
            retry_after: Duration::from_micros(take.retry_after_us),
            reset: Duration::from_micros(take.reset_us),
        }
    }

    /// Whether this refusal of `key` should be audited (the first in each window).
    pub fn audit_due(&self, key: &str) -> bool {
        let once = Gcra::new(1, self.limit.rate.per, 1);
        self.audited.take(&once, key, now_us(), 1).granted == 1
    }
}

/// The store-outage state, shared across reloads, so the fallback is logged once per outage.
#[derive(Default)]
struct Outage {
    /// 0 while the store answers; during an outage, until when (Unix µs) the local fallback
    /// is used without asking the store.
    until_us: AtomicU64,
    logged: AtomicBool,
}

impl Outage {
    /// Whether to use the local fallback now. Once an outage's window has passed, one request
    /// asks the store again (the others stay local meanwhile), so a store that hangs holds up
    /// one request per window, not all of them.
    fn use_local(&self, now: u64) -> bool {
        let until = self.until_us.load(Ordering::Relaxed);
        if until == 0 {
            return false;
        }
        if now < until {
            return true;
        }
        self.until_us
            .compare_exchange(
                until,
                now + retry_us(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_err()
    }
    fn begin(&self, now: u64, e: &crate::store::StoreError) {
        self.until_us
            .store(now.saturating_add(retry_us()).max(1), Ordering::Relaxed);
        if !self.logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(error = %e, "rate limits: the store is unreachable; each instance enforces the same rates on its own until it is back");
        }
    }
    fn over(&self) {
        if self.until_us.load(Ordering::Relaxed) != 0 {
            self.until_us.store(0, Ordering::Relaxed);
        }
        if self.logged.load(Ordering::Relaxed) && self.logged.swap(false, Ordering::Relaxed) {
            tracing::info!("rate limits: the store is reachable again; budgets are shared");
        }
    }
}

fn retry_us() -> u64 {
    u64::try_from(RETRY_STORE.as_micros()).unwrap_or(u64::MAX)
}

/// What outlives a reload: the metric and the outage state.
#[derive(Clone)]
pub struct Shared {
    limited: Family<ScopeLabel, Counter>,
    outage: Arc<Outage>,
}

impl Shared {
    /// Registers `sessiongate_rate_limited_total{scope}`.
    pub fn new(metrics: &mut Metrics) -> Self {
        let limited = Family::default();
        metrics.register_rate_limited(&limited);
        Self {
            limited,
            outage: Arc::default(),
        }
    }
}

/// One scope's buckets.
#[derive(Default, Clone)]
struct Policy {
    session: Option<Arc<Bucket>>,
    ip: Option<Arc<Bucket>>,
}

/// The rate limits of one runtime.
pub struct RateLimits {
    /// The index of each `[[route]]`'s policy, by the route's index (`routing::Route::id`;
    /// 0: the gateway's).
    by_route: Vec<usize>,
    policies: Vec<Policy>,
    store: Arc<dyn SessionStore>,
    shared_store: bool,
    shared: Shared,
}

impl RateLimits {
    /// The limits of `cfg`; buckets of `previous` (the runtime a reload replaces) whose scope
    /// and limit are unchanged are kept, with their state.
    pub fn new(
        cfg: &RateLimitConfig,
        store: Arc<dyn SessionStore>,
        shared: Shared,
        previous: Option<&RateLimits>,
    ) -> Self {
        let old: Vec<&Arc<Bucket>> = previous
            .map(|p| {
                p.policies
                    .iter()
                    .flat_map(|p| p.session.iter().chain(p.ip.iter()))
                    .collect()
            })
            .unwrap_or_default();
        let bucket = |name: &str, scope: Scope, limit: Option<Limit>| {
            let limit = limit?;
            let kept = old
                .iter()
                .find(|b| b.scope_name == name && b.scope == scope && b.limit == limit);
            Some(match kept {
                Some(b) => Arc::clone(b),
                None => Arc::new(Bucket::new(name, scope, limit)),
            })
        };
        let policy = |name: &str, l: &Limits| Policy {
            session: bucket(name, Scope::Session, l.per_session),
            ip: bucket(name, Scope::Ip, l.anonymous_per_ip),
        };
        let mut policies = vec![policy("g", &cfg.global)];
        let mut by_route = Vec::new();
        for (prefix, own) in &cfg.routes {
            let idx = match own {
                Some(l) => {
                    policies.push(policy(prefix, l));
                    policies.len() - 1
                }
                None => 0,
            };
            by_route.push(idx);
        }
        Self {
            by_route,
            policies,
            shared_store: store.shares_rate_limits(),
            store,
            shared,
        }
    }

    /// What the runtime a reload builds shares with this one.
    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Whether any limit is configured (a runtime without one skips the stage).
    pub fn is_empty(&self) -> bool {
        self.policies
            .iter()
            .all(|p| p.session.is_none() && p.ip.is_none())
    }

    /// The bucket a request on `route` (the router's `Route::id`: the index of its
    /// `[[route]]`, `None` for a path no route matches) is charged to (`None`: unlimited).
    pub fn bucket(&self, route: Option<usize>, scope: Scope) -> Option<&Arc<Bucket>> {
        let idx = route
            .and_then(|i| self.by_route.get(i))
            .copied()
            .unwrap_or(0);
        let p = self.policies.get(idx)?;
        match scope {
            Scope::Session => p.session.as_ref(),
            Scope::Ip => p.ip.as_ref(),
        }
    }

    /// Charge one request to `key` in `bucket`: `Err` when over the limit.
    pub async fn charge(&self, bucket: &Arc<Bucket>, key: &str) -> Result<(), Limited> {
        let now = now_us();
        let take = if !self.shared_store || self.shared.outage.use_local(now) {
            bucket.local.take(&bucket.gcra, key, now, 1)
        } else {
            match bucket.leases.spend(key, now) {
                Spend::Spent { refill } => {
                    if let Some(want) = refill {
                        self.refill_in_background(bucket, key, want);
                    }
                    return Ok(());
                }
                Spend::Empty { want } => self.take_shared(bucket, key, now, want).await,
            }
        };
        if take.granted > 0 {
            return Ok(());
        }
        self.shared
            .limited
            .get_or_create(&ScopeLabel {
                scope: bucket.scope.name().into(),
            })
            .inc();
        Err(bucket.limited(&take))
    }

    /// Ask the store for one token and a lease of `want - 1` more; the local fallback when it
    /// cannot answer.
    async fn take_shared(&self, bucket: &Arc<Bucket>, key: &str, now: u64, want: u64) -> Take {
        let redis_key = format!("{}{key}", bucket.store_prefix);
        match self.store.rate_take(&redis_key, bucket.gcra, want).await {
            Ok(t) => {
                self.shared.outage.over();
                if t.granted > 0 {
                    bucket
                        .leases
                        .grant(key, t.granted - 1, t.remaining, &bucket.gcra, now_us());
                } else {
                    bucket.leases.note_empty(key);
                }
                t
            }
            Err(e) => {
                self.shared.outage.begin(now, &e);
                bucket.local.take(&bucket.gcra, key, now, 1)
            }
        }
    }

    /// Top up `key`'s lease by `want` tokens without holding up the request (the lease table
    /// lets one refill per key be in flight).
    fn refill_in_background(&self, bucket: &Arc<Bucket>, key: &str, want: u64) {
        let (store, bucket, key, outage) = (
            self.store.clone(),
            bucket.clone(),
            key.to_string(),
            self.shared.outage.clone(),
        );
        tokio::spawn(async move {
            let redis_key = format!("{}{key}", bucket.store_prefix);
            match store.rate_take(&redis_key, bucket.gcra, want).await {
                Ok(t) => {
                    outage.over();
                    bucket
                        .leases
                        .grant(&key, t.granted, t.remaining, &bucket.gcra, now_us());
                }
                Err(e) => {
                    outage.begin(now_us(), &e);
                    bucket.leases.refill_failed(&key);
                }
            }
        });
    }
}

/// The key of an anonymous client: its address, or its IPv6 /64 (one host holds a whole /64,
/// so its other addresses must not be fresh buckets); an IPv4-mapped address is the IPv4 one.
pub fn ip_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let net = std::net::Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX));
                format!("{net}/64")
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::rate_limit::Rate;
    use crate::store::memory::MemoryStore;

    fn limit(count: u64, secs: u64, burst: u64) -> Limit {
        Limit {
            rate: Rate {
                count,
                per: Duration::from_secs(secs),
            },
            burst,
        }
    }

    fn limits(cfg: RateLimitConfig, previous: Option<&RateLimits>) -> RateLimits {
        let shared = Shared {
            limited: Family::default(),
            outage: Arc::default(),
        };
        RateLimits::new(&cfg, Arc::new(MemoryStore::new()), shared, previous)
    }

    fn config() -> RateLimitConfig {
        RateLimitConfig {
            global: Limits {
                per_session: Some(limit(3, 60, 3)),
                anonymous_per_ip: None,
            },
            routes: vec![
                ("/api/".into(), None),
                (
                    "/api/slow".into(),
                    Some(Limits {
                        per_session: Some(limit(1, 60, 1)),
                        anonymous_per_ip: Some(limit(2, 60, 2)),
                    }),
                ),
            ],
        }
    }

    #[tokio::test]
    async fn a_request_is_charged_to_its_routes_bucket_or_the_gateways() {
        let rl = limits(config(), None);
        let global = rl.bucket(None, Scope::Session).unwrap().clone();
        let api = rl.bucket(Some(0), Scope::Session).unwrap();
        assert!(Arc::ptr_eq(&global, api), "a route without its own limits");
        let slow = rl.bucket(Some(1), Scope::Session).unwrap().clone();
        assert!(!Arc::ptr_eq(&global, &slow));
        assert!(rl.bucket(None, Scope::Ip).is_none(), "no anonymous limit");
        assert!(rl.bucket(Some(1), Scope::Ip).is_some());
        // The route's bucket and the gateway's are separate budgets.
        assert!(rl.charge(&slow, "h1").await.is_ok());
        let refused = rl.charge(&slow, "h1").await.unwrap_err();
        assert_eq!(refused.scope, Scope::Session);
        assert!(refused.retry_after > Duration::from_secs(59));
        for _ in 0..3 {
            assert!(rl.charge(&global, "h1").await.is_ok());
        }
        assert!(rl.charge(&global, "h1").await.is_err());
        assert!(rl.charge(&global, "h2").await.is_ok(), "another session");
    }

    #[tokio::test]
    async fn a_reload_keeps_the_buckets_whose_limits_did_not_change() {
        let old = limits(config(), None);
        let g = old.bucket(None, Scope::Session).unwrap().clone();
        for _ in 0..3 {
            old.charge(&g, "h").await.unwrap();
        }
        let mut cfg = config();
        cfg.routes[1].1 = Some(Limits {
            per_session: Some(limit(5, 60, 5)),
            anonymous_per_ip: Some(limit(2, 60, 2)),
        });
        let new = limits(cfg, Some(&old));
        let g2 = new.bucket(None, Scope::Session).unwrap();
        assert!(
            new.charge(g2, "h").await.is_err(),
            "the spent budget is kept"
        );
        assert!(Arc::ptr_eq(
            old.bucket(Some(1), Scope::Ip).unwrap(),
            new.bucket(Some(1), Scope::Ip).unwrap()
        ));
        assert!(!Arc::ptr_eq(
            old.bucket(Some(1), Scope::Session).unwrap(),
            new.bucket(Some(1), Scope::Session).unwrap()
        ));
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:1:2:3".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ip_key(a), ip_key(b));
        assert_ne!(ip_key(a), ip_key(c));
        assert_eq!(ip_key("::ffff:192.0.2.7".parse().unwrap()), "192.0.2.7");
        assert_eq!(ip_key("192.0.2.7".parse().unwrap()), "192.0.2.7");
    }
}
