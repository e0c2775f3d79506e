//! Prometheus metrics (`/metrics` on the admin listener), names prefixed `sessiongate_`, and
//! the process's own (`process_*`, read from `/proc/self` at each scrape). Counters on the
//! request path are resolved once per runtime and label set ([`RequestCounters`]), so counting
//! is an atomic add. `docs/metrics.md` lists every series; a test holds the two together.

mod process;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::family::MetricConstructor;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: String,
}

/// `sessiongate_requests_total`'s labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub outcome: String,
    pub status_class: String,
    /// Where the request was sent (`-`: answered by the gateway).
    pub upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabel {
    pub upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamErrorLabels {
    pub upstream: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnLabels {
    pub listener: String,
    pub protocol: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: String,
    pub revision: String,
}

/// `sessiongate_rate_limited_total`'s label: `session` or `ip`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Scope {
    pub scope: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    pub reason: String,
}

/// What a request came to, for `sessiongate_requests_total{outcome}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestOutcome {
    Forwarded,
    Refused,
    Unauthenticated,
    Gateway,
    Unavailable,
    UpstreamError,
}

impl RequestOutcome {
    const ALL: [RequestOutcome; 6] = [
        RequestOutcome::Forwarded,
        RequestOutcome::Refused,
        RequestOutcome::Unauthenticated,
        RequestOutcome::Gateway,
        RequestOutcome::Unavailable,
        RequestOutcome::UpstreamError,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            RequestOutcome::Forwarded => "forwarded",
            RequestOutcome::Refused => "refused",
            RequestOutcome::Unauthenticated => "unauthenticated",
            RequestOutcome::Gateway => "gateway",
            RequestOutcome::Unavailable => "unavailable",
            RequestOutcome::UpstreamError => "upstream_error",
        }
    }
    fn index(self) -> usize {
        self as usize
    }
}

/// The kinds of `sessiongate_upstream_errors_total{kind}` (`crate::proxy::ProxyError::kind`).
pub const UPSTREAM_ERROR_KINDS: [&str; 5] = ["connect", "tls", "timeout", "reset", "protocol"];

const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// `sessiongate_requests_total` for one runtime's upstreams: each (upstream, outcome, status
/// class) resolved on first use, then an atomic add. A reload builds a new table from the same
/// family (an upstream it adds gets its series; a kept one continues its own).
pub struct RequestCounters {
    family: Family<RequestLabels, Counter>,
    /// `-` (not sent upstream), then the runtime's upstreams in order.
    upstreams: Vec<String>,
    cells: Vec<OnceLock<Counter>>,
    /// `sessiongate_upstream_duration_seconds` of each upstream, in order.
    latency: Vec<Histogram>,
}

impl RequestCounters {
    /// Time to the response headers of upstream `i`.
    pub fn upstream_latency(&self, i: usize, secs: f64) {
        if let Some(h) = self.latency.get(i) {
            h.observe(secs);
        }
    }

    /// Count one request: `upstream` is the index of the upstream it was sent to.
    pub fn count(&self, outcome: RequestOutcome, status: u16, upstream: Option<usize>) {
        let u = upstream.map_or(0, |i| i + 1).min(self.upstreams.len() - 1);
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        let i = (u * RequestOutcome::ALL.len() + outcome.index()) * STATUS_CLASSES.len() + class;
        let Some(cell) = self.cells.get(i) else {
            return;
        };
        cell.get_or_init(|| {
            self.family
                .get_or_create(&RequestLabels {
                    outcome: outcome.as_str().into(),
                    status_class: STATUS_CLASSES[class].into(),
                    upstream: self.upstreams[u].clone(),
                })
                .clone()
        })
        .inc();
    }
}

/// Histogram buckets: exponential from 0.5 ms, doubling, to the first bound past the longest
/// of `timeouts`, and each of `timeouts` itself (the upstreams' timeouts: a request that timed
/// out is in a bucket of its own rather than in `+Inf` with everything slow).
#[derive(Clone)]
pub struct Buckets(Vec<f64>);

impl Buckets {
    pub fn reaching(timeouts: &[Duration]) -> Self {
        let top = timeouts
            .iter()
            .map(Duration::as_secs_f64)
            .fold(0.001, f64::max);
        let mut b: Vec<f64> = timeouts.iter().map(Duration::as_secs_f64).collect();
        let mut x = 0.0005;
        while x <= top {
            b.push(x);
            x *= 2.0;
        }
        b.push(x);
        b.sort_by(f64::total_cmp);
        b.dedup();
        Self(b)
    }
}

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
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
    /// `process_*`, without the prefix.
    process: Registry,
    process_gauges: ProcessGauges,
    pub requests: Family<RequestLabels, Counter>,
    pub refreshes: Family<Outcome, Counter>,
    pub reuse_detections: Counter,
    /// Rotations whose answer never reached the client, reopened in the store.
    pub refreshes_undelivered: Counter,
    /// 1 while the local revocation set is in sync with the store's feed, else 0.
    pub revocation_feed_synced: Gauge,
    pub anomalies: Family<Anomaly, Counter>,
    /// Requests a route's policy refused, or sent back through login (`step_up`), by reason.
    pub policy_denials: Family<Reason, Counter>,
    pub logins: Family<Outcome, Counter>,
    /// Login-throttle entries held after the last sweep, and entries swept since start.
    pub throttle_keys: prometheus_client::metrics::gauge::Gauge,
    pub throttle_swept: Counter,
    /// Configuration reloads by outcome (`ok`, `failed`).
    pub reloads: Family<Outcome, Counter>,
    pub store_seconds: Family<Op, Histogram, Buckets>,
    /// Store operations that failed (unreachable, timed out, refused), by operation.
    pub store_errors: Family<Op, Counter>,
    pub upstream_seconds: Family<UpstreamLabel, Histogram, Buckets>,
    pub upstream_errors: Family<UpstreamErrorLabels, Counter>,
    pub connections_open: Family<ConnLabels, Gauge>,
    pub tls_handshake_failures: Counter,
    pub sessions_created: Counter,
    pub sessions_ended: Family<Reason, Counter>,
    /// Seconds since the local revocation set was last known to be in sync with the store (0
    /// while it is); set at each scrape.
    revocation_feed_lag: prometheus_client::metrics::gauge::Gauge<f64, AtomicU64>,
    feed_alive_ms: AtomicU64,
}

/// The reasons of `sessiongate_sessions_ended_total{reason}`.
pub const SESSION_END_REASONS: [&str; 5] = ["logout", "revoked", "idle", "reuse", "admin"];

fn store_buckets() -> Buckets {
    Buckets::reaching(&[Duration::from_secs(8)])
}

/// Reloads and the login throttle's table: the gateway's own housekeeping.
fn register_operations(
    registry: &mut Registry,
) -> (
    Family<Outcome, Counter>,
    prometheus_client::metrics::gauge::Gauge,
    Counter,
) {
    let reloads = Family::<Outcome, Counter>::default();
    registry.register(
        "reloads",
        "Configuration reloads (SIGHUP) by outcome; a failed one keeps the running configuration",
        reloads.clone(),
    );
    for l in ["ok", "failed"] {
        drop(reloads.get_or_create(&Outcome { outcome: l.into() }));
    }
    let throttle_keys = prometheus_client::metrics::gauge::Gauge::default();
    registry.register(
        "login_throttle_keys",
        "Login-throttle entries (address, account and network, account) after the last sweep",
        throttle_keys.clone(),
    );
    let throttle_swept = Counter::default();
    registry.register(
        "login_throttle_swept",
        "Login-throttle entries removed by the sweeper once their failure window passed",
        throttle_swept.clone(),
    );
    (reloads, throttle_keys, throttle_swept)
}

impl Metrics {
    /// The metrics of a gateway whose upstreams time out after `upstream_timeouts` (the
    /// upstream latency buckets reach each).
    pub fn new(upstream_timeouts: &[Duration]) -> Self {
        let mut registry = Registry::with_prefix("sessiongate");
        let requests = Family::<RequestLabels, Counter>::default();
        let refreshes = Family::<Outcome, Counter>::default();
        let reuse_detections = Counter::default();
        let refreshes_undelivered = Counter::default();
        let revocation_feed_synced = Gauge::default();
        let anomalies = Family::<Anomaly, Counter>::default();
        let policy_denials = Family::<Reason, Counter>::default();
        let logins = Family::<Outcome, Counter>::default();
        let (reloads, throttle_keys, throttle_swept) = register_operations(&mut registry);
        let store_seconds = Family::<Op, Histogram, Buckets>::new_with_constructor(store_buckets());
        let upstream_seconds = Family::<UpstreamLabel, Histogram, Buckets>::new_with_constructor(
            Buckets::reaching(upstream_timeouts),
        );
        registry.register(
            "requests",
            "Requests by outcome, status class and the upstream they were sent to (- when the gateway answered)",
            requests.clone(),
        );
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
        registry.register(
            "policy_denials",
            "Requests a route's policy refused (403), or sent back through login because the login was older than max_auth_age (step_up), by reason",
            policy_denials.clone(),
        );
        registry.register("logins", "Login attempts by result", logins.clone());

        registry.register(
            "store_duration_seconds",
            "Session store operation latency",
            store_seconds.clone(),
        );
        registry.register(
            "upstream_duration_seconds",
            "Time to the upstream's response headers, by upstream (buckets up to the longest upstream timeout)",
            upstream_seconds.clone(),
        );
        let extra = register_observability(&mut registry);
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
        for r in ["method", "deny_roles", "not_allowed", "step_up"] {
            drop(policy_denials.get_or_create(&Reason { reason: r.into() }));
        }
        for signal in ["ip", "user_agent", "refresh_rate"] {
            for action in ["log", "reauth", "revoke"] {
                drop(anomalies.get_or_create(&Anomaly {
                    signal: signal.into(),
                    action: action.into(),
                }));
            }
        }
        let (process, process_gauges) = process_registry();
        Self {
            registry,
            process,
            process_gauges,
            requests,
            refreshes,
            reuse_detections,
            refreshes_undelivered,
            revocation_feed_synced,
            anomalies,
            policy_denials,
            logins,
            reloads,
            throttle_keys,
            throttle_swept,
            store_seconds,
            store_errors: extra.store_errors,
            upstream_seconds,
            upstream_errors: extra.upstream_errors,
            connections_open: extra.connections_open,
            tls_handshake_failures: extra.tls_handshake_failures,
            sessions_created: extra.sessions_created,
            sessions_ended: extra.sessions_ended,
            revocation_feed_lag: extra.revocation_feed_lag,
            feed_alive_ms: AtomicU64::new(crate::util::now_unix_ms()),
        }
    }

    /// The request counters of a runtime with these upstreams, and their upstream series
    /// (latency, errors of each kind) created at zero, so an alert on them has a series.
    pub fn request_counters(&self, upstreams: &[String]) -> RequestCounters {
        let mut names = vec!["-".to_string()];
        names.extend(upstreams.iter().cloned());
        let mut latency = Vec::with_capacity(upstreams.len());
        for u in upstreams {
            latency.push(
                self.upstream_seconds
                    .get_or_create(&UpstreamLabel {
                        upstream: u.clone(),
                    })
                    .clone(),
            );
            for kind in UPSTREAM_ERROR_KINDS {
                drop(self.upstream_errors.get_or_create(&UpstreamErrorLabels {
                    upstream: u.clone(),
                    kind: kind.into(),
                }));
            }
        }
        let cells = (0..names.len() * RequestOutcome::ALL.len() * STATUS_CLASSES.len())
            .map(|_| OnceLock::new())
            .collect();
        let table = RequestCounters {
            family: self.requests.clone(),
            upstreams: names,
            cells,
            latency,
        };
        // The series an error-ratio alert divides by, there from the start.
        for i in 0..upstreams.len() {
            table.cells_init(RequestOutcome::Forwarded, 200, Some(i));
            table.cells_init(RequestOutcome::UpstreamError, 502, Some(i));
        }
        table.cells_init(RequestOutcome::Gateway, 200, None);
        table
    }

    pub fn upstream_error(&self, upstream: &str, kind: &str) {
        self.upstream_errors
            .get_or_create(&UpstreamErrorLabels {
                upstream: upstream.into(),
                kind: kind.into(),
            })
            .inc();
    }

    /// An open connection on `listener` speaking `protocol`, counted until the guard drops.
    pub fn connection(&self, listener: &str, protocol: &str) -> ConnectionOpen {
        let g = self
            .connections_open
            .get_or_create(&ConnLabels {
                listener: listener.into(),
                protocol: protocol.into(),
            })
            .clone();
        g.inc();
        ConnectionOpen(g)
    }

    pub fn session_ended(&self, reason: &str, n: u64) {
        self.sessions_ended
            .get_or_create(&Reason {
                reason: reason.into(),
            })
            .inc_by(n);
    }

    /// The revocation feed is alive: it applied an event or resynchronised just now.
    pub fn feed_alive(&self) {
        self.feed_alive_ms
            .store(crate::util::now_unix_ms(), Ordering::Relaxed);
    }

    pub fn outcome(family: &Family<Outcome, Counter>, s: &str) {
        family.get_or_create(&Outcome { outcome: s.into() }).inc();
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

    /// `sessiongate_rate_limited_total{scope}`: requests refused by a rate limit
    /// (`crate::ratelimit`), by what was limited; both series exist from the start.
    pub fn register_rate_limited(&mut self, family: &Family<Scope, Counter>) {
        self.registry.register(
            "rate_limited",
            "Requests refused with 429 by a rate limit, by what was limited (session, ip)",
            family.clone(),
        );
        for scope in ["session", "ip"] {
            drop(family.get_or_create(&Scope {
                scope: scope.into(),
            }));
        }
    }

    /// Count the access-log lines dropped on a full queue.
    pub fn register_access_log_dropped(&mut self, dropped: &Counter) {
        self.registry.register(
            "access_log_dropped",
            "Access-log lines dropped because the writer fell behind",
            dropped.clone(),
        );
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let now = crate::util::now_unix_ms();
        if self.revocation_feed_synced.get() == 1 {
            self.feed_alive_ms.store(now, Ordering::Relaxed);
        }
        let lag = now.saturating_sub(self.feed_alive_ms.load(Ordering::Relaxed));
        self.revocation_feed_lag.set(lag as f64 / 1000.0);
        self.process_gauges.refresh();
        let mut out = String::new();
        use prometheus_client::encoding::text;
        let _ = text::encode_registry(&mut out, &self.registry);
        let _ = text::encode_registry(&mut out, &self.process);
        let _ = text::encode_eof(&mut out);
        out
    }
}

impl RequestCounters {
    fn cells_init(&self, outcome: RequestOutcome, status: u16, upstream: Option<usize>) {
        let u = upstream.map_or(0, |i| i + 1);
        let class = usize::from(status / 100) - 1;
        let i = (u * RequestOutcome::ALL.len() + outcome.index()) * STATUS_CLASSES.len() + class;
        if let Some(cell) = self.cells.get(i) {
            cell.get_or_init(|| {
                self.family
                    .get_or_create(&RequestLabels {
                        outcome: outcome.as_str().into(),
                        status_class: STATUS_CLASSES[class].into(),
                        upstream: self.upstreams[u].clone(),
                    })
                    .clone()
            });
        }
    }
}

/// One open connection in `sessiongate_connections_open`.
pub struct ConnectionOpen(Gauge);

impl Drop for ConnectionOpen {
    fn drop(&mut self) {
        self.0.dec();
    }
}

struct Observability {
    store_errors: Family<Op, Counter>,
    upstream_errors: Family<UpstreamErrorLabels, Counter>,
    connections_open: Family<ConnLabels, Gauge>,
    tls_handshake_failures: Counter,
    sessions_created: Counter,
    sessions_ended: Family<Reason, Counter>,
    revocation_feed_lag: prometheus_client::metrics::gauge::Gauge<f64, AtomicU64>,
}

/// The series an operator pages on: upstream errors, connections, handshakes, the store's
/// errors, sessions, the revocation feed's lag, the build.
fn register_observability(registry: &mut Registry) -> Observability {
    let o = Observability {
        store_errors: Family::default(),
        upstream_errors: Family::default(),
        connections_open: Family::default(),
        tls_handshake_failures: Counter::default(),
        sessions_created: Counter::default(),
        sessions_ended: Family::default(),
        revocation_feed_lag: Default::default(),
    };
    registry.register(
        "store_errors",
        "Session store operations that failed, by operation",
        o.store_errors.clone(),
    );
    registry.register(
        "upstream_errors",
        "Upstream requests that got no answer, by upstream and kind (connect, tls, timeout, reset, protocol)",
        o.upstream_errors.clone(),
    );
    registry.register(
        "connections_open",
        "Open client connections by listener (https, plain, admin) and protocol (h1, h2)",
        o.connections_open.clone(),
    );
    for (listener, protocol) in [
        ("https", "h1"),
        ("https", "h2"),
        ("plain", "h1"),
        ("admin", "h1"),
    ] {
        drop(o.connections_open.get_or_create(&ConnLabels {
            listener: listener.into(),
            protocol: protocol.into(),
        }));
    }
    registry.register(
        "tls_handshake_failures",
        "TLS handshakes on the HTTPS listener that failed or timed out",
        o.tls_handshake_failures.clone(),
    );
    registry.register(
        "sessions_created",
        "Sessions started (logins, upstream grants, identity-provider sign-ins)",
        o.sessions_created.clone(),
    );
    registry.register(
        "sessions_ended",
        "Sessions ended, by reason (logout, revoked, idle, reuse, admin)",
        o.sessions_ended.clone(),
    );
    for reason in SESSION_END_REASONS {
        drop(o.sessions_ended.get_or_create(&Reason {
            reason: reason.into(),
        }));
    }
    registry.register(
        "revocation_feed_lag_seconds",
        "Seconds since the local revocation set was last known in sync with the store (0 while it is)",
        o.revocation_feed_lag.clone(),
    );
    let build = Family::<BuildLabels, Gauge>::default();
    build
        .get_or_create(&BuildLabels {
            version: crate::version::VERSION.into(),
            revision: crate::version::REVISION.into(),
        })
        .set(1);
    registry.register(
        "build_info",
        "Always 1; its labels name the version and git revision running",
        build,
    );
    o
}

/// The process's own series, read from `/proc/self` at each scrape (Linux).
struct ProcessGauges {
    cpu: Counter<f64, AtomicU64>,
    rss: Gauge,
    fds: Gauge,
    threads: Gauge,
    start: prometheus_client::metrics::gauge::Gauge<f64, AtomicU64>,
}

fn process_registry() -> (Registry, ProcessGauges) {
    let mut r = Registry::default();
    let g = ProcessGauges {
        cpu: Default::default(),
        rss: Gauge::default(),
        fds: Gauge::default(),
        threads: Gauge::default(),
        start: Default::default(),
    };
    r.register(
        "process_cpu_seconds",
        "User and system CPU time spent, in seconds",
        g.cpu.clone(),
    );
    r.register(
        "process_resident_memory_bytes",
        "Resident memory size in bytes",
        g.rss.clone(),
    );
    r.register("process_open_fds", "Open file descriptors", g.fds.clone());
    r.register("process_threads", "OS threads", g.threads.clone());
    r.register(
        "process_start_time_seconds",
        "Start time of the process since the Unix epoch, in seconds",
        g.start.clone(),
    );
    (r, g)
}

impl ProcessGauges {
    fn refresh(&self) {
        let Some(p) = process::read() else {
            return;
        };
        let cpu = p.cpu_seconds - self.cpu.get();
        if cpu > 0.0 {
            self.cpu.inc_by(cpu);
        }
        self.rss.set(i64::try_from(p.rss_bytes).unwrap_or(i64::MAX));
        self.fds.set(i64::try_from(p.open_fds).unwrap_or(i64::MAX));
        self.threads
            .set(i64::try_from(p.threads).unwrap_or(i64::MAX));
        self.start.set(p.start_time);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_buckets_reach_every_timeout() {
        let b = Buckets::reaching(&[Duration::from_secs(30), Duration::from_millis(1500)]).0;
        assert_eq!(b[0], 0.0005);
        assert!(b.contains(&1.5) && b.contains(&30.0), "{b:?}");
        assert!(*b.last().unwrap() > 30.0, "{b:?}");
        assert!(b.windows(2).all(|w| w[0] < w[1]), "{b:?}");
    }

    #[test]
    fn requests_are_counted_by_outcome_status_class_and_upstream() {
        let m = Metrics::new(&[Duration::from_secs(30)]);
        let t = m.request_counters(&["app".into()]);
        t.count(RequestOutcome::Forwarded, 204, Some(0));
        t.count(RequestOutcome::UpstreamError, 504, Some(0));
        t.count(RequestOutcome::Refused, 403, None);
        // A reload's table continues the same series.
        let again = m.request_counters(&["app".into(), "new".into()]);
        again.count(RequestOutcome::Forwarded, 200, Some(0));
        again.count(RequestOutcome::Forwarded, 200, Some(1));
        let text = m.render();
        for line in [
            "sessiongate_requests_total{outcome=\"forwarded\",status_class=\"2xx\",upstream=\"app\"} 2",
            "sessiongate_requests_total{outcome=\"upstream_error\",status_class=\"5xx\",upstream=\"app\"} 1",
            "sessiongate_requests_total{outcome=\"refused\",status_class=\"4xx\",upstream=\"-\"} 1",
            "sessiongate_requests_total{outcome=\"forwarded\",status_class=\"2xx\",upstream=\"new\"} 1",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
    }
}
