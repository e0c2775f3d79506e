//! Credentials in URLs: the policy (`url_tokens.action`) over the scan in `web::query`.
//!
//! Threat: tokens in query strings end up in browser history, `Referer` headers, proxy and
//! server logs (OWASP ASVS V3.1.1; RFC 6750 §2.3). The gateway never accepts a credential from
//! a query parameter, never forwards one upstream and never logs one: `redirect` answers `303`
//! to the clean URL (GET/HEAD), `strip` forwards without them, `reject` (and `redirect` of an
//! unsafe method) answers `400`.

use http::{Method, Request};

use crate::config::UrlTokenAction;
use crate::refusal::Refusal;
use crate::runtime::Runtime;
use crate::web::{path, query};

/// The query to keep, or the refusal.
pub fn check<B>(
    rt: &Runtime,
    req: &Request<B>,
    normal_path: &str,
) -> Result<Option<String>, Refusal> {
    let q = query::scan(req.uri().query(), &rt.cfg.url_tokens.params);
    if q.found {
        match rt.cfg.url_tokens.action {
            UrlTokenAction::Redirect if matches!(*req.method(), Method::GET | Method::HEAD) => {
                let to = query::with_query(&path::encode(normal_path), q.clean.as_deref());
                return Err(Refusal::CleanUrl(to));
            }
            UrlTokenAction::Redirect | UrlTokenAction::Reject => {
                return Err(Refusal::UrlCredentials);
            }
            UrlTokenAction::Strip => {}
        }
    }
    Ok(q.clean.map(|c| c.into_owned()))
}
