//! Connection limits taken at accept, before any TLS work: the per-client-address limit of the
//! HTTPS listener (`server.max_connections_per_ip`), and a log of refusals that cannot itself
//! be flooded.
//!
//! One address opening every connection the gateway allows takes it down for everyone; the
//! per-address limit keeps that to the address's own share. An IPv6 client is counted by its
//! /64 (one subscriber's prefix: its other addresses cost it nothing), an IPv4-mapped IPv6
//! address as the IPv4 address it is. Trusted proxies are not held to it: they carry many
//! clients (the global `server.max_connections` still applies).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Open connections per client address.
pub(crate) struct PerIp {
    limit: usize,
    /// Bounded: an entry exists only while its address has an open connection, and each open
    /// connection already holds a `server.max_connections` permit, so there are at most
    /// `server.max_connections` entries; the last [`IpSlot`] of an address removes its entry.
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's share of its address's limit, given back on drop.
pub(crate) struct IpSlot {
    owner: Arc<PerIp>,
    key: IpAddr,
}

impl PerIp {
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(PerIp {
            limit,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for one more connection from `ip`; `None` when the address is at its limit.
    pub(crate) fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let key = client_key(ip);
        let mut open = self.open.lock();
        let n = open.entry(key).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            owner: self.clone(),
            key,
        })
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.open.lock().len()
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.owner.open.lock();
        if let Some(n) = open.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// Who may open one more HTTPS connection: the global cap (`server.max_connections`), then
/// the client address's share (`server.max_connections_per_ip`), except for trusted proxies.
pub(crate) struct Admission {
    slots: Arc<Semaphore>,
    per_ip: Arc<PerIp>,
    full: RefusalLog,
    ip_full: RefusalLog,
}

/// An admitted connection's slots, given back on drop.
pub(crate) struct Admitted {
    _slot: OwnedSemaphorePermit,
    _ip: Option<IpSlot>,
}

impl Admission {
    pub(crate) fn new(max_connections: usize, per_ip: usize) -> Arc<Self> {
        Arc::new(Admission {
            slots: Arc::new(Semaphore::new(max_connections)),
            per_ip: PerIp::new(per_ip),
            full: RefusalLog::new("server.max_connections"),
            ip_full: RefusalLog::new("server.max_connections_per_ip"),
        })
    }

    /// `None` (and a refusal counted) when a limit is reached.
    pub(crate) fn admit(&self, ip: IpAddr, trusted_proxy: bool) -> Option<Admitted> {
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            self.full.refused();
            return None;
        };
        let ip_slot = if trusted_proxy {
            None
        } else {
            let Some(s) = self.per_ip.try_acquire(ip) else {
                self.ip_full.refused();
                return None;
            };
            Some(s)
        };
        Some(Admitted {
            _slot: slot,
            _ip: ip_slot,
        })
    }
}

/// What is counted as one client: an IPv4 address, or an IPv6 /64.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

/// Refused connections, logged at most once per interval with the count since the last line:
/// a flood of refusals must not become a flood of log lines.
pub(crate) struct RefusalLog {
    what: &'static str,
    start: Instant,
    /// Milliseconds after `start` of the last line written (`u64::MAX`: none yet).
    last_ms: AtomicU64,
    since: AtomicU64,
}

const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

impl RefusalLog {
    /// `what` names the limit, config key included.
    pub(crate) fn new(what: &'static str) -> Self {
        RefusalLog {
            what,
            start: Instant::now(),
            last_ms: AtomicU64::new(u64::MAX),
            since: AtomicU64::new(0),
        }
    }

    pub(crate) fn refused(&self) {
        self.since.fetch_add(1, Ordering::Relaxed);
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        let last = self.last_ms.load(Ordering::Relaxed);
        let due =
            last == u64::MAX || now.saturating_sub(last) >= REFUSAL_LOG_EVERY.as_millis() as u64;
        if due
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let refused = self.since.swap(0, Ordering::Relaxed);
            tracing::warn!(refused, limit = self.what, "refusing connections");
        }
    }
}

impl Admission {
    /// A client's share of the per-address limit when a trusted balancer carried its
    /// connection (PROXY protocol): the balancer was admitted without one.
    pub(crate) fn admit_client(&self, ip: IpAddr) -> Option<IpSlot> {
        let slot = self.per_ip.try_acquire(ip);
        if slot.is_none() {
            self.ip_full.refused();
        }
        slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_has_its_own_limit_and_entries_leave_with_their_last_slot() {
        let per_ip = PerIp::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = per_ip.try_acquire(a).unwrap();
        let a2 = per_ip.try_acquire(a).unwrap();
        assert!(per_ip.try_acquire(a).is_none());
        let b1 = per_ip.try_acquire(b).unwrap();
        assert_eq!(per_ip.tracked(), 2);
        drop(a1);
        let a3 = per_ip.try_acquire(a).unwrap();
        drop((a2, a3, b1));
        assert_eq!(per_ip.tracked(), 0, "no entry outlives its connections");
    }

    #[test]
    fn ipv6_counts_by_64_and_mapped_ipv4_as_ipv4() {
        let per_ip = PerIp::new(1);
        let _x = per_ip
            .try_acquire("2001:db8:1:2::1".parse().unwrap())
            .unwrap();
        assert!(
            per_ip
                .try_acquire("2001:db8:1:2:ffff::9".parse().unwrap())
                .is_none(),
            "another address in the same /64 is the same client"
        );
        assert!(
            per_ip
                .try_acquire("2001:db8:1:3::1".parse().unwrap())
                .is_some()
        );
        let _v4 = per_ip.try_acquire("192.0.2.7".parse().unwrap()).unwrap();
        assert!(
            per_ip
                .try_acquire("::ffff:192.0.2.7".parse().unwrap())
                .is_none()
        );
    }
}
