//! Ambiguous requests are refused, never guessed at.
//!
//! Threats: request smuggling and desync between the gateway and the app (RFC 9112 §6.3:
//! `Content-Length` with `Transfer-Encoding`, repeated `Content-Length` — equal values too),
//! `CONNECT` (the gateway is no forward proxy: hyper would turn the connection into a tunnel
//! on a `2xx`, and the upstream client would send a CONNECT to the upstream's own address), a
//! `#` in an HTTP/1 request target (cut off by the parser, so the path served is not the path
//! sent), Host confusion (no `Host`, two of them, an absolute-form target or `:authority` that
//! disagrees with `Host` — RFC 9112 §3.2), header names that some stacks fold into identity or
//! forwarding headers (`X_Auth_User` and `X.Auth.User` become `HTTP_X_AUTH_USER` under CGI, as
//! `X-Auth-User` does; see `web::headers::SpoofableHeaders`), and two `Authorization` or
//! `User-Agent` headers.

use http::{HeaderMap, HeaderValue, Method, Request, Version, header};

use crate::refusal::Refusal;
use crate::runtime::{ConnCtx, Runtime};
use crate::web::headers::{HeaderClass, SpoofableHeaders};

/// The framing stage: what the connection's guard saw in the byte stream (HTTP/1), then the
/// parsed request. Either one's doubt refuses the request and closes the connection.
pub fn check<B>(rt: &Runtime, conn: &ConnCtx, req: &Request<B>) -> Result<(), Refusal> {
    // The guard counts every request of the connection: ask it first, exactly once.
    let guard_saw = conn
        .framing
        .as_ref()
        .and_then(|f| f.next_request_ambiguity());
    let verdict = match guard_saw {
        Some(why) => Err(why),
        None => ambiguity(req, &rt.spoofable),
    };
    verdict.map_err(|why| {
        tracing::debug!(reason = why, "refused ambiguous request");
        Refusal::Ambiguous(why)
    })
}

/// Why a request is ambiguous, if it is.
pub fn ambiguity<B>(req: &Request<B>, spoofable: &SpoofableHeaders) -> Result<(), &'static str> {
    if req.method() == Method::CONNECT {
        return Err("CONNECT is not served");
    }
    // One pass over the headers (a lookup per name would hash each name again).
    let seen = Seen::of(req.headers(), spoofable);
    // Both headers as received (HTTP/2, or a parser that kept them); for HTTP/1, where hyper
    // drops the Content-Length, the connection's framing guard reports them (see `check`).
    if seen.transfer_encoding > 0 && seen.content_length > 0 {
        return Err("both Content-Length and Transfer-Encoding");
    }
    // Identical or not (HTTP/2; for HTTP/1 hyper keeps one of two equal values, and the
    // framing guard reports the repetition).
    if seen.content_length > 1 {
        return Err("repeated Content-Length");
    }
    if seen.authorization > 1 {
        return Err("repeated Authorization");
    }
    // One user agent: RFC 9110 §10.1.5 defines a single value, and it is what a session is
    // bound to (`web::user_agent`); of two, the gateway and the app could each read another.
    if seen.user_agent > 1 {
        return Err("repeated User-Agent");
    }
    if seen.hosts > 1 {
        return Err("repeated Host");
    }
    if req.version() < Version::HTTP_2 && seen.hosts == 0 {
        return Err("missing Host");
    }
    if let (Some(auth), Some(host)) = (req.uri().authority(), seen.host)
        && !auth
            .as_str()
            .eq_ignore_ascii_case(host.to_str().unwrap_or(""))
    {
        return Err("request target authority differs from Host");
    }
    if req.version() < Version::HTTP_2 && req.uri().scheme().is_some_and(|s| s != "https") {
        return Err("absolute-form target must be https");
    }
    if seen.look_alike {
        return Err("header name imitates an identity or forwarding header");
    }
    Ok(())
}

/// What [`ambiguity`] reads of a request's headers: how often each framing and identity
/// header came, the first `Host`, and whether any name imitates an identity header.
#[derive(Default)]
struct Seen<'a> {
    transfer_encoding: usize,
    content_length: usize,
    authorization: usize,
    user_agent: usize,
    hosts: usize,
    host: Option<&'a HeaderValue>,
    look_alike: bool,
}

impl<'a> Seen<'a> {
    fn of(h: &'a HeaderMap, spoofable: &SpoofableHeaders) -> Self {
        let mut seen = Seen::default();
        // Every value of every name (a repeated name comes once per value).
        for (name, value) in h {
            if name == header::TRANSFER_ENCODING {
                seen.transfer_encoding += 1;
            } else if name == header::CONTENT_LENGTH {
                seen.content_length += 1;
            } else if name == header::AUTHORIZATION {
                seen.authorization += 1;
            } else if name == header::USER_AGENT {
                seen.user_agent += 1;
            } else if name == header::HOST {
                seen.hosts += 1;
                seen.host = seen.host.or(Some(value));
            } else if !seen.look_alike {
                seen.look_alike = spoofable.classify(name.as_str()) == HeaderClass::LookAlike;
            }
        }
        seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::headers::IDENTITY_HEADERS;

    fn req(headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().uri("/x");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    fn ids() -> SpoofableHeaders {
        SpoofableHeaders::new(IDENTITY_HEADERS.iter().copied(), &[])
    }

    /// Each ambiguity is named for what it is, whichever headers come beside it.
    #[test]
    fn each_ambiguity_is_named() {
        let why = |h: &[(&str, &str)]| ambiguity(&req(h), &ids()).err();
        let many = [("accept", "*/*"), ("cookie", "a=b"), ("x-other", "1")];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut h = many.to_vec();
            h.extend_from_slice(extra);
            h
        };
        assert_eq!(why(&with(&[("host", "a")])), None);
        assert_eq!(
            why(&with(&[
                ("host", "a"),
                ("transfer-encoding", "chunked"),
                ("content-length", "1")
            ])),
            Some("both Content-Length and Transfer-Encoding")
        );
        assert_eq!(
            why(&with(&[
                ("host", "a"),
                ("authorization", "a"),
                ("authorization", "a")
            ])),
            Some("repeated Authorization")
        );
        assert_eq!(
            why(&with(&[
                ("user-agent", "a"),
                ("host", "a"),
                ("user-agent", "b")
            ])),
            Some("repeated User-Agent")
        );
        assert_eq!(
            why(&with(&[("host", "a"), ("host", "a")])),
            Some("repeated Host")
        );
        assert_eq!(why(&with(&[])), Some("missing Host"));
        assert_eq!(
            why(&with(&[
                ("host", "a"),
                ("x_auth_user", "x"),
                ("x-other-2", "y")
            ])),
            Some("header name imitates an identity or forwarding header")
        );
        let absolute = Request::builder()
            .uri("https://b/x")
            .header("host", "a")
            .body(())
            .unwrap();
        assert_eq!(
            ambiguity(&absolute, &ids()).err(),
            Some("request target authority differs from Host")
        );
    }

    #[test]
    fn plain_request_passes() {
        assert!(ambiguity(&req(&[("host", "a")]), &ids()).is_ok());
    }

    #[test]
    fn ambiguous_requests_are_refused() {
        assert!(ambiguity(&req(&[]), &ids()).is_err());
        assert!(ambiguity(&req(&[("host", "a"), ("host", "b")]), &ids()).is_err());
        assert!(
            ambiguity(
                &req(&[
                    ("host", "a"),
                    ("content-length", "1"),
                    ("transfer-encoding", "chunked")
                ]),
                &ids()
            )
            .is_err()
        );
        assert!(
            ambiguity(
                &req(&[
                    ("host", "a"),
                    ("content-length", "1"),
                    ("content-length", "1")
                ]),
                &ids()
            )
            .is_err()
        );
        assert!(ambiguity(&req(&[("host", "a"), ("x_auth_user", "x")]), &ids()).is_err());
        assert!(ambiguity(&req(&[("host", "a"), ("x-auth_roles", "x")]), &ids()).is_err());
        assert!(ambiguity(&req(&[("host", "a"), ("x_forwarded_for", "x")]), &ids()).is_err());
        assert!(
            ambiguity(
                &req(&[
                    ("host", "a"),
                    ("authorization", "a"),
                    ("authorization", "b")
                ]),
                &ids()
            )
            .is_err()
        );
        assert!(ambiguity(&req(&[("host", "a"), ("x_app_thing", "x")]), &ids()).is_ok());
        let connect = Request::builder()
            .method(Method::CONNECT)
            .uri("/x")
            .header("host", "a")
            .body(())
            .unwrap();
        assert!(ambiguity(&connect, &ids()).is_err());
    }

    #[test]
    fn one_user_agent_or_none() {
        let ua = |uas: &[&str]| {
            let mut h = vec![("host", "a")];
            h.extend(uas.iter().map(|v| ("user-agent", *v)));
            ambiguity(&req(&h), &ids())
        };
        assert!(ua(&[]).is_ok());
        assert!(ua(&["curl/8"]).is_ok());
        assert!(ua(&[""]).is_ok());
        assert_eq!(ua(&["curl/8", "curl/8"]), Err("repeated User-Agent"));
        assert_eq!(ua(&["a", "b", "c"]), Err("repeated User-Agent"));
        assert_eq!(ua(&["", ""]), Err("repeated User-Agent"));
    }

    #[test]
    fn absolute_form_must_match_host() {
        let r = Request::builder()
            .uri("https://evil.example/x")
            .header("host", "good.example")
            .body(())
            .unwrap();
        assert!(ambiguity(&r, &ids()).is_err());
        let r = Request::builder()
            .uri("https://good.example/x")
            .header("host", "GOOD.example")
            .body(())
            .unwrap();
        assert!(ambiguity(&r, &ids()).is_ok());
        let r = Request::builder()
            .uri("http://good.example/x")
            .header("host", "good.example")
            .body(())
            .unwrap();
        assert!(ambiguity(&r, &ids()).is_err());
    }
}
