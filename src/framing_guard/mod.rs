//! A byte-level guard beside hyper's HTTP/1 parser, for the ambiguities hyper resolves
//! silently: a request with both `Content-Length` and `Transfer-Encoding`, a `Content-Length`
//! repeated with the same value (hyper keeps one and serves the request), and a request target
//! with a `#` (the `http` crate cuts the "fragment" off, so the gateway would serve a shorter
//! path than the one a proxy in front of it may have judged; RFC 9112 §3.2 has no fragment in
//! a request target). hyper drops the `Content-Length` (RFC 9112 §6.1 allows that), which keeps
//! *this* hop safe, but a proxy in front of the gateway may have framed the message by the
//! other header — the classic CL.TE request-smuggling setup. RFC 9112 §6.3 lets a server reject
//! such a message, and sessiongate refuses ambiguity rather than guessing.
//!
//! The guard watches the bytes hyper reads — in place, without copying the body — and frames
//! them exactly as hyper does, so that it sees every head hyper serves on a keep-alive
//! connection, at the same place: a head ends where `httparse` (hyper's parser, same version,
//! same settings) ends it, bare-LF line ends included ([`head`]); the body is hyper's framing
//! of that head, and a chunked body is read by hyper's own state machine ([`chunked`]). It
//! records the index of the first ambiguous head in a [`FramingLog`] shared with the
//! connection's service, which counts the requests it receives (HTTP/1.1 serves them in order)
//! and answers that one and every later one `400`, closing the connection.
//!
//! The guard never switches off while the connection is HTTP/1. Where it cannot follow the
//! stream (a head hyper refuses, a malformed chunked body, a head over
//! `server.max_header_bytes`), hyper ends the connection itself; should it not, the guard has
//! recorded that point as ambiguous, so nothing after it is served. An `Upgrade` header (or
//! `CONNECT`) changes nothing until the service actually answers `101` (or `2xx` to
//! `CONNECT`): only then does hyper stop reading HTTP, and the guard stops with it
//! ([`FramingLog::on_response`]). A refused upgrade leaves the guard on.

mod chunked;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod differential;
mod head;
#[cfg(test)]
mod tests;

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};

use http::{Method, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use chunked::{Chunked, Step};
use head::{Body, Head};

const MALFORMED_HEAD: &str = "request head the gateway cannot frame";
const MALFORMED_BODY: &str = "chunked body the gateway cannot frame";
const HEAD_TOO_LARGE: &str = "request head too large";

/// What the guard learned, for the connection's service.
#[derive(Debug)]
pub struct FramingLog {
    /// Index of the first ambiguous request head, or `u64::MAX`.
    first_conflict: AtomicU64,
    /// Requests the service has seen.
    served: AtomicU64,
    /// Why the first ambiguous head is ambiguous.
    reason: OnceLock<&'static str>,
    /// hyper has handed the connection over (`101`, or `2xx` to `CONNECT`): no more HTTP.
    tunnel: AtomicBool,
    /// The heads the guard framed, as `METHOD target`, for the tests and the fuzz target that
    /// compare with hyper.
    #[cfg(any(test, feature = "fuzzing"))]
    heads: parking_lot::Mutex<Vec<String>>,
}

impl Default for FramingLog {
    fn default() -> Self {
        Self {
            first_conflict: AtomicU64::new(u64::MAX),
            served: AtomicU64::new(0),
            reason: OnceLock::new(),
            tunnel: AtomicBool::new(false),
            #[cfg(any(test, feature = "fuzzing"))]
            heads: parking_lot::Mutex::new(Vec::new()),
        }
    }
}

impl FramingLog {
    /// Call once per request, in order: why that request's head was ambiguous, if it was.
    pub fn next_request_ambiguity(&self) -> Option<&'static str> {
        let i = self.served.fetch_add(1, Ordering::AcqRel);
        (i >= self.first_conflict.load(Ordering::Acquire))
            .then(|| self.reason.get().copied().unwrap_or(head::CL_TE))
    }

    /// Call with each response the service gives. hyper ends HTTP on the connection after a
    /// `101` (whatever the request), or a `2xx` to `CONNECT`; what follows is a tunnel the
    /// guard no longer reads. Any other answer to an upgrade request keeps HTTP/1, and the
    /// guard with it.
    pub fn on_response(&self, method: &Method, status: StatusCode) {
        if status == StatusCode::SWITCHING_PROTOCOLS
            || (method == Method::CONNECT && status.is_success())
        {
            self.tunnel.store(true, Ordering::Release);
        }
    }

    fn record(&self, index: u64, why: &'static str) {
        // The guard stops at the first conflict: there is only ever one reason.
        let _ = self.reason.set(why);
        self.first_conflict.fetch_min(index, Ordering::AcqRel);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Collecting the next head.
    Head,
    /// In a body of this many more bytes.
    Fixed(u64),
    /// In a chunked body.
    Chunked(Chunked),
    /// A conflict is recorded: every request from it on is refused, nothing more to read.
    Stopped,
}

pub struct FramingGuard<IO> {
    io: IO,
    state: State,
    /// The head being collected (at most `max_head + 1` bytes), never a body.
    acc: Vec<u8>,
    /// The chunk size being read.
    chunk_size: u64,
    heads: u64,
    max_head: usize,
    log: Arc<FramingLog>,
}

impl<IO> FramingGuard<IO> {
    pub fn new(io: IO, max_head: usize, log: Arc<FramingLog>) -> Self {
        Self {
            io,
            state: State::Head,
            acc: Vec::new(),
            chunk_size: 0,
            heads: 0,
            max_head,
            log,
        }
    }

    /// The stream under the guard.
    pub fn get_ref(&self) -> &IO {
        &self.io
    }

    /// How many heads the guard has framed, when everything it has seen so far is whole
    /// requests (it waits for the next head and holds none of it) and HTTP/1 goes on: a
    /// connection between requests. `None` in a head or a body, after a conflict, or once the
    /// connection is a tunnel.
    pub fn between_requests(&self) -> Option<u64> {
        (self.state == State::Head
            && self.acc.is_empty()
            && !self.log.tunnel.load(Ordering::Acquire))
        .then_some(self.heads)
    }

    /// Give back the head buffer's memory (between requests: a connection that waits holds
    /// nothing it does not need).
    pub fn release(&mut self) {
        if self.acc.is_empty() {
            self.acc = Vec::new();
        }
    }

    /// Record that request `index` and all after it are ambiguous, and stop.
    fn stop(&mut self, index: u64, why: &'static str) {
        self.log.record(index, why);
        self.state = State::Stopped;
        self.acc = Vec::new();
    }

    fn head_done(&mut self, body: Body) {
        #[cfg(any(test, feature = "fuzzing"))]
        self.log.heads.lock().push(head_line(&self.acc));
        self.heads += 1;
        self.acc.clear();
        if self.acc.capacity() > 4096 {
            self.acc = Vec::new();
        }
        self.state = match body {
            Body::None => State::Head,
            Body::Fixed(n) => State::Fixed(n),
            Body::Chunked => {
                self.chunk_size = 0;
                State::Chunked(Chunked::Start)
            }
        };
    }

    /// Collect head bytes from `data`; how many of them belong to the head.
    fn read_head(&mut self, data: &[u8]) -> usize {
        let old = self.acc.len();
        let room = (self.max_head + 1).saturating_sub(old);
        let take = data.len().min(room);
        self.acc.extend_from_slice(&data[..take]);
        if head::may_end(&self.acc[old.saturating_sub(2)..]) {
            match head::parse(&self.acc) {
                Head::Served {
                    len,
                    body,
                    ambiguity,
                } => {
                    let used = len.saturating_sub(old);
                    self.acc.truncate(len);
                    match ambiguity {
                        Some(why) => self.stop(self.heads, why),
                        None => self.head_done(body),
                    }
                    return used;
                }
                Head::Refused => {
                    self.stop(self.heads, MALFORMED_HEAD);
                    return take;
                }
                Head::Partial => {}
            }
        }
        if self.acc.len() > self.max_head {
            // hyper answers 431 to a head this long; one it would still serve (its buffer may
            // pass `max_buf_size` by one read) is refused, as `server.max_header_bytes` says.
            self.stop(self.heads, HEAD_TOO_LARGE);
        }
        take
    }

    /// Follow the framing of `data`, the next bytes of the stream.
    fn scan(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let used = match self.state {
                State::Stopped => return,
                State::Head => self.read_head(data),
                State::Fixed(n) => {
                    let take = usize::try_from(n).unwrap_or(usize::MAX).min(data.len());
                    let left = n - take as u64;
                    self.state = if left == 0 {
                        State::Head
                    } else {
                        State::Fixed(left)
                    };
                    take
                }
                State::Chunked(c) => match c.read(&mut self.chunk_size, data) {
                    Step::More(c) => {
                        self.state = State::Chunked(c);
                        data.len()
                    }
                    Step::Done(n) => {
                        self.state = State::Head;
                        n
                    }
                    Step::Malformed => {
                        // The request this body belongs to is served; the next one is not.
                        self.stop(self.heads, MALFORMED_BODY);
                        return;
                    }
                },
            };
            data = &data[used..];
        }
    }
}

/// `METHOD target` of a complete head, for the tests and the fuzz target.
#[cfg(any(test, feature = "fuzzing"))]
fn head_line(head: &[u8]) -> String {
    let mut headers = [httparse::EMPTY_HEADER; 100];
    let mut req = httparse::Request::new(&mut headers);
    let _ = req.parse(head);
    format!("{} {}", req.method.unwrap_or(""), req.path.unwrap_or(""))
}

impl<IO: AsyncRead + Unpin> AsyncRead for FramingGuard<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        if this.state != State::Stopped && !this.log.tunnel.load(Ordering::Acquire) {
            this.scan(&buf.filled()[before..]);
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for FramingGuard<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
