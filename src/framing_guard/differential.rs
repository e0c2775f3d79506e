//! The guard against hyper itself: a connection's bytes, written in pieces of given sizes,
//! are served by hyper's real HTTP/1 server (built as the gateway builds it) through a guard,
//! and every request hyper serves before the guard's first conflict must be the head the guard
//! framed at that position — else a request could reach the app unseen. The unit tests drive
//! it with generated connections; the `framing` fuzz target with arbitrary bytes.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{FramingGuard, FramingLog, MALFORMED_HEAD};

/// What one connection came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// The requests hyper served, as `METHOD target`, in order.
    pub served: Vec<String>,
    /// The heads the guard framed, the same way.
    pub heads: Vec<String>,
    /// The index of the guard's first conflict (`u64::MAX`: none).
    pub conflict: u64,
}

impl Served {
    /// Every request hyper served before the guard's first conflict is the head the guard
    /// framed at the same position; the first one that is not, described.
    pub fn disagreement(&self) -> Option<String> {
        for (i, s) in self.served.iter().enumerate() {
            if i as u64 >= self.conflict {
                break;
            }
            if self.heads.get(i) != Some(s) {
                return Some(format!(
                    "request {i}\nhyper: {:?}\nguard: {:?} (conflict at {})",
                    self.served, self.heads, self.conflict
                ));
            }
        }
        None
    }
}

/// Serve `input`, written in pieces of the given sizes (cycled; each at least one byte), with
/// hyper's HTTP/1 server through a guard whose heads may be `max_head` bytes. `read_bodies`:
/// the service reads each request's body before it answers.
pub async fn through_hyper(
    input: &[u8],
    pieces: &[usize],
    read_bodies: bool,
    max_head: usize,
) -> Served {
    let (client, server) = tokio::io::duplex(1 << 16);
    let log = Arc::new(FramingLog::default());
    let served = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let (svc_log, svc_served) = (log.clone(), served.clone());
    let svc = service_fn(move |req: Request<Incoming>| {
        let (log, served) = (svc_log.clone(), svc_served.clone());
        async move {
            served
                .lock()
                .push(format!("{} {}", req.method(), req.uri()));
            let method = req.method().clone();
            if read_bodies {
                let _ = req.into_body().collect().await;
            }
            // What the gateway does with every response (server::conn).
            log.on_response(&method, StatusCode::OK);
            Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
        }
    });
    let guard = FramingGuard::new(server, max_head, log.clone());
    let conn = http1::Builder::new()
        .max_buf_size(max_head)
        .keep_alive(true)
        .serve_connection(TokioIo::new(guard), svc)
        .with_upgrades();
    let server = tokio::spawn(conn);
    let (mut rd, mut wr) = tokio::io::split(client);
    let reader = tokio::spawn(async move {
        let mut sink = Vec::new();
        let _ = rd.read_to_end(&mut sink).await;
    });
    let mut rest = input;
    let mut sizes = pieces.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap_or(&1)).clamp(1, rest.len());
        if wr.write_all(&rest[..n]).await.is_err() {
            break;
        }
        rest = &rest[n..];
        tokio::task::yield_now().await;
    }
    let _ = wr.shutdown().await;
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    reader.abort();
    let served = served.lock().clone();
    let heads = log.heads.lock().clone();
    Served {
        served,
        heads,
        conflict: log.first_conflict.load(Ordering::Relaxed),
    }
}

/// What the guard alone made of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framed {
    /// The heads it framed, as `METHOD target`.
    pub heads: Vec<String>,
    /// The index of its first conflict (`u64::MAX`: none).
    pub conflict: u64,
    /// Why.
    pub reason: Option<&'static str>,
}

impl Framed {
    /// Whether the conflict is a head hyper refuses itself (`400`, the connection closed),
    /// which the guard — like hyper, which parses a partial head again only once a line end
    /// that may end it arrives (`is_complete_fast`) — notices at a point that depends on how
    /// the bytes arrived.
    pub fn refused_head(&self) -> bool {
        self.reason == Some(MALFORMED_HEAD)
    }
}

/// The guard alone, fed `chunks` one after another.
pub fn scan(chunks: &[&[u8]], max_head: usize) -> Framed {
    let log = Arc::new(FramingLog::default());
    let mut g = FramingGuard::new((), max_head, log.clone());
    for c in chunks {
        g.scan(c);
    }
    let heads = log.heads.lock().clone();
    Framed {
        heads,
        conflict: log.first_conflict.load(Ordering::Relaxed),
        reason: log.reason.get().copied(),
    }
}
