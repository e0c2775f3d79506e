//! Path normalisation: one reading of a request path for the policy and the upstream.
//!
//! Threat: a path that means one thing to the policy and another to the app (path confusion:
//! `/public/../admin`, `/public/%2e%2e/admin`, `/public%2f..%2fadmin`, `\` as a separator on
//! some servers). The path is percent-decoded once, dot segments and empty segments are
//! resolved (RFC 3986 §5.2.4), and the *same* normalised path is used for the policy decision
//! and sent upstream (re-encoded). Encoded separators (`%2F`, `%5C`), NUL and other control
//! characters, raw backslashes, bad percent-encoding and invalid UTF-8 are refused: there is no
//! safe guess for them.

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

/// Normalise a request path (no query). Borrowed when it is already normal.
pub fn normalise(raw: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    let mut needs_work = false;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\\' => return Err(PathError::Backslash),
            0..=0x1f | 0x7f => return Err(PathError::Control),
            b'%' => needs_work = true,
            b'/' if matches!(bytes.get(i + 1), Some(b'/') | Some(b'.')) => needs_work = true,
            _ => {}
        }
    }
    if !needs_work {
        return Ok(Cow::Borrowed(raw));
    }
    // Decode once.
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
                _ => decoded.push(d),
            }
            i += 3;
        } else {
            decoded.push(b);
            i += 1;
        }
    }
    let decoded = String::from_utf8(decoded).map_err(|_| PathError::NotUtf8)?;
    // Resolve dot and empty segments.
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
            // `..;x` is an ordinary name here but `..` to servers that strip path
            // parameters (Tomcat, Jetty, Spring): no safe reading, so refused.
            s if matches!(s.split(';').next(), Some(".") | Some("..")) => {
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
    Ok(Cow::Owned(path))
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

/// The normalised path as it goes on the wire.
pub fn encode(path: &str) -> Cow<'_, str> {
    utf8_percent_encode(path, PATH_ENCODE).into()
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
    fn double_encoding_stays_literal_for_policy_and_upstream() {
        // %252F decodes once to the literal text "%2F", which is re-encoded on the way out.
        let p = normalise("/a%252Fb").unwrap();
        assert_eq!(p, "/a%2Fb");
        assert_eq!(encode(&p), "/a%252Fb");
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
