//! Upstream login: the app keeps its own login form and tells the gateway who signed in.
//!
//! On the app's response to `login.upstream_path` (and only there), a header
//! `X-Sessiongate-Grant: <JWT>` signed with HS256 under `login.grant_secret_env`, with `sub`,
//! optional `roles` and an `exp` at most 60 s ahead, starts a gateway session. Threats: a
//! forged or replayed grant (signature, pinned algorithm, short `exp`), a grant smuggled on
//! another response (e.g. a page that reflects headers) — ignored and stripped; a client
//! sending the header itself — stripped from every request by `strip`, and from every
//! response before it reaches a client.

use jsonwebtoken::{DecodingKey, Validation};
use serde::Deserialize;

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

/// Verify a grant; `None` when it is forged, expired, too long-lived or malformed.
pub fn verify(secret: &[u8], token: &str) -> Option<GrantClaims> {
    // `crit` and other parameters the gateway would not act on are refused, not ignored.
    if token.len() > 4096 || !crate::tokens::plain_header(token) {
        return None;
    }
    let mut v = Validation::new(jsonwebtoken::Algorithm::HS256);
    v.leeway = 0;
    v.validate_aud = false;
    v.set_required_spec_claims(&["exp", "sub"]);
    let c = jsonwebtoken::decode::<GrantClaims>(token, &DecodingKey::from_secret(secret), &v)
        .ok()?
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
    fn a_fresh_signed_grant_is_accepted() {
        let c = verify(S, &grant(S, "alice", now_unix() + 30)).unwrap();
        assert_eq!(c.sub, "alice");
        assert_eq!(c.roles, vec!["dev".to_string()]);
    }

    #[test]
    fn forged_expired_and_long_lived_grants_are_refused() {
        assert!(
            verify(
                S,
                &grant(
                    b"another-secret-another-secret-another-sec",
                    "alice",
                    now_unix() + 30
                )
            )
            .is_none()
        );
        assert!(verify(S, &grant(S, "alice", now_unix() - 1)).is_none());
        assert!(verify(S, &grant(S, "alice", now_unix() + 3600)).is_none());
        assert!(verify(S, &grant(S, "al ice", now_unix() + 30)).is_none());
        assert!(verify(S, "garbage").is_none());
    }
}
