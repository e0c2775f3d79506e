//! PROXY protocol (v1 text, v2 binary) on the HTTPS listener, behind L4 load balancers
//! (`server.proxy_protocol`): the balancer writes one header before the client's TLS bytes,
//! and its source address is the client's — the address that throttling, anomaly checks, the
//! per-address connection limit, `X-Forwarded-For` and the audit log then see.
//!
//! Threat: a client that claims another address. A header is read only from a TCP peer in
//! `server.trusted_proxies`; a trusted peer that sends none (or a malformed one) is refused,
//! so a misconfigured balancer fails loudly instead of making every client the balancer. From
//! any other peer no header is read: one it sends is the start of its TLS handshake, which
//! then fails. Parsing is the `ppp` crate's; this module only finds the header's end without
//! reading past it (the bytes after it are the client's TLS handshake).

use std::net::SocketAddr;
use std::time::Duration;

use ppp::{HeaderResult, PartialResult, v1, v2};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The longest header read (v2 with TLVs, or v1's 107 bytes): a balancer's headers are far
/// shorter; anything longer is refused rather than buffered.
const MAX_HEADER: usize = 1024;

/// How long to wait before looking again at a header that has not fully arrived.
const PARTIAL_RETRY: Duration = Duration::from_millis(5);

#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyHeaderError {
    #[error("connection closed before a PROXY protocol header")]
    Closed,
    #[error("no PROXY protocol header from a trusted proxy (server.proxy_protocol)")]
    Missing,
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(String),
    #[error("PROXY protocol header longer than {MAX_HEADER} bytes")]
    TooLong,
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] std::io::Error),
}

/// Read the PROXY header at the start of `tcp`, leaving the stream at the first byte after it.
/// The client's address: the header's source for a proxied TCP connection, `peer` for the
/// balancer's own connections (v2 `LOCAL`, v1 `UNKNOWN`, non-IP families).
pub(crate) async fn read_header(
    tcp: &mut TcpStream,
    peer: SocketAddr,
) -> Result<SocketAddr, ProxyHeaderError> {
    let mut buf = [0u8; MAX_HEADER];
    loop {
        let n = tcp.peek(&mut buf).await?;
        if n == 0 {
            return Err(ProxyHeaderError::Closed);
        }
        let header = HeaderResult::parse(&buf[..n]);
        if header.is_incomplete() {
            if n == buf.len() {
                return Err(ProxyHeaderError::TooLong);
            }
            // `peek` returns at once while any byte is buffered: wait for the rest (the
            // caller's handshake deadline bounds this).
            tokio::time::sleep(PARTIAL_RETRY).await;
            continue;
        }
        let (len, client) = parsed(header, peer).map_err(|e| missing_or(e, &buf[..n]))?;
        tcp.read_exact(&mut buf[..len]).await?;
        return Ok(client);
    }
}

/// The header's length and the client address it names.
fn parsed(
    header: HeaderResult<'_>,
    peer: SocketAddr,
) -> Result<(usize, SocketAddr), ProxyHeaderError> {
    match header {
        HeaderResult::V1(Ok(h)) => {
            let client = match h.addresses {
                v1::Addresses::Tcp4(a) => SocketAddr::from((a.source_address, a.source_port)),
                v1::Addresses::Tcp6(a) => SocketAddr::from((a.source_address, a.source_port)),
                v1::Addresses::Unknown => peer,
            };
            Ok((h.header.len(), client))
        }
        HeaderResult::V2(Ok(h)) => {
            let client = match (h.command, h.addresses) {
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
                    SocketAddr::from((a.source_address, a.source_port))
                }
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
                    SocketAddr::from((a.source_address, a.source_port))
                }
                _ => peer,
            };
            Ok((h.len(), client))
        }
        HeaderResult::V1(Err(e)) => Err(ProxyHeaderError::Malformed(e.to_string())),
        HeaderResult::V2(Err(e)) => Err(ProxyHeaderError::Malformed(e.to_string())),
    }
}

/// A parse error for bytes that start with neither signature is a missing header: the peer
/// went straight to TLS (or spoke something else).
fn missing_or(e: ProxyHeaderError, bytes: &[u8]) -> ProxyHeaderError {
    const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
    if bytes.starts_with(b"PROXY") || bytes.starts_with(V2_SIGNATURE) {
        e
    } else {
        ProxyHeaderError::Missing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: &str = "10.0.0.1:40000";

    fn parse(bytes: &[u8]) -> Result<(usize, SocketAddr), ProxyHeaderError> {
        parsed(HeaderResult::parse(bytes), PEER.parse().unwrap()).map_err(|e| missing_or(e, bytes))
    }

    #[test]
    fn v1_names_the_client_and_its_length_excludes_what_follows() {
        let h = b"PROXY TCP4 192.0.2.7 10.0.0.9 51234 443\r\n";
        let with_tls = [&h[..], &[0x16, 0x03, 0x01]].concat();
        let (len, client) = parse(&with_tls).unwrap();
        assert_eq!(len, h.len());
        assert_eq!(client, "192.0.2.7:51234".parse().unwrap());
        let h6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 51234 443\r\n";
        assert_eq!(parse(h6).unwrap().1, "[2001:db8::7]:51234".parse().unwrap());
        let unknown = b"PROXY UNKNOWN\r\n";
        assert_eq!(
            parse(unknown).unwrap(),
            (unknown.len(), PEER.parse().unwrap())
        );
    }

    #[test]
    fn v2_proxy_names_the_client_and_local_is_the_balancer() {
        let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        h.extend([0x21, 0x11, 0, 12]); // v2 PROXY, TCP over IPv4, 12 address bytes
        h.extend([192, 0, 2, 7, 10, 0, 0, 9]);
        h.extend(51234u16.to_be_bytes());
        h.extend(443u16.to_be_bytes());
        let (len, client) = parse(&[&h[..], b"\x16\x03"].concat()).unwrap();
        assert_eq!((len, client), (h.len(), "192.0.2.7:51234".parse().unwrap()));

        let mut local = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        local.extend([0x20, 0x00, 0, 0]);
        assert_eq!(parse(&local).unwrap(), (16, PEER.parse().unwrap()));
    }

    #[test]
    fn tls_without_a_header_or_a_broken_header_is_refused() {
        let client_hello = [
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ];
        assert!(matches!(
            parse(&client_hello),
            Err(ProxyHeaderError::Missing)
        ));
        assert!(matches!(
            parse(b"PROXY TCP4 300.0.2.7 10.0.0.9 1 443\r\n"),
            Err(ProxyHeaderError::Malformed(_))
        ));
        assert!(matches!(
            parse(b"PROXY TCP9 x\r\n"),
            Err(ProxyHeaderError::Malformed(_))
        ));
        assert!(HeaderResult::parse(b"PROXY TCP4 192.0").is_incomplete());
    }
}
