//! Reading and writing the gateway's cookies.
//!
//! Threats answered: cookie tossing and ambiguity (a gateway cookie sent twice is refused rather
//! than guessed at — RFC 6265 §5.4 leaves the order to the browser, so "first wins" would let a
//! sibling subdomain pick the session), leaking credentials upstream (every cookie in the
//! gateway's `__Host-sg-`/`__Secure-sg-` namespace is removed from the `Cookie` header the app
//! receives), and cookies a browser would accept from elsewhere (`__Host-` prefix: `Secure`,
//! `Path=/`, no `Domain`).
//!
//! Request cookies are split by hand rather than with `cookie::Cookie::split_parse`: the app's
//! cookies must reach it byte for byte, and the crate's parser re-encodes and drops pairs it
//! dislikes. They are split as bytes, not text: a cookie with a non-ASCII byte (one a sibling
//! domain set, say) is the app's business and passes as opaque bytes, while the gateway's own
//! cookies are still found, and refused when sent twice. Response cookies are built with the
//! `cookie` crate.

use http::HeaderMap;
use http::header::{COOKIE, HeaderValue};

use crate::config::{SameSite, SessionConfig};
use crate::delivery::Delivery;

/// The gateway's `Set-Cookie`s for one response, and the refresh-token rotation they deliver
/// (when a refresh committed one). They travel together, so whichever answer carries the
/// cookies — the upstream's response, a refusal, an endpoint's — also carries the
/// [`Delivery`] that takes the rotation back if that answer never reaches the client.
#[derive(Debug, Clone, Default)]
pub struct Outgoing {
    pub values: Vec<HeaderValue>,
    pub delivery: Option<Delivery>,
}

impl Outgoing {
    /// Nothing to set and nothing to deliver.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty() && self.delivery.is_none()
    }

    /// How many `Set-Cookie` values.
    pub fn len(&self) -> usize {
        self.values.len()
    }
}

impl From<Vec<HeaderValue>> for Outgoing {
    fn from(values: Vec<HeaderValue>) -> Self {
        Self {
            values,
            delivery: None,
        }
    }
}

/// The gateway's cookie names for one deployment.
#[derive(Debug, Clone)]
pub struct CookieNames {
    pub access: String,
    pub refresh: String,
    pub csrf: String,
    /// App cookies removed in both directions (`login.drop_cookies`), lower-case.
    pub drop: Vec<String>,
}

impl CookieNames {
    /// `__Host-sg-*`, or `__Secure-sg-*` when a `cookie_domain` is set (the `__Host-` prefix
    /// forbids `Domain`).
    pub fn new(session: &SessionConfig) -> Self {
        let prefix = if session.cookie_domain.is_some() {
            "__Secure-"
        } else {
            "__Host-"
        };
        Self {
            access: format!("{prefix}sg-access"),
            refresh: format!("{prefix}sg-refresh"),
            csrf: format!("{prefix}sg-csrf"),
            drop: Vec::new(),
        }
    }

    /// Also remove these app cookies (lower-case names) from requests and responses.
    pub fn with_drop(mut self, drop: Vec<String>) -> Self {
        self.drop = drop;
        self
    }

    /// Whether an app `Set-Cookie` value sets a cookie that must not reach the client.
    pub fn drops_set_cookie(&self, value: &[u8]) -> bool {
        let text = String::from_utf8_lossy(value);
        let name = text
            .split(['=', ';'])
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        self.drop.contains(&name) || self.is_gateway(name.as_bytes())
    }

    /// Whether a cookie name belongs to the gateway (case-insensitive, either prefix), whatever
    /// bytes follow the prefix.
    fn is_gateway(&self, name: &[u8]) -> bool {
        let name = name.trim_ascii();
        [&b"__host-sg-"[..], b"__secure-sg-"]
            .iter()
            .any(|p| name.len() >= p.len() && name[..p.len()].eq_ignore_ascii_case(p))
    }

    fn is_dropped(&self, name: &str) -> bool {
        !self.drop.is_empty() && self.drop.contains(&name.trim().to_ascii_lowercase())
    }
}

/// The gateway credentials found in a request's cookies.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GatewayCookies {
    pub access: Option<String>,
    pub refresh: Option<String>,
    pub csrf: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CookieError {
    #[error("gateway cookie {0} sent more than once")]
    Duplicate(&'static str),
}

impl CookieError {
    /// The reason shown to the client (names no value).
    pub fn reason(&self) -> &'static str {
        match self {
            CookieError::Duplicate(_) => "a gateway cookie was sent more than once",
        }
    }
}

/// What scanning a request's `Cookie` headers found.
#[derive(Debug, Default, Clone)]
pub struct CookieScan {
    pub gateway: GatewayCookies,
    /// `Some(new)` when the `Cookie` header to forward differs from what came in
    /// (`Some(None)`: remove it entirely); `None` to forward as is.
    pub forward: Option<Option<HeaderValue>>,
}

fn unquote(v: &[u8]) -> &[u8] {
    let v = v.trim_ascii();
    v.strip_prefix(b"\"")
        .and_then(|s| s.strip_suffix(b"\""))
        .unwrap_or(v)
}

/// The `;`-separated pairs of a `Cookie` value, found with SIMD: a session cookie is hundreds
/// of bytes, read on every request.
fn pairs(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    memchr::memchr_iter(b';', value)
        .chain(std::iter::once(value.len()))
        .map(move |end| {
            let pair = &value[start..end];
            start = end + 1;
            pair
        })
}

/// Scan every `Cookie` header: pick out the gateway's cookies, refuse duplicates, and compute
/// the header to forward upstream without them.
pub fn scan(headers: &HeaderMap, names: &CookieNames) -> Result<CookieScan, CookieError> {
    let mut out = CookieScan::default();
    let mut count = 0usize;
    let mut any_gateway = false;
    let mut kept: Vec<&[u8]> = Vec::new();
    for value in headers.get_all(COOKIE) {
        count += 1;
        for pair in pairs(value.as_bytes()) {
            let pair_trim = pair.trim_ascii();
            if pair_trim.is_empty() {
                continue;
            }
            let (name, val) = match pair_trim.iter().position(|b| *b == b'=') {
                Some(i) => (&pair_trim[..i], &pair_trim[i + 1..]),
                None => (pair_trim, &b""[..]),
            };
            let name = name.trim_ascii();
            if !names.is_gateway(name) {
                // `login.drop_cookies` names are text: a name that is not stays the app's.
                if std::str::from_utf8(name).is_ok_and(|n| names.is_dropped(n)) {
                    any_gateway = true;
                } else {
                    kept.push(pair_trim);
                }
                continue;
            }
            // A name in the gateway's namespace never reaches the app, whatever bytes follow
            // the prefix; only the exact names are read.
            any_gateway = true;
            let slot = if name == names.access.as_bytes() {
                Some((&mut out.gateway.access, "access"))
            } else if name == names.refresh.as_bytes() {
                Some((&mut out.gateway.refresh, "refresh"))
            } else if name == names.csrf.as_bytes() {
                Some((&mut out.gateway.csrf, "csrf"))
            } else {
                None // a look-alike (other case or prefix): dropped, never trusted
            };
            if let Some((slot, which)) = slot {
                if slot.is_some() {
                    return Err(CookieError::Duplicate(which));
                }
                // A value that is not text is no token of ours: verification refuses it.
                let val = unquote(val);
                *slot = Some(match std::str::from_utf8(val) {
                    Ok(text) => text.to_owned(),
                    Err(_) => String::from_utf8_lossy(val).into_owned(),
                });
            }
        }
    }
    if any_gateway || count > 1 {
        out.forward = Some(if kept.is_empty() {
            None
        } else {
            // Each pair came from a valid header value, so the joined bytes are valid too.
            HeaderValue::from_bytes(&kept.join(&b"; "[..])).ok()
        });
    }
    Ok(out)
}

/// Build a `Set-Cookie` value for a gateway cookie; `max_age` 0 clears it.
pub fn set_cookie(
    name: &str,
    value: &str,
    max_age_secs: u64,
    session: &SessionConfig,
    http_only: bool,
) -> HeaderValue {
    let same_site = match session.same_site {
        SameSite::Lax => cookie::SameSite::Lax,
        SameSite::Strict => cookie::SameSite::Strict,
    };
    let mut b = cookie::Cookie::build((name, value))
        .secure(true)
        .http_only(http_only)
        .path("/")
        .same_site(same_site)
        .max_age(cookie::time::Duration::seconds(
            i64::try_from(max_age_secs).unwrap_or(i64::MAX),
        ));
    if let Some(d) = &session.cookie_domain {
        b = b.domain(d.clone());
    }
    // Names and values are the gateway's own (token characters only): always a valid header.
    HeaderValue::from_str(&b.build().to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn session() -> SessionConfig {
        SessionConfig {
            access_ttl: Duration::from_secs(60),
            refresh_ttl: Duration::from_secs(600),
            idle_timeout: Duration::from_secs(300),
            refresh_grace: Duration::from_secs(10),
            same_site: SameSite::Lax,
            cookie_domain: None,
        }
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(COOKIE, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn gateway_cookies_are_read_and_removed_from_the_forwarded_header() {
        let n = CookieNames::new(&session());
        let s = scan(
            &headers(&["theme=dark; __Host-sg-access=aaa; x=\"q\"; __Host-sg-refresh=rrr"]),
            &n,
        )
        .unwrap();
        assert_eq!(s.gateway.access.as_deref(), Some("aaa"));
        assert_eq!(s.gateway.refresh.as_deref(), Some("rrr"));
        assert_eq!(
            s.forward,
            Some(Some(HeaderValue::from_static("theme=dark; x=\"q\"")))
        );
    }

    #[test]
    fn only_gateway_cookies_means_no_cookie_header_upstream() {
        let n = CookieNames::new(&session());
        let s = scan(&headers(&["__Host-sg-access=aaa"]), &n).unwrap();
        assert_eq!(s.forward, Some(None));
    }

    #[test]
    fn app_cookies_alone_pass_untouched() {
        let n = CookieNames::new(&session());
        let s = scan(&headers(&["a=1; b=2"]), &n).unwrap();
        assert_eq!(s.forward, None);
        assert_eq!(s.gateway, GatewayCookies::default());
    }

    #[test]
    fn duplicate_gateway_cookie_is_refused_even_across_headers() {
        let n = CookieNames::new(&session());
        assert_eq!(
            scan(&headers(&["__Host-sg-access=a; __Host-sg-access=b"]), &n).unwrap_err(),
            CookieError::Duplicate("access")
        );
        assert_eq!(
            scan(
                &headers(&["__Host-sg-refresh=a", "__Host-sg-refresh=b"]),
                &n
            )
            .unwrap_err(),
            CookieError::Duplicate("refresh")
        );
    }

    #[test]
    fn look_alike_names_are_stripped_but_never_trusted() {
        let n = CookieNames::new(&session());
        let s = scan(
            &headers(&["__host-sg-access=evil; __Secure-sg-access=evil2; ok=1"]),
            &n,
        )
        .unwrap();
        assert_eq!(s.gateway.access, None);
        assert_eq!(s.forward, Some(Some(HeaderValue::from_static("ok=1"))));
    }

    #[test]
    fn split_cookie_headers_are_joined_for_http1() {
        let n = CookieNames::new(&session());
        let s = scan(&headers(&["a=1", "b=2"]), &n).unwrap();
        assert_eq!(s.forward, Some(Some(HeaderValue::from_static("a=1; b=2"))));
    }

    fn raw_headers(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(COOKIE, HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    #[test]
    fn non_ascii_cookies_pass_as_opaque_bytes() {
        let n = CookieNames::new(&session());
        let s = scan(
            &raw_headers(&[b"theme=caf\xc3\xa9; __Host-sg-access=aaa; lang=\xe9t\xe9; caf\xe9=1"]),
            &n,
        )
        .unwrap();
        assert_eq!(s.gateway.access.as_deref(), Some("aaa"));
        assert_eq!(
            s.forward,
            Some(Some(
                HeaderValue::from_bytes(b"theme=caf\xc3\xa9; lang=\xe9t\xe9; caf\xe9=1").unwrap()
            ))
        );
        // Without a gateway cookie the header passes untouched.
        let s = scan(&raw_headers(&[b"x=\xff\xfe"]), &n).unwrap();
        assert_eq!(s.forward, None);
        // Split across headers: joined, bytes kept.
        let s = scan(&raw_headers(&[b"x=\xff", b"y=\x80"]), &n).unwrap();
        assert_eq!(
            s.forward,
            Some(Some(HeaderValue::from_bytes(b"x=\xff; y=\x80").unwrap()))
        );
    }

    #[test]
    fn duplicates_are_still_refused_beside_non_ascii_cookies() {
        let n = CookieNames::new(&session());
        let err = scan(
            &raw_headers(&[b"x=\xff; __Host-sg-access=a", b"__Host-sg-access=b; y=\xe9"]),
            &n,
        )
        .unwrap_err();
        assert_eq!(err, CookieError::Duplicate("access"));
        assert_eq!(err.reason(), "a gateway cookie was sent more than once");
    }

    #[test]
    fn a_name_of_the_gateways_namespace_never_reaches_the_app_whatever_its_bytes() {
        // Found by the `cookies` fuzz target: a name with a byte that is not UTF-8 after the
        // prefix passed as an app cookie.
        let n = CookieNames::new(&session());
        for raw in [
            &b"__Host-sg-\xff=x; ok=1"[..],
            b"__HOST-SG-csrf\xe9=x; ok=1",
            b"ok=1; __Secure-sg-\x80\x80=y",
            b"__host-sg-access\xff=stolen;ok=1",
        ] {
            let s = scan(&raw_headers(&[raw]), &n).unwrap();
            assert_eq!(
                s.forward,
                Some(Some(HeaderValue::from_static("ok=1"))),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
            assert_eq!(s.gateway, GatewayCookies::default());
        }
        // The exact names are still read beside them.
        let s = scan(&raw_headers(&[b"__Host-sg-\xff=x; __Host-sg-access=t"]), &n).unwrap();
        assert_eq!(s.gateway.access.as_deref(), Some("t"));
        assert_eq!(s.forward, Some(None));
    }

    #[test]
    fn a_gateway_cookie_with_a_non_ascii_value_is_found_and_never_forwarded() {
        let n = CookieNames::new(&session());
        let s = scan(&raw_headers(&[b"__Host-sg-access=a\xffb; ok=1"]), &n).unwrap();
        assert_eq!(s.gateway.access.as_deref(), Some("a\u{fffd}b"));
        assert_eq!(s.forward, Some(Some(HeaderValue::from_static("ok=1"))));
    }

    #[test]
    fn set_cookie_is_hardened() {
        let v = set_cookie("__Host-sg-access", "tok", 900, &session(), true);
        let s = v.to_str().unwrap();
        for part in [
            "__Host-sg-access=tok",
            "Secure",
            "HttpOnly",
            "Path=/",
            "SameSite=Lax",
            "Max-Age=900",
        ] {
            assert!(s.contains(part), "{s} lacks {part}");
        }
        assert!(!s.contains("Domain"));
    }

    #[test]
    fn cookie_domain_switches_to_secure_prefix() {
        let mut s = session();
        s.cookie_domain = Some("example.com".into());
        let n = CookieNames::new(&s);
        assert_eq!(n.access, "__Secure-sg-access");
        assert!(
            set_cookie(&n.access, "t", 1, &s, true)
                .to_str()
                .unwrap()
                .contains("Domain=example.com")
        );
    }
}
