//! WebSocket (RFC 6455) from the client's side: the handshake through the gateway, masked text
//! frames out, server frames in, and whether the gateway closed the tunnel.

use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::gateway::Gateway;
use super::raw::read_response;

pub const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// SHA-1, only to check `Sec-WebSocket-Accept` (no sha1 crate in the dependency set).
pub fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64) * 8;
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for chunk in msg.chunks(64) {
        let mut w = [0u32; 80];
        for i in 0..16 {
            w[i] = u32::from_be_bytes(chunk[4 * i..4 * i + 4].try_into().unwrap());
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let (mut a, mut b, mut c, mut d, mut e) = (h[0], h[1], h[2], h[3], h[4]);
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        h[0] = h[0].wrapping_add(a);
        h[1] = h[1].wrapping_add(b);
        h[2] = h[2].wrapping_add(c);
        h[3] = h[3].wrapping_add(d);
        h[4] = h[4].wrapping_add(e);
    }
    let mut out = [0u8; 20];
    for (i, v) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&v.to_be_bytes());
    }
    out
}

pub fn accept_for(key: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(sha1(format!("{key}{WS_GUID}").as_bytes()))
}

pub fn upgrade_request(gw: &Gateway, path: &str, key: &str, cookie: Option<&str>) -> String {
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: {}\r\n",
        gw.host_header(),
        gw.origin()
    );
    if let Some(c) = cookie {
        req.push_str(&format!("Cookie: {c}\r\n"));
    }
    req.push_str("\r\n");
    req
}

pub async fn send_text<S: AsyncWrite + Unpin>(s: &mut S, text: &str) {
    try_send_text(s, text).await.unwrap();
}

/// [`send_text`] that reports a closed connection instead of panicking.
pub async fn try_send_text<S: AsyncWrite + Unpin>(s: &mut S, text: &str) -> std::io::Result<()> {
    let payload = text.as_bytes();
    assert!(payload.len() < 126);
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    s.write_all(&frame).await?;
    s.flush().await
}

/// Read one server frame: (opcode, payload).
pub async fn read_frame<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    s.read_exact(&mut head).await?;
    assert_eq!(head[1] & 0x80, 0, "server frames are not masked");
    let mut len = (head[1] & 0x7f) as u64;
    if len == 126 {
        let mut b = [0u8; 2];
        s.read_exact(&mut b).await?;
        len = u16::from_be_bytes(b) as u64;
    } else if len == 127 {
        let mut b = [0u8; 8];
        s.read_exact(&mut b).await?;
        len = u64::from_be_bytes(b);
    }
    let mut payload = vec![0u8; len as usize];
    s.read_exact(&mut payload).await?;
    Ok((head[0] & 0x0f, payload))
}

pub const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// An upgrade request with exactly these extra headers (no default `Origin`).
pub fn upgrade_request_from(
    path: &str,
    host: &str,
    cookie: Option<&str>,
    headers: &[(&str, &str)],
) -> String {
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n"
    );
    if let Some(c) = cookie {
        req.push_str(&format!("Cookie: {c}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req
}

/// Open a WebSocket through the gateway as a page on its own origin would; asserts the `101`
/// and one echo.
pub async fn open_ws(
    gw: &Gateway,
    path: &str,
    cookie: &str,
    headers: &[(&str, &str)],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let origin = gw.origin();
    let mut all = vec![("Origin", origin.as_str())];
    all.extend_from_slice(headers);
    let mut stream = gw.raw_connect().await;
    stream
        .write_all(upgrade_request_from(path, &gw.host_header(), Some(cookie), &all).as_bytes())
        .await
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), read_response(&mut stream, true))
        .await
        .expect("upgrade answer in time")
        .expect("well-formed upgrade answer");
    assert_eq!(resp.status, 101, "upgrade of {path}: {}", resp.body_text());
    assert_echoes(&mut stream, "opened").await;
    stream
}

pub async fn assert_echoes<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, msg: &str) {
    send_text(s, msg).await;
    let (op, payload) = tokio::time::timeout(Duration::from_secs(10), read_frame(s))
        .await
        .expect("echo in time")
        .expect("echo frame");
    assert_eq!((op, payload.as_slice()), (1, msg.as_bytes()));
}

/// Whether the gateway closes the tunnel (close frame or EOF) within `within`.
pub async fn closed_within<S: AsyncRead + Unpin>(s: &mut S, within: Duration) -> bool {
    tokio::time::timeout(within, async {
        loop {
            match read_frame(s).await {
                Ok((8, _)) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await
    .is_ok()
}
