//! Reload without dropping anything (SIGHUP, `sessiongate reload`): read the files again,
//! validate everything, build a new runtime and TLS configuration, and swap them in atomically.
//!
//! Requests in flight finish on the runtime they started with; each new request (also on a
//! kept-alive connection) and each new TLS handshake uses the new one. What reloads: routes,
//! upstreams, session, policy and identity settings, keys, the users file, the certificate and
//! key, the log level. What is shared across a reload and never lost: sessions (the store),
//! the revocation set, refreshes in flight, the login throttle's counts (unless its limits
//! changed), metrics and the audit trail.
//!
//! What a process cannot change while it runs — listen addresses, serving threads, the store,
//! the audit file, the access log, the log format — refuses the whole reload, naming the key: a reload that silently kept
//! the old value would be a configuration that lies. A failed reload keeps the running
//! configuration, logs every problem with its key, and counts in
//! `sessiongate_reloads_total{outcome="failed"}`.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::{Config, ConfigErrors, StoreConfig};
use crate::login::users::Users;
use crate::metrics::Metrics;
use crate::runtime::Runtime;

/// How the running process reads its configuration again; `main` knows the file, `--dev`
/// and the log format.
pub trait Reload: Send + Sync + 'static {
    /// Read and validate the configuration and the files it names.
    fn load(&self) -> Result<(Config, Users), ConfigErrors>;
    /// The new configuration is live (e.g. apply its log level).
    fn applied(&self, cfg: &Config);
}

/// The live runtime and TLS configuration, swapped as one by [`Live::reload`].
pub struct Live {
    rt: ArcSwap<Runtime>,
    tls: ArcSwap<rustls::ServerConfig>,
    /// The built-in whoami page's address (`--dev` without an upstream): a reload points the
    /// upstream there again.
    whoami: Option<SocketAddr>,
    /// One reload at a time: two signals in a row must not race two builds.
    reloading: tokio::sync::Mutex<()>,
}

impl Live {
    pub fn new(
        rt: Arc<Runtime>,
        tls: Arc<rustls::ServerConfig>,
        whoami: Option<SocketAddr>,
    ) -> Self {
        Self {
            rt: ArcSwap::new(rt),
            tls: ArcSwap::new(tls),
            whoami,
            reloading: tokio::sync::Mutex::new(()),
        }
    }

    /// The runtime a new request runs on.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.rt.load_full()
    }

    /// The TLS configuration a new handshake uses.
    pub fn tls(&self) -> Arc<rustls::ServerConfig> {
        self.tls.load_full()
    }

    /// Build, validate and swap; on any problem keep what runs. Returns the problems, each
    /// naming its key.
    pub async fn reload(&self, from: &dyn Reload) -> Result<(), Vec<String>> {
        let _one = self.reloading.lock().await;
        let old = self.runtime();
        let result = self.build(&old, from);
        match &result {
            // Logged before it is counted: whoever sees the counter move finds the reason.
            Ok((rt, _)) => {
                from.applied(&rt.cfg);
                tracing::info!("configuration reloaded");
                Metrics::outcome(&old.metrics.reloads, "ok");
            }
            Err(problems) => {
                for p in problems {
                    tracing::warn!(problem = p.as_str(), "reload refused");
                }
                tracing::warn!(
                    problems = problems.len(),
                    "reload refused: the running configuration stays"
                );
                Metrics::outcome(&old.metrics.reloads, "failed");
            }
        }
        let (rt, tls) = result?;
        self.tls.store(tls);
        self.rt.store(rt);
        Ok(())
    }

    fn build(
        &self,
        old: &Runtime,
        from: &dyn Reload,
    ) -> Result<(Arc<Runtime>, Arc<rustls::ServerConfig>), Vec<String>> {
        let (mut cfg, users) = from
            .load()
            .map_err(|e| e.0.iter().map(|e| e.to_string()).collect::<Vec<_>>())?;
        let fixed = restart_only(&old.cfg, &cfg);
        if !fixed.is_empty() {
            return Err(fixed);
        }
        if let (Some(addr), true) = (self.whoami, cfg.builtin_whoami)
            && let (Some(up), Ok(auth)) = (cfg.upstreams.first_mut(), addr.to_string().parse())
        {
            up.authority = auth;
        }
        let tls = super::tls::load_server_config(&cfg.tls_cert, &cfg.tls_key)
            .map_err(|e| vec![format!("{}: {e}", e.key())])?;
        let rt = old.rebuild(cfg, users).map_err(|e| vec![e.to_string()])?;
        Ok((Arc::new(rt), Arc::new(tls)))
    }
}

/// The settings a running process cannot change, each named when it differs.
fn restart_only(old: &Config, new: &Config) -> Vec<String> {
    let (o, n) = (&old.server, &new.server);
    let mut out = Vec::new();
    let mut check = |key: &str, same: bool| {
        if !same {
            out.push(format!(
                "{key}: changed, but takes effect only after a restart (the running value stays)"
            ));
        }
    };
    check("server.listen", o.listen == n.listen);
    check(
        "server.redirect_listen",
        o.redirect_listen == n.redirect_listen,
    );
    check("server.admin_listen", o.admin_listen == n.admin_listen);
    check("server.workers", o.workers == n.workers);
    check("server.pid_file", o.pid_file == n.pid_file);
    check(
        "server.max_connections",
        (
            o.max_connections,
            o.max_connections_per_ip,
            o.max_plain_connections,
        ) == (
            n.max_connections,
            n.max_connections_per_ip,
            n.max_plain_connections,
        ),
    );
    check("store", same_store(&old.store, &new.store));
    check("audit.file", old.audit_file == new.audit_file);
    check("access_log", old.access_log == new.access_log);
    check("log.format", old.log_format == new.log_format);
    out
}

fn same_store(a: &StoreConfig, b: &StoreConfig) -> bool {
    match (a, b) {
        (StoreConfig::Memory, StoreConfig::Memory) => true,
        (StoreConfig::Redis(a), StoreConfig::Redis(b)) => {
            let secret =
                |s: &Option<crate::config::Secret>| s.as_ref().map(|s| s.expose().to_vec());
            secret(&a.url) == secret(&b.url)
                && a.cluster_nodes == b.cluster_nodes
                && secret(&a.password) == secret(&b.password)
                && a.pool_size == b.pool_size
                && a.connect_timeout == b.connect_timeout
                && a.command_timeout == b.command_timeout
                && a.key_prefix == b.key_prefix
        }
        _ => false,
    }
}
