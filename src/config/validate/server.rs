//! `[server]`: the listeners, the public origin and the connection limits.

use super::{Errors, check_duration, parse_addr, parse_origin};
use crate::config::raw::RawServer;
use crate::config::{PublicOrigin, ServerConfig};

/// Upper bound of the connection limits: far above what file descriptors allow, and within
/// what a semaphore holds.
const MAX_CONNECTIONS: usize = 10_000_000;

/// `None` when `server.listen` or `server.public_origin` is unusable (both recorded).
pub(super) fn validate(s: &RawServer, errs: &mut Errors) -> Option<ServerConfig> {
    let listen = parse_addr(errs, "server.listen", &s.listen, false);
    let redirect_listen = parse_addr(errs, "server.redirect_listen", &s.redirect_listen, true);
    let admin_listen = parse_addr(errs, "server.admin_listen", &s.admin_listen, true);
    let origin = parse_origin(errs, "server.public_origin", &s.public_origin);
    for (key, d) in [
        ("server.handshake_timeout", s.handshake_timeout),
        ("server.header_read_timeout", s.header_read_timeout),
        ("server.http2_idle_timeout", s.http2_idle_timeout),
    ] {
        check_duration(errs, key, d);
    }
    if s.max_header_bytes < 8192 || s.max_header_bytes > 1024 * 1024 {
        errs.add(
            "server.max_header_bytes",
            "must be between 8192 and 1048576",
        );
    }
    if s.workers > 1024 {
        errs.add(
            "server.workers",
            "must be at most 1024 (0: one per CPU core)",
        );
    }
    for (key, n) in [
        ("server.max_connections", s.max_connections),
        ("server.max_connections_per_ip", s.max_connections_per_ip),
        ("server.max_plain_connections", s.max_plain_connections),
    ] {
        if !(1..=MAX_CONNECTIONS).contains(&n) {
            errs.add(key, format!("must be between 1 and {MAX_CONNECTIONS}"));
        }
    }
    if s.proxy_protocol && s.trusted_proxies.is_empty() {
        errs.add(
            "server.proxy_protocol",
            "needs server.trusted_proxies: the load balancers' addresses (e.g. [\"10.0.0.0/8\"]); \
             a PROXY header is read only from them",
        );
    }
    Some(ServerConfig {
        listen: listen?,
        redirect_listen,
        admin_listen,
        public_origin: PublicOrigin { origin: origin? },
        trusted_proxies: s.trusted_proxies.clone(),
        proxy_protocol: s.proxy_protocol,
        pid_file: (!s.pid_file.is_empty()).then(|| std::path::PathBuf::from(&s.pid_file)),
        handshake_timeout: s.handshake_timeout,
        header_read_timeout: s.header_read_timeout,
        http2_idle_timeout: s.http2_idle_timeout,
        shutdown_grace: s.shutdown_grace,
        max_header_bytes: s.max_header_bytes,
        max_connections: s.max_connections,
        max_connections_per_ip: s.max_connections_per_ip,
        max_plain_connections: s.max_plain_connections,
        workers: if s.workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            s.workers
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_listeners_and_workers_resolve() {
        let raw = RawServer {
            redirect_listen: String::new(),
            admin_listen: String::new(),
            workers: 0,
            ..RawServer::default()
        };
        let mut errs = Errors::default();
        let s = validate(&raw, &mut errs).unwrap();
        assert!(errs.0.is_empty(), "{errs:?}");
        assert_eq!(s.redirect_listen, None);
        assert_eq!(s.admin_listen, None);
        assert!(s.workers >= 1);
        assert_eq!(s.public_origin.origin, "https://localhost:8443");
    }

    #[test]
    fn every_bad_value_is_named() {
        let raw = RawServer {
            listen: "nowhere".into(),
            public_origin: "https://sso.example.com/path".into(),
            max_header_bytes: 100,
            workers: 5000,
            max_connections: 0,
            max_connections_per_ip: 0,
            max_plain_connections: MAX_CONNECTIONS + 1,
            handshake_timeout: std::time::Duration::ZERO,
            http2_idle_timeout: std::time::Duration::from_millis(500),
            ..RawServer::default()
        };
        let mut errs = Errors::default();
        assert!(validate(&raw, &mut errs).is_none());
        let keys: Vec<&str> = errs.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "server.listen",
                "server.public_origin",
                "server.handshake_timeout",
                "server.http2_idle_timeout",
                "server.max_header_bytes",
                "server.workers",
                "server.max_connections",
                "server.max_connections_per_ip",
                "server.max_plain_connections"
            ]
        );
    }
}
