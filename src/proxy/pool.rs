//! Keep-alive connections to one upstream, for one serving thread: hyper's low-level HTTP/1.1
//! client (`client::conn::http1`) under a stack of idle connections.
//!
//! In place of hyper-util's pooled client, whose every request hashed a pool key with SipHash,
//! took and gave back a pooled handle through a shared map, and spawned a task to wait for the
//! connection to become idle again (about 7% of the gateway's instructions per proxied
//! request). Here a thread takes the most recently used idle connection from its own stack, and
//! the response body gives it back once hyper has read that response to its end
//! ([`crate::body::Upstream`]); a connection whose response was not read to its end, or that
//! was upgraded, is never reused, and one still sending its request's body (the app answered
//! first) is kept only once hyper can take another request on it. A request that a reused
//! connection could not even begin to send (the upstream had closed it while it waited) is sent
//! again on another, as hyper-util does; one that was sent is never repeated.
//!
//! Bounded: at most [`MAX_IDLE`] idle connections per upstream and thread, each closed after
//! [`IDLE_TIMEOUT`] unused (a sweep runs while any is idle).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tower_service::Service;

use crate::body::Body;

/// Idle connections kept per upstream and serving thread.
pub(super) const MAX_IDLE: usize = 1024;
/// An idle connection unused this long is closed.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How a new connection is opened: TCP, or TCP then TLS for an `https://` upstream (whose
/// connector refuses to connect without TLS).
#[derive(Clone)]
pub(super) enum Connector {
    Plain(HttpConnector),
    Tls(HttpsConnector<HttpConnector>),
}

/// Why an upstream request got no response.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection: TCP or the TLS handshake failed.
    #[error("client error (Connect)")]
    Connect(#[source] BoxError),
    /// The request or its response broke off.
    #[error("client error (SendRequest)")]
    Request(#[source] hyper::Error),
}

impl SendError {
    pub fn is_connect(&self) -> bool {
        matches!(self, SendError::Connect(_))
    }
}

struct Idle {
    tx: SendRequest<Incoming>,
    since: Instant,
}

/// One upstream's idle connections on one serving thread (the lock is never contended: only
/// that thread takes and gives back).
pub(super) struct Pool {
    connector: Connector,
    /// `scheme://authority/`, what the connector opens.
    target: Uri,
    /// `Host` for a request that carries none (`upstream.preserve_host = false`).
    host: HeaderValue,
    idle: Mutex<Vec<Idle>>,
    sweeping: AtomicBool,
}

impl Pool {
    pub(super) fn new(connector: Connector, target: Uri, host: HeaderValue) -> Arc<Self> {
        Arc::new(Self {
            connector,
            target,
            host,
            idle: Mutex::new(Vec::new()),
            sweeping: AtomicBool::new(false),
        })
    }

    /// Send `req` (its target in absolute form, as `pipeline::forwarding` leaves it) and return
    /// the response head with the connection it came on, for [`crate::body::Upstream`] to give
    /// back when the body has been read.
    pub(super) async fn send(
        &self,
        mut req: Request<Incoming>,
    ) -> Result<(Response<Incoming>, SendRequest<Incoming>), SendError> {
        if !req.headers().contains_key(header::HOST) {
            req.headers_mut().insert(header::HOST, self.host.clone());
        }
        let origin = req.uri().path_and_query().cloned();
        *req.uri_mut() = origin.map_or_else(|| Uri::from_static("/"), Uri::from);
        loop {
            let (mut tx, reused) = match self.take() {
                Some(tx) => (tx, true),
                // Boxed: a new connection is the rare case, and its future (the connector's,
                // the TLS handshake's) would otherwise be carried by every request's.
                None => (Box::pin(self.connect()).await?, false),
            };
            match tx.try_send_request(req).await {
                Ok(resp) => return Ok((resp, tx)),
                Err(mut e) => match e.take_message() {
                    // Never written: the pooled connection had been closed.
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(SendError::Request(e.into_error())),
                },
            }
        }
    }

    /// An upstream response's body, carrying `conn` back to this pool once it is read to its
    /// end.
    pub(super) fn body(self: &Arc<Self>, body: Incoming, conn: SendRequest<Incoming>) -> Body {
        let pool: Arc<dyn crate::body::Reuse> = self.clone();
        Body::Upstream(crate::body::Upstream::new(body, conn, pool))
    }

    /// The most recently used idle connection that is still open and ready (one that is not
    /// has been closed since it was kept: it is dropped).
    fn take(&self) -> Option<SendRequest<Incoming>> {
        loop {
            let tx = self.lock().pop()?.tx;
            if !tx.is_closed() && tx.is_ready() {
                return Some(tx);
            }
        }
    }

    /// Keep a ready connection for the next request.
    fn keep(self: Arc<Self>, tx: SendRequest<Incoming>) {
        {
            let mut idle = self.lock();
            if idle.len() >= MAX_IDLE {
                return;
            }
            idle.push(Idle {
                tx,
                since: Instant::now(),
            });
        }
        if !self.sweeping.swap(true, Ordering::AcqRel) {
            // Outside a runtime (it is shutting down) nothing can sweep; nothing needs to.
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(sweep(Arc::downgrade(&self)));
            }
        }
    }

    async fn connect(&self) -> Result<SendRequest<Incoming>, SendError> {
        match self.connector.clone() {
            Connector::Plain(mut c) => {
                let io = c
                    .call(self.target.clone())
                    .await
                    .map_err(|e| SendError::Connect(e.into()))?;
                handshake(io).await
            }
            Connector::Tls(mut c) => {
                let io = c
                    .call(self.target.clone())
                    .await
                    .map_err(SendError::Connect)?;
                handshake(io).await
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Close the connections idle for longer than [`IDLE_TIMEOUT`] (or closed by the upstream);
    /// whether any is left.
    fn expire(&self, now: Instant) -> bool {
        let mut idle = self.lock();
        idle.retain(|i| !i.tx.is_closed() && now.duration_since(i.since) < IDLE_TIMEOUT);
        !idle.is_empty()
    }
}

/// HTTP/1.1 over a new connection; its task runs on the current thread's runtime until the
/// connection closes (or is upgraded).
async fn handshake<T>(io: T) -> Result<SendRequest<Incoming>, SendError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (tx, conn) = http1::handshake(io).await.map_err(SendError::Request)?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upstream connection ended");
        }
    });
    Ok(tx)
}

impl crate::body::Reuse for Pool {
    fn reuse(self: Arc<Self>, mut tx: SendRequest<Incoming>) {
        if tx.is_closed() {
            return;
        }
        // Almost always: hyper went idle as it read the response's end.
        if tx.is_ready() {
            self.keep(tx);
            return;
        }
        // Not idle yet: the request's body may still be on its way (an app that answered
        // before reading all of it). Kept once hyper can take another request, never before: a
        // request given this connection now would wait for another's body.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if tx.ready().await.is_ok() {
                    self.keep(tx);
                }
            });
        }
    }
}

/// Expire idle connections every half timeout while any is idle and the pool exists (a reload
/// drops the pool, and its connections with it).
async fn sweep(pool: Weak<Pool>) {
    loop {
        tokio::time::sleep(IDLE_TIMEOUT / 2).await;
        let Some(p) = pool.upgrade() else { return };
        if p.expire(Instant::now()) {
            continue;
        }
        p.sweeping.store(false, Ordering::Release);
        // A connection given back between the sweep and the store started no sweeper.
        if !p.expire(Instant::now()) || p.sweeping.swap(true, Ordering::AcqRel) {
            return;
        }
    }
}

/// `Host` for the upstream's authority, the port left out when it is the scheme's default
/// (what hyper-util's client sent).
pub(super) fn host_value(
    scheme: &http::uri::Scheme,
    authority: &http::uri::Authority,
) -> HeaderValue {
    let default = if *scheme == http::uri::Scheme::HTTPS {
        443
    } else {
        80
    };
    let host = match authority.port_u16() {
        Some(p) if p != default => format!("{}:{p}", authority.host()),
        _ => authority.host().to_string(),
    };
    HeaderValue::from_str(&host).unwrap_or_else(|_| HeaderValue::from_static("localhost"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::io::{Read, Write};
    use std::sync::mpsc;

    #[test]
    fn host_leaves_out_the_default_port() {
        let cases = [
            ("http", "app:80", "app"),
            ("http", "app:8080", "app:8080"),
            ("https", "app:443", "app"),
            ("https", "app:80", "app:80"),
            ("http", "127.0.0.1:9000", "127.0.0.1:9000"),
            ("http", "[::1]:9000", "[::1]:9000"),
            ("https", "[::1]", "[::1]"),
        ];
        for (scheme, authority, want) in cases {
            let s: http::uri::Scheme = scheme.parse().unwrap();
            let a: http::uri::Authority = authority.parse().unwrap();
            assert_eq!(host_value(&s, &a), want, "{scheme}://{authority}");
        }
    }

    /// A request as the gateway holds one: its body an `Incoming` from a real hyper server
    /// connection (over an in-memory pipe).
    async fn incoming(path: &str) -> Request<Incoming> {
        incoming_with(path, "", b"").await
    }

    /// The same, its head carrying `extra` header lines and followed by `body` (of which the
    /// head may promise more).
    async fn incoming_with(path: &str, extra: &str, body: &[u8]) -> Request<Incoming> {
        let (client, server) = tokio::io::duplex(4096);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let tx = std::sync::Mutex::new(Some(tx));
        let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
            if let Some(tx) = tx.lock().unwrap().take() {
                let _ = tx.send(req);
            }
            std::future::pending::<Result<Response<Body>, std::convert::Infallible>>()
        });
        tokio::spawn(
            hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(server), svc),
        );
        let mut client = client;
        let head = format!("POST {path} HTTP/1.1\r\nhost: gw\r\n{extra}\r\n");
        let mut sent = head.into_bytes();
        sent.extend_from_slice(body);
        tokio::io::AsyncWriteExt::write_all(&mut client, &sent)
            .await
            .unwrap();
        tokio::spawn(async move {
            let _keep = client;
            std::future::pending::<()>().await
        });
        let mut req = rx.await.unwrap();
        *req.uri_mut() = format!("http://upstream{path}").parse().unwrap();
        req
    }

    /// An app on a blocking thread: it answers each request with its connection's number; with
    /// `close_first`, it closes the first connection after its first answer, when told to (and
    /// says when).
    struct App {
        port: u16,
        close_first: mpsc::Sender<()>,
        closed: mpsc::Receiver<()>,
        accepted: Arc<std::sync::atomic::AtomicUsize>,
    }

    fn app(closes: bool) -> App {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (close_first, close_rx) = mpsc::channel::<()>();
        let (closed_tx, closed) = mpsc::channel::<()>();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            let mut close_rx = Some(close_rx).filter(|_| closes);
            for (n, conn) in listener.incoming().enumerate() {
                let Ok(mut conn) = conn else { return };
                count.fetch_add(1, Ordering::SeqCst);
                let first = close_rx.take().filter(|_| n == 0);
                let closed_tx = closed_tx.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    let mut seen = Vec::new();
                    loop {
                        match conn.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(k) => seen.extend_from_slice(&buf[..k]),
                        }
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n{n}");
                            conn.write_all(answer.as_bytes()).unwrap();
                        }
                        if let Some(rx) = &first {
                            let _ = rx.recv();
                            drop(conn);
                            let _ = closed_tx.send(());
                            return;
                        }
                    }
                });
            }
        });
        App {
            port,
            close_first,
            closed,
            accepted,
        }
    }

    fn pool_to(port: u16) -> Arc<Pool> {
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(true);
        let target: Uri = format!("http://127.0.0.1:{port}/").parse().unwrap();
        Pool::new(
            Connector::Plain(tcp),
            target,
            HeaderValue::from_static("upstream"),
        )
    }

    async fn read_through(pool: &Arc<Pool>, path: &str) -> String {
        let (resp, tx) = pool.send(incoming(path).await).await.unwrap();
        let bytes = pool
            .body(resp.into_body(), tx)
            .collect()
            .await
            .unwrap()
            .to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_response_read_to_its_end_gives_its_connection_back() {
        let app = app(false);
        let pool = pool_to(app.port);
        assert_eq!(read_through(&pool, "/a").await, "0");
        assert_eq!(pool.lock().len(), 1);
        assert_eq!(read_through(&pool, "/b").await, "0", "the same connection");
        assert_eq!(app.accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_response_dropped_before_its_end_closes_its_connection() {
        let app = app(false);
        let pool = pool_to(app.port);
        let (resp, tx) = pool.send(incoming("/a").await).await.unwrap();
        drop(pool.body(resp.into_body(), tx));
        assert_eq!(
            pool.lock().len(),
            0,
            "an unread response's connection was kept"
        );
        assert_eq!(read_through(&pool, "/b").await, "1", "a new connection");
    }

    /// The app closed an idle connection and the close is in the socket, but the gateway's
    /// connection task has not run since: the request is taken by hyper, found unsendable, and
    /// handed back; it goes on a new connection.
    #[tokio::test]
    async fn a_request_a_closed_pooled_connection_could_not_send_goes_on_another() {
        let app = app(true);
        let pool = pool_to(app.port);
        assert_eq!(read_through(&pool, "/a").await, "0");
        app.close_first.send(()).unwrap();
        app.closed.recv().unwrap();
        // Blocking, so that no task of this runtime runs before the next send.
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(read_through(&pool, "/b").await, "1");
        assert_eq!(app.accepted.load(Ordering::SeqCst), 2);
    }

    /// The app answers before the request's body has all arrived (the client is still
    /// sending it): the connection is busy until that body ends, so the next request must not
    /// be given it (it would wait for another request's body) but a new one.
    #[tokio::test]
    async fn a_connection_still_sending_a_request_body_is_not_handed_out() {
        let app = app(false);
        let pool = pool_to(app.port);
        let req = incoming_with("/a", "content-length: 10\r\n", b"12345").await;
        let (resp, tx) = pool.send(req).await.unwrap();
        let body = pool.body(resp.into_body(), tx);
        assert_eq!(body.collect().await.unwrap().to_bytes(), "0");
        let next = tokio::time::timeout(Duration::from_secs(10), read_through(&pool, "/b")).await;
        assert_eq!(
            next.ok().as_deref(),
            Some("1"),
            "the next request waited on a busy connection"
        );
        assert_eq!(app.accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn idle_connections_expire() {
        let app = app(false);
        let pool = pool_to(app.port);
        read_through(&pool, "/a").await;
        let now = Instant::now();
        assert!(pool.expire(now), "a fresh idle connection is kept");
        assert!(!pool.expire(now + IDLE_TIMEOUT), "an expired one is closed");
        assert_eq!(pool.lock().len(), 0);
    }
}
