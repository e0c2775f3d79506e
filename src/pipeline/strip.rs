//! Strip everything a client sends that pretends to be identity.
//!
//! Threat: header spoofing — a client sending `X-Auth-User: admin` directly, the
//! `X-Forwarded-User` or `Remote-User` an app learnt to trust from the auth proxy it had before
//! (oauth2-proxy, Apache, an ingress), or `X-Forwarded-For` to fake its address. Every header of
//! those families (`web::headers::SpoofableHeaders`: by prefix, in any letter case, plus
//! `identity.strip_headers`) is removed here, on every route, public ones included; the inject
//! stage later *inserts* the verified values. Spellings that only a folding server would read
//! as one of them (`X_Auth_User`) never get here: the framing stage refuses them.
//! The gateway's own cookies and a bearer token it consumed are removed so the app never sees a
//! credential.

use http::{HeaderName, Request, header};

use super::RequestCtx;
use crate::runtime::{ConnCtx, Runtime};
use crate::web::headers::{HeaderClass, remove_hop_by_hop};

/// Remove spoofable headers and gateway credentials from a request going upstream.
pub fn apply<B>(rt: &Runtime, conn: &ConnCtx, ctx: &RequestCtx, req: &mut Request<B>) {
    let h = req.headers_mut();
    remove_hop_by_hop(h);
    // Even from a trusted proxy, only X-Forwarded-For is taken (and extended); the rest the
    // gateway states itself.
    let spoofed: Vec<HeaderName> = h
        .keys()
        .filter(|n| match rt.spoofable.classify(n.as_str()) {
            HeaderClass::Other => false,
            HeaderClass::ForwardedFor => !conn.peer_trusted,
            HeaderClass::Spoofable | HeaderClass::LookAlike => true,
        })
        .cloned()
        .collect();
    for name in spoofed {
        h.remove(name);
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
