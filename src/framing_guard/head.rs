//! One request head, read by hyper's own rules: where it ends (`httparse`, the parser hyper
//! uses, with hyper's default configuration and header limit), which body framing hyper takes
//! from it (`hyper::proto::h1::role::Server::parse` in hyper 1.12), and what about it is
//! ambiguous even though hyper would serve it.

/// hyper's `DEFAULT_MAX_HEADERS` (the gateway sets no `max_headers`): a head with more header
/// lines is `431` from hyper.
const MAX_HEADERS: usize = 100;

/// How the body after a head is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Body {
    None,
    Fixed(u64),
    Chunked,
}

/// What hyper makes of the bytes collected so far for a head.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Head {
    /// Not complete yet.
    Partial,
    /// hyper refuses it itself (a `4xx` and the connection closed).
    Refused,
    /// hyper would serve it: its length in bytes (leading empty lines included), its body's
    /// framing, and why it is ambiguous, if it is.
    Served {
        len: usize,
        body: Body,
        ambiguity: Option<&'static str>,
    },
}

pub(super) const CL_TE: &str = "both Content-Length and Transfer-Encoding";
pub(super) const REPEATED_CL: &str = "repeated Content-Length";
pub(super) const FRAGMENT: &str = "fragment (#) in request target";

/// Read `buf`, which starts where hyper starts reading the next head.
pub(super) fn parse(buf: &[u8]) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Head::Partial,
        Err(_) => return Head::Refused,
    };
    let http11 = req.version == Some(1);
    // hyper's rules, in its order: each `Transfer-Encoding` line decides by its last coding
    // and drops any `Content-Length` (before or after it); `Content-Length` values must be
    // plain digits and, before any `Transfer-Encoding`, agree.
    let mut te = false;
    let mut te_chunked = false;
    let mut cl_lines = 0usize;
    let mut cl: Option<u64> = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if !http11 {
                return Head::Refused;
            }
            te = true;
            te_chunked = last_coding_is_chunked(h.value);
        } else if h.name.eq_ignore_ascii_case("content-length") {
            cl_lines += 1;
            if te {
                continue;
            }
            match digits(h.value) {
                Some(n) if cl.is_none_or(|c| c == n) => cl = Some(n),
                _ => return Head::Refused,
            }
        }
    }
    if te && !te_chunked {
        return Head::Refused;
    }
    let ambiguity = if req.path.is_some_and(|p| p.contains('#')) {
        Some(FRAGMENT)
    } else if te && cl_lines > 0 {
        Some(CL_TE)
    } else if cl_lines > 1 {
        // hyper keeps one of two equal values and serves the request; a proxy in front may
        // have refused or read it otherwise (RFC 9112 §6.3 lets a server refuse it).
        Some(REPEATED_CL)
    } else {
        None
    };
    let body = match (te, cl) {
        (true, _) => Body::Chunked,
        (false, Some(n)) if n > 0 => Body::Fixed(n),
        _ => Body::None,
    };
    Head::Served {
        len,
        body,
        ambiguity,
    }
}

/// Whether `buf` holds the end of a head that ends in it: a line feed followed by an empty
/// line (`\n\n` or `\n\r\n`). httparse needs one to finish a head; hyper looks for the same
/// before it parses again (`is_complete_fast`).
pub(super) fn may_end(buf: &[u8]) -> bool {
    memchr::memchr_iter(b'\n', buf).any(|i| match buf.get(i + 1) {
        Some(b'\n') => true,
        Some(b'\r') => buf.get(i + 2) == Some(&b'\n'),
        _ => false,
    })
}

/// hyper's `content_length_parse`: ASCII digits only (no sign, no list, no inner space; the
/// parser has already trimmed the value), no overflow.
fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, b| {
        let d = b.is_ascii_digit().then(|| u64::from(b - b'0'))?;
        n.checked_mul(10)?.checked_add(d)
    })
}

/// hyper's `is_chunked_`: the value is visible ASCII (`HeaderValue::to_str`) and its last
/// comma-separated coding is `chunked`, in any case.
fn last_coding_is_chunked(value: &[u8]) -> bool {
    let visible = value
        .iter()
        .all(|b| *b == b'\t' || (0x20..0x7f).contains(b));
    let Ok(text) = std::str::from_utf8(value) else {
        return false;
    };
    visible
        && text
            .rsplit(',')
            .next()
            .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(head: &[u8]) -> (Body, Option<&'static str>) {
        match parse(head) {
            Head::Served {
                len,
                body,
                ambiguity,
            } => {
                assert_eq!(len, head.len(), "{:?}", String::from_utf8_lossy(head));
                (body, ambiguity)
            }
            other => panic!("{other:?} for {:?}", String::from_utf8_lossy(head)),
        }
    }

    #[test]
    fn heads_end_as_httparse_ends_them() {
        assert_eq!(
            served(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            (Body::None, None)
        );
        assert_eq!(served(b"GET / HTTP/1.1\nHost: x\n\n"), (Body::None, None));
        assert_eq!(
            served(b"GET / HTTP/1.1\r\nHost: x\n\r\n"),
            (Body::None, None)
        );
        assert_eq!(
            served(b"\r\n\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            (Body::None, None)
        );
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: x\r\n"), Head::Partial);
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: x\r\r\n\r\n"), Head::Refused);
        assert_eq!(parse(b"\rGET / HTTP/1.1\r\n\r\n"), Head::Refused);
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n"),
            Head::Refused
        );
        assert_eq!(parse(b"GET / HTTP/1.1\r\nX : a\r\n\r\n"), Head::Refused);
    }

    #[test]
    fn content_length_follows_hyper() {
        let cl =
            |v: &str| parse(format!("POST / HTTP/1.1\r\nContent-Length:{v}\r\n\r\n").as_bytes());
        assert!(matches!(
            cl(" 5"),
            Head::Served {
                body: Body::Fixed(5),
                ambiguity: None,
                ..
            }
        ));
        assert!(matches!(
            cl("   5 \t"),
            Head::Served {
                body: Body::Fixed(5),
                ..
            }
        ));
        assert!(matches!(
            cl("0"),
            Head::Served {
                body: Body::None,
                ..
            }
        ));
        for bad in [
            "+5",
            "-5",
            "5, 5",
            "5 5",
            "0x5",
            "",
            "99999999999999999999",
            "５",
        ] {
            assert_eq!(cl(bad), Head::Refused, "{bad:?}");
        }
        let two = b"POST / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n";
        assert_eq!(served(two), (Body::Fixed(5), Some(REPEATED_CL)));
        let differ = b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n";
        assert_eq!(parse(differ), Head::Refused);
    }

    #[test]
    fn transfer_encoding_follows_hyper() {
        let te = |lines: &str| parse(format!("POST / HTTP/1.1\r\n{lines}\r\n").as_bytes());
        for ok in [
            "Transfer-Encoding: chunked\r\n",
            "Transfer-Encoding: Chunked \r\n",
            "Transfer-Encoding: gzip, chunked\r\n",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip,chunked\r\n",
            "Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n",
        ] {
            assert!(
                matches!(
                    te(ok),
                    Head::Served {
                        body: Body::Chunked,
                        ambiguity: None,
                        ..
                    }
                ),
                "{ok:?}"
            );
        }
        for refused in [
            "Transfer-Encoding: chunked, identity\r\n",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
            "Transfer-Encoding: xchunked\r\n",
            "Transfer-Encoding: chunked;q=1\r\n",
            "Transfer-Encoding:\r\n",
            "Transfer-Encoding: chunked\u{e9}\r\n",
        ] {
            assert_eq!(te(refused), Head::Refused, "{refused:?}");
        }
        let http10 = b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(parse(http10), Head::Refused);
        for both in [
            "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
            "Transfer-Encoding: chunked\r\nContent-Length: +4\r\n",
            "Transfer-Encoding: chunked\r\nContent-Length: 4\r\nContent-Length: 5\r\n",
        ] {
            assert!(
                matches!(
                    te(both),
                    Head::Served {
                        body: Body::Chunked,
                        ambiguity: Some(CL_TE),
                        ..
                    }
                ),
                "{both:?}"
            );
        }
    }

    #[test]
    fn the_end_of_a_head_is_seen_in_any_spelling() {
        assert!(may_end(b"x\r\n\r\n"));
        assert!(may_end(b"x\n\n"));
        assert!(may_end(b"x\n\r\n"));
        assert!(!may_end(b"x\r\n\r"));
        assert!(!may_end(b"x\r\r\n"));
    }
}
