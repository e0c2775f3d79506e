//! A byte-level guard beside hyper's HTTP/1 parser, for the ambiguities hyper resolves
//! silently: a request with both `Content-Length` and `Transfer-Encoding`, and a request
//! target with a `#` (the `http` crate cuts the "fragment" off, so the gateway would serve a
//! shorter path than the one a proxy in front of it may have judged; RFC 9112 §3.2 has no
//! fragment in a request target). Hyper drops the
//! `Content-Length` (RFC 9112 §6.1 allows that), which keeps *this* hop safe, but a proxy in
//! front of the gateway may have framed the message by the other header — the classic CL.TE
//! request-smuggling setup. RFC 9112 §6.3 lets a server reject such a message, and sessiongate
//! refuses ambiguity rather than guessing.
//!
//! The guard watches the bytes hyper reads — in place, without copying or buffering them — and
//! follows message framing (fixed length, chunked) to find each request head on a keep-alive
//! connection. It records the index of the first ambiguous head in a [`FramingLog`] shared with
//! the connection's service, which counts the requests it receives (HTTP/1.1 serves them in
//! order) and answers that one `400`, closing the connection. Anything it does not understand
//! (a parse error, an upgrade, `CONNECT`, HTTP/2) switches it off: hyper's own parser still
//! refuses malformed input.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What the guard learned, for the connection's service.
#[derive(Debug)]
pub struct FramingLog {
    /// Index of the first ambiguous request head, or `u64::MAX`.
    first_conflict: AtomicU64,
    /// Requests the service has seen.
    served: AtomicU64,
    /// Why the first ambiguous head is ambiguous.
    reason: OnceLock<&'static str>,
}

impl Default for FramingLog {
    fn default() -> Self {
        Self {
            first_conflict: AtomicU64::new(u64::MAX),
            served: AtomicU64::new(0),
            reason: OnceLock::new(),
        }
    }
}

impl FramingLog {
    /// Call once per request, in order: whether that request's head was ambiguous.
    #[cfg(test)]
    pub fn next_request_is_ambiguous(&self) -> bool {
        self.next_request_ambiguity().is_some()
    }

    /// Call once per request, in order: why that request's head was ambiguous, if it was.
    pub fn next_request_ambiguity(&self) -> Option<&'static str> {
        let i = self.served.fetch_add(1, Ordering::AcqRel);
        (i >= self.first_conflict.load(Ordering::Acquire))
            .then(|| self.reason.get().copied().unwrap_or(CL_TE))
    }
}

const CL_TE: &str = "both Content-Length and Transfer-Encoding";
const FRAGMENT: &str = "fragment (#) in request target";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Fixed(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkDataEnd(u8),
    Trailer { line_len: usize },
    Off,
}

pub struct FramingGuard<IO> {
    io: IO,
    state: State,
    /// The head (or chunk-size line) being collected: a few hundred bytes, not the body.
    acc: Vec<u8>,
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
            heads: 0,
            max_head,
            log,
        }
    }

    fn head_done(&mut self, next: State, conflict: Option<&'static str>) {
        if let Some(why) = conflict {
            // The guard turns off at the first conflict: there is only ever one reason.
            let _ = self.log.reason.set(why);
            self.log
                .first_conflict
                .fetch_min(self.heads, Ordering::AcqRel);
            self.state = State::Off;
        } else {
            self.state = next;
        }
        self.heads += 1;
        self.acc.clear();
        if self.acc.capacity() > 4096 {
            self.acc = Vec::new();
        }
    }

    /// Follow the framing of `data`, the next bytes of the stream.
    fn scan(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match self.state {
                State::Off => return,
                State::Head => {
                    if self.acc.is_empty() {
                        // Empty lines before a request line are tolerated (RFC 9112 §2.2).
                        let skip = data
                            .iter()
                            .take_while(|b| **b == b'\r' || **b == b'\n')
                            .count();
                        data = &data[skip..];
                        if data.is_empty() {
                            return;
                        }
                    }
                    let start = self.acc.len().saturating_sub(3);
                    let old = self.acc.len();
                    self.acc.extend_from_slice(data);
                    match find(&self.acc[start..], b"\r\n\r\n") {
                        Some(i) => {
                            let end = start + i + 4;
                            let used = end - old;
                            let (next, conflict) = analyse(&self.acc[..end]);
                            self.head_done(next, conflict);
                            data = &data[used..];
                        }
                        None if self.acc.len() > self.max_head => {
                            // Too large for us: hyper answers 431.
                            self.state = State::Off;
                            return;
                        }
                        None => return,
                    }
                }
                State::Fixed(n) => {
                    let take = usize::try_from(n).unwrap_or(usize::MAX).min(data.len());
                    data = &data[take..];
                    let left = n - take as u64;
                    self.state = if left == 0 {
                        State::Head
                    } else {
                        State::Fixed(left)
                    };
                }
                State::ChunkSize => {
                    let nl = data.iter().position(|b| *b == b'\n');
                    let upto = nl.map_or(data.len(), |i| i + 1);
                    self.acc.extend_from_slice(&data[..upto]);
                    data = &data[upto..];
                    if self.acc.len() > 1024 {
                        self.state = State::Off;
                        return;
                    }
                    if nl.is_some() {
                        self.state = match chunk_size(&self.acc) {
                            Some(0) => State::Trailer { line_len: 0 },
                            Some(n) => State::ChunkData(n),
                            None => State::Off,
                        };
                        self.acc.clear();
                    }
                }
                State::ChunkData(n) => {
                    let take = usize::try_from(n).unwrap_or(usize::MAX).min(data.len());
                    data = &data[take..];
                    let left = n - take as u64;
                    self.state = if left == 0 {
                        State::ChunkDataEnd(2)
                    } else {
                        State::ChunkData(left)
                    };
                }
                State::ChunkDataEnd(k) => {
                    let take = (k as usize).min(data.len());
                    data = &data[take..];
                    let left = k - take as u8;
                    self.state = if left == 0 {
                        State::ChunkSize
                    } else {
                        State::ChunkDataEnd(left)
                    };
                }
                State::Trailer { mut line_len } => {
                    let mut i = 0;
                    let mut done = false;
                    while i < data.len() {
                        let b = data[i];
                        i += 1;
                        if b == b'\n' {
                            if line_len == 0 {
                                done = true;
                                break;
                            }
                            line_len = 0;
                        } else if b != b'\r' {
                            line_len += 1;
                        }
                    }
                    data = &data[i..];
                    self.state = if done {
                        State::Head
                    } else {
                        State::Trailer { line_len }
                    };
                }
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn chunk_size(line: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(line).ok()?;
    let hex = text.split(';').next()?.trim();
    if hex.is_empty() || hex.len() > 15 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// Inspect a complete request head: the state for what follows it, and why it is ambiguous
/// (a `#` in its target, or both `Content-Length` and `Transfer-Encoding`), if it is.
fn analyse(head: &[u8]) -> (State, Option<&'static str>) {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(_)) = req.parse(head) else {
        return (State::Off, None);
    };
    if req.path.is_some_and(|p| p.contains('#')) {
        return (State::Off, Some(FRAGMENT));
    }
    if req.method == Some("CONNECT") {
        return (State::Off, None);
    }
    let mut cl_value: Option<u64> = None;
    let mut cl_seen = false;
    let mut cl_bad = false;
    let mut te_last: Option<Vec<u8>> = None;
    let mut upgrade = false;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            cl_seen = true;
            match std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
            {
                Some(v) if cl_value.is_none_or(|c| c == v) => cl_value = Some(v),
                _ => cl_bad = true,
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            te_last = h
                .value
                .rsplit(|b| *b == b',')
                .next()
                .map(|v| v.trim_ascii().to_ascii_lowercase());
        } else if h.name.eq_ignore_ascii_case("upgrade") {
            upgrade = true;
        }
    }
    if te_last.is_some() && cl_seen {
        return (State::Off, Some(CL_TE));
    }
    if upgrade || cl_bad {
        return (State::Off, None);
    }
    let next = match (te_last, cl_value) {
        (Some(te), _) if te == b"chunked" => State::ChunkSize,
        (Some(_), _) => State::Off,
        (None, Some(0)) | (None, None) => State::Head,
        (None, Some(n)) => State::Fixed(n),
    };
    (next, None)
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
        if this.state != State::Off {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Scan `chunks`; return the heads seen and which request (if any) is ambiguous.
    fn run(chunks: &[&[u8]]) -> (u64, Option<u64>) {
        let log = Arc::new(FramingLog::default());
        let mut g = FramingGuard::new((), 16 * 1024, log.clone());
        for c in chunks {
            g.scan(c);
        }
        let first = log.first_conflict.load(Ordering::Relaxed);
        (g.heads, (first != u64::MAX).then_some(first))
    }

    #[test]
    fn plain_requests_are_followed_across_any_split() {
        let input: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /c HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(run(&[input]), (3, None));
        for i in 1..input.len() {
            assert_eq!(run(&[&input[..i], &input[i..]]), (3, None), "split at {i}");
        }
    }

    #[test]
    fn cl_te_conflict_is_recorded_for_its_request() {
        let input = b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert_eq!(run(&[input]).1, Some(0));
        let te_first = b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nHost: x\r\ncontent-length: 10\r\n\r\n";
        assert_eq!(run(&[te_first]).1, Some(0));
    }

    #[test]
    fn conflict_after_a_chunked_request_on_the_same_connection_is_found() {
        let first: &[u8] = b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n";
        let second: &[u8] = b"POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n";
        let mut all = first.to_vec();
        all.extend_from_slice(second);
        for i in 1..all.len() {
            assert_eq!(run(&[&all[..i], &all[i..]]).1, Some(1), "split at {i}");
        }
    }

    #[test]
    fn a_fragment_in_the_target_is_recorded_with_its_reason() {
        let input: &[u8] =
            b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /public/x#/../admin HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(run(&[input]).1, Some(1));
        let log = Arc::new(FramingLog::default());
        let mut g = FramingGuard::new((), 16 * 1024, log.clone());
        g.scan(b"GET /a?b=1#c HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(log.next_request_ambiguity(), Some(FRAGMENT));
        assert_eq!(run(&[b"GET /a%23b HTTP/1.1\r\nHost: x\r\n\r\n"]).1, None);
    }

    #[test]
    fn the_service_sees_the_conflict_on_the_right_request() {
        let log = FramingLog::default();
        log.first_conflict.store(1, Ordering::Relaxed);
        assert!(!log.next_request_is_ambiguous());
        assert!(log.next_request_is_ambiguous());
    }

    #[test]
    fn upgrades_and_garbage_switch_the_guard_off() {
        let ws: &[u8] = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n\x81\x05Content-Length: 1\r\nTransfer-Encoding: x\r\n\r\n";
        assert_eq!(run(&[ws]), (1, None));
        let h2: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        assert_eq!(run(&[h2]).1, None);
    }
}
