//! Strip everything a client sends that pretends to be identity.
//!
//! Threat: header spoofing — a client sending `X-Auth-User: admin` directly, or
//! `X-Forwarded-For` to fake its address. Every header the gateway sets is removed here, on
//! every route, public ones included; the inject stage later *inserts* the verified values.
//! The gateway's own cookies and a bearer token it consumed are removed so the app never sees a
//! credential.

use http::{Request, header};

use super::RequestCtx;
use crate::runtime::{ConnCtx, Runtime};
use crate::web::headers::{FORWARDED_HEADERS, GRANT_HEADER, X_FORWARDED_FOR, remove_hop_by_hop};

/// Remove spoofable headers and gateway credentials from a request going upstream.
pub fn apply<B>(rt: &Runtime, conn: &ConnCtx, ctx: &RequestCtx, req: &mut Request<B>) {
    let h = req.headers_mut();
    remove_hop_by_hop(h);
    for name in &rt.identity_names {
        h.remove(name);
    }
    h.remove(GRANT_HEADER);
    if !conn.peer_trusted {
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
    match &ctx.cookies.forward {
        None => {}
        Some(None) => {
            h.remove(header::COOKIE);
        }
        Some(Some(v)) => {
            h.insert(header::COOKIE, v.clone());
        }
    }
    if ctx.bearer.is_some() {
        h.remove(header::AUTHORIZATION);
    }
}
