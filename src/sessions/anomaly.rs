//! Session anomalies: a session used from another network or another browser.
//!
//! Threat: a stolen session cookie or token replayed from the attacker's machine (session
//! hijacking, OWASP ASVS V3.3). At login the gateway binds the session to keyed fingerprints of
//! the client's network prefix (`ipn`, /24 IPv4 or /64 IPv6 by default) and user agent
//! (`uah`), carried in both tokens — HMACs, never the raw values — so the check needs no store
//! round trip. Each signal has a policy: `ignore`, `log` (audit event), `reauth` (this request
//! must sign in again; the session stays valid where it came from), `revoke` (the session
//! ends everywhere). Every anomaly is audited and counted.

use std::borrow::Borrow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::thread::LocalKey;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::Sessions;
use crate::audit::Event;
use crate::config::{AnomalyAction, AnomalyConfig};
use crate::metrics::Anomaly;
pub use crate::tokens::Fingerprint;
use crate::util::{b64, hmac_sha256};

pub struct Fingerprinter {
    key: [u8; 32],
    v4: u8,
    v6: u8,
    cfg: AnomalyConfig,
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl Fingerprinter {
    pub fn new(access_secret: &[u8], cfg: &AnomalyConfig) -> Self {
        Self {
            key: hmac_sha256(access_secret, b"sessiongate anomaly fingerprint"),
            v4: cfg.ipv4_prefix,
            v6: cfg.ipv6_prefix,
            cfg: cfg.clone(),
        }
    }

    fn network(&self, ip: IpAddr) -> IpNet {
        match canonical(ip) {
            IpAddr::V4(a) => Ipv4Net::new(a, self.v4)
                .map(|n| IpNet::V4(n.trunc()))
                .unwrap_or(IpNet::from(ip)),
            IpAddr::V6(a) => Ipv6Net::new(a, self.v6)
                .map(|n| IpNet::V6(n.trunc()))
                .unwrap_or(IpNet::from(ip)),
        }
    }

    pub fn ipn(&self, ip: IpAddr) -> String {
        b64(&hmac_sha256(&self.key, format!("ip {}", self.network(ip)).as_bytes())[..9])
    }

    pub fn uah(&self, ua: &str) -> String {
        b64(&hmac_sha256(&self.key, format!("ua {ua}").as_bytes())[..9])
    }

    /// The fingerprint to bind a new session to (only the signals that are checked).
    pub fn bind(&self, ip: IpAddr, ua: &str) -> Fingerprint {
        Fingerprint {
            ipn: (self.cfg.ip_change != AnomalyAction::Ignore).then(|| self.ipn(ip)),
            uah: (self.cfg.user_agent_change != AnomalyAction::Ignore).then(|| self.uah(ua)),
        }
    }
}

thread_local! {
    // Fingerprints of recently seen addresses and user agents, per serving thread: a client
    // sends the same ones request after request, so the keyed hashes are computed once. The
    // runtime id is kept beside each (tests run several runtimes, with other keys, in one
    // process). Bound: 4096 entries each, cleared when full (`memo_eq`); user agents over
    // `MEMO_MAX_UA` bytes are never kept.
    static IPN_MEMO: RefCell<HashMap<IpAddr, (u64, String)>> = Default::default();
    static UAH_MEMO: RefCell<HashMap<String, (u64, String)>> = Default::default();
}

/// Longer user agents are hashed every time rather than remembered, so a client cannot fill
/// the memo with huge strings.
const MEMO_MAX_UA: usize = 512;

/// Whether the fingerprint of `key` (memoised; a hit allocates nothing) equals `bound`.
fn memo_eq<K, Q>(
    memo: &'static LocalKey<RefCell<HashMap<K, (u64, String)>>>,
    rt: u64,
    key: &Q,
    bound: &str,
    compute: impl FnOnce() -> String,
) -> bool
where
    K: Borrow<Q> + Hash + Eq,
    Q: ToOwned<Owned = K> + Hash + Eq + ?Sized,
{
    memo.with(|m| {
        if let Some((id, v)) = m.borrow().get(key) {
            if *id == rt {
                return v == bound;
            }
        }
        let v = compute();
        let eq = v == bound;
        let mut m = m.borrow_mut();
        if m.len() >= 4096 {
            m.clear();
        }
        m.insert(key.to_owned(), (rt, v));
        eq
    })
}

/// What the request may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Pass,
    Reauth,
    Revoke,
}

impl Sessions {
    /// Compare a request with the session's fingerprint; audit and count each anomaly. Only a
    /// detected anomaly does any work beyond two memoised keyed hashes.
    pub fn anomaly(
        &self,
        bound: &Fingerprint,
        ip: IpAddr,
        ua: &str,
        user: &str,
        sid: &str,
    ) -> Verdict {
        let fp = &self.fingerprints;
        let mut verdict = Verdict::Pass;
        let mut signal = |name: &str, action: AnomalyAction| {
            let action_name = format!("{action:?}").to_ascii_lowercase();
            self.metrics
                .anomalies
                .get_or_create(&Anomaly {
                    signal: name.into(),
                    action: action_name.clone(),
                })
                .inc();
            self.audit.emit(
                Event::new("anomaly")
                    .user(user)
                    .session(&self.handle(sid))
                    .ip(&ip.to_string())
                    .reason(&format!("{name} changed; policy {action_name}")),
            );
            verdict = verdict.max(match action {
                AnomalyAction::Ignore | AnomalyAction::Log => Verdict::Pass,
                AnomalyAction::Reauth => Verdict::Reauth,
                AnomalyAction::Revoke => Verdict::Revoke,
            });
        };
        if let Some(b) = &bound.ipn {
            if fp.cfg.ip_change != AnomalyAction::Ignore
                && !memo_eq(&IPN_MEMO, self.id, &ip, b, || fp.ipn(ip))
            {
                signal("ip", fp.cfg.ip_change);
            }
        }
        if let Some(b) = &bound.uah {
            if fp.cfg.user_agent_change != AnomalyAction::Ignore
                && !(if ua.len() <= MEMO_MAX_UA {
                    memo_eq(&UAH_MEMO, self.id, ua, b, || fp.uah(ua))
                } else {
                    fp.uah(ua) == *b
                })
            {
                signal("user_agent", fp.cfg.user_agent_change);
            }
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp() -> Fingerprinter {
        Fingerprinter::new(b"k", &AnomalyConfig::default())
    }

    #[test]
    fn same_network_same_fingerprint() {
        let f = fp();
        let a = f.ipn("192.0.2.10".parse().unwrap());
        assert_eq!(a, f.ipn("192.0.2.200".parse().unwrap()));
        assert_eq!(a, f.ipn("::ffff:192.0.2.7".parse().unwrap()));
        assert_ne!(a, f.ipn("192.0.3.10".parse().unwrap()));
        let b = f.ipn("2001:db8:1:2::1".parse().unwrap());
        assert_eq!(b, f.ipn("2001:db8:1:2:ffff::9".parse().unwrap()));
        assert_ne!(b, f.ipn("2001:db8:1:3::1".parse().unwrap()));
    }

    #[test]
    fn fingerprints_reveal_nothing_raw() {
        let f = fp();
        assert!(!f.ipn("192.0.2.10".parse().unwrap()).contains("192"));
        assert_ne!(f.uah("Firefox"), f.uah("Chrome"));
        assert_eq!(f.uah("Firefox").len(), 12);
    }
}
