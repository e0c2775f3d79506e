//! The one body type the gateway answers with: nothing, bytes of its own, or a stream from an
//! upstream passed through without buffering. An enum rather than a boxed trait object, so the
//! common cases cost no allocation. A response that carries a committed refresh-token rotation
//! wraps its body in [`Body::delivering`], which tells the rotation's [`Delivery`] when hyper has
//! taken the whole response (it asked for the end of the body).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body::{Frame, SizeHint};

use crate::delivery::Delivery;

pub enum Body {
    Empty,
    Full(Option<Bytes>),
    /// An upstream's response, whose connection is given back for reuse once it is read to its
    /// end.
    Upstream(Upstream),
    /// A body whose end marks these changes delivered.
    Delivering(Box<Delivering>),
    /// A body whose end (or drop) writes the request's access-log line.
    Logged(Box<Logged>),
}

/// The access-log line of a response in flight: bytes counted as hyper takes them, written
/// once when the body ends or is dropped (the client went away).
pub struct Logged {
    body: Body,
    entry: Option<crate::access_log::Entry>,
    log: crate::access_log::AccessLog,
    started: std::time::Instant,
}

impl Logged {
    fn finish(&mut self) {
        if let Some(mut e) = self.entry.take() {
            e.duration = self.started.elapsed();
            self.log.write(&e);
        }
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Takes back an upstream connection whose response has been read to its end (the pool of
/// `proxy`, which this module cannot name).
pub trait Reuse: Send + Sync {
    fn reuse(self: Arc<Self>, conn: UpstreamConn);
}

pub type UpstreamConn = hyper::client::conn::http1::SendRequest<hyper::body::Incoming>;

/// An upstream response body and the connection it arrives on. The connection goes back to
/// its pool when the body's end has been read (or the body is dropped at its end); dropped
/// earlier, the connection is closed, never reused with part of a response unread.
pub struct Upstream {
    body: hyper::body::Incoming,
    conn: Option<(UpstreamConn, Arc<dyn Reuse>)>,
}

impl Upstream {
    pub fn new(body: hyper::body::Incoming, conn: UpstreamConn, pool: Arc<dyn Reuse>) -> Self {
        Self {
            body,
            conn: Some((conn, pool)),
        }
    }

    fn ended(&mut self) {
        if let Some((conn, pool)) = self.conn.take() {
            pool.reuse(conn);
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if http_body::Body::is_end_stream(&self.body) {
            self.ended();
        }
    }
}

pub struct Delivering {
    body: Body,
    deliveries: Vec<Delivery>,
}

impl Delivering {
    fn delivered(&self) {
        for d in &self.deliveries {
            d.delivered();
        }
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Body::Empty => "Body::Empty",
            Body::Full(_) => "Body::Full",
            Body::Upstream(_) => "Body::Upstream",
            Body::Delivering(_) => "Body::Delivering",
            Body::Logged(_) => "Body::Logged",
        })
    }
}

impl Body {
    pub fn full(b: impl Into<Bytes>) -> Self {
        Body::Full(Some(b.into()))
    }

    /// `body`, marking `deliveries` delivered once its end is asked for (an empty body: as
    /// soon as hyper looks at it, which is when it writes the response head).
    pub fn delivering(body: Body, deliveries: Vec<Delivery>) -> Self {
        if deliveries.is_empty() {
            return body;
        }
        Body::Delivering(Box::new(Delivering { body, deliveries }))
    }

    /// `body`, writing `entry` (its bytes and duration filled in) to `log` when it ends.
    pub fn logged(
        body: Body,
        entry: crate::access_log::Entry,
        log: crate::access_log::AccessLog,
        started: std::time::Instant,
    ) -> Self {
        Body::Logged(Box::new(Logged {
            body,
            entry: Some(entry),
            log,
            started,
        }))
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
            Body::Upstream(u) => {
                let polled = Pin::new(&mut u.body).poll_frame(cx);
                match &polled {
                    Poll::Ready(None) => u.ended(),
                    Poll::Ready(Some(Ok(_))) if u.body.is_end_stream() => u.ended(),
                    // A broken response leaves its connection unusable.
                    Poll::Ready(Some(Err(_))) => u.conn = None,
                    _ => {}
                }
                polled
            }
            Body::Delivering(d) => {
                let polled = Pin::new(&mut d.body).poll_frame(cx);
                if matches!(polled, Poll::Ready(None)) || d.body.is_end_stream() {
                    d.delivered();
                }
                polled
            }
            Body::Logged(l) => {
                let polled = Pin::new(&mut l.body).poll_frame(cx);
                match &polled {
                    Poll::Ready(Some(Ok(f))) => {
                        if let (Some(d), Some(e)) = (f.data_ref(), l.entry.as_mut()) {
                            e.bytes += d.len() as u64;
                        }
                        if l.body.is_end_stream() {
                            l.finish();
                        }
                    }
                    Poll::Ready(None) | Poll::Ready(Some(Err(_))) => l.finish(),
                    Poll::Pending => {}
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full(b) => b.is_none(),
            Body::Upstream(u) => u.body.is_end_stream(),
            Body::Delivering(d) => {
                let end = d.body.is_end_stream();
                if end {
                    d.delivered();
                }
                end
            }
            Body::Logged(l) => l.body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Body::Full(None) => SizeHint::with_exact(0),
            Body::Upstream(u) => u.body.size_hint(),
            Body::Delivering(d) => d.body.size_hint(),
            Body::Logged(l) => l.body.size_hint(),
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

/// An HTML page of the gateway's own, under a strict CSP: no external anything, no script but
/// the passkey one (`pages::csp`).
pub fn html(status: StatusCode, page: String) -> Response<Body> {
    let mut r = own(status, "text/html; charset=utf-8", Body::full(page));
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, crate::pages::csp().clone());
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

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn tracked() -> (Delivery, Arc<AtomicUsize>) {
        let undone = Arc::new(AtomicUsize::new(0));
        let u = undone.clone();
        let d = Delivery::new(move || {
            u.fetch_add(1, Ordering::SeqCst);
        });
        (d, undone)
    }

    #[tokio::test]
    async fn a_body_read_to_its_end_is_delivered() {
        let (d, undone) = tracked();
        let body = Body::delivering(Body::full("hello"), vec![d]);
        let bytes = body.collect().await.map(|c| c.to_bytes());
        assert_eq!(bytes.ok().as_deref(), Some(&b"hello"[..]));
        assert_eq!(undone.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn an_empty_body_is_delivered_when_hyper_looks_at_it() {
        let (d, undone) = tracked();
        let body = Body::delivering(Body::Empty, vec![d]);
        assert!(http_body::Body::is_end_stream(&body));
        drop(body);
        assert_eq!(undone.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_body_dropped_before_its_end_is_undone() {
        let (d, undone) = tracked();
        let body = Body::delivering(Body::full("never sent"), vec![d]);
        assert_eq!(http_body::Body::size_hint(&body).exact(), Some(10));
        drop(body);
        assert_eq!(undone.load(Ordering::SeqCst), 1);
    }
}
