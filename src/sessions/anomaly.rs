//! Session anomalies: a session used from another network or another browser.
//!
//! Threat: a stolen session cookie or token replayed from the attacker's machine (session
//! hijacking, OWASP ASVS V3.3). At login the gateway binds the session to keyed fingerprints of
//! the client's network prefix (`ipn`, /24 IPv4 or /64 IPv6 by default) and of the device its
//! user agent names (`uad`: browser family, operating system, device class — see
//! `web::user_agent`; not versions, so a browser update is no change), carried in both tokens
//! — HMACs, never the raw values — so the check needs no store round trip. Each signal has a
//! policy: `ignore`, `log` (audit event), `reauth` (this request must sign in again; the
//! session stays valid where it came from), `revoke` (the session ends everywhere). Every
//! anomaly is audited and counted.
//!
//! Tokens minted by earlier releases carry only `uah`, a keyed hash of the exact user agent:
//! they are compared that way (today's normalisation reads an ASCII header as they were bound)
//! until their first refresh adds `uad`, or they expire. `uah` is still minted beside `uad`
//! (following the browser at each refresh) so that instances of an earlier release, during a
//! rolling upgrade, keep checking the user agent rather than dropping the binding.

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
use crate::web::user_agent::UserAgent;

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

    /// The device fingerprint of a user agent: equal for two user agents that name the same
    /// browser family, operating system and device class.
    pub fn uad(&self, ua: &UserAgent) -> String {
        let input = ua.device().fingerprint_input();
        b64(&hmac_sha256(&self.key, format!("uad {input}").as_bytes())[..9])
    }

    /// The binding of earlier releases, still minted for them (instances of an earlier release
    /// in a rolling upgrade know no other): the exact user agent as they read it — the first
    /// header if it was visible ASCII, else `""`, at most 512 characters; the same text as
    /// [`UserAgent`] for an ASCII header.
    pub fn uah(&self, ua: &UserAgent) -> String {
        let text = ua.as_str();
        let text = if text.is_ascii() { text } else { "" };
        b64(&hmac_sha256(&self.key, format!("ua {text}").as_bytes())[..9])
    }

    /// The fingerprint to bind a new session to (only the signals that are checked).
    pub fn bind(&self, ip: IpAddr, ua: &UserAgent) -> Fingerprint {
        let ua_checked = self.cfg.user_agent_change != AnomalyAction::Ignore;
        Fingerprint {
            ipn: (self.cfg.ip_change != AnomalyAction::Ignore).then(|| self.ipn(ip)),
            uah: ua_checked.then(|| self.uah(ua)),
            uad: ua_checked.then(|| self.uad(ua)),
        }
    }

    /// The fingerprint a refresh issues: `fp` with its user-agent binding taken from this
    /// request, which has just passed the check against `fp` — so `uad` names the same device,
    /// a token of an earlier release (`uah` alone) gains `uad`, and `uah` follows the browser's
    /// updates for instances that still compare it. A session bound to no user agent stays so.
    pub fn rebind(&self, fp: Fingerprint, ua: &UserAgent) -> Fingerprint {
        let bound = fp.uah.is_some() || fp.uad.is_some();
        if !bound || self.cfg.user_agent_change == AnomalyAction::Ignore {
            return fp;
        }
        Fingerprint {
            uah: Some(self.uah(ua)),
            uad: Some(self.uad(ua)),
            ..fp
        }
    }

    /// Whether `ua` matches the user-agent binding of `bound` (`true` when there is none).
    fn user_agent_matches(&self, rt: u64, bound: &Fingerprint, ua: &UserAgent) -> bool {
        let key = ua.as_str();
        match (&bound.uad, &bound.uah) {
            (Some(b), _) => memo_eq(&UAD_MEMO, rt, key, b, || self.uad(ua)),
            (None, Some(b)) => memo_eq(&UAH_MEMO, rt, key, b, || self.uah(ua)),
            (None, None) => true,
        }
    }
}

thread_local! {
    // Fingerprints of recently seen addresses and user agents, per serving thread: a client
    // sends the same ones request after request, so the device is classified and the keyed
    // hashes are computed once. The runtime id is kept beside each (tests run several
    // runtimes, with other keys, in one process). Bound: 4096 entries each, cleared when full
    // (`memo_eq`); a user agent is at most `web::user_agent::MAX_BYTES` long.
    static IPN_MEMO: RefCell<HashMap<IpAddr, (u64, String)>> = Default::default();
    static UAD_MEMO: RefCell<HashMap<String, (u64, String)>> = Default::default();
    static UAH_MEMO: RefCell<HashMap<String, (u64, String)>> = Default::default();
}

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
        ua: &UserAgent,
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
        if fp.cfg.user_agent_change != AnomalyAction::Ignore
            && !fp.user_agent_matches(self.id, bound, ua)
        {
            signal("user_agent", fp.cfg.user_agent_change);
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

    fn ua(s: &str) -> UserAgent<'_> {
        UserAgent::from_bytes(s.as_bytes())
    }

    const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
    const FIREFOX_NEXT: &str =
        "Mozilla/5.0 (X11; Linux x86_64; rv:129.0) Gecko/20100101 Firefox/129.0";
    const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";

    #[test]
    fn fingerprints_reveal_nothing_raw() {
        let f = fp();
        assert!(!f.ipn("192.0.2.10".parse().unwrap()).contains("192"));
        assert_ne!(f.uad(&ua(FIREFOX)), f.uad(&ua(CHROME)));
        assert_eq!(f.uad(&ua(FIREFOX)), f.uad(&ua(FIREFOX_NEXT)));
        assert_eq!(f.uad(&ua(FIREFOX)).len(), 12);
        assert_ne!(
            f.uad(&ua("")),
            f.uah(&ua("")),
            "the two kinds never collide"
        );
    }

    #[test]
    fn exact_binding_reads_the_header_as_earlier_releases_bound_it() {
        let f = fp();
        // Earlier releases bound `ua {first 512 characters}` of a visible-ASCII header, and
        // `ua ` (nothing) for any other.
        let old = |text: &str| b64(&hmac_sha256(&f.key, format!("ua {text}").as_bytes())[..9]);
        assert_eq!(f.uah(&ua(FIREFOX)), old(FIREFOX));
        let long = "a".repeat(700);
        assert_eq!(f.uah(&ua(&long)), old(&long[..512]));
        let obs = UserAgent::from_bytes(b"Firefox/128.0 \xe9");
        assert_eq!(f.uah(&obs), old(""));
        assert_eq!(f.uah(&ua("")), old(""));
    }

    #[test]
    fn sessions_are_bound_both_ways_and_refreshes_follow_the_browser() {
        let f = fp();
        let ip = "192.0.2.1".parse().unwrap();
        let bound = f.bind(ip, &ua(FIREFOX));
        assert_eq!(bound.uah, Some(f.uah(&ua(FIREFOX))));
        assert_eq!(bound.uad, Some(f.uad(&ua(FIREFOX))));
        let next = f.bind(ip, &ua(FIREFOX_NEXT));
        assert_eq!(f.rebind(bound.clone(), &ua(FIREFOX_NEXT)), next);
        // A token of an earlier release gains the device binding.
        let legacy = Fingerprint {
            uad: None,
            ..bound.clone()
        };
        assert_eq!(f.rebind(legacy, &ua(FIREFOX)), bound);
        // No binding stays none; under `ignore` nothing is bound or changed.
        let ip_only = Fingerprint {
            ipn: Some("n".into()),
            ..Fingerprint::default()
        };
        assert_eq!(f.rebind(ip_only.clone(), &ua(FIREFOX)), ip_only);
        let ignoring = Fingerprinter::new(
            b"k",
            &AnomalyConfig {
                user_agent_change: AnomalyAction::Ignore,
                ..AnomalyConfig::default()
            },
        );
        let b = ignoring.bind(ip, &ua(FIREFOX));
        assert_eq!((b.uah, b.uad), (None, None));
        assert_eq!(ignoring.rebind(bound.clone(), &ua(CHROME)), bound);
    }

    #[test]
    fn matching_uses_the_device_binding_when_the_token_has_one() {
        let f = fp();
        let bound = f.bind("192.0.2.1".parse().unwrap(), &ua(FIREFOX));
        let legacy = Fingerprint {
            uad: None,
            ..bound.clone()
        };
        // Runtime ids of this test alone: the memo is per thread and shared by tests.
        for rt in [u64::MAX - 7, u64::MAX - 8] {
            assert!(f.user_agent_matches(rt, &bound, &ua(FIREFOX)));
            assert!(f.user_agent_matches(rt, &bound, &ua(FIREFOX_NEXT)));
            assert!(!f.user_agent_matches(rt, &bound, &ua(CHROME)));
            assert!(f.user_agent_matches(rt, &legacy, &ua(FIREFOX)));
            assert!(!f.user_agent_matches(rt, &legacy, &ua(FIREFOX_NEXT)));
            assert!(f.user_agent_matches(rt, &Fingerprint::default(), &ua(CHROME)));
        }
    }
}
