//! Prometheus metrics (`/metrics` on the admin listener), names prefixed `sessiongate_`.
//! Counters on the request path are resolved once at start, so counting is an atomic add.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Op {
    pub op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Anomaly {
    pub signal: String,
    pub action: String,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<Outcome, Counter>,
    pub refreshes: Family<Outcome, Counter>,
    pub reuse_detections: Counter,
    /// Rotations whose answer never reached the client, reopened in the store.
    pub refreshes_undelivered: Counter,
    /// 1 while the local revocation set is in sync with the store's feed, else 0.
    pub revocation_feed_synced: Gauge,
    pub anomalies: Family<Anomaly, Counter>,
    pub logins: Family<Outcome, Counter>,
    /// Login-throttle entries held after the last sweep, and entries swept since start.
    pub throttle_keys: prometheus_client::metrics::gauge::Gauge,
    pub throttle_swept: Counter,
    /// Configuration reloads by outcome (`ok`, `failed`).
    pub reloads: Family<Outcome, Counter>,
    pub store_seconds: Family<Op, Histogram>,
    pub upstream_seconds: Histogram,
    /// Pre-resolved request outcomes for the hot path.
    pub req_forwarded: Counter,
    pub req_refused: Counter,
    pub req_unauthenticated: Counter,
    pub req_gateway: Counter,
    pub req_unavailable: Counter,
    pub req_upstream_error: Counter,
}

fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 14))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sessiongate");
        let requests = Family::<Outcome, Counter>::default();
        let refreshes = Family::<Outcome, Counter>::default();
        let reuse_detections = Counter::default();
        let refreshes_undelivered = Counter::default();
        let revocation_feed_synced = Gauge::default();
        let anomalies = Family::<Anomaly, Counter>::default();
        let logins = Family::<Outcome, Counter>::default();
        let reloads = Family::<Outcome, Counter>::default();
        let throttle_keys = prometheus_client::metrics::gauge::Gauge::default();
        let throttle_swept = Counter::default();
        registry.register(
            "login_throttle_keys",
            "Login-throttle entries (address, account and network, account) after the last sweep",
            throttle_keys.clone(),
        );
        registry.register(
            "login_throttle_swept",
            "Login-throttle entries removed by the sweeper once their failure window passed",
            throttle_swept.clone(),
        );
        let store_seconds =
            Family::<Op, Histogram>::new_with_constructor(latency as fn() -> Histogram);
        let upstream_seconds = latency();
        registry.register("requests", "Requests by outcome", requests.clone());
        registry.register(
            "refreshes",
            "Refresh-token rotations by result",
            refreshes.clone(),
        );
        registry.register(
            "refresh_reuse_detections",
            "Rotated-out refresh tokens presented (sessions revoked)",
            reuse_detections.clone(),
        );
        registry.register(
            "refreshes_undelivered",
            "Rotations whose new cookies never reached the client (its previous refresh token stays valid until the new one is used)",
            refreshes_undelivered.clone(),
        );
        registry.register(
            "revocation_feed_synced",
            "1 while the local revocation set is in sync with the store, 0 while requests are confirmed with the store instead",
            revocation_feed_synced.clone(),
        );
        registry.register(
            "anomalies",
            "Session anomalies by signal and action",
            anomalies.clone(),
        );
        registry.register("logins", "Login attempts by result", logins.clone());
        registry.register(
            "reloads",
            "Configuration reloads (SIGHUP) by outcome; a failed one keeps the running configuration",
            reloads.clone(),
        );
        for l in ["ok", "failed"] {
            drop(reloads.get_or_create(&Outcome { outcome: l.into() }));
        }
        registry.register(
            "store_duration_seconds",
            "Session store operation latency",
            store_seconds.clone(),
        );
        registry.register(
            "upstream_duration_seconds",
            "Time to the upstream's response headers",
            upstream_seconds.clone(),
        );
        // Known series exist from the start, so an alert on a missing series means something.
        for l in ["ok", "failed", "throttled", "unavailable", "grant_refused"] {
            drop(logins.get_or_create(&Outcome { outcome: l.into() }));
        }
        for l in [
            "rotated",
            "grace",
            "reused",
            "idle",
            "not_found",
            "unavailable",
        ] {
            drop(refreshes.get_or_create(&Outcome { outcome: l.into() }));
        }
        for signal in ["ip", "user_agent"] {
            for action in ["log", "reauth", "revoke"] {
                drop(anomalies.get_or_create(&Anomaly {
                    signal: signal.into(),
                    action: action.into(),
                }));
            }
        }
        for op in ["create", "rotate"] {
            drop(store_seconds.get_or_create(&Op { op: op.into() }));
        }
        let o = |s: &str| -> Counter {
            requests
                .get_or_create(&Outcome { outcome: s.into() })
                .clone()
        };
        let (req_forwarded, req_refused, req_unauthenticated, req_gateway) = (
            o("forwarded"),
            o("refused"),
            o("unauthenticated"),
            o("gateway"),
        );
        let (req_unavailable, req_upstream_error) = (o("unavailable"), o("upstream_error"));
        Self {
            req_unavailable,
            req_upstream_error,
            req_forwarded,
            req_refused,
            req_unauthenticated,
            req_gateway,
            registry,
            requests,
            refreshes,
            reuse_detections,
            refreshes_undelivered,
            revocation_feed_synced,
            anomalies,
            logins,
            reloads,
            throttle_keys,
            throttle_swept,
            store_seconds,
            upstream_seconds,
        }
    }

    pub fn outcome(family: &Family<Outcome, Counter>, s: &str) {
        family.get_or_create(&Outcome { outcome: s.into() }).inc();
    }

    pub fn store_op(&self, op: &str, secs: f64) {
        self.store_seconds
            .get_or_create(&Op { op: op.into() })
            .observe(secs);
    }

    /// Count the audit events dropped on a full queue (`audit::QUEUE`) as
    /// `sessiongate_audit_events_dropped_total`.
    pub fn register_audit_dropped(&mut self, dropped: &Counter) {
        self.registry.register(
            "audit_events_dropped",
            "Audit events dropped because the writer fell behind (the trail notes each gap)",
            dropped.clone(),
        );
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
