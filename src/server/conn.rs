//! One HTTPS connection after its TLS handshake, and the deadlines that keep a connection from
//! holding its slot without asking for anything.
//!
//! The protocol is the one ALPN negotiated: `h2` is HTTP/2, anything else (`http/1.1`, no ALPN)
//! HTTP/1.1. Nothing sniffs the first bytes (hyper-util's `auto` builder did, and waited for
//! them with no deadline: a silent client or a partial HTTP/2 preface held its connection for
//! ever). An `h2` connection is HTTP/2 only: HTTP/1 bytes on it fail the connection preface and
//! hyper closes it, so they never reach the service (nor need the framing guard). Every
//! HTTP/1.1 connection goes through the framing guard (`crate::framing_guard`).
//!
//! - **HTTP/1.1** ([`super::h1`]): a connection waiting between requests is parked (hyper's
//!   buffers freed, the TLS stream kept) and closed `server.header_read_timeout` after it began
//!   to wait; hyper's `header_read_timeout` runs from the first bytes of a head to its end. A
//!   silent, partial or trickled head, and an idle keep-alive connection, are closed after
//!   `server.header_read_timeout`.
//! - **HTTP/2**: hyper has keep-alive PINGs but no such deadline (a client that answers PINGs
//!   keeps its connection), so the connection counts its open streams ([`Streams`]). With none
//!   open, it is closed `server.header_read_timeout` after the handshake if no request has
//!   arrived (preface, SETTINGS and a whole first header block must arrive by then), and
//!   `server.http2_idle_timeout` after its last stream ended otherwise (GOAWAY, then close).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;

use super::drain::{DrainWatch, GracefulConn};
use super::reload::Live;
use crate::body::Body;
use crate::framing_guard::FramingLog;
use crate::runtime::{ConnCtx, Runtime};

/// How long a connection closed gracefully (GOAWAY sent) and with no stream open may take to
/// go away before it is dropped: a client that answers neither GOAWAY nor the PING after it
/// does not keep its slot.
const CLOSE_GRACE: Duration = Duration::from_secs(3);

/// How long an HTTP/1.1 connection stays open once its listener drains, answering with
/// `Connection: close`, before it is closed if idle (at most half of `server.shutdown_grace`).
const LAME_DUCK: Duration = Duration::from_secs(1);

/// How an HTTP/1.1 connection closes when its listener drains: as a load balancer's lame
/// duck. HTTP/1.1 has no GOAWAY, and closing an idle keep-alive connection at once races a
/// client that has just written its next request on it: the request is lost ("connection
/// closed before message completed"), and a client cannot know whether it was acted on, so it
/// does not retry it (a POST never). So every response from then on says `Connection: close`
/// (the client's next request opens a new connection, which the closed listener refuses: it
/// goes elsewhere), and only a connection still idle after [`LAME_DUCK`] is closed, when its
/// client is least likely to be writing. A request in flight is finished either way.
pub(crate) struct LameDuck {
    pub(super) closing: Arc<AtomicBool>,
    pub(super) wait: Duration,
}

impl LameDuck {
    pub(crate) fn new(shutdown_grace: Duration) -> LameDuck {
        LameDuck {
            closing: Arc::new(AtomicBool::new(false)),
            wait: LAME_DUCK.min(shutdown_grace / 2),
        }
    }

    /// The flag the service reads: set once the listener drains.
    pub(crate) fn flag(&self) -> Arc<AtomicBool> {
        self.closing.clone()
    }
}

/// While the connection is a lame duck, tell the client this response is its last on it (a
/// `101` switches protocols: nothing to close).
pub(crate) fn mark_last(closing: &AtomicBool, resp: &mut hyper::Response<Body>) {
    if closing.load(Ordering::Relaxed) && resp.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
        resp.headers_mut().insert(
            hyper::header::CONNECTION,
            hyper::header::HeaderValue::from_static("close"),
        );
    }
}

/// Serve one connection whose TLS handshake is done, until it ends.
///
/// Not an `async fn`: one keeps its arguments for as long as it runs, and the TLS stream alone
/// is over a kilobyte. Each protocol's future lives on the heap, sized for itself: an idle
/// HTTP/1.1 connection carries neither the room an HTTP/2 connection needs nor the handshake's
/// (see `serve_https`).
pub(crate) fn serve(
    tls: TlsStream<TcpStream>,
    peer: SocketAddr,
    live: Arc<Live>,
    drain: DrainWatch,
) -> impl Future<Output = ()> + Send {
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let open = live
        .runtime()
        .metrics
        .connection("https", if h2 { "h2" } else { "h1" });
    let served: Pin<Box<dyn Future<Output = Ended> + Send>> = if h2 {
        Box::pin(serve_h2(tls, peer, live, drain))
    } else {
        Box::pin(super::h1::serve_h1(tls, peer, live, drain))
    };
    async move {
        let _open = open;
        match served.await {
            Ended::Closed => {}
            Ended::NoRequest => tracing::debug!(
                %peer,
                "no HTTP/2 request within server.header_read_timeout; connection closed"
            ),
            Ended::Unresponsive => tracing::debug!(
                %peer,
                "HTTP/2 connection did not close after GOAWAY; dropped"
            ),
        }
    }
}

pub(super) fn conn_ctx(
    rt: &Runtime,
    peer: SocketAddr,
    framing: Option<Arc<FramingLog>>,
) -> Arc<ConnCtx> {
    Arc::new(ConnCtx {
        peer,
        peer_trusted: rt.is_trusted_proxy(peer.ip()),
        framing,
    })
}

async fn serve_h2(
    tls: TlsStream<TcpStream>,
    peer: SocketAddr,
    live: Arc<Live>,
    drain: DrainWatch,
) -> Ended {
    let rt = live.runtime();
    let s = &rt.cfg.server;
    let streams = Arc::new(Streams::default());
    // HTTP/2 frames every message itself: nothing for the framing guard to do.
    let ctx = conn_ctx(&rt, peer, None);
    let svc_streams = streams.clone();
    // Boxed: hyper moves each stream's future several times (into its stream, into a task of
    // its own), and the request's future is kilobytes; boxed, each move is a pointer's
    // (`PROTO=h2 benches/instructions.py`: 150,503 instructions per request unboxed, 86,239
    // boxed, callgrind counting a large copy about once per byte).
    let svc = service_fn(move |req| {
        let open = StreamOpen::new(&svc_streams);
        let (rt, ctx) = (live.runtime(), ctx.clone());
        Box::pin(async move {
            let resp = crate::service::handle(rt, ctx, req).await;
            Ok::<_, Infallible>(resp.map(|body| Counted { body, _open: open }))
        })
    });
    let mut b = http2::Builder::new(TokioExecutor::new());
    b.timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(s.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    let conn = b.serve_connection(TokioIo::new(tls), svc);
    let idle = Idle {
        streams,
        started: Instant::now(),
        first_request: s.header_read_timeout,
        idle: s.http2_idle_timeout,
    };
    drive(conn, drain, Close::Idle(idle)).await
}

/// How a connection ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Served to its end: by the client, by hyper (an error, a timeout), or a graceful close.
    Closed,
    /// No request before the first request's deadline: dropped.
    NoRequest,
    /// Closed gracefully, no stream open, and still there [`CLOSE_GRACE`] later: dropped.
    Unresponsive,
}

/// How a connection closes when its listener drains, beside hyper's own deadlines.
pub(crate) enum Close {
    /// Close gracefully at once (a plain listener: the admin and redirect listeners).
    AtOnce,
    /// HTTP/2: GOAWAY at once; also closed when idle too long (see [`Idle`]).
    Idle(Idle),
}

/// Serve `conn` to its end. A graceful close starts when the listener drains (at once, or
/// after the lame duck's wait), or when the HTTP/2 `idle` clock says the connection has been
/// idle too long; the connection is dropped when it sent no request in time, or did not go
/// away after a graceful close.
pub(crate) async fn drive<C: GracefulConn>(conn: C, mut drain: DrainWatch, close: Close) -> Ended {
    let idle = match close {
        Close::AtOnce => None,
        Close::Idle(i) => Some(i),
    };
    let mut conn = std::pin::pin!(conn);
    let mut draining = false;
    // Set once a graceful close has started (HTTP/2 only: HTTP/1 closes by itself).
    let mut close_by: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let wake = match &idle {
            None => None,
            Some(idle) => match (idle.verdict(now), close_by) {
                (Verdict::Busy, _) => None,
                (Verdict::Unused, _) => return Ended::NoRequest,
                (_, Some(by)) => {
                    // A stream that ended after the close started gets its grace too (its last
                    // frames may still be on their way out).
                    let by = idle.last_end().map_or(by, |t| by.max(t + CLOSE_GRACE));
                    if now >= by {
                        return Ended::Unresponsive;
                    }
                    Some(by)
                }
                (Verdict::Until(t), None) => Some(t),
                (Verdict::Idle, None) => {
                    conn.as_mut().graceful_shutdown();
                    close_by = Some(now + CLOSE_GRACE);
                    continue;
                }
            },
        };
        let changed = async {
            match &idle {
                Some(idle) => idle.streams.changed.notified().await,
                None => std::future::pending().await,
            }
        };
        let sleep = async {
            match wake {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = conn.as_mut() => return Ended::Closed,
            _ = drain.draining(), if !draining => {
                draining = true;
                if close_by.is_none() {
                    conn.as_mut().graceful_shutdown();
                    if idle.is_some() {
                        close_by = Some(Instant::now() + CLOSE_GRACE);
                    }
                }
            }
            _ = sleep => {}
            _ = changed => {}
        }
    }
}

/// The open streams of an HTTP/2 connection. A stream is open from the moment its request
/// reaches the service until hyper drops its response body (sent, or reset by the client).
#[derive(Default)]
pub(crate) struct Streams {
    open: AtomicUsize,
    /// When the last open stream ended; `None` before the first request.
    idle_since: Mutex<Option<Instant>>,
    /// Woken when the last open stream ends, so the idle clock is armed at once.
    changed: Notify,
}

/// One open stream, counted until dropped.
struct StreamOpen(Arc<Streams>);

impl StreamOpen {
    fn new(streams: &Arc<Streams>) -> Self {
        streams.open.fetch_add(1, Ordering::SeqCst);
        StreamOpen(streams.clone())
    }
}

impl Drop for StreamOpen {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            *self.0.idle_since.lock() = Some(Instant::now());
            self.0.changed.notify_one();
        }
    }
}

/// A response body that keeps its stream counted as open for as long as hyper holds it.
struct Counted {
    body: Body,
    _open: StreamOpen,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        http_body::Body::is_end_stream(&self.body)
    }

    fn size_hint(&self) -> SizeHint {
        http_body::Body::size_hint(&self.body)
    }
}

/// When an HTTP/2 connection with no open stream is closed.
pub(crate) struct Idle {
    streams: Arc<Streams>,
    started: Instant,
    /// Before the first request (`server.header_read_timeout`).
    first_request: Duration,
    /// After the last stream ended (`server.http2_idle_timeout`).
    idle: Duration,
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// A stream is open: nothing to do until it ends.
    Busy,
    /// No stream open; look again at this instant.
    Until(Instant),
    /// No request arrived before the first request's deadline.
    Unused,
    /// No stream has been open for the idle timeout.
    Idle,
}

impl Idle {
    /// When the last open stream ended; `None` before the first request.
    fn last_end(&self) -> Option<Instant> {
        *self.streams.idle_since.lock()
    }

    fn verdict(&self, now: Instant) -> Verdict {
        if self.streams.open.load(Ordering::SeqCst) > 0 {
            return Verdict::Busy;
        }
        let (deadline, expired) = match self.last_end() {
            Some(t) => (t + self.idle, Verdict::Idle),
            None => (self.started + self.first_request, Verdict::Unused),
        };
        if now >= deadline {
            expired
        } else {
            Verdict::Until(deadline)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idle() -> Idle {
        Idle {
            streams: Arc::new(Streams::default()),
            started: Instant::now(),
            first_request: Duration::from_secs(2),
            idle: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn unused_connection_expires_at_the_first_request_deadline() {
        let i = idle();
        let t0 = i.started;
        assert_eq!(i.verdict(t0), Verdict::Until(t0 + Duration::from_secs(2)));
        assert_eq!(i.verdict(t0 + Duration::from_secs(2)), Verdict::Unused);
    }

    #[tokio::test]
    async fn an_open_stream_keeps_the_connection_and_its_end_starts_the_idle_clock() {
        let i = idle();
        let t0 = i.started;
        let open = StreamOpen::new(&i.streams);
        assert_eq!(i.verdict(t0 + Duration::from_secs(60)), Verdict::Busy);
        let second = StreamOpen::new(&i.streams);
        drop(open);
        assert_eq!(i.verdict(t0 + Duration::from_secs(60)), Verdict::Busy);
        drop(second);
        let ended = i.streams.idle_since.lock().unwrap();
        assert_eq!(
            i.verdict(ended),
            Verdict::Until(ended + Duration::from_secs(5))
        );
        assert_eq!(i.verdict(ended + Duration::from_secs(5)), Verdict::Idle);
    }
}
