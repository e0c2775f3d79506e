//! Connections that misbehave on purpose, for the connection-limit and idle tests: TLS with a
//! chosen ALPN from a chosen loopback source address, sockets held open until the gateway
//! closes them, a hand-written HTTP/2 client (preface, SETTINGS, PING, one request at a time),
//! and raising the test process's file-descriptor limit.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;

use super::gateway::Gateway;

/// The client connection preface of HTTP/2 (RFC 9113 §3.4).
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// TCP to `to`, from `from` (any port) when given: `127.0.0.2` is another client IP on Linux
/// loopback.
pub async fn tcp_from(to: SocketAddr, from: Option<IpAddr>) -> io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    if let Some(ip) = from {
        sock.bind(SocketAddr::new(ip, 0))?;
    }
    sock.connect(to).await
}

/// TLS to `to` from `from` with `config` (SNI `localhost`); an error when the gateway refuses.
pub async fn tls_to(
    to: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    from: Option<IpAddr>,
) -> io::Result<TlsStream<TcpStream>> {
    let tcp = tcp_from(to, from).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// One HTTP/2 frame as bytes: 9-byte header (length, type, flags, stream) and `payload`.
pub fn frame_bytes(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = Vec::with_capacity(9 + payload.len());
    f.extend_from_slice(&len.to_be_bytes()[1..]);
    f.push(kind);
    f.push(flags);
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

impl Gateway {
    /// A rustls client config trusting the test CA, offering `alpn` (empty: no ALPN).
    pub fn tls_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        Arc::new(self.pki.client_config(alpn))
    }

    /// TLS to the HTTPS listener from `from` with `config`; an error when the gateway refuses.
    pub async fn tls_from(
        &self,
        config: Arc<rustls::ClientConfig>,
        from: Option<IpAddr>,
    ) -> io::Result<TlsStream<TcpStream>> {
        tls_to(self.https, config, from).await
    }
}

/// Write `initial`, then one byte of `trickle` every `every` (a slow client), discard whatever
/// the gateway sends, and return how long after the call the gateway closed the connection
/// (EOF, reset, or a failed write); `None` when it was still open after `within`.
pub async fn hold<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    initial: &[u8],
    trickle: &[u8],
    every: Duration,
    within: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    if s.write_all(initial).await.is_err() || s.flush().await.is_err() {
        return Some(start.elapsed());
    }
    let mut rest = trickle.iter();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        tokio::select! {
            r = s.read(&mut buf) => match r {
                Ok(0) | Err(_) => return Some(start.elapsed()),
                Ok(_) => {}
            },
            _ = tick.tick(), if rest.len() > 0 => {
                let b = [*rest.next().unwrap()];
                if s.write_all(&b).await.is_err() || s.flush().await.is_err() {
                    return Some(start.elapsed());
                }
            }
            _ = tokio::time::sleep_until(deadline) => return None,
        }
    }
}

/// Raise this process's soft limit of open files to `want` (or the hard limit, if lower);
/// returns the limit now in force. Children (the gateway) inherit it.
pub fn raise_fd_limit(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write/read only the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        }
    }
    lim.rlim_cur
}

/// An HPACK string literal without Huffman coding: its length as a 7-bit-prefix integer
/// (RFC 7541 §5.1, so values of 127 bytes and more — a cookie with a JWT — are encoded right),
/// then the bytes.
fn hpack_string(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut n = bytes.len();
    if n < 127 {
        out.push(n as u8);
    } else {
        out.push(127);
        n -= 127;
        while n >= 128 {
            out.push((n % 128) as u8 | 0x80);
            n /= 128;
        }
        out.push(n as u8);
    }
    out.extend_from_slice(bytes);
}

/// HTTP/2 frame types used here (RFC 9113 §6).
pub mod frame {
    pub const DATA: u8 = 0;
    pub const HEADERS: u8 = 1;
    pub const RST_STREAM: u8 = 3;
    pub const SETTINGS: u8 = 4;
    pub const PING: u8 = 6;
    pub const GOAWAY: u8 = 7;
    pub const WINDOW_UPDATE: u8 = 8;
    pub const CONTINUATION: u8 = 9;
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    /// RST_STREAM error code CANCEL (RFC 9113 §7): the client no longer wants the stream.
    pub const CANCEL: u32 = 0x8;
    /// SETTINGS_INITIAL_WINDOW_SIZE (RFC 9113 §6.5.2).
    pub const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;

    /// The name of an HTTP/2 error code (RFC 9113 §7), as a GOAWAY or RST_STREAM carries it.
    pub fn error_name(code: u32) -> String {
        const NAMES: [&str; 14] = [
            "NO_ERROR",
            "PROTOCOL_ERROR",
            "INTERNAL_ERROR",
            "FLOW_CONTROL_ERROR",
            "SETTINGS_TIMEOUT",
            "STREAM_CLOSED",
            "FRAME_SIZE_ERROR",
            "REFUSED_STREAM",
            "CANCEL",
            "COMPRESSION_ERROR",
            "CONNECT_ERROR",
            "ENHANCE_YOUR_CALM",
            "INADEQUATE_SECURITY",
            "HTTP_1_1_REQUIRED",
        ];
        NAMES
            .get(code as usize)
            .map_or_else(|| format!("0x{code:x}"), |n| (*n).to_string())
    }
}

#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

/// How an HTTP/2 connection ended while [`H2::idle`] kept it alive.
#[derive(Debug, Default)]
pub struct Idled {
    /// Time from the call to the close; `None`: still open at the deadline.
    pub closed_after: Option<Duration>,
    pub goaway: bool,
    /// PINGs the gateway answered (ours) and sent (answered by us).
    pub pongs: usize,
    pub pings_answered: usize,
}

/// A hand-written HTTP/2 client over TLS (ALPN `h2`): frames are written and read as they
/// are, so a test controls exactly what the gateway sees. Requests use HPACK literals without
/// Huffman coding or indexing, which every decoder accepts.
pub struct H2 {
    pub s: TlsStream<TcpStream>,
    buf: Vec<u8>,
    pub goaway: bool,
}

impl H2 {
    /// TLS with ALPN `h2` (asserted), the preface and an empty SETTINGS frame.
    pub async fn open(gw: &Gateway) -> H2 {
        let s = gw
            .tls_from(gw.tls_config(&[b"h2"]), None)
            .await
            .expect("TLS with ALPN h2");
        assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let mut h2 = H2 {
            s,
            buf: Vec::new(),
            goaway: false,
        };
        h2.raw(H2_PREFACE).await.unwrap();
        h2.send(frame::SETTINGS, 0, 0, &[]).await.unwrap();
        h2
    }

    pub async fn raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.s.write_all(bytes).await?;
        self.s.flush().await
    }

    pub async fn send(
        &mut self,
        kind: u8,
        flags: u8,
        stream: u32,
        payload: &[u8],
    ) -> io::Result<()> {
        self.raw(&frame_bytes(kind, flags, stream, payload)).await
    }

    /// The header block of a request: `:method`, `:scheme https`, `:path`, `:authority`, and
    /// `extra` headers, all as literals.
    pub fn request_block(
        method: &str,
        path: &str,
        authority: &str,
        extra: &[(&str, &str)],
    ) -> Vec<u8> {
        let mut b = Vec::new();
        let mut lit = |name: &str, value: &str| {
            b.push(0x00); // literal without indexing, new name
            hpack_string(&mut b, name.as_bytes());
            hpack_string(&mut b, value.as_bytes());
        };
        lit(":method", method);
        lit(":scheme", "https");
        lit(":path", path);
        lit(":authority", authority);
        for (k, v) in extra {
            lit(k, v);
        }
        b
    }

    /// The next frame; `None` when the connection is closed (EOF, reset, TLS error).
    pub async fn read_frame(&mut self) -> Option<Frame> {
        loop {
            if self.buf.len() >= 9 {
                let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
                if self.buf.len() >= 9 + len {
                    let f = Frame {
                        kind: self.buf[3],
                        flags: self.buf[4],
                        stream: u32::from_be_bytes(self.buf[5..9].try_into().unwrap())
                            & 0x7fff_ffff,
                        payload: self.buf[9..9 + len].to_vec(),
                    };
                    self.buf.drain(..9 + len);
                    if f.kind == frame::GOAWAY {
                        self.goaway = true;
                    }
                    return Some(f);
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.s.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Answer what a peer must answer (SETTINGS, PING); `false` when `f` is anything else.
    async fn answer(&mut self, f: &Frame) -> bool {
        match f.kind {
            frame::SETTINGS if f.flags & frame::ACK == 0 => {
                let _ = self.send(frame::SETTINGS, frame::ACK, 0, &[]).await;
                true
            }
            frame::PING if f.flags & frame::ACK == 0 => {
                let _ = self.send(frame::PING, frame::ACK, 0, &f.payload).await;
                true
            }
            _ => false,
        }
    }

    /// Read until stream `id` ends; the response's `:status` when the gateway encoded it with
    /// the static table (200, 204, 206, 304, 400, 404, 500), else 0. `None`: the connection
    /// closed first.
    pub async fn response(&mut self, id: u32) -> Option<u16> {
        let mut status = 0;
        loop {
            let f = self.read_frame().await?;
            if self.answer(&f).await || f.stream != id {
                continue;
            }
            if f.kind == frame::HEADERS && status == 0 {
                status = match f.payload.first() {
                    Some(0x88) => 200,
                    Some(0x89) => 204,
                    Some(0x8a) => 206,
                    Some(0x8b) => 304,
                    Some(0x8c) => 400,
                    Some(0x8d) => 404,
                    Some(0x8e) => 500,
                    _ => 0,
                };
            }
            if (f.kind == frame::HEADERS || f.kind == frame::DATA)
                && f.flags & frame::END_STREAM != 0
            {
                return Some(status);
            }
        }
    }

    /// Keep the connection alive as a live client does, with no stream open: answer the
    /// gateway's SETTINGS and PINGs and send a PING of our own every `ping_every`, until the
    /// gateway closes the connection or `within` passes.
    pub async fn idle(&mut self, ping_every: Duration, within: Duration) -> Idled {
        let start = Instant::now();
        let deadline = tokio::time::Instant::now() + within;
        let mut tick = tokio::time::interval(ping_every);
        let mut out = Idled::default();
        loop {
            let mut chunk = [0u8; 16 * 1024];
            tokio::select! {
                r = self.s.read(&mut chunk) => match r {
                    Ok(0) | Err(_) => break,
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                },
                _ = tick.tick() => {
                    if self.send(frame::PING, 0, 0, b"sg-alive").await.is_err() {
                        break;
                    }
                    continue;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    out.goaway = self.goaway;
                    return out;
                }
            }
            // Frames complete in the buffer (read_frame reads no more while one is whole).
            while self.buf.len() >= 9
                && self.buf.len()
                    >= 9 + u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize
            {
                let Some(f) = self.read_frame().await else {
                    break;
                };
                if f.kind == frame::PING && f.flags & frame::ACK != 0 {
                    out.pongs += 1;
                } else if f.kind == frame::PING {
                    out.pings_answered += 1;
                }
                self.answer(&f).await;
            }
        }
        out.closed_after = Some(start.elapsed());
        out.goaway = self.goaway;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::hpack_string;

    #[test]
    fn hpack_string_lengths_use_the_7_bit_prefix_integer() {
        let enc = |n: usize| {
            let mut out = Vec::new();
            hpack_string(&mut out, &vec![b'x'; n]);
            out[..out.len() - n].to_vec()
        };
        assert_eq!(enc(5), vec![5]);
        assert_eq!(enc(126), vec![126]);
        assert_eq!(enc(127), vec![0x7f, 0x00]);
        assert_eq!(enc(300), vec![0x7f, 0xad, 0x01]);
    }
}
