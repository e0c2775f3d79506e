//! Path normalisation and encoding (`web::path`): the input is a request path.
//!
//! Oracle, with `paths.allow_double_encoding` off and on:
//! - a path with an encoded separator (`%2F`, `%5C`), a raw `\`, a `#`, a control character
//!   (raw or encoded) is refused; so is, by default, an escape that survives one decoding;
//! - a normalised path starts with `/` and holds no empty (`//`), `.` or `..` segment, no
//!   control character and no `\`; its segments are the raw path's segments, each decoded once
//!   (`%25` and `%3B` kept escaped), with dot and empty segments resolved as RFC 3986 §5.2.4
//!   says (a reference resolution, segment by segment, written here);
//! - it is stable: what goes upstream (`encode`) normalises to the same path again, so an app
//!   that normalises reads what the policy judged;
//! - `encode`'s output is an origin-form path the `http` crate takes whole (nothing read as a
//!   query or fragment, nothing refused);
//! - read with its path parameters removed (`without_parameters`, as Tomcat, Jetty and Spring
//!   read it) a normalised path still has no `;`, no `//`, `.` or `..` segment;
//! - a result borrowed from the input is the input.

use std::borrow::Cow;

use sessiongate::web::path::{PathError, encode, normalise_with, without_parameters};

pub fn run(data: &[u8]) {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    for allow in [false, true] {
        check(raw, allow);
    }
}

fn check(raw: &str, allow: bool) {
    let result = normalise_with(raw, allow);
    let lower = raw.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") || raw.contains(['\\', '#']) {
        assert!(result.is_err(), "{raw:?} (allow {allow}): not refused");
    }
    if raw.chars().any(|c| c.is_ascii_control()) || has_encoded_control(raw) {
        assert!(
            result.is_err(),
            "{raw:?}: a control character is not refused"
        );
    }
    let p = match result {
        Err(PathError::DoubleEncoding) => {
            assert!(!allow, "{raw:?}: double encoding refused though allowed");
            return;
        }
        Err(_) => return,
        Ok(p) => p,
    };
    if let Cow::Borrowed(b) = &p {
        assert_eq!(*b, raw, "borrowed but changed");
    }
    let p = p.into_owned();
    assert!(p.starts_with('/'), "{raw:?} -> {p:?}: not absolute");
    assert!(!p.contains("//"), "{raw:?} -> {p:?}: empty segment");
    assert!(
        !p.contains('\\') && !p.chars().any(|c| c.is_ascii_control()),
        "{raw:?} -> {p:?}"
    );
    for seg in p.split('/') {
        assert!(seg != "." && seg != "..", "{raw:?} -> {p:?}: dot segment");
    }
    let want = reference(raw);
    assert_eq!(
        p, want,
        "{raw:?}: normalised unlike the reference resolution"
    );
    let wire = encode(&p);
    match normalise_with(&wire, allow) {
        Ok(again) => assert_eq!(again, p, "{raw:?} -> {p:?} -> {wire:?}: not stable"),
        Err(e) => panic!("{raw:?} -> {p:?} -> {wire:?}: the upstream's path is refused: {e:?}"),
    }
    match http::uri::PathAndQuery::try_from(wire.as_ref()) {
        Ok(pq) => {
            assert_eq!(
                pq.path(),
                wire,
                "{wire:?}: the http crate reads another path"
            );
            assert_eq!(
                pq.query(),
                None,
                "{wire:?}: part of the path read as a query"
            );
        }
        Err(e) => panic!("{raw:?} -> {wire:?}: not a request target: {e}"),
    }
    if let Some(t) = without_parameters(&p) {
        assert!(
            t.starts_with('/') && !t.contains(';') && !t.contains("//"),
            "{p:?} -> {t:?}"
        );
        for seg in t.split('/') {
            assert!(seg != "." && seg != "..", "{p:?} -> {t:?}: dot segment");
        }
    }
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Whether an escape encodes a control character (`%00`-`%1F`, `%7F`).
fn has_encoded_control(raw: &str) -> bool {
    raw.as_bytes().windows(3).any(|w| {
        w[0] == b'%'
            && matches!((hex(w[1]), hex(w[2])), (Some(h), Some(l)) if (h << 4 | l) < 0x20 || (h << 4 | l) == 0x7f)
    })
}

/// One raw segment decoded once, `%` and `;` kept escaped (upper-case).
fn decode_segment(seg: &str) -> String {
    let b = seg.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                match h << 4 | l {
                    b'%' => out.extend_from_slice(b"%25"),
                    b';' => out.extend_from_slice(b"%3B"),
                    d => out.push(d),
                }
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// RFC 3986 §5.2.4 over the raw segments, each decoded once, empty segments dropped.
fn reference(raw: &str) -> String {
    let mut stack: Vec<String> = Vec::new();
    let mut dir = false;
    for seg in raw.split('/').skip(1).map(decode_segment) {
        dir = matches!(seg.as_str(), "" | "." | "..");
        match seg.as_str() {
            "" | "." => {}
            ".." => {
                stack.pop();
            }
            _ => stack.push(seg),
        }
    }
    let mut out: String = stack.iter().map(|s| format!("/{s}")).collect();
    if stack.is_empty() || dir {
        out.push('/');
    }
    out
}
