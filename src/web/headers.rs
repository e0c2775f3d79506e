//! Header names the gateway owns and small readers of request headers.
//!
//! The identity and forwarding header names live here, once: the strip stage removes every
//! one of them, the framing stage refuses look-alikes, the inject stage sets them.

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

/// Headers that describe the client's connection; set by the gateway, or passed on only from
/// trusted proxies.
pub const FORWARDED_HEADERS: &[&str] = &[
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-server",
    "forwarded",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "x-original-url",
    "x-rewrite-url",
];

pub const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// Header carrying an upstream login grant; never accepted from a client.
pub const GRANT_HEADER: &str = "x-sessiongate-grant";

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
    let listed: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for n in listed {
        h.remove(n);
    }
    for n in HOP_BY_HOP {
        h.remove(*n);
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

/// The host the client asked for: `Host`, else the HTTP/2 `:authority`.
#[inline]
pub fn client_host<B>(req: &Request<B>) -> Option<&str> {
    req.headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
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

/// Whether a request is a top-level browser navigation (gets a login redirect, not a 401).
#[inline]
pub fn is_navigation(method: &Method, h: &HeaderMap) -> bool {
    if method != Method::GET {
        return false;
    }
    let mode = h.get("sec-fetch-mode").and_then(|v| v.to_str().ok());
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

#[inline]
fn accepts(h: &HeaderMap, media: &str) -> bool {
    h.get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains(media))
}

/// The `User-Agent`, or `""` (read where needed rather than copied into the request's
/// context: cloning a header value can allocate).
#[inline]
pub fn user_agent(h: &HeaderMap) -> &str {
    h.get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
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
