//! A byte-level guard in front of hyper's HTTP/1 parser, for the one ambiguity hyper resolves
//! silently: a request with both `Content-Length` and `Transfer-Encoding`. Hyper drops the
//! `Content-Length` (RFC 9112 §6.1 allows that), which keeps *this* hop safe, but a proxy in
//! front of the gateway may have framed the message by the other header — the classic CL.TE
//! request-smuggling setup. RFC 9112 §6.3 lets a server reject such a message, and sessiongate
//! refuses ambiguity rather than guessing: the guard renames every `Content-Length` of such a
//! head to `x-sg-ambiguous` (same length, so nothing else moves), and the framing stage answers
//! `400` and closes the connection.
//!
//! To find each request head on a keep-alive connection the guard follows message framing
//! (fixed length, chunked), forwarding every byte unchanged otherwise. Anything it does not
//! understand (a parse error, an upgrade, `CONNECT`, HTTP/2) switches it to pass-through:
//! hyper's own parser still refuses malformed input.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The name a conflicting `Content-Length` is renamed to.
pub const AMBIGUOUS_MARKER: &str = "x-sg-ambiguous";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Fixed(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkDataEnd(u8),
    Trailer { line_len: usize },
    Passthrough,
}

pub struct FramingGuard<IO> {
    io: IO,
    state: State,
    /// The head (or chunk-size line) being collected.
    acc: Vec<u8>,
    /// Bytes ready for hyper.
    out: Vec<u8>,
    out_pos: usize,
    max_head: usize,
    read_buf: Box<[u8]>,
}

impl<IO> FramingGuard<IO> {
    pub fn new(io: IO, max_head: usize) -> Self {
        Self {
            io,
            state: State::Head,
            acc: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            max_head,
            read_buf: vec![0u8; 16 * 1024].into_boxed_slice(),
        }
    }

    /// Run `data` through the framing state machine, appending what hyper should read.
    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match self.state {
                State::Passthrough => {
                    self.out.extend_from_slice(data);
                    return;
                }
                State::Head => {
                    if self.acc.is_empty() {
                        // Empty lines before a request line are tolerated (RFC 9112 §2.2).
                        let skip = data
                            .iter()
                            .take_while(|b| **b == b'\r' || **b == b'\n')
                            .count();
                        self.out.extend_from_slice(&data[..skip]);
                        data = &data[skip..];
                        if data.is_empty() {
                            return;
                        }
                    }
                    let start = self.acc.len().saturating_sub(3);
                    self.acc.extend_from_slice(data);
                    match find(&self.acc[start..], b"\r\n\r\n") {
                        Some(i) => {
                            let end = start + i + 4;
                            let rest = self.acc.split_off(end);
                            let mut head = std::mem::take(&mut self.acc);
                            self.state = analyse(&mut head);
                            self.out.extend_from_slice(&head);
                            if self.state == State::Passthrough {
                                self.out.extend_from_slice(&rest);
                                return;
                            }
                            // Re-run the remainder in the new state (it was copied; small).
                            self.feed_owned(rest);
                            return;
                        }
                        None if self.acc.len() > self.max_head => {
                            // Too large for us: let hyper answer 431.
                            self.state = State::Passthrough;
                            let acc = std::mem::take(&mut self.acc);
                            self.out.extend_from_slice(&acc);
                            return;
                        }
                        None => return,
                    }
                }
                State::Fixed(n) => {
                    let take = usize::try_from(n).unwrap_or(usize::MAX).min(data.len());
                    self.out.extend_from_slice(&data[..take]);
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
                    self.out.extend_from_slice(&data[..upto]);
                    data = &data[upto..];
                    if self.acc.len() > 1024 {
                        self.state = State::Passthrough;
                        self.acc.clear();
                        continue;
                    }
                    if nl.is_some() {
                        let line = std::mem::take(&mut self.acc);
                        self.state = match chunk_size(&line) {
                            Some(0) => State::Trailer { line_len: 0 },
                            Some(n) => State::ChunkData(n),
                            None => State::Passthrough,
                        };
                    }
                }
                State::ChunkData(n) => {
                    let take = usize::try_from(n).unwrap_or(usize::MAX).min(data.len());
                    self.out.extend_from_slice(&data[..take]);
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
                    self.out.extend_from_slice(&data[..take]);
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
                    self.out.extend_from_slice(&data[..i]);
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

    fn feed_owned(&mut self, rest: Vec<u8>) {
        if !rest.is_empty() {
            self.feed(&rest);
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

/// Inspect a complete request head; rename conflicting `Content-Length`s; return the state
/// for what follows it.
fn analyse(head: &mut [u8]) -> State {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(_)) = req.parse(head) else {
        return State::Passthrough;
    };
    if req.method == Some("CONNECT") {
        return State::Passthrough;
    }
    let base = head.as_ptr() as usize;
    let mut cl_offsets = Vec::new();
    let mut cl_value: Option<u64> = None;
    let mut cl_bad = false;
    let mut te_last: Option<Vec<u8>> = None;
    let mut upgrade = false;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            cl_offsets.push(h.name.as_ptr() as usize - base);
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
    if te_last.is_some() && !cl_offsets.is_empty() {
        for off in cl_offsets {
            head[off..off + AMBIGUOUS_MARKER.len()].copy_from_slice(AMBIGUOUS_MARKER.as_bytes());
        }
        return State::Passthrough;
    }
    if upgrade || cl_bad {
        return State::Passthrough;
    }
    match (te_last, cl_value) {
        (Some(te), _) if te == b"chunked" => State::ChunkSize,
        (Some(_), _) => State::Passthrough,
        (None, Some(n)) => {
            if n == 0 {
                State::Head
            } else {
                State::Fixed(n)
            }
        }
        (None, None) => State::Head,
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for FramingGuard<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.out_pos < this.out.len() {
                let n = (this.out.len() - this.out_pos).min(buf.remaining());
                buf.put_slice(&this.out[this.out_pos..this.out_pos + n]);
                this.out_pos += n;
                if this.out_pos == this.out.len() {
                    this.out.clear();
                    this.out_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.state == State::Passthrough && this.acc.is_empty() {
                return Pin::new(&mut this.io).poll_read(cx, buf);
            }
            let mut rb = ReadBuf::new(&mut this.read_buf);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut rb))?;
            let n = rb.filled().len();
            if n == 0 {
                // End of stream: hand over whatever was being collected, then EOF.
                let acc = std::mem::take(&mut this.acc);
                if acc.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                this.out.extend_from_slice(&acc);
                this.state = State::Passthrough;
                continue;
            }
            // `feed` needs `&mut self` and the bytes: lend it the buffer for the call.
            let data = std::mem::take(&mut this.read_buf);
            this.feed(&data[..n]);
            this.read_buf = data;
        }
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

    fn run(chunks: &[&[u8]]) -> Vec<u8> {
        let mut g = FramingGuard::new((), 16 * 1024);
        for c in chunks {
            g.feed(c);
        }
        let mut out = g.out.clone();
        out.extend_from_slice(&g.acc);
        out
    }

    #[test]
    fn plain_requests_pass_unchanged_byte_for_byte() {
        let input: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /c HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(run(&[input]), input);
        // split at every position
        for i in 1..input.len() {
            assert_eq!(run(&[&input[..i], &input[i..]]), input, "split at {i}");
        }
    }

    #[test]
    fn cl_te_conflict_is_marked() {
        let input = b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        let out = run(&[input]);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("x-sg-ambiguous: 4"), "{text}");
        assert!(!text.to_ascii_lowercase().contains("content-length"));
    }

    #[test]
    fn conflict_after_a_chunked_request_on_the_same_connection_is_found() {
        let first: &[u8] = b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n";
        let second: &[u8] = b"POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n";
        let mut all = first.to_vec();
        all.extend_from_slice(second);
        for i in 1..all.len() {
            let out = String::from_utf8(run(&[&all[..i], &all[i..]])).unwrap();
            assert!(out.contains("x-sg-ambiguous: 3"), "split at {i}: {out}");
            assert!(out.starts_with(std::str::from_utf8(first).unwrap()));
        }
    }

    #[test]
    fn te_then_cl_order_is_marked_too() {
        let out = run(&[b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nHost: x\r\ncontent-length: 10\r\n\r\n"]);
        assert!(
            String::from_utf8(out)
                .unwrap()
                .contains("x-sg-ambiguous: 10")
        );
    }

    #[test]
    fn upgrades_and_garbage_switch_to_pass_through() {
        let ws: &[u8] = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n\x81\x05Content-Length: 1\r\nTransfer-Encoding: x\r\n\r\n";
        assert_eq!(run(&[ws]), ws);
        let h2: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        assert_eq!(run(&[h2]), h2);
    }
}
