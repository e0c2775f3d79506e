//! Header names the gateway owns and small readers of request headers.
//!
//! The names a client must never set live here, once ([`SpoofableHeaders`]): the strip stage
//! removes every one of them, the framing stage refuses look-alikes, the inject stage sets the
//! identity headers.
//!
//! Threat: an app behind the gateway trusts a header to name the user (`X-Auth-User`, or the
//! `X-Forwarded-User` / `Remote-User` it was given by oauth2-proxy, Apache or an ingress before
//! the gateway), so a client that sets one is whoever it says. Matching is by family
//! (`X-Auth-*`, `X-Forwarded-*`, …) rather than by the handful of names the gateway sets, and
//! in every spelling a server may fold into the same name: CGI-style stacks (PHP, WSGI, Rack,
//! Apache's `HTTP_*` variables) turn `-`, `_` and `.` alike into `_` and ignore case.

use std::borrow::Cow;

use http::header::{self, HeaderMap, HeaderName};
use http::{Method, Request, Version};

/// The identity headers the gateway sets (default names), in the order user, roles, session,
/// assertion.
pub const IDENTITY_HEADERS: &[&str] = &[
    "x-auth-user",
    "x-auth-roles",
    "x-auth-session",
    "x-auth-assertion",
];

/// Families of request headers that carry identity or connection facts to an app, by folded
/// prefix. Removed from every request; the gateway states its own.
pub const SPOOFABLE_PREFIXES: &[&str] = &[
    // The gateway's identity headers; oauth2-proxy's X-Auth-Request-*; Keycloak Gatekeeper's
    // X-Auth-Email, X-Auth-Userid, X-Auth-Token, ...
    "x-auth-",
    // X-Forwarded-For (kept from trusted proxies only), -Proto, -Host, -Port, -Prefix; and
    // oauth2-proxy's X-Forwarded-User, -Email, -Groups, -Preferred-Username, -Access-Token.
    "x-forwarded-",
    // X-Remote-User, X-Remote-Group, X-Remote-Extra-* (Kubernetes authenticating proxy).
    "x-remote-",
    // Envoy's X-Envoy-Original-Path, -External-Address, -Internal, ...
    "x-envoy-",
    // Identity-aware proxies: Pomerium, authentik, Google IAP, AWS ALB, Azure App Service,
    // Cloudflare Access; Grafana/Gitea auth proxy (X-WEBAUTH-USER).
    "x-pomerium-",
    "x-authentik-",
    "x-goog-authenticated-",
    "x-goog-iap-",
    "x-amzn-oidc-",
    "x-ms-client-principal",
    "x-ms-token-",
    "cf-access-",
    "x-webauth-",
    // The gateway's own namespace (X-Sessiongate-Grant).
    "x-sessiongate-",
];

/// Single names in the same role, folded.
pub const SPOOFABLE_NAMES: &[&str] = &[
    // Client address and request target, stated by the gateway.
    "forwarded",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "x-cluster-client-ip",
    "cf-connecting-ip",
    "x-original-url",
    "x-original-uri",
    "x-rewrite-url",
    // REMOTE_USER as a header (Apache, Caddy, Authelia's Remote-User/-Groups/-Name/-Email),
    // and the X-User of nginx auth_request examples.
    "remote-user",
    "remote-groups",
    "remote-name",
    "remote-email",
    "x-user",
];

pub const X_FORWARDED_FOR: &str = "x-forwarded-for";

// Header names the hot path looks up or sets on every request, parsed once here (a lookup by
// `&str` parses and validates the name each time).
pub const X_FORWARDED_FOR_NAME: HeaderName = HeaderName::from_static(X_FORWARDED_FOR);
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub const SEC_FETCH_MODE: HeaderName = HeaderName::from_static("sec-fetch-mode");

/// Header carrying an upstream login grant; never accepted from a client.
pub const GRANT_HEADER: &str = "x-sessiongate-grant";

/// How a request header's name relates to the names a client must never set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderClass {
    /// Not one of them.
    Other,
    /// One of them, spelled as the gateway spells it (in any letter case): removed.
    Spoofable,
    /// `X-Forwarded-For`: removed unless the peer is a trusted proxy, which may extend it.
    ForwardedFor,
    /// One of them once a server folds `_`, `.` or another separator into `-`
    /// (`X_Auth_User`, `x.forwarded.user`): there is no telling whether the app reads it as the
    /// real header, so the request is refused.
    LookAlike,
}

/// The request header names a client must never set: the built-in families above, the
/// gateway's identity header names and `identity.strip_headers`, all folded ([`fold`]).
#[derive(Debug, Clone)]
pub struct SpoofableHeaders {
    names: rustc_hash::FxHashSet<String>,
    prefixes: Vec<String>,
    /// The folded first [`FILTER_BYTES`] bytes of every name and prefix (a shorter name: all
    /// of it), hashed to one of 1,024 bits (all of them for a prefix shorter than that): most
    /// request headers (`host`, `accept`, `cookie`, `user-agent`, `sec-fetch-*`, and the
    /// `x-request-id` and `traceparent` the gateway itself sets) start as none of them do, and
    /// are told apart without folding or comparing. Two bytes were not enough: `x-` starts
    /// most of the families, and `tr` both `traceparent` and `true-client-ip`.
    first: [u64; 16],
}

/// How many leading bytes of a name the filter reads.
const FILTER_BYTES: usize = 5;

/// A name's first [`FILTER_BYTES`] bytes (or all of a shorter one) as [`fold`] reads them,
/// hashed to one of the filter's 1,024 bits: its word and its mask.
fn start_bit(name: &str) -> (usize, u64) {
    let k = name.bytes().take(FILTER_BYTES).fold(0u32, |k, c| {
        k.wrapping_mul(31).wrapping_add(u32::from(fold_byte(c)))
    });
    // The top ten bits of a multiplicative hash.
    let h = k.wrapping_mul(0x9E37_79B1) >> 22;
    (usize::try_from(h >> 6).unwrap_or(0), 1 << (h & 63))
}

/// A byte as [`fold`] reads it.
fn fold_byte(b: u8) -> u8 {
    if b.is_ascii_alphanumeric() {
        b.to_ascii_lowercase()
    } else {
        b'-'
    }
}

impl SpoofableHeaders {
    /// `identity`: the names the gateway injects; `extra`: names as configured, a trailing `*`
    /// making one a prefix.
    pub fn new<'a>(identity: impl IntoIterator<Item = &'a str>, extra: &[String]) -> Self {
        let mut names: Vec<String> = SPOOFABLE_NAMES.iter().map(|n| n.to_string()).collect();
        let mut prefixes: Vec<String> = SPOOFABLE_PREFIXES.iter().map(|p| p.to_string()).collect();
        names.extend(identity.into_iter().map(|n| fold(n).into_owned()));
        for e in extra {
            match e.strip_suffix('*') {
                Some(p) => prefixes.push(fold(p).into_owned()),
                None => names.push(fold(e).into_owned()),
            }
        }
        let names: rustc_hash::FxHashSet<String> = names.into_iter().collect();
        let mut first = [0u64; 16];
        for n in &names {
            let (w, bit) = start_bit(n);
            first[w] |= bit;
        }
        for p in &prefixes {
            if p.len() < FILTER_BYTES {
                first = [u64::MAX; 16];
            } else {
                let (w, bit) = start_bit(p);
                first[w] |= bit;
            }
        }
        Self {
            names,
            prefixes,
            first,
        }
    }

    /// What to do with a request header of this name (as `HeaderName::as_str` gives it).
    pub fn classify(&self, name: &str) -> HeaderClass {
        let (w, bit) = start_bit(name);
        if self.first[w] & bit == 0 {
            return HeaderClass::Other;
        }
        let folded = fold(name);
        let listed = self.names.contains(folded.as_ref())
            || self.prefixes.iter().any(|p| folded.starts_with(p.as_str()));
        if !listed {
            HeaderClass::Other
        } else if name
            .bytes()
            .any(|b| !b.is_ascii_alphanumeric() && b != b'-')
        {
            HeaderClass::LookAlike
        } else if folded == X_FORWARDED_FOR {
            HeaderClass::ForwardedFor
        } else {
            HeaderClass::Spoofable
        }
    }
}

/// A header name as a server that folds case and separators reads it: ASCII lower case, and
/// every byte that is not a letter or digit as `-` (CGI's `HTTP_X_AUTH_USER` is what
/// `X-Auth-User`, `x_auth_user` and `X.Auth.User` all become).
pub fn fold(name: &str) -> Cow<'_, str> {
    if name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Cow::Borrowed(name);
    }
    Cow::Owned(name.bytes().map(|b| char::from(fold_byte(b))).collect())
}

/// Headers meaningful for one connection only (RFC 9110 §7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];

/// Remove hop-by-hop headers, including those the `Connection` header names.
#[inline]
pub fn remove_hop_by_hop(h: &mut HeaderMap) {
    let mut found: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    // The names present, each against the list (few messages carry any of them): one pass,
    // where looking each listed name up would parse and hash it, twice per proxied request.
    found.extend(
        h.keys()
            .filter(|n| HOP_BY_HOP.contains(&n.as_str()))
            .cloned(),
    );
    for n in found {
        h.remove(n);
    }
}

/// Whether a request asks for a WebSocket upgrade (RFC 6455 §4.1).
#[inline]
pub fn is_websocket<B>(req: &Request<B>) -> bool {
    let h = req.headers();
    let upgrade = h
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let conn = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    upgrade && conn && req.version() == Version::HTTP_11
}

/// The `Bearer` token of an `Authorization` header, if that is what it carries.
#[inline]
pub fn bearer_token(h: &HeaderMap) -> Option<&str> {
    let v = h.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// An address as `X-Forwarded-For` carries it, as `Display` writes it: an IPv4 address
/// without `Display`'s formatting machinery (about 1,300 instructions per request).
pub fn ip_text(ip: std::net::IpAddr) -> String {
    let std::net::IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut s = String::with_capacity(15);
    for (i, o) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            s.push('.');
        }
        if o >= 100 {
            s.push(char::from(b'0' + o / 100));
        }
        if o >= 10 {
            s.push(char::from(b'0' + o / 10 % 10));
        }
        s.push(char::from(b'0' + o % 10));
    }
    s
}

/// Whether a request is a top-level browser navigation (gets a login redirect, not a 401).
#[inline]
pub fn is_navigation(method: &Method, h: &HeaderMap) -> bool {
    if method != Method::GET {
        return false;
    }
    let mode = h.get(&SEC_FETCH_MODE).and_then(|v| v.to_str().ok());
    wants_html(h)
        && !matches!(mode, Some("cors") | Some("no-cors") | Some("websocket"))
        && !h.contains_key(header::UPGRADE)
}

/// Whether `Accept` names HTML.
#[inline]
pub fn wants_html(h: &HeaderMap) -> bool {
    accepts(h, "text/html")
}

/// Whether `Accept` names JSON.
#[inline]
pub fn wants_json(h: &HeaderMap) -> bool {
    accepts(h, "application/json")
}

/// Whether the `Accept` list (RFC 9110 §12.5.1) names `media` (`type/subtype`, any case) with
/// a weight that is not `q=0`. A wildcard (`*/*`, `text/*`) names nothing: a client that takes
/// anything is no browser asking for a page. Written by hand: a few lines over the grammar,
/// where the media-type crates parse one type, not a list with weights.
fn accepts(h: &HeaderMap, media: &str) -> bool {
    h.get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| outside_quotes(a, b',').any(|range| names_media(range, media)))
}

/// One element of an `Accept` list: whether it is `media` with a non-zero weight.
fn names_media(range: &str, media: &str) -> bool {
    let mut parts = outside_quotes(range, b';');
    if !parts
        .next()
        .is_some_and(|m| m.trim_matches([' ', '\t']).eq_ignore_ascii_case(media))
    {
        return false;
    }
    for p in parts {
        if let Some((name, value)) = p.trim_matches([' ', '\t']).split_once('=')
            && name.eq_ignore_ascii_case("q")
        {
            return non_zero_weight(value);
        }
    }
    true
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )` (RFC 9110 §12.4.2), above 0;
/// a weight that is not a qvalue makes the element invalid, so it names nothing.
fn non_zero_weight(q: &str) -> bool {
    let (int, frac) = q.split_once('.').unwrap_or((q, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    match int {
        "0" => frac.bytes().any(|b| b != b'0'),
        "1" => frac.bytes().all(|b| b == b'0'),
        _ => false,
    }
}

/// `s` split at `sep` where it is not inside a quoted string (`"…"`, with `\` escapes).
fn outside_quotes(s: &str, sep: u8) -> impl Iterator<Item = &str> {
    let (mut quoted, mut escaped) = (false, false);
    s.split(move |c: char| {
        if escaped {
            escaped = false;
            false
        } else if quoted && c == '\\' {
            escaped = true;
            false
        } else if c == '"' {
            quoted = !quoted;
            false
        } else {
            !quoted && c == char::from(sep)
        }
    })
}

/// Whether the request body is `want` (`Content-Type` without parameters, any case).
#[inline]
pub fn content_type_is(h: &HeaderMap, want: &str) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case(want)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn spoofable(extra: &[&str]) -> SpoofableHeaders {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        SpoofableHeaders::new(IDENTITY_HEADERS.iter().copied(), &extra)
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_removed_and_nothing_else() {
        let mut h = HeaderMap::new();
        for (n, v) in [
            ("connection", "keep-alive, X-Private"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("trailer", "x-sum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authenticate", "Basic"),
            ("proxy-authorization", "Basic eA=="),
            ("x-private", "1"),
            ("x-kept", "1"),
            ("content-type", "text/plain"),
        ] {
            h.append(HeaderName::from_static(n), HeaderValue::from_static(v));
        }
        h.append("x-kept", HeaderValue::from_static("2"));
        remove_hop_by_hop(&mut h);
        let mut left: Vec<_> = h.keys().map(|n| n.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-type", "x-kept"]);
        assert_eq!(h.get_all("x-kept").iter().count(), 2);
        let mut none = HeaderMap::new();
        remove_hop_by_hop(&mut none);
        assert!(none.is_empty());
    }

    #[test]
    fn header_families_are_spoofable_by_prefix() {
        let s = spoofable(&[]);
        for name in [
            "x-auth-user",
            "x-auth-roles",
            "x-auth-request-user",
            "x-auth-request-email",
            "x-auth-request-preferred-username",
            "x-auth-email",
            "x-forwarded-user",
            "x-forwarded-email",
            "x-forwarded-groups",
            "x-forwarded-preferred-username",
            "x-forwarded-access-token",
            "x-forwarded-proto",
            "x-forwarded-host",
            "x-remote-user",
            "x-remote-group",
            "remote-user",
            "remote-groups",
            "x-envoy-original-path",
            "x-envoy-external-address",
            "x-webauth-user",
            "x-ms-client-principal-name",
            "x-goog-authenticated-user-email",
            "x-amzn-oidc-identity",
            "cf-access-authenticated-user-email",
            "x-sessiongate-grant",
            "forwarded",
            "x-real-ip",
        ] {
            assert_eq!(s.classify(name), HeaderClass::Spoofable, "{name}");
        }
        assert_eq!(s.classify(GRANT_HEADER), HeaderClass::Spoofable);
        assert_eq!(s.classify("x-forwarded-for"), HeaderClass::ForwardedFor);
    }

    #[test]
    fn folded_spellings_are_look_alikes() {
        let s = spoofable(&[]);
        for name in [
            "x_auth_user",
            "x.auth.user",
            "x-auth_user",
            "x_auth.request~user",
            "x_forwarded_for",
            "x.forwarded.for",
            "x_forwarded_user",
            "remote_user",
            "remote.user",
            "x_envoy_original_path",
            "x_sessiongate_grant",
        ] {
            assert_eq!(s.classify(name), HeaderClass::LookAlike, "{name}");
        }
    }

    #[test]
    fn unrelated_headers_are_left_alone() {
        let s = spoofable(&[]);
        for name in [
            "x_app_thing",
            "x-app.thing",
            "accept",
            "x-authorization-hint",
            "x-auth",
            "x-forwarded",
            "x-user-agent",
            "remote-addr-hint",
            "authorization",
            "cookie",
        ] {
            assert_eq!(s.classify(name), HeaderClass::Other, "{name}");
        }
    }

    #[test]
    fn configured_names_and_prefixes_are_folded() {
        let s = spoofable(&["X-Employee-Id", "x_tenant_*"]);
        assert_eq!(s.classify("x-employee-id"), HeaderClass::Spoofable);
        assert_eq!(s.classify("x_employee.id"), HeaderClass::LookAlike);
        assert_eq!(s.classify("x-tenant-name"), HeaderClass::Spoofable);
        assert_eq!(s.classify("x.tenant.role"), HeaderClass::LookAlike);
        assert_eq!(s.classify("x-employee"), HeaderClass::Other);
        assert_eq!(s.classify("x-tenant"), HeaderClass::Other);
    }

    /// The filter only ever answers `Other` where folding and comparing would: names starting
    /// with a separator, upper case, digits, names shorter than the bytes it reads, and
    /// configured prefixes shorter than them (or matching everything).
    #[test]
    fn the_first_byte_filter_agrees_with_the_full_comparison() {
        fn slow(s: &SpoofableHeaders, name: &str) -> bool {
            let folded = fold(name);
            s.names.iter().any(|n| *n == folded)
                || s.prefixes.iter().any(|p| folded.starts_with(p.as_str()))
        }
        let names = [
            "host",
            "accept",
            "cookie",
            "user-agent",
            "x-auth-user",
            "X_Auth_User",
            "_auth-user",
            ".x-auth-user",
            "-x-auth-user",
            "remote-user",
            "Remote_User",
            "9-digits",
            "1x",
            "x-tenant-name",
            "z",
            "x",
            "",
            "~tilde",
            "x-forwarded-for",
            "X.Forwarded.Host",
            "x-request-id",
            "traceparent",
            "true-client-ip",
            "True_Client_IP",
            "x-user",
            "x-use",
            "x-users",
            "x-ab-c",
        ];
        let extras = [
            &[][..],
            &["*"][..],
            &["_odd", "9th", "Z_*", "q", "k*"][..],
            &["x-ab*", "t*"][..],
        ];
        for extra in extras {
            let s = spoofable(extra);
            for name in names {
                assert_eq!(
                    s.classify(name) != HeaderClass::Other,
                    slow(&s, name),
                    "{name:?} with {extra:?}"
                );
            }
        }
        assert_eq!(spoofable(&["*"]).classify("accept"), HeaderClass::Spoofable);
        assert_eq!(
            spoofable(&["_odd"]).classify(".odd"),
            HeaderClass::LookAlike
        );
    }

    /// What every request carries passes the filter without a comparison (the reason for it).
    #[test]
    fn common_request_headers_are_told_apart_by_the_filter_alone() {
        let s = spoofable(&[]);
        for name in [
            "host",
            "accept",
            "accept-encoding",
            "accept-language",
            "cookie",
            "user-agent",
            "content-type",
            "content-length",
            "origin",
            "referer",
            "sec-fetch-site",
            "sec-fetch-mode",
            "sec-ch-ua",
            "x-request-id",
            "traceparent",
            "authorization",
        ] {
            let (w, bit) = start_bit(name);
            assert_eq!(s.first[w] & bit, 0, "{name} passes the filter");
        }
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "255.255.255.255",
            "192.168.100.9",
            "1.10.100.200",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:10.0.0.1",
        ] {
            let addr: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(addr), addr.to_string(), "{ip}");
        }
        for o in 0..=255u8 {
            let addr = std::net::IpAddr::from([o, 255 - o, o / 3, 7]);
            assert_eq!(ip_text(addr), addr.to_string());
        }
    }

    #[test]
    fn fold_reads_names_as_cgi_does() {
        assert_eq!(fold("x-auth-user"), "x-auth-user");
        assert_eq!(fold("X_Auth.User"), "x-auth-user");
        assert_eq!(fold("x~auth+user"), "x-auth-user");
    }

    #[test]
    fn navigation_detection() {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/html,application/xhtml+xml"),
        );
        assert!(is_navigation(&Method::GET, &h));
        assert!(!is_navigation(&Method::POST, &h));
        h.insert("sec-fetch-mode", HeaderValue::from_static("cors"));
        assert!(!is_navigation(&Method::GET, &h));
        assert!(!is_navigation(&Method::GET, &HeaderMap::new()));
    }

    #[test]
    fn bearer_parsing() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(bearer_token(&h), Some("abc"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer   abc "),
        );
        assert_eq!(bearer_token(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer_token(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer_token(&h), None);
    }

    #[test]
    fn accept_names_a_media_type_only_as_a_list_element_with_a_weight() {
        // Found by the `headers` fuzz target: `Accept` was searched for a substring, in one
        // letter case, so `TEXT/HTML` named nothing while `text/html;q=0`, `text/htmlx` and a
        // quoted `"text/html"` named HTML.
        let accept = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
            (wants_html(&h), wants_json(&h))
        };
        for (v, want) in [
            ("text/html,application/xhtml+xml,*/*;q=0.8", (true, false)),
            ("TEXT/HTML", (true, false)),
            ("texT/html ; level=1", (true, false)),
            ("application/json, text/plain", (false, true)),
            ("Application/JSON;q=0.5", (false, true)),
            ("text/html;q=1.000", (true, false)),
            ("text/html;q=0", (false, false)),
            ("text/html;Q=0.000, application/json;q=0.001", (false, true)),
            ("text/html;q=1.5", (false, false)),
            ("text/htmlx, application/jsonp", (false, false)),
            ("xtext/html", (false, false)),
            ("\"text/html\"", (false, false)),
            ("application/xml;x=\"a,text/html\"", (false, false)),
            ("application/xml;x=\"a\\\",text/html\"", (false, false)),
            ("*/*", (false, false)),
            ("text/*", (false, false)),
            ("", (false, false)),
        ] {
            assert_eq!(accept(v), want, "{v:?}");
        }
    }

    #[test]
    fn content_types_ignore_parameters_and_case() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("Application/JSON; charset=utf-8"),
        );
        assert!(content_type_is(&h, "application/json"));
        assert!(!content_type_is(&h, "application/x-www-form-urlencoded"));
        assert!(!content_type_is(&HeaderMap::new(), "application/json"));
    }
}
