//! A change the gateway committed for a client, taken back when the response that tells the
//! client about it never reaches it.
//!
//! Threat: a refresh rotates the refresh token in the store, then the client goes away (a slow
//! upstream, a closed tab, an HTTP/2 stream reset) before the response with the new cookies is
//! written. The browser keeps the rotated-out token, and its next refresh after
//! `session.refresh_grace` looks like theft and revokes the session: a lost response must
//! never log anyone out.
//!
//! A [`Delivery`] is created when the change commits and travels with the response that
//! carries it (the cookies, then the response body, see `crate::body`). It counts as delivered
//! once hyper has taken the whole response: it asked for the body's end. If every copy is
//! dropped before that — the service future was dropped (HTTP/1 connection closed, HTTP/2
//! stream reset), the response was never built, or hyper gave up on its body — its undo runs.
//! It knows nothing of sessions: the undo is the caller's, and must be safe to run when the
//! response did arrive after all (the last bytes of a response can be lost in a way no server
//! can see), because "not known to be delivered" is all this can tell.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

type Undo = Box<dyn FnOnce() + Send>;

/// Shared by every copy of one committed change (the requests of one single-flight refresh
/// share one); the undo runs when the last copy goes without any having been delivered.
#[derive(Clone)]
pub struct Delivery(Arc<Pending>);

struct Pending {
    delivered: AtomicBool,
    undo: Mutex<Option<Undo>>,
}

impl Delivery {
    /// A change that `undo` takes back unless [`Delivery::delivered`] is called first. `undo`
    /// runs on the thread that drops the last copy, inside a `Drop`: it must not block (spawn
    /// the work).
    pub fn new(undo: impl FnOnce() + Send + 'static) -> Self {
        Self(Arc::new(Pending {
            delivered: AtomicBool::new(false),
            undo: Mutex::new(Some(Box::new(undo))),
        }))
    }

    /// The response carrying the change was handed over whole: nothing is undone.
    pub fn delivered(&self) {
        self.0.delivered.store(true, Ordering::Release);
    }

    pub fn is_delivered(&self) -> bool {
        self.0.delivered.load(Ordering::Acquire)
    }
}

/// The deliveries a response carries, from the moment its cookies are set on it until the
/// service wraps its body (`crate::service`).
#[derive(Clone, Default)]
struct Carried(Vec<Delivery>);

/// Let `resp` carry `d` (its cookies were just set on it).
pub fn attach<B>(resp: &mut http::Response<B>, d: Delivery) {
    match resp.extensions_mut().get_mut::<Carried>() {
        Some(c) => c.0.push(d),
        None => {
            resp.extensions_mut().insert(Carried(vec![d]));
        }
    }
}

/// The deliveries `resp` carries, taken off it.
pub fn take<B>(resp: &mut http::Response<B>) -> Vec<Delivery> {
    resp.extensions_mut()
        .remove::<Carried>()
        .map(|c| c.0)
        .unwrap_or_default()
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !*self.delivered.get_mut()
            && let Some(undo) = self.undo.get_mut().take()
        {
            undo();
        }
    }
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("delivered", &self.is_delivered())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn counted() -> (Delivery, Arc<AtomicUsize>) {
        let undone = Arc::new(AtomicUsize::new(0));
        let u = undone.clone();
        let d = Delivery::new(move || {
            u.fetch_add(1, Ordering::SeqCst);
        });
        (d, undone)
    }

    #[test]
    fn undone_once_when_the_last_copy_goes_undelivered() {
        let (d, undone) = counted();
        let copy = d.clone();
        drop(d);
        assert_eq!(undone.load(Ordering::SeqCst), 0, "a copy is still out");
        drop(copy);
        assert_eq!(undone.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn one_delivered_copy_keeps_the_change() {
        let (d, undone) = counted();
        let copy = d.clone();
        copy.delivered();
        assert!(d.is_delivered());
        drop(copy);
        drop(d);
        assert_eq!(undone.load(Ordering::SeqCst), 0);
    }
}
