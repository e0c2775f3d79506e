//! WebSocket tunnels: once the upstream has answered `101`, the client's connection and the
//! upstream's are joined byte for byte until one side closes — or the gateway ends the tunnel:
//! when it has been silent (no byte either way) for its idle limit, or when its `close_when`
//! completes (the caller's reason: the session was revoked, or reached its absolute end).
//!
//! Threat: a connection that outlives the authority it was opened with. An upgraded connection
//! is never looked at again by the pipeline, so without these limits a socket opened a second
//! before the session's end, or left open on a walked-away machine, would carry the user's
//! identity to the app for as long as the network lets it.
//!
//! The gateway does not parse the frames it relays, so it cannot put a close frame between
//! them; it ends a tunnel by shutting both connections down (TLS `close_notify` to the client,
//! FIN to the upstream) and closing them, which both ends see as the connection closing.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;

/// A future that completes when a tunnel must be closed; its output says why (for the log).
pub type CloseWhen = Pin<Box<dyn Future<Output = &'static str> + Send>>;

/// When the gateway ends a tunnel by itself. The default: never (only the two sides do).
#[derive(Default)]
pub struct Limits {
    /// Closed after this long without a byte in either direction.
    pub idle: Option<Duration>,
    /// Closed when this completes.
    pub close_when: Option<CloseWhen>,
}

/// How long a shutdown may take before the connections are simply dropped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Milliseconds since the tunnel opened at which a byte last moved, shared by both halves.
struct Activity {
    opened: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.opened + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    /// Completes once nothing has moved for `limit`.
    async fn silent_for(&self, limit: Duration) {
        loop {
            let deadline = self.last() + limit;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// One side of the tunnel, noting every byte read from it or written to it.
struct Watched<T> {
    io: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Relay between the client's and the upstream's upgraded connections until either closes or
/// `limits` end the tunnel. `upstream` names the upstream in log lines.
pub(super) async fn relay(client: Upgraded, app: Upgraded, limits: Limits, upstream: &str) {
    let activity = Arc::new(Activity {
        opened: Instant::now(),
        last_ms: AtomicU64::new(0),
    });
    let mut c = Watched {
        io: TokioIo::new(client),
        activity: activity.clone(),
    };
    let mut u = Watched {
        io: TokioIo::new(app),
        activity: activity.clone(),
    };
    let idle = async {
        match limits.idle {
            Some(limit) => activity.silent_for(limit).await,
            None => std::future::pending().await,
        }
    };
    let close_when = async {
        match limits.close_when {
            Some(f) => f.await,
            None => std::future::pending().await,
        }
    };
    let why = tokio::select! {
        r = tokio::io::copy_bidirectional(&mut c, &mut u) => {
            if let Err(e) = r {
                tracing::debug!(upstream = %upstream, error = %e, "websocket tunnel ended by an error");
            }
            return;
        }
        () = idle => "idle: no byte either way for its idle limit",
        why = close_when => why,
    };
    tracing::info!(upstream = %upstream, reason = why, "websocket closed by the gateway");
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
        let _ = c.shutdown().await;
        let _ = u.shutdown().await;
    })
    .await;
}
