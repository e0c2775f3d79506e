//! Graceful drain of a listener's connections, and the one trait the connection driver needs
//! from hyper's connection types.
//!
//! hyper-util's `GracefulShutdown` does not accept an HTTP/1 connection with upgrades, and a
//! connection must also be closable for reasons of its own (the HTTP/2 idle timeout, see
//! [`super::conn`]), so the listener's half is written here: a watch channel whose receivers are
//! the open connections.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::rt::{Read, Write};
use hyper::server::conn::{http1, http2};
use hyper::service::HttpService;
use tokio::sync::watch;

/// The listener's side: tells every open connection to finish, then waits for them.
pub(crate) struct Drain {
    tx: watch::Sender<bool>,
}

/// A connection's side, held for as long as the connection is open.
pub(crate) struct DrainWatch {
    rx: watch::Receiver<bool>,
}

impl Drain {
    pub(crate) fn new() -> Self {
        Drain {
            tx: watch::Sender::new(false),
        }
    }

    pub(crate) fn watcher(&self) -> DrainWatch {
        DrainWatch {
            rx: self.tx.subscribe(),
        }
    }

    /// After the listener stopped accepting: let open connections finish their requests, for
    /// at most `grace`.
    pub(crate) async fn run(self, grace: Duration, what: &str) {
        let open = self.tx.receiver_count();
        self.tx.send_replace(true);
        match tokio::time::timeout(grace, self.tx.closed()).await {
            Ok(()) => tracing::debug!(listener = what, open, "drained"),
            Err(_) => tracing::warn!(
                listener = what,
                open,
                "drain timed out; closing the remaining connections"
            ),
        }
    }
}

impl DrainWatch {
    /// Completes once the listener drains (at once if it already does).
    pub(crate) async fn draining(&mut self) {
        // An error means the listener is gone: draining too.
        let _ = self.rx.wait_for(|d| *d).await;
    }
}

/// A hyper server connection: a future that serves it, and a graceful close (finish the
/// requests in flight, accept no more).
pub(crate) trait GracefulConn: Future {
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<I, S, B> GracefulConn for http1::Connection<I, S>
where
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    I: Read + Write + Unpin + 'static,
    B: Body + 'static,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http1::Connection::graceful_shutdown(self);
    }
}

impl<I, S, B> GracefulConn for http1::UpgradeableConnection<I, S>
where
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    I: Read + Write + Unpin + Send + 'static,
    B: Body + 'static,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http1::UpgradeableConnection::graceful_shutdown(self);
    }
}

impl<I, S, B, E> GracefulConn for http2::Connection<I, S, E>
where
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    I: Read + Write + Unpin,
    B: Body + 'static,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http2::Connection::graceful_shutdown(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_signals_watchers_and_waits_for_them() {
        let drain = Drain::new();
        let mut early = drain.watcher();
        let task = tokio::spawn(async move {
            early.draining().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(early);
        });
        let started = std::time::Instant::now();
        drain.run(Duration::from_secs(5), "test").await;
        assert!(started.elapsed() >= Duration::from_millis(20));
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_watcher_made_after_the_signal_sees_it() {
        let drain = Drain::new();
        drain.tx.send_replace(true);
        let mut late = drain.watcher();
        tokio::time::timeout(Duration::from_secs(1), late.draining())
            .await
            .unwrap();
    }
}
