//! The one body type the gateway answers with: nothing, bytes of its own, or a stream from an
//! upstream passed through without buffering. An enum rather than a boxed trait object, so the
//! common cases cost no allocation.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body::{Frame, SizeHint};

pub enum Body {
    Empty,
    Full(Option<Bytes>),
    Incoming(hyper::body::Incoming),
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Body::Empty => "Body::Empty",
            Body::Full(_) => "Body::Full",
            Body::Incoming(_) => "Body::Incoming",
        })
    }
}

impl Body {
    pub fn full(b: impl Into<Bytes>) -> Self {
        Body::Full(Some(b.into()))
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Body::Empty => Poll::Ready(None),
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Incoming(i) => Pin::new(i).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full(b) => b.is_none(),
            Body::Incoming(i) => i.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Body::Full(None) => SizeHint::with_exact(0),
            Body::Incoming(i) => i.size_hint(),
        }
    }
}

/// Headers every response of the gateway's own carries: not cached, not sniffed.
fn own(status: StatusCode, content_type: &'static str, body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

pub fn text(status: StatusCode, msg: &'static str) -> Response<Body> {
    own(
        status,
        "text/plain; charset=utf-8",
        Body::full(Bytes::from_static(msg.as_bytes())),
    )
}

pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    own(status, "application/json", Body::full(value.to_string()))
}

/// An HTML page of the gateway's own, under a strict CSP: no scripts, no external anything.
pub fn html(status: StatusCode, page: String) -> Response<Body> {
    let mut r = own(status, "text/html; charset=utf-8", Body::full(page));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    r
}

/// A redirect to a location the gateway built itself (never a raw client value).
pub fn redirect(status: StatusCode, location: &str) -> Response<Body> {
    let mut r = own(status, "text/plain; charset=utf-8", Body::Empty);
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}
