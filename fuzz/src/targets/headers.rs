//! Request header readers (`web::headers`): `Accept`, `Content-Type`, and which header names
//! no client may set. The input is lines: an `Accept` value, a `Content-Type` value, a header
//! name.
//!
//! Oracle, against readers of RFC 9110 written here:
//! - `wants_html` (`wants_json`) holds exactly when the `Accept` list (§12.5.1) names
//!   `text/html` (`application/json`) — type and subtype in any case, parameters and quoted
//!   strings skipped, a weight of `q=0` meaning "not acceptable";
//! - `content_type_is` holds exactly when `Content-Type` is that media type (§8.3.1), any
//!   case, with or without parameters;
//! - a header name is `Other` exactly when no server that folds case and separators (CGI's
//!   `HTTP_X_AUTH_USER`) reads it as a name or family the gateway owns; one that such a server
//!   reads so is removed when spelled with letters, digits and `-` only, else refused.

use http::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use sessiongate::fuzzing::headers::{
    HeaderClass, IDENTITY_HEADERS, SPOOFABLE_NAMES, SPOOFABLE_PREFIXES, SpoofableHeaders,
    content_type_is, wants_html, wants_json,
};

use crate::support::fields;

pub fn run(data: &[u8]) {
    let f = fields(data, b'\n', 3);
    let line = |i: usize| f.get(i).copied().unwrap_or(b"");
    let mut h = HeaderMap::new();
    let accept = HeaderValue::from_bytes(line(0)).ok();
    let ctype = HeaderValue::from_bytes(line(1)).ok();
    if let Some(v) = &accept {
        h.insert(ACCEPT, v.clone());
    }
    if let Some(v) = &ctype {
        h.insert(CONTENT_TYPE, v.clone());
    }
    let accept_text = accept.as_ref().and_then(|v| v.to_str().ok());
    let ctype_text = ctype.as_ref().and_then(|v| v.to_str().ok());
    let names = |t, s| accept_text.is_some_and(|a| accept_names(a, t, s));
    assert_eq!(
        wants_html(&h),
        names("text", "html"),
        "Accept: {accept_text:?}"
    );
    assert_eq!(
        wants_json(&h),
        names("application", "json"),
        "Accept: {accept_text:?}"
    );
    for (t, s) in [
        ("application", "json"),
        ("application", "x-www-form-urlencoded"),
    ] {
        let want = ctype_text.is_some_and(|c| media_type_is(c, t, s));
        assert_eq!(
            content_type_is(&h, &format!("{t}/{s}")),
            want,
            "Content-Type: {ctype_text:?} as {t}/{s}"
        );
    }
    if let Ok(name) = HeaderName::from_bytes(line(2)) {
        classify(name.as_str());
    }
}

fn classify(name: &str) {
    let s = SpoofableHeaders::new(IDENTITY_HEADERS.iter().copied(), &[]);
    let cgi = |n: &str| -> String {
        n.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    char::from(b.to_ascii_uppercase())
                } else {
                    '_'
                }
            })
            .collect()
    };
    let c = cgi(name);
    let owned = SPOOFABLE_NAMES
        .iter()
        .chain(IDENTITY_HEADERS)
        .any(|n| cgi(n) == c)
        || SPOOFABLE_PREFIXES.iter().any(|p| c.starts_with(&cgi(p)));
    let class = s.classify(name);
    if !owned {
        assert_eq!(class, HeaderClass::Other, "{name}");
    } else if name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        assert!(
            matches!(class, HeaderClass::Spoofable | HeaderClass::ForwardedFor),
            "{name}: {class:?}"
        );
    } else {
        assert_eq!(class, HeaderClass::LookAlike, "{name}");
    }
}

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_tchar)
}

/// Split at `sep` outside quoted strings (`"..."`, with `\` escapes).
fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            out.push(&s[start..i]);
            start = i + 1;
        }
    }
    out.push(&s[start..]);
    out
}

fn ows(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

/// `type "/" subtype` of a media range or media type, when it is one.
fn type_subtype(s: &str) -> Option<(&str, &str)> {
    let (t, st) = ows(s).split_once('/')?;
    (is_token(t) && is_token(st)).then_some((t, st))
}

/// RFC 9110 §12.4.2: `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`.
fn qvalue(s: &str) -> Option<bool> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match int {
        "0" => Some(frac.bytes().any(|b| b != b'0')),
        "1" if frac.bytes().all(|b| b == b'0') => Some(true),
        _ => None,
    }
}

fn accept_names(value: &str, want_type: &str, want_sub: &str) -> bool {
    split_outside_quotes(value, ',').into_iter().any(|element| {
        let mut parts = split_outside_quotes(element, ';').into_iter();
        let Some((t, st)) = parts.next().and_then(type_subtype) else {
            return false;
        };
        if !t.eq_ignore_ascii_case(want_type) || !st.eq_ignore_ascii_case(want_sub) {
            return false;
        }
        for p in parts {
            if let Some((name, v)) = ows(p).split_once('=') {
                if name.eq_ignore_ascii_case("q") {
                    return qvalue(v) == Some(true);
                }
            }
        }
        true
    })
}

fn media_type_is(value: &str, want_type: &str, want_sub: &str) -> bool {
    let first = split_outside_quotes(value, ';')
        .into_iter()
        .next()
        .unwrap_or("");
    type_subtype(first).is_some_and(|(t, st)| {
        t.eq_ignore_ascii_case(want_type) && st.eq_ignore_ascii_case(want_sub)
    })
}
