//! Strip everything a client sends that pretends to be identity.
//!
//! Threat: header spoofing — a client sending `X-Auth-User: admin` directly, or
//! `X-Forwarded-For` to fake its address. Every header the gateway sets is removed here, on
//! every route, public ones included; the inject stage later *inserts* the verified values.
//! The gateway's own cookies and a bearer token it consumed are removed so the app never sees a
//! credential.

use http::{HeaderName, Request, header};

use crate::cookies::CookieScan;

/// The identity headers the gateway sets (default names).
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

pub fn identity_header_names(names: &[HeaderName]) -> impl Iterator<Item = &str> {
    names.iter().map(HeaderName::as_str)
}

/// Remove spoofable headers and gateway credentials from a request going upstream.
pub fn apply<B>(
    req: &mut Request<B>,
    identity: &[HeaderName],
    peer_trusted: bool,
    cookies: &CookieScan,
    bearer_consumed: bool,
) {
    let h = req.headers_mut();
    crate::proxy::remove_hop_by_hop(h);
    for name in identity {
        h.remove(name);
    }
    h.remove(GRANT_HEADER);
    if !peer_trusted {
        for name in FORWARDED_HEADERS {
            h.remove(*name);
        }
    } else {
        // Even from a trusted proxy, only X-Forwarded-For is taken (and extended); the rest
        // the gateway states itself.
        for name in FORWARDED_HEADERS.iter().filter(|n| **n != X_FORWARDED_FOR) {
            h.remove(*name);
        }
    }
    match &cookies.forward {
        None => {}
        Some(None) => {
            h.remove(header::COOKIE);
        }
        Some(Some(v)) => {
            h.insert(header::COOKIE, v.clone());
        }
    }
    if bearer_consumed {
        h.remove(header::AUTHORIZATION);
    }
}
