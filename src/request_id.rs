//! Every request's `X-Request-Id`: the one a trusted proxy sent when it is well formed, else a
//! new one (128 random bits, 32 lowercase hex digits). The id replaces whatever the client
//! sent on the request forwarded upstream, is sent back on the response, is a field of the
//! request's tracing span (so every log line of the request carries it) and of every audit
//! event the request causes, and is in its access-log line.
//!
//! Threat: a client that chooses its own request id could make its requests look like someone
//! else's in the logs, or inject text into them; so only a trusted proxy (which generated or
//! checked it) may pass one in, and only in a short, plain alphabet.

use std::sync::{Arc, OnceLock};

use http::{HeaderMap, HeaderName, HeaderValue};

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest incoming id kept.
pub const MAX_LEN: usize = 128;

/// Whether `v` may be kept as a request id: 1 to [`MAX_LEN`] characters of
/// `A-Z a-z 0-9 . _ : -` (a UUID, a hex or base64url token, `host:counter`), nothing that a
/// log line would read as structure.
pub fn is_valid(v: &[u8]) -> bool {
    !v.is_empty()
        && v.len() <= MAX_LEN
        && v.iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// A new id: 16 random bytes as 32 lowercase hex digits (also a valid W3C trace id, which a
/// generated `traceparent` reuses so logs and traces share it).
pub fn generate() -> String {
    let mut b = [0u8; 16];
    rand::fill(&mut b);
    hex(&b)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    push_hex(&mut s, bytes);
    s
}

/// `bytes` in lower-case hex, appended to `s`.
pub(crate) fn push_hex(s: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
}

/// This request's id: the incoming `X-Request-Id` when the peer is a trusted proxy and the
/// header is one valid value, else a new one. The header on `headers` is replaced by it (so a
/// client's own value never reaches the upstream).
pub fn assign(headers: &mut HeaderMap, peer_trusted: bool) -> String {
    let kept = peer_trusted
        .then(|| {
            let mut all = headers.get_all(&X_REQUEST_ID).iter();
            match (all.next(), all.next()) {
                (Some(v), None) if is_valid(v.as_bytes()) => v.to_str().ok().map(str::to_owned),
                _ => None,
            }
        })
        .flatten();
    let id = kept.unwrap_or_else(generate);
    match HeaderValue::from_str(&id) {
        Ok(v) => {
            headers.insert(X_REQUEST_ID, v);
        }
        Err(_) => {
            headers.remove(X_REQUEST_ID);
        }
    }
    id
}

/// What the request being served has said about itself, for its audit events and access-log
/// line: its id, and the session it turned out to be about.
#[derive(Debug)]
pub struct Scope {
    pub id: String,
    session: OnceLock<String>,
}

impl Scope {
    pub fn new(id: String) -> Arc<Self> {
        Arc::new(Self {
            id,
            session: OnceLock::new(),
        })
    }

    /// The session handle (never the session id) the request was about; the first one noted.
    pub fn session(&self) -> Option<&str> {
        self.session.get().map(String::as_str)
    }
}

tokio::task_local! {
    static SCOPE: Arc<Scope>;
}

/// Run `fut` as the request `scope`: [`current`] and [`note_session`] inside it see it.
///
/// A plain function, not an `async fn`: an `async fn` would keep `fut` as its argument beside
/// the task-local future it moves `fut` into, doubling the request's future (every byte of
/// which hyper copies per request).
pub fn within<F: std::future::Future>(
    scope: Arc<Scope>,
    fut: F,
) -> impl std::future::Future<Output = F::Output> {
    SCOPE.scope(scope, fut)
}

/// The id of the request being served on this task, if any.
pub fn current() -> Option<String> {
    SCOPE.try_with(|s| s.id.clone()).ok()
}

/// Note the session handle the request being served is about (a verified session, a login
/// that created one, a logout that ended one).
pub fn note_session(handle: &str) {
    let _ = SCOPE.try_with(|s| {
        let _ = s.session.set(handle.to_string());
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(X_REQUEST_ID, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn a_trusted_proxys_valid_id_is_kept() {
        let mut h = headers(&["lb-7f3a:0001.x_y"]);
        assert_eq!(assign(&mut h, true), "lb-7f3a:0001.x_y");
        assert_eq!(h.get(X_REQUEST_ID).unwrap(), "lb-7f3a:0001.x_y");
    }

    #[test]
    fn an_untrusted_peers_id_is_replaced() {
        let mut h = headers(&["chosen-by-the-client"]);
        let id = assign(&mut h, false);
        assert_ne!(id, "chosen-by-the-client");
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(h.get_all(X_REQUEST_ID).iter().count(), 1);
        assert_eq!(h.get(X_REQUEST_ID).unwrap(), id.as_str());
    }

    #[test]
    fn invalid_or_repeated_ids_are_replaced_even_from_a_trusted_proxy() {
        let long = "a".repeat(MAX_LEN + 1);
        for bad in [
            vec!["has space"],
            vec!["quote\""],
            vec!["{\"json\":1}"],
            vec![long.as_str()],
            vec!["one", "two"],
        ] {
            let mut h = headers(&bad);
            let id = assign(&mut h, true);
            assert!(!bad.contains(&id.as_str()), "{bad:?} kept");
            assert_eq!(h.get_all(X_REQUEST_ID).iter().count(), 1, "{bad:?}");
        }
        assert!(is_valid("a".repeat(MAX_LEN).as_bytes()));
        assert!(!is_valid(b""));
    }

    #[test]
    fn generated_ids_differ() {
        assert_ne!(generate(), generate());
    }

    #[tokio::test]
    async fn the_scope_is_seen_inside_and_not_outside() {
        assert_eq!(current(), None);
        note_session("ignored");
        let scope = Scope::new("rid-1".into());
        let s = scope.clone();
        within(s, async {
            assert_eq!(current().as_deref(), Some("rid-1"));
            note_session("h1");
            note_session("h2");
        })
        .await;
        assert_eq!(scope.session(), Some("h1"));
    }
}
