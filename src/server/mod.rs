//! Listeners and their lifecycle: the HTTPS listener, the plain-HTTP redirector, the admin
//! listener, background tasks, and graceful shutdown with a bounded drain.
//!
//! Slow clients cannot hold resources forever: the TLS handshake, the first request (and each
//! request head, also on an idle keep-alive connection), an idle HTTP/2 connection and the
//! upstream's answer each have a timeout ([`conn`]), header size is bounded, and the number of
//! connections is capped — overall, per client address ([`limits`]) and on each plain-HTTP
//! listener.

pub(crate) mod conn;
pub(crate) mod drain;
mod h1;
pub(crate) mod limits;
pub mod pid_file;
pub(crate) mod plain;
pub(crate) mod proxy_protocol;
pub mod reload;
pub(crate) mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use self::drain::Drain;
use self::limits::Admission;
use self::reload::{Live, Reload};

use crate::audit::Audit;
use crate::config::{Config, StoreConfig};
use crate::login::users::Users;
use crate::runtime::Runtime;
use crate::sessions::Clock;
use crate::store::memory::MemoryStore;
use crate::store::{FeedEvent, SessionStore};
use crate::util::now_unix;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr} ({key}): {source}")]
    Bind {
        key: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{key}: {source}")]
    Tls {
        key: &'static str,
        #[source]
        source: tls::TlsError,
    },
    #[error("cannot open the audit file (audit.file): {0}")]
    Audit(#[source] std::io::Error),
    #[error("cannot open the access log file (access_log.file): {0}")]
    AccessLog(#[source] std::io::Error),
    #[error("store: {0}")]
    Store(#[source] crate::store::StoreError),
    #[error("cannot write server.pid_file {path}: {source}")]
    PidFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the built-in whoami page: {0}")]
    Whoami(#[source] std::io::Error),
    #[error(transparent)]
    Runtime(#[from] crate::runtime::BuildError),
}

/// Addresses actually bound (ports may have been chosen by the OS).
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub https: SocketAddr,
    pub http: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
}

/// `n` listening sockets on one address with `SO_REUSEPORT` (the first fixes the port when
/// `addr` asks for port 0).
fn bind_reuseport(addr: SocketAddr, n: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    use socket2::{Domain, Socket, Type};
    let mut out: Vec<std::net::TcpListener> = Vec::with_capacity(n);
    // First a plain bind: it fails when anything else (another gateway included) holds the
    // port, which SO_REUSEPORT sockets would otherwise silently share with it.
    let mut at = std::net::TcpListener::bind(addr)?.local_addr()?;
    for _ in 0..n.max(1) {
        let s = Socket::new(Domain::for_address(at), Type::STREAM, None)?;
        s.set_reuse_address(true)?;
        #[cfg(unix)]
        s.set_reuse_port(true)?;
        s.set_nonblocking(true)?;
        s.bind(&at.into())?;
        s.listen(1024)?;
        let l: std::net::TcpListener = s.into();
        at = l.local_addr()?;
        out.push(l);
    }
    Ok(out)
}

async fn bind(key: &'static str, addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { key, addr, source })
}

/// Run the gateway until `shutdown` completes, then drain for at most
/// `server.shutdown_grace`. `on_ready` is called once every listener is bound. On SIGHUP the
/// configuration is read again through `reloader` and swapped in ([`reload`]).
pub async fn run(
    mut cfg: Config,
    users: Users,
    reloader: Arc<dyn Reload>,
    shutdown: impl Future<Output = ()>,
    on_ready: impl FnOnce(Bound),
) -> Result<(), ServerError> {
    let tls_cfg =
        tls::load_server_config(&cfg.tls_cert, &cfg.tls_key).map_err(|e| ServerError::Tls {
            key: e.key(),
            source: e,
        })?;
    let mut whoami = None;
    if cfg.builtin_whoami {
        let addr = crate::dev::spawn_whoami()
            .await
            .map_err(ServerError::Whoami)?;
        if let (Some(up), Ok(auth)) = (cfg.upstreams.first_mut(), addr.to_string().parse()) {
            up.authority = auth;
        }
        whoami = Some(addr);
    }
    let audit = Audit::start(cfg.audit_file.clone()).map_err(ServerError::Audit)?;
    let (store, memory): (Arc<dyn SessionStore>, Option<Arc<MemoryStore>>) = match &cfg.store {
        StoreConfig::Memory => {
            let m = Arc::new(MemoryStore::new());
            (m.clone(), Some(m))
        }
        StoreConfig::Redis(rc) => (
            crate::store::redis::build(rc).map_err(ServerError::Store)?,
            None,
        ),
    };

    let https = bind_reuseport(cfg.server.listen, cfg.server.workers).map_err(|source| {
        ServerError::Bind {
            key: "server.listen",
            addr: cfg.server.listen,
            source,
        }
    })?;
    let redirect = match cfg.server.redirect_listen {
        Some(a) => Some(bind("server.redirect_listen", a).await?),
        None => None,
    };
    let admin = match cfg.server.admin_listen {
        Some(a) => Some(bind("server.admin_listen", a).await?),
        None => None,
    };
    let bound = Bound {
        https: https[0].local_addr().map_err(|source| ServerError::Bind {
            key: "server.listen",
            addr: cfg.server.listen,
            source,
        })?,
        http: redirect.as_ref().and_then(|l| l.local_addr().ok()),
        admin: admin.as_ref().and_then(|l| l.local_addr().ok()),
    };

    let access_log = crate::access_log::AccessLog::start(&cfg.access_log, cfg.log_format)
        .map_err(ServerError::AccessLog)?;
    let rt = Arc::new(Runtime::build(
        cfg,
        store,
        users,
        audit,
        access_log,
        Clock::system(),
    )?);
    let live = Arc::new(Live::new(rt.clone(), Arc::new(tls_cfg), whoami));
    let is_memory = memory.is_some();
    spawn_background(&live, memory);
    catch_up(&rt, is_memory).await;

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = spawn_https(&live, https, &stop_rx, bound)?;
    if let Some(l) = redirect {
        tasks.push(tokio::spawn(plain::serve(
            l,
            plain::Kind::Redirect,
            live.clone(),
            stop_rx.clone(),
        )));
    }
    if let Some(l) = admin {
        tasks.push(tokio::spawn(plain::serve(
            l,
            plain::Kind::Admin,
            live.clone(),
            stop_rx.clone(),
        )));
    }
    spawn_reload_on_sighup(&live, reloader);
    drop(rt);
    let pid_file = match &live.runtime().cfg.server.pid_file {
        Some(p) => Some(
            pid_file::PidFile::write(p).map_err(|source| ServerError::PidFile {
                path: p.clone(),
                source,
            })?,
        ),
        None => None,
    };
    on_ready(bound);

    shutdown.await;
    tracing::info!(
        target: crate::logging::LIFECYCLE,
        grace_ms = live.runtime().cfg.server.shutdown_grace.as_millis() as u64,
        "shutting down: no new connections, draining"
    );
    // Each listener stops accepting and drains its own connections within the grace.
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    drop(pid_file);
    tracing::info!(target: crate::logging::LIFECYCLE, "stopped");
    Ok(())
}

/// Before serving from a shared store, catch up with revocations made while this instance was
/// away, so a token revoked elsewhere is not accepted here (bounded: when the store is down at
/// start the gateway still starts, in its documented degraded mode, with `/readyz` 503 until
/// it catches up). The memory store is this process: nothing to catch up with.
async fn catch_up(rt: &Arc<Runtime>, is_memory: bool) {
    let revoked = rt.sessions.revoked();
    if is_memory {
        sync_revocations(rt).await;
        return;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while !revoked.is_synced() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if !revoked.is_synced() {
        tracing::warn!(
            "starting before revocations are synchronised: the session store is unreachable"
        );
    }
}

/// Thread per core: each serving thread has its own single-threaded runtime and its own
/// listener on the same port (SO_REUSEPORT: the kernel spreads connections), so a request is
/// handled start to end on one thread — no work stealing, no cross-thread wake-ups.
fn spawn_https(
    live: &Arc<Live>,
    https: Vec<std::net::TcpListener>,
    stop_rx: &watch::Receiver<bool>,
    bound: Bound,
) -> Result<Vec<tokio::task::JoinHandle<()>>, ServerError> {
    let mut tasks = Vec::new();
    // Shared by every serving thread: the limits are the gateway's, not a thread's (fixed at
    // start: a reload does not resize them).
    let rt = live.runtime();
    let admission = Admission::new(
        rt.cfg.server.max_connections,
        rt.cfg.server.max_connections_per_ip,
    );
    for (i, listener) in https.into_iter().enumerate() {
        let (live, stop, admission) = (live.clone(), stop_rx.clone(), admission.clone());
        let thread = std::thread::Builder::new()
            .name(format!("sessiongate-{}", i + 1))
            .spawn(move || {
                crate::worker::set(i + 1);
                let local = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start a serving thread");
                        return;
                    }
                };
                local.block_on(async move {
                    // What a burst freed goes back to the OS once the thread is quiet.
                    tokio::spawn(crate::allocator::give_back());
                    match TcpListener::from_std(listener) {
                        Ok(l) => serve_https(l, live, stop, admission).await,
                        Err(e) => tracing::error!(error = %e, "cannot register a listener"),
                    }
                });
            })
            .map_err(|source| ServerError::Bind {
                key: "server.workers",
                addr: bound.https,
                source,
            })?;
        tasks.push(tokio::task::spawn_blocking(move || {
            let _ = thread.join();
        }));
    }
    Ok(tasks)
}

/// Sweepers, the revocation feed and the activity batcher.
fn spawn_background(live: &Arc<Live>, memory: Option<Arc<MemoryStore>>) {
    let l = live.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(15));
        loop {
            tick.tick().await;
            let now = now_unix();
            // The live runtime at each tick: its throttle and idle timeout.
            let r = l.runtime();
            r.sessions.revoked().sweep(now);
            let (swept, held) = r.throttle.sweep();
            r.metrics.throttle_swept.inc_by(swept as u64);
            r.metrics
                .throttle_keys
                .set(i64::try_from(held).unwrap_or(i64::MAX));
            if let Some(m) = &memory {
                m.sweep(now, r.cfg.session.idle_timeout.as_secs());
            }
        }
    });
    // The revocation set, the store and the activity batcher outlive reloads: the first
    // runtime's are everyone's.
    let rt = live.runtime();
    let r = rt.clone();
    let mut feed = rt.sessions.store().subscribe();
    tokio::spawn(async move {
        loop {
            match feed.recv().await {
                Ok(FeedEvent::Revoked(rev)) => {
                    r.sessions.revoked().insert(&rev.sid, rev.until);
                    r.metrics.feed_alive();
                }
                Ok(FeedEvent::Resynced(list)) => {
                    for rev in list {
                        r.sessions.revoked().insert(&rev.sid, rev.until);
                    }
                    r.sessions.revoked().set_synced(true);
                    r.metrics.feed_alive();
                }
                Ok(FeedEvent::Lost) => r.sessions.revoked().set_synced(false),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "revocation feed lagged; resynchronising");
                    sync_revocations(&r).await;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    let r = rt.clone();
    tokio::spawn(async move { r.sessions.run_activity().await });
}

/// SIGHUP reloads the configuration ([`reload`]); one at a time, each logged and counted.
fn spawn_reload_on_sighup(live: &Arc<Live>, reloader: Arc<dyn Reload>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP: reload is off");
                return;
            }
        };
        let live = live.clone();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the configuration");
                let _ = live.reload(reloader.as_ref()).await;
            }
        });
    }
    #[cfg(not(unix))]
    let _ = (live, reloader);
}

/// Load the revocations still in force from the store before trusting the local set.
async fn sync_revocations(rt: &Runtime) {
    let revoked = rt.sessions.revoked();
    match rt.sessions.store().recent_revocations(now_unix()).await {
        Ok(list) => {
            for r in list {
                revoked.insert(&r.sid, r.until);
            }
            revoked.set_synced(true);
            rt.metrics.feed_alive();
        }
        Err(e) => {
            revoked.set_synced(false);
            tracing::warn!(error = %e, "cannot load revocations; not ready");
        }
    }
}

/// The PROXY header (from a trusted balancer, when `server.proxy_protocol` is on) and the TLS
/// handshake, within `server.handshake_timeout`: the TLS stream, the client's address, and the
/// client's share of the per-address limit when a balancer carried it (the balancer itself is
/// exempt).
async fn accept(
    mut tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: &TlsAcceptor,
    rt: &Runtime,
    admission: &Admission,
) -> Option<(
    tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    SocketAddr,
    Option<limits::IpSlot>,
)> {
    let proxied = rt.cfg.server.proxy_protocol && rt.is_trusted_proxy(peer.ip());
    let handshake = async {
        let mut client = peer;
        let mut slot = None;
        if proxied {
            client = proxy_protocol::read_header(&mut tcp, peer)
                .await
                .map_err(|e| tracing::warn!(%peer, error = %e, "PROXY protocol header refused"))
                .ok()?;
            if !rt.is_trusted_proxy(client.ip()) {
                slot = Some(admission.admit_client(client.ip())?);
            }
        }
        match acceptor.accept(tcp).await {
            Ok(tls) => Some((tls, client, slot)),
            Err(e) => {
                rt.metrics.tls_handshake_failures.inc();
                tracing::debug!(peer = %client, error = %e, "TLS handshake failed");
                None
            }
        }
    };
    match tokio::time::timeout(rt.cfg.server.handshake_timeout, handshake).await {
        Ok(accepted) => accepted,
        Err(_) => {
            rt.metrics.tls_handshake_failures.inc();
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

async fn serve_https(
    listener: TcpListener,
    live: Arc<Live>,
    mut stop: watch::Receiver<bool>,
    admission: Arc<Admission>,
) {
    let drain = Drain::new();
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        // The runtime and certificate live at accept serve this connection's handshake.
        let rt = live.runtime();
        // Before any TLS work: a refused connection costs an accept and a close.
        let Some(admitted) = admission.admit(peer.ip(), rt.is_trusted_proxy(peer.ip())) else {
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = TlsAcceptor::from(live.tls());
        let (live, admission) = (live.clone(), admission.clone());
        let watch = drain.watcher();
        let fut = async move {
            // The handshake's state on the heap, gone once it is done (see `conn::serve`).
            let Some((tls, client, _client_slot)) =
                Box::pin(accept(tcp, peer, &acceptor, &rt, &admission)).await
            else {
                return;
            };
            drop(rt);
            conn::serve(tls, client, live, watch).await;
            drop(admitted);
        };
        tokio::spawn(fut);
    }
    // Closed, not only no longer accepted from: a connection that arrives while the open ones
    // drain is refused at once (its client goes elsewhere) instead of waiting in the kernel's
    // accept queue until the process exits.
    drop(listener);
    drain
        .run(live.runtime().cfg.server.shutdown_grace, "https")
        .await;
}
