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
//!
//! Key rotation: the fingerprint key is derived from each access key ([`DerivedKeys`]), and a
//! fingerprint names the access key it was made under (`fpk`), so a session bound before a
//! rotation is compared under its own key while that key is in the ring — never mistaken for
//! a stolen one because the signing key changed. A refresh whose request matches binds the
//! same network and browser again under the signing key. A fingerprint whose key was dropped
//! matches nothing (every bound signal counts as changed); one from before key rings names no
//! key and is compared under each key of the ring.

use std::borrow::Borrow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::thread::LocalKey;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::Sessions;
use crate::audit::Event;
use crate::config::SecretRing;
use crate::config::{AnomalyAction, AnomalyConfig};
use crate::metrics::Anomaly;
pub use crate::tokens::Fingerprint;
use crate::tokens::{DerivedKey, DerivedKeys};
use crate::util::{b64, hmac_sha256};
use crate::web::user_agent::UserAgent;

pub struct Fingerprinter {
    keys: DerivedKeys,
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
    pub fn new(access: &SecretRing, cfg: &AnomalyConfig) -> Self {
        Self {
            keys: DerivedKeys::from_access(access, b"sessiongate anomaly fingerprint"),
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

    fn ipn_under(&self, key: &DerivedKey, ip: IpAddr) -> String {
        b64(&hmac_sha256(&key.key, format!("ip {}", self.network(ip)).as_bytes())[..9])
    }

    fn uad_under(&self, key: &DerivedKey, ua: &UserAgent) -> String {
        let input = ua.device().fingerprint_input();
        b64(&hmac_sha256(&key.key, format!("uad {input}").as_bytes())[..9])
    }

    fn uah_under(&self, key: &DerivedKey, ua: &UserAgent) -> String {
        let text = ua.as_str();
        let text = if text.is_ascii() { text } else { "" };
        b64(&hmac_sha256(&key.key, format!("ua {text}").as_bytes())[..9])
    }

    /// The network fingerprint under the signing key.
    pub fn ipn(&self, ip: IpAddr) -> String {
        self.ipn_under(self.keys.signing(), ip)
    }

    /// The device fingerprint of a user agent, under the signing key: equal for two user
    /// agents that name the same browser family, operating system and device class.
    pub fn uad(&self, ua: &UserAgent) -> String {
        self.uad_under(self.keys.signing(), ua)
    }

    /// The binding of earlier releases, still minted for them (instances of an earlier release
    /// in a rolling upgrade know no other): the exact user agent as they read it — the first
    /// header if it was visible ASCII, else `""`, at most 512 characters; the same text as
    /// [`UserAgent`] for an ASCII header. Under the signing key.
    pub fn uah(&self, ua: &UserAgent) -> String {
        self.uah_under(self.keys.signing(), ua)
    }

    /// The fingerprint to bind a new session to (only the signals that are checked), under
    /// the signing key.
    pub fn bind(&self, ip: IpAddr, ua: &UserAgent) -> Fingerprint {
        self.bind_signals(
            self.cfg.ip_change != AnomalyAction::Ignore,
            self.cfg.user_agent_change != AnomalyAction::Ignore,
            ip,
            ua,
        )
    }

    fn bind_signals(
        &self,
        ip_bound: bool,
        ua_bound: bool,
        ip: IpAddr,
        ua: &UserAgent,
    ) -> Fingerprint {
        let ipn = ip_bound.then(|| self.ipn(ip));
        let uah = ua_bound.then(|| self.uah(ua));
        let uad = ua_bound.then(|| self.uad(ua));
        let key = (ipn.is_some() || uah.is_some()).then(|| self.keys.signing().kid.clone());
        Fingerprint { ipn, uah, key, uad }
    }

    /// The fingerprint a refresh issues for a request that matched every bound signal (the
    /// same network and device): `bound` made again under the signing key, its user-agent
    /// binding taken from this request — so a token of an earlier release gains `uad`, and
    /// `uah` follows the browser's updates for instances that still compare it. The signals
    /// bound stay bound, no other is added; a signal whose policy is `ignore` was not compared
    /// and is kept as it is when `bound` already is under the signing key.
    pub fn rebind(&self, bound: &Fingerprint, ip: IpAddr, ua: &UserAgent) -> Fingerprint {
        let ip_bound = bound.ipn.is_some();
        let ua_bound = bound.uah.is_some() || bound.uad.is_some();
        if !ip_bound && !ua_bound {
            return bound.clone();
        }
        let mut fp = self.bind_signals(ip_bound, ua_bound, ip, ua);
        if bound.key.as_deref() == Some(self.keys.signing().kid.as_str()) {
            if self.cfg.ip_change == AnomalyAction::Ignore {
                fp.ipn.clone_from(&bound.ipn);
            }
            if self.cfg.user_agent_change == AnomalyAction::Ignore {
                fp.uah.clone_from(&bound.uah);
                fp.uad.clone_from(&bound.uad);
            }
        }
        fp
    }

    /// Whether `ip` is in the network `bound` holds (true when no network is bound).
    fn same_network(&self, bound: &Fingerprint, ip: IpAddr) -> bool {
        let Some(b) = &bound.ipn else {
            return true;
        };
        self.candidates(bound)
            .any(|k| memo_eq(&IPN_MEMO, k.id, &ip, b, || self.ipn_under(k, ip)))
    }

    /// Whether `ua` matches the user-agent binding of `bound` (`true` when there is none): its
    /// device (`uad`) when the token has one, else the exact text of earlier releases (`uah`).
    fn same_browser(&self, bound: &Fingerprint, ua: &UserAgent) -> bool {
        let text = ua.as_str();
        match (&bound.uad, &bound.uah) {
            (Some(b), _) => self
                .candidates(bound)
                .any(|k| memo_eq(&UAD_MEMO, k.id, text, b, || self.uad_under(k, ua))),
            (None, Some(b)) => self
                .candidates(bound)
                .any(|k| memo_eq(&UAH_MEMO, k.id, text, b, || self.uah_under(k, ua))),
            (None, None) => true,
        }
    }

    /// The keys `bound` may have been made under: the one it names (none if that key left the
    /// ring), or, for a fingerprint from before key rings, each key of the ring.
    fn candidates<'a>(&'a self, bound: &'a Fingerprint) -> impl Iterator<Item = &'a DerivedKey> {
        self.keys
            .iter()
            .filter(move |k| bound.key.as_ref().is_none_or(|kid| *kid == k.kid))
    }
}

thread_local! {
    // Fingerprints of recently seen addresses and user agents, per serving thread: a client
    // sends the same ones request after request, so the device is classified and the keyed
    // hashes are computed once. The id of the fingerprint key is kept beside each (a ring has
    // several keys, and tests run several runtimes, with other keys, in one process). Bound:
    // 4096 entries each, cleared when full (`memo_eq`); a user agent is at most
    // `web::user_agent::MAX_BYTES` long.
    static IPN_MEMO: RefCell<HashMap<IpAddr, (u64, String)>> = Default::default();
    static UAD_MEMO: RefCell<HashMap<String, (u64, String)>> = Default::default();
    static UAH_MEMO: RefCell<HashMap<String, (u64, String)>> = Default::default();
}

/// Whether the fingerprint of `key` (memoised; a hit allocates nothing) equals `bound`.
fn memo_eq<K, Q>(
    memo: &'static LocalKey<RefCell<HashMap<K, (u64, String)>>>,
    key_id: u64,
    key: &Q,
    bound: &str,
    compute: impl FnOnce() -> String,
) -> bool
where
    K: Borrow<Q> + Hash + Eq,
    Q: ToOwned<Owned = K> + Hash + Eq + ?Sized,
{
    memo.with(|m| {
        if let Some((id, v)) = m.borrow().get(key)
            && *id == key_id
        {
            return v == bound;
        }
        let v = compute();
        let eq = v == bound;
        let mut m = m.borrow_mut();
        if m.len() >= 4096 {
            m.clear();
        }
        m.insert(key.to_owned(), (key_id, v));
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

/// A request compared with its session's fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    pub verdict: Verdict,
    /// No bound signal changed (so the request's network and browser are the session's).
    pub clean: bool,
}

impl Sessions {
    /// Compare a request with the session's fingerprint; audit and count each anomaly.
    pub fn anomaly(
        &self,
        bound: &Fingerprint,
        ip: IpAddr,
        ua: &UserAgent,
        user: &str,
        sid: &str,
    ) -> Verdict {
        self.check_fingerprint(bound, ip, ua, user, sid).verdict
    }

    /// The refresh-rate anomaly: a session rotated `refreshes` times within one access TTL
    /// (counted by the store, across instances; see `store::RotatePolicy::window_secs`).
    /// Above `anomaly.refresh_rate_max` it is audited and counted once per rotation, and
    /// answered by `anomaly.refresh_rate`.
    pub fn refresh_rate(&self, refreshes: u32, user: &str, sid: &str, ip: IpAddr) -> Verdict {
        let cfg = &self.fingerprints.cfg;
        if cfg.refresh_rate == AnomalyAction::Ignore || refreshes <= cfg.refresh_rate_max {
            return Verdict::Pass;
        }
        let what = format!(
            "refresh_rate: {refreshes} refreshes in a row, each within one access TTL of the one before (at most {})",
            cfg.refresh_rate_max
        );
        self.anomaly_seen("refresh_rate", &what, cfg.refresh_rate, (user, sid, ip))
    }

    /// One detected anomaly: counted, audited, and the verdict its policy gives.
    fn anomaly_seen(
        &self,
        signal: &str,
        what: &str,
        action: AnomalyAction,
        (user, sid, ip): (&str, &str, IpAddr),
    ) -> Verdict {
        let action_name = format!("{action:?}").to_ascii_lowercase();
        self.metrics
            .anomalies
            .get_or_create(&Anomaly {
                signal: signal.into(),
                action: action_name.clone(),
            })
            .inc();
        self.audit.emit(
            Event::new("anomaly")
                .user(user)
                .session(&self.handle(sid))
                .ip(&ip.to_string())
                .reason(&format!("{what}; policy {action_name}")),
        );
        match action {
            AnomalyAction::Ignore | AnomalyAction::Log => Verdict::Pass,
            AnomalyAction::Reauth => Verdict::Reauth,
            AnomalyAction::Revoke => Verdict::Revoke,
        }
    }

    /// [`Sessions::anomaly`], and whether nothing changed. Only a detected anomaly does any
    /// work beyond two memoised keyed hashes.
    pub fn check_fingerprint(
        &self,
        bound: &Fingerprint,
        ip: IpAddr,
        ua: &UserAgent,
        user: &str,
        sid: &str,
    ) -> Checked {
        let fp = &self.fingerprints;
        let mut verdict = Verdict::Pass;
        let mut clean = true;
        let mut signal = |name: &str, action: AnomalyAction| {
            let what = format!("{name} changed");
            clean = false;
            verdict = verdict.max(self.anomaly_seen(name, &what, action, (user, sid, ip)));
        };
        if fp.cfg.ip_change != AnomalyAction::Ignore && !fp.same_network(bound, ip) {
            signal("ip", fp.cfg.ip_change);
        }
        if fp.cfg.user_agent_change != AnomalyAction::Ignore && !fp.same_browser(bound, ua) {
            signal("user_agent", fp.cfg.user_agent_change);
        }
        Checked { verdict, clean }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp() -> Fingerprinter {
        with(&["k"])
    }

    /// A fingerprinter over an access ring of these secrets.
    fn with(secrets: &[&str]) -> Fingerprinter {
        with_cfg(secrets, &AnomalyConfig::default())
    }

    fn with_cfg(secrets: &[&str], cfg: &AnomalyConfig) -> Fingerprinter {
        let ring = secrets
            .iter()
            .enumerate()
            .map(|(i, s)| crate::config::RingSecret {
                key: format!("k[{i}]"),
                secret: crate::config::Secret::new(s.as_bytes().to_vec()),
            });
        let ring = SecretRing::new(ring.collect()).unwrap();
        Fingerprinter::new(&ring, cfg)
    }

    const IP: &str = "192.0.2.10";
    const UA: &str = "Firefox";

    fn matches(f: &Fingerprinter, bound: &Fingerprint, ip: &str, ua: &str) -> (bool, bool) {
        (
            f.same_network(bound, ip.parse().unwrap()),
            f.same_browser(bound, &self::ua(ua)),
        )
    }

    #[test]
    fn a_session_bound_before_a_rotation_matches_while_its_key_is_in_the_ring() {
        let (step0, step1, step2, step3) = (
            with(&["old"]),
            with(&["old", "new"]),
            with(&["new", "old"]),
            with(&["new"]),
        );
        let bound = step0.bind(IP.parse().unwrap(), &ua(UA));
        assert_eq!(
            bound.key.as_deref(),
            Some(step0.keys.signing().kid.as_str())
        );
        assert_eq!(
            step1.bind(IP.parse().unwrap(), &ua(UA)),
            bound,
            "adding a verifier changes nothing"
        );
        for (f, step) in [(&step1, 1), (&step2, 2)] {
            assert_eq!(
                matches(f, &bound, "192.0.2.99", UA),
                (true, true),
                "step {step}"
            );
            assert_eq!(
                matches(f, &bound, "198.51.100.1", "curl"),
                (false, false),
                "step {step}"
            );
        }
        // Its key dropped, it matches nothing: every bound signal counts as changed.
        assert_eq!(matches(&step3, &bound, IP, UA), (false, false));
        // A refresh that matched binds it again under the signing key, which outlives OLD.
        let rebound = step2.rebind(&bound, IP.parse().unwrap(), &ua(UA));
        assert_eq!(
            rebound.key.as_deref(),
            Some(step2.keys.signing().kid.as_str())
        );
        assert_eq!(matches(&step3, &rebound, "192.0.2.200", UA), (true, true));
        assert_eq!(
            matches(&step3, &rebound, "198.51.100.1", "curl"),
            (false, false)
        );
        assert_eq!(
            step3.rebind(&rebound, IP.parse().unwrap(), &ua(UA)),
            rebound,
            "already current"
        );
    }

    #[test]
    fn rebinding_keeps_the_signals_that_were_bound_and_adds_none() {
        let (old, new) = (with(&["old"]), with(&["new", "old"]));
        let full = old.bind(IP.parse().unwrap(), &ua(UA));
        let ip_only = Fingerprint {
            uah: None,
            uad: None,
            ..full.clone()
        };
        let r = new.rebind(&ip_only, IP.parse().unwrap(), &ua(UA));
        assert!(
            r.ipn.is_some() && r.uah.is_none() && r.uad.is_none(),
            "{r:?}"
        );
        let none = Fingerprint::default();
        assert_eq!(new.rebind(&none, IP.parse().unwrap(), &ua(UA)), none);
    }

    #[test]
    fn a_fingerprint_from_before_key_rings_is_compared_under_each_key() {
        let old = with(&["old"]);
        let legacy = Fingerprint {
            key: None,
            ..old.bind(IP.parse().unwrap(), &ua(UA))
        };
        assert_eq!(
            matches(&with(&["new", "old"]), &legacy, IP, UA),
            (true, true)
        );
        assert_eq!(
            matches(&with(&["old", "new"]), &legacy, IP, UA),
            (true, true)
        );
        assert_eq!(matches(&with(&["new"]), &legacy, IP, UA), (false, false));
        assert_eq!(
            matches(&with(&["new", "old"]), &legacy, "198.51.100.1", "curl"),
            (false, false)
        );
        let unknown = Fingerprint {
            key: Some("no-such-kid".into()),
            ..legacy
        };
        assert_eq!(
            matches(&with(&["new", "old"]), &unknown, IP, UA),
            (false, false)
        );
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
        let old = |text: &str| {
            b64(&hmac_sha256(&f.keys.signing().key, format!("ua {text}").as_bytes())[..9])
        };
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
        assert_eq!(f.rebind(&bound, ip, &ua(FIREFOX_NEXT)), next);
        // A token of an earlier release gains the device binding.
        let legacy = Fingerprint {
            uad: None,
            ..bound.clone()
        };
        assert_eq!(f.rebind(&legacy, ip, &ua(FIREFOX)), bound);
        // No user-agent binding stays none; under `ignore` nothing is bound or changed.
        let ip_only = Fingerprint {
            uah: None,
            uad: None,
            ..bound.clone()
        };
        assert_eq!(f.rebind(&ip_only, ip, &ua(FIREFOX)), ip_only);
        let ignoring = with_cfg(
            &["k"],
            &AnomalyConfig {
                user_agent_change: AnomalyAction::Ignore,
                ..AnomalyConfig::default()
            },
        );
        let b = ignoring.bind(ip, &ua(FIREFOX));
        assert_eq!((b.uah, b.uad), (None, None));
        assert_eq!(ignoring.rebind(&bound, ip, &ua(CHROME)), bound);
    }

    #[test]
    fn matching_uses_the_device_binding_when_the_token_has_one() {
        let f = fp();
        let bound = f.bind("192.0.2.1".parse().unwrap(), &ua(FIREFOX));
        let legacy = Fingerprint {
            uad: None,
            ..bound.clone()
        };
        // Twice: computed, then from the memo.
        for _ in 0..2 {
            assert!(f.same_browser(&bound, &ua(FIREFOX)));
            assert!(f.same_browser(&bound, &ua(FIREFOX_NEXT)));
            assert!(!f.same_browser(&bound, &ua(CHROME)));
            assert!(f.same_browser(&legacy, &ua(FIREFOX)));
            assert!(!f.same_browser(&legacy, &ua(FIREFOX_NEXT)));
            assert!(f.same_browser(&Fingerprint::default(), &ua(CHROME)));
        }
    }
}
