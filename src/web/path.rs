//! Path normalisation: one reading of a request path for the policy and the upstream.
//!
//! Threat: a path that means one thing to the policy and another to the app (path confusion:
//! `/public/../admin`, `/public/%2e%2e/admin`, `/public%2f..%2fadmin`, `\` as a separator on
//! some servers). The path is percent-decoded once, dot segments and empty segments are
//! resolved (RFC 3986 §5.2.4), and the *same* normalised path is used for the policy decision
//! and sent upstream (re-encoded). Encoded separators (`%2F`, `%5C`), NUL and other control
//! characters, raw backslashes, bad percent-encoding and invalid UTF-8 are refused: there is no
//! safe guess for them.
//!
//! A decoded character never gains a meaning it did not have: `%25` (`%`) and `%3B` (`;`, the
//! start of a path parameter to Tomcat, Jetty and Spring) stay escaped in the normalised path
//! and on the wire; every other escape is decoded, and what the path syntax would read
//! (`?`, `#`, space, ...) is escaped again by [`encode`]. An escape that survives one decoding
//! (`%252F`, `%252E`, `%2500`, `%25%32%46`, ...) is refused by default, as Spring's
//! `StrictHttpFirewall` does: an app or framework that decodes twice would read a different
//! path than the policy judged (`paths.allow_double_encoding` forwards it literally instead).
//! A `#` is refused: the request target has no fragment (RFC 9112 §3.2).

use std::borrow::Cow;

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path is not absolute")]
    NotAbsolute,
    #[error("encoded path separator")]
    EncodedSeparator,
    #[error("control character in path")]
    Control,
    #[error("backslash in path")]
    Backslash,
    #[error("bad percent-encoding in path")]
    BadEncoding,
    #[error("path is not UTF-8")]
    NotUtf8,
    #[error("dot segment with path parameters")]
    DotSegmentParameter,
    #[error("double-encoded character in path")]
    DoubleEncoding,
    #[error("fragment in path")]
    Fragment,
    #[error("path parameter changes the route")]
    ParameterChangesRoute,
}

impl PathError {
    pub fn reason(self) -> &'static str {
        match self {
            PathError::NotAbsolute => "path must start with /",
            PathError::EncodedSeparator => "encoded / or \\ in path",
            PathError::Control => "control character in path",
            PathError::Backslash => "backslash in path",
            PathError::BadEncoding => "bad percent-encoding in path",
            PathError::NotUtf8 => "path is not UTF-8",
            PathError::DotSegmentParameter => "dot segment with path parameters (..;)",
            PathError::DoubleEncoding => "double-encoded character in path (%25 before an escape)",
            PathError::Fragment => "fragment (#) in request target",
            PathError::ParameterChangesRoute => {
                "path parameter (;) changes which route the path belongs to"
            }
        }
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Normalise a request path (no query), refusing double encoding. Borrowed when it is already
/// normal.
pub fn normalise(raw: &str) -> Result<Cow<'_, str>, PathError> {
    normalise_with(raw, false)
}

/// Normalise a request path (no query); `allow_double_encoding` keeps an escape that survives
/// one decoding as literal text instead of refusing it.
pub fn normalise_with(raw: &str, allow_double_encoding: bool) -> Result<Cow<'_, str>, PathError> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    let mut needs_work = false;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\\' => return Err(PathError::Backslash),
            b'#' => return Err(PathError::Fragment),
            0..=0x1f | 0x7f => return Err(PathError::Control),
            b'%' => needs_work = true,
            b'/' if matches!(bytes.get(i + 1), Some(b'/') | Some(b'.')) => needs_work = true,
            _ => {}
        }
    }
    if !needs_work {
        return Ok(Cow::Borrowed(raw));
    }
    let decoded = decode_once(bytes)?;
    if !allow_double_encoding && has_double_escape(decoded.as_bytes()) {
        return Err(PathError::DoubleEncoding);
    }
    Ok(Cow::Owned(resolve_segments(&decoded)?))
}

/// Decode every escape once, except `%25` and `%3B`, which stay escaped (upper-case): decoded,
/// they would mean something else to the app.
fn decode_once(bytes: &[u8]) -> Result<String, PathError> {
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|b| hex(*b)),
                bytes.get(i + 2).and_then(|b| hex(*b)),
            ) else {
                return Err(PathError::BadEncoding);
            };
            let d = (h << 4) | l;
            match d {
                b'/' | b'\\' => return Err(PathError::EncodedSeparator),
                0..=0x1f | 0x7f => return Err(PathError::Control),
                b'%' => decoded.extend_from_slice(b"%25"),
                b';' => decoded.extend_from_slice(b"%3B"),
                _ => decoded.push(d),
            }
            i += 3;
        } else {
            decoded.push(b);
            i += 1;
        }
    }
    String::from_utf8(decoded).map_err(|_| PathError::NotUtf8)
}

/// Whether a once-decoded path still holds an escape: a kept `%25` followed by two hex digits
/// (`%252F`, and `%25%32%46` once its digits are decoded).
fn has_double_escape(decoded: &[u8]) -> bool {
    decoded
        .windows(5)
        .any(|w| w.starts_with(b"%25") && hex(w[3]).is_some() && hex(w[4]).is_some())
}

/// Resolve dot and empty segments (RFC 3986 §5.2.4, and `//` as `/`).
fn resolve_segments(decoded: &str) -> Result<String, PathError> {
    let mut out: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for seg in decoded.split('/').skip(1) {
        trailing_slash = false;
        match seg {
            "" | "." => trailing_slash = true,
            ".." => {
                out.pop();
                trailing_slash = true;
            }
            // `..;x` (or `..%3Bx`) is an ordinary name here but `..` to servers that strip
            // path parameters (Tomcat, Jetty, Spring): no safe reading, so refused.
            s if is_dot_segment(s.split(';').next().unwrap_or(s)) => {
                return Err(PathError::DotSegmentParameter);
            }
            s => out.push(s),
        }
    }
    let mut path = String::with_capacity(decoded.len());
    for s in &out {
        path.push('/');
        path.push_str(s);
    }
    if out.is_empty() || trailing_slash {
        path.push('/');
    }
    Ok(path)
}

fn is_dot_segment(s: &str) -> bool {
    matches!(s.split("%3B").next(), Some(".") | Some(".."))
}

/// A normalised path as a server that strips path parameters reads it (Tomcat, Jetty,
/// Spring's `UrlPathHelper`): every raw `;` to the end of its segment removed, and the
/// segments this empties dropped. `None` when the path has no raw `;` (an escaped `%3B` is a
/// literal character to those servers too).
///
/// Threat: `/public/private;x/y` is under `/public/` to a router that reads `private;x` as a
/// name, and under `/public/private/` to the app that strips `;x`.
pub fn without_parameters(path: &str) -> Option<String> {
    if !path.contains(';') {
        return None;
    }
    let mut out = String::with_capacity(path.len());
    let mut segments = path.split('/').skip(1).peekable();
    while let Some(seg) = segments.next() {
        let name = seg.split(';').next().unwrap_or(seg);
        if !name.is_empty() {
            out.push('/');
            out.push_str(name);
        } else if segments.peek().is_none() {
            out.push('/');
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    Some(out)
}

/// Characters that must be percent-encoded in a path sent upstream.
const PATH_ENCODE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'%');

/// The normalised path as it goes on the wire: what the path syntax would read is escaped; an
/// escape the normalised path kept (`%25`, `%3B`) passes as it is, a lone `%` becomes `%25`.
pub fn encode(path: &str) -> Cow<'_, str> {
    if !path.contains('%') {
        return utf8_percent_encode(path, PATH_ENCODE).into();
    }
    let mut out = String::with_capacity(path.len() + 8);
    let mut rest = path;
    while let Some(i) = rest.find('%') {
        out.extend(utf8_percent_encode(&rest[..i], PATH_ENCODE));
        let after = &rest.as_bytes()[i + 1..];
        let escape = after.len() >= 2 && hex(after[0]).is_some() && hex(after[1]).is_some();
        out.push_str(if escape { "%" } else { "%25" });
        rest = &rest[i + 1..];
    }
    out.extend(utf8_percent_encode(rest, PATH_ENCODE));
    Cow::Owned(out)
}

/// Whether `path` falls under the gateway's own endpoints.
pub fn is_gateway_path(path: &str) -> bool {
    path == "/.auth" || path.starts_with("/.auth/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_paths_are_borrowed() {
        assert!(matches!(
            normalise("/a/b.txt").unwrap(),
            Cow::Borrowed("/a/b.txt")
        ));
        assert_eq!(normalise("/").unwrap(), "/");
        assert_eq!(normalise("/a/.well-known/x").unwrap(), "/a/.well-known/x");
    }

    #[test]
    fn dot_segments_and_empty_segments_resolve() {
        for (raw, want) in [
            ("/public/../admin", "/admin"),
            ("/public/./x", "/public/x"),
            ("/a//b", "/a/b"),
            ("/a/b/..", "/a/"),
            ("/..", "/"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/a/.", "/a/"),
            ("//evil.example/x", "/evil.example/x"),
            ("/public/%2e%2e/admin", "/admin"),
            ("/public/%2E%2e/admin", "/admin"),
            ("/public/.%2e/admin", "/admin"),
            ("/a%20b", "/a b"),
            ("/caf%C3%A9", "/café"),
        ] {
            assert_eq!(normalise(raw).unwrap(), want, "{raw}");
        }
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        for (raw, err) in [
            ("/public/..%2Fadmin", PathError::EncodedSeparator),
            ("/public/%2f..", PathError::EncodedSeparator),
            ("/a%5Cb", PathError::EncodedSeparator),
            ("/a\\b", PathError::Backslash),
            ("/a%00", PathError::Control),
            ("/a%0d%0aX-Auth-User:x", PathError::Control),
            ("/a%zz", PathError::BadEncoding),
            ("/a%2", PathError::BadEncoding),
            ("/%ff", PathError::NotUtf8),
            ("/static/..;/admin", PathError::DotSegmentParameter),
            ("/static/%2e%2e%3b/admin", PathError::DotSegmentParameter),
            (
                "/static/..;jsessionid=x/admin",
                PathError::DotSegmentParameter,
            ),
            ("/a/.;x/b", PathError::DotSegmentParameter),
            ("*", PathError::NotAbsolute),
            ("", PathError::NotAbsolute),
        ] {
            assert_eq!(normalise(raw).unwrap_err(), err, "{raw}");
        }
    }

    #[test]
    fn double_encoding_is_refused_unless_allowed_and_then_stays_literal() {
        // Replaces `double_encoding_stays_literal_for_policy_and_upstream`: by default an
        // escape that survives one decoding is refused; the escape hatch keeps it literal.
        for raw in [
            "/a%252Fb",
            "/a%252fb",
            "/a%255Cb",
            "/a/%252E%252E/b",
            "/a/%252e%252e/b",
            "/a%253Bb",
            "/a%2500",
            "/a%2525",
            "/a%25252F",
            "/a%25%32%46",
            "/a%2541",
        ] {
            assert_eq!(
                normalise(raw).unwrap_err(),
                PathError::DoubleEncoding,
                "{raw}"
            );
        }
        let p = normalise_with("/a%252Fb", true).unwrap();
        assert_eq!(p, "/a%252Fb");
        assert_eq!(encode(&p), "/a%252Fb");
        let p = normalise_with("/a/%252e%252e/b", true).unwrap();
        assert_eq!(p, "/a/%252e%252e/b");
        assert_eq!(encode(&p), "/a/%252e%252e/b");
    }

    #[test]
    fn a_literal_percent_that_is_no_escape_passes() {
        for (raw, want) in [
            ("/50%25off", "/50%25off"),
            ("/a%25", "/a%25"),
            ("/a%25/b", "/a%25/b"),
            ("/a%25zz", "/a%25zz"),
            ("/a%25%3B", "/a%25%3B"),
        ] {
            let p = normalise(raw).unwrap();
            assert_eq!(p, want, "{raw}");
            assert_eq!(encode(&p), want, "{raw}");
        }
    }

    #[test]
    fn decoded_characters_gain_no_meaning() {
        // `;` stays escaped (a path parameter to Java servers); `?` and `#` are escaped again.
        for (raw, policy, wire) in [
            (
                "/a%3Bjsessionid=x",
                "/a%3Bjsessionid=x",
                "/a%3Bjsessionid=x",
            ),
            ("/a%3bb", "/a%3Bb", "/a%3Bb"),
            ("/a;b=1", "/a;b=1", "/a;b=1"),
            ("/a%3Fb", "/a?b", "/a%3Fb"),
            ("/a%23b", "/a#b", "/a%23b"),
            ("/a%20b", "/a b", "/a%20b"),
        ] {
            let p = normalise(raw).unwrap();
            assert_eq!(p, policy, "{raw}");
            assert_eq!(encode(&p), wire, "{raw}");
        }
        assert_eq!(
            normalise("/static/..%3B/admin").unwrap_err(),
            PathError::DotSegmentParameter
        );
        assert_eq!(
            normalise("/a/.%3bx/b").unwrap_err(),
            PathError::DotSegmentParameter
        );
    }

    #[test]
    fn path_parameters_are_removed_as_tomcat_reads_them() {
        assert_eq!(without_parameters("/a/b"), None);
        assert_eq!(without_parameters("/a/b%3Bc").as_deref(), None);
        let cases = [
            ("/public/private;x/y", "/public/private/y"),
            ("/admin;jsessionid=1", "/admin"),
            ("/;x/admin", "/admin"),
            ("/a;x/", "/a/"),
            ("/a/;x", "/a/"),
            ("/;", "/"),
            ("/a;b;c/d;e", "/a/d"),
            ("/a;x%3By/b", "/a/b"),
        ];
        for (path, want) in cases {
            assert_eq!(without_parameters(path).as_deref(), Some(want), "{path}");
        }
    }

    #[test]
    fn a_fragment_is_refused() {
        assert_eq!(normalise("/a#b").unwrap_err(), PathError::Fragment);
        assert_eq!(normalise("/a/#").unwrap_err(), PathError::Fragment);
    }

    #[test]
    fn encoding_round_trips_special_characters() {
        assert_eq!(encode("/a b/c?d#e%"), "/a%20b/c%3Fd%23e%25");
        assert_eq!(encode("/café"), "/caf%C3%A9");
        assert_eq!(encode("/plain/path-1_2.~"), "/plain/path-1_2.~");
    }

    #[test]
    fn gateway_paths() {
        assert!(is_gateway_path("/.auth/login"));
        assert!(is_gateway_path("/.auth"));
        assert!(!is_gateway_path("/.authx"));
    }
}
