//! HTTP/1.1 on the HTTPS listener, with connections parked between requests.
//!
//! hyper serves the requests. Its connection keeps an 8 KiB read buffer and an 8 KiB write
//! buffer for as long as it lives, and a keep-alive connection mostly waits: so when hyper
//! waits for the next request head and has nothing else to do, the connection is *parked*:
//! hyper's connection is closed gracefully without touching the stream (no close_notify, no
//! FIN: [`H1Io`] answers its shutdown itself), its buffers are freed, and only the TLS stream,
//! the framing guard and the service stay, waiting for the socket to become readable. Then a
//! new hyper connection takes the stream over, with whatever the old one had read and not
//! parsed. (nginx does the same with its request buffers and OpenSSL's.)
//!
//! A connection is parked only once it has waited [`PARK_AFTER`] (a busy client is served by
//! one hyper connection throughout), when hyper's last read found nothing, at a request boundary as
//! the framing guard frames the stream (it holds no part of a head or of a body), and every
//! request the guard framed has been answered to its end (hyper dropped the response body).
//! hyper is then idle, and its graceful close ends it at once, after flushing what it wrote;
//! should it not be idle after all, the close waits for the exchange in flight to end, and the
//! connection is parked then. Never while the listener drains, nor once the connection is a
//! tunnel (a `101`, a `CONNECT`).
//!
//! Deadlines are those of the connection hyper served before: a parked connection is closed
//! `server.header_read_timeout` after it began to wait, under hyper (hyper's own keep-alive
//! deadline), and
//! a head, once its first bytes arrive, must be whole within `server.header_read_timeout`
//! (hyper's). When the listener drains, a parked connection is a lame duck as any other
//! ([`LameDuck`]): closed when it has waited for [`LameDuck`]'s wait, served with
//! `Connection: close` if a request comes first.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;

use super::conn::{Ended, LameDuck, conn_ctx, mark_last};
use super::drain::DrainWatch;
use super::reload::Live;
use crate::body::Body;
use crate::framing_guard::{FramingGuard, FramingLog};

/// How long a parked connection's close (close_notify, then FIN) may take.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// How long hyper's connection waits, idle, before it is parked: a client that keeps its
/// connection busy (a page's assets, an API client, a load test) is served by one hyper
/// connection throughout, and parking (freeing and taking the buffers again) is left to the
/// connections that really wait.
const PARK_AFTER: Duration = Duration::from_millis(100);

/// What the connection's stream and its driver share about hyper's progress.
#[derive(Debug)]
struct Quiet {
    /// When hyper's last read found nothing at a request boundary: how many heads the guard
    /// had framed then; `u64::MAX` otherwise.
    waiting_at: AtomicU64,
    /// Responses hyper is done with (it dropped their bodies).
    answered: AtomicU64,
    /// The driver is closing hyper's connection to park it: the stream stays open.
    parking: AtomicBool,
}

impl Default for Quiet {
    fn default() -> Self {
        Quiet {
            waiting_at: AtomicU64::new(u64::MAX),
            answered: AtomicU64::new(0),
            parking: AtomicBool::new(false),
        }
    }
}

impl Quiet {
    /// hyper waits for a head, with every request before it answered.
    fn idle(&self) -> bool {
        let at = self.waiting_at.load(Ordering::Acquire);
        at != u64::MAX && at == self.answered.load(Ordering::Acquire)
    }

    fn parking(&self) -> bool {
        self.parking.load(Ordering::Acquire)
    }

    fn set_parking(&self, on: bool) {
        self.parking.store(on, Ordering::Release);
    }
}

/// The stream hyper reads and writes: the framing guard over TLS, with the bytes a previous
/// hyper connection read and did not parse put back in front.
struct H1Io {
    guard: FramingGuard<TlsStream<TcpStream>>,
    unread: Bytes,
    quiet: Arc<Quiet>,
}

impl H1Io {
    /// Put `read` (what hyper had read and not parsed) back in front of what is unread.
    fn put_back(&mut self, read: Bytes) {
        if read.is_empty() {
            return;
        }
        self.unread = if self.unread.is_empty() {
            read
        } else {
            let mut b = BytesMut::with_capacity(read.len() + self.unread.len());
            b.extend_from_slice(&read);
            b.extend_from_slice(&self.unread);
            b.freeze()
        };
    }

    fn tcp(&self) -> &TcpStream {
        self.guard.get_ref().get_ref().0
    }
}

impl AsyncRead for H1Io {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.unread.is_empty() {
            // Bytes the guard has already framed: not framed again.
            let n = this.unread.len().min(buf.remaining());
            buf.put_slice(&this.unread[..n]);
            this.unread.advance(n);
            this.quiet.waiting_at.store(u64::MAX, Ordering::Release);
            return Poll::Ready(Ok(()));
        }
        let r = Pin::new(&mut this.guard).poll_read(cx, buf);
        let at = match r {
            Poll::Pending => this.guard.between_requests().unwrap_or(u64::MAX),
            Poll::Ready(_) => u64::MAX,
        };
        this.quiet.waiting_at.store(at, Ordering::Release);
        r
    }
}

impl AsyncWrite for H1Io {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.guard).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.guard).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.guard.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.guard).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // hyper has flushed what it wrote before it shuts the stream down.
        if self.quiet.parking() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.guard).poll_shutdown(cx)
    }
}

/// A response body that counts its response as answered once hyper drops it.
struct Answered {
    body: Body,
    quiet: Arc<Quiet>,
}

impl Drop for Answered {
    fn drop(&mut self) {
        self.quiet.answered.fetch_add(1, Ordering::AcqRel);
    }
}

impl http_body::Body for Answered {
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

/// The connection's lame-duck state while its listener drains.
struct Draining<'a> {
    watch: &'a mut DrainWatch,
    lame_duck: LameDuck,
    started: bool,
}

impl Draining<'_> {
    fn start(&mut self) {
        self.started = true;
        self.lame_duck.closing.store(true, Ordering::Relaxed);
    }
}

/// Serve an HTTP/1.1 connection. Not an `async fn`, which would keep the TLS stream it is
/// given for as long as it runs beside the one it serves (see `conn::serve`).
pub(super) fn serve_h1(
    tls: TlsStream<TcpStream>,
    peer: SocketAddr,
    live: Arc<Live>,
    mut drain: DrainWatch,
) -> impl Future<Output = Ended> + Send {
    // The connection's limits are the runtime's at accept; each request runs on the runtime
    // live when it arrives (a reload applies to kept-alive connections too).
    let rt = live.runtime();
    let s = &rt.cfg.server;
    let framing = Arc::new(FramingLog::default());
    let ctx = conn_ctx(&rt, peer, Some(framing.clone()));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(s.header_read_timeout)
        .max_buf_size(s.max_header_bytes)
        .keep_alive(true);
    let (head_timeout, max_head) = (s.header_read_timeout, s.max_header_bytes);
    let lame_duck = LameDuck::new(s.shutdown_grace);
    drop(rt);
    let quiet = Arc::new(Quiet::default());
    let closing = lame_duck.flag();
    let svc = {
        let (framing, quiet) = (framing.clone(), quiet.clone());
        service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let (rt, ctx, framing) = (live.runtime(), ctx.clone(), framing.clone());
            let (closing, quiet) = (closing.clone(), quiet.clone());
            let method = req.method().clone();
            async move {
                let mut resp = crate::service::handle(rt, ctx, req).await;
                // The guard stays on until hyper really stops reading HTTP (a `101`).
                framing.on_response(&method, resp.status());
                mark_last(&closing, &mut resp);
                Ok::<_, Infallible>(resp.map(|body| Answered { body, quiet }))
            }
        })
    };
    let mut io = H1Io {
        guard: FramingGuard::new(tls, max_head, framing),
        unread: Bytes::new(),
        quiet: quiet.clone(),
    };
    async move {
        let mut draining = Draining {
            watch: &mut drain,
            lame_duck,
            started: false,
        };
        loop {
            quiet.set_parking(false);
            quiet.waiting_at.store(u64::MAX, Ordering::Release);
            let conn = builder
                .serve_connection(TokioIo::new(io), svc.clone())
                .with_upgrades();
            // On the heap while hyper serves, freed while the connection is parked.
            let Some((parked, idle_since)) = Box::pin(drive_h1(conn, &quiet, &mut draining)).await
            else {
                return Ended::Closed;
            };
            io = parked;
            let deadline = idle_since + head_timeout;
            if io.unread.is_empty() && !wait_for_request(&mut io, deadline, &mut draining).await {
                return Ended::Closed;
            }
        }
    }
}

/// Serve `conn` until it ends (`None`) or is parked: its stream back, and since when hyper
/// had waited for the next request.
async fn drive_h1<S>(
    mut conn: http1::UpgradeableConnection<TokioIo<H1Io>, S>,
    quiet: &Quiet,
    draining: &mut Draining<'_>,
) -> Option<(H1Io, Instant)>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = Answered>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    enum Event {
        Served(bool),
        Drain,
        Shut,
    }
    // The lame duck's graceful close, once its wait is over.
    let mut shut_at: Option<Instant> = None;
    // The idle wait hyper is in (the heads framed when it began: `Quiet::waiting_at`), since
    // when, and the timer that parks the connection once it has lasted `PARK_AFTER`.
    let mut idle: Option<(u64, Instant)> = None;
    let mut park = std::pin::pin!(tokio::time::sleep(PARK_AFTER));
    loop {
        let drain_started = draining.started;
        let served = std::future::poll_fn(|cx| {
            loop {
                if let Poll::Ready(r) = Pin::new(&mut conn).poll(cx) {
                    return Poll::Ready(r.is_ok());
                }
                if drain_started || quiet.parking() || !quiet.idle() {
                    return Poll::Pending;
                }
                let at = quiet.waiting_at.load(Ordering::Acquire);
                if idle.is_none_or(|(was, _)| was != at) {
                    let now = Instant::now();
                    idle = Some((at, now));
                    park.as_mut().reset(now + PARK_AFTER);
                }
                if park.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                // Idle long enough: close hyper's connection (at once: it is idle) and keep
                // the stream.
                quiet.set_parking(true);
                Pin::new(&mut conn).graceful_shutdown();
            }
        });
        let sleep = async {
            match shut_at {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        let event = tokio::select! {
            ok = served => Event::Served(ok),
            _ = draining.watch.draining(), if !drain_started => Event::Drain,
            _ = sleep => Event::Shut,
        };
        match event {
            Event::Served(ok) => {
                if !(ok && quiet.parking()) {
                    return None;
                }
                // `None` once upgraded: the tunnel has the stream.
                let parts = conn.into_parts()?;
                let mut io = parts.io.into_inner();
                io.put_back(parts.read_buf);
                return Some((io, idle.map_or_else(Instant::now, |(_, since)| since)));
            }
            Event::Drain => {
                draining.start();
                shut_at = Some(Instant::now() + draining.lame_duck.wait);
            }
            Event::Shut => {
                shut_at = None;
                // A real close this time (the stream too), even if a park had begun.
                quiet.set_parking(false);
                Pin::new(&mut conn).graceful_shutdown();
            }
        }
    }
}

/// Wait, parked, for the client's next request: `true` once the socket is readable, `false`
/// when the connection was closed (idle too long, or a lame duck that waited its wait).
async fn wait_for_request(
    io: &mut H1Io,
    mut deadline: Instant,
    draining: &mut Draining<'_>,
) -> bool {
    enum Wake {
        Readable(bool),
        Deadline,
        Drain,
    }
    io.guard.release();
    let now = Instant::now();
    if draining.started {
        deadline = deadline.min(now + draining.lame_duck.wait);
    }
    // What TLS still holds of hyper's last response goes out before the wait.
    if !matches!(
        tokio::time::timeout_at(deadline, io.flush()).await,
        Ok(Ok(()))
    ) {
        return false;
    }
    loop {
        let drain_started = draining.started;
        let wake = tokio::select! {
            r = io.tcp().readable() => Wake::Readable(r.is_ok()),
            _ = tokio::time::sleep_until(deadline) => Wake::Deadline,
            _ = draining.watch.draining(), if !drain_started => Wake::Drain,
        };
        match wake {
            Wake::Readable(ok) => return ok,
            Wake::Deadline => {
                let _ = tokio::time::timeout(CLOSE_WAIT, io.shutdown()).await;
                return false;
            }
            Wake::Drain => {
                draining.start();
                deadline = deadline.min(Instant::now() + draining.lame_duck.wait);
            }
        }
    }
}
