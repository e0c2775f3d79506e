//! The flow cookie: what an authorization-code flow must remember between `/.auth/oidc/start`
//! and the callback — provider, `state`, `nonce`, PKCE verifier, `return_to` — sealed
//! (encrypted and authenticated, `crate::seal`), short-lived, one cookie per flow so that
//! flows in several tabs do not overwrite each other, at most [`MAX_FLOWS`] at once (the
//! oldest are dropped), sent only to `/.auth/oidc/` and never to the app.
//!
//! The cookie's name is derived from `state`, so the callback finds its own flow; its content
//! is checked against `state` again (constant time) after it opens.

use http::{HeaderMap, HeaderValue, header::COOKIE};
use serde::{Deserialize, Serialize};

use crate::seal::Sealer;
use crate::util::{b64, ct_eq};

/// Flows in parallel per browser (tabs); a new one beyond this drops the oldest.
pub const MAX_FLOWS: usize = 4;
/// How long a flow may take, from start to callback (the user types a password, perhaps a
/// second factor at the provider).
pub const FLOW_TTL_SECS: u64 = 600;
const PREFIX: &str = "__Secure-sg-oidc-";
const PATH: &str = "/.auth/oidc/";
const PURPOSE: &str = "oidc flow";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    #[serde(rename = "p")]
    pub provider: String,
    #[serde(rename = "s")]
    pub state: String,
    #[serde(rename = "n")]
    pub nonce: String,
    #[serde(rename = "v")]
    pub verifier: String,
    #[serde(rename = "r")]
    pub return_to: String,
    /// Unix seconds.
    #[serde(rename = "e")]
    pub expires: u64,
    /// When the flow started, Unix microseconds: which flows are the oldest when there are
    /// too many (tabs opened within one second share `expires`).
    #[serde(rename = "t", default)]
    pub started: u64,
}

/// Now, in Unix microseconds (for [`Flow::started`]).
pub fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

fn name_for(state: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, state.as_bytes());
    format!("{PREFIX}{}", b64(&d.as_ref()[..9]))
}

fn cookie(name: &str, value: &str, max_age: u64) -> Option<HeaderValue> {
    let c = cookie::Cookie::build((name, value))
        .secure(true)
        .http_only(true)
        .path(PATH)
        // Lax: the callback is a top-level navigation from the provider's site.
        .same_site(cookie::SameSite::Lax)
        .max_age(cookie::time::Duration::seconds(
            i64::try_from(max_age).unwrap_or(i64::MAX),
        ));
    HeaderValue::from_str(&c.build().to_string()).ok()
}

/// The flow cookies a request carries, as `(name, value)`.
fn carried(h: &HeaderMap) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for v in h.get_all(COOKIE) {
        let Ok(s) = v.to_str() else { continue };
        for c in cookie::Cookie::split_parse(s).flatten() {
            if c.name().starts_with(PREFIX) {
                out.push((c.name().to_string(), c.value().to_string()));
            }
        }
    }
    out
}

/// `Set-Cookie` values starting `flow`: its cookie, and the removal of the oldest flows so
/// that at most [`MAX_FLOWS`] remain (undecodable or expired ones are removed too).
pub fn begin(sealer: &Sealer, flow: &Flow, req: &HeaderMap, now: u64) -> Option<Vec<HeaderValue>> {
    let json = serde_json::to_vec(flow).ok()?;
    let sealed = sealer.seal(PURPOSE, &json)?;
    let mut out = vec![cookie(&name_for(&flow.state), &sealed, FLOW_TTL_SECS)?];
    let mut live: Vec<((u64, u64), String)> = Vec::new();
    for (name, value) in carried(req) {
        match open(sealer, &value) {
            Some(f) if f.expires > now && name == name_for(&f.state) => {
                live.push(((f.started, f.expires), name))
            }
            _ => out.extend(cookie(&name, "", 0)),
        }
    }
    live.sort();
    let excess = (live.len() + 1).saturating_sub(MAX_FLOWS);
    for (_, name) in live.into_iter().take(excess) {
        out.extend(cookie(&name, "", 0));
    }
    Some(out)
}

fn open(sealer: &Sealer, value: &str) -> Option<Flow> {
    serde_json::from_slice(&sealer.open(PURPOSE, value)?).ok()
}

/// Why a callback has no flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lost {
    /// No cookie for this `state`: another browser, a flow dropped as the oldest, a forged
    /// `state`, or cookies blocked.
    Missing,
    /// The cookie does not open, or names another `state`.
    Invalid,
    Expired,
}

/// The flow the callback's `state` names, and the `Set-Cookie` that removes its cookie.
pub fn take(
    sealer: &Sealer,
    state: &str,
    req: &HeaderMap,
    now: u64,
) -> (Result<Flow, Lost>, Option<HeaderValue>) {
    let name = name_for(state);
    let Some((_, value)) = carried(req).into_iter().find(|(n, _)| *n == name) else {
        return (Err(Lost::Missing), None);
    };
    let clear = cookie(&name, "", 0);
    let flow = match open(sealer, &value) {
        Some(f) if ct_eq(f.state.as_bytes(), state.as_bytes()) => f,
        _ => return (Err(Lost::Invalid), clear),
    };
    if flow.expires <= now {
        return (Err(Lost::Expired), clear);
    }
    (Ok(flow), clear)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Secret, SecretRing};

    fn sealer() -> Sealer {
        Sealer::new(&SecretRing::single(
            "k",
            Secret::new(b"a refresh secret long enough for tests".to_vec()),
        ))
    }

    fn flow(state: &str, expires: u64) -> Flow {
        Flow {
            provider: "corp".into(),
            state: state.into(),
            nonce: "n".into(),
            verifier: "v".into(),
            return_to: "/app".into(),
            expires,
            started: expires,
        }
    }

    fn request_with(cookies: &[HeaderValue]) -> HeaderMap {
        let pairs: Vec<String> = cookies
            .iter()
            .map(|c| c.to_str().unwrap().split(';').next().unwrap().to_string())
            .filter(|p| !p.ends_with('='))
            .collect();
        let mut h = HeaderMap::new();
        if !pairs.is_empty() {
            h.insert(COOKIE, HeaderValue::from_str(&pairs.join("; ")).unwrap());
        }
        h
    }

    #[test]
    fn each_tab_finds_its_own_flow_and_only_its_own() {
        let s = sealer();
        let a = begin(&s, &flow("state-a", 1000), &HeaderMap::new(), 100).unwrap();
        let b = begin(&s, &flow("state-b", 1000), &request_with(&a), 100).unwrap();
        assert_eq!(b.len(), 1, "nothing dropped below the cap");
        let both = request_with(&[a[0].clone(), b[0].clone()]);
        assert_eq!(take(&s, "state-a", &both, 200).0.unwrap().state, "state-a");
        assert_eq!(take(&s, "state-b", &both, 200).0.unwrap().state, "state-b");
        assert_eq!(take(&s, "state-c", &both, 200).0, Err(Lost::Missing));
        assert_eq!(take(&s, "state-a", &both, 1000).0, Err(Lost::Expired));
        let set = a[0].to_str().unwrap();
        for attr in [
            "Secure",
            "HttpOnly",
            "SameSite=Lax",
            "Path=/.auth/oidc/",
            "Max-Age=600",
        ] {
            assert!(set.contains(attr), "{set}");
        }
    }

    #[test]
    fn a_cookie_moved_to_another_state_or_changed_does_not_open() {
        let s = sealer();
        let a = begin(&s, &flow("state-a", 1000), &HeaderMap::new(), 100).unwrap();
        let value = a[0]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .split_once('=')
            .unwrap()
            .1
            .to_string();
        let moved = format!("{}={value}", name_for("state-b"));
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_str(&moved).unwrap());
        assert_eq!(take(&s, "state-b", &h, 200).0, Err(Lost::Invalid));
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_str(&format!("{}=x{value}", name_for("state-a"))).unwrap(),
        );
        assert_eq!(take(&s, "state-a", &h, 200).0, Err(Lost::Invalid));
    }

    #[test]
    fn flows_started_within_one_second_drop_the_first_started() {
        let s = sealer();
        let mut jar: Vec<HeaderValue> = Vec::new();
        // Names sort in another order than the starts; all expire in the same second.
        for (i, state) in ["s-z", "s-a", "s-m", "s-b"].iter().enumerate() {
            let f = Flow {
                started: 10 + i as u64,
                ..flow(state, 1000)
            };
            jar.push(begin(&s, &f, &request_with(&jar), 100).unwrap()[0].clone());
        }
        let f = Flow {
            started: 20,
            ..flow("new", 1000)
        };
        let set = begin(&s, &f, &request_with(&jar), 100).unwrap();
        let cleared: Vec<&str> = set[1..].iter().map(|c| c.to_str().unwrap()).collect();
        assert_eq!(cleared.len(), 1, "{cleared:?}");
        assert!(
            cleared[0].starts_with(&format!("{}=;", name_for("s-z"))),
            "{cleared:?}"
        );
    }

    #[test]
    fn flows_beyond_the_cap_drop_the_oldest() {
        let s = sealer();
        let mut jar: Vec<HeaderValue> = Vec::new();
        for i in 0..MAX_FLOWS {
            let set = begin(
                &s,
                &flow(&format!("s{i}"), 1000 + i as u64),
                &request_with(&jar),
                100,
            )
            .unwrap();
            jar.push(set[0].clone());
        }
        let set = begin(&s, &flow("new", 2000), &request_with(&jar), 100).unwrap();
        let cleared: Vec<&str> = set[1..].iter().map(|c| c.to_str().unwrap()).collect();
        assert_eq!(cleared.len(), 1, "{cleared:?}");
        assert!(
            cleared[0].starts_with(&format!("{}=;", name_for("s0"))),
            "{cleared:?}"
        );
    }
}
