//! `return_to`: where a login sends the browser afterwards.
//!
//! Threat: open redirect (CWE-601) — a login link that sends the user to `//evil.example`,
//! `/\evil.example`, `https://evil.example` or an encoded variant after they sign in. Only a
//! same-origin path is accepted, normalised like any request path, never back into
//! `/.auth/`, with credential parameters removed; anything else becomes `/`.

use crate::web::{path as route, query as url_tokens};

const MAX_LEN: usize = 2048;

/// The safe local target for `raw`, or `/`.
pub fn validate(raw: Option<&str>, credential_params: &[String]) -> String {
    raw.and_then(|r| check(r, credential_params))
        .unwrap_or_else(|| "/".to_string())
}

/// Like `validate`, also accepting an absolute URL on exactly `public_origin` (turned into its
/// path): a same-origin link is a same-origin link, however it is written.
pub fn validate_with_origin(
    raw: Option<&str>,
    credential_params: &[String],
    public_origin: &str,
) -> String {
    let local = raw.map(|r| match url::Url::parse(r) {
        Ok(u)
            if u.origin().ascii_serialization() == public_origin
                && u.username().is_empty()
                && u.password().is_none() =>
        {
            // The parsed URL's own path and query (never a slice of the raw text, whose length
            // the parser may have changed), checked like any local target below.
            url_tokens::with_query(u.path(), u.query())
        }
        _ => r.to_string(),
    });
    validate(local.as_deref(), credential_params)
}

fn check(raw: &str, params: &[String]) -> Option<String> {
    if raw.is_empty() || raw.len() > MAX_LEN || !raw.starts_with('/') {
        return None;
    }
    if raw.starts_with("//")
        || raw.contains('\\')
        || raw.contains('#')
        || raw.bytes().any(|b| b.is_ascii_control() || b == b' ')
    {
        return None;
    }
    let (path, query) = match raw.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (raw, None),
    };
    // The decoded form must not hide a second slash, a backslash or a control character.
    let lower = path.to_ascii_lowercase();
    if lower.starts_with("/%2f") || lower.starts_with("/%5c") || lower.starts_with("/%09") {
        return None;
    }
    let normal = route::normalise(path).ok()?;
    if route::is_gateway_path(&normal) || normal.starts_with("//") {
        return None;
    }
    let q = url_tokens::scan(query, params);
    // The query as a browser sends it (the WHATWG query percent-encode set, and every byte
    // that is not ASCII): the target goes into a `Location` header, which takes ASCII only.
    let query = q
        .clean
        .as_deref()
        .map(|q| percent_encoding::utf8_percent_encode(q, QUERY_ENCODE).to_string());
    Some(url_tokens::with_query(
        &route::encode(&normal),
        query.as_deref(),
    ))
}

/// What a browser percent-encodes in the query of an `https:` URL; `%` stays as it is.
const QUERY_ENCODE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'\'');

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> String {
        let params: Vec<String> = crate::config::DEFAULT_CREDENTIAL_PARAMS
            .iter()
            .map(|s| s.to_string())
            .collect();
        validate(Some(s), &params)
    }

    #[test]
    fn local_paths_are_kept() {
        assert_eq!(v("/"), "/");
        assert_eq!(v("/app/page?x=1&y=2"), "/app/page?x=1&y=2");
        assert_eq!(v("/a/../b"), "/b");
        assert_eq!(v("/caf%C3%A9"), "/caf%C3%A9");
    }

    #[test]
    fn hostile_targets_become_root() {
        for bad in [
            "//evil.example",
            "///evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "https://evil.example/",
            "http:/evil.example",
            "javascript:alert(1)",
            "/%2F%2Fevil.example",
            "/%2fevil.example",
            "/%5Cevil.example",
            "/%09/evil.example",
            "/\t/evil.example",
            "/\r\n/evil.example",
            "/%0d%0aSet-Cookie:x=y",
            "/.auth/logout",
            "/.auth/login?return_to=//evil",
            "/x/../.auth/logout",
            "/%2e%2e/.auth/logout",
            "evil.example",
            "",
            "/a#//evil",
        ] {
            assert_eq!(v(bad), "/", "{bad:?}");
        }
        assert_eq!(validate(None, &[]), "/");
        assert_eq!(v(&format!("/{}", "a".repeat(3000))), "/");
    }

    #[test]
    fn absolute_urls_on_the_public_origin_become_paths() {
        let p: Vec<String> = vec![];
        let o = "https://gw.example.com";
        assert_eq!(
            validate_with_origin(Some("https://gw.example.com/a?b=1"), &p, o),
            "/a?b=1"
        );
        assert_eq!(
            validate_with_origin(Some("https://gw.example.com"), &p, o),
            "/"
        );
        // Inputs the URL parser rewrites (a soft hyphen or tab dropped, an IPv4 host in hex)
        // name the same origin for a browser too; they must neither panic nor leave it.
        assert_eq!(
            validate_with_origin(Some("https://gw.example.co\u{ad}m/x"), &p, o),
            "/x"
        );
        assert_eq!(
            validate_with_origin(Some("https://gw.exam\tple.com/x"), &p, o),
            "/x"
        );
        assert_eq!(
            validate_with_origin(Some("https://0x7f.1:8443/x"), &p, "https://127.0.0.1:8443"),
            "/x"
        );
        assert_eq!(
            validate_with_origin(
                Some("https://0x7f.1:8443//evil.net/x"),
                &p,
                "https://127.0.0.1:8443"
            ),
            "/"
        );
        for bad in [
            "https://gw.example.com.evil.net/a",
            "https://gw.example.com@evil.net/a",
            "http://gw.example.com/a",
            "https://gw.example.com:444/a",
            "https://gw.example.com//evil.net/a",
            "https://user@gw.example.com/a",
        ] {
            assert_eq!(validate_with_origin(Some(bad), &p, o), "/", "{bad}");
        }
    }

    #[test]
    fn the_query_is_sent_as_a_browser_sends_it_so_that_location_takes_it() {
        // Found by the `return_to` fuzz target: a query with a character outside ASCII (a C1
        // control, a letter) was kept raw, and `Location` cannot carry it: the login answered
        // a redirect without one.
        for (raw, want) in [
            ("/a?q=caf\u{e9}", "/a?q=caf%C3%A9"),
            ("/a?x=\u{9c}", "/a?x=%C2%9C"),
            ("/a?x=\"<y>'", "/a?x=%22%3Cy%3E%27"),
            ("/a?x=%41%zz&b=`", "/a?x=%41%zz&b=`"),
        ] {
            let out = v(raw);
            assert_eq!(out, want, "{raw:?}");
            assert!(http::HeaderValue::from_str(&out).is_ok(), "{out:?}");
            assert_eq!(v(&out), out, "a fixed point");
        }
    }

    #[test]
    fn credential_parameters_are_dropped() {
        assert_eq!(v("/p?a=1&access_token=x"), "/p?a=1");
    }
}
