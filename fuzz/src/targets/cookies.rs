//! The cookie scanner (`cookies::scan`): the input is an option byte (bit 0: a
//! `session.cookie_domain`, so the `__Secure-` names; bit 1: `login.drop_cookies`), then
//! `Cookie` header values, one per line.
//!
//! Oracle, against a reference split written here (pairs at `;`, trimmed, the name before
//! the first `=`):
//! - a gateway cookie (exact name) sent twice, in one header or across several, is refused;
//!   otherwise each one sent once is read, its value unquoted;
//! - the header forwarded upstream holds no cookie of the gateway's namespace (`__Host-sg-*`,
//!   `__Secure-sg-*`, any case) and none that `drop_cookies` names — not as the reference
//!   splits it, nor as the `cookie` crate (what Rust apps parse with) splits it;
//! - every other cookie reaches the app byte for byte, in order; a single header with nothing
//!   to remove passes untouched.

use http::HeaderMap;
use http::header::{COOKIE, HeaderValue};
use sessiongate::config::{SameSite, SessionConfig};
use sessiongate::cookies::{CookieError, CookieNames, scan};
use std::time::Duration;

const DROP: &[&str] = &["phpsessid", "jsessionid"];
const PREFIXES: &[&[u8]] = &[b"__host-sg-", b"__secure-sg-"];

pub fn run(data: &[u8]) {
    let Some((&opts, rest)) = data.split_first() else {
        return;
    };
    let session = SessionConfig {
        access_ttl: Duration::from_secs(60),
        refresh_ttl: Duration::from_secs(600),
        idle_timeout: Duration::from_secs(300),
        refresh_grace: Duration::from_secs(10),
        same_site: SameSite::Lax,
        cookie_domain: (opts & 1 == 1).then(|| "example.com".to_string()),
    };
    let mut names = CookieNames::new(&session);
    if opts & 2 == 2 {
        names = names.with_drop(DROP.iter().map(|s| s.to_string()).collect());
    }
    let mut h = HeaderMap::new();
    let mut values: Vec<&[u8]> = Vec::new();
    for line in rest.split(|b| *b == b'\n') {
        if let Ok(v) = HeaderValue::from_bytes(line) {
            h.append(COOKIE, v);
            values.push(line);
        }
    }
    let pairs: Vec<(&[u8], &[u8], &[u8])> = values.iter().flat_map(|v| split(v)).collect();
    let exact = [&names.access, &names.refresh, &names.csrf];
    let count = |n: &str| {
        pairs
            .iter()
            .filter(|(name, _, _)| *name == n.as_bytes())
            .count()
    };
    let dropped =
        |name: &[u8]| opts & 2 == 2 && DROP.iter().any(|d| name.eq_ignore_ascii_case(d.as_bytes()));
    let result = scan(&h, &names);
    let duplicate = exact.iter().any(|n| count(n) > 1);
    let s = match result {
        Err(CookieError::Duplicate(_)) => {
            assert!(duplicate, "refused, but no gateway cookie is sent twice");
            return;
        }
        Ok(s) => s,
    };
    assert!(!duplicate, "a gateway cookie sent twice is not refused");
    for (n, got) in exact
        .iter()
        .zip([&s.gateway.access, &s.gateway.refresh, &s.gateway.csrf])
    {
        let want = pairs
            .iter()
            .find(|(name, _, _)| *name == n.as_bytes())
            .map(|(_, v, _)| String::from_utf8_lossy(unquote(v)).into_owned());
        assert_eq!(*got, want, "{n}");
    }
    let app: Vec<&[u8]> = pairs
        .iter()
        .filter(|(name, _, _)| !in_namespace(name) && !dropped(name))
        .map(|(_, _, pair)| *pair)
        .collect();
    let forwarded: Option<Vec<u8>> = match &s.forward {
        None => {
            assert!(values.len() <= 1, "several headers forwarded as they came");
            values.first().map(|v| v.to_vec())
        }
        Some(None) => {
            assert!(app.is_empty(), "app cookies {app:?} not forwarded");
            None
        }
        Some(Some(v)) => {
            assert_eq!(
                v.as_bytes(),
                app.join(&b"; "[..]),
                "the app's cookies changed"
            );
            Some(v.as_bytes().to_vec())
        }
    };
    let Some(fwd) = forwarded else { return };
    for (name, _, _) in split(&fwd) {
        assert!(
            !in_namespace(name) && !dropped(name),
            "{:?} reaches the app",
            String::from_utf8_lossy(name)
        );
    }
    if let Ok(text) = std::str::from_utf8(&fwd) {
        for c in cookie::Cookie::split_parse(text).flatten() {
            let n = c.name().as_bytes();
            assert!(
                !in_namespace(n) && !dropped(n),
                "{:?} reaches the app",
                c.name()
            );
        }
    }
}

/// `(name, value, pair)` of each pair of a `Cookie` value.
fn split(v: &[u8]) -> Vec<(&[u8], &[u8], &[u8])> {
    v.split(|b| *b == b';')
        .map(<[u8]>::trim_ascii)
        .filter(|p| !p.is_empty())
        .map(|p| match p.iter().position(|b| *b == b'=') {
            Some(i) => (p[..i].trim_ascii(), &p[i + 1..], p),
            None => (p, &b""[..], p),
        })
        .collect()
}

fn in_namespace(name: &[u8]) -> bool {
    let name = name.trim_ascii();
    PREFIXES
        .iter()
        .any(|p| name.len() >= p.len() && name[..p.len()].eq_ignore_ascii_case(p))
}

fn unquote(v: &[u8]) -> &[u8] {
    let v = v.trim_ascii();
    v.strip_prefix(b"\"")
        .and_then(|s| s.strip_suffix(b"\""))
        .unwrap_or(v)
}
