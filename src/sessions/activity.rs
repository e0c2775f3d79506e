//! Batched `last_seen` updates: at most one per session per interval, sent to a background
//! task; never awaited by a request. Keeps the idle timeout and the sessions page true without
//! a store round trip per request.

use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::mpsc;

use crate::config::SessionConfig;
use crate::store::SessionStore;

/// Bound of the queue to the writer; a full queue drops an update (the next interval carries
/// it).
const QUEUE: usize = 4096;
/// Above this many remembered sessions, those quiet for four intervals are forgotten. The
/// table is thus bounded by the sessions active within four intervals (at most four minutes),
/// which the store holds anyway; its keys are ids of verified sessions, never client input.
const REMEMBERED: usize = 10_000;

pub struct Activity {
    last: DashMap<String, u64>,
    tx: mpsc::Sender<(String, String, u64)>,
    rx: parking_lot::Mutex<Option<mpsc::Receiver<(String, String, u64)>>>,
    interval: u64,
}

impl Activity {
    pub fn new(s: &SessionConfig) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let interval = (s.idle_timeout.as_secs() / 2).clamp(1, 60);
        Self {
            last: DashMap::new(),
            tx,
            rx: parking_lot::Mutex::new(Some(rx)),
            interval,
        }
    }

    /// Note that a session was used at `now`.
    pub fn seen(&self, user: &str, sid: &str, now: u64) {
        if let Some(t) = self.last.get(sid)
            && now.saturating_sub(*t) < self.interval
        {
            return;
        }
        self.last.insert(sid.to_string(), now);
        // A full queue drops the update: the next interval will carry it.
        let _ = self.tx.try_send((user.to_string(), sid.to_string(), now));
    }

    /// The batching task: writes what `seen` queued, once a second.
    pub async fn run(&self, store: &dyn SessionStore) {
        let Some(mut rx) = self.rx.lock().take() else {
            return;
        };
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut batch = Vec::new();
        loop {
            tokio::select! {
                n = rx.recv_many(&mut batch, 1024) => { if n == 0 { return; } }
                _ = tick.tick() => {}
            }
            if !batch.is_empty() {
                if let Err(e) = store.touch(&batch).await {
                    tracing::debug!(error = %e, "activity update skipped");
                }
                batch.clear();
            }
            let now = crate::util::now_unix();
            let horizon = self.interval * 4;
            if self.last.len() > REMEMBERED {
                self.last.retain(|_, t| now.saturating_sub(*t) < horizon);
            }
        }
    }
}
