//! What every request needs, built once: configuration, the session domain, routes, users,
//! upstream clients, metrics. Immutable after start; a request holds an `Arc` to it. Built from
//! a validated `Config` by [`Runtime::build`] — the shape a reload needs (build, validate,
//! swap).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::{HeaderName, HeaderValue};

use crate::access_log::AccessLog;
use crate::audit::Audit;
use crate::config::Config;
use crate::login::throttle::Throttle;
use crate::login::users::Users;
use crate::metrics::{Metrics, RequestCounters};
use crate::proxy::Upstreams;
use crate::ratelimit::RateLimits;
use crate::routing::Router;
use crate::sessions::{self, Clock, Sessions};
use crate::store::SessionStore;
use crate::web::headers::{IDENTITY_HEADERS, SpoofableHeaders};

/// Why a runtime could not be built from a valid configuration.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Sessions(#[from] sessions::BuildError),
    #[error(transparent)]
    Upstream(#[from] crate::proxy::UpstreamError),
}

pub struct Runtime {
    pub cfg: Config,
    pub sessions: Sessions,
    pub router: Router,
    pub users: Users,
    pub upstreams: Upstreams,
    pub audit: Audit,
    pub metrics: Arc<Metrics>,
    /// `sessiongate_requests_total` for this runtime's upstreams.
    pub requests: RequestCounters,
    pub access_log: AccessLog,
    /// Shared with the runtime a reload replaces, while the limits stay the same: a reload
    /// does not forgive failed logins.
    pub throttle: Arc<Throttle>,
    pub hsts: HeaderValue,
    /// The identity header names, in the order user, roles, session, assertion.
    pub identity_names: Vec<HeaderName>,
    /// Request headers no client may set (`strip` removes them, `framing` refuses look-alikes).
    pub spoofable: SpoofableHeaders,
    /// Binds CSRF tokens to sessions (`csrf.mode = "token"`): one key per access key, so a
    /// token bound before a rotation verifies while its key is in the ring.
    pub csrf_keys: crate::tokens::DerivedKeys,
    /// Seals what the gateway keeps about users' second factors (their TOTP secrets in the
    /// store, a sign-in waiting for its code in the page).
    pub sealer: crate::seal::Sealer,
    /// `[rate_limit]` and the routes' own limits, with their buckets.
    pub(crate) rate_limits: crate::ratelimit::RateLimits,
}

impl Runtime {
    pub fn build(
        cfg: Config,
        store: Arc<dyn SessionStore>,
        users: Users,
        audit: Audit,
        access_log: AccessLog,
        clock: Clock,
    ) -> Result<Self, BuildError> {
        let timeouts: Vec<_> = cfg.upstreams.iter().map(|u| u.timeout).collect();
        let mut metrics = Metrics::new(&timeouts);
        metrics.register_audit_dropped(audit.dropped());
        metrics.register_access_log_dropped(access_log.dropped());
        let limits = crate::ratelimit::Shared::new(&mut metrics);
        let metrics = Arc::new(metrics);
        let store = crate::store::instrumented::Instrumented::wrap(store, &metrics);
        let sessions = Sessions::new(&cfg, store, audit.clone(), metrics.clone(), clock)?;
        let throttle = Arc::new(Throttle::new(&cfg.login));
        let limits = RateLimits::new(&cfg.rate_limit, sessions.store().clone(), limits, None);
        Self::assemble(
            cfg,
            sessions,
            users,
            (audit, access_log),
            metrics,
            (throttle, limits),
        )
    }

    /// The runtime for a reloaded configuration (`server::reload`): what the configuration
    /// decides is new (routes, upstreams, settings, keys, users); what must outlive a reload is
    /// shared with `self` (see [`Sessions::reconfigured`]; audit, metrics, and the login
    /// throttle's counts unless its limits changed).
    pub fn rebuild(&self, cfg: Config, users: Users) -> Result<Self, BuildError> {
        let sessions = self.sessions.reconfigured(&cfg)?;
        let (old, new) = (&self.cfg.login, &cfg.login);
        let same_limits = (
            old.max_failures_per_ip,
            old.max_failures_per_user,
            old.max_failures_per_user_total,
            old.failure_window,
        ) == (
            new.max_failures_per_ip,
            new.max_failures_per_user,
            new.max_failures_per_user_total,
            new.failure_window,
        );
        let throttle = if same_limits {
            self.throttle.clone()
        } else {
            Arc::new(Throttle::new(&cfg.login))
        };
        // Buckets whose scope and limit did not change keep their state.
        let limits = RateLimits::new(
            &cfg.rate_limit,
            sessions.store().clone(),
            self.rate_limits.shared().clone(),
            Some(&self.rate_limits),
        );
        Self::assemble(
            cfg,
            sessions,
            users,
            (self.audit.clone(), self.access_log.clone()),
            self.metrics.clone(),
            (throttle, limits),
        )
    }

    fn assemble(
        cfg: Config,
        sessions: Sessions,
        users: Users,
        (audit, access_log): (Audit, AccessLog),
        metrics: Arc<Metrics>,
        (throttle, rate_limits): (Arc<Throttle>, RateLimits),
    ) -> Result<Self, BuildError> {
        let names: Vec<String> = cfg.upstreams.iter().map(|u| u.name.clone()).collect();
        let upstreams = Upstreams::new(&cfg.upstreams, cfg.server.workers)?;
        // The pages are rendered where no runtime is at hand (refusals); the name is the one
        // setting they read, published once the runtime can be built.
        crate::pages::set_product_name(&cfg.ui.product_name);
        Ok(Self {
            requests: metrics.request_counters(&names),
            access_log,
            sessions,
            router: Router::new(&cfg.routes),
            users,
            upstreams,
            audit,
            metrics,
            throttle,
            // Digits and fixed words: always a valid header value.
            hsts: HeaderValue::try_from(cfg.server.hsts.header_value())
                .unwrap_or_else(|_| HeaderValue::from_static("max-age=31536000")),
            rate_limits,
            sealer: crate::seal::Sealer::new(&cfg.keys.refresh_secrets),
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
    pub fn runtime(toml: &str, clock: Clock) -> Runtime {
        let store: Arc<dyn SessionStore> = Arc::new(crate::store::memory::MemoryStore::new());
        runtime_on(toml, clock, store)
    }

    /// [`runtime`] on a store of the test's choosing.
    #[allow(clippy::panic)]
    pub fn runtime_on(toml: &str, clock: Clock, store: Arc<dyn SessionStore>) -> Runtime {
        let raw = config::parse(toml).unwrap_or_else(|e| panic!("{e}"));
        let env = |n: &str| match n {
            "SESSIONGATE_ACCESS_SECRET" => Some(ACCESS_SECRET.to_string()),
            "SESSIONGATE_REFRESH_SECRET" => Some(REFRESH_SECRET.to_string()),
            _ => None,
        };
        // dev: a test has no certificate or users file on disk.
        let opts = LoadOptions { dev: true };
        let cfg = config::validate(raw, opts, &env).unwrap_or_else(|e| panic!("{e}"));
        let rt = Runtime::build(
            cfg,
            store,
            Users::empty(),
            Audit::discard(),
            AccessLog::off(),
            clock,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        rt.sessions.revoked().set_synced(true);
        rt
    }
}
