//! `sessiongate healthcheck`: exit 0 when the running gateway's admin listener answers `GET
//! /readyz` with `200`, for container health checks and exec probes.
//!
//! It reads only `server.admin_listen` from the configuration file, as `run` reads the file
//! (same path, same schema), and validates nothing else: a health check runs without the
//! secrets' environment variables, which validation would need. An admin listener bound to
//! every address (`0.0.0.0`, `::`) is asked on the loopback address of its family. The answer
//! is one line: `ready` on standard output, or the reason on standard error.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;

use crate::config::{self, LoadOptions};

/// How much of a `/readyz` answer's body is read (it says why the gateway is not ready).
const MAX_BODY: usize = 4096;

/// The address `healthcheck` asks, from the configuration file at `path`; the reason when
/// there is none.
pub fn target(path: &Path) -> Result<SocketAddr, String> {
    let parsed = config::read(path, LoadOptions::default()).map_err(|e| e.to_string())?;
    // Every other key is the gateway's business; a problem anywhere in [server] may be one
    // that left admin_listen at its default, which is not what the file says.
    if let Some(p) = parsed.problems.iter().find(|p| p.key.starts_with("server")) {
        return Err(format!("config error: {p}"));
    }
    admin_address(&parsed.raw.server.admin_listen)
}

/// `server.admin_listen` as written → the address to connect to.
pub fn admin_address(admin_listen: &str) -> Result<SocketAddr, String> {
    if admin_listen.is_empty() {
        return Err(
            "server.admin_listen is \"\" (the admin listener is off): there is no /readyz to ask; \
             set server.admin_listen (\"127.0.0.1:9090\")"
                .into(),
        );
    }
    let addr: SocketAddr = admin_listen.parse().map_err(|_| {
        format!("server.admin_listen: {admin_listen:?} is not an address like \"127.0.0.1:9090\"")
    })?;
    if addr.port() == 0 {
        return Err(format!(
            "server.admin_listen: {admin_listen:?} has port 0: the port the gateway bound is not \
             in the file; give the admin listener a fixed port"
        ));
    }
    let ip = match addr.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Ok(SocketAddr::new(ip, addr.port()))
}

/// `GET /readyz` on `addr` within `timeout`: `Ok` with the answer's first line on `200`, else
/// the reason (cannot connect, no answer in time, the status and what the gateway said).
pub async fn probe(addr: SocketAddr, timeout: Duration) -> Result<String, String> {
    let url = format!("http://{addr}/readyz");
    let (status, body) = match tokio::time::timeout(timeout, ask(addr)).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(why)) => return Err(format!("{url}: {why}")),
        Err(_) => {
            return Err(format!(
                "{url}: no answer within {}",
                humantime::format_duration(timeout)
            ));
        }
    };
    let said = first_line(&body);
    if status == hyper::StatusCode::OK {
        Ok(format!("{url}: {} {said}", status.as_u16()))
    } else {
        Err(format!("{url} answered {}: {said}", status.as_u16()))
    }
}

async fn ask(addr: SocketAddr) -> Result<(hyper::StatusCode, Bytes), String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect ({e}): is the gateway running?"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP/1.1: {e}"))?;
    tokio::spawn(conn);
    let req = hyper::Request::get("/readyz")
        .header(hyper::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("request: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("no answer: {e}"))?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| format!("answered {}, then: {e}", status.as_u16()))?
        .to_bytes();
    Ok((status, body))
}

/// The first line of an answer, printable on one line (control characters escaped).
fn first_line(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line = text.lines().next().unwrap_or("").trim();
    line.chars()
        .flat_map(char::escape_default)
        .take(200)
        .collect()
}

/// The whole command: `Ok(line)` when ready, `Err(reason)` otherwise.
pub fn run(config_path: &Path, timeout: Duration) -> Result<String, String> {
    let addr = target(config_path)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    rt.block_on(probe(addr, timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_address_is_asked_on_loopback_and_others_as_written() {
        let ok = |s: &str| admin_address(s).unwrap().to_string();
        assert_eq!(ok("0.0.0.0:9090"), "127.0.0.1:9090");
        assert_eq!(ok("[::]:9090"), "[::1]:9090");
        assert_eq!(ok("127.0.0.1:9090"), "127.0.0.1:9090");
        assert_eq!(ok("10.1.2.3:9191"), "10.1.2.3:9191");
        assert_eq!(ok("[::1]:9090"), "[::1]:9090");
    }

    #[test]
    fn off_unparsable_and_port_zero_are_reasons_naming_the_key() {
        for bad in ["", "localhost:9090", "127.0.0.1", "127.0.0.1:0"] {
            let why = admin_address(bad).unwrap_err();
            assert!(why.starts_with("server.admin_listen"), "{bad:?}: {why}");
            assert!(!why.contains('\n'), "{why}");
        }
    }

    #[test]
    fn an_answer_is_quoted_on_one_line() {
        assert_eq!(first_line(b"ready\n"), "ready");
        assert_eq!(first_line(b"not ready: x\nmore"), "not ready: x");
        assert_eq!(first_line(b"a\x1b[31mb"), "a\\u{1b}[31mb");
        assert_eq!(first_line(&[b'x'; 500]).len(), 200);
    }
}
