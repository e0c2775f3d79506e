//! What every request needs, built once: configuration, the session domain, routes, users,
//! upstream clients, metrics. Immutable after start; a request holds an `Arc` to it. Built from
//! a validated `Config` by [`Runtime::build`] — the shape a reload needs (build, validate,
//! swap).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::{HeaderName, HeaderValue};

use crate::audit::Audit;
use crate::config::Config;
use crate::login::throttle::Throttle;
use crate::login::users::Users;
use crate::metrics::Metrics;
use crate::proxy::Upstreams;
use crate::routing::Router;
use crate::sessions::{self, Clock, Sessions};
use crate::store::SessionStore;
use crate::web::headers::{IDENTITY_HEADERS, SpoofableHeaders};

pub struct Runtime {
    pub cfg: Config,
    pub sessions: Sessions,
    pub router: Router,
    pub users: Users,
    pub upstreams: Upstreams,
    pub audit: Audit,
    pub metrics: Arc<Metrics>,
    pub throttle: Throttle,
    pub hsts: HeaderValue,
    /// The identity header names, in the order user, roles, session, assertion.
    pub identity_names: Vec<HeaderName>,
    /// Request headers no client may set (`strip` removes them, `framing` refuses look-alikes).
    pub spoofable: SpoofableHeaders,
    /// Binds CSRF tokens to sessions (`csrf.mode = "token"`): one key per access key, so a
    /// token bound before a rotation verifies while its key is in the ring.
    pub csrf_keys: crate::tokens::DerivedKeys,
}

impl Runtime {
    pub fn build(
        cfg: Config,
        store: Arc<dyn SessionStore>,
        users: Users,
        audit: Audit,
        clock: Clock,
    ) -> Result<Self, sessions::BuildError> {
        let mut metrics = Metrics::new();
        metrics.register_audit_dropped(audit.dropped());
        let metrics = Arc::new(metrics);
        let sessions = Sessions::new(&cfg, store, audit.clone(), metrics.clone(), clock)?;
        Ok(Self {
            sessions,
            router: Router::new(&cfg.routes),
            users,
            upstreams: Upstreams::new(&cfg.upstreams, cfg.server.workers),
            audit,
            metrics,
            throttle: Throttle::new(&cfg.login),
            hsts: HeaderValue::from_static("max-age=31536000; includeSubDomains"),
            csrf_keys: crate::tokens::DerivedKeys::from_access(
                &cfg.keys.access_secrets,
                b"sessiongate csrf",
            ),
            identity_names: IDENTITY_HEADERS
                .iter()
                .map(|n| HeaderName::from_static(n))
                .collect(),
            spoofable: SpoofableHeaders::new(
                IDENTITY_HEADERS.iter().copied(),
                &cfg.identity.strip_headers,
            ),
            cfg,
        })
    }

    /// Whether `ip` may tell us the client's address through `X-Forwarded-For`.
    pub fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        self.cfg
            .server
            .trusted_proxies
            .iter()
            .any(|n| n.contains(&ip))
    }
}

/// Facts about one client connection, fixed at accept.
#[derive(Debug, Clone)]
pub struct ConnCtx {
    pub peer: SocketAddr,
    /// The client's address: the peer, or the rightmost untrusted `X-Forwarded-For` hop
    /// when the peer is a trusted proxy (decided per request).
    pub peer_trusted: bool,
    /// HTTP/1 connections: what the framing guard saw in the byte stream.
    pub framing: Option<Arc<crate::framing_guard::FramingLog>>,
}

/// One runtime for pipeline tests and benchmarks: the memory store, no users, audit discarded,
/// fixed secrets, and the `gateway.toml` text given (an upstream is required).
#[cfg(any(test, feature = "testing"))]
pub mod testing {
    use super::*;
    use crate::config::{self, LoadOptions};

    pub const ACCESS_SECRET: &str = "Q3ZqkJ8v0mX2rB7tL9wE4yN6uH1sD5cF0aG8pK3iM2o";
    pub const REFRESH_SECRET: &str = "Zx9Lm2Nq4Rs6Tu8Vw0Yb1Cd3Ef5Gh7Jk9Pq2Sx4Vz6B";

    /// A runtime for `toml`, on `clock`. Panics on a bad config: it is a test's own text.
    #[allow(clippy::panic)]
    pub fn runtime(toml: &str, clock: Clock) -> Runtime {
        let raw = config::parse(toml).unwrap_or_else(|e| panic!("{e}"));
        let env = |n: &str| match n {
            "SESSIONGATE_ACCESS_SECRET" => Some(ACCESS_SECRET.to_string()),
            "SESSIONGATE_REFRESH_SECRET" => Some(REFRESH_SECRET.to_string()),
            _ => None,
        };
        // dev: a test has no certificate or users file on disk.
        let opts = LoadOptions { dev: true };
        let cfg = config::validate(raw, opts, &env).unwrap_or_else(|e| panic!("{e}"));
        let store: Arc<dyn SessionStore> = Arc::new(crate::store::memory::MemoryStore::new());
        let rt = Runtime::build(cfg, store, Users::empty(), Audit::discard(), clock)
            .unwrap_or_else(|e| panic!("{e}"));
        rt.sessions.revoked().set_synced(true);
        rt
    }
}
