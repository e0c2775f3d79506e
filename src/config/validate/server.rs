//! `[server]`: the listeners, the public origin, the trusted proxies, HSTS and the connection
//! limits.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

use super::{Errors, check_duration, parse_addr, parse_origin};
use crate::config::raw::RawServer;
use crate::config::{Hsts, PublicOrigin, ServerConfig};

/// hstspreload.org's least `max-age`: one year.
const PRELOAD_MIN_AGE: Duration = Duration::from_secs(31_536_000);

/// Upper bound of the connection limits: far above what file descriptors allow, and within
/// what a semaphore holds.
const MAX_CONNECTIONS: usize = 10_000_000;

/// `None` when `server.listen` or `server.public_origin` is unusable (both recorded).
pub(super) fn validate(s: &RawServer, errs: &mut Errors) -> Option<ServerConfig> {
    let listen = parse_addr(errs, "server.listen", &s.listen, false);
    let redirect_listen = parse_addr(errs, "server.redirect_listen", &s.redirect_listen, true);
    let admin_listen = parse_addr(errs, "server.admin_listen", &s.admin_listen, true);
    let origin = parse_origin(errs, "server.public_origin", &s.public_origin);
    distinct_ports(
        errs,
        &[
            ("server.listen", listen),
            ("server.redirect_listen", redirect_listen),
            ("server.admin_listen", admin_listen),
        ],
    );
    let trusted_proxies = trusted_proxies(errs, &s.trusted_proxies);
    let hsts = hsts(errs, s);
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
        trusted_proxies,
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
        hsts,
    })
}

/// Two listeners cannot share a port on addresses that overlap (the same address, or one of
/// them every address); the kernel chooses port 0, so it never clashes.
fn distinct_ports(errs: &mut Errors, listeners: &[(&str, Option<SocketAddr>)]) {
    for (i, (key, a)) in listeners.iter().enumerate() {
        let Some(a) = a.filter(|a| a.port() != 0) else {
            continue;
        };
        let clash = listeners[..i].iter().find_map(|(other, b)| {
            let b = b.filter(|b| b.port() == a.port())?;
            overlap(a.ip(), b.ip()).then_some((other, b))
        });
        if let Some((other, b)) = clash {
            errs.add(
                *key,
                format!(
                    "{a} is on the port of {other} ({b}): each listener needs a port of its own"
                ),
            );
        }
    }
}

fn overlap(a: IpAddr, b: IpAddr) -> bool {
    a.is_unspecified() || b.is_unspecified() || a.to_canonical() == b.to_canonical()
}

/// `server.trusted_proxies`: IP addresses (one host) or CIDR blocks.
fn trusted_proxies(errs: &mut Errors, written: &[String]) -> Vec<IpNet> {
    let mut nets = Vec::new();
    for (i, p) in written.iter().enumerate() {
        let key = format!("server.trusted_proxies[{i}]");
        let net = match (p.parse::<IpNet>(), p.parse::<IpAddr>()) {
            (Ok(net), _) => net.trunc(),
            (_, Ok(ip)) => IpNet::from(ip),
            _ => {
                errs.add(
                    key,
                    format!(
                        "{p:?} is not an IP address or CIDR block, like \"10.0.0.7\", \
                         \"10.0.0.0/8\" or \"2001:db8::/32\""
                    ),
                );
                continue;
            }
        };
        if net.prefix_len() == 0 {
            errs.warn(
                key,
                format!(
                    "{p:?} trusts every address: any client can set X-Forwarded-For and pick \
                     the address the gateway sees (login throttle, session anomalies, logs)"
                ),
            );
        }
        nets.push(net);
    }
    nets
}

/// `server.hsts_*`. Preloading is refused on terms the preload list would refuse it on.
fn hsts(errs: &mut Errors, s: &RawServer) -> Hsts {
    if s.hsts_preload {
        if s.hsts_max_age < PRELOAD_MIN_AGE {
            errs.add(
                "server.hsts_max_age",
                format!(
                    "must be at least 365d with server.hsts_preload = true (it is {}): the \
                     preload list refuses shorter ones",
                    humantime::format_duration(s.hsts_max_age)
                ),
            );
        }
        if !s.hsts_include_subdomains {
            errs.add(
                "server.hsts_include_subdomains",
                "must be true with server.hsts_preload = true: the preload list covers every \
                 subdomain",
            );
        }
    }
    if s.hsts_max_age.as_secs() == 0 {
        errs.warn(
            "server.hsts_max_age",
            "0 turns HSTS off: browsers forget that this host is HTTPS-only",
        );
    }
    Hsts {
        max_age: s.hsts_max_age,
        include_subdomains: s.hsts_include_subdomains,
        preload: s.hsts_preload,
    }
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
