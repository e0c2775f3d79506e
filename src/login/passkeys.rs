//! Passkeys and security keys (WebAuthn) for the users of the users file: what is kept of one
//! ([`PasskeyRecord`]), the relying party the gateway is ([`relying_party`]), and the user
//! handle an authenticator keeps for a user ([`user_handle`]). The ceremonies themselves are
//! kanidm's `webauthn-rs` (challenge, origin, RP ID hash, signature, user verification,
//! counter); the endpoints are `auth::webauthn`'s.
//!
//! The user handle is derived from the user name (SHA-256, 16 bytes) rather than drawn at
//! random and kept: a passwordless sign-in names the user by its handle alone, and every
//! instance finds the user from it without a store lookup (`Users::by_passkey_handle`). The
//! authenticator keeps the user name beside it anyway (WebAuthn's `user.name`), so the handle
//! tells it nothing more; a user removed from the file and added again under the same name
//! gets the same handle and keeps their passkeys, as they keep their TOTP record.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use webauthn_rs::prelude::{Passkey, Url, Uuid};
use webauthn_rs::{Webauthn, WebauthnBuilder};

/// Passkeys one user may keep.
pub const MAX_PER_USER: usize = 10;
/// The longest name a passkey may be given (characters).
pub const MAX_NAME: usize = 64;

/// One registered passkey, as the store keeps it (JSON, by credential id).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PasskeyRecord {
    /// The user's name for it ("laptop", "YubiKey").
    pub name: String,
    /// Unix seconds.
    pub created: u64,
    /// Unix seconds of the last sign-in with it, if any.
    #[serde(default)]
    pub last_used: Option<u64>,
    /// The credential: its id, public key, counter and flags (no secret: a public key).
    pub passkey: Passkey,
}

impl PasskeyRecord {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
    /// A record the store gave back; `None` (and a warning) for one this version cannot read.
    pub fn from_json(s: &str) -> Option<Self> {
        let r = serde_json::from_str(s);
        if r.is_err() {
            tracing::warn!("passkeys: a stored passkey does not parse; ignored");
        }
        r.ok()
    }
}

/// The credential id as it names a passkey in the store and in URLs (base64url, unpadded).
pub fn credential_id(p: &Passkey) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode::<&[u8]>(p.cred_id().as_ref())
}

/// The handle an authenticator keeps for `user` (WebAuthn's `user.id`).
pub fn user_handle(user: &str) -> Uuid {
    let d = Sha256::new()
        .chain_update(b"sessiongate passkey user\0")
        .chain_update(user.as_bytes())
        .finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    Uuid::from_bytes(b)
}

/// The relying party for `origin` (`server.public_origin`, `https://host[:port]`): RP ID its
/// host, only that origin accepted, named `product`. `None` when the origin's host cannot be
/// an RP ID (an IP address), which `check-config` reports.
pub fn relying_party(origin: &str, product: &str) -> Option<Webauthn> {
    let url = Url::parse(origin).ok()?;
    let host = match url.host()? {
        url::Host::Domain(d) => d.to_string(),
        _ => return None,
    };
    WebauthnBuilder::new(&host, &url)
        .ok()?
        .rp_name(product)
        .build()
        .ok()
}

/// A name the user gave a passkey, trimmed; `None` when empty, too long or holding control
/// characters.
pub fn valid_name(name: &str) -> Option<String> {
    let n = name.trim();
    (!n.is_empty() && n.chars().count() <= MAX_NAME && !n.chars().any(char::is_control))
        .then(|| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_per_user_and_stable() {
        assert_eq!(user_handle("alice"), user_handle("alice"));
        assert_ne!(user_handle("alice"), user_handle("alice "));
        assert_ne!(user_handle("alice"), user_handle("bob"));
    }

    #[test]
    fn the_relying_party_is_the_public_origin_host() {
        assert!(relying_party("https://app.example.com", "X").is_some());
        assert!(relying_party("https://localhost:8443", "X").is_some());
        assert!(
            relying_party("https://127.0.0.1:8443", "X").is_none(),
            "an IP"
        );
        assert!(relying_party("not a url", "X").is_none());
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(valid_name("  laptop ").as_deref(), Some("laptop"));
        assert_eq!(valid_name(""), None);
        assert_eq!(valid_name("a\u{7}b"), None);
        assert_eq!(
            valid_name(&"x".repeat(MAX_NAME)).map(|n| n.len()),
            Some(MAX_NAME)
        );
        assert_eq!(valid_name(&"x".repeat(MAX_NAME + 1)), None);
    }
}
