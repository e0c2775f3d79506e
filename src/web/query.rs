//! Query strings: finding and removing credential parameters (the policy is the url-tokens
//! stage's; the plain-HTTP redirect and `return_to` use the same scan).
//!
//! Credentials in URLs.
//!
//! Threat: tokens in query strings end up in browser history, `Referer` headers, proxy and
//! server logs (OWASP ASVS V3.1.1; RFC 6750 §2.3 discourages them). The gateway never accepts a
//! credential from a query parameter, never forwards one upstream and never logs one; the
//! configured action decides whether the client is redirected to the clean URL, the request is
//! forwarded without them, or refused.

use std::borrow::Cow;

/// The query split into what may pass and whether something had to be removed.
#[derive(Debug, PartialEq, Eq)]
pub struct QueryScan<'a> {
    pub found: bool,
    /// The query without credential parameters (`None` when nothing is left).
    pub clean: Option<Cow<'a, str>>,
}

fn param_name(pair: &str) -> Cow<'_, str> {
    let name = pair.split_once('=').map_or(pair, |(n, _)| n);
    let decoded: Cow<'_, str> = if name.contains(['%', '+']) {
        let plus = name.replace('+', " ");
        Cow::Owned(
            percent_encoding::percent_decode_str(&plus)
                .decode_utf8_lossy()
                .into_owned(),
        )
    } else {
        Cow::Borrowed(name)
    };
    Cow::Owned(decoded.trim().to_ascii_lowercase())
}

/// Split `query` against the lower-case credential parameter names.
pub fn scan<'a>(query: Option<&'a str>, params: &[String]) -> QueryScan<'a> {
    let Some(q) = query.filter(|q| !q.is_empty()) else {
        return QueryScan {
            found: false,
            clean: None,
        };
    };
    let is_cred = |pair: &str| {
        let n = param_name(pair);
        params.iter().any(|p| *p == n)
    };
    if !q.split('&').any(is_cred) {
        return QueryScan {
            found: false,
            clean: Some(Cow::Borrowed(q)),
        };
    }
    let kept: Vec<&str> = q
        .split('&')
        .filter(|p| !p.is_empty() && !is_cred(p))
        .collect();
    QueryScan {
        found: true,
        clean: (!kept.is_empty()).then(|| Cow::Owned(kept.join("&"))),
    }
}

/// Build `path?query` (or just `path`).
pub fn with_query(path: &str, query: Option<&str>) -> String {
    match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Vec<String> {
        crate::config::DEFAULT_CREDENTIAL_PARAMS
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn credential_params_are_found_in_any_case_and_encoding() {
        for q in [
            "access_token=x",
            "a=1&ACCESS_TOKEN=x",
            "a=1&access%5Ftoken=x",
            "Sid",
            "jwt=&b=2",
            "refresh_token=a=b",
        ] {
            assert!(scan(Some(q), &params()).found, "{q}");
        }
    }

    #[test]
    fn clean_query_keeps_everything_else_in_order() {
        let s = scan(Some("a=1&token=x&b=2&id_token=y"), &params());
        assert!(s.found);
        assert_eq!(s.clean.as_deref(), Some("a=1&b=2"));
        let s = scan(Some("token=x"), &params());
        assert_eq!(s.clean, None);
        let s = scan(Some("tokenizer=1&sessions=2"), &params());
        assert!(!s.found);
        assert_eq!(s.clean.as_deref(), Some("tokenizer=1&sessions=2"));
    }
}
