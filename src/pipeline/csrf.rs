//! Cross-site request forgery.
//!
//! Threat: another site making the user's browser send an unsafe request that carries the
//! session cookie (`SameSite=Lax` stops most, not all: same-site siblings, top-level POSTs in
//! old browsers). Unsafe requests must prove they come from the gateway's own origin, using what
//! browsers send: `Sec-Fetch-Site` (Fetch Metadata), else `Origin` (RFC 6454), else `Referer`.
//! A request with none of them did not come from a browser page, so it cannot be a CSRF and
//! passes — the approach of Go's `http.CrossOriginProtection`. A method override header or a
//! `_method` parameter makes any request count as unsafe.

use http::{HeaderMap, Method, Request};

use super::RequestCtx;
use crate::config::{CsrfConfig, CsrfMode};
pub use crate::refusal::CsrfError;
use crate::refusal::Refusal;
use crate::routing::Route;
use crate::runtime::Runtime;
use crate::sessions::Identity;
use crate::tokens::DerivedKeys;

/// The CSRF origin stage, before the session stage (a refusal must never lose a refresh-token
/// rotation: nothing rotates for a request that is refused). An unsafe request (or a WebSocket
/// upgrade: cross-site WebSocket hijacking is CSRF) that presents the gateway's cookies must
/// prove it comes from our own origin. On a protected route it is refused; on a public route
/// it goes on without the identity ([`Origin::Anonymous`]): the app never sees a cross-site
/// request as the user's.
pub fn check_origin<B>(
    rt: &Runtime,
    ctx: &RequestCtx,
    route: Route,
    req: &Request<B>,
) -> Result<Origin, Refusal> {
    if !(ctx.websocket || is_unsafe(req.method(), req.headers(), ctx.query.as_deref())) {
        return Ok(Origin::Proven);
    }
    match origin(rt, req.headers(), cookie_session(ctx)) {
        Ok(()) => Ok(Origin::Proven),
        Err(e) if route.public => {
            tracing::info!(reason = e.to_string().as_str(), path = %ctx.path, "csrf: identity withheld");
            Ok(Origin::Anonymous)
        }
        Err(e) => Err(refused(ctx, e)),
    }
}

/// What the origin stage decided for a request that goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Same-origin, or nothing to forge (a safe method, no cookie).
    Proven,
    /// A public route's cross-site unsafe request: forwarded without the identity.
    Anonymous,
}

/// `token` mode, after the session stage: an unsafe cookie-session request must also carry the
/// double-submit token bound to its session. Browsers cannot add headers to a WebSocket
/// handshake: upgrades are judged by origin alone.
pub fn check_token<B>(
    rt: &Runtime,
    ctx: &RequestCtx,
    route: Route,
    identity: Option<&Identity>,
    req: &Request<B>,
) -> Result<(), Refusal> {
    if route.public
        || ctx.websocket
        || ctx.bearer.is_some()
        || rt.cfg.csrf.mode != CsrfMode::Token
        || !is_unsafe(req.method(), req.headers(), ctx.query.as_deref())
    {
        return Ok(());
    }
    let Some(id) = identity else {
        return Ok(());
    };
    token_matches(
        &rt.csrf_keys,
        &id.sid,
        req.headers(),
        ctx.cookies.gateway.csrf.as_deref(),
    )
    .map_err(|e| refused(ctx, e))
}

/// Evidence-only origin check for app paths whose mere request has an effect (the app's login
/// form, its logout paths): cross-site evidence refuses, no evidence passes (a login form has no
/// ambient credential to forge with).
pub fn check_app_path<B>(rt: &Runtime, ctx: &RequestCtx, req: &Request<B>) -> Result<(), Refusal> {
    origin(rt, req.headers(), false).map_err(|e| refused(ctx, e))
}

/// The gateway's own endpoints: cookie sessions must prove their origin; a login form or
/// bearer client has nothing to forge with, and must still not come from another origin when
/// a browser says so (login CSRF signs the victim into the attacker's account).
pub fn check_gateway<B>(rt: &Runtime, ctx: &RequestCtx, req: &Request<B>) -> Result<(), Refusal> {
    if !is_unsafe(req.method(), req.headers(), ctx.query.as_deref()) {
        return Ok(());
    }
    origin(rt, req.headers(), cookie_session(ctx)).map_err(|e| refused(ctx, e))
}

/// Whether the request presents the gateway's session cookies as its credential. A bearer
/// token is no ambient credential: only cookie sessions must prove their origin.
fn cookie_session(ctx: &RequestCtx) -> bool {
    let g = &ctx.cookies.gateway;
    ctx.bearer.is_none() && (g.access.is_some() || g.refresh.is_some())
}

fn origin(rt: &Runtime, h: &HeaderMap, cookie_auth: bool) -> Result<(), CsrfError> {
    same_origin(
        &rt.cfg.csrf,
        &rt.cfg.server.public_origin.origin,
        h,
        cookie_auth,
    )
}

fn refused(ctx: &RequestCtx, e: CsrfError) -> Refusal {
    tracing::info!(reason = e.to_string().as_str(), path = %ctx.path, "csrf: refused");
    Refusal::Csrf(e)
}

/// Headers some frameworks read as the request's real method.
const METHOD_OVERRIDES: [http::HeaderName; 3] = [
    http::HeaderName::from_static("x-http-method-override"),
    http::HeaderName::from_static("x-http-method"),
    http::HeaderName::from_static("x-method-override"),
];

/// Whether a request changes state (or claims it does through an override).
pub fn is_unsafe(method: &Method, h: &HeaderMap, query: Option<&str>) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    ) || METHOD_OVERRIDES.iter().any(|n| h.contains_key(n))
        || query.is_some_and(|q| {
            q.split('&').any(|p| {
                p.split('=')
                    .next()
                    .is_some_and(|n| n.eq_ignore_ascii_case("_method"))
            })
        })
}

/// A CSRF token for `token` mode: `kid.nonce.mac`, where the MAC binds the nonce to the
/// session, so a token taken from another session (or planted in a cookie by a sibling
/// domain) fails. The MAC key is derived from the signing access key, which `kid` names: a
/// token minted before a key rotation keeps verifying while its key is in the ring (as the
/// session's tokens do), and fails once that key is dropped.
pub fn mint_token(keys: &DerivedKeys, sid: &str) -> String {
    let key = keys.signing();
    let nonce = crate::util::random_token(16);
    format!("{}.{nonce}.{}", key.kid, mac(&key.key, sid, nonce.as_str()))
}

fn mac(key: &[u8], sid: &str, nonce: &str) -> String {
    crate::util::b64(&crate::util::hmac_sha256(
        key,
        format!("{sid}.{nonce}").as_bytes(),
    ))
}

/// Whether `token` was minted for `sid`, under the key its `kid` names. A `nonce.mac` token
/// from before key rings names no key: it is checked under each key of the ring.
pub fn token_is_for(keys: &DerivedKeys, sid: &str, token: &str) -> bool {
    let same = |key: &[u8], nonce: &str, m: &str| {
        crate::util::ct_eq(mac(key, sid, nonce).as_bytes(), m.as_bytes())
    };
    let mut parts = token.splitn(3, '.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(kid), Some(nonce), Some(m)) => keys.find(kid).is_some_and(|k| same(&k.key, nonce, m)),
        (Some(nonce), Some(m), None) => keys.iter().any(|k| same(&k.key, nonce, m)),
        _ => false,
    }
}

/// `token` mode: the `X-CSRF-Token` header must equal the CSRF cookie and be bound to `sid`.
pub fn token_matches(
    keys: &DerivedKeys,
    sid: &str,
    h: &HeaderMap,
    cookie: Option<&str>,
) -> Result<(), CsrfError> {
    let header = h.get("x-csrf-token").and_then(|v| v.to_str().ok());
    match (header, cookie) {
        (Some(hd), Some(c))
            if crate::util::ct_eq(hd.as_bytes(), c.as_bytes()) && token_is_for(keys, sid, hd) =>
        {
            Ok(())
        }
        (None, _) | (_, None) => Err(CsrfError::MissingToken),
        _ => Err(CsrfError::TokenMismatch),
    }
}

/// `Ok` when the request proves it is same-origin; `Err(reason)` otherwise. A request with no
/// evidence at all (no `Sec-Fetch-Site`, `Origin` or `Referer`) passes only when it carries no
/// ambient credential (`cookie_auth` false): a bearer token or a login form cannot be forged
/// cross-site, a cookie can.
pub fn same_origin(
    cfg: &CsrfConfig,
    public_origin: &str,
    h: &HeaderMap,
    cookie_auth: bool,
) -> Result<(), CsrfError> {
    if cfg.mode == CsrfMode::Off {
        return Ok(());
    }
    let allowed = |o: &str| o == public_origin || cfg.allowed_origins.iter().any(|a| a == o);
    let origin = h
        .get(http::header::ORIGIN)
        .map(|v| v.to_str().unwrap_or("null"));
    if let Some(site) = h.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        match site {
            "same-origin" | "none" => return Ok(()),
            _ => {
                return match origin {
                    Some(o) if allowed(o) && o != public_origin => Ok(()),
                    _ => Err(CsrfError::CrossSite),
                };
            }
        }
    }
    if let Some(o) = origin {
        return if allowed(o) {
            Ok(())
        } else {
            Err(CsrfError::CrossOrigin)
        };
    }
    if let Some(r) = h.get(http::header::REFERER) {
        let r = r.to_str().ok().and_then(|r| url::Url::parse(r).ok());
        return match r {
            Some(u) if allowed(&u.origin().ascii_serialization()) => Ok(()),
            _ => Err(CsrfError::CrossOriginReferer),
        };
    }
    if cookie_auth {
        Err(CsrfError::NoEvidence)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn cfg() -> CsrfConfig {
        CsrfConfig {
            mode: CsrfMode::Origin,
            allowed_origins: vec!["https://app.example.com".into()],
        }
    }

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, HeaderValue::from_static(v));
        }
        m
    }

    const O: &str = "https://gw.example.com";

    #[test]
    fn same_origin_passes() {
        assert!(same_origin(&cfg(), O, &h(&[("sec-fetch-site", "same-origin")]), true).is_ok());
        assert!(same_origin(&cfg(), O, &h(&[("origin", "https://gw.example.com")]), true).is_ok());
        assert!(
            same_origin(
                &cfg(),
                O,
                &h(&[("referer", "https://gw.example.com/a/b?c")]),
                true
            )
            .is_ok()
        );
        assert!(
            same_origin(
                &cfg(),
                O,
                &h(&[("origin", "https://app.example.com")]),
                true
            )
            .is_ok()
        );
        assert!(
            same_origin(&cfg(), O, &h(&[]), false).is_ok(),
            "no ambient credential, nothing to forge"
        );
        assert!(
            same_origin(&cfg(), O, &h(&[]), true).is_err(),
            "a cookie-authenticated request must prove its origin"
        );
    }

    #[test]
    fn cross_origin_is_refused() {
        for pairs in [
            &[("sec-fetch-site", "cross-site")][..],
            &[
                ("sec-fetch-site", "same-site"),
                ("origin", "https://evil.gw.example.com"),
            ],
            &[("origin", "null")],
            &[("origin", "https://gw.example.com.evil.net")],
            &[("origin", "http://gw.example.com")],
            &[("origin", "https://gw.example.com:444")],
            &[("referer", "https://evil.net/https://gw.example.com/")],
            &[("referer", "not a url")],
        ] {
            assert!(
                same_origin(&cfg(), O, &h(pairs), true).is_err(),
                "{pairs:?}"
            );
        }
    }

    fn keys(secrets: &[&str]) -> DerivedKeys {
        let ring = secrets
            .iter()
            .enumerate()
            .map(|(i, s)| crate::config::RingSecret {
                key: format!("k[{i}]"),
                secret: crate::config::Secret::new(s.as_bytes().to_vec()),
            });
        DerivedKeys::from_access(
            &crate::config::SecretRing::new(ring.collect()).unwrap(),
            b"sessiongate csrf",
        )
    }

    #[test]
    fn tokens_are_bound_to_their_session() {
        let k = keys(&["k"]);
        let t = mint_token(&k, "sid-a");
        assert!(token_is_for(&k, "sid-a", &t));
        assert!(!token_is_for(&k, "sid-b", &t));
        assert!(!token_is_for(&keys(&["other"]), "sid-a", &t));
        let mut hm = HeaderMap::new();
        hm.insert("x-csrf-token", HeaderValue::from_str(&t).unwrap());
        assert!(token_matches(&k, "sid-a", &hm, Some(&t)).is_ok());
        assert!(token_matches(&k, "sid-b", &hm, Some(&t)).is_err());
        assert!(token_matches(&k, "sid-a", &hm, Some("x.y")).is_err());
        assert!(token_matches(&k, "sid-a", &HeaderMap::new(), Some(&t)).is_err());
    }

    #[test]
    fn tokens_verify_under_their_key_while_it_is_in_the_ring() {
        let step1 = keys(&["old", "new"]);
        let step2 = keys(&["new", "old"]);
        let step3 = keys(&["new"]);
        let old = mint_token(&step1, "s");
        let new = mint_token(&step2, "s");
        for k in [&step1, &step2] {
            assert!(token_is_for(k, "s", &old) && token_is_for(k, "s", &new));
        }
        assert!(token_is_for(&step3, "s", &new));
        assert!(
            !token_is_for(&step3, "s", &old),
            "a dropped key binds nothing"
        );
        // The kid names the one key tried: the old token's MAC under another kid fails.
        let (_, rest) = old.split_once('.').unwrap();
        let renamed = format!("{}.{rest}", step2.signing().kid);
        assert!(!token_is_for(&step2, "s", &renamed));
        for bad in [
            "",
            ".",
            "..",
            "a.b.c.d",
            &format!("{}..", step2.signing().kid),
        ] {
            assert!(!token_is_for(&step2, "s", bad), "{bad:?}");
        }
    }

    #[test]
    fn tokens_from_before_key_rings_verify_under_any_key_of_the_ring() {
        // `nonce.mac` with the MAC under the one access key of that time.
        let legacy_key = crate::util::hmac_sha256(b"old", b"sessiongate csrf");
        let legacy = format!("N0nce.{}", mac(&legacy_key, "s", "N0nce"));
        assert!(token_is_for(&keys(&["new", "old"]), "s", &legacy));
        assert!(token_is_for(&keys(&["old"]), "s", &legacy));
        assert!(!token_is_for(&keys(&["new"]), "s", &legacy));
        assert!(!token_is_for(&keys(&["old"]), "t", &legacy));
    }

    #[test]
    fn overrides_make_a_request_unsafe() {
        assert!(is_unsafe(&Method::POST, &HeaderMap::new(), None));
        assert!(!is_unsafe(&Method::GET, &HeaderMap::new(), Some("a=1")));
        assert!(is_unsafe(
            &Method::GET,
            &h(&[("x-http-method-override", "DELETE")]),
            None
        ));
        assert!(is_unsafe(
            &Method::GET,
            &HeaderMap::new(),
            Some("a=1&_METHOD=delete")
        ));
    }
}
