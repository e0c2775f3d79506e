//! Raw HTTP/1.1 over TLS, for requests no well-behaved client would send (smuggling, duplicate
//! headers, upgrades), and a small parser for the responses.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::gateway::Gateway;

impl Gateway {
    /// A TLS connection (ALPN http/1.1, SNI `localhost`) to the gateway's HTTPS listener.
    pub async fn raw_connect(&self) -> tokio_rustls::client::TlsStream<TcpStream> {
        let tcp = TcpStream::connect(self.https).await.expect("tcp connect");
        let connector = tokio_rustls::TlsConnector::from(self.raw_tls.clone());
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        connector.connect(name, tcp).await.expect("tls handshake")
    }

    /// Write these exact bytes over a fresh TLS connection and read one response.
    pub async fn raw(&self, request: &[u8]) -> RawResponse {
        let mut s = self.raw_connect().await;
        s.write_all(request).await.expect("write raw request");
        s.flush().await.unwrap();
        match tokio::time::timeout(Duration::from_secs(15), read_response(&mut s, true)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => panic!(
                "no well-formed response to raw request {:?}: {e}",
                String::from_utf8_lossy(request)
            ),
            Err(_) => panic!(
                "timed out waiting for a response to raw request {:?}",
                String::from_utf8_lossy(request)
            ),
        }
    }

    /// `GET <target> HTTP/1.1` with the right Host, `Connection: close`, and extra header lines.
    pub async fn raw_get(&self, target: &str, extra_headers: &[(&str, &str)]) -> RawResponse {
        let mut req = format!("GET {target} HTTP/1.1\r\nHost: {}\r\n", self.host_header());
        for (k, v) in extra_headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("Connection: close\r\n\r\n");
        self.raw(req.as_bytes()).await
    }
}

#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body_text()))
    }
}

/// Read one HTTP/1.1 response head (and, when `with_body`, its body) from `s`.
pub async fn read_response<S: AsyncRead + Unpin>(
    s: &mut S,
    with_body: bool,
) -> Result<RawResponse, String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    // Byte by byte so that nothing after the head is consumed (upgrades reuse the stream).
    while !buf.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!(
                "connection closed after {} bytes: {:?}",
                buf.len(),
                String::from_utf8_lossy(&buf)
            ));
        }
        buf.push(byte[0]);
        if buf.len() > 64 * 1024 {
            return Err("response head too large".into());
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("bad status line {status_line:?}"));
    }
    let status: u16 = parts
        .next()
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header line {line:?}"))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let mut resp = RawResponse {
        status,
        headers,
        body: Vec::new(),
    };
    if !with_body || status == 101 || status == 204 || status == 304 || (100..200).contains(&status)
    {
        return Ok(resp);
    }
    if let Some(len) = resp.header("content-length") {
        let len: usize = len.parse().map_err(|_| "bad content-length".to_string())?;
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).await.map_err(|e| e.to_string())?;
        resp.body = body;
    } else if resp
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
        resp.body = dechunk(&rest);
    } else {
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
        resp.body = rest;
    }
    Ok(resp)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(pos) = data.windows(2).position(|w| w == b"\r\n") {
        let size_line = String::from_utf8_lossy(&data[..pos]);
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        data = &data[pos + 2..];
        if size == 0 || data.len() < size {
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[(size + 2).min(data.len())..];
    }
    out
}

/// How long [`read_responses`] waits for more from a connection that stays open.
pub const RAW_IDLE: Duration = Duration::from_secs(3);

impl Gateway {
    /// Write `pieces` over one TLS connection (ALPN http/1.1), each flushed as its own TLS
    /// record, then read every response until the gateway closes the connection (or says
    /// nothing more for [`RAW_IDLE`]). A write the gateway no longer reads is not an error.
    pub async fn raw_exchange(&self, pieces: &[&[u8]]) -> Vec<RawResponse> {
        let mut s = self.raw_connect().await;
        for p in pieces {
            if s.write_all(p).await.is_err() || s.flush().await.is_err() {
                break;
            }
        }
        read_responses(&mut s, RAW_IDLE).await
    }

    /// [`Gateway::raw_exchange`] with every byte in a TLS record of its own, so that each
    /// read of the gateway's may end at any byte of a head or a body.
    pub async fn raw_exchange_bytewise(&self, bytes: &[u8]) -> Vec<RawResponse> {
        let pieces: Vec<&[u8]> = bytes.chunks(1).collect();
        self.raw_exchange(&pieces).await
    }
}

/// Every response on `s`, in order, until it closes, sends something that is not a response,
/// or is silent for `idle`. Informational responses (`100 Continue`) are included.
pub async fn read_responses<S: AsyncRead + Unpin>(s: &mut S, idle: Duration) -> Vec<RawResponse> {
    let mut out = Vec::new();
    while let Ok(Ok(r)) = tokio::time::timeout(idle, read_response(s, true)).await {
        let close = r
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        out.push(r);
        if close {
            break;
        }
    }
    out
}
