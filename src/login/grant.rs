//! Upstream login: the app keeps its own login form and tells the gateway who signed in.
//!
//! On the app's response to `login.upstream_path` (and only there), a header
//! `X-Sessiongate-Grant: <JWT>` signed with HS256 under `login.grant_secret_env`, with `sub`,
//! optional `roles` and an `exp` at most 60 s ahead, starts a gateway session. Threats: a
//! forged or replayed grant (signature, pinned algorithm, short `exp`), a grant smuggled on
//! another response (e.g. a page that reflects headers) — ignored and stripped; a client
//! sending the header itself — stripped from every request by `strip`, and from every
//! response before it reaches a client.
//!
//! Rotation: `login.grant_secret_env` may list several variables; a grant signed under any of
//! them is accepted. The app signs grants and does not name the gateway's key ids, so each
//! key is tried in turn (the list is the operator's, a few keys at most, and only the app's
//! login responses carry a grant).

use jsonwebtoken::{DecodingKey, Validation};
use serde::Deserialize;

use crate::config::SecretRing;
use crate::util::now_unix;

pub const MAX_GRANT_LIFETIME: u64 = 60;

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct GrantClaims {
    pub sub: String,
    #[serde(default)]
    pub roles: Vec<String>,
    pub exp: u64,
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-+".contains(&b))
}

/// Verify a grant under the keys of `secrets`; `None` when it is forged, expired, too
/// long-lived or malformed.
pub fn verify(secrets: &SecretRing, token: &str) -> Option<GrantClaims> {
    // `crit` and other parameters the gateway would not act on are refused, not ignored.
    if token.len() > 4096 || !crate::tokens::plain_header(token) {
        return None;
    }
    let mut v = Validation::new(jsonwebtoken::Algorithm::HS256);
    v.leeway = 0;
    v.validate_aud = false;
    v.set_required_spec_claims(&["exp", "sub"]);
    let c = secrets
        .iter()
        .find_map(|s| {
            let key = DecodingKey::from_secret(s.secret.expose());
            jsonwebtoken::decode::<GrantClaims>(token, &key, &v).ok()
        })?
        .claims;
    let now = now_unix();
    let ok = c.exp > now
        && c.exp <= now + MAX_GRANT_LIFETIME + 5
        && valid_name(&c.sub)
        && c.roles.iter().all(|r| valid_name(r));
    ok.then_some(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};

    const S: &[u8] = b"grant-secret-grant-secret-grant-secret-01";
    const T: &[u8] = b"another-secret-another-secret-another-sec";

    fn ring(secrets: &[&[u8]]) -> SecretRing {
        let keys = secrets
            .iter()
            .enumerate()
            .map(|(i, s)| crate::config::RingSecret {
                key: format!("login.grant_secret_env[{i}]"),
                secret: crate::config::Secret::new(s.to_vec()),
            });
        SecretRing::new(keys.collect()).unwrap()
    }

    fn grant(secret: &[u8], sub: &str, exp: u64) -> String {
        let claims = serde_json::json!({"sub": sub, "roles": ["dev"], "exp": exp});
        jsonwebtoken::encode(
            &Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    #[test]
    fn a_grant_under_any_key_of_the_ring_is_accepted_and_none_after_its_key_is_dropped() {
        let g = grant(T, "alice", now_unix() + 30);
        assert!(verify(&ring(&[S, T]), &g).is_some());
        assert!(verify(&ring(&[T, S]), &g).is_some());
        assert!(verify(&ring(&[S]), &g).is_none());
    }

    #[test]
    fn a_fresh_signed_grant_is_accepted() {
        let c = verify(&ring(&[S]), &grant(S, "alice", now_unix() + 30)).unwrap();
        assert_eq!(c.sub, "alice");
        assert_eq!(c.roles, vec!["dev".to_string()]);
    }

    #[test]
    fn forged_expired_and_long_lived_grants_are_refused() {
        let r = &ring(&[S]);
        assert!(verify(r, &grant(T, "alice", now_unix() + 30)).is_none());
        assert!(verify(r, &grant(S, "alice", now_unix() - 1)).is_none());
        assert!(verify(r, &grant(S, "alice", now_unix() + 3600)).is_none());
        assert!(verify(r, &grant(S, "al ice", now_unix() + 30)).is_none());
        assert!(verify(r, "garbage").is_none());
    }
}
