//! The forward stage's first half: turn the cleared client request into the upstream request
//! — absolute-form target on the upstream (its base path, the normalised path re-encoded, the
//! clean query), HTTP/1.1 whatever the client spoke, `Host` passed on (or not, per
//! `upstream.preserve_host`), `X-Forwarded-For/Proto/Host` stated by the gateway. `proxy`
//! then sends it.

use http::header::{self, HeaderValue};
use http::{Request, Uri, Version};

use super::RequestCtx;
use crate::config::UpstreamConfig;
use crate::refusal::Refusal;
use crate::web::headers::{X_FORWARDED_FOR_NAME, X_FORWARDED_HOST, X_FORWARDED_PROTO};
use crate::web::path;

pub fn prepare<B>(
    up: &UpstreamConfig,
    ctx: &RequestCtx,
    req: &mut Request<B>,
) -> Result<(), Refusal> {
    // The host the client named, kept as the value it came in: `Host` when it is text, else
    // the target's authority (HTTP/2).
    let (host_value, from_host) = match req.headers().get(header::HOST) {
        Some(v) if v.to_str().is_ok() => (Some(v.clone()), true),
        _ => (
            req.uri()
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
            false,
        ),
    };
    *req.uri_mut() = target(up, ctx)?;
    *req.version_mut() = Version::HTTP_11;
    let h = req.headers_mut();
    if ctx.websocket {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    }
    match (&host_value, up.preserve_host) {
        // Already there, as the client sent it (framing refused a second one).
        (Some(_), true) if from_host => {}
        (Some(v), true) => {
            h.insert(header::HOST, v.clone());
        }
        _ => {
            h.remove(header::HOST);
        }
    }
    // Present only when the peer is a trusted proxy (strip removed it otherwise); a proxy
    // may have sent several lines: keep the whole chain, then add the peer.
    let prev: Vec<&str> = h
        .get_all(&X_FORWARDED_FOR_NAME)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let xff = if prev.is_empty() {
        crate::web::headers::ip_text(ctx.client_ip)
    } else {
        format!("{}, {}", prev.join(", "), ctx.peer_ip)
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        h.insert(X_FORWARDED_FOR_NAME, v);
    }
    h.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
    if let Some(v) = host_value {
        h.insert(X_FORWARDED_HOST, v);
    }
    Ok(())
}

/// `scheme://authority/base/path?query` on the upstream.
fn target(up: &UpstreamConfig, ctx: &RequestCtx) -> Result<Uri, Refusal> {
    let encoded = path::encode(&ctx.path);
    let mut pq = String::with_capacity(
        up.base_path.len() + encoded.len() + ctx.query.as_ref().map_or(0, |q| q.len() + 1),
    );
    pq.push_str(&up.base_path);
    pq.push_str(&encoded);
    if let Some(q) = &ctx.query {
        pq.push('?');
        pq.push_str(q);
    }
    Uri::builder()
        .scheme(up.scheme.clone())
        .authority(up.authority.clone())
        .path_and_query(pq)
        .build()
        .map_err(|_| Refusal::BadRequest("request target cannot be forwarded"))
}
