//! What every request needs, built once: configuration, keys, routes, store, clients.
//! Immutable after start; a request holds an `Arc` to it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::{HeaderName, HeaderValue};

use crate::assertion::Signer;
use crate::audit::Audit;
use crate::auth::throttle::Throttle;
use crate::auth::users::Users;
use crate::config::Config;
use crate::cookies::CookieNames;
use crate::metrics::Metrics;
use crate::pipeline::anomaly::Fingerprinter;
use crate::pipeline::session::{Activity, RefreshFlights};
use crate::proxy::Upstreams;
use crate::routing::Router;
use crate::store::{RevocationSet, SessionStore};
use crate::tokens::KeyRing;

pub struct Runtime {
    /// Distinguishes runtimes in per-thread caches (tests run several in one process).
    pub id: u64,
    pub cfg: Config,
    pub keys: KeyRing,
    pub cookies: CookieNames,
    pub router: Router,
    pub store: Arc<dyn SessionStore>,
    pub revoked: RevocationSet,
    pub users: Users,
    pub upstreams: Upstreams,
    pub audit: Audit,
    pub flights: RefreshFlights,
    pub activity: Activity,
    pub hsts: HeaderValue,
    /// The identity header names, in the order user, roles, session, assertion.
    pub identity_names: Vec<HeaderName>,
    pub fingerprints: Fingerprinter,
    pub metrics: Metrics,
    pub throttle: Throttle,
    /// Signs `X-Auth-Assertion` when `keys.assertion_key_file` is set.
    pub signer: Option<Signer>,
    /// Binds CSRF tokens to sessions (`csrf.mode = "token"`).
    pub csrf_key: [u8; 32],
}

impl Runtime {
    pub fn new(cfg: Config, store: Arc<dyn SessionStore>, users: Users, audit: Audit) -> Self {
        let keys = KeyRing::from_config(&cfg);
        let cookies = CookieNames::new(&cfg.session).with_drop(
            cfg.login
                .upstream
                .as_ref()
                .map(|u| u.drop_cookies.clone())
                .unwrap_or_default(),
        );
        let router = Router::new(&cfg.routes);
        let upstreams = Upstreams::new(&cfg.upstreams, cfg.server.workers);
        let activity = Activity::new(&cfg.session);
        Self {
            id: rand::random(),
            keys,
            cookies,
            router,
            store,
            revoked: RevocationSet::new(),
            users,
            upstreams,
            audit,
            flights: RefreshFlights::default(),
            activity,
            hsts: HeaderValue::from_static("max-age=31536000; includeSubDomains"),
            fingerprints: Fingerprinter::new(cfg.keys.access_secret.expose(), &cfg.anomaly),
            metrics: Metrics::new(),
            throttle: Throttle::new(&cfg.login),
            signer: cfg.keys.assertion.as_ref().and_then(|a| {
                match Signer::new(a, &cfg.server.public_origin.origin) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        // Validated at load; a failure here is a bug, and assertions are optional.
                        tracing::error!(error = %e, "identity assertions disabled");
                        None
                    }
                }
            }),
            csrf_key: crate::util::hmac_sha256(
                cfg.keys.access_secret.expose(),
                b"sessiongate csrf",
            ),
            identity_names: crate::web::headers::IDENTITY_HEADERS
                .iter()
                .map(|n| HeaderName::from_static(n))
                .collect(),
            cfg,
        }
    }

    /// A runtime on the memory store with no users and audit discarded: for pipeline tests and
    /// benchmarks that drive `pipeline::decide` without sockets.
    pub fn in_memory(cfg: Config) -> Self {
        let store: Arc<dyn SessionStore> = Arc::new(crate::store::memory::MemoryStore::new());
        let rt = Self::new(cfg, store, Users::empty(), Audit::discard());
        rt.revoked.set_synced(true);
        rt
    }

    /// Seconds a revocation must be remembered: as long as an access token can live.
    pub fn revocation_ttl(&self) -> u64 {
        self.cfg.session.access_ttl.as_secs() + 1
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
    pub framing: Option<Arc<crate::server::framing_guard::FramingLog>>,
}
